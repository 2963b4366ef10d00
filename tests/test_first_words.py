"""Issue 27's first words: a headless divergence said once, the ETA early, the first chart points at once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tuitrain.events import Recovery, RunEnded
from tuitrain.headless.printers import PlainPrinter, RecoverableEnd


def run_merged(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`tuitrain ARGS` with stderr into stdout (`2>&1`, as on one terminal)."""
    return subprocess.run(
        [sys.executable, "-m", "tuitrain", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        timeout=300,
        cwd=cwd,
        env=os.environ,
    )


@pytest.mark.slow  # a real process
def test_a_divergence_prints_its_message_once(tmp_path: Path) -> None:
    done = run_merged("run", "square", "--lr", "50", "--epochs", "20", "--out", "out", cwd=tmp_path)
    assert done.returncode == 3, done.stdout
    advice = [line for line in done.stdout.splitlines() if "lower learning rate" in line]
    assert len(advice) == 1, done.stdout


@pytest.mark.slow  # a real process
def test_recover_prints_the_header_once_and_each_divergence_once(tmp_path: Path) -> None:
    args = ("run", "square", "--lr", "1.2", "--epochs", "40", "--on-diverge", "recover", "--out", "out")
    done = run_merged(*args, cwd=tmp_path)
    lines = done.stdout.splitlines()
    recoveries = [line for line in lines if "[recovery" in line]
    assert recoveries, done.stdout
    assert len([line for line in lines if line.startswith("square: ")]) == 1, done.stdout
    assert len([line for line in lines if line.lstrip().startswith("epoch ")]) == 1, done.stdout  # the header
    diverged_ends = [line for line in lines if line.startswith("diverged") and "[recovery" not in line]
    assert len(diverged_ends) == (1 if done.returncode == 3 else 0), done.stdout


def test_printer_skips_the_rollback_header_and_the_recovered_end() -> None:
    written: list[str] = []
    plain = PlainPrinter(write=written.append)
    RecoverableEnd(plain)(RunEnded("diverged", 0, 7, None, 0.1, 70.0, "loss became NaN"))
    assert written == []
    plain(Recovery(70, 50, 5, 0.1, 0.05, 1))
    assert len(written) == 1 and "[recovery 1]" in written[0]


def test_eta_comes_in_the_first_seconds_of_a_one_epoch_run() -> None:
    """Issue 27: a one-epoch run of 844 steps at ~236 steps/s showed `ETA …` until step 709 (3 s)."""
    from tuitrain.events import RunStarted, StepProgress
    from tuitrain.tui.series import RunHistory

    h = RunHistory()
    h.add(RunStarted("fashion", {"train": {"lr": 0.01}}, "cpu", "classes", 54_000, 6000, 10_000, 844, 1, 0, 1000, "x"))
    first_known = None
    for step in range(24, 845, 24):  # a progress event each ~0.1 s
        h.add(StepProgress(1, step, step, 0.5, 0.8, 0.01, 15_000.0, step / 236))
        if first_known is None and h.eta_seconds() is not None:
            first_known = step
    assert first_known is not None and first_known <= 300


class HeldSource:
    """A run that sends its start and first progress points, then trains on quietly until released."""

    title = "held"
    controls = None

    def __init__(self, events: list) -> None:
        import threading

        self.events = events
        self.release = threading.Event()
        self.taken = threading.Event()  # set when the dashboard has folded in everything sent

    def follow(self, sink) -> None:  # type: ignore[no-untyped-def]
        for event in self.events:
            self.taken.clear()
            sink(event)
            self.taken.wait(2)  # one point at a time, as training sends them (~0.1 s apart)
        self.release.wait(30)

    def inspect(self) -> None:
        return None

    def close(self) -> None:
        self.release.set()

    def wait(self, timeout: float) -> bool:
        return True


async def test_the_first_points_are_drawn_as_they_arrive(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Issue 27: the first visible line waited for the slow flush. With the slow cadence never coming
    (no timed flush, no redraw due), the first points still reach the chart: a line at once."""
    from tuitrain.events import RunStarted, StepProgress
    from tuitrain.tui import pacing
    from tuitrain.tui.app import make_app
    from tuitrain.tui.screens.dashboard import Dashboard

    monkeypatch.setattr(pacing, "FLUSH_INTERVAL", 3600.0)
    monkeypatch.setattr(pacing, "STATUS_INTERVAL", 3600.0)
    monkeypatch.setattr(pacing.RedrawPacer, "due", lambda self, now: False)
    start = RunStarted("rings", {"train": {"lr": 0.01}}, "cpu", "classes", 100, 10, 10, 13, 300, 0, 1000, "generated")
    steps = [StepProgress(1, n, n, 1.0 / n, 0.5, 0.01, 1000.0, n * 0.1) for n in (1, 2, 3)]
    source = HeldSource([start, *steps])
    drawn: list[int] = []
    draw = Dashboard.draw_charts

    def counted(self: Dashboard) -> None:
        drawn.append(len(self.history.train_loss))
        draw(self)

    monkeypatch.setattr(Dashboard, "draw_charts", counted)
    flush = Dashboard.flush

    def flushed(self: Dashboard) -> None:
        flush(self)
        if not self._pending:
            source.taken.set()

    monkeypatch.setattr(Dashboard, "flush", flushed)
    app = make_app(source)
    try:
        async with app.run_test(size=(100, 30)) as pilot:
            dash = app.screen
            assert isinstance(dash, Dashboard)
            for _ in range(250):
                if drawn and drawn[-1] >= 3:
                    break
                await pilot.pause(0.02)
            assert drawn and drawn[-1] == 3, drawn
    finally:
        source.release.set()
