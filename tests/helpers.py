"""Helpers several test modules share: driving the app (until, live_app, screen_text), starting the
CLI in a process, and small training runs."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from html import unescape
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tuitrain.config import Config, resolve_config
from tuitrain.events import EpochEnded
from tuitrain.runs import start as session
from tuitrain.store import run_dir as runs
from tuitrain.tui.app import make_app
from tuitrain.tui.source import LiveRun, child_process
from tuitrain.tui.widgets.predictions import PredictionPanel

if TYPE_CHECKING:
    from tuitrain.data.sets import Dataset
    from tuitrain.store.run_dir import BranchSpec
    from tuitrain.training.control import RunControl
    from tuitrain.training.engine import Trainer

TIMEOUT = 30.0


class InProcess:
    """A LiveRun factory that trains in this process (tests that look at the model directly); restarts
    reuse the data. The app itself always trains in a child process (tuitrain.tui.source.child_process)."""

    def __init__(self) -> None:
        self.data: Dataset | None = None
        self.data_key: Any = None
        self.trainer: Trainer | None = None

    def __call__(
        self,
        config: Config,
        out_dir: str,
        run_dir: str | None,
        resume_lr: float | None,
        branch: BranchSpec | None = None,
    ) -> RunControl:
        from tuitrain.runs.start import branch_run, new_run, resume_run

        key = (config.data, config.train.seed, config.train.device)
        data = self.data if key == self.data_key else None
        if resume_lr is not None and run_dir is not None:
            self.trainer, _ = resume_run(run_dir, lr=resume_lr)
        elif branch is not None:
            self.trainer, _ = branch_run(branch.parent, branch.checkpoint, **branch.changes)  # type: ignore[arg-type]
        else:
            self.trainer, _ = new_run(config, out_dir, run_dir=run_dir, data=data)
        self.data, self.data_key = self.trainer.data, key
        return self.trainer


# the child-process mode starts a training process (a fresh interpreter importing torch): slow
MODES = ["in-process", pytest.param("child-process", marks=pytest.mark.slow)]


CELL_WIDTH = 12.2  # pixels per terminal column in Textual's SVG screenshots


async def until(pilot, condition, timeout: float = TIMEOUT, what: str = "condition") -> None:
    """Let the app run until `condition()` holds (no fixed sleeps)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.02)


def live_app(preset: str = "rings", mode: str = "in-process", show_speed: bool = True, **overrides):
    """An app on a live run; `factory.trainer` is the model at hand in-process."""
    config = resolve_config(preset, **overrides)
    factory = InProcess() if mode == "in-process" else child_process
    source = LiveRun(config, factory=factory)
    return make_app(source, show_speed=show_speed), source, factory


CELL = re.compile(
    r'<text class="[^"]*" x="([\d.]+)" y="[\d.]+" textLength="([\d.]+)" '
    r'clip-path="url\(#[^)]*-line-(\d+)\)">(.*?)</text>'
)


def screen_text(app) -> str:
    """What the screen shows, as plain text, read from the public screenshot API's SVG."""
    width, height = app.size
    rows = [[" "] * width for _ in range(height)]
    for x, _length, line, text in CELL.findall(app.export_screenshot()):
        column = round(float(x) / CELL_WIDTH)
        for offset, char in enumerate(unescape(text).replace("\xa0", " ")):
            if 0 <= int(line) < height and 0 <= column + offset < width:
                rows[int(line)][column + offset] = char
    return "\n".join("".join(row).rstrip() for row in rows).rstrip() + "\n"


PRESET = """name = "ringlet"
[model]
kind = "mlp"
hidden = [32, 32]
[data]
dataset = "rings"
samples = 60000
[train]
optimizer = "sgd"
lr = 0.05
batch_size = 50
epochs = 8  # 840 steps an epoch: a signal nearly always lands mid-epoch
device = "cpu"
"""


def default_signals() -> None:
    """CI may start us with SIGINT/SIGHUP ignored (nohup, background jobs); the child must see them."""
    for sig in (signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)


def start_tuitrain(*args: str, cwd: Path, **kw) -> subprocess.Popen:
    # one thread: tiny networks gain nothing from more, and spinning threads crawl on a busy machine
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "tuitrain", *args],
        cwd=cwd,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=default_signals,
        **kw,
    )


def wait_for_step(out: Path, timeout: float = 60.0) -> Path:
    """Poll until some run's metrics.jsonl shows a step event; return that run directory."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for metrics in out.glob("*/metrics.jsonl"):
            events, _ = runs.read_events(metrics)
            if any(e["event"] == "step" for e in events):
                return metrics.parent
        time.sleep(0.02)
    raise AssertionError("no step event within the timeout")


def run_tuitrain(*args, env=None, timeout=120):
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "tuitrain", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
        stdin=subprocess.DEVNULL,
    )


def small(epochs: int = 3, hidden: list[int] | None = None, optimizer: str | None = None):
    """Rings with 1200 points: 840 train, batch 100 -> 9 steps per epoch; about 10 ms an epoch."""
    config = resolve_config("rings", epochs=epochs, device="cpu", batch_size=100, optimizer=optimizer)
    config.data.samples = 1200
    if hidden is not None:
        config.model.hidden = hidden
    return config


class Recorder:
    def __init__(self):
        self.events = []

    def __call__(self, event):
        self.events.append(event)

    def epochs(self):
        return [e for e in self.events if isinstance(e, EpochEnded)]


class EventWaiter:
    """Collects a run's events from the thread that delivers them and lets the test wait for one."""

    def __init__(self, timeout: float = 60.0):  # seconds; only reached when something is broken
        self.events, self.cond, self.timeout = [], threading.Condition(), timeout

    def __call__(self, event):
        with self.cond:
            self.events.append(event)
            self.cond.notify_all()

    def wait_for(self, predicate, start=0):
        with self.cond:
            ok = self.cond.wait_for(lambda: any(predicate(e) for e in self.events[start:]), self.timeout)
        assert ok, f"timed out; last events: {self.events[-3:]}"
        return next(e for e in self.events[start:] if predicate(e))


def train(tmp_path, config, **writer_args):
    trainer, writer = session.new_run(config, tmp_path / "out", **writer_args)
    rec = Recorder()
    ended = trainer.run(rec)
    return trainer, writer, rec, ended


def params(trainer):
    return [p.detach().clone() for p in trainer.model.parameters()]


def resume(run_dir, epochs=None):
    trainer, _ = session.resume_run(run_dir, epochs=epochs)
    rec = Recorder()
    return trainer, rec, trainer.run(rec)


FASHION = ["T-shirt", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Boot"]


async def open_predictions(app, pilot):
    dash = app.screen
    await pilot.press("3")
    await until(pilot, lambda: dash.history.ended, what="run end")
    panel = dash.query_one(PredictionPanel)
    await until(
        pilot,
        lambda: (
            panel.predictions is not None
            and panel.predictions.confusion is not None
            and dash.history.inspection is not None
            and dash.history.inspection.step == dash.history.step
            and panel.test_inputs is not None
        ),
        what="predictions of the final network",
    )
    await pilot.pause()
    return panel


SNAPSHOTS = Path(__file__).parent / "snapshots"


def check_snapshot(name: str, text: str) -> None:
    """Compare with tests/snapshots/NAME.txt; UPDATE_SNAPSHOTS=1 writes it (a missing one fails)."""
    path = SNAPSHOTS / f"{name}.txt"
    if os.environ.get("UPDATE_SNAPSHOTS"):
        SNAPSHOTS.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"{path} is missing: run with UPDATE_SNAPSHOTS=1 and review it"
    expected = path.read_text(encoding="utf-8")
    if text != expected:
        import difflib

        lines = difflib.unified_diff(expected.split("\n"), text.split("\n"), "snapshot", "screen", lineterm="")
        diff = "\n".join(lines)
        raise AssertionError(f"{path} differs (UPDATE_SNAPSHOTS=1 to accept):\n{diff}")


async def until_running(pilot, condition, what: str, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if not pilot.app.is_running:
            raise AssertionError(f"the app stopped (return code {pilot.app.return_code}) before {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.02)


def fuzz_app(factory=None):
    source = LiveRun(resolve_config("rings", epochs=100_000), factory=factory or InProcess())
    return make_app(source)


class Spy:
    """InProcess, with a gate that holds each run at its start (the dashboard says STARTING meanwhile),
    and a record per run: how often its controls were closed, and whether one came while it ran."""

    def __init__(self) -> None:
        self.inner = InProcess()
        self.gate = threading.Event()
        self.gate.set()
        self.calls = 0
        self.runs: list[dict] = []
        self.trainers: list = []
        self.over = False

    def __call__(self, *args):
        self.calls += 1
        assert self.gate.wait(TIMEOUT)
        if self.over:
            raise RuntimeError("the test is over")
        trainer = self.inner(*args)
        self.trainers.append(trainer)
        record = {"closes": 0, "running": False, "closed_while_running": False}
        run, close = trainer.run, trainer.close

        def spied_run(consumer=None):
            record["running"] = True
            try:
                return run(consumer)
            finally:
                record["running"] = False

        def spied_close():
            record["closes"] += 1
            record["closed_while_running"] |= record["running"]
            close()

        trainer.run, trainer.close = spied_run, spied_close
        self.runs.append(record)
        return trainer

    def end(self) -> None:
        """Stop whatever still trains (a failing test may leave runs behind) and start no more."""
        self.over = True
        self.gate.set()
        for trainer in self.trainers:
            trainer.stop("interrupted")


@contextlib.asynccontextmanager
async def driving(app, spy: Spy):
    """app.run_test, and on the way out no run left training (else a failure would hang its teardown)."""
    async with app.run_test(size=(100, 30)) as pilot:
        try:
            yield pilot
        finally:
            spy.end()


# ----------------------------------------------------------------------------- a fake Source: recorded events

_RECORDED: dict[tuple, tuple] = {}


def recorded_events(preset: str = "rings", **overrides) -> list:
    """The events a finished in-process run of `preset` gave its consumer, trained once per session
    for each (preset, overrides) and replayed by every `ReplaySource` that asks for them."""
    import tempfile

    key = (preset, tuple(sorted(overrides.items())))
    if key not in _RECORDED:
        config = resolve_config(preset, **overrides)
        out = tempfile.mkdtemp(prefix="tuitrain-recorded-")
        trainer, writer = session.new_run(config, out)
        rec = Recorder()
        trainer.run(rec)
        writer.close()
        _RECORDED[key] = tuple(rec.events)
    return list(_RECORDED[key])


class ReplaySource:
    """A Source (tuitrain.tui.source) that replays recorded events instead of training: for app tests
    that only need a run's events (harlequin's in-memory adapter). A watched run, as `tuitrain watch`
    gives: not steerable, no controls, nothing to inspect. `hold` keeps `follow` from returning until
    the test calls `end()` (a run still in progress)."""

    steerable = False
    controls = None
    config = None

    def __init__(self, events: list, title: str = "replay", out_dir: str = "runs", hold: bool = False) -> None:
        self.events = list(events)
        self.title = title
        self.out_dir = out_dir
        self.run_dir: str | None = None
        self.followed = 0  # how often `follow` ran (an app restart follows again)
        self.closed = False
        self._ended = threading.Event()
        if not hold:
            self._ended.set()

    def follow(self, sink) -> None:
        self.followed += 1
        for event in self.events:
            if self.closed:
                return
            sink(event)
        self._ended.wait(TIMEOUT)

    def end(self) -> None:
        self._ended.set()

    def recover(self, lr: float) -> None:
        pass

    def inspect(self, units: bool = False, sample: int = 0):
        return None

    def close(self) -> None:
        self.closed = True
        self._ended.set()

    def wait(self, timeout: float) -> bool:
        return True
