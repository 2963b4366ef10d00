"""Issue 26, CSV data (`--data`, dataset = "csv"): bad files are refused naming the line before anything is
sized by them, paths are recorded so config.toml stays readable and points at the same file, and a run's
settings are shown and compared without its data file."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from conftest import run_cli

from tuitrain.config import Config, DataConfig, config_from_dict, load_preset, resolve_config
from tuitrain.data.csv_files import load_table
from tuitrain.errors import UsageError
from tuitrain.runs import compare

HEADER = "x1,x2,label\n"
ROWS = "".join(f"{i % 7 / 7:.3f},{i % 5 / 5:.3f},{i % 2}\n" for i in range(46))  # lines 2 to 47


def write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def refused(path: str) -> str:
    with pytest.raises(UsageError) as caught:
        load_table(path)
    return str(caught.value)


def assert_one_line(result, message: str) -> None:
    assert result.code == 2 and result.err == f"Error: {message}\n" and "Traceback" not in result.err


# ----------------------------------------------------------------------------- class count


@pytest.mark.parametrize(
    ("label", "why"),
    [
        ("100", "label 100 is not a class index 0 to 99 (at most 100 classes are supported)"),
        ("300000000", "label 300000000 is not a class index 0 to 99 (at most 100 classes are supported)"),
        ("9" * 5000, f"label {'9' * 40} is not a class index 0 to 99 (at most 100 classes are supported)"),
        ("1e20", "label 1e20 is a number but not a class index 0 to 99; labels are 0, 1, 2, ... or names"),
        ("1.5", "label 1.5 is a number but not a class index 0 to 99; labels are 0, 1, 2, ... or names"),
        ("-1", "labels must be 0, 1, 2, ... or names, not -1"),
    ],
)
def test_a_label_that_is_no_class_index_is_refused_naming_its_line(tmp_path: Path, label: str, why: str) -> None:
    path = write(tmp_path / "d.csv", HEADER + ROWS + f"0.3,0.1,{label}\n")
    assert refused(path) == f"{path} line 48: {why}"


def test_a_numeric_label_among_names_is_refused_too(tmp_path: Path) -> None:
    named = ROWS.replace(",0\n", ",cat\n").replace(",1\n", ",dog\n")
    path = write(tmp_path / "d.csv", HEADER + named + "0.3,0.1,1e20\n")
    assert refused(path).startswith(f"{path} line 48: label 1e20 is a number")


@pytest.mark.slow  # a child process with its address space limited
def test_a_huge_label_is_refused_in_little_memory(tmp_path: Path) -> None:
    """Before the fix 300000000 sized a list of 300 million class names (21 GB): in 1 GB of address space
    the check must come first."""
    path = write(tmp_path / "d.csv", HEADER + ROWS + "0.3,0.1,300000000\n")
    code = (
        "import resource, sys\n"
        "resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))\n"
        "from tuitrain.errors import UsageError\n"
        "from tuitrain.data.csv_files import load_table\n"
        "try:\n    load_table(sys.argv[1])\n"
        "except UsageError as exc:\n    print(exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", code, path], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.startswith(f"{path} line 48: label 300000000"), done.stderr


def test_the_cli_refuses_a_huge_label_with_one_line(tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv", HEADER + ROWS + "0.3,0.1,1e20\n")
    result = run_cli("run", "--data", path, "--out", tmp_path / "runs")
    assert_one_line(
        result,
        f"{path} line 48: label 1e20 is a number but not a class index 0 to 99; labels are 0, 1, 2, ... or names",
    )
    assert not (tmp_path / "runs").exists()


def test_integer_labels_and_names_still_make_classes(tmp_path: Path) -> None:
    numbered = load_table(write(tmp_path / "n.csv", HEADER + ROWS + "0.3,0.1,99\n"))
    assert len(numbered.classes) == 100 and numbered.y[-1] == 99.0
    named = load_table(write(tmp_path / "s.csv", HEADER + ROWS.replace(",1\n", ",nan\n")))
    assert named.classes == ("0", "nan")  # a word, not a number: a name


# ----------------------------------------------------------------------------- float32 range


@pytest.mark.parametrize(
    ("header", "row", "column", "text"),
    [
        (HEADER, "0.1,1e39,0", "x2", "1e39"),
        (HEADER, "-1e308,0.2,0", "x1", "-1e308"),
        ("x,y\n", "0.5,3.5e38", "y", "3.5e38"),
    ],
)
def test_a_value_beyond_float32_is_bad_input_naming_line_and_column(
    tmp_path: Path, header: str, row: str, column: str, text: str
) -> None:
    rows = ROWS if header == HEADER else "".join(f"{i / 50},{i / 25}\n" for i in range(46))
    path = write(tmp_path / "d.csv", header + rows + row + "\n")
    message = f"{path} line 48: {column} '{text}' is beyond float32's range (about ±3.4e38)"
    assert refused(path) == message
    assert_one_line(run_cli("run", "--data", path, "--epochs", "1", "--out", tmp_path / "runs"), message)


def test_the_largest_float32_is_accepted(tmp_path: Path) -> None:
    table = load_table(write(tmp_path / "d.csv", HEADER + ROWS + "3.4028234e38,-3.4e38,1\n"))
    assert table.x[-1] == (3.4028234e38, -3.4e38)


# ----------------------------------------------------------------------------- CSV syntax


def test_an_unterminated_quote_is_refused_not_swallowed(tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv", HEADER + ROWS + '0.1,0.2,"a\n' + "0.3,0.4,1\n" * 10)
    message = f"{path} line 48: a quote opened here is never closed"
    assert refused(path) == message
    assert_one_line(run_cli("run", "--data", path, "--out", tmp_path / "runs"), message)


def test_a_quote_closed_lines_later_is_refused_at_its_line(tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv", HEADER + ROWS + '0.1,0.2,"a\n0.3,0.4,b"\n' + "0.3,0.4,1\n")
    assert refused(path) == f"{path} line 48: the label 'a\\n0.3,0.4,b' contains a line break or control character"


def test_a_field_beyond_the_csv_limit_names_its_line(tmp_path: Path) -> None:
    long = "x" * (csv.field_size_limit() + 1)
    path = write(tmp_path / "d.csv", HEADER + ROWS[:60] + f"0.1,0.2,{long}\n" + ROWS)
    line = 2 + ROWS[:60].count("\n")
    assert refused(path) == f"{path} line {line}: a field is longer than 131,072 characters (a quote left open?)"


def test_text_after_a_closing_quote_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv", HEADER + ROWS + '0.1,0.2,"a"b\n')
    assert refused(path) == f"{path} line 48: not valid CSV (',' expected after '\"')"


def test_line_numbers_count_the_lines_a_quoted_field_spans(tmp_path: Path) -> None:
    rows = "".join(f"{i / 50},{i / 25}\n" for i in range(30))
    path = write(tmp_path / "d.csv", 'x,y\n"0.5\n",1\n' + rows + "0.1,abc\n")  # the quoted x spans lines 2-3
    assert refused(path) == f"{path} line {4 + 30}: y is not a number ('abc')"


# ----------------------------------------------------------------------------- paths


@pytest.fixture
def data_file(tmp_path: Path) -> Path:
    path = tmp_path / "data" / "d.csv"
    path.parent.mkdir()
    path.write_text(HEADER + ROWS)
    return path


@pytest.mark.parametrize("dataset", ["blobs", "mnist"])
def test_data_with_another_dataset_is_refused(data_file: Path, dataset: str) -> None:
    message = f"--data trains on your CSV file: it cannot go with --dataset '{dataset}'"
    with pytest.raises(UsageError, match="it cannot go with --dataset"):
        resolve_config("rings", dataset=dataset, data_path=str(data_file))
    result = run_cli("run", "rings", "--dataset", dataset, "--data", data_file, "--out", "runs")
    assert_one_line(result, message)
    assert not Path("runs").exists()


def test_data_with_dataset_csv_or_a_preset_trains_on_the_file(data_file: Path) -> None:
    assert resolve_config("csv", dataset="csv", data_path=str(data_file)).data.path == str(data_file)
    rings = resolve_config("rings", data_path=str(data_file)).data  # the preset's network on your file
    assert (rings.dataset, rings.path) == ("csv", str(data_file))


def test_a_tilde_is_expanded(data_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(data_file.parent))
    assert resolve_config("csv", data_path="~/d.csv").data.path == str(data_file)


def test_a_relative_path_is_stored_absolute_and_a_resume_elsewhere_finds_it(
    data_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(data_file.parent)
    assert run_cli("run", "--data", "d.csv", "--epochs", "1", "--out", tmp_path / "runs").code == 0
    (run,) = (tmp_path / "runs").iterdir()
    assert tomllib.loads((run / "config.toml").read_text())["data"]["path"] == str(data_file)
    monkeypatch.chdir(tmp_path)
    result = run_cli("run", "--resume", run, "--epochs", "2")
    assert result.code == 0, result.err


def test_a_presets_relative_path_is_taken_from_the_preset_file(data_file: Path, tmp_path: Path) -> None:
    preset = tmp_path / "presets" / "mine.toml"
    preset.parent.mkdir()
    preset.write_text('[data]\ndataset = "csv"\npath = "../data/d.csv"\n')
    assert load_preset(str(preset)).data.path == str(data_file)  # the working directory is elsewhere
    assert resolve_config(str(preset)).data.path == str(data_file)


# ----------------------------------------------------------------------------- runs without their data


def test_runs_and_compare_show_settings_after_the_csv_moved(data_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "runs"
    for lr in ("0.01", "0.1"):
        assert run_cli("run", "--data", data_file, "--epochs", "1", "--lr", lr, "--out", out).code == 0
    data_file.rename(data_file.with_name("moved.csv"))
    listed = run_cli("runs", "--out", out)
    assert listed.code == 0
    rows = [line.split() for line in listed.out.splitlines()[1:]]
    assert sorted(row[4:7] for row in rows) == [["adam", "0.01", "32"], ["adam", "0.1", "32"]]
    compared = run_cli("compare", *sorted(out.iterdir()))
    assert compared.code == 0 and "identical" not in compared.out
    (lr_row,) = [line.split() for line in compared.out.splitlines() if line.startswith("train.lr")]
    assert sorted(lr_row[1:]) == ["0.01", "0.1"]  # columns in ranking order
    exported = run_cli("export", sorted(out.iterdir())[0], "--format", "csv", "-o", tmp_path / "m.csv")
    assert exported.code == 0 and (tmp_path / "m.csv").read_text().startswith("epoch")
    resumed = run_cli("run", "--resume", sorted(out.iterdir())[0], "--epochs", "2")  # training needs it
    assert_one_line(resumed, f"no data file at {data_file}")


def record(name: str, config: dict) -> compare.RunRecord:
    return compare.RunRecord(name, name, "csv", "completed", 1, 1, None, None, None, 0.0, config)


def test_compare_never_calls_unreadable_configurations_identical() -> None:
    lines = compare.diff_table([record("a", {}), record("b", {})])
    assert lines == ["configurations unknown (config.toml unreadable): a, b"]
    lines = compare.diff_table([record("a", {"train.lr": 0.1}), record("b", {"train.lr": 0.1}), record("c", {})])
    assert lines == ["configurations unknown (config.toml unreadable): c; the others are identical"]
    lines = compare.diff_table([record("a", {"train.lr": 0.1}), record("b", {"train.lr": 0.2}), record("c", {})])
    assert lines[-1] == "configurations unknown (config.toml unreadable): c" and "?" in lines[1]


def test_a_damaged_config_is_named_in_compare(data_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "runs"
    for lr in ("0.01", "0.1"):
        assert run_cli("run", "--data", data_file, "--epochs", "1", "--lr", lr, "--out", out).code == 0
    for run in out.iterdir():
        (run / "config.toml").write_text("[train\n")
    compared = run_cli("compare", *sorted(out.iterdir()))
    assert compared.code == 0 and "identical" not in compared.out
    assert "configurations unknown (config.toml unreadable)" in compared.out


# ----------------------------------------------------------------------------- control characters in paths


def test_every_control_character_round_trips_through_config_toml() -> None:
    weird = "".join(map(chr, range(32))) + '\x7f"\\é\u2028/x'
    config = Config(data=DataConfig(data_dir=weird, path="/tmp/" + weird))
    loaded = tomllib.loads(config.to_toml())
    assert loaded["data"]["data_dir"] == weird and loaded["data"]["path"] == "/tmp/" + weird
    assert config_from_dict(loaded, check_data=False) == config


def test_a_newline_in_data_dir_leaves_a_readable_run(tmp_path: Path) -> None:
    tiny = str(Path(__file__).parent / "data" / "tiny_rings.toml")
    result = run_cli("run", tiny, "--data-dir", "a\nb", "--epochs", "1", "--out", tmp_path / "runs")
    assert result.code == 0, result.err
    (run,) = (tmp_path / "runs").iterdir()
    assert tomllib.loads((run / "config.toml").read_text())["data"]["data_dir"] == "a\nb"
    listed = run_cli("runs", "--out", tmp_path / "runs")
    assert listed.out.splitlines()[1].split()[1:5] == ["tiny_rings", "completed", "1/1", "adam"]


def test_a_csv_named_with_a_newline_is_recorded_readably(tmp_path: Path) -> None:
    path = write(tmp_path / "a\nb.csv", HEADER + ROWS)
    config = resolve_config("csv", data_path=path)
    assert tomllib.loads(config.to_toml())["data"]["path"] == path


@pytest.mark.skipif(sys.platform == "darwin", reason="macOS file names are always UTF-8")
def test_a_path_that_is_not_utf8_is_refused_up_front(tmp_path: Path) -> None:
    name = os.fsdecode(b"caf\xe9.csv")  # undecodable: a lone surrogate that UTF-8 TOML cannot hold
    path = write(tmp_path / name, HEADER + ROWS)
    with pytest.raises(UsageError, match="is not UTF-8 text and cannot be recorded in config.toml"):
        resolve_config("csv", data_path=path)
    with pytest.raises(UsageError, match="--data-dir: .* is not UTF-8 text"):
        resolve_config("mlp", data_dir=str(tmp_path / name))
