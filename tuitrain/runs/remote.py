"""Provides RemoteTrainer: a RunControl whose Trainer runs in a child process, for the live app.

Why a process: in the app's process, training shares the interpreter lock with the UI and runs
on a non-main thread; both cost up to 3x in samples/s on small CPU networks. In a child it runs
on that process's main thread at headless speed, and the app only reads events from a pipe.
Commands go down the pipe as tuitrain.training.control dataclasses; events and errors come back.
"""

from __future__ import annotations

import dataclasses
import math
import multiprocessing
import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from tuitrain.config import Config
from tuitrain.data import idx
from tuitrain.errors import TuitrainError
from tuitrain.events import (
    URGENT,
    Consumer,
    EndStatus,
    Event,
    Inspection,
    RunEnded,
    RunStarted,
    StateChanged,
    StepProgress,
    TrainerState,
)
from tuitrain.store.run_dir import BranchSpec
from tuitrain.training.control import (
    Close,
    Command,
    Inspect,
    Pause,
    RequestInspection,
    Resume,
    SetLr,
    StepOnce,
    Stop,
    apply,
)
from tuitrain.training.vitals import ProcessVitals, Vitals

HEARTBEAT = 1.0  # seconds between the child's "still here" messages
POLL = 0.5  # seconds the reader waits on the pipe before checking that the child is alive
BATCH_SECONDS = 0.25  # the child sends routine events together, at most this late: one wake-up of the app, not 100


@dataclass(frozen=True)
class Failed:
    """The child could not build or run its Trainer; `message` is one line for the user."""

    message: str


@dataclass(frozen=True)
class Batch:
    """Routine events (epochs, steps, histories) sent together, in order."""

    events: tuple[Event, ...]


class Batcher:
    """The child's consumer: sends what matters at once and routine events at most every BATCH_SECONDS.

    A fast run (rings: ~100 epochs a second) otherwise wakes the app's reader for every epoch,
    and on a machine whose cores all train, each wake-up is time a training thread waits for.
    The first event of each kind (the first chart point) and a routine event after a quiet
    spell go at once: nothing to save there, and a first point held back is felt."""

    def __init__(self, send: Any, clock: Any = time.monotonic):
        self._send, self._clock = send, clock
        self._held: list[Event] = []
        self._routine_sent = -math.inf  # when routine events were last sent
        self._kinds: set[type] = set()  # the kinds sent so far
        self._lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        with self._lock:
            self._held.append(event)
            first = type(event) not in self._kinds
            self._kinds.add(type(event))
            if isinstance(event, URGENT):
                self._flush()
            elif first or self._clock() - self._routine_sent >= BATCH_SECONDS:
                self._routine_sent = self._clock()
                self._flush()

    def flush(self) -> None:
        """Send what is held (the heartbeat calls this, so nothing waits longer than a second)."""
        with self._lock:
            self._flush()

    def _flush(self) -> None:
        if self._held:
            held, self._held = self._held, []
            self._send(held[0] if len(held) == 1 else Batch(tuple(held)))


@dataclass(frozen=True)
class Alive:
    """The child's heartbeat, with its vitals (the app shows them)."""

    vitals: Vitals


@dataclass(frozen=True)
class Start:
    """What the child trains: sent once, first, so a child can be started (and import torch) before it is known."""

    config: Config
    out_dir: str
    run_dir: str | None
    resume_lr: float | None
    tensorboard: bool = False  # also write TensorBoard events (tuitrain.exports.tensorboard_live)
    branch: BranchSpec | None = None  # start a branch of another run instead (tuitrain.runs.start.branch_run)


_warm: tuple[Any, Connection] | None = None  # a spawned child waiting for its Start (see start_warm)


def _spawn() -> tuple[Any, Connection]:
    ctx = multiprocessing.get_context("spawn")  # fork would copy the app's threads and OpenMP state
    conn, child_end = ctx.Pipe()
    process = ctx.Process(target=serve, args=(child_end,), daemon=True, name="tuitrain-training")
    process.start()
    child_end.close()
    return process, conn


def start_warm() -> None:
    """Start a training process now, to be used by the next RemoteTrainer: it imports torch
    (seconds) while the app builds its screens or the user picks settings."""
    global _warm
    if _warm is None or not _warm[0].is_alive():
        _warm = _spawn()


def _take_warm() -> tuple[Any, Connection]:
    global _warm
    warm, _warm = _warm, None
    if warm is not None and warm[0].is_alive():
        return warm
    return _spawn()


def prepare() -> None:
    """Call before the app takes over stdout/stderr: multiprocessing's helper process needs the real ones."""
    from multiprocessing import resource_tracker

    resource_tracker.ensure_running()


class RemoteTrainer:
    """Starts `serve` in a spawned child; `run(consumer)` forwards its events until the run ends."""

    def __init__(
        self,
        config: Config,
        out_dir: str = "runs",
        run_dir: str | None = None,
        resume_lr: float | None = None,
        tensorboard: bool = False,
        branch: BranchSpec | None = None,
    ):
        self.config = config
        self._state: TrainerState = "idle"
        self._lr = config.train.lr
        self._run_dir = run_dir
        self.last_heard = time.monotonic()
        self._vitals: Vitals | None = None
        self._send_lock = threading.Lock()
        self._unread: deque[Event] = deque()  # the rest of a Batch
        self.process, self._conn = _take_warm()
        self._send(Start(config, out_dir, run_dir, resume_lr, tensorboard, branch))

    @property
    def lr(self) -> float:
        return self._lr

    @property
    def state(self) -> TrainerState:
        return self._state

    @property
    def run_dir(self) -> str | None:
        return self._run_dir

    def vitals(self) -> Vitals | None:
        """The child's last heartbeat, and for how long it has said nothing (one comes every second)."""
        silent = time.monotonic() - self.last_heard if self._state in ("running", "paused") else 0.0
        if self._vitals is None:
            return Vitals(0, 0.0, None, silent) if silent > 3 * HEARTBEAT else None
        return dataclasses.replace(self._vitals, silent_seconds=silent)

    # ------------------------------------------------------------------ control (any thread)
    def _send(self, command: Command | Start) -> None:
        with self._send_lock:
            try:
                self._conn.send(command)
            except (OSError, ValueError):  # the child has gone; its end event said why
                pass

    def pause(self) -> None:
        self._send(Pause())

    def resume(self) -> None:
        self._send(Resume())

    def stop(self, status: EndStatus = "interrupted") -> None:
        self._send(Stop(status))

    def step_once(self) -> None:
        self._send(StepOnce())

    def set_lr(self, lr: float) -> None:
        self._lr = float(lr)  # at once, so a second key press builds on the first
        self._send(SetLr(float(lr)))

    def request_inspection(self) -> None:
        self._send(RequestInspection())

    # ------------------------------------------------------------------ events
    def _receive(self) -> Event:
        if self._unread:
            return self._note(self._unread.popleft())
        while True:
            try:
                ready = self._conn.poll(POLL)
                message = self._conn.recv() if ready else None
            except (EOFError, OSError):
                message = None
                ready = True
            if (ready and message is None) or (not ready and not self.process.is_alive()):
                self._state = "finished"
                self.process.join(1)
                raise TuitrainError(f"the training process ended unexpectedly (exit code {self.process.exitcode})")
            if message is None:
                continue
            self.last_heard = time.monotonic()
            if isinstance(message, Alive):
                self._vitals = message.vitals
                continue
            if isinstance(message, Failed):
                self._state = "finished"
                raise TuitrainError(message.message)
            if isinstance(message, Batch):
                self._unread.extend(message.events[1:])
                message = message.events[0]
            return self._note(message)

    def _note(self, event: Event) -> Event:
        if isinstance(event, StateChanged):
            self._state, self._lr = event.state, event.lr
        elif isinstance(event, StepProgress):
            self._lr = event.lr
        elif isinstance(event, RunStarted):
            self._run_dir = event.run_dir
        elif isinstance(event, RunEnded):
            self._state = "finished"
        return event

    def run(self, consumer: Consumer | None = None) -> RunEnded:
        """Blocks (in the app's worker thread) until the child's run ends."""
        self._state = "running"
        while True:
            event = self._receive()
            if consumer is not None:
                consumer(event)
            if isinstance(event, RunEnded):
                return event

    def inspect(self) -> Inspection | None:
        """After the run: parameters and predictions of the final network (the child stays up for this)."""
        if self._state != "finished" or not self.process.is_alive():
            return None
        self._send(Inspect())
        while True:
            event = self._receive()
            if isinstance(event, Inspection):
                return event

    def close(self) -> None:
        """Let the child exit once its run has ended (it saves first when still training)."""
        self._send(Close())
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        try:
            while True:
                self._conn.recv()
        except (EOFError, OSError):
            pass


def off_the_main_thread(action: Callable[[], None]) -> Callable[..., None]:
    """A signal handler that runs `action` in a thread of its own. A handler runs on the main thread
    between two bytecodes, maybe inside `done.wait()` while that holds the event's non-reentrant
    lock: setting the event there hung the child for good (the app quit and multiprocessing sent
    SIGTERM just as Close woke the wait). The thread waits for the lock instead."""

    def handler(*_: Any) -> None:
        threading.Thread(target=action, daemon=True, name="tuitrain-signal").start()

    return handler


def serve(conn: Connection) -> None:
    """The child: import torch, wait for its Start, build and run the Trainer on this process's main
    thread, obey control commands.

    With `resume_lr`, it continues `run_dir` from its last checkpoint at that rate (after a divergence).
    """
    received: list[Any] = []  # the Start

    def receive() -> None:  # the data files are read while torch imports (zlib lets go of the GIL)
        try:
            received.append(start := conn.recv())
        except (EOFError, OSError):  # a warm child nobody used: the app has gone
            return
        if start.branch is None:  # a branch reads its parent's configuration later
            idx.prefetch(start.config.data)

    receiving = threading.Thread(target=receive, daemon=True, name="tuitrain-start")
    receiving.start()
    from tuitrain.runs.start import branch_run, new_run, resume_run  # torch: the seconds a warm child saves

    receiving.join()
    if not received:
        return
    start = received[0]
    config, out_dir, run_dir, resume_lr = start.config, start.out_dir, start.run_dir, start.resume_lr

    send_lock = threading.Lock()

    def send(message: Any) -> None:
        with send_lock:
            try:
                conn.send(message)
            except (OSError, ValueError):  # the app has gone: keep training to a saved stop
                pass

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C belongs to the app; it stops us cleanly
    try:
        if resume_lr is not None and run_dir is not None:
            trainer, _ = resume_run(run_dir, lr=resume_lr)
        elif start.branch is not None:
            branch = start.branch
            trainer, _ = branch_run(branch.parent, branch.checkpoint, **branch.changes)
        else:
            trainer, _ = new_run(config, out_dir, run_dir=run_dir)
    except TuitrainError as exc:
        return send(Failed(str(exc)))
    except Exception as exc:
        return send(Failed(f"{type(exc).__name__}: {exc}"))
    if start.tensorboard:
        from tuitrain.exports.tensorboard_live import TensorBoardLog

        trainer.consumers.append(TensorBoardLog(trainer))
    batcher = Batcher(send)
    trainer.consumers.append(batcher)
    done = threading.Event()

    def finish() -> None:  # SIGTERM/SIGHUP (terminal closed), or the app gone: save and leave
        trainer.stop("interrupted")
        done.set()

    on_signal = off_the_main_thread(finish)
    for name in ("SIGTERM", "SIGHUP"):
        signal.signal(getattr(signal, name), on_signal)

    def control() -> None:
        while True:
            try:
                command = conn.recv()
            except (EOFError, OSError):
                return finish()
            if isinstance(command, Close):
                return done.set()
            if isinstance(command, Inspect):
                batcher(trainer.inspect())
            elif isinstance(command, (Pause, Resume, Stop, StepOnce, SetLr, RequestInspection)):
                apply(trainer, command)

    def heartbeat() -> None:
        vitals = ProcessVitals()
        while not done.wait(HEARTBEAT):
            batcher.flush()
            send(Alive(vitals.sample()))

    threading.Thread(target=control, daemon=True, name="tuitrain-control").start()
    threading.Thread(target=heartbeat, daemon=True, name="tuitrain-heartbeat").start()
    try:
        trainer.run()
    except Exception as exc:
        batcher.flush()
        return send(Failed(f"{type(exc).__name__}: {exc}"))
    batcher.flush()
    done.wait()
