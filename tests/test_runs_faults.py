"""Run directories under stress: two owners, early stops, divergence, output that cannot be written, kill -9."""

from __future__ import annotations

import errno
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import run_cli
from helpers import PRESET, default_signals, wait_for_step
from helpers import start_tuitrain as tuitrain

from tuitrain.errors import TuitrainError
from tuitrain.headless.commands import run_command
from tuitrain.runs.signals import GracefulStop
from tuitrain.store import checkpoints
from tuitrain.store import run_dir as runs

TIMEOUT = 120


def write_preset(folder: Path, **train: object) -> Path:
    text = PRESET
    for key, value in train.items():
        text = text.replace(f"\n{key} = ", f"\n{key} = {value!r}  # was: ", 1)
    path = folder / "ringlet.toml"
    path.write_text(text)
    return path


def finish(proc: subprocess.Popen, timeout: float = TIMEOUT) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def cli(folder: Path, *args: str) -> tuple[int, str, str]:
    """`tuitrain ARGS` in this process, relative paths taken from `folder`: (exit code, stdout, stderr)."""
    where = Path.cwd()
    os.chdir(folder)
    try:
        result = run_cli(*args)
    finally:
        os.chdir(where)
    return result.code, result.out, result.err


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert "Traceback" not in stderr, stderr
    errors = [line for line in lines if line.startswith("Error:")]
    assert len(errors) == 1, stderr
    return errors[0]


# ----------------------------------------------------------------------------- one owner


@pytest.mark.slow  # the live run is another process
def test_a_second_process_cannot_train_the_same_run_directory(tmp_path):
    write_preset(tmp_path, epochs=200)
    first = tuitrain("run", "ringlet.toml", "--out", "out", "--json", cwd=tmp_path)
    try:
        run_dir = wait_for_step(tmp_path / "out")
        code, _, err = cli(tmp_path, "run", "--resume", str(run_dir), "--epochs", "300")
        assert code == 2
        line = one_error_line(err)
        assert f"process {first.pid}" in line and "in use" in line
        assert "epochs = 200" in (run_dir / "config.toml").read_text()  # the refused resume changed nothing
    finally:
        first.send_signal(signal.SIGTERM)
        finish(first)
    assert not (run_dir / ".lock").exists()


def test_a_lock_left_by_a_killed_process_is_taken_over(tmp_path):
    write_preset(tmp_path, epochs=3)
    code, _, err = cli(tmp_path, "run", "ringlet.toml", "--out", "out", "--epochs", "1")
    assert code == 0, err
    run_dir = next((tmp_path / "out").iterdir())
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    import socket

    (run_dir / ".lock").write_text(json.dumps({"pid": int(dead.stdout), "host": socket.gethostname()}))
    code, _, err = cli(tmp_path, "run", "--resume", str(run_dir), "--epochs", "2")
    assert code == 0, err
    assert json.loads((run_dir / "summary.json").read_text())["epoch"] == 2


# ----------------------------------------------------------------------------- early stops, divergence


@pytest.mark.slow  # SIGTERM to the real process
def test_a_stop_in_the_first_moments_leaves_a_resumable_checkpoint(tmp_path):
    write_preset(tmp_path, epochs=2)
    proc = tuitrain("run", "ringlet.toml", "--out", "out", "--json", cwd=tmp_path)
    run_dir = None
    deadline = time.monotonic() + TIMEOUT
    while run_dir is None and time.monotonic() < deadline:  # the moment the run directory has its start line
        for metrics in (tmp_path / "out").glob("*/metrics.jsonl"):
            if metrics.read_bytes().startswith(b'{"event": "start"'):
                run_dir = metrics.parent
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    code, _, err = finish(proc)
    assert code in (143, 0), err
    assert (run_dir / "last.pt").is_file()
    code, _, err = cli(tmp_path, "run", "--resume", str(run_dir))
    assert code == 0, err


def test_divergence_never_saves_non_finite_weights_and_resumes_lower(tmp_path):
    code, out, err = cli(tmp_path, "run", "square", "--out", "out", "--lr", "100", "--epochs", "3", "--json")
    assert code == 3, err
    run_dir = next((tmp_path / "out").iterdir())
    state = checkpoints.load(run_dir / "last.pt")
    assert all(bool(t.isfinite().all()) for t in state["model"].values())
    code, _, err = cli(tmp_path, "run", "--resume", str(run_dir), "--lr", "0.01")
    assert code == 0, err
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "completed"


def test_on_diverge_recover_rolls_back_at_half_the_rate(tmp_path):
    code, out, err = cli(
        tmp_path, "run", "square", "--out", "out", "--lr", "1.2", "--epochs", "40", "--on-diverge", "recover", "--json"
    )
    lines = [json.loads(line) for line in out.splitlines()]
    recoveries = [e for e in lines if e["event"] == "recovery"]
    assert recoveries and recoveries[0]["new_lr"] == recoveries[0]["lr"] / 2 == 0.6
    assert lines[-1]["event"] == "end"
    run_dir = next((tmp_path / "out").iterdir())
    recorded = [e for e in runs.read_events(run_dir / "metrics.jsonl")[0] if e["event"] == "recovery"]
    assert recorded == recoveries
    if lines[-1]["status"] == "completed":
        assert code == 0
    else:
        assert len(recoveries) == 3 and code == 3


# ----------------------------------------------------------------------------- output that cannot be written


@pytest.mark.slow  # the real process, its standard output closed or full
@pytest.mark.parametrize("stdout", ["closed", "full"])
def test_output_that_cannot_be_written_does_not_stop_training(tmp_path, stdout):
    write_preset(tmp_path, epochs=1)
    command = f"{sys.executable} -m tuitrain run ringlet.toml --out out " + (
        ">&-" if stdout == "closed" else "> /dev/full"
    )
    if stdout == "full" and not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full here")
    result = subprocess.run(
        ["bash", "-c", command],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        preexec_fn=default_signals,
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert len([line for line in result.stderr.splitlines() if "Warning" in line]) <= 1
    run_dir = next((tmp_path / "out").iterdir())
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "completed"


@pytest.mark.slow  # SIGTERM to the real process, blocked writing to a pipe
def test_a_signal_stops_a_run_whose_json_output_nobody_reads(tmp_path):
    (tmp_path / "ringlet.toml").write_text(
        PRESET.replace("samples = 60000", "samples = 2000")
        .replace("batch_size = 50", "batch_size = 1000")
        .replace("epochs = 8", "epochs = 100000")
    )
    read_end, write_end = os.pipe()  # never read: after ~64 KiB every write would block
    proc = subprocess.Popen(
        [sys.executable, "-m", "tuitrain", "run", "ringlet.toml", "--out", "out", "--json"],
        cwd=tmp_path,
        stdout=write_end,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        preexec_fn=default_signals,
    )
    os.close(write_end)
    try:
        run_dir = wait_for_step(tmp_path / "out")
        deadline = time.monotonic() + TIMEOUT  # ~500 epoch lines of JSON: far more than a pipe holds
        while time.monotonic() < deadline and len(runs.read_events(run_dir / "metrics.jsonl")[0]) < 500:
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 143, err
        assert json.loads((run_dir / "summary.json").read_text())["status"] == "interrupted"
    finally:
        os.close(read_end)
        if proc.poll() is None:
            proc.kill()


def test_a_signal_during_the_final_test_says_what_happens():
    class Testing:
        state = "testing"

        def stop(self, status):
            self.stopped = status

    notes = []
    stop = GracefulStop(Testing(), notice=notes.append)
    stop.handle(signal.SIGTERM)
    assert "completing the test evaluation" in notes[0] and "saving a checkpoint" not in notes[0]


def test_a_full_disk_at_the_first_checkpoint_fails_the_run_honestly(tmp_path, monkeypatch):
    real = checkpoints.atomic_write

    def no_room_for_checkpoints(path, data, durable=True):
        if str(path).endswith(".pt"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(path, data, durable)

    monkeypatch.setattr(checkpoints, "atomic_write", no_room_for_checkpoints)
    warnings = []
    monkeypatch.setattr("tuitrain.headless.commands.warn", warnings.append)
    code = run_command("neuron", None, str(tmp_path / "out"), True, {"epochs": 1})
    assert code == 1
    run_dir = next((tmp_path / "out").iterdir())
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "failed" and "checkpoint" in summary["message"]
    assert not any("previous file is intact" in w for w in warnings)  # there was no previous file


def test_resume_overrides_are_validated_before_anything_is_written(tmp_path):
    write_preset(tmp_path, epochs=1)
    code, _, err = cli(tmp_path, "run", "ringlet.toml", "--out", "out")
    assert code == 0, err
    run_dir = next((tmp_path / "out").iterdir())
    before = {p.name: p.read_bytes() for p in run_dir.iterdir()}
    code, _, err = cli(tmp_path, "run", "--resume", str(run_dir), "--epochs", "1000001")
    assert code == 2 and "--epochs" in one_error_line(err)
    assert {p.name: p.read_bytes() for p in run_dir.iterdir()} == before


# ----------------------------------------------------------------------------- kill -9


@pytest.mark.slow
def test_kill_9_loop_leaves_every_file_readable_and_every_resume_working(tmp_path):
    """20 kills at random moments, a resume after each: files stay parseable, the run completes."""
    write_preset(tmp_path, epochs=6)
    rng = random.Random(7)
    proc = tuitrain("run", "ringlet.toml", "--out", "out", "--json", cwd=tmp_path)
    run_dir = wait_for_step(tmp_path / "out")
    metrics = run_dir / "metrics.jsonl"

    def starts() -> int:
        return sum(e["event"] == "start" for e in runs.read_events(metrics)[0])

    for _ in range(20):
        time.sleep(rng.uniform(0.0, 0.8))  # at a random moment of training: mid-step, mid-checkpoint, mid-line
        proc.kill()
        proc.communicate(timeout=30)
        summary = json.loads((run_dir / "summary.json").read_text())  # parseable after every kill
        assert Path(summary["run_dir"]).name == run_dir.name
        runs.read_events(run_dir / "metrics.jsonl")
        checkpoints.load(run_dir / "last.pt")
        seen = starts()
        proc = tuitrain("run", "--resume", str(run_dir), "--json", cwd=tmp_path)
        deadline = time.monotonic() + 60
        while starts() == seen and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)  # until the resumed process trains again
    code, out, err = finish(proc)
    assert code == 0, err
    assert json.loads(out.splitlines()[-1])["status"] == "completed"
    events, _ = runs.read_events(run_dir / "metrics.jsonl")
    assert [e["epoch"] for e in runs.epoch_history(events)] == list(range(1, 7))
    with pytest.raises(TuitrainError):
        run_command(None, str(run_dir), None, True, {})  # done: nothing left to resume


def test_step_lines_thin_out_as_a_run_gets_older_and_every_epoch_stays(tmp_path, monkeypatch):
    """A ten-hour run of tiny epochs: step lines grow like log(time), not like time; epochs all kept."""
    from tuitrain.config import resolve_config
    from tuitrain.events import EpochEnded, Metrics, StepProgress
    from tuitrain.runs.start import new_run
    from tuitrain.store import writer as writer_module

    clock = [1000.0]
    monkeypatch.setattr(writer_module.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(writer_module, "MIDEPOCH_INTERVAL", 1e12)  # no checkpoints: this is about the file
    monkeypatch.setattr(writer_module, "CHECKPOINT_INTERVAL", 1e12)
    trainer, writer = new_run(resolve_config("rings", epochs=1_000_000), tmp_path)
    metrics = Metrics(0.5, 0.8)
    for i in range(1, 36_001):  # one step event a second for 10 hours, an epoch every 10 s
        clock[0] += 1.0
        writer(StepProgress(i // 10 + 1, i, i % 10, 0.5, 0.8, 0.01, 1000.0, float(i)))
        if i % 10 == 0:
            writer(EpochEnded(i // 10, i, metrics, metrics, 0.01, 10.0, 1000.0, float(i)))
    writer.close()
    events, _ = runs.read_events(writer.run_dir / "metrics.jsonl")
    steps = sum(e["event"] == "step" for e in events)
    assert sum(e["event"] == "epoch" for e in events) == 3_600
    assert steps < 6_000  # 36,000 unthinned
