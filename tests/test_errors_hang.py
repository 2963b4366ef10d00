"""Never hang, never read what is not a regular file (issue 26): a FIFO, device or folder where a run
file belongs is reported in one line or listed as unreadable, never opened for a blocking read."""

from __future__ import annotations

import os
import shutil
import stat
import threading
from pathlib import Path

import pytest
from conftest import CliResult, run_cli, train_tiny

RUN_FILES = ("metrics.jsonl", "summary.json", "config.toml", "last.pt", "best.pt", "histories.jsonl")
PATIENCE = 30.0  # seconds: far beyond what any of these commands needs on a run of 2 tiny epochs


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_tiny(tmp_path_factory.mktemp("out"), epochs=2)


def commands(run: Path, out: Path) -> list[list[object]]:
    return [
        ["runs", "--out", run.parent],
        ["runs", "--out", run.parent, "--json"],
        ["compare", run],
        ["export", run, "--format", "csv", "-o", out / "e.csv"],
        ["eval", run],
        ["run", "--resume", run, "--epochs", "3"],
        ["run", "--branch", run, "--epochs", "3", "--out", out],
    ]


def run_unblocking(args: list[object], fifo: Path | None) -> CliResult:
    """run_cli in a thread; if it is still running after PATIENCE (blocked opening the FIFO), a
    writer opens the FIFO to set it free, and the test fails saying so."""
    result: list[CliResult] = []
    worker = threading.Thread(target=lambda: result.append(run_cli(*args)), daemon=True)
    worker.start()
    worker.join(PATIENCE)
    if worker.is_alive() and fifo is not None:
        try:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))  # EOF for the blocked reader
        except OSError:
            pass
        worker.join(PATIENCE)
        pytest.fail(f"tuitrain {' '.join(map(str, args))} blocked reading the FIFO {fifo.name}")
    assert result, f"tuitrain {' '.join(map(str, args))} did not finish"
    return result[0]


def check_commands(run: Path, tmp_path: Path, bad: Path, what: str) -> None:
    for args in commands(run, tmp_path / "out"):
        done = run_unblocking(args, bad if stat.S_ISFIFO(os.lstat(bad).st_mode) else None)
        shown = " ".join(map(str, args[:2]))
        assert "Traceback" not in done.err, (shown, done.err)
        assert done.code in (0, 2), (shown, done.code, done.err)
        if done.code == 2:
            assert done.err.count("\n") == 1 and done.err.startswith("Error:"), (shown, done.err)
        if args[0] == "runs" and "--json" not in args:
            assert "unreadable" in done.out or bad.name in ("last.pt", "best.pt", "histories.jsonl"), done.out
        assert stat.S_IFMT(os.lstat(bad).st_mode) == stat.S_IFMT(what_mode(what)), "the special file was replaced"


def what_mode(what: str) -> int:
    return {"fifo": stat.S_IFIFO, "device": stat.S_IFCHR, "folder": stat.S_IFDIR}[what]


@pytest.mark.parametrize("name", RUN_FILES)
def test_a_fifo_where_a_run_file_belongs(finished: Path, tmp_path: Path, name: str) -> None:
    run = shutil.copytree(finished, tmp_path / "runs" / "fifo")
    (run / name).unlink()
    os.mkfifo(run / name)
    check_commands(run, tmp_path, run / name, "fifo")


def test_a_resume_names_the_fifo(finished: Path, tmp_path: Path) -> None:
    run = shutil.copytree(finished, tmp_path / "runs" / "named")
    (run / "metrics.jsonl").unlink()
    os.mkfifo(run / "metrics.jsonl")
    done = run_unblocking(["run", "--resume", run, "--epochs", "3"], run / "metrics.jsonl")
    assert done.code == 2 and "metrics.jsonl is a FIFO, not a file" in done.err, done.err


@pytest.mark.parametrize("name", ["metrics.jsonl", "summary.json", "last.pt"])
def test_a_device_where_a_run_file_belongs(finished: Path, tmp_path: Path, name: str) -> None:
    run = shutil.copytree(finished, tmp_path / "runs" / "device")
    (run / name).unlink()
    try:
        os.mknod(run / name, 0o666 | stat.S_IFCHR, os.makedev(1, 3))  # like /dev/null, in the test's folder
    except PermissionError:
        pytest.skip("mknod needs root")
    check_commands(run, tmp_path, run / name, "device")


@pytest.mark.parametrize("name", ["metrics.jsonl", "summary.json", "config.toml"])
def test_a_folder_where_a_run_file_belongs(finished: Path, tmp_path: Path, name: str) -> None:
    run = shutil.copytree(finished, tmp_path / "runs" / "folder")
    (run / name).unlink()
    (run / name).mkdir()
    check_commands(run, tmp_path, run / name, "folder")


@pytest.mark.parametrize("name", ["metrics.jsonl", "histories.jsonl", "summary.json"])
async def test_watch_quits_on_q_whatever_the_files_are(finished: Path, tmp_path: Path, name: str) -> None:
    from tuitrain.tui.app import make_app
    from tuitrain.tui.source import WatchedRun

    run = shutil.copytree(finished, tmp_path / "watched")
    (run / name).unlink()
    os.mkfifo(run / name)
    app = make_app(WatchedRun(str(run)))
    async with app.run_test(size=(100, 30)) as pilot:
        for _ in range(20):  # a few polls of the run's files, each of which must come back
            await pilot.pause(0.05)
        await pilot.press("q")
        await pilot.pause()
    assert not app.is_running
    assert stat.S_ISFIFO(os.lstat(run / name).st_mode)
