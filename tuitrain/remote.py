"""Provides a Trainer in a child process, driven with the same control calls, for the live app.

Why a process: in the app's process, training shares the interpreter lock with the UI and runs
on a non-main thread; both cost up to 3x in samples/s on small CPU networks. In a child it runs
on that process's main thread at headless speed, and the app only reads events from a pipe.
"""

from __future__ import annotations

import multiprocessing
import signal
import threading
from typing import Any, Callable

from tuitrain.config import Config
from tuitrain.errors import TuitrainError
from tuitrain.events import Inspection, RunEnded, RunStarted, StateChanged, StepProgress


def prepare() -> None:
    """Call before the app takes over stdout/stderr: multiprocessing's helper process needs the real ones."""
    from multiprocessing import resource_tracker

    resource_tracker.ensure_running()


class RemoteTrainer:
    """Starts `serve` in a spawned child; `run(consumer)` forwards its events until the run ends."""

    def __init__(self, config: Config, out_dir: str = "runs", run_dir: str | None = None):
        self.config = config
        self.state = "idle"  # idle | running | paused | finished
        self.lr = config.train.lr
        self.run_dir = run_dir
        ctx = multiprocessing.get_context("spawn")  # fork would copy the app's threads and OpenMP state
        self._conn, child_end = ctx.Pipe()
        self._send_lock = threading.Lock()
        self.process = ctx.Process(target=serve, args=(config, out_dir, run_dir, child_end), daemon=True,
                                   name="tuitrain-training")
        self.process.start()
        child_end.close()

    # ------------------------------------------------------------------ control (any thread)
    def _send(self, *message: Any) -> None:
        with self._send_lock:
            try:
                self._conn.send(message)
            except (OSError, ValueError):  # the child has gone; its end event said why
                pass

    def pause(self) -> None:
        self._send("pause")

    def resume(self) -> None:
        self._send("resume")

    def stop(self, status: str = "stopped") -> None:
        self._send("stop", status)

    def step_once(self) -> None:
        self._send("step_once")

    def set_lr(self, lr: float) -> None:
        self.lr = float(lr)  # at once, so a second key press builds on the first
        self._send("set_lr", float(lr))

    def request_inspection(self) -> None:
        self._send("request_inspection")

    # ------------------------------------------------------------------ events
    def _receive(self) -> Any:
        try:
            kind, payload = self._conn.recv()
        except (EOFError, OSError):
            self.state = "finished"
            self.process.join(5)
            raise TuitrainError(f"the training process ended unexpectedly (exit code {self.process.exitcode})") from None
        if kind == "error":
            self.state = "finished"
            raise TuitrainError(payload)
        if isinstance(payload, StateChanged):
            self.state, self.lr = payload.state, payload.lr
        elif isinstance(payload, StepProgress):
            self.lr = payload.lr
        elif isinstance(payload, RunStarted):
            self.run_dir = payload.run_dir
        elif isinstance(payload, RunEnded):
            self.state = "finished"
        return payload

    def run(self, consumer: Callable[[Any], None]) -> RunEnded:
        """Blocks (in the app's worker thread) until the child's run ends."""
        self.state = "running"
        while True:
            event = self._receive()
            consumer(event)
            if isinstance(event, RunEnded):
                return event

    def inspect(self) -> Inspection | None:
        """After the run: parameters and predictions of the final network (the child stays up for this)."""
        if self.state != "finished" or not self.process.is_alive():
            return None
        self._send("inspect")
        while True:
            event = self._receive()
            if isinstance(event, Inspection):
                return event

    def close(self) -> None:
        """Let the child exit once its run has ended (it saves first when still training)."""
        self._send("close")
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        try:
            while True:
                self._conn.recv()
        except (EOFError, OSError):
            pass


def serve(config: Config, out_dir: str, run_dir: str | None, conn: Any) -> None:
    """The child: build and run the Trainer on this process's main thread, obey control messages."""
    from tuitrain.engine import Trainer
    from tuitrain.runs import RunWriter

    send_lock = threading.Lock()

    def send(kind: str, payload: Any) -> None:
        with send_lock:
            try:
                conn.send((kind, payload))
            except (OSError, ValueError):  # the app has gone: keep training to a saved stop
                pass

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C belongs to the app; it stops us cleanly
    try:
        trainer = Trainer(config)
        writer = RunWriter(trainer, out_dir, run_dir=run_dir)
    except TuitrainError as exc:
        send("error", str(exc))
        return
    except Exception as exc:  # noqa: BLE001 - reported to the app, which shows it
        send("error", f"{type(exc).__name__}: {exc}")
        return
    trainer.consumers = [writer, lambda event: send("event", event)]
    done = threading.Event()

    def finish(*_: Any) -> None:  # SIGTERM/SIGHUP (terminal closed), or the app gone: save and leave
        trainer.stop("interrupted")
        done.set()

    for name in ("SIGTERM", "SIGHUP"):
        signal.signal(getattr(signal, name), finish)

    def control() -> None:
        while True:
            try:
                name, *args = conn.recv()
            except (EOFError, OSError):
                return finish()
            if name == "close":
                return done.set()
            if name == "inspect":
                send("event", trainer.inspect())
            else:
                getattr(trainer, name)(*args)

    threading.Thread(target=control, daemon=True, name="tuitrain-control").start()
    try:
        trainer.run()
    except Exception as exc:  # noqa: BLE001
        send("error", f"{type(exc).__name__}: {exc}")
        return
    done.wait()
