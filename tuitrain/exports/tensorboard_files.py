"""Provides what TensorBoard shows of a run beyond its scalars: the recorded weight and gradient
histories as histograms, and its settings and results for the HParams dashboard.

Both the export (`tuitrain export --format tensorboard`) and the live writer (`run --tensorboard`)
write histograms through `add_history`; the export also writes `add_run_hparams`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tuitrain.events import HistoryRecord
from tuitrain.store.histories import HISTORIES, read_histories
from tuitrain.store.run_dir import load_run_config, run_row

# The settings one run alone shows in the HParams dashboard (flattened config keys, as
# tuitrain.runs.compare names them); several runs show the settings that differ between them.
MAIN_SETTINGS = (
    "name",
    "model.kind",
    "model.hidden",
    "model.activation",
    "data.dataset",
    "train.optimizer",
    "train.lr",
    "train.momentum",
    "train.weight_decay",
    "train.batch_size",
    "train.epochs",
    "train.seed",
)
MOMENTUM_OPTIMIZERS = ("momentum", "nesterov")  # the optimizers that use train.momentum
# The HParams dashboard's metric columns: tags of their own, so no curve the export writes is mistaken for one.
METRICS = {
    "hparams/test_accuracy": ("test", "accuracy"),
    "hparams/test_loss": ("test", "loss"),
    "hparams/best_valid_accuracy": ("best", "accuracy"),
    "hparams/best_valid_loss": ("best", "loss"),
}


def histogram(
    counts: Sequence[int],
    low: float,
    high: float,
    mean: float | None = None,
    std: float | None = None,
    norm: float | None = None,
) -> dict[str, Any] | None:
    """`SummaryWriter.add_histogram_raw`'s arguments for recorded bins: `counts` in equal bins over
    [low, high] (tuitrain.training.recorder). None when nothing was counted.

    The record keeps no sum nor sum of squares. The weights' mean and (sample) standard deviation give
    both exactly (to the six digits recorded); a gradient has only its norm: its sum of squares is the
    norm squared, and its sum is estimated from the bin centres (each value taken at its bin's middle).
    """
    num = sum(counts)
    if num <= 0:
        return None
    if not (math.isfinite(low) and math.isfinite(high)) or high <= low:  # one value (a bias at zero): one bucket
        low = high = low if math.isfinite(low) else 0.0
        centres, limits, buckets = [low], [high], [num]
    else:
        width = (high - low) / len(counts)
        centres = [low + (i + 0.5) * width for i in range(len(counts))]
        limits = [low + (i + 1) * width for i in range(len(counts))]
        limits[-1] = high
        buckets = list(counts)
    if mean is not None and std is not None and math.isfinite(mean) and math.isfinite(std):
        total = mean * num
        squares = (num - 1) * std * std + num * mean * mean  # torch's std divides by n - 1
    else:  # estimated from the bin centres
        total = sum(c * x for c, x in zip(buckets, centres, strict=True))
        squares = sum(c * x * x for c, x in zip(buckets, centres, strict=True))
    if norm is not None and math.isfinite(norm):
        squares = norm * norm
    return {
        "min": low,
        "max": high,
        "num": num,
        "sum": total,
        "sum_squares": squares,
        "bucket_limits": limits,
        "bucket_counts": buckets,
    }


def add_history(board: Any, record: HistoryRecord) -> None:
    """One recorded step's tensors as histograms: `weights/<name>`, and `gradients/<name>` once there
    is a gradient (none is recorded before the first backward pass)."""
    for t in record.tensors:
        weights = histogram(t.counts, t.low, t.high, t.mean, t.std)
        if weights is not None:
            board.add_histogram_raw(f"weights/{t.name}", global_step=record.step, **weights)
        if t.grad_counts is not None:
            grads = histogram(t.grad_counts, t.grad_low, t.grad_high, norm=t.grad_norm)
            if grads is not None:
                board.add_histogram_raw(f"gradients/{t.name}", global_step=record.step, **grads)


def add_histories(board: Any, run_dir: Path) -> None:
    """The run's histories.jsonl as histograms, at the steps it kept (thinned as the run thinned it)."""
    for record in read_histories(run_dir / HISTORIES):
        add_history(board, record)


def hparam_value(value: Any) -> str | float | int | None:
    """A setting as the HParams dashboard takes it: numbers and text as they are, lists as 32x32."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return "x".join(str(v) for v in value) or "-"
    return None if value is None else str(value)


def main_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """MAIN_SETTINGS out of a run's flattened settings (momentum only for the optimizers that use it)."""
    keep = [k for k in MAIN_SETTINGS if k != "train.momentum" or settings.get("train.optimizer") in MOMENTUM_OPTIMIZERS]
    return {k: settings[k] for k in keep if k in settings}


def choose_hparams(settings: Sequence[dict[str, Any]], differing: Sequence[str]) -> list[dict[str, Any]]:
    """Per run, the settings its HParams entry shows: those in `differing` (tuitrain.runs.compare's
    differing_keys over the runs; a run without such a setting, as Adam has no momentum, leaves it
    out); one run, or runs that differ in nothing, their MAIN_SETTINGS."""
    if len(settings) < 2 or not differing:
        return [main_settings(s) for s in settings]
    return [{k: s[k] for k in differing if k in s} for s in settings]


def flat_settings(run_dir: Path) -> dict[str, Any]:
    """The run's configuration flattened to dotted keys (train.lr), for a caller that brings none."""

    def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
        flat: dict[str, Any] = {}
        for key, value in tree.items():
            flat.update(flatten(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value})
        return flat

    return flatten(load_run_config(run_dir).to_dict())


def run_metrics(run_dir: Path) -> tuple[dict[str, float], int]:
    """The run's results for the HParams dashboard (test metrics, best validation; finite ones) and the
    epoch it reached (where they are written)."""
    row = run_row(run_dir) or {}
    sources = {"test": row.get("test") or {}, "best": (row.get("best") or {}).get("valid") or {}}
    metrics = {}
    for tag, (source, key) in METRICS.items():
        value = sources[source].get(key) if isinstance(sources[source], dict) else None
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            metrics[tag] = float(value)
    epoch = row.get("epoch")
    return metrics, epoch if isinstance(epoch, int) else 0


def add_run_hparams(
    board: Any, run_dir: Path, settings: dict[str, Any], domains: dict[str, list[Any]] | None = None
) -> None:
    """What `SummaryWriter.add_hparams` writes (the experiment, the session's settings, its end, and
    each metric as a scalar), into this writer's own event file: add_hparams itself would make a
    sub-run named by the time, and the dashboard would show the metrics apart from the run's curves.
    `domains`: the values each text setting takes across the runs exported together."""
    from torch.utils.tensorboard.summary import hparams

    values = {k: v for k, v in ((k, hparam_value(v)) for k, v in settings.items()) if v is not None}
    metrics, epoch = run_metrics(run_dir)
    discrete = {k: d for k, d in (domains or {}).items() if k in values and all(type(x) is type(values[k]) for x in d)}
    experiment, start, end = hparams(values, metrics, discrete)  # type: ignore[no-untyped-call]
    for summary in (experiment, start, end):
        board.file_writer.add_summary(summary, epoch)
    for tag, value in metrics.items():
        board.add_scalar(tag, value, epoch)


def text_domains(hparams: Sequence[dict[str, Any]]) -> dict[str, list[Any]]:
    """For each text setting, the values it takes across runs (the dashboard then offers them as a filter)."""
    domains: dict[str, list[Any]] = {}
    for settings in hparams:
        for key, raw in settings.items():
            value = hparam_value(raw)
            if isinstance(value, str) and value not in domains.setdefault(key, []):
                domains[key].append(value)
    return {k: sorted(v) for k, v in domains.items() if v}
