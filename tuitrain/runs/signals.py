"""Provides GracefulStop: the first stop signal ends a run at the next step, a second one at once."""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

from tuitrain.training.control import RunControl

STOP_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")  # SIGHUP: the SSH session or terminal closed
PARENT_ENV = "TUITRAIN_RACE_PARENT"  # set in a race's child, whose stdin is a pipe from the race


def follow_parent() -> None:
    """In a race's child: SIGTERM itself (a graceful stop: it saves, then exits) when the race is gone.

    The race holds the write end of this process's stdin and never writes to it: end of file means
    that process has died, even by SIGKILL, so no child trains on alone. (Not PR_SET_PDEATHSIG: it
    fires again as each thread of the dying parent exits, and a second signal means "at once".)
    """
    if not os.environ.pop(PARENT_ENV, ""):
        return

    def watch() -> None:
        try:
            while os.read(0, 4096):
                pass
        except OSError:  # no stdin to watch: nothing to say
            return
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, daemon=True, name="tuitrain-race-parent").start()


def _stderr(message: str) -> None:
    try:
        print(f"Warning: {message}", file=sys.stderr, flush=True)
    except (OSError, ValueError, AttributeError):  # stderr closed or gone
        pass


class GracefulStop:
    """First SIGINT/SIGTERM/SIGHUP: stop at the next step boundary; a second one: exit at once.

    Installed only in the main thread of the headless CLI. Exit code 128 + signal number.
    """

    def __init__(self, trainer: RunControl, notice: Callable[[str], None] = _stderr):
        self.trainer = trainer
        self.notice = notice
        self.signum: int | None = None
        self.previous: dict[int, Any] = {}

    def install(self) -> GracefulStop:
        if threading.current_thread() is threading.main_thread():
            for name in STOP_SIGNALS:
                sig = getattr(signal, name, None)
                # an ignored signal stays ignored: `nohup` (SIGHUP) and `cmd &` in scripts (SIGINT)
                if sig is not None and signal.getsignal(sig) is not signal.SIG_IGN:
                    self.previous[sig] = signal.signal(sig, self.handle)
        return self

    def uninstall(self) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        self.previous.clear()

    def handle(self, signum: int, frame: Any = None) -> None:
        if self.signum is not None:
            raise SystemExit(128 + signum)  # second signal: at once (every file on disk is whole)
        self.signum = signum
        testing = self.trainer.state in ("testing", "finished")
        self.trainer.stop("interrupted")
        if signum == getattr(signal, "SIGHUP", None):
            return
        name = signal.Signals(signum).name
        if testing:  # training is done: what is left is the test evaluation, then the run completes
            self.notice(f"{name}: training has finished; completing the test evaluation (again to quit at once)")
        else:
            self.notice(f"{name}: stopping after this step and saving a checkpoint (again to quit at once)")

    @property
    def exit_code(self) -> int | None:
        return None if self.signum is None else 128 + self.signum
