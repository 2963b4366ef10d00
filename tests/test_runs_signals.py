"""The command line: signals to the real process (and the resume after one), exit codes, divergence.

The signal tests need the real process and are marked slow; the exit codes run the entry point here."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
from conftest import run_cli
from helpers import PRESET, wait_for_step
from helpers import start_tuitrain as tuitrain

from tuitrain.store import checkpoints
from tuitrain.store import run_dir as runs


def interrupt(tmp_path: Path, sig: int) -> tuple[Path, int, str]:
    (tmp_path / "ringlet.toml").write_text(PRESET)
    proc = tuitrain("run", "ringlet.toml", "--out", "out", "--json", cwd=tmp_path)
    try:
        run_dir = wait_for_step(tmp_path / "out")
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    return run_dir, proc.returncode, stdout


def check_interrupted(run_dir: Path, stdout: str) -> dict:
    lines = [json.loads(line) for line in stdout.splitlines()]
    assert lines[0]["event"] == "start" and lines[0]["run_dir"] == str(Path("out") / run_dir.name)
    assert lines[-1]["event"] == "end" and lines[-1]["status"] == "interrupted"
    events, offset = runs.read_events(run_dir / "metrics.jsonl")
    assert offset == (run_dir / "metrics.jsonl").stat().st_size  # every line whole and parseable
    assert events[0]["event"] == "start" and events[-1]["event"] == "end"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "interrupted"
    state = checkpoints.load(run_dir / "last.pt")
    assert (state["epoch"], state["step"]) == (summary["epoch"], summary["step"]) and state["step"] > 0
    assert state["epoch"] < 8
    assert 0 <= state["epoch_step"] < 840  # at a step boundary (0 only if the signal came during validation)
    return summary


@pytest.mark.slow  # SIGINT to the real process
def test_sigint_saves_and_the_run_resumes_to_completion(tmp_path):
    run_dir, code, stdout = interrupt(tmp_path, signal.SIGINT)
    assert code == 130
    before = check_interrupted(run_dir, stdout)
    proc = tuitrain("run", "--resume", str(run_dir), "--json", cwd=tmp_path)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    lines = [json.loads(line) for line in stdout.splitlines()]
    assert lines[0]["start_epoch"] == before["epoch"] and lines[-1]["status"] == "completed"
    assert lines[-1]["epoch"] == 8
    events, _ = runs.read_events(run_dir / "metrics.jsonl")
    assert [e["epoch"] for e in runs.epoch_history(events)] == list(range(1, 9))
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["test"] == lines[-1]["test"]
    assert checkpoints.load(run_dir / "last.pt")["epoch"] == 8


@pytest.mark.slow  # signals to the real process
@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_sigterm_and_sighup_stop_gracefully(tmp_path, sig, code):
    run_dir, returncode, stdout = interrupt(tmp_path, sig)
    assert returncode == code
    check_interrupted(run_dir, stdout)


def test_divergence_exits_3_and_the_summary_says_so(tmp_path):
    proc = run_cli("run", "square", "--lr", "50", "--epochs", "3", "--out", tmp_path / "out")
    stderr = proc.err
    assert proc.code == 3
    assert "lower learning rate" in stderr and stderr.count("\n") == 1
    (run_dir,) = (tmp_path / "out").iterdir()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "diverged" and "--lr" in summary["message"]
    events, _ = runs.read_events(run_dir / "metrics.jsonl")
    assert events[-1]["status"] == "diverged"


def test_bad_resume_is_a_one_line_error_with_exit_2(tmp_path):
    proc = run_cli("run", "--resume", str(tmp_path))
    stderr = proc.err
    assert proc.code == 2 and stderr.startswith("Error: ") and stderr.count("\n") == 1
    assert "not a run directory" in stderr
