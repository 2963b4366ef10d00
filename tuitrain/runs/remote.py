"""Provides RemoteTrainer: a RunControl whose Trainer runs in a child process, for the live app.

Why a process: in the app's process, training shares the interpreter lock with the UI and runs
on a non-main thread; both cost up to 3x in samples/s on small CPU networks. In a child it runs
on that process's main thread at headless speed, and the app only reads events from a pipe.
Commands go down the pipe as tuitrain.training.control dataclasses; events and errors come back.
RemoteTrainer owns its reader-side thread, and WARM the process started ahead of its run.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import multiprocessing
import signal
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

from tuitrain.config import Config
from tuitrain.data import idx
from tuitrain.errors import TuitrainError
from tuitrain.events import (
    URGENT,
    Consumer,
    Event,
    Inspection,
    RunEnded,
    RunStarted,
    StateChanged,
    StepProgress,
    TrainerState,
)
from tuitrain.store.run_dir import BranchSpec, write_crash_log
from tuitrain.training.control import Close, ControlCommand, Inspect, LoopCommand, Requested, RunControlBase
from tuitrain.training.vitals import ProcessVitals, Vitals, cpu_seconds_of

if TYPE_CHECKING:
    from tuitrain.training.engine import Trainer

log = logging.getLogger(__name__)

HEARTBEAT = 1.0  # seconds between the child's "still here" messages
BUSY_CPU = 0.05  # CPU seconds a silent child must use between two looks to count as busy rather than hung
POLL = 0.5  # seconds the reader waits on the pipe before checking that the child is alive
BATCH_SECONDS = 0.25  # the child sends routine events together, at most this late: one wake-up of the app, not 100


@dataclass(frozen=True)
class Failed:
    """The child could not build or run its Trainer; `message` is one line for the user, `details` the
    traceback of an unexpected error (the parent writes it to the run's crash.log), `run_dir` the run
    directory the child knew of."""

    message: str
    details: str = ""
    run_dir: str | None = None


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


def _spawn() -> tuple[Any, Connection]:
    ctx = multiprocessing.get_context("spawn")  # fork would copy the app's threads and OpenMP state
    conn, child_end = ctx.Pipe()
    process = ctx.Process(target=serve, args=(child_end,), daemon=True, name="tuitrain-training")
    process.start()
    child_end.close()
    return process, conn


class WarmChild:
    """Owns at most one training process started ahead of its run: it imports torch (seconds) while
    the app builds its screens or the user picks settings. `take` hands it (or a new one) to a
    RemoteTrainer, which owns it from then on; `close` ends one nobody took."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._child: tuple[Any, Connection] | None = None

    def start(self) -> None:
        """Start a training process now, unless one is already waiting."""
        with self._lock:
            if self._child is None or not self._child[0].is_alive():
                self._child = _spawn()

    def take(self) -> tuple[Any, Connection]:
        """The waiting process and its pipe, or a new one when none is waiting (or it died)."""
        with self._lock:
            child, self._child = self._child, None
        if child is not None and child[0].is_alive():
            return child
        return _spawn()

    def close(self, timeout: float = 2.0) -> None:
        """End the waiting process, if any: without its Start it leaves as soon as its pipe closes."""
        with self._lock:
            child, self._child = self._child, None
        if child is None:
            return
        process, conn = child
        conn.close()
        process.join(timeout)
        if process.is_alive():
            log.warning("the unused training process %s did not leave; terminating it", process.pid)
            process.terminate()


WARM = WarmChild()  # the app's one spare training process (tuitrain.tui.launch starts it)


def start_warm() -> None:
    """Start a training process now, to be used by the next RemoteTrainer (see WarmChild)."""
    WARM.start()


def prepare() -> None:
    """Call before the app takes over stdout/stderr: multiprocessing's helper process needs the real ones."""
    from multiprocessing import resource_tracker

    resource_tracker.ensure_running()


class RemoteTrainer(RunControlBase):
    """Starts `serve` in a spawned child; `run(consumer)` forwards its events until the run ends.
    `send` pipes every loop command to the child unread; `close` lets the child go, and the thread
    that drains its pipe meanwhile is this object's (`join` waits for both)."""

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
        self._requested = Requested.of(config.train.lr, config.train.histories)  # what the child does, mirrored
        self._requested_lock = threading.Lock()
        self._run_dir = run_dir
        self.last_heard = time.monotonic()
        self._vitals: Vitals | None = None
        self._cpu_seen: tuple[float, float] | None = None  # the child's CPU seconds, and when they last grew
        self._send_lock = threading.Lock()
        self._unread: deque[Event] = deque()  # the rest of a Batch
        self._threads: list[threading.Thread] = []  # this object's: the drain started by close()
        self._closed = False
        self.process, self._conn = WARM.take()
        self._pipe(Start(config, out_dir, run_dir, resume_lr, tensorboard, branch))

    @property
    def lr(self) -> float:
        return self._requested.lr

    @property
    def histories(self) -> bool:
        return self._requested.histories

    @property
    def state(self) -> TrainerState:
        return self._state

    @property
    def run_dir(self) -> str | None:
        return self._run_dir

    def vitals(self) -> Vitals | None:
        """The child's last heartbeat, and for how long it has said nothing (one comes every second)."""
        now = time.monotonic()
        silent = now - self.last_heard if self._state in ("running", "paused") else 0.0
        if silent > 2 * HEARTBEAT:
            silent = min(silent, now - self._working_since(now))
        if self._vitals is None:
            return Vitals(0, 0.0, None, silent) if silent > 3 * HEARTBEAT else None
        return dataclasses.replace(self._vitals, silent_seconds=silent)

    def _working_since(self, now: float) -> float:
        """When the child last used CPU: a child that loads data or compiles holds its heartbeat back
        (the interpreter's lock) but is busy, not hung; only one that neither answers nor works is."""
        cpu = cpu_seconds_of(self.process.pid)
        if cpu is None:
            return self.last_heard
        if self._cpu_seen is None or cpu > self._cpu_seen[0] + BUSY_CPU:
            self._cpu_seen = (cpu, now)
        return self._cpu_seen[1]

    # ------------------------------------------------------------------ control (any thread)
    def send(self, command: LoopCommand) -> None:
        """Down the pipe, whatever the command; what it changes is mirrored at once, so a second key
        press builds on the first."""
        self._mirror(lambda requested: requested.after(command))
        self._pipe(command)

    def _mirror(self, change: Callable[[Requested], Requested]) -> None:
        with self._requested_lock:
            self._requested = change(self._requested)

    def _pipe(self, message: ControlCommand | Start) -> None:
        with self._send_lock:
            try:
                self._conn.send(message)
            except (OSError, ValueError) as exc:  # the child has gone; its end event said why
                log.debug("not sent to the training process (gone): %r (%s)", message, exc)

    # ------------------------------------------------------------------ events
    def _receive(self) -> Event:
        if self._unread:
            return self._note(self._unread.popleft())
        while True:
            try:
                ready = self._conn.poll(POLL)
                message = self._conn.recv() if ready else None
            except (EOFError, OSError) as exc:
                log.debug("the training process's pipe closed: %s", exc)
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
                raise TuitrainError(self._failure(message))
            if isinstance(message, Batch):
                self._unread.extend(message.events[1:])
                message = message.events[0]
            return self._note(message)

    def _failure(self, failed: Failed) -> str:
        """The user's one line; an unexpected error's traceback goes to the run's crash.log, named there."""
        if not failed.details:
            return failed.message
        run_dir = failed.run_dir or self._run_dir
        if run_dir is None:  # nothing was made to keep it in
            log.error("the training process failed: %s\n%s", failed.message, failed.details)
            return failed.message
        path = write_crash_log(failed.details, run_dir, "the training process")
        return f"{failed.message}; the traceback is in {path}" if path else failed.message

    def _note(self, event: Event) -> Event:
        if isinstance(event, StateChanged):
            self._state = event.state
            self._mirror(lambda requested: dataclasses.replace(requested, lr=event.lr))
        elif isinstance(event, StepProgress):
            self._mirror(lambda requested: dataclasses.replace(requested, lr=event.lr))
        elif isinstance(event, RunStarted):
            self._run_dir = event.run_dir
            self._mirror(lambda requested: requested.started(event.config))
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

    def inspect(self, *, units: bool = False, sample: int = 0) -> Inspection | None:
        """After the run: parameters and predictions of the final network, or with `units` what each unit
        learned (the child stays up for this)."""
        if self._state != "finished" or not self.process.is_alive():
            return None
        self._pipe(Inspect(bool(units), int(sample)))
        while True:
            event = self._receive()
            if isinstance(event, Inspection):
                return event

    def close(self) -> None:
        """Let the child exit once its run has ended (it saves first when still training); idempotent.
        Returns at once: a thread of this object's reads the pipe to its end meanwhile (see `join`)."""
        with self._send_lock:
            if self._closed:
                return
            self._closed = True
        self._pipe(Close())
        drain = threading.Thread(target=self._drain, daemon=True, name="tuitrain-drain")
        self._threads.append(drain)
        drain.start()

    def join(self, timeout: float | None = None) -> bool:
        """After `close`: wait until the child has left and its pipe is drained; whether it has."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in self._threads:
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        self.process.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return not self.process.is_alive() and not any(thread.is_alive() for thread in self._threads)

    def _drain(self) -> None:
        try:
            while True:
                self._conn.recv()
        except (EOFError, OSError) as exc:  # the child has left: the end of the pipe
            log.debug("the training process's pipe drained: %s", exc)


def off_the_main_thread(action: Callable[[], None]) -> Callable[..., None]:
    """A signal handler that runs `action` in a thread of its own. A handler runs on the main thread
    between two bytecodes, maybe inside `done.wait()` while that holds the event's non-reentrant
    lock: setting the event there hung the child for good (the app quit and multiprocessing sent
    SIGTERM just as Close woke the wait). The thread waits for the lock instead."""

    def handler(*_: Any) -> None:
        threading.Thread(target=action, daemon=True, name="tuitrain-signal").start()

    return handler


class Child:
    """The training process's side of the pipe: owns its threads (start, control, heartbeat) and the
    pipe's sending end. Its stderr is the app's terminal: it logs nothing above debug, and sends an
    unexpected error's traceback to the parent instead (Failed.details)."""

    def __init__(self, conn: Connection):
        self.conn = conn
        self.done = threading.Event()  # the app is done with this process (Close), or it must leave
        self.threads: list[threading.Thread] = []
        self._send_lock = threading.Lock()

    def thread(self, target: Callable[[], None], name: str) -> threading.Thread:
        thread = threading.Thread(target=target, daemon=True, name=f"tuitrain-{name}")
        self.threads.append(thread)
        thread.start()
        return thread

    def send(self, message: Any) -> None:
        with self._send_lock:
            try:
                self.conn.send(message)
            except (OSError, ValueError) as exc:  # the app has gone: keep training to a saved stop
                log.debug("not sent to the app (gone): %s", exc)

    def fail(self, exc: BaseException, run_dir: str | None) -> None:
        """Tell the app why this process cannot go on: a TuitrainError in its own words, any other error
        with its traceback."""
        if isinstance(exc, TuitrainError):
            self.send(Failed(str(exc)))
        else:
            details = "".join(traceback.format_exception(exc))
            log.debug("the training process failed", exc_info=exc)
            self.send(Failed(f"{type(exc).__name__}: {exc}", details, run_dir))

    def serve(self, trainer: Trainer, batcher: Batcher) -> None:
        """Obey the app's commands and send a heartbeat until the app is done with the process."""

        def finish() -> None:  # SIGTERM/SIGHUP (terminal closed), or the app gone: save and leave
            trainer.stop("interrupted")
            self.done.set()

        on_signal = off_the_main_thread(finish)
        for name in ("SIGTERM", "SIGHUP"):
            signal.signal(getattr(signal, name), on_signal)

        def control() -> None:
            while True:
                try:
                    command = self.conn.recv()
                except (EOFError, OSError) as exc:
                    log.debug("the app's pipe closed: %s", exc)
                    return finish()
                if not isinstance(command, ControlCommand):
                    log.debug("not a control command, ignored: %r", command)
                    continue
                match command:
                    case Close():
                        return self.done.set()
                    case Inspect(units, sample):
                        batcher(trainer.inspect(units=units, sample=sample))
                    case _:  # every loop command, unread: the Trainer's own control carries it out
                        trainer.send(command)

        def heartbeat() -> None:
            vitals = ProcessVitals()
            while not self.done.wait(HEARTBEAT):
                batcher.flush()
                self.send(Alive(vitals.sample()))

        self.thread(control, "control")
        self.thread(heartbeat, "heartbeat")

    def close(self) -> None:
        """Stop the threads this process still runs (the control thread may sit in a read: it is a daemon)."""
        self.done.set()
        current = threading.current_thread()
        for thread in self.threads:
            if thread is not current:
                thread.join(0.2)


def serve(conn: Connection) -> None:
    """The child: import torch, wait for its Start, build and run the Trainer on this process's main
    thread, obey control commands.

    With `resume_lr`, it continues `run_dir` from its last checkpoint at that rate (after a divergence).
    """
    child = Child(conn)
    received: list[Any] = []  # the Start

    def receive() -> None:  # the data files are read while torch imports (zlib lets go of the GIL)
        try:
            received.append(start := conn.recv())
        except (EOFError, OSError):  # a warm child nobody used: the app has gone
            log.debug("no Start came: the app has gone")
            return
        if start.branch is None:  # a branch reads its parent's configuration later
            idx.prefetch(start.config.data)

    receiving = child.thread(receive, "start")
    from tuitrain.runs.start import branch_run, new_run, resume_run  # torch: the seconds a warm child saves

    receiving.join()
    if not received:
        return
    start = received[0]
    config, out_dir, run_dir, resume_lr = start.config, start.out_dir, start.run_dir, start.resume_lr

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C belongs to the app; it stops us cleanly
    try:
        if resume_lr is not None and run_dir is not None:
            trainer, _ = resume_run(run_dir, lr=resume_lr)
        elif start.branch is not None:
            branch = start.branch
            trainer, _ = branch_run(branch.parent, branch.checkpoint, **branch.changes)
        else:
            trainer, _ = new_run(config, out_dir, run_dir=run_dir)
    except Exception as exc:
        return child.fail(exc, run_dir)
    if start.tensorboard:
        from tuitrain.exports.tensorboard_live import TensorBoardLog

        trainer.consumers.append(TensorBoardLog(trainer))
    batcher = Batcher(child.send)
    trainer.consumers.append(batcher)
    child.serve(trainer, batcher)
    try:
        trainer.run()
    except Exception as exc:
        batcher.flush()
        child.close()
        return child.fail(exc, trainer.run_dir)
    batcher.flush()
    child.done.wait()
    child.close()
