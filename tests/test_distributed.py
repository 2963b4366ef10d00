"""Tests for training on two processes (DistributedDataParallel over gloo, on CPU) against one process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_cli

PRESET = """
name = "tiny-rings"
[model]
kind = "mlp"
hidden = [32, 32]
[data]
dataset = "rings"
samples = 3000
[train]
optimizer = "adam"
lr = 0.01
batch_size = 100
epochs = 3
"""


def tuitrain(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tuitrain", *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )


def events(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, subprocess.CompletedProcess[str] | Path]:
    root = tmp_path_factory.mktemp("ddp")
    (root / "tiny.toml").write_text(PRESET)
    one = tuitrain("run", "tiny.toml", "--json", "--out", "one", cwd=root)
    two = tuitrain("run", "tiny.toml", "--json", "--out", "two", "--nproc", "2", cwd=root)
    return {"root": root, "one": one, "two": two}


@pytest.mark.slow  # DDP: torchrun and two training processes
def test_two_processes_follow_the_one_process_run(runs: dict) -> None:
    one, two = runs["one"], runs["two"]
    assert one.returncode == 0, one.stderr
    assert two.returncode == 0, two.stderr[-2000:]
    single, double = events(one.stdout), events(two.stdout)
    assert [e["event"] for e in double].count("start") == 1  # rank 0 alone prints
    assert double[0]["world_size"] == 2 and single[0]["world_size"] == 1
    end_one, end_two = single[-1], double[-1]
    assert end_two["status"] == "completed"
    # the same global batches and averaged gradients: the same network, up to float rounding
    assert end_two["test"]["loss"] == pytest.approx(end_one["test"]["loss"], rel=1e-3)
    assert end_two["test"]["accuracy"] == pytest.approx(end_one["test"]["accuracy"], abs=0.01)
    epochs_two = [e for e in double if e["event"] == "epoch"]
    assert [e["epoch"] for e in epochs_two] == [1, 2, 3]
    assert epochs_two[-1]["train"]["loss"] == pytest.approx(
        [e for e in single if e["event"] == "epoch"][-1]["train"]["loss"], rel=1e-3
    )


@pytest.mark.slow  # DDP: torchrun and two training processes
def test_rank_zero_alone_writes_one_run_directory(runs: dict) -> None:
    root: Path = runs["root"]
    [run_dir] = list((root / "two").iterdir())
    starts = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if '"start"' in line]
    assert len(starts) == 1 and starts[0]["world_size"] == 2
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "completed"


@pytest.mark.slow  # DDP: torchrun and two training processes
def test_resume_needs_the_same_number_of_processes(runs: dict) -> None:
    root: Path = runs["root"]
    [run_dir] = list((root / "two").iterdir())
    alone = run_cli("run", "--resume", str(run_dir), "--epochs", "4")  # refused before anything starts
    assert alone.returncode == 2
    assert alone.stderr.strip().endswith(
        "this run was trained by 2 process(es); resume it with the same number (--nproc 2), not 1"
    )
    together = tuitrain("run", "--resume", str(run_dir), "--epochs", "4", "--nproc", "2", "--json", cwd=root)
    assert together.returncode == 0, together.stderr[-2000:]
    assert [e["epoch"] for e in events(together.stdout) if e["event"] == "epoch"] == [4]


def test_nproc_refuses_a_batch_smaller_than_the_processes(tmp_path: Path) -> None:
    done = run_cli("run", "rings", "--epochs", "1", "--batch-size", "1", "--nproc", "2", "--out", tmp_path)
    assert done.returncode != 0
    assert "--batch-size 1 is smaller than --nproc 2" in done.stderr
