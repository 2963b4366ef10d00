"""Provides the layer health board: per layer (module), from the recorded histories, what is wrong if anything.

Pure functions over HistoryRecords (a run's histories.jsonl, or the records a live viewer holds): no torch,
no data set. Every threshold is a named constant with where it comes from."""

from __future__ import annotations

import math
import os
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuitrain.errors import UsageError, escape
from tuitrain.events import HistoryRecord
from tuitrain.store.histories import HISTORIES, UPDATE_REFERENCE, activations_of, nonfinite_of, read_histories

# The update/weight ratio (|Δw| / |w| across one step) judged against a band around UPDATE_REFERENCE (1e-3):
# "a rough heuristic is that this ratio should be somewhere around 1e-3. If it is lower than this then the
# learning rate might be too low. If it is higher then the learning rate is likely too high." (Karpathy,
# CS231n notes, "Neural Networks Part 3", Ratio of weights:updates). One decade either side is the band.
UPDATE_BAND = (UPDATE_REFERENCE / 10, UPDATE_REFERENCE * 10)
UPDATE_WINDOW = 3  # the ratio judged is the median of the last this many measured (one step is noisy)
# "you may find that as much as 40% of your network can be 'dead'" (CS231n notes, "Neural Networks Part 1",
# ReLU) - said of a learning rate set too high; a fresh ReLU network on 2-D inputs has 10-20% never positive.
DEAD_LIMIT = 0.4
# Sigmoid/tanh outputs pinned at the ends pass almost no gradient (Glorot & Bengio 2010, "Understanding the
# difficulty of training deep feedforward neural networks", saturation of the top hidden layer). Half of them
# there is a layer that mostly no longer learns: our judgement, not a published figure.
SATURATED_LIMIT = 0.5
# A layer's gradient this far below the largest layer's at the same step barely moves (the vanishing
# gradient of Hochreiter 1991 / Bengio et al. 1994: shrinking by a factor per layer, decades apart).
VANISHING_RELATIVE = 1e-3
VANISHING_NORM = 1e-8  # ... or this small outright: as good as no gradient in float32
# Exploding: a layer's gradient norm grown this many times over its median so far (Pascanu et al. 2013,
# "On the difficulty of training recurrent neural networks": norms jump by orders of magnitude) ...
EXPLODING_GROWTH = 100.0
EXPLODING_NORM = 1e4  # ... or this large outright (gradient clipping is commonly set at norm 1 to 10)

SPARK = "▁▂▃▄▅▆▇█"
SPARK_WIDTH = 16  # characters of a sparkline: the newest points, older ones dropped

# Verdicts, worst first: their order is the board's default sort.
NONFINITE, EXPLODING, DEAD, SATURATED, VANISHING, TOO_LARGE, TOO_SMALL, OK = range(8)


@dataclass
class LayerHealth:
    """One layer (a module with parameters: its weight and bias together) at one recorded step."""

    name: str  # the module's name ("layers.1"); "" for parameters of the model itself
    tensors: list[str]  # its parameter tensors
    steps: list[int]  # the recorded steps up to the board's, oldest first (the series' x)
    grad_norms: list[float | None]  # per step: the layer's gradient norm (all its tensors); None before backward
    update_ratios: list[float | None]  # per step: update/weight of its weight tensor; None where not measured
    grad_norm: float | None  # at the board's step
    update_ratio: float | None  # the median of the last UPDATE_WINDOW measured at or before it
    activation: str | None  # the activation that follows it (relu, tanh, ...), where known
    dead_fraction: float | None  # ReLU family: share of units never positive on the probe batch
    saturated_fraction: float | None  # sigmoid/tanh family: share of outputs at the ends
    activation_mean: float | None
    activation_std: float | None
    nonfinite: int  # NaN/inf values in its weights, gradients and activations
    verdict: str  # ok, dead units 63%, updates too large, ...
    rank: int  # the verdict's place, worst (0) first: NONFINITE ... OK
    score: float  # how bad within its verdict (larger is worse)
    order: int  # its place in the network

    @property
    def ok(self) -> bool:
        return self.rank == OK

    def sort_key(self) -> tuple[int, float, int]:
        return (self.rank, -self.score, self.order)


@dataclass
class Health:
    step: int
    layers: list[LayerHealth] = field(default_factory=list)  # worst first
    probed: bool = True  # False: an older run, without activation statistics or non-finite counts


def layer_of(tensor: str) -> str:
    return tensor.rpartition(".")[0]


def in_band(ratio: float | None) -> bool | None:
    """Whether an update ratio lies in UPDATE_BAND; None for no ratio."""
    return None if ratio is None else UPDATE_BAND[0] <= ratio <= UPDATE_BAND[1]


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def verdict(
    grad_norm: float | None,
    earlier_norms: Sequence[float],
    largest_norm: float | None,
    update_ratio: float | None,
    dead: float | None,
    saturated: float | None,
    nonfinite: int,
) -> tuple[int, str, float]:
    """(rank, words, score) for one layer: the worst thing found, in the order of the constants."""
    if nonfinite:
        return NONFINITE, "non-finite values", float(nonfinite)
    if grad_norm is not None:
        typical = statistics.median(earlier_norms) if earlier_norms else None
        if grad_norm > EXPLODING_NORM or (typical and grad_norm > EXPLODING_GROWTH * typical):
            return EXPLODING, "exploding gradient", grad_norm / (typical or 1.0)
    if dead is not None and dead >= DEAD_LIMIT:
        return DEAD, f"dead units {dead:.0%}", dead
    if saturated is not None and saturated >= SATURATED_LIMIT:
        return SATURATED, f"saturated {saturated:.0%}", saturated
    if grad_norm is not None and (
        grad_norm < VANISHING_NORM or (largest_norm and grad_norm < VANISHING_RELATIVE * largest_norm)
    ):
        return VANISHING, "vanishing gradient", -math.log10(max(grad_norm, 1e-30))
    if update_ratio is not None and update_ratio > UPDATE_BAND[1]:
        return TOO_LARGE, "updates too large", update_ratio
    if update_ratio is not None and update_ratio < UPDATE_BAND[0]:
        return TOO_SMALL, "updates too small", 1.0 / max(update_ratio, 1e-30)
    return OK, "ok", 0.0


def layer_health(records: Sequence[HistoryRecord], step: int | None = None, activation: str | None = None) -> Health:
    """The board at the record of `step` (the newest at or before it; the newest of all without one), from
    the records up to it. `activation` names the network's activation where the records do not (older runs).
    Raises LookupError when no record is at or before `step` (or there are none)."""
    upto = [r for r in records if step is None or r.step <= step]
    if not upto:
        raise LookupError("no records")
    current = upto[-1]
    names: list[str] = []  # layers in network order (as the record lists the tensors)
    tensors: dict[str, list[str]] = {}
    for t in current.tensors:
        layer = layer_of(t.name)
        if layer not in tensors:
            names.append(layer)
            tensors[layer] = []
        tensors[layer].append(t.name)
    series: dict[str, list[float | None]] = {name: [] for name in names}
    ratios: dict[str, list[float | None]] = {name: [] for name in names}
    layer_by_tensor = {t: name for name in names for t in tensors[name]}
    for record in upto:  # one pass over each record's tensors (a viewer redoes this as records come)
        squares: dict[str, float] = {}
        weight_ratio: dict[str, float | None] = {}  # the largest over a layer's weight tensors (None: unmeasured)
        other_ratio: dict[str, float] = {}  # ... over its other tensors, for a layer without weights
        for t in record.tensors:
            owner = layer_by_tensor.get(t.name)
            if owner is None:
                continue
            norm = _finite(t.grad_norm)
            if norm is not None:
                squares[owner] = squares.get(owner, 0.0) + norm * norm
            r = t.update_ratio
            if t.name.endswith("weight"):
                known = weight_ratio.get(owner)
                weight_ratio[owner] = r if known is None else known if r is None else max(known, r)
            elif r is not None:
                other_ratio[owner] = max(other_ratio.get(owner, r), r)
        for name in names:
            series[name].append(math.sqrt(squares[name]) if name in squares else None)
            ratios[name].append(weight_ratio[name] if name in weight_ratio else other_ratio.get(name))
    norms_now = [n for n in (series[name][-1] for name in names) if n is not None]
    largest = max(norms_now) if norms_now else None
    activations = activations_of(current)
    counted = nonfinite_of(current)
    layers = []
    for order, name in enumerate(names):
        probe = activations.get(name)
        dead = current.dead.get(name) if probe is None or probe.dead is None else probe.dead
        saturated = probe.saturated if probe is not None else None
        bad = sum((counted or {}).get(t, 0) for t in tensors[name]) + (probe.nonfinite if probe else 0)
        grad = series[name][-1]
        earlier = [n for n in series[name][:-1] if n is not None]
        measured = [r for r in ratios[name] if r is not None][-UPDATE_WINDOW:]
        ratio = statistics.median(measured) if measured else None
        rank, words, score = verdict(grad, earlier, largest, ratio, dead, saturated, bad)
        kind = probe.kind if probe is not None else (activation if name in current.dead else None)
        layers.append(
            LayerHealth(
                name,
                tensors[name],
                [r.step for r in upto],
                series[name],
                ratios[name],
                grad,
                ratio,
                kind,
                dead,
                saturated,
                _finite(probe.mean) if probe else None,
                _finite(probe.std) if probe else None,
                bad,
                words,
                rank,
                score,
                order,
            )
        )
    layers.sort(key=LayerHealth.sort_key)
    return Health(current.step, layers, counted is not None)


def run_health(run_dir: str | os.PathLike[str], step: int | None = None) -> Health:
    """The board of a run directory from its files (config.toml and histories.jsonl); UsageError (exit 2)
    for a folder that is not a run, a run without histories, or a `step` with no record."""
    from tuitrain.store.run_dir import load_run_config

    config = load_run_config(run_dir)  # RunDirError: missing, not a run, unreadable settings
    records = read_histories(Path(run_dir) / HISTORIES)
    if not records:
        raise UsageError(
            f"{escape(run_dir)}: no weight histories recorded (trained with --no-histories, or not started)"
        )
    if step is not None and not records[0].step <= step <= records[-1].step:
        raise UsageError(f"--step {step}: outside the recorded steps ({records[0].step} to {records[-1].step})")
    return layer_health(records, step, getattr(config.model, "activation", None))


def health_to_dict(health: Health) -> dict[str, Any]:
    """`tuitrain health --json`: one object, layers worst first."""
    return {
        "step": health.step,
        "layers": [
            {
                "name": layer.name,
                "grad_norm": _json_number(layer.grad_norm),
                "update_ratio": _json_number(layer.update_ratio),
                "dead_fraction": _json_number(layer.dead_fraction),
                "saturated_fraction": _json_number(layer.saturated_fraction),
                "activation_mean": _json_number(layer.activation_mean),
                "activation_std": _json_number(layer.activation_std),
                "nonfinite": layer.nonfinite,
                "verdict": layer.verdict,
            }
            for layer in health.layers
        ],
    }


def _json_number(value: float | None) -> float | None:
    return float(f"{value:.6g}") if value is not None and math.isfinite(value) else None


def sparkline(values: Sequence[float | None], width: int = SPARK_WIDTH, log: bool = True) -> str:
    """The newest `width` values as block characters, low to high over their own range (on a log scale
    when `log`: norms and ratios span decades); a space where a value is missing, all ▁ when flat."""
    tail = list(values)[-width:]
    scaled = [
        None if v is None or not math.isfinite(v) or (log and v <= 0) else (math.log10(v) if log else v) for v in tail
    ]
    known = [v for v in scaled if v is not None]
    if not known:
        return " " * len(tail)
    low, high = min(known), max(known)
    top = len(SPARK) - 1
    return "".join(
        " " if v is None else SPARK[0 if high == low else round((v - low) / (high - low) * top)] for v in scaled
    )
