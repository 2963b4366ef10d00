"""The `tuitrain` command: exit codes, one-line errors, JSON lines, clean logs, lazy imports.

Most tests run the console entry point in this process (`run_cli`); the real process is kept where it
is the point: the exit code and stderr of `python -m tuitrain`, and what a fresh interpreter imports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_cli
from helpers import run_tuitrain

DATA = Path(__file__).parent / "data"
TINY = str(DATA / "tiny_rings.toml")


def tuitrain(*args: str):
    """`tuitrain ARGS` in this process (exit code, stdout and stderr as a process would give them)."""
    return run_cli(*args)


def test_json_run_is_one_object_per_line():
    result = tuitrain("run", "neuron", "--json")
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["event"] for line in lines] == ["start"] + ["epoch"] * 10 + ["end"]
    epoch = lines[1]
    assert epoch["epoch"] == 1 and {"loss", "accuracy"} <= set(epoch["train"]) and "seconds" in epoch
    assert epoch["samples_per_s"] > 0 and "loss" in epoch["valid"]
    end = lines[-1]
    assert end["status"] == "completed" and end["test"]["accuracy"] >= 0.95
    assert end["train_seconds"] > 0 and end["samples_per_s"] > 0


def test_regression_reports_loss_without_accuracy():
    result = tuitrain("run", "wave", "--epochs", "2", "--json")
    end = json.loads(result.stdout.splitlines()[-1])
    assert set(end["test"]) == {"loss"}


def test_log_output_is_plain_lines():
    result = tuitrain("run", TINY)
    assert result.returncode == 0
    assert "\x1b" not in result.stdout and "\r" not in result.stdout
    epoch_lines = [line for line in result.stdout.splitlines() if line.strip().split(" ")[0].endswith("/3")]
    assert len(epoch_lines) == 3 and "valid_loss" in result.stdout
    assert result.stdout.splitlines()[-1].startswith("completed: test loss")


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "nope"], "unknown preset 'nope'"),
        (["run", "rings", "--lr", "-1"], "--lr"),
        (["run", "rings", "--epochs", "0"], "--epochs"),
        (["run", "rings", "--optimizer", "sgdd"], "sgdd"),
        (["run", "rings", "--batch-size", "many"], "--batch-size"),
        (["run", "lenet", "--dataset", "rings"], "lenet"),
        (["run", "neuron", "--dataset", "rings"], "neuron"),
        (["run", str(DATA / "syntax_error.toml")], "line 5"),
        (["run", str(DATA / "unknown_key.toml")], "train.epocs"),
        (["run", "mlp", "--data-dir", "/nonexistent-dir"], "/nonexistent-dir"),
        (["run"], "PRESET"),
        (["frobnicate"], "frobnicate"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, message):
    result = tuitrain(*args)
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert message in lines[0]
    assert "Traceback" not in result.stderr


@pytest.mark.slow  # the real entry point: its exit status and stderr as a shell sees them
def test_the_real_process_exits_2_with_one_line():
    result = run_tuitrain("run", "nope")
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stderr.startswith("Error: unknown preset 'nope'") and result.stderr.count("\n") == 1, result.stderr
    assert result.stdout == ""


def test_cuda_without_gpu_is_bad_input():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    result = tuitrain("run", "rings", "--device", "cuda")
    assert result.returncode == 2 and "no CUDA GPU" in result.stderr and len(result.stderr.splitlines()) == 1


def test_missing_mnist_offline_says_what_to_do(isolated_xdg, tmp_path, monkeypatch):
    # no files anywhere and no network: must fail within seconds with advice, not hang or trace
    monkeypatch.setenv("https_proxy", "http://127.0.0.1:9")
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    result = tuitrain("run", "mlp")
    assert result.returncode == 2
    assert "--data-dir" in result.stderr and "Traceback" not in result.stderr


def test_divergence_exits_3_with_advice():
    result = tuitrain("run", "square", "--lr", "50", "--epochs", "20")
    assert result.returncode == 3
    assert "lower learning rate" in result.stderr


@pytest.mark.slow  # import hygiene: a fresh interpreter is the point
def test_help_and_list_do_not_import_torch():
    probe = (
        "import sys, runpy\nsys.argv = ['tuitrain'] + sys.argv[1:]\n"
        "try:\n    runpy.run_module('tuitrain', run_name='__main__')\nexcept SystemExit:\n    pass\n"
        "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH', file=sys.stderr)"
    )
    for args in (["--help"], ["list"], ["run", "--help"]):
        result = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True, timeout=60)
        assert result.stderr.strip().endswith("NO-TORCH"), (args, result.stderr)


def test_help_names_the_commands():
    help_text = tuitrain("--help").stdout
    for word in ("run", "list", "show"):
        assert word in help_text


def test_show_prints_resolved_toml():
    result = tuitrain("show", "rings", "--epochs", "7")
    assert result.returncode == 0 and "epochs = 7" in result.stdout and "[train]" in result.stdout


def test_list_names_every_builtin_preset():
    names = [line.split()[0] for line in tuitrain("list").stdout.splitlines() if line.strip()]
    assert {"neuron", "mlp", "lenet", "rings", "square", "wave"} <= set(names)
