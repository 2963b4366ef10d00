"""Provides run comparison: records read from run directories, what differs, labels, ranking."""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuitrain.config import DEFAULT_SAMPLES, IMAGE_SETS, Config
from tuitrain.errors import TuitrainError, escape
from tuitrain.fmt import fmt_age, fmt_score
from tuitrain.store.run_dir import (
    METRICS,
    check_run_dir,
    epoch_history,
    list_runs,
    load_run_config,
    read_events,
    run_row,
)

# keys that never explain a difference in results: where and how fast it ran, the words about it
IGNORED_KEYS = ("description", "train.threads", "train.device", "data.data_dir", "train.histories")
SHORT_NAMES = {"train.optimizer": "", "name": "", "train.batch_size": "batch", "model.hidden": "hidden"}
FAILED = ("diverged", "failed", "crashed", "aborted", "damaged", "unreadable")  # ranked after the rest


@dataclass
class RunRecord:
    """One run as its files describe it (summary.json, config.toml), without its curves."""

    run_dir: str
    name: str
    preset: str
    status: str
    epoch: int | None
    epochs: int | None
    best: dict[str, Any] | None  # {"epoch", "step", "valid": metrics}
    last_valid: dict[str, Any] | None
    test: dict[str, Any] | None
    updated_at: float
    config: dict[str, Any] = field(default_factory=dict)  # flattened: {"train.lr": 0.01, ...}
    parent: dict[str, Any] | None = None  # a branch: {"run_dir", "checkpoint", "epoch", "step"}
    problem: str | None = None
    # a crashed run: {"from", "to", "step"}, the epochs recorded after its last checkpoint (`epoch`, at
    # `step`), which --resume trains again (tuitrain.store.run_dir.resume_point)
    lost: dict[str, Any] | None = None

    @property
    def optimizer(self) -> str:
        return str(self.config.get("train.optimizer", "?"))

    @property
    def lr(self) -> float | None:
        value = self.config.get("train.lr")
        return float(value) if isinstance(value, (int, float)) else None

    @property
    def batch_size(self) -> int | None:
        value = self.config.get("train.batch_size")
        return value if isinstance(value, int) else None

    @property
    def best_valid(self) -> dict[str, Any] | None:
        return (self.best or {}).get("valid")

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_dir": self.run_dir,
            "name": self.name,
            "preset": self.preset,
            "status": self.status,
            "epoch": self.epoch,
            "epochs": self.epochs,
            "best": self.best,
            "last_valid": self.last_valid,
            "test": self.test,
            "optimizer": self.optimizer,
            "lr": self.lr,
            "batch_size": self.batch_size,
            "updated_at": self.updated_at,
            "parent": self.parent,
            "problem": self.problem,
            "lost": self.lost,
        }


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"train": {"lr": 0.1}} -> {"train.lr": 0.1}; lists become tuples so values compare and hash."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = tuple(value) if isinstance(value, list) else value
    return flat


def settings(config: Config) -> dict[str, Any]:
    """The settings a run trained with, flattened: those its network, data and optimizer do not use left
    out (LeNet has no hidden sizes, Adam no momentum), a synthetic set's default point count filled in."""
    flat = flatten(config.to_dict())
    model, data = config.model, config.data
    unused = {
        "model.hidden": model.kind != "mlp",
        "model.activation": model.kind == "neuron",
        "data.samples": data.dataset not in DEFAULT_SAMPLES,
        "data.test_fraction": data.dataset in IMAGE_SETS,
        "data.path": data.dataset != "csv",
        "train.momentum": config.train.optimizer not in ("momentum", "nesterov"),
    }
    for key in [key for key, skip in unused.items() if skip]:
        flat.pop(key, None)
    if data.dataset in DEFAULT_SAMPLES:
        flat["data.samples"] = data.samples or DEFAULT_SAMPLES[data.dataset]
    return flat


def record_from_row(row: dict[str, Any]) -> RunRecord:
    """A `runs.list_runs` row with its configuration and parent added."""
    problem = row.get("problem")
    try:
        config = settings(load_run_config(row["run_dir"]))
    except TuitrainError as exc:
        config = {}
        problem = problem or str(exc)
    parent = row.get("parent")
    return RunRecord(
        run_dir=row["run_dir"],
        name=row["name"],
        preset=str(row["preset"]),
        status=str(row["status"]),
        epoch=row.get("epoch"),
        epochs=row.get("epochs"),
        best=row.get("best"),
        last_valid=row.get("last_valid"),
        test=row.get("test"),
        updated_at=float(row.get("updated_at") or 0.0),
        config=config,
        parent=parent if isinstance(parent, dict) else None,
        problem=problem,
        lost=row.get("lost"),
    )


def load_records(out_dir: str | Path) -> list[RunRecord]:
    """Every run under `out_dir`, oldest first."""
    return [record_from_row(row) for row in list_runs(out_dir)]


def load_run_records(run_dirs: Iterable[str | Path]) -> list[RunRecord]:
    """The runs named (each checked to be a run directory), in the order given."""
    records = []
    for run_dir in run_dirs:
        row = run_row(check_run_dir(run_dir))
        assert row is not None  # check_run_dir found its config.toml
        records.append(record_from_row({**row, "run_dir": str(run_dir)}))
    return records


# ----------------------------------------------------------------------------- differences and names


def differing_keys(records: Sequence[RunRecord]) -> list[str]:
    """Configuration keys whose values are not the same in every run (runtime settings left out)."""
    if len(records) < 2:
        return []
    keys: list[str] = []
    for record in records:
        keys += [k for k in record.config if k not in keys]
    missing = object()
    return [k for k in keys if k not in IGNORED_KEYS and len({repr(r.config.get(k, missing)) for r in records}) > 1]


def fmt_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple):
        return "x".join(str(v) for v in value) or "-"
    return str(value)


def short_key(key: str) -> str:
    return SHORT_NAMES.get(key, key.rsplit(".", 1)[-1])


def labels(records: Sequence[RunRecord]) -> list[str]:
    """A name per run from what differs between them (`adam lr=0.001`); the run's own name where nothing does."""
    keys = sorted(differing_keys(records), key=lambda k: (k not in ("name", "train.optimizer"), k))
    names = []
    for record in records:
        parts = []
        for key in [key for key in keys if key in record.config]:  # a setting the run does not use: no word
            short, value = short_key(key), fmt_value(record.config[key])
            parts.append(value if not short else f"{short}={value}")
        if record.parent is not None:
            parts.append(f"branch@{record.parent.get('epoch', '?')}")
        names.append(" ".join(parts) or record.name)
    counts: dict[str, int] = {}
    for n in names:
        counts[n] = counts.get(n, 0) + 1
    return [f"{n} ({r.name})" if counts[n] > 1 and n != r.name else n for n, r in zip(names, records)]


# ----------------------------------------------------------------------------- ranking


def score(metrics: dict[str, Any] | None) -> tuple[float, float] | None:
    """Higher is better: accuracy where there is one, then lower loss; None without numbers."""
    if not metrics or not isinstance(metrics.get("loss"), (int, float)) or not math.isfinite(metrics["loss"]):
        return None
    accuracy = metrics.get("accuracy")
    return (float(accuracy) if isinstance(accuracy, (int, float)) else 0.0, -float(metrics["loss"]))


def headline(record: RunRecord) -> tuple[str, dict[str, Any] | None]:
    """What a run is ranked on: its test metrics when it has them, else its best validation."""
    if record.test:
        return "test", record.test
    return "valid", record.best_valid


def ranked(records: Sequence[RunRecord]) -> list[RunRecord]:
    """Best first: test metrics (else best validation); failed and unmeasured runs last."""

    def key(record: RunRecord) -> tuple[int, float, float]:
        s = score(headline(record)[1])
        group = 2 if s is None else (1 if record.status in FAILED else 0)
        return (group, -(s or (0.0, 0.0))[0], -(s or (0.0, 0.0))[1])

    return sorted(records, key=key)


# ----------------------------------------------------------------------------- curves


@dataclass
class Curves:
    """A run's timeline for overlays: per epoch (train/valid) and per recorded step (train)."""

    epochs: list[dict[str, Any]]
    steps: list[dict[str, Any]]
    offset: int = 0  # bytes of metrics.jsonl read so far
    events: list[dict[str, Any]] = field(default_factory=list)
    until_step: int | None = None  # a crashed run: its last checkpoint; what came after is lost

    def update(self, run_dir: str | Path) -> bool:
        """Read what the run appended since the last call; True when something new came."""
        new, self.offset = read_events(Path(run_dir) / METRICS, self.offset)
        if not new:
            return False
        self.events += [e for e in new if e.get("event") in ("start", "epoch", "step")]
        self._derive()
        return True

    def keep_until(self, step: int | None) -> bool:
        """Count the run only to `step` (a crashed run's last checkpoint; None: all); True when that changed."""
        if step == self.until_step:
            return False
        self.until_step = step
        self._derive()
        return True

    def _derive(self) -> None:
        self.epochs = epoch_history(self.events)
        self.steps = step_history(self.events)
        if self.until_step is not None:
            last = self.until_step
            self.epochs = [e for e in self.epochs if isinstance(e.get("step"), int) and e["step"] <= last]
            self.steps = [s for s in self.steps if isinstance(s.get("step"), int) and s["step"] <= last]


def step_history(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Step events as the run's timeline: a resume drops the steps it redoes."""
    steps: list[dict[str, Any]] = []
    for event in events:
        if event.get("event") == "start":
            first = (event.get("start_epoch") or 0) * (event.get("steps_per_epoch") or 0)
            resumed_at = event.get("start_step", first)
            steps = [s for s in steps if s.get("step", 0) <= resumed_at]
        elif event.get("event") == "step":
            steps.append(event)
    return steps


# ----------------------------------------------------------------------------- tables


def fmt_epochs(r: RunRecord) -> str:
    """ "434/2000", and for a crashed run the epochs its crash lost: "434/2000 (435-571 lost)"."""
    text = f"{r.epoch if r.epoch is not None else '?'}/{r.epochs if r.epochs is not None else '?'}"
    return text + (f" ({lost_range(r.lost)} lost)" if r.lost else "")


def lost_range(lost: dict[str, Any]) -> str:
    first, last = lost.get("from"), lost.get("to")
    return f"epoch {first}" if first == last else f"epochs {first}-{last}"


def mixed(records: Sequence[RunRecord]) -> str | None:
    """What makes the runs' scores incomparable: different presets or data sets (None when all agree)."""
    known = [r for r in records if r.config]
    what = []
    if len({r.preset for r in records}) > 1:
        what.append("presets")
    data_keys = ("data.dataset", "data.path", "data.samples")
    if len({tuple(repr(r.config.get(k)) for k in data_keys) for r in known}) > 1:
        what.append("data sets")
    if not what:
        return None
    return f"these runs differ in {' and '.join(what)}: their scores are not measured on the same task"


def ranking_table(records: Sequence[RunRecord], now: float | None = None) -> list[str]:
    """The ranked runs as aligned lines: rank, label, status, epochs, best/last validation, test, age."""
    now = time.time() if now is None else now
    order = ranked(records)
    names = dict(zip((r.run_dir for r in records), labels(records) if len(records) > 1 else ["-"] * len(records)))
    table = [("#", "RUN", "WHAT DIFFERS", "STATUS", "EPOCHS", "BEST VALID", "LAST VALID", "TEST", "AGE")]
    for rank, r in enumerate(order, 1):
        table.append(
            (
                str(rank),
                escape(r.name),
                escape(names[r.run_dir]),
                escape(r.status),
                fmt_epochs(r),
                fmt_score(r.best_valid),
                fmt_score(r.last_valid),
                fmt_score(r.test),
                fmt_age(now - r.updated_at),
            )
        )
    lines = align(table)
    note = mixed(records)
    return [*lines, f"note: {note}"] if note else lines


def diff_table(records: Sequence[RunRecord]) -> list[str]:
    """The configuration keys that differ, one row each, a column per run in ranking order."""
    order = ranked(records)
    known = [r for r in order if r.config]
    unknown = [r for r in order if not r.config]  # config.toml unreadable: nothing can be said about it
    keys = differing_keys(known)
    if not keys and not unknown:
        return ["configurations: identical" if len(order) > 1 else "configurations: one run"]
    lines = []
    if keys:
        table = [("KEY", *(f"#{i}" for i in range(1, len(order) + 1)))]
        table += [
            (key, *(escape(fmt_value(r.config.get(key, "-"))) if r.config else "?" for r in order)) for key in keys
        ]
        lines = align(table)
    if unknown:
        others = "; the others are identical" if not keys and len(known) > 1 else ""
        names = ", ".join(escape(r.name) for r in unknown)
        lines.append(f"configurations unknown (config.toml unreadable): {names}{others}")
    return lines


def align(table: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in table]


def comparison(records: Sequence[RunRecord]) -> dict[str, Any]:
    """The JSON form: the runs best first (with rank and label) and the keys that differ."""
    order = ranked(records)
    names = labels(order)
    keys = differing_keys(order)
    return {
        "event": "compare",
        "runs": [
            {"rank": i, "label": name, **r.to_dict(), "ranked_on": headline(r)[0]}
            for i, (r, name) in enumerate(zip(order, names), 1)
        ],
        "differs": {key: [r.config.get(key) for r in order] for key in keys},
        "note": mixed(order),
    }
