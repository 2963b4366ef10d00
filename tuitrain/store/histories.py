"""Provides weight and gradient histories as data: their JSON lines, thinning, reading back (no torch)."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from tuitrain.checks import is_count, is_number
from tuitrain.events import HistoryRecord, TensorRecord
from tuitrain.files import open_regular, read_regular

log = logging.getLogger(__name__)

HISTORIES = "histories.jsonl"  # in the run directory (tuitrain.store.run_dir names its files)
BINS = 32  # histogram bins per tensor, over the tensor's own range at that step
MAX_RECORDS = 1000  # records kept; past it the older half keeps every other one (as the charts thin)
UPDATE_REFERENCE = 1e-3  # the update/weight ratio often cited as healthy: far below learns slowly, above is jumpy

T = TypeVar("T")


@dataclass
class ActivationRecord:
    """One activation module's outputs on the recorder's fixed batch (the probe) at one recorded step."""

    kind: str  # the module's class, lower case: relu, leakyrelu, prelu, sigmoid, tanh, gelu, ...
    mean: float  # over every output value (NaN when some are not finite)
    std: float
    dead: float | None = None  # ReLU family: share of units never positive on the probe; None otherwise
    saturated: float | None = None  # squashing (sigmoid, tanh, ...): share of values at the ends; None otherwise
    nonfinite: int = 0  # units (features, channels) with a NaN or infinite output


@dataclass
class ProbedHistoryRecord(HistoryRecord):
    """A HistoryRecord with what the probe batch showed of each activation and the non-finite counts.

    Keyed by the parameterised layer an activation follows (as `dead`). A record read from an older file
    has `probed` False: neither was measured then (empty dicts say nothing, not "all finite")."""

    activations: dict[str, ActivationRecord] = field(default_factory=dict)
    nonfinite: dict[str, int] = field(default_factory=dict)  # tensor name -> NaN/inf in weights and gradient
    probed: bool = True


def activations_of(record: HistoryRecord) -> dict[str, ActivationRecord]:
    return record.activations if isinstance(record, ProbedHistoryRecord) else {}


def nonfinite_of(record: HistoryRecord) -> dict[str, int] | None:
    """NaN/inf counts per tensor (zeros left out); None where the record did not count them (older files)."""
    return record.nonfinite if isinstance(record, ProbedHistoryRecord) and record.probed else None


def thin(items: Sequence[T], limit: int = MAX_RECORDS) -> list[T]:
    """Past `limit`, every other item of the older half goes; the first and the newest always stay."""
    if len(items) <= limit:
        return list(items)
    half = len(items) // 2
    return list(items[:half:2]) + list(items[half:])


def _num(value: float) -> float | None:
    """Six significant digits keep a long run's file small; NaN and infinities are written as null."""
    return float(f"{value:.6g}") if value == value and abs(value) != float("inf") else None


def record_to_json(record: HistoryRecord) -> bytes:
    """One line of histories.jsonl (newline included)."""
    tensors = []
    for t in record.tensors:
        entry: dict[str, Any] = {
            "name": t.name,
            "counts": t.counts,
            "range": [_num(t.low), _num(t.high)],
            "mean": _num(t.mean),
            "std": _num(t.std),
        }
        if t.grad_counts is not None:
            entry.update(grad_counts=t.grad_counts, grad_range=[_num(t.grad_low), _num(t.grad_high)])
        if t.grad_norm is not None:
            entry["grad_norm"] = _num(t.grad_norm)
        if t.update_ratio is not None:
            entry["update_ratio"] = _num(t.update_ratio)
        tensors.append(entry)
    dead = {name: _num(share) for name, share in record.dead.items()}
    line: dict[str, Any] = {"step": record.step, "epoch": record.epoch, "tensors": tensors, "dead": dead}
    if isinstance(record, ProbedHistoryRecord) and record.probed:  # newer keys: older readers ignore them
        line["activations"] = {name: _activation_to_json(a) for name, a in record.activations.items()}
        line["nonfinite"] = {name: n for name, n in record.nonfinite.items() if n}
    return json.dumps(line, separators=(",", ":")).encode("utf-8") + b"\n"


def _activation_to_json(a: ActivationRecord) -> dict[str, Any]:
    entry: dict[str, Any] = {"kind": a.kind, "mean": _num(a.mean), "std": _num(a.std)}
    if a.dead is not None:
        entry["dead"] = _num(a.dead)
    if a.saturated is not None:
        entry["saturated"] = _num(a.saturated)
    if a.nonfinite:
        entry["nonfinite"] = a.nonfinite
    return entry


def _activation_from_json(data: Any) -> ActivationRecord | None:
    if not isinstance(data, dict) or not isinstance(data.get("kind"), str):
        return None
    mean, std, nonfinite = _float(data.get("mean")), _float(data.get("std")), data.get("nonfinite", 0)
    return ActivationRecord(
        data["kind"],
        float("nan") if mean is None else mean,
        float("nan") if std is None else std,
        _share(data.get("dead")),
        _share(data.get("saturated")),
        nonfinite if is_count(nonfinite) else 0,
    )


def _share(value: Any) -> float | None:
    share = _float(value)
    return share if share is not None and 0.0 <= share <= 1.0 else None


def _float(value: Any) -> float | None:
    """A number read back; None for a null (written for NaN/inf) and for anything else."""
    return float(value) if is_number(value) else None


def _counts(value: Any) -> list[int] | None:
    if isinstance(value, list) and len(value) == BINS and all(is_count(c) for c in value):
        return value
    return None


def _range(value: Any) -> tuple[float, float] | None:
    if isinstance(value, list) and len(value) == 2:
        low, high = _float(value[0]), _float(value[1])
        return (low, high) if low is not None and high is not None and low <= high else (0.0, 0.0)
    return None


def _tensor_from_json(data: Any) -> TensorRecord | None:
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        return None
    counts, bounds = _counts(data.get("counts")), _range(data.get("range"))
    if counts is None or bounds is None:
        return None
    grad_counts, grad_bounds = _counts(data.get("grad_counts")), _range(data.get("grad_range"))
    if grad_counts is None or grad_bounds is None:
        grad_counts, grad_bounds = None, (0.0, 0.0)
    mean, std = _float(data.get("mean")), _float(data.get("std"))
    return TensorRecord(
        data["name"],
        counts,
        bounds[0],
        bounds[1],
        float("nan") if mean is None else mean,
        float("nan") if std is None else std,
        grad_counts,
        grad_bounds[0],
        grad_bounds[1],
        _float(data.get("grad_norm")),
        _float(data.get("update_ratio")),
    )


def record_from_json(data: Any) -> HistoryRecord | None:
    """A histories.jsonl line (parsed) back into its record; None when anything in it is malformed."""
    if not isinstance(data, dict) or not is_count(data.get("step")) or not is_count(data.get("epoch")):
        return None
    raw_tensors, raw_dead = data.get("tensors"), data.get("dead", {})
    if not isinstance(raw_tensors, list) or not isinstance(raw_dead, dict):
        return None
    tensors = [_tensor_from_json(t) for t in raw_tensors]
    if any(t is None for t in tensors):
        return None
    dead = {str(k): float(v) for k, v in raw_dead.items() if is_number(v)}
    raw_activations, raw_nonfinite = data.get("activations"), data.get("nonfinite")
    probed = isinstance(raw_activations, dict) and isinstance(raw_nonfinite, dict)  # absent in older files
    activations: dict[str, ActivationRecord] = {}
    nonfinite: dict[str, int] = {}
    if isinstance(raw_activations, dict) and isinstance(raw_nonfinite, dict):
        for name, raw in raw_activations.items():
            activation = _activation_from_json(raw)
            if activation is not None:
                activations[str(name)] = activation
        nonfinite = {str(k): v for k, v in raw_nonfinite.items() if is_count(v) and v}
    kept = [t for t in tensors if t is not None]
    return ProbedHistoryRecord(data["step"], data["epoch"], kept, dead, "history", activations, nonfinite, probed)


def add_record(records: list[T], step_of: Any, item: T) -> None:
    """Append `item`; one at a step already passed means those steps are being redone (a resume),
    or the file is being read again from its start: the records from that step on go first."""
    step = step_of(item)
    if records and step_of(records[-1]) >= step:
        keep = len(records)
        while keep and step_of(records[keep - 1]) >= step:
            keep -= 1
        del records[keep:]
    records.append(item)


class Histories:
    """The records a viewer holds, oldest first: bounded like the file, redone steps replaced."""

    def __init__(self, limit: int = MAX_RECORDS):
        self.limit = limit
        self.records: list[HistoryRecord] = []
        self.version = 0  # changes with every record: viewers redraw only then

    def __len__(self) -> int:
        return len(self.records)

    def add(self, record: HistoryRecord) -> None:
        add_record(self.records, _step, record)
        if len(self.records) > self.limit:
            self.records = thin(self.records, self.limit)
        self.version += 1

    def load(self, run_dir: str | os.PathLike[str]) -> bool:
        """The records a run directory holds (a resumed run's steps before the resume); records that come
        later for the same steps replace them. True when there were any."""
        records = read_histories(Path(run_dir) / HISTORIES)
        for record in records:
            self.add(record)
        return bool(records)

    def tensor(self, name: str) -> list[tuple[int, TensorRecord]]:
        """(step, record of tensor `name`) for every record that has it, oldest first."""
        found = []
        for record in self.records:
            for t in record.tensors:
                if t.name == name:
                    found.append((record.step, t))
                    break
        return found


def _step(record: HistoryRecord) -> int:
    return record.step


def parse_lines(data: bytes, where: str = "histories.jsonl") -> tuple[list[HistoryRecord], int]:
    """The records in the complete lines of `data` and the bytes they take (a half-written tail is left)."""
    end = data.rfind(b"\n") + 1
    records: list[HistoryRecord] = []
    for number, raw in enumerate(data[:end].split(b"\n")[:-1], 1):
        if not raw.strip():
            continue
        try:
            record = record_from_json(json.loads(raw.decode("utf-8")))
        except (ValueError, RecursionError):
            record = None
        if record is None:
            log.warning("%s: skipping broken line %d", where, number)
            continue
        records.append(record)
    return records, end


def read_histories(path: str | os.PathLike[str]) -> list[HistoryRecord]:
    """Every record of a histories.jsonl, a resume's redone steps counted once; [] when there is none."""
    try:
        data = read_regular(path)
    except OSError:
        return []
    records: list[HistoryRecord] = []
    for record in parse_lines(data, str(path))[0]:
        add_record(records, _step, record)
    return records


class HistoryTail:
    """Follows a histories.jsonl another process writes: new lines since the last poll, all of them
    again when the writer replaced the file (thinning) — `add_record` then rebuilds from the start."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self.offset = 0
        self.identity: tuple[int, int] | None = None

    def poll(self) -> list[HistoryRecord]:
        try:
            with open_regular(self.path) as f:
                stat = os.fstat(f.fileno())
                identity = (stat.st_dev, stat.st_ino)
                if identity != self.identity or stat.st_size < self.offset:
                    self.identity, self.offset = identity, 0
                f.seek(self.offset)
                data = f.read()
        except OSError:
            return []
        records, used = parse_lines(data, str(self.path))
        self.offset += used
        return records
