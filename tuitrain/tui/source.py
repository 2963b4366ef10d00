"""Provides what a dashboard follows: a live run it can steer, or a run directory it watches."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from tuitrain.config import Config
from tuitrain.events import Consumer, EpochEnded, Event, Inspection, RunEnded, RunStarted, StepProgress, event_from_dict
from tuitrain.store.run_dir import BranchSpec
from tuitrain.training.control import RunControl

if TYPE_CHECKING:  # the app's process imports torch only when it trains or looks in-process
    from tuitrain.training.engine import Trainer

# (config, out_dir, run_dir or None for a new one, learning rate to resume run_dir at or None),
# and `branch=BranchSpec` when the run is a branch of another (passed only then)
ControlFactory = Callable[..., RunControl]


@runtime_checkable
class Source(Protocol):
    """A dashboard's view of a run: its title, its events, what it can do (steer or only watch), its
    controls (None when only watched, or before a steered run has started)."""

    @property
    def title(self) -> str: ...

    @property
    def steerable(self) -> bool:
        """A run this app starts and steers (else one it only watches: read-only)."""
        ...

    @property
    def controls(self) -> RunControl | None: ...

    @property
    def config(self) -> Config | None:
        """The settings the next start uses (a steerable run's; None when only watched)."""
        ...

    @property
    def out_dir(self) -> str:
        """Where the run's siblings live (the folder of runs it belongs to)."""
        ...

    @property
    def run_dir(self) -> str | None:
        """The run directory being written or watched (None before a steered run has made one)."""
        ...

    def follow(self, sink: Consumer) -> None:
        """Block (in a worker thread), handing every event to `sink`, until the run or the watching ends."""
        ...

    def recover(self, lr: float) -> None:
        """Make the next `follow` continue the last run from its last good checkpoint at `lr` (steerable only)."""
        ...

    def inspect(self, units: bool = False, sample: int = 0) -> Inspection | None:
        """Parameters and predictions of a run that is not stepping, or with `units` what each unit learned
        (images: test sample `sample` stepped through); None when there is nothing new."""
        ...

    def close(self) -> None:
        """Stop following; let a finished child process go."""
        ...

    def wait(self, timeout: float) -> bool:
        """Block until the run in progress has ended and saved; False on timeout."""
        ...


class Followed:
    """A source that says only how to follow it (title, controls, follow, inspect, close, wait: test
    stand-ins), completed as a watched run that cannot be steered."""

    steerable = False
    config: Config | None = None
    run_dir: str | None = None
    out_dir = "runs"

    def __init__(self, source: Any) -> None:
        self.source = source

    @property
    def title(self) -> str:
        return str(self.source.title)

    @property
    def controls(self) -> RunControl | None:
        controls: RunControl | None = self.source.controls
        return controls

    def follow(self, sink: Consumer) -> None:
        self.source.follow(sink)

    def recover(self, lr: float) -> None:
        pass

    def inspect(self, units: bool = False, sample: int = 0) -> Inspection | None:
        # a stand-in that only looks at parameters may take no arguments
        asked = self.source.inspect(units=units, sample=sample) if units or sample else self.source.inspect()
        inspection: Inspection | None = asked
        return inspection

    def close(self) -> None:
        self.source.close()

    def wait(self, timeout: float) -> bool:
        return bool(self.source.wait(timeout))


def as_source(source: object) -> Source:
    """`source` itself when it says everything a Source says, else `Followed(source)`."""
    return source if isinstance(source, Source) else Followed(source)


def child_process(
    config: Config,
    out_dir: str,
    run_dir: str | None,
    resume_lr: float | None,
    tensorboard: bool = False,
    branch: BranchSpec | None = None,
) -> RunControl:
    """What users get: the run trains in a child process at headless speed (tuitrain.runs.remote)."""
    from tuitrain.runs.remote import RemoteTrainer

    return RemoteTrainer(config, out_dir, run_dir, resume_lr, tensorboard, branch)


class LiveRun:
    """A run the dashboard starts and steers; every `follow` (a restart too) is a new run directory."""

    def __init__(
        self,
        config: Config,
        out_dir: str = "runs",
        run_dir: str | None = None,
        factory: ControlFactory = child_process,
        branch: BranchSpec | None = None,
    ):
        self.config = config
        self.branch = branch  # every start (a restart too) branches from the same checkpoint
        self.out_dir = out_dir
        self.first_run_dir = run_dir  # made up front by open_train, so an unwritable --out fails early
        self.factory = factory
        self._controls: RunControl | None = None
        self._resume_lr: float | None = None  # set by recover(): the next follow continues the last run
        self._running = threading.Lock()  # held while a run is followed: a restart waits for the old one
        # A run's controls read one pipe (a child process): one reader at a time. Its follow thread reads
        # until the end event, then inspect() may; close() starts a reader that drains it to the end.
        self._reading = threading.Lock()
        self._closed_controls: RunControl | None = None  # closed once: a second close is a second reader
        self._guard = threading.Lock()  # for the two flags below
        self._following = False  # a follow thread owns the controls (and reads their pipe)
        self._close_after_run = False  # close() came meanwhile: that thread closes them after the end event

    steerable = True

    @property
    def title(self) -> str:
        return self.config.name

    @property
    def controls(self) -> RunControl | None:
        return self._controls

    @property
    def run_dir(self) -> str | None:
        """The directory of the run started last (None until it has one)."""
        controls = self._controls
        return controls.run_dir if controls is not None else None

    def follow(self, sink: Consumer) -> None:
        with self._running:
            with self._guard:
                self._following, self._close_after_run = True, False
            try:
                self._close_controls()
                run_dir, self.first_run_dir = self.first_run_dir, None
                resume_lr, self._resume_lr = self._resume_lr, None
                if resume_lr is not None and self._controls is not None:
                    run_dir = self._controls.run_dir
                self._controls = None
                if self.branch is not None and resume_lr is None:
                    self._controls = self.factory(self.config, self.out_dir, None, None, branch=self.branch)
                    self._controls.run(with_inherited_history(sink))
                else:
                    self._controls = self.factory(self.config, self.out_dir, run_dir, resume_lr)
                    self._controls.run(sink)
            finally:
                with self._guard:
                    self._following = False
                    close_now = self._close_after_run
                if close_now:
                    self._close_controls()

    def recover(self, lr: float) -> None:
        """Make the next `follow` continue the last run from its last good checkpoint at `lr`."""
        self._resume_lr = lr

    def inspect(self, units: bool = False, sample: int = 0) -> Inspection | None:
        with self._reading:
            controls = self._controls
            if controls is None or controls is self._closed_controls:
                return None
            return controls.inspect(units=units, sample=sample)

    def close(self) -> None:
        """Let the run's process go; idempotent. While a run is followed, its thread does it after the end."""
        with self._guard:
            if self._following:
                self._close_after_run = True
                return
            self._close_controls()

    def _close_controls(self) -> None:
        with self._reading:
            controls = self._controls
            if controls is not None and controls is not self._closed_controls:
                self._closed_controls = controls
                controls.close()

    def wait(self, timeout: float) -> bool:
        if not self._running.acquire(timeout=timeout):
            return False
        self._running.release()
        return True


def with_inherited_history(sink: Consumer) -> Consumer:
    """A branch's events, led by its parent's up to the branch step (read from the branch's own
    metrics.jsonl once its start event names the folder), so its charts continue the parent's."""
    replayed = False

    def consume(event: Event) -> None:
        nonlocal replayed
        if not replayed and isinstance(event, RunStarted) and event.run_dir:
            replayed = True
            from tuitrain.store.run_dir import METRICS, read_events

            for line in read_events(Path(event.run_dir) / METRICS)[0]:
                if line.get("event") == "branch":
                    break
                inherited = event_from_dict(line) if line.get("event") in ("step", "epoch") else None
                if inherited is not None:
                    sink(inherited)
        sink(event)

    return consume


class WatchedRun:
    """Follows a run directory: polls metrics.jsonl and histories.jsonl about twice a second, reloads
    last.pt to look inside."""

    POLL = 0.5  # seconds between reads of metrics.jsonl
    RELOAD = 3.0  # seconds between checkpoint reloads for the look-inside panels
    PULSE = 2.0  # seconds between looks at summary.json: is its process still alive?
    STALE = 60.0  # a run on another host whose summary is older than this is taken for dead

    steerable = False
    config: Config | None = None  # its own process has the settings

    def __init__(self, run_dir: str):
        self.path = Path(run_dir)
        self.trainer: Trainer | None = None
        self._stop = threading.Event()
        self._checkpoint_mtime = 0.0
        self._last_reload = 0.0
        self._answered: tuple[bool, int] | None = None  # the last inspect's (units, sample), on this checkpoint

    @property
    def title(self) -> str:
        return self.path.name

    @property
    def run_dir(self) -> str:
        return str(self.path)

    @property
    def out_dir(self) -> str:
        return str(self.path.parent)

    def recover(self, lr: float) -> None:
        pass  # steered by its own process

    @property
    def controls(self) -> RunControl | None:
        return None  # a watched run is steered by its own process

    def follow(self, sink: Consumer) -> None:
        from tuitrain.store.histories import HistoryTail
        from tuitrain.store.run_dir import HISTORIES, METRICS, read_events

        offset, live, last_pulse = 0, False, 0.0
        histories = HistoryTail(self.path / HISTORIES)
        epoch = step = 0
        seconds = 0.0
        while not self._stop.is_set():
            lines, offset = read_events(self.path / METRICS, offset)
            for line in lines:
                event = event_from_dict(line)
                if event is not None:
                    sink(event)
                    live = isinstance(event, RunStarted) or (live and not isinstance(event, RunEnded))
                    if isinstance(event, StepProgress):
                        step, seconds = event.step, event.seconds
                    elif isinstance(event, EpochEnded):
                        epoch, step, seconds = event.epoch, event.step, event.total_seconds
            for record in histories.poll():  # after the metrics: a record never comes before its run's start
                sink(record)
            now = time.monotonic()
            if live and now - last_pulse >= self.PULSE:
                last_pulse = now
                gone = self.gone()
                if gone:  # killed (kill -9, power loss): say so instead of RUNNING with a frozen ETA
                    sink(self.crashed(gone, epoch, step, seconds))
                    live = False
            self._stop.wait(self.POLL)

    def gone(self) -> str:
        """Why the run's training process is taken for dead ("" while it lives, or cannot be told)."""
        from tuitrain.store.run_dir import owner_alive, read_summary

        summary = read_summary(self.path)
        if summary.get("status") != "running":
            return ""
        if summary.get("host") == socket.gethostname():
            if not owner_alive(summary):
                return f"its training process ({summary.get('pid')}) is gone"
            return ""
        updated = summary.get("updated_at")
        if isinstance(updated, (int, float)) and time.time() - updated > self.STALE:
            return f"no word from its process on {summary.get('host')} for {time.time() - updated:.0f} s"
        return ""

    def crashed(self, why: str, epoch: int, step: int, seconds: float) -> RunEnded:
        """The end event of a run whose process is gone, counted as `tuitrain runs` counts it: to the
        checkpoint `--resume` continues from, the epochs recorded after it named as lost."""
        from tuitrain.store.run_dir import read_summary, resume_point

        point = resume_point(self.path, read_summary(self.path))
        saved = point["epoch"] if isinstance(point["epoch"], int) else None
        if saved is None:
            resume = f"`tuitrain run --resume {self.path}` continues from its last checkpoint"
        else:
            resume = f"`tuitrain run --resume {self.path}` continues from epoch {saved}, its last checkpoint"
            epoch = saved
            step = point["step"] if isinstance(point["step"], int) else step
        lost = point["lost"]
        if lost:
            first, last = lost["from"], lost["to"]
            span = f"epoch {first} is" if first == last else f"epochs {first}-{last} are"
            resume += f"; {span} lost"
        return RunEnded("crashed", epoch, step, None, seconds, 0.0, f"{why}; {resume}")

    def inspect(self, units: bool = False, sample: int = 0) -> Inspection | None:
        """Inspect the latest checkpoint (Inspection.epoch: its epoch), reloaded at most every RELOAD
        seconds; None when there is none yet, or this look at it was given already."""
        from tuitrain.runs.start import trainer_from_run
        from tuitrain.store import checkpoints
        from tuitrain.store.run_dir import CHECKPOINTS

        path = self.path / CHECKPOINTS["last"]
        if not path.is_file():
            return None
        mtime = path.stat().st_mtime
        now = time.monotonic()
        asked = (bool(units), int(sample))
        if mtime != self._checkpoint_mtime and (self.trainer is None or now - self._last_reload >= self.RELOAD):
            self._last_reload = now
            if self.trainer is None:
                self.trainer = trainer_from_run(self.path, "last")
            else:
                checkpoints.restore(self.trainer, checkpoints.load(path), path)
            self._checkpoint_mtime = mtime
        elif self.trainer is None or asked == self._answered:
            return None  # another look (the Units panel's, another sample) is answered from the loaded one
        self._answered = asked
        return self.trainer.inspect(units=units, sample=sample)

    def close(self) -> None:
        self._stop.set()

    def wait(self, timeout: float) -> bool:
        return True
