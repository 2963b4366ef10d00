"""Provides the plain dataclass events the engine emits, and their JSON form."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from tuitrain.checks import is_count, is_diagnosis, is_finite, is_number

# The run's vocabulary, defined once for the engine, the run files and the app.
TrainerState = Literal["idle", "running", "paused", "testing", "finished"]  # testing: the final test evaluation
# crashed: said by a watcher, not the engine, when the training process died without a word
EndStatus = Literal["completed", "stopped", "interrupted", "diverged", "failed", "crashed"]
# summary.json's status: an end status, or running while a process trains it; aborted after a
# second Ctrl-C; crashed when its process died without a word (kill -9, power loss).
RunStatus = Literal["running", "completed", "stopped", "interrupted", "diverged", "failed", "aborted", "crashed"]
END_STATUSES: tuple[EndStatus, ...] = ("completed", "stopped", "interrupted", "diverged", "failed", "crashed")
# A diverged run's post-mortem, plain JSON (tuitrain.training.postmortem describes its keys)
Diagnosis = dict[str, Any]


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
    threads: int = 0  # torch CPU threads at the start (the governor may lower them under load)
    world_size: int = 1  # processes training it together (tuitrain.runs.distributed)
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
    """Answer to Trainer.request_inspection(); see tuitrain.training.inspection and .units for the payloads."""

    epoch: int
    step: int
    params: list[Any]
    predictions: Any
    seconds: float = 0.0  # what it cost the training process: viewers pace their requests by it
    # asked with units=True: a tuitrain.training.units.Units (then params is [] and predictions None)
    units: Any = None
    event: str = "inspection"


@dataclass
class RunEnded:
    """The run's last word. The run directory's writer, its first consumer, turns it into "failed"
    when the final checkpoint cannot be written, so every later consumer says the same."""

    status: EndStatus
    epoch: int
    step: int
    test: Metrics | None
    train_seconds: float
    samples_per_s: float
    message: str = ""
    diagnosis: Diagnosis | None = None  # diverged: where it first became NaN/inf, what grew; absent in JSON when None
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


@dataclass
class TensorRecord:
    """One parameter tensor at one recorded step: histograms of its values and gradient, and statistics."""

    name: str
    counts: list[int]  # values per bin: tuitrain.store.histories.BINS equal bins over [low, high]
    low: float
    high: float
    mean: float
    std: float
    grad_counts: list[int] | None = None  # None before the first backward pass
    grad_low: float = 0.0
    grad_high: float = 0.0
    grad_norm: float | None = None
    update_ratio: float | None = None  # |w after - w before| / |w after| across the recorded step


@dataclass
class HistoryRecord:
    """Every parameter tensor at one step, recorded at a bounded cadence (tuitrain.training.recorder)."""

    step: int
    epoch: int  # 1-based, the epoch in progress (the epochs completed for the record at the start)
    tensors: list[TensorRecord]
    dead: dict[str, float]  # per layer followed by a ReLU: share of its units never positive on a fixed batch
    event: str = "history"


@dataclass
class LrFound:
    """The LR range test from a paused run's state (RunControl.find_lr), run on a copy of its network and
    optimizer: sent while it runs (done false: the curve so far, at most a few times a second) and once
    when it ends (done true, with the suggestion). The run itself is left exactly as it was."""

    step: int  # the run's step it started from
    curve: list[tuple[float, float]]  # (lr, smoothed loss), finite points only, in the ramp's order
    taken: int  # ramp steps done so far (of `steps`)
    steps: int  # the ramp's length
    suggested_lr: float | None = None  # None: nothing to suggest (`message` says why)
    rule: str = ""  # which rule made the suggestion (tuitrain.training.lr_find)
    stop: str = ""  # once done: end, exploded, nan, stopped (cancelled, resumed or stopped), refused, failed
    message: str = ""  # once done: the notes on the curve, or why there is none
    done: bool = True
    event: str = "lr_found"


Event = (
    RunStarted | StepProgress | EpochEnded | StateChanged | Inspection | RunEnded | Recovery | HistoryRecord | LrFound
)
URGENT = (
    RunStarted,
    StateChanged,
    Inspection,
    RunEnded,
    LrFound,
)  # shown at once; the rest may wait for the next flush
Consumer = Callable[[Event], None]


def event_to_dict(event: Event) -> dict[str, Any]:
    """JSON-ready dict with `event` first, the shape of `--json` lines and metrics.jsonl."""
    data = dataclasses.asdict(event)
    if data.get("diagnosis", True) is None:  # optional: lines without it stay as they were
        del data["diagnosis"]
    return {"event": data.pop("event"), **{k: _clean(v) for k, v in data.items()}}


def _clean(value: Any) -> Any:
    if isinstance(value, dict) and set(value) <= {"loss", "accuracy"}:
        return {k: v for k, v in value.items() if v is not None}
    if isinstance(value, float):
        return round(value, 8) if value == value and abs(value) != float("inf") else None
    return value


def metrics_from_dict(data: Any) -> Metrics | None:
    """Metrics from their JSON form ({"loss": ..., "accuracy": ...}); None when absent or malformed.

    A null loss (written for NaN/Inf) reads back as NaN; anything but numbers and nulls is refused.
    """
    if not isinstance(data, dict):
        return None
    loss, accuracy = data.get("loss"), data.get("accuracy")
    if (loss is not None and not is_number(loss)) or (accuracy is not None and not is_number(accuracy)):
        return None
    return Metrics(
        loss=float("nan") if loss is None else float(loss), accuracy=None if accuracy is None else float(accuracy)
    )


def _field_value(kind: str, value: Any) -> tuple[bool, Any]:
    """(ok, value) for one field of an event read back, checked against its dataclass annotation."""
    optional = kind.endswith(" | None")
    kind = kind.removesuffix(" | None")
    if value is None:
        if kind == "float" and not optional:
            return True, float("nan")  # event_to_dict writes NaN and Inf as null
        return optional, None
    if kind == "int":
        return is_count(value), value
    if kind == "float":
        return is_number(value), float(value) if is_number(value) else value
    if kind == "str":
        return isinstance(value, str), value
    if kind == "EndStatus":
        return value in END_STATUSES, value
    if kind.startswith("Literal["):  # e.g. StateChanged.state
        return isinstance(value, str) and f'"{value}"' in kind, value
    if kind == "Diagnosis":
        return is_diagnosis(value), value
    if kind == "Metrics":
        metrics = metrics_from_dict(value)
        return metrics is not None, metrics
    if kind.startswith("dict"):  # RunStarted.config: viewers read its sections and training numbers
        sections = isinstance(value, dict) and all(
            isinstance(value.get(k, {}), dict) for k in ("model", "data", "train")
        )
        train = value.get("train", {}) if sections else {}
        numbers = all(is_number(train[k]) for k in ("lr", "momentum", "weight_decay") if k in train)
        counts = all(is_count(train[k]) for k in ("batch_size", "epochs", "seed") if k in train)
        return sections and numbers and counts, value
    if kind == "list[tuple[float, float]]":  # LrFound.curve: [lr, loss] pairs of finite numbers
        pairs = isinstance(value, list) and all(
            isinstance(p, list) and len(p) == 2 and all(is_finite(v) for v in p) for p in value
        )
        return pairs, [(float(p[0]), float(p[1])) for p in value] if pairs else value
    if kind == "bool":
        return isinstance(value, bool), value
    if kind.startswith("list"):
        return isinstance(value, list), value
    return True, value


def event_from_dict(data: Any) -> Event | None:
    """A metrics.jsonl line (the shape of events.event_to_dict) back into its event object, or None.

    None for an unknown event, a missing field, or a field of the wrong type (a string where a
    number belongs, true for an integer), so consumers only ever see well-typed events.
    """
    kinds = {
        "start": RunStarted,
        "step": StepProgress,
        "epoch": EpochEnded,
        "state": StateChanged,
        "recovery": Recovery,
        "end": RunEnded,
        "lr_found": LrFound,
    }
    if not isinstance(data, dict) or not isinstance(data.get("event"), str):
        return None
    cls = kinds.get(data["event"])
    if cls is None:
        return None
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name == "event" or f.name not in data:
            continue
        ok, values[f.name] = _field_value(f.type if isinstance(f.type, str) else f.type.__name__, data[f.name])
        if not ok:
            return None
    try:
        event: Event = cls(**values)
    except TypeError:  # a line from another version with missing fields
        return None
    return event
