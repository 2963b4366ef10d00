"""Ownership before anything else (issue 26): a refused second process touches nothing, locks say how
to clear them, a run that cannot start leaves no folder, and a run that fails says `failed` everywhere."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import TINY, run_cli, train_tiny

from tuitrain.config import apply_overrides, load_preset
from tuitrain.events import RunEnded
from tuitrain.files import TMP_MARK
from tuitrain.runs import start as session
from tuitrain.store import writer
from tuitrain.store.run_dir import list_runs


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_tiny(tmp_path_factory.mktemp("out"), epochs=2)


def copy_run(run: Path, where: Path) -> Path:
    shutil.copytree(run, where)
    return where


def lock_as(run: Path, pid: int, host: str | None = None) -> None:
    (run / ".lock").write_text(json.dumps({"pid": pid, "host": host or socket.gethostname(), "since": 0}))


def test_a_refused_resume_touches_nothing_of_the_live_run(finished: Path, tmp_path: Path) -> None:
    run = copy_run(finished, tmp_path / "live")
    lock_as(run, os.getpid())  # alive: this process
    half_written = run / f".last.pt{TMP_MARK}{os.getpid()}"
    half_written.write_bytes(b"the live run is writing this")
    with open(run / "metrics.jsonl", "ab") as f:
        f.write(b'{"event": "step", "st')  # the live run's line, half appended
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    done = run_cli("run", "--resume", run, "--epochs", "4")
    assert done.code == 2 and "in use by process" in done.err, done.err
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before


def test_a_lock_from_another_host_says_how_to_clear_it(finished: Path, tmp_path: Path) -> None:
    run = copy_run(finished, tmp_path / "elsewhere")
    lock_as(run, 12345, host="another-host.example")
    done = run_cli("run", "--resume", run, "--epochs", "4")
    assert done.code == 2 and "another-host.example" in done.err and "delete" in done.err
    assert done.err.count("\n") == 1


def test_a_lock_of_a_dead_process_is_taken_over(finished: Path, tmp_path: Path) -> None:
    run = copy_run(finished, tmp_path / "dead")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock_as(run, dead.pid)
    done = run_cli("run", "--resume", run, "--epochs", "3")
    assert done.code == 0, done.err
    assert not (run / ".lock").exists()


def test_a_folder_where_the_lock_file_belongs_is_one_line(finished: Path, tmp_path: Path) -> None:
    run = copy_run(finished, tmp_path / "lockdir")
    (run / ".lock").mkdir()
    done = run_cli("run", "--resume", run, "--epochs", "4")
    assert done.code == 2 and "is a directory, not a lock file" in done.err, done.err
    assert done.err.count("\n") == 1


def test_an_empty_config_is_an_error_not_all_defaults(finished: Path, tmp_path: Path) -> None:
    run = copy_run(finished, tmp_path / "runs" / "empty")
    (run / "config.toml").write_text("")
    done = run_cli("run", "--resume", run, "--epochs", "4")
    assert done.code == 2 and "is empty" in done.err, done.err
    (row,) = list_runs(tmp_path / "runs")
    assert row["preset"] == "tiny_rings" and row["status"] == "completed"  # from summary.json, not "custom"


def test_a_new_run_that_cannot_be_written_leaves_no_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def full_disk(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(writer, "HistoryLog", full_disk)  # after config.toml and metrics.jsonl exist
    done = run_cli("run", TINY, "--out", tmp_path / "runs")
    assert done.code == 2 and "No space left on device" in done.err, done.err
    assert done.err.count("\n") == 1
    assert list(tmp_path.joinpath("runs").iterdir()) == []
    assert list_runs(tmp_path / "runs") == []


def test_the_end_event_says_failed_when_the_final_checkpoint_cannot_be_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trainer, run_writer = session.new_run(apply_overrides(load_preset(TINY), epochs=2), tmp_path)
    heard: list[RunEnded] = []
    real_write = writer.checkpoints.atomic_write

    def no_last_checkpoint(path: str | os.PathLike[str], data: bytes | str, durable: bool = True) -> None:
        if Path(path).name == "last.pt" and trainer.epoch >= 2:
            raise OSError(28, "No space left on device")
        real_write(path, data, durable)

    monkeypatch.setattr(writer.checkpoints, "atomic_write", no_last_checkpoint)
    ended = trainer.run(lambda event: heard.append(event) if isinstance(event, RunEnded) else None)
    run_writer.close()
    summary = json.loads((Path(run_writer.run_dir) / "summary.json").read_text())
    assert ended.status == heard[0].status == summary["status"] == "failed"
    assert "No space left" in heard[0].message
    lines = (Path(run_writer.run_dir) / "metrics.jsonl").read_text().splitlines()
    assert json.loads(lines[-1])["status"] == "failed"


def damage_optimizer_step(run: Path) -> None:
    """An Adam state whose step count is two numbers: it loads, and fails at the first update."""
    state = torch.load(run / "last.pt", weights_only=True)
    first = next(iter(state["optimizer"]["state"].values()))
    first["step"] = torch.tensor([1.0, 2.0])
    torch.save(state, run / "last.pt")


def test_an_exception_while_training_ends_the_run_failed_with_its_message(finished: Path, tmp_path: Path) -> None:
    run = copy_run(finished, tmp_path / "damaged")
    damage_optimizer_step(run)
    done = run_cli("run", "--resume", run, "--epochs", "4", "--json")
    assert done.code == 1, done.err
    end = json.loads(done.out.splitlines()[-1])
    assert end["event"] == "end" and end["status"] == "failed"
    assert "RuntimeError" in end["message"]
    assert json.loads((run / "summary.json").read_text())["status"] == "failed"
    assert "Traceback" not in done.err


def test_an_unwritable_tensorboard_folder_fails_the_run_with_its_message(finished: Path, tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    run = copy_run(finished, tmp_path / "tb")
    (run / "tensorboard").write_text("a file where the folder belongs")
    done = run_cli("run", "--resume", run, "--epochs", "3", "--tensorboard", "--json")
    assert done.code == 1
    end = json.loads(done.out.splitlines()[-1])
    assert end["status"] == "failed" and "tensorboard" in end["message"]
    assert json.loads((run / "summary.json").read_text())["status"] == "failed"


@pytest.mark.slow  # the live run is another process (under strace)
def test_a_concurrent_resume_of_a_slowed_live_run_leaves_it_to_complete(tmp_path: Path) -> None:
    """The live run's every fsync is slowed (strace), so its temporaries exist while a second
    process tries to resume it; the live run still completes with every file whole."""
    strace = shutil.which("strace")
    if strace is None:
        pytest.skip("strace is not installed")
    out = tmp_path / "runs"
    command = [strace, "-f", "-qq", "-o", os.devnull, "-e", "trace=fsync", "-e", "inject=fsync:delay_enter=200000"]
    live = subprocess.Popen(
        [*command, sys.executable, "-m", "tuitrain", "run", TINY, "--epochs", "40", "--out", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        temporary: list[Path] = []
        while not temporary and live.poll() is None and time.monotonic() < deadline:
            temporary = list(out.glob(f"*/.last.pt{TMP_MARK}*")) if out.exists() else []
        if not temporary:
            pytest.skip("the live run wrote no temporary file in time")
        run = temporary[0].parent
        done = run_cli("run", "--resume", run, "--epochs", "50")
        assert done.code == 2 and "in use by process" in done.err, done.err
        assert live.wait(timeout=120) == 0, live.stderr.read() if live.stderr else ""
    finally:
        if live.poll() is None:
            live.send_signal(signal.SIGKILL)
            live.wait()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["epoch"] == 40
    assert not [p for p in run.iterdir() if TMP_MARK in p.name]


def test_random_bytes_in_a_checkpoint_are_not_a_checkpoint(finished: Path, tmp_path: Path) -> None:
    run = copy_run(finished, tmp_path / "noise")
    for seed in range(5):  # some random starts look like a pickle, which torch tried to unpickle
        (run / "last.pt").write_bytes(
            torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(seed))
            .to(torch.uint8)
            .numpy()
            .tobytes()
        )
        done = run_cli("run", "--resume", run, "--epochs", "4")
        assert done.code == 2 and "not a tuitrain checkpoint (not a PyTorch checkpoint file)" in done.err, done.err
        assert "Python objects" not in done.err


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 256 KiB tmpfs of the test's own (root only), unmounted afterwards."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(folder: Path) -> None:
    with open(folder / "filler", "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass


def test_a_full_disk_at_start_is_one_line_and_leaves_no_run(small_disk: Path) -> None:
    (small_disk / "runs").mkdir()
    fill(small_disk)
    done = run_cli("run", TINY, "--out", small_disk / "runs")
    assert done.code == 2 and done.err.startswith("Error:") and done.err.count("\n") == 1, done.err
    assert "No space left on device" in done.err
    assert list_runs(small_disk / "runs") == [] and list((small_disk / "runs").iterdir()) == []


def test_a_read_only_disk_at_start_and_at_lock_time_is_one_line(finished: Path, small_disk: Path) -> None:
    run = copy_run(finished, small_disk / "runs" / "done")
    with open(run / "metrics.jsonl", "ab") as f:
        f.write(b'{"event": "st')  # a torn tail that a resume would repair
    if subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], capture_output=True).returncode != 0:
        pytest.skip("cannot remount read-only here")
    for args in (["run", TINY, "--out", small_disk / "runs"], ["run", "--resume", run, "--epochs", "4"]):
        done = run_cli(*args)
        assert done.code == 2 and done.err.count("\n") == 1 and "Read-only file system" in done.err, (args, done.err)
    assert [row["name"] for row in list_runs(small_disk / "runs")] == ["done"]
