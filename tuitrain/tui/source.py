"""Provides the dashboard's event sources: a live Trainer, or a run directory being watched."""

from __future__ import annotations

import threading
from typing import Any, Callable

from tuitrain.config import Config
from tuitrain.events import event_from_dict

Sink = Callable[[Any], None]


class LiveSource:
    """Drives a training run: `run(sink)` blocks in a worker thread; the controls work from any thread.

    By default the run trains in a child process (tuitrain.remote) at headless speed; given a
    Trainer, it trains in this process instead (tests, and anything that needs the model at hand).
    Every run (and restart) keeps a run directory under `out_dir`, as headless runs do.
    """

    live = True

    def __init__(self, config: Config, trainer: Any = None, out_dir: str = "runs", writer: Any = None,
                 run_dir: str | None = None):
        self.config = config
        self.trainer = trainer
        self.in_process = trainer is not None
        self.out_dir = out_dir
        self.writer = writer  # in-process: may be made up front, so an unwritable --out fails early
        self.run_dir = run_dir  # child process: made up front by open_train for the same reason
        self._finished = threading.Event()
        self._finished.set()

    @property
    def title(self) -> str:
        return self.config.name

    def run(self, sink: Sink, restart: bool = False) -> Any:
        self._finished.clear()
        try:
            return self._run_in_process(sink, restart) if self.in_process else self._run_in_child(sink, restart)
        finally:
            self._finished.set()

    def _run_in_child(self, sink: Sink, restart: bool) -> Any:
        from tuitrain.remote import RemoteTrainer

        if self.trainer is not None:
            self.trainer.close()
            self.run_dir = None  # a restart is a new run with a directory of its own
        self.trainer = RemoteTrainer(self.config, self.out_dir, self.run_dir)
        return self.trainer.run(sink)

    def _run_in_process(self, sink: Sink, restart: bool) -> Any:
        from tuitrain.engine import Trainer
        from tuitrain.runs import RunWriter

        if restart or self.trainer.state != "idle":
            self.trainer = Trainer(self.config, [sink], data=self.trainer.data)
            self.writer = None
        else:
            self.trainer.consumers.append(sink)
        if self.writer is None:
            self.writer = RunWriter(self.trainer, self.out_dir)
        self.trainer.consumers.insert(0, self.writer)
        return self.trainer.run()

    def close(self) -> None:
        """Let a child process go once its run has saved."""
        if not self.in_process and self.trainer is not None:
            self.trainer.close()

    def wait(self, timeout: float) -> bool:
        """Block until the run in progress has ended (its checkpoint and summary written)."""
        return self._finished.wait(timeout)

    # control, safe from the UI thread
    def _call(self, name: str, *args: Any) -> None:
        if self.trainer is not None:
            getattr(self.trainer, name)(*args)

    def pause(self) -> None:
        self._call("pause")

    def resume(self) -> None:
        self._call("resume")

    def stop(self) -> None:
        self._call("stop", "interrupted")  # like Ctrl-C headless: checkpoint saved, resumable

    def step_once(self) -> None:
        self._call("step_once")

    def set_lr(self, lr: float) -> None:
        self._call("set_lr", lr)

    @property
    def lr(self) -> float | None:
        return self.config.train.lr if self.trainer is None else self.trainer.lr

    def request_inspection(self) -> None:
        self._call("request_inspection")

    def running(self) -> bool:
        return self.trainer is not None and self.trainer.state in ("running", "paused")

    def inspect_now(self) -> Any:
        """For a run that is not stepping (finished or stopped): inspect directly."""
        return None if self.trainer is None else self.trainer.inspect()


class WatchSource:
    """Follows a run directory: polls metrics.jsonl about twice a second, reloads last.pt for inspections."""

    live = False
    POLL = 0.5  # seconds between reads of metrics.jsonl
    RELOAD = 3.0  # seconds between checkpoint reloads for the look-inside panels

    def __init__(self, run_dir: str):
        import threading
        from pathlib import Path

        self.run_dir = Path(run_dir)
        self.trainer: Any = None
        self._stop = threading.Event()
        self._checkpoint_mtime = 0.0
        self._last_reload = 0.0
        self.title = self.run_dir.name

    def run(self, sink: Sink, restart: bool = False) -> None:
        from tuitrain.runs import METRICS, read_events

        offset = 0
        while not self._stop.is_set():
            lines, offset = read_events(self.run_dir / METRICS, offset)
            for line in lines:
                event = event_from_dict(line)
                if event is not None:
                    sink(event)
            self._stop.wait(self.POLL)

    def stop(self) -> None:
        self._stop.set()

    def running(self) -> bool:
        return False

    lr = None

    def inspect_now(self) -> Any:
        """Inspect the latest checkpoint; None when there is none yet or it has not changed."""
        import time

        from tuitrain import checkpoints
        from tuitrain.runs import CHECKPOINTS, trainer_from_run

        path = self.run_dir / CHECKPOINTS["last"]
        if not path.is_file():
            return None
        mtime = path.stat().st_mtime
        now = time.monotonic()
        if mtime == self._checkpoint_mtime or now - self._last_reload < self.RELOAD:
            return None
        self._last_reload = now
        if self.trainer is None:
            self.trainer = trainer_from_run(self.run_dir, "last")
        else:
            checkpoints.restore(self.trainer, checkpoints.load(path), path)
        self._checkpoint_mtime = mtime
        return self.trainer.inspect()

    # the controls do nothing: a watched run is steered by its own process
    def pause(self) -> None: ...
    def resume(self) -> None: ...
    def step_once(self) -> None: ...
    def set_lr(self, lr: float) -> None: ...
    def request_inspection(self) -> None: ...
