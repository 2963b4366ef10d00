"""Bad input, answered in one line: non-finite and absurd settings, runs too big to fit, deeply
nested TOML, names with control characters, empty splits and malformed IDX files (issue 11)."""

from __future__ import annotations

import gzip
import os
import sys
from pathlib import Path

import pytest
import torch
from conftest import make_idx_set, run_cli, write_idx

from tuitrain.config import apply_overrides, config_from_dict, load_preset
from tuitrain.data.memory import DATA_SHAPES, available_memory, check_fits, memory_estimate, parameter_estimate
from tuitrain.data.sets import load_dataset
from tuitrain.errors import ConfigError, TuitrainError, UsageError, escape, quote
from tuitrain.events import Metrics, RunEnded, RunStarted
from tuitrain.headless.printers import PlainPrinter
from tuitrain.training import engine
from tuitrain.training.models import build_model, parameter_count

TINY = Path(__file__).parent / "data" / "tiny_rings.toml"


def tuitrain(*args):
    """`tuitrain ARGS` in this process: what is tested is its exit code and one-line error, not the process."""
    return run_cli(*args)


def assert_one_error(result, code, *words):
    """Exit `code`, exactly one stderr line `Error: ...` holding `words`, no traceback, nothing raw."""
    assert result.returncode == code, (result.returncode, result.stdout[-2000:], result.stderr[-2000:])
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert all(c.isprintable() for c in lines[0]), repr(lines[0])
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


def preset_file(tmp_path, text, name="bad.toml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def rings(**changes):
    config = load_preset(str(TINY))
    for key, value in changes.items():
        section, field = key.split("__")
        setattr(getattr(config, section), field, value)
    return config


# ----------------------------------------------------------------------------- 1. non-finite, absurd settings


@pytest.mark.parametrize(
    "args, words",
    [
        (["--lr", "nan"], ["--lr", "finite", "nan"]),
        (["--lr", "inf"], ["--lr", "finite", "inf"]),
        (["--lr", "-inf"], ["--lr", "finite"]),
        (["--lr", "1e400"], ["--lr", "finite"]),
        (["--lr", "0"], ["--lr", "out of range"]),
    ],
)
def test_non_finite_lr_on_the_command_line(args, words):
    assert_one_error(tuitrain("show", "rings", *args), 2, *words)


@pytest.mark.parametrize(
    "section, line, words",
    [
        ("train", "momentum = nan", ["train.momentum", "finite"]),
        ("train", "weight_decay = nan", ["train.weight_decay", "finite"]),
        ("train", "weight_decay = -inf", ["train.weight_decay", "finite"]),
        ("train", "lr = inf", ["train.lr", "finite"]),
        ("train", "lr = 1e999", ["train.lr", "finite"]),
        ("data", "valid_fraction = nan", ["data.valid_fraction", "finite"]),
        ("data", "test_fraction = nan", ["data.test_fraction", "finite"]),
        ("data", "test_fraction = -0.1", ["data.test_fraction", "out of range"]),
        pytest.param(
            "data",
            "samples = 1" + "0" * 400,
            ["data.samples", "out of range", "<= 1000000000000"],
            id="samples-10**400",
        ),
        pytest.param(
            "model", "hidden = [" + ", ".join(["1"] * 1001) + "]", ["model.hidden", "at most 1000"], id="1001-layers"
        ),
        ("model", "hidden = [0]", ["model.hidden", "between 1 and 100000"]),
    ],
)
def test_non_finite_and_absurd_values_in_a_preset_file(tmp_path, section, line, words):
    path = preset_file(tmp_path, f"[{section}]\n{line}\n")
    assert_one_error(tuitrain("show", path), 2, "bad.toml", *words)


@pytest.mark.parametrize(
    "args, words",
    [
        (["rings", "--lr", "nan"], ["--lr", "finite"]),
        ([str(TINY), "--lr", "inf", "--epochs", "1"], ["--lr", "finite"]),
    ],
)
def test_run_refuses_non_finite_settings_before_training(args, words, tmp_path):
    result = tuitrain("run", *args, "--out", str(tmp_path / "out"))
    assert_one_error(result, 2, *words)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_run_refuses_a_nan_fraction_from_a_preset_file(tmp_path):
    # used to be a traceback (round(nan)) while splitting the data
    path = preset_file(tmp_path, 'name = "x"\n[data]\ndataset = "rings"\nvalid_fraction = nan\n')
    assert_one_error(tuitrain("run", path, "--epochs", "1"), 2, "data.valid_fraction", "finite")


def test_overrides_and_dicts_refuse_non_finite_numbers():
    for value in (float("nan"), float("inf"), -float("inf")):
        with pytest.raises(UsageError, match="--lr: expected a finite number"):
            apply_overrides(load_preset("rings"), lr=value)
        with pytest.raises(ConfigError, match="train.momentum: expected a finite number"):
            config_from_dict({"train": {"momentum": value}})
    with pytest.raises(ConfigError, match="expected a finite number"):
        config_from_dict({"train": {"lr": 10**400}})  # an integer beyond any float


# ----------------------------------------------------------------------------- 2. too big to fit


def test_network_too_big_is_refused_with_the_estimate(tmp_path):
    path = preset_file(
        tmp_path,
        'name = "huge"\n[model]\nhidden = [100000, 100000]\n[data]\ndataset = "rings"\n[train]\noptimizer = "adam"\n',
    )
    result = tuitrain("run", path, "--out", str(tmp_path / "out"))
    line = assert_one_error(
        result,
        2,
        "the network needs about",
        "GB",
        "10,000,700,003 parameters with adam",
        "available",
        "fewer or smaller hidden layers",
    )
    assert "this machine has" in line


def test_data_set_too_big_is_refused(tmp_path):
    path = preset_file(tmp_path, 'name = "many"\n[data]\ndataset = "rings"\nsamples = 1000000000000\n')
    assert_one_error(
        tuitrain("run", path), 2, "the data set needs about", "1,000,000,000,000 rings samples", "fewer data.samples"
    )


def test_batch_too_big_is_refused(tmp_path):
    path = preset_file(
        tmp_path,
        'name = "wide"\n[model]\nhidden = [100000]\n[data]\ndataset = "rings"\n'
        "samples = 1000000\n[train]\nbatch_size = 1000000\n",
    )
    assert_one_error(tuitrain("run", path), 2, "a batch needs about", "smaller --batch-size")


def test_fit_messages_state_the_estimate_and_what_is_available():
    config = rings(model__hidden=[100000, 100000], train__optimizer="adam")
    with pytest.raises(UsageError) as info:
        check_fits(config, available=23 * 10**9)
    assert str(info.value) == (
        "the network needs about 400 GB (10,000,700,003 parameters with adam) but this "
        "machine has 23 GB available; use fewer or smaller hidden layers"
    )
    with pytest.raises(UsageError, match=r"the data set needs about 128 GB \(2,000,000,000 rings samples\)"):
        check_fits(rings(data__samples=2_000_000_000), available=23 * 10**9)
    parts = memory_estimate(rings())
    with pytest.raises(UsageError, match=r"^training needs about .* \(the network .*, the data .*, a batch .*\)"):
        check_fits(rings(), available=max(parts.values()) + 1)  # no part alone is too big, all together are
    check_fits(rings(), available=sum(parts.values()))  # exactly enough
    check_fits(rings())  # the real machine has room for the tiny preset


def test_available_memory_is_at_most_the_physical_memory():
    physical = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    assert 0 < available_memory() <= physical


@pytest.mark.parametrize("preset", ["neuron", "mlp", "lenet", "rings", "square", "wave"])
@pytest.mark.parametrize("activation", ["relu", "prelu"])
def test_parameter_estimate_is_exact(preset, activation):
    config = load_preset(preset)
    config.model.activation = activation
    inputs, outputs, _ = DATA_SHAPES[config.data.dataset]
    shape = (1, 28, 28) if inputs == 784 else (inputs,)
    model = build_model(config.model, shape, 1 if config.model.kind == "neuron" else outputs)
    assert parameter_estimate(config) == parameter_count(model)


@pytest.mark.parametrize("dataset", ["blobs", "rings", "square", "wave"])
def test_data_shapes_match_the_data_sets(dataset):
    data = load_dataset(config_from_dict({"data": {"dataset": dataset, "samples": 100}}).data, seed=0)
    inputs, outputs, held = DATA_SHAPES[dataset]
    assert (data.train.x.shape[1], data.num_outputs) == (inputs, outputs)
    assert data.train.x[0].nbytes + data.train.y[0].nbytes == held


@pytest.mark.parametrize(
    "error",
    [
        torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 40.00 GiB\nsecond line"),
        RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory: you tried"),
        MemoryError(),
    ],
)
def test_out_of_memory_while_building_is_a_one_line_failure(monkeypatch, capsys, error):
    def build(*args, **kwargs):
        raise error

    monkeypatch.setattr(engine, "build_model", build)
    with pytest.raises(TuitrainError) as info:
        engine.Trainer(rings())
    assert info.value.exit_code == 1 and "out of memory" in str(info.value) and "\n" not in str(info.value)
    from tuitrain import cli

    monkeypatch.setattr(sys, "argv", ["tuitrain", "run", str(TINY), "--out", "out"])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("Error: out of memory on cpu")


def test_other_runtime_errors_while_building_are_not_hidden(monkeypatch):
    monkeypatch.setattr(engine, "build_model", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("a bug")))
    with pytest.raises(RuntimeError, match="a bug"):
        engine.Trainer(rings())


# ----------------------------------------------------------------------------- 3. deeply nested TOML

DEEP = 5000


@pytest.mark.parametrize(
    "command, text",
    [
        pytest.param("show", "name = " + "[" * DEEP + "]" * DEEP + "\n", id="show-arrays"),
        pytest.param("run", "name = " + "[" * DEEP + "]" * DEEP + "\n", id="run-arrays"),
        pytest.param("show", "[train]\nx = " + "{a = " * DEEP + "1" + "}" * DEEP + "\n", id="show-inline-tables"),
    ],
)
def test_deeply_nested_toml_is_a_syntax_error(tmp_path, command, text):
    path = preset_file(tmp_path, text, name="deep.toml")
    assert_one_error(tuitrain(command, path), 2, "deep.toml", "TOML syntax error", "nested too deeply")


def test_list_survives_a_deeply_nested_user_preset(isolated_xdg):
    folder = isolated_xdg / "config" / "tuitrain" / "presets"
    folder.mkdir(parents=True)
    (folder / "deep.toml").write_text("description = " + "[" * DEEP + "]" * DEEP + "\n")
    result = tuitrain("list")
    assert result.returncode == 0 and "Traceback" not in result.stderr
    assert any(line.startswith("deep") and "unreadable preset file" in line for line in result.stdout.splitlines())


# ----------------------------------------------------------------------------- 4. names quoted, never raw

OSC_TITLE = "\x1b]0;pwned\x07"


@pytest.mark.parametrize(
    "key, value",
    [
        ("name", "two\nlines"),
        ("name", f"net{OSC_TITLE}"),
        ("name", "tab\there"),
        ("description", "red \x1b[31mtext\x1b[0m"),
        ("name", "right\u202eto-left"),
    ],
)
def test_control_characters_in_names_are_refused(tmp_path, key, value):
    path = tmp_path / "ctl.toml"
    path.write_text(f'{key} = {quote_toml(value)}\n[data]\ndataset = "rings"\n', encoding="utf-8")
    for command in ("show", "run"):
        assert_one_error(tuitrain(command, str(path), "--epochs", "1"), 2, "ctl.toml", key, "control characters")


def quote_toml(text):
    return '"' + "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in text) + '"'


@pytest.mark.parametrize(
    "args, words",
    [
        (["run", "no\nsuch"], ["unknown preset 'no\\nsuch'"]),
        (["show", f"x{OSC_TITLE}"], ["unknown preset", "\\x1b]0;pwned\\x07"]),
        (["show", "missing\n.toml"], ["preset file not found", "'missing\\n.toml'"]),
        (["run", "mlp", "--data-dir", "/no\nwhere", "--epochs", "1"], ["'/no\\nwhere'", "IDX files"]),
    ],
)
def test_user_given_names_are_quoted_in_messages(args, words):
    assert_one_error(tuitrain(*args), 2, *words)


def test_a_file_name_with_a_newline_stays_on_one_line(tmp_path):
    path = tmp_path / "bad\nname.toml"
    path.write_text("[train\n")
    assert_one_error(tuitrain("show", str(path)), 2, "bad\\nname.toml", "TOML syntax error")


def test_a_key_with_control_characters_is_escaped(tmp_path):
    path = preset_file(tmp_path, '"a\\u001b[2Jb" = 1\n')
    assert_one_error(tuitrain("show", path), 2, "unknown key", "'a\\x1b[2Jb'")


def test_list_escapes_a_description_it_does_not_validate(isolated_xdg):
    folder = isolated_xdg / "config" / "tuitrain" / "presets"
    folder.mkdir(parents=True)
    (folder / "evil.toml").write_text(f"description = {quote_toml(OSC_TITLE)}\n")
    result = tuitrain("list")
    assert result.returncode == 0 and "\x1b" not in result.stdout and "\\x1b]0;pwned\\x07" in result.stdout


def test_headless_lines_escape_names_from_events():
    lines = []
    printer = PlainPrinter()
    printer.write = lines.append
    printer(RunStarted(f"p{OSC_TITLE}", {}, "cpu", "classes", 10, 2, 2, 1, 1, 0, 5, "src\n2", run_dir="r\x1bx"))
    printer(RunEnded("failed", 1, 1, Metrics(0.5, 0.5), 1.0, 10.0, message=f"bad\x1b[2J{OSC_TITLE}"))
    text = "\n".join(lines)
    assert "\x1b" not in text and "\x07" not in text
    assert "p\\x1b]0;pwned\\x07:" in text and "src\\n2" in text and "r\\x1bx" in text


def test_error_text_is_always_one_printable_line():
    assert str(UsageError("a\nb\x1b[0m")) == "a\\nb\\x1b[0m"
    assert quote("a\nb") == "'a\\nb'" and escape("plain ü") == "plain ü"


# ----------------------------------------------------------------------------- 5. empty splits


@pytest.mark.parametrize(
    "data, words",
    [
        ("samples = 1", ["training and validation sets would be empty", "0 train / 0 valid / 1 test"]),
        ("samples = 2", ["training set would be empty", "data.samples = 2", "0 train / 1 valid / 1 test"]),
        ("samples = 100\nvalid_fraction = 0.5\ntest_fraction = 0.5", ["training set would be empty", "0 train"]),
        ("samples = 3\nstandardize = true", ["standardize needs at least 2 training samples"]),
    ],
)
def test_synthetic_splits_that_leave_a_set_empty(tmp_path, data, words):
    path = preset_file(tmp_path, f'name = "few"\n[data]\ndataset = "rings"\n{data}\n')
    assert_one_error(tuitrain("run", path, "--epochs", "1"), 2, *words)


def test_one_training_image_is_refused(tmp_path):
    folder = make_idx_set(tmp_path / "one", train=1, test=5)
    result = tuitrain("run", "mlp", "--data-dir", str(folder), "--epochs", "1")
    assert_one_error(result, 2, "training set would be empty", "1 training images", "0 train / 1 valid / 5 test")


# ----------------------------------------------------------------------------- 6. malformed IDX files


def damaged_set(folder: Path, damage: str) -> Path:
    """A tiny MNIST-shaped set with one kind of damage (see the parameters below)."""
    make_idx_set(folder, train=30, test=10, compress=False)
    images, labels = folder / "train-images-idx3-ubyte", folder / "train-labels-idx1-ubyte"
    pixels = bytes(30 * 784)
    if damage == "label 200":
        write_idx(labels, bytes([1] * 29 + [200]), [30], False)
    elif damage == "no training images":
        write_idx(images, b"", [0, 28, 28], False)
        write_idx(labels, b"", [0], False)
    elif damage == "no test images":
        write_idx(folder / "t10k-images-idx3-ubyte", b"", [0, 28, 28], False)
        write_idx(folder / "t10k-labels-idx1-ubyte", b"", [0], False)
    elif damage == "flat images":
        write_idx(images, pixels, [30, 784], False)
    elif damage == "28x29 images":
        write_idx(images, bytes(30 * 28 * 29), [30, 28, 29], False)
    elif damage == "3-D labels":
        write_idx(labels, bytes(30), [30, 1, 1], False)
    elif damage == "count mismatch":
        write_idx(labels, bytes(29), [29], False)
    elif damage == "wrong magic":
        images.write_bytes(b"PK\x03\x04" + bytes(100))
    elif damage == "float values":
        images.write_bytes(bytes([0, 0, 0x0D, 3]) + images.read_bytes()[4:])
    elif damage == "truncated data":
        images.write_bytes(images.read_bytes()[:-100])
    elif damage == "truncated header":
        images.write_bytes(bytes([0, 0, 8, 3, 0, 0]))
    elif damage == "extra bytes":
        images.write_bytes(images.read_bytes() + bytes(5))
    elif damage == "huge shape":
        write_idx(images, pixels, [2**31, 2**31, 28], False)
    elif damage == "corrupt gzip":
        images.unlink()
        (folder / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(bytes(100))[:12] + os.urandom(64))
    return folder


@pytest.mark.parametrize(
    "damage, preset, words",
    [
        ("label 200", "mlp", ["train-labels-idx1-ubyte", "label 200 is out of range", "0 to 9"]),
        ("no training images", "mlp", ["train-images-idx3-ubyte", "holds no images"]),
        ("no test images", "mlp", ["t10k-images-idx3-ubyte", "holds no images"]),
        ("flat images", "lenet", ["train-images-idx3-ubyte", "28x28", "[30, 784]"]),
        ("flat images", "mlp", ["train-images-idx3-ubyte", "28x28", "[30, 784]"]),
        ("28x29 images", "lenet", ["train-images-idx3-ubyte", "28x28", "[30, 28, 29]"]),
        ("3-D labels", "mlp", ["train-labels-idx1-ubyte", "one label per image", "[30, 1, 1]"]),
        ("count mismatch", "mlp", ["30 images", "29 labels", "train-labels-idx1-ubyte"]),
        ("wrong magic", "mlp", ["train-images-idx3-ubyte", "not an IDX file"]),
        ("float values", "mlp", ["train-images-idx3-ubyte", "32-bit floats"]),
        ("truncated data", "mlp", ["train-images-idx3-ubyte", "truncated"]),
        ("truncated header", "mlp", ["train-images-idx3-ubyte", "truncated", "header"]),
        ("extra bytes", "mlp", ["train-images-idx3-ubyte", "more data than its shape"]),
        ("huge shape", "mlp", ["train-images-idx3-ubyte", "declares shape", "available"]),
        ("corrupt gzip", "mlp", ["cannot read", "train-images-idx3-ubyte.gz"]),
    ],
)
def test_malformed_idx_files_are_named(tmp_path, damage, preset, words):
    folder = damaged_set(tmp_path / "idx", damage)
    result = tuitrain("run", preset, "--data-dir", str(folder), "--epochs", "1", "--out", str(tmp_path / "out"))
    assert_one_error(result, 2, *words)
