"""Provides the branch dialog (a new run from a run's checkpoint) and the messages that open runs and branches."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select, Static

from tuitrain import config as cfgmod
from tuitrain.errors import TuitrainError, escape
from tuitrain.files import open_regular
from tuitrain.store.run_dir import METRICS, BranchSpec, load_run_config, read_summary

LR_TAIL = 256 * 1024  # bytes of metrics.jsonl read from its end for the learning rate the run ended with
LR_EVENTS = ("step", "epoch", "state")  # the events that carry the learning rate in force


def ended_lr(run_dir: str) -> float | None:
    """The learning rate the run last trained with (after +, - or a typed change), from the end of its
    metrics.jsonl; None when no event there says."""
    try:
        with open_regular(Path(run_dir) / METRICS) as f:
            size = f.seek(0, 2)
            f.seek(max(0, size - LR_TAIL))
            data = f.read()
    except OSError:
        return None
    lines = data.split(b"\n")
    if size > LR_TAIL:
        lines = lines[1:]  # the first may be cut
    for raw in reversed(lines):
        try:
            event = json.loads(raw)
        except ValueError:
            continue
        if isinstance(event, dict) and event.get("event") in LR_EVENTS:
            lr = event.get("lr")
            if isinstance(lr, (int, float)) and not isinstance(lr, bool) and math.isfinite(lr) and lr > 0:
                return float(lr)
    return None


@dataclass
class OpenBranch(Message):
    """Start `spec` in a dashboard (the app does it: it owns the screens)."""

    spec: BranchSpec


@dataclass
class OpenRuns(Message):
    """Open the runs screen on `out_dir`."""

    out_dir: str


@dataclass
class OpenSetup(Message):
    """Go back to the setup screen (the dashboard that asks has stopped and saved its run)."""

    preset: str | None = None


@dataclass
class WatchRun(Message):
    """Follow `run_dir` in a read-only dashboard."""

    run_dir: str


class BranchDialog(ModalScreen[BranchSpec | None]):
    """Asks for the branch's checkpoint and settings; dismissed with a checked BranchSpec (or None)."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, run_dir: str):
        super().__init__()
        self.run_dir = run_dir
        self.problem = ""
        try:
            self.base: cfgmod.Config | None = load_run_config(run_dir)
        except TuitrainError as exc:
            self.base, self.problem = None, str(exc)
        self.summary = read_summary(run_dir)
        self.lr = ended_lr(run_dir)  # live changes count: the branch goes on from where the run ended

    def compose(self) -> ComposeResult:
        base = self.base
        train = base.train if base is not None else cfgmod.TrainConfig()
        done = self.summary.get("epoch") or 0
        best = self.summary.get("best") or {}
        checkpoints = [("last", f"last (epoch {done})")]
        if best.get("epoch") is not None:
            checkpoints.append(("best", f"best (epoch {best['epoch']})"))
        with Vertical(id="branch-dialog"):
            yield Label(Text(f"Branch {escape(self.run_dir)}", no_wrap=True, overflow="ellipsis"))
            with Horizontal(classes="field"):
                yield Label("Checkpoint")
                yield Select([(text, key) for key, text in checkpoints], value="last", allow_blank=False,
                             id="branch-checkpoint", compact=True)  # fmt: skip
            with Horizontal(classes="field"):
                yield Label("Optimizer")
                yield Select([(o, o) for o in cfgmod.OPTIMIZERS], value=train.optimizer, allow_blank=False,
                             id="branch-optimizer", compact=True)  # fmt: skip
            with Horizontal(classes="field"):
                yield Label("Learning rate")
                yield Input(f"{self.lr if self.lr is not None else train.lr:g}", id="branch-lr", compact=True)
            with Horizontal(classes="field"):
                yield Label("Epochs")
                yield Input(str(max(train.epochs, done) + max(1, train.epochs // 2)), id="branch-epochs", compact=True)
            yield Static(Text(self.problem), id="branch-error")
            with Horizontal(classes="buttons"):
                yield Button("Start branch", variant="success", id="branch-start", compact=True)
                yield Button("Cancel", id="branch-cancel", compact=True)

    def on_mount(self) -> None:
        self.query_one("#branch-lr").focus()

    def spec(self) -> BranchSpec:
        """The dialog's values as a branch, checked like `run --branch` flags (TuitrainError when not)."""
        lr_text = self.query_one("#branch-lr", Input).value.strip()
        epochs_text = self.query_one("#branch-epochs", Input).value.strip()
        try:
            lr, epochs = float(lr_text), int(epochs_text)
        except ValueError:
            raise TuitrainError("learning rate must be a number and epochs a whole number") from None
        which = str(self.query_one("#branch-checkpoint", Select).value)
        optimizer = str(self.query_one("#branch-optimizer", Select).value)
        spec = BranchSpec(self.run_dir, which, {"lr": lr, "epochs": epochs, "optimizer": optimizer})
        spec.config()  # raises on a value out of range
        state_epoch = (self.summary.get("best") or {}).get("epoch") if which == "best" else self.summary.get("epoch")
        if isinstance(state_epoch, int) and epochs <= state_epoch:
            raise TuitrainError(f"epochs: the {which} checkpoint is at epoch {state_epoch}; ask for more")
        return spec

    @on(Input.Submitted)
    @on(Button.Pressed, "#branch-start")
    def start(self) -> None:
        try:
            spec = self.spec()
        except TuitrainError as exc:
            self.query_one("#branch-error", Static).update(Text(f"✗ {exc}"))
            return
        self.dismiss(spec)

    @on(Button.Pressed, "#branch-cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)
