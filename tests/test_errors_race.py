"""Races, processes and limits (issue 26): signals to a race, its children, the caps on what it may start.

Signals are tested on the real process (the boundary is what is tested), always sent once a line
on stdout says where the race is; everything else runs in this process through `run_cli`.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from conftest import run_cli
from helpers import default_signals

from tuitrain.errors import UsageError
from tuitrain.headless import race
from tuitrain.runs import start as session
from tuitrain.store import run_dir as runs
from tuitrain.training.threads import usable_cpus

TINY = str(Path(__file__).parent / "data" / "tiny_rings.toml")
LONG = "100000"  # epochs: a run that trains until it is stopped
two_cpus = pytest.mark.skipif(usable_cpus() < 2, reason="a parallel race needs two usable CPUs")


def one_error(result, *words: str) -> None:
    """Exit 2, exactly one stderr line `Error: ...` holding `words`, no traceback."""
    assert result.code == 2, (result.out, result.err)
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.err
    assert all(w in lines[0] for w in words), lines[0]


# ----------------------------------------------------------------------------- the real process


class Race:
    """`tuitrain run ... --json` in a process of its own; its stdout lines arrive on a queue."""

    def __init__(self, *args: str, out: Path):
        self.out = out
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tuitrain", "run", *args, "--out", str(out), "--json"],
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            preexec_fn=default_signals,  # CI may start us with SIGINT/SIGHUP ignored
        )
        self.lines: queue.Queue[dict | None] = queue.Queue()
        self.seen: list[dict] = []
        self.err: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        self.stderr = threading.Thread(target=lambda: self.err.extend(self.proc.stderr or ()), daemon=True)
        self.stderr.start()

    def _read(self) -> None:
        for line in self.proc.stdout or ():
            self.lines.put(json.loads(line))
        self.lines.put(None)

    def wait_for(self, done, timeout: float = 90.0) -> None:
        """Read lines until `done(lines so far)` holds; fail at the deadline or at the end of output."""
        deadline = time.monotonic() + timeout
        while not done(self.seen):
            try:
                line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"not seen within {timeout}s; lines: {self.seen[-3:]}") from None
            assert line is not None, f"the race ended first: {''.join(self.err)}"
            self.seen.append(line)

    def finish(self, timeout: float = 90.0) -> list[dict]:
        self.proc.wait(timeout)
        while (line := self.lines.get(timeout=30)) is not None:
            self.seen.append(line)
        self.stderr.join(30)
        return self.seen

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)
        for pid in processes_of(self.out):  # children left behind (before the fix): not in other tests' way
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def processes_of(out: Path) -> list[int]:
    """Live processes whose command line names `out` (a race's children name their run directory)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if str(out) in cmdline and state != "Z":
            found.append(int(entry.name))
    return found


def training(names: int):
    """`done` for wait_for: `names` runs have reported an epoch (each child's signal handler is in place)."""
    return lambda seen: len({line["run"] for line in seen if line["event"] == "epoch"}) >= names


def no_queued(out: Path) -> list[str]:
    """The statuses `runs` lists under `out` (none may be queued)."""
    statuses = [r["status"] for r in runs.list_runs(out)] if out.is_dir() else []
    assert "queued" not in statuses
    return statuses


# ----------------------------------------------------------------------------- signals


@pytest.mark.slow  # signals to the real race process and its children
@pytest.mark.parametrize(
    "sig, parallel",
    [(signal.SIGTERM, "1"), pytest.param(signal.SIGHUP, "2", marks=two_cpus)],
    ids=["sequential-SIGTERM", "parallel-SIGHUP"],
)
def test_a_race_signalled_before_its_first_run_leaves_no_folders(tmp_path, sig, parallel):
    out = tmp_path / "out"
    proc = Race(TINY, "--epochs", LONG, "--lr", "0.05,0.1,0.2", "--parallel", parallel, out=out)
    try:
        proc.wait_for(lambda seen: bool(seen))
        assert proc.seen[0]["event"] == "race"
        proc.proc.send_signal(sig)
        lines = proc.finish()
    finally:
        proc.kill()
    assert proc.proc.returncode == 128 + sig, "".join(proc.err)
    assert lines[-1]["event"] == "ranking"
    # the runs not begun were never made; one already training (a slow machine) stopped and saved
    assert set(no_queued(out)) <= {"interrupted"}, "".join(proc.err)
    assert len(list(out.iterdir()) if out.is_dir() else []) <= int(parallel)
    assert not processes_of(out)
    assert "Traceback" not in "".join(proc.err), "".join(proc.err)


@pytest.mark.slow  # signals to the real race process and its children
@two_cpus
@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGTERM], ids=["SIGHUP", "SIGTERM"])
def test_a_parallel_race_signalled_mid_way_saves_its_runs_and_orphans_nothing(tmp_path, sig):
    out = tmp_path / "out"
    proc = Race(TINY, "--epochs", LONG, "--lr", "0.05,0.1,0.2", "--parallel", "2", out=out)
    try:
        proc.wait_for(training(2))
        proc.proc.send_signal(sig)
        lines = proc.finish()
    finally:
        proc.kill()
    assert proc.proc.returncode == 128 + sig, "".join(proc.err)
    assert lines[0]["event"] == "race" and lines[0]["parallel"] == 2
    assert not processes_of(out)  # every child ended with the race
    assert no_queued(out) == ["interrupted", "interrupted"]  # the third run was never made
    for run_dir in out.iterdir():
        assert json.loads((run_dir / "summary.json").read_text())["status"] == "interrupted"
        assert (run_dir / "last.pt").is_file()  # resumable
    ranking = lines[-1]
    assert ranking["event"] == "ranking" and len(ranking["runs"]) == 2
    assert "Traceback" not in "".join(proc.err)


@pytest.mark.slow  # signals to the real race process and its children
def test_a_sequential_race_hung_up_mid_way_saves_and_ranks_what_ran(tmp_path):
    out = tmp_path / "out"
    proc = Race(TINY, "--epochs", LONG, "--lr", "0.05,0.1,0.2", out=out)
    try:
        proc.wait_for(training(1))
        proc.proc.send_signal(signal.SIGHUP)
        lines = proc.finish()
    finally:
        proc.kill()
    assert proc.proc.returncode == 129, "".join(proc.err)
    assert no_queued(out) == ["interrupted"]
    assert lines[-1]["event"] == "ranking" and len(lines[-1]["runs"]) == 1


@pytest.mark.slow  # signals to the real race process and its children
@two_cpus
def test_a_race_child_killed_by_a_signal_is_named_in_one_line(tmp_path):
    out = tmp_path / "out"
    proc = Race(TINY, "--epochs", f"3,{LONG}", "--parallel", "2", out=out)
    try:
        proc.wait_for(lambda seen: any(line["event"] == "epoch" and line["run"].endswith(LONG) for line in seen))
        (victim,) = [r for r in proc.seen[0]["runs"] if r["label"] == f"epochs={LONG}"]
        (pid,) = processes_of(Path(victim["run_dir"]))  # the child: its command line names its folder
        os.kill(pid, signal.SIGKILL)
        lines = proc.finish()
    finally:
        proc.kill()
    assert proc.proc.returncode == 1
    named = [line for line in proc.err if "SIGKILL" in line]
    assert len(named) == 1 and victim["run"] in named[0] and f"[epochs={LONG}]" in named[0], proc.err
    assert lines[-1]["event"] == "ranking" and len(lines[-1]["runs"]) == 2


@pytest.mark.slow  # signals to the real race process and its children
@two_cpus
def test_the_children_of_a_killed_race_stop_and_save(tmp_path):
    out = tmp_path / "out"
    proc = Race(TINY, "--epochs", LONG, "--lr", "0.05,0.1", "--parallel", "2", out=out)
    try:
        proc.wait_for(training(2))
        proc.proc.kill()  # no chance to forward anything: the children see their stdin close
        proc.proc.wait(30)
        deadline = time.monotonic() + 60
        while processes_of(out) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not processes_of(out), "a child trains on alone"
    finally:
        proc.kill()
    for run_dir in out.iterdir():
        assert json.loads((run_dir / "summary.json").read_text())["status"] == "interrupted"


# ----------------------------------------------------------------------------- folders


def test_a_race_makes_each_folder_when_its_run_starts(tmp_path, monkeypatch):
    out = tmp_path / "out"
    seen: list[list[str]] = []
    new_run = session.new_run

    def recording(*args, **kwargs):
        seen.append(sorted(p.name for p in out.iterdir()))
        return new_run(*args, **kwargs)

    monkeypatch.setattr(session, "new_run", recording)
    result = run_cli("run", TINY, "--epochs", "1", "--lr", "0.05,0.1,0.2", "--out", out, "--json")
    assert result.code == 0, result.err
    lines = [json.loads(line) for line in result.out.splitlines()]
    planned = [r["run"] for r in lines[0]["runs"]]
    assert seen == [planned[:1], planned[:2], planned[:3]]  # none made before its turn
    assert [line["run_dir"] for line in lines if line["event"] == "start"] == [r["run_dir"] for r in lines[0]["runs"]]
    assert sorted(p.name for p in out.iterdir()) == sorted(planned)


def test_a_queued_folder_deleted_mid_race_is_skipped(tmp_path, monkeypatch):
    entries = race.plan(TINY, {"lr": (0.05, 0.1, 0.2), "epochs": 1}, tmp_path)  # the app's race: made at once
    new_run = session.new_run

    def deleting(*args, **kwargs):
        shutil.rmtree(entries[1].run_dir, ignore_errors=True)  # while the first run sets up
        return new_run(*args, **kwargs)

    monkeypatch.setattr(session, "new_run", deleting)
    result = run_cli("run-planned", *(e.run_dir for e in entries))
    assert result.code == 0, result.err
    (line,) = result.err.strip().splitlines()
    assert line.startswith("[lr=0.1] Warning: ") and entries[1].name in line and "deleted" in line
    assert not entries[1].run_dir.exists()  # not made again
    assert [r["status"] for r in runs.list_runs(tmp_path)] == ["completed", "completed"]
    assert "ranking:" in result.out


def test_a_race_above_the_cap_is_refused_before_anything_is_made(tmp_path):
    with pytest.raises(UsageError, match=f"{race.MAX_COMBINATIONS + 1} runs"):
        race.plan(TINY, {"seed": tuple(range(race.MAX_COMBINATIONS + 1))}, tmp_path)
    assert not list(tmp_path.iterdir())
    lrs = tuple(round(0.01 * (i + 1), 2) for i in range(16))
    assert len(race.combinations({"seed": tuple(range(16)), "lr": lrs})) == race.MAX_COMBINATIONS  # at the cap
    seeds = ",".join(str(i) for i in range(100))
    result = run_cli("run", TINY, "--seed", seeds, "--lr", "0.1,0.2,0.3", "--out", tmp_path / "o")
    one_error(result, "a race of 300 runs (3 --lr x 100 --seed)", f"the {race.MAX_COMBINATIONS} one race")
    assert not (tmp_path / "o").exists()


# ----------------------------------------------------------------------------- limits


def test_parallel_is_capped_at_the_usable_cpus_with_a_note(tmp_path, monkeypatch):
    monkeypatch.setattr(race, "usable_cpus", lambda: 1)
    result = run_cli("run", TINY, "--epochs", "1", "--lr", "0.05,0.1", "--parallel", "8", "--out", tmp_path, "--json")
    assert result.code == 0, result.err
    assert json.loads(result.out.splitlines()[0])["parallel"] == 1  # the value used: one at a time, here
    assert result.err.strip() == "Warning: --parallel 8 is more than the 1 usable CPUs: 1 runs at a time"
    entries = race.plan(TINY, {"lr": (0.05, 0.1, 0.2)}, tmp_path / "p", make=False)
    monkeypatch.setattr(race, "usable_cpus", lambda: 2)
    assert race.Race(entries, json_mode=True, parallel=64).parallel == 2
    assert race.Race(entries[:1], json_mode=True, parallel=64).parallel == 1


@pytest.fixture
def no_torchrun(monkeypatch):
    """Fail the test if torchrun would start: the run is refused before it."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"torchrun started: {args}")

    monkeypatch.setattr(subprocess, "call", refuse)


@pytest.mark.parametrize(
    "args, words",
    [
        (["nosuchpreset", "--nproc", "2"], ["unknown preset 'nosuchpreset'"]),
        ([TINY, "--nproc", str(usable_cpus() + 1)], [f"--nproc {usable_cpus() + 1} is more than the", "CPU"]),
        ([TINY, "--nproc", "2", "--on-diverge", "recover"], ["--on-diverge recover trains one process"]),
        (["--resume", "nowhere", "--nproc", "2"], ["nowhere: no such run directory"]),
        ([TINY, "--nproc", "2", "--lr", "500"], ["--lr"]),
        pytest.param(
            [TINY, "--nproc", "2", "--batch-size", "1"], ["--batch-size 1 is smaller than --nproc 2"], marks=two_cpus
        ),
        pytest.param(
            [TINY, "--nproc", "2", "--device", "cuda"],
            ["--device cuda: no CUDA GPU"],
            marks=pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA"),
        ),
    ],
)
def test_nproc_runs_are_checked_before_torchrun_starts(args, words, no_torchrun, tmp_path):
    one_error(run_cli("run", *args), *words)


def test_nproc_on_cuda_is_at_most_the_gpus(monkeypatch, no_torchrun):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    one_error(run_cli("run", TINY, "--device", "cuda", "--nproc", "2"), "--nproc 2 is more than the 1 GPU(s)")


def test_nproc_resume_is_checked_before_torchrun_starts(tmp_path, monkeypatch):
    result = run_cli("run", TINY, "--epochs", "1", "--out", tmp_path, "--json")
    assert result.code == 0, result.err
    (run_dir,) = tmp_path.iterdir()

    def refuse(*args, **kwargs):
        raise AssertionError("torchrun started")

    monkeypatch.setattr(subprocess, "call", refuse)
    if usable_cpus() >= 2:
        one_error(
            run_cli("run", "--resume", run_dir, "--epochs", "2", "--nproc", "2"),
            "trained by 1 process(es); resume it with the same number (no --nproc), not 2",
        )
    one_error(run_cli("run", "--resume", run_dir, "--nproc", "2"), "already trained 1 of 1 epochs")
    one_error(run_cli("run", "--resume", run_dir, "--epochs", "2", "--seed", "3", "--nproc", "2"), "--seed")


def test_threads_above_the_usable_cpus_are_capped_with_a_note(tmp_path):
    cpus = usable_cpus()
    result = run_cli("run", TINY, "--epochs", "1", "--threads", str(cpus + 5), "--out", tmp_path, "--json")
    assert result.code == 0, result.err
    assert (
        result.err.strip() == f"Warning: --threads {cpus + 5} is more than the {cpus} usable CPU(s) here: using {cpus}"
    )
    start = json.loads(result.out.splitlines()[0])
    assert start["threads"] == cpus and start["config"]["train"]["threads"] == cpus
