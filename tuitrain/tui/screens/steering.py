"""Provides the dashboard's steering without a user interface: pause, step, learning rate, stop, restart
and recover, done on a Source's RunControl, each answering with what to tell the user (a Reply).

No Textual here: a test drives a Steering with a source and a history, no App (tuitrain.tui.controls
says which key calls what, and when it is available).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

from tuitrain.config import apply_overrides
from tuitrain.errors import TuitrainError
from tuitrain.training.control import RunControl
from tuitrain.tui.series import RunHistory
from tuitrain.tui.source import Source

SAVE_WAIT = 15.0  # seconds quitting waits for the run to save before leaving anyway (exit 1)


def typed_number(query: str) -> float | None:
    """0.05, "lr 0.05", "learning rate = 1e-3" → the number; anything else → None."""
    match = re.fullmatch(
        r"\s*(?:(?:set\s+)?(?:lr|learning\s*rate)\s*(?:to|=)?\s*)?([-+]?(?:\d+\.?\d*|\.\d+)(?:e[-+]?\d+)?)\s*",
        query,
        re.IGNORECASE,
    )
    return float(match.group(1)) if match else None


@dataclass(frozen=True)
class Question:
    """Ask before doing it: `then` runs on yes."""

    text: str
    yes: str
    no: str
    then: Callable[[], Reply]


@dataclass(frozen=True)
class Reply:
    """What to tell the user after an action (a toast), and what the dashboard does next."""

    text: str = ""
    timeout: float = 3
    title: str = ""
    error: bool = False
    start: bool = False  # start the run (again) now: restart, recover
    ask: Question | None = None  # a question first (restart while training)


SAID = Reply()  # done, nothing to say


class Steering:
    """Everything that changes the run rather than the view, for one dashboard's source."""

    def __init__(self, source: Source, history: RunHistory) -> None:
        self.source = source
        self.history = history  # the run on screen (the dashboard replaces it at every start)

    @property
    def steerable(self) -> bool:
        """A run this dashboard started (not one it only watches)."""
        return self.source.steerable

    @property
    def controls(self) -> RunControl | None:
        return self.source.controls

    def training(self) -> bool:
        controls = self.controls
        return controls is not None and controls.state in ("running", "paused")

    def live(self) -> bool:
        """Training now, and the run on screen has not ended."""
        return self.training() and not self.history.ended

    def run_dir(self) -> str | None:
        return self.source.run_dir

    def toggle_pause(self) -> Reply:
        controls = self.controls
        if controls is not None:
            if self.history.state == "paused":
                controls.resume()
            else:
                controls.pause()
        return SAID

    def step(self) -> Reply:
        controls = self.controls
        if controls is not None:
            controls.step_once()
        return SAID

    def stop(self) -> Reply:
        controls = self.controls
        if controls is not None:
            controls.stop("interrupted")  # like Ctrl-C headless: checkpoint saved, resumable
        return SAID

    def lr(self, factor: float) -> Reply:
        """The learning rate times `factor`: live while training, else for the next start."""
        controls = self.controls
        if self.history.ended or controls is None or not self.training():
            config = self.source.config
            if config is None:
                return SAID
            config.train.lr *= factor
            self.history.lr = config.train.lr
            return Reply(f"r restarts with learning rate {config.train.lr:.4g}")
        lr = controls.lr * factor
        controls.set_lr(lr)
        return Reply(f"learning rate → {lr:.4g}", timeout=2)

    def set_lr(self, lr: float) -> Reply:
        """A typed learning rate (command palette): checked like --lr, live or for the next start."""
        config = self.source.config
        try:
            if not math.isfinite(lr):
                raise TuitrainError("the learning rate must be a finite number")
            if config is not None:
                apply_overrides(config, lr=lr)
        except TuitrainError as exc:
            return Reply(str(exc), title="Learning rate", error=True, timeout=5)
        controls = self.controls
        if controls is not None and self.live():
            controls.set_lr(lr)
            return Reply(f"learning rate → {lr:.4g}", timeout=2)
        if config is None:
            return SAID
        config.train.lr = lr
        self.history.lr = lr
        return Reply(f"r restarts with learning rate {lr:.4g}")

    def restart(self) -> Reply:
        """Start again with the same settings; while training, ask first (the run is saved, resumable)."""
        if not self.live():
            return Reply(start=True)

        def stop_then_start() -> Reply:
            controls = self.controls
            if controls is not None:
                controls.stop("interrupted")
            return Reply(start=True)

        return Reply(
            ask=Question(
                "Stop this run (saved, resumable) and start a new one?", "Restart", "Keep training", stop_then_start
            )
        )

    def recover(self) -> Reply:
        """After a divergence: continue from the last good checkpoint at half the learning rate."""
        from tuitrain.training.postmortem import recover_lr  # no torch: the advice's words and numbers

        lr = recover_lr(self.history.lr)
        self.source.recover(lr)
        return Reply(f"back to the last good checkpoint with learning rate {lr:.4g}", timeout=4, start=True)

    def export_csv(self) -> Reply:
        """The run's epochs as RUN_DIR/epochs.csv."""
        from tuitrain.exports.csv_rows import write_epoch_csv

        run_dir = self.run_dir()
        if run_dir is None:
            return Reply("no run directory yet: the run is still starting")
        try:
            path = write_epoch_csv(run_dir)
        except (TuitrainError, OSError) as exc:
            return Reply(str(exc), title="Export", error=True, timeout=6)
        return Reply(f"epochs written to {path}", title="Export", timeout=6)
