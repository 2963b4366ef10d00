"""Provides the plain dataclass events the engine emits, and their JSON form."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Union

# The run's vocabulary, defined once for the engine, the run files and the app.
TrainerState = Literal["idle", "running", "paused", "testing", "finished"]  # testing: the final test evaluation
# crashed: said by a watcher, not the engine, when the training process died without a word
EndStatus = Literal["completed", "stopped", "interrupted", "diverged", "failed", "crashed"]
# summary.json's status: an end status, or running while a process trains it; aborted after a
# second Ctrl-C; crashed when its process died without a word (kill -9, power loss).
RunStatus = Literal["running", "completed", "stopped", "interrupted", "diverged", "failed", "aborted", "crashed"]
END_STATUSES: tuple[EndStatus, ...] = ("completed", "stopped", "interrupted", "diverged", "failed", "crashed")

@dataclass
class Metrics:
    loss: float
    accuracy: float | None = None  # None for regression

    def to_dict(self) -> dict[str, float]:
        out = {"loss": self.loss}
        if self.accuracy is not None:
            out["accuracy"] = self.accuracy
        return out


@dataclass
class RunStarted:
    preset: str
    config: dict[str, Any]
    device: str
    task: str  # binary | classes | regression
    train_samples: int
    valid_samples: int
    test_samples: int
    steps_per_epoch: int
    epochs: int
    start_epoch: int  # 0 for a new run; the epochs already done for a resumed one
    parameters: int
    data_source: str
    run_dir: str | None = None
    event: str = "start"


@dataclass
class StepProgress:
    """Throttled: one per ~0.1 s of training, averaging the steps since the last one."""

    epoch: int  # 1-based, the epoch in progress
    step: int  # global optimizer steps so far
    epoch_step: int  # steps done in this epoch
    loss: float
    accuracy: float | None
    lr: float
    samples_per_s: float
    seconds: float  # training seconds so far
    event: str = "step"


@dataclass
class EpochEnded:
    epoch: int
    step: int
    train: Metrics
    valid: Metrics
    lr: float
    seconds: float  # this epoch's training time
    samples_per_s: float
    total_seconds: float
    event: str = "epoch"


@dataclass
class StateChanged:
    """Pause, resume and learning-rate changes, so every consumer shows the same state."""

    state: Literal["running", "paused"]
    lr: float
    event: str = "state"


@dataclass
class Inspection:
    """Answer to Trainer.request_inspection(); see tuitrain.inspection for the payloads."""

    epoch: int
    step: int
    params: list[Any]
    predictions: Any
    event: str = "inspection"


@dataclass
class RunEnded:
    status: EndStatus
    epoch: int
    step: int
    test: Metrics | None
    train_seconds: float
    samples_per_s: float
    message: str = ""
    event: str = "end"


@dataclass
class Recovery:
    """--on-diverge recover: the run went back to its last good checkpoint at a lower learning rate."""

    diverged_step: int  # where the loss became NaN or infinite
    step: int  # the checkpoint's step, where training continues
    epoch: int
    lr: float  # the learning rate that diverged
    new_lr: float
    attempt: int  # 1, 2, ... up to the limit
    event: str = "recovery"


Event = Union[RunStarted, StepProgress, EpochEnded, StateChanged, Inspection, RunEnded, Recovery]
Consumer = Callable[[Event], None]


def event_to_dict(event: Event) -> dict[str, Any]:
    """JSON-ready dict with `event` first, the shape of `--json` lines and metrics.jsonl."""
    data = dataclasses.asdict(event)
    return {"event": data.pop("event"), **{k: _clean(v) for k, v in data.items()}}


def _clean(value: Any) -> Any:
    if isinstance(value, dict) and set(value) <= {"loss", "accuracy"}:
        return {k: v for k, v in value.items() if v is not None}
    if isinstance(value, float):
        return round(value, 8) if value == value and abs(value) != float("inf") else None
    return value


def metrics_from_dict(data: dict[str, Any] | None) -> Metrics | None:
    if data is None:
        return None
    return Metrics(loss=data.get("loss", float("nan")), accuracy=data.get("accuracy"))


def event_from_dict(data: dict[str, Any]) -> Event | None:
    """A metrics.jsonl line (the shape of events.event_to_dict) back into its event object, or None."""
    kinds = {"start": RunStarted, "step": StepProgress, "epoch": EpochEnded, "state": StateChanged,
             "end": RunEnded}
    cls = kinds.get(data.get("event", ""))
    if cls is None:
        return None
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name == "event" or f.name not in data:
            continue
        value = data[f.name]
        if f.name in ("train", "valid", "test"):
            value = metrics_from_dict(value)
        elif value is None and f.type in ("float", float):
            value = float("nan")
        values[f.name] = value
    try:
        event: Event = cls(**values)
    except TypeError:  # a line from another version with missing fields
        return None
    return event
