"""Provides bounded chart series and a run summary built from engine events (no UI imports)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from tuitrain.events import EpochEnded, HistoryRecord, Inspection, RunEnded, RunStarted, StateChanged, StepProgress
from tuitrain.store.histories import Histories

MAX_POINTS = 1500  # per series; older points are merged pairwise beyond this
SMOOTHING_LEVELS = (0.0, 0.5, 0.8, 0.9, 0.95, 0.98)
# the run's state in the words of the run files: before the end event, then exactly its `status`
# (completed | stopped | interrupted | diverged | failed; summary.json may also say aborted)
ACTIVE_STATES = ("starting", "running", "paused")
ETA_MIN_SECONDS = 1.0  # no ETA before this much (steady) training time in this session ...
ETA_MIN_FRACTION = 0.02  # ... and this share of the run's steps (or ETA_MIN_EPOCHS epochs) done
ETA_MIN_EPOCHS = 2


class Series:
    """x/y points with bounded memory: when full, the older half is averaged pairwise."""

    def __init__(self, limit: int = MAX_POINTS):
        self.limit = limit
        self.x: list[float] = []
        self.y: list[float] = []

    def __len__(self) -> int:
        return len(self.x)

    def add(self, x: float, y: float | None) -> None:
        if y is None or not math.isfinite(y):
            return
        self.x.append(float(x))
        self.y.append(float(y))
        if len(self.x) > self.limit:
            half = (len(self.x) // 2) & ~1
            xs, ys = self.x[:half], self.y[:half]
            self.x = [(xs[i] + xs[i + 1]) / 2 for i in range(0, half, 2)] + self.x[half:]
            self.y = [(ys[i] + ys[i + 1]) / 2 for i in range(0, half, 2)] + self.y[half:]

    def cut(self, last_x: float) -> None:
        """Drop the points after `last_x` (the ones a resume trains again)."""
        keep = len(self.x)
        while keep and self.x[keep - 1] > last_x:
            keep -= 1
        if keep < len(self.x):
            del self.x[keep:], self.y[keep:]

    def smoothed(self, factor: float) -> list[float]:
        """Exponential moving average with bias correction (like TensorBoard's smoothing)."""
        if factor <= 0:
            return list(self.y)
        out, avg = [], 0.0
        for i, value in enumerate(self.y, 1):
            avg = factor * avg + (1 - factor) * value
            out.append(avg / (1 - factor**i))
        return out


@dataclass
class RunHistory:
    """Everything the dashboard shows, folded from engine events in order."""

    preset: str = ""
    device: str = ""
    task: str = ""
    epochs: int = 0
    steps_per_epoch: int = 0
    parameters: int = 0
    epoch: int = 0
    step: int = 0
    epochs_done: int = 0  # epochs completed: what the status line and the end banner count
    lost_to: int = 0  # a crashed run: the last epoch recorded after its last checkpoint (lost), else 0
    lr: float = 0.0
    samples_per_s: float = 0.0
    train_seconds: float = 0.0
    state: str = "starting"  # starting | running | paused, then the end event's status
    message: str = ""
    test: Any = None
    train_loss: Series = field(default_factory=Series)  # per progress event, x = step
    train_acc: Series = field(default_factory=Series)  # per progress event, x = step, a fraction
    valid_loss: Series = field(default_factory=Series)  # per epoch, x = step
    epoch_train: Series = field(default_factory=Series)  # per epoch: accuracy (or loss for regression)
    epoch_valid: Series = field(default_factory=Series)
    pace_start: tuple[int, float] | None = None  # (step, training seconds) at this session's first progress
    inspection: Inspection | None = None
    histories: Histories = field(default_factory=Histories)  # every tensor at the recorded steps, bounded
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def regression(self) -> bool:
        return self.task == "regression"

    @property
    def ended(self) -> bool:
        return self.state not in ACTIVE_STATES

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch

    @property
    def steps_into_epoch(self) -> int:
        """Steps done in the epoch in progress (0 between epochs)."""
        if not self.steps_per_epoch:
            return 0
        return max(0, self.step - self.epochs_done * self.steps_per_epoch)

    def eta_seconds(self) -> float | None:
        """Training time left at this session's pace (evaluation not included); None until meaningful.

        Meaningful: at least ETA_MIN_SECONDS of training measured, and ETA_MIN_FRACTION of the steps
        or ETA_MIN_EPOCHS epochs done since this session started (start-up costs skew the first steps)."""
        if self.state != "running" or self.pace_start is None or not self.total_steps:
            return None
        first_step, first_seconds = self.pace_start
        steps, seconds = self.step - first_step, self.train_seconds - first_seconds
        if steps <= 0 or seconds < ETA_MIN_SECONDS:
            return None
        if steps < ETA_MIN_FRACTION * self.total_steps and steps < ETA_MIN_EPOCHS * self.steps_per_epoch:
            return None
        return max(self.total_steps - self.step, 0) * seconds / steps

    def add(self, event: Any) -> None:
        if isinstance(event, RunStarted):
            self.preset, self.device, self.task = event.preset, event.device, event.task
            self.epochs, self.steps_per_epoch, self.parameters = event.epochs, event.steps_per_epoch, event.parameters
            self.epochs_done = event.start_epoch
            self.epoch = event.start_epoch
            self.step = event.start_epoch * event.steps_per_epoch
            self.lost_to = 0
            # the resume rule of epochs.csv (tuitrain.store.run_dir.epoch_history): what it trains again is not drawn
            for series in (self.train_loss, self.train_acc, self.valid_loss):
                series.cut(self.step)
            for series in (self.epoch_train, self.epoch_valid):
                series.cut(event.start_epoch)
            self.config = event.config
            self.lr = float(event.config.get("train", {}).get("lr", 0.0))
            self.state = "running"
            self.pace_start = None  # a resumed run (a watched log can hold several) sets its own pace
        elif isinstance(event, StepProgress):
            if self.pace_start is None:
                self.pace_start = (event.step, event.seconds)
            self.epoch, self.step, self.lr = event.epoch, event.step, event.lr
            self.epochs_done = max(self.epochs_done, event.epoch - 1)
            self.samples_per_s, self.train_seconds = event.samples_per_s, event.seconds
            self.train_loss.add(event.step, event.loss)
            self.train_acc.add(event.step, event.accuracy)
        elif isinstance(event, EpochEnded):
            self.epoch = self.epochs_done = event.epoch
            self.step, self.lr, self.train_seconds = event.step, event.lr, event.total_seconds
            self.valid_loss.add(event.step, event.valid.loss)
            if self.regression or event.train.accuracy is None:
                self.epoch_train.add(event.epoch, event.train.loss)
                self.epoch_valid.add(event.epoch, event.valid.loss)
            else:
                self.epoch_train.add(event.epoch, event.train.accuracy)
                self.epoch_valid.add(event.epoch, event.valid.accuracy)
        elif isinstance(event, StateChanged):
            if not self.ended:  # a late pause/resume never overrides the end event
                self.state = event.state
            self.lr = event.lr
        elif isinstance(event, HistoryRecord):
            self.histories.add(event)
        elif isinstance(event, Inspection):
            self.inspection = event
            self.step = max(self.step, event.step)  # single steps while paused send no progress event
        elif isinstance(event, RunEnded):
            if event.status == "crashed" and self.epochs_done > event.epoch:
                self.lost_to = self.epochs_done  # recorded, but --resume continues from event.epoch
            self.state = event.status
            self.message, self.test = event.message, event.test
            self.step, self.epoch, self.epochs_done = event.step, event.epoch, event.epoch
            if event.samples_per_s:
                self.samples_per_s = event.samples_per_s
            self.train_seconds = event.train_seconds
