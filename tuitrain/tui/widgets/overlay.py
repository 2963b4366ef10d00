"""Provides overlaid charts of several runs: a colour and a marker each, shared axes, a legend that fits."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from rich.text import Text

from tuitrain.fmt import fmt_score
from tuitrain.runs import compare
from tuitrain.runs.compare import Curves, RunRecord, score
from tuitrain.tui.widgets.charts import Chart, Line

Axis = Literal["step", "epoch", "time"]
AXES: tuple[Axis, ...] = ("step", "epoch", "time")
AXIS_LABEL = {"step": "step", "epoch": "epoch", "time": "seconds of training"}
# (plotext colour, rich colour, marker): distinct hues in 16 and 256 colours, distinct markers without colour
PALETTE = (
    ("cyan+", "bright_cyan", "•"),
    ("orange", "dark_orange", "+"),
    ("green+", "bright_green", "x"),
    ("magenta+", "bright_magenta", "o"),
    ("yellow+", "bright_yellow", "*"),
    ("red+", "bright_red", "#"),
    ("blue+", "bright_blue", "@"),
    ("white", "white", "%"),
)
MAX_LINE_POINTS = 400  # per run and chart: plotext's cost grows with points, the picture does not


@dataclass
class Overlaid:
    """One run in an overlay: what it is called and its curves so far."""

    label: str
    curves: Curves
    index: int  # its place in PALETTE (kept when other runs come and go)
    record: RunRecord | None = None
    curves_dir: str | None = None  # the run directory its curves are read from

    @property
    def style(self) -> tuple[str, str, str]:
        return PALETTE[self.index % len(PALETTE)]


def thin_points(xs: list[float], ys: list[float]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    stride = max(1, -(-len(xs) // MAX_LINE_POINTS))
    if stride == 1:
        return tuple(xs), tuple(ys)
    keep = list(range(0, len(xs), stride))
    if keep[-1] != len(xs) - 1:
        keep.append(len(xs) - 1)  # the latest point always shows
    return tuple(xs[i] for i in keep), tuple(ys[i] for i in keep)


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def train_points(curves: Curves, axis: Axis) -> tuple[list[float], list[float]]:
    """Training loss: per recorded step (step and time axes), else per epoch."""
    xs: list[float] = []
    ys: list[float] = []
    if axis != "epoch" and len(curves.steps) >= len(curves.epochs):  # a short run's file may hold few steps
        for s in curves.steps:
            x, y = _number(s.get("step" if axis == "step" else "seconds")), _number(s.get("loss"))
            if x is not None and y is not None:
                xs.append(x)
                ys.append(y)
        return xs, ys
    for e in curves.epochs:
        x = _number(e.get({"step": "step", "epoch": "epoch", "time": "total_seconds"}[axis]))
        y = _number((e.get("train") or {}).get("loss"))
        if x is not None and y is not None:
            xs.append(x)
            ys.append(y)
    return xs, ys


def valid_points(curves: Curves, axis: Axis, accuracy: bool) -> tuple[list[float], list[float]]:
    """Validation accuracy in percent (or loss) per epoch."""
    xs: list[float] = []
    ys: list[float] = []
    for e in curves.epochs:
        x = _number(e.get({"step": "step", "epoch": "epoch", "time": "total_seconds"}[axis]))
        y = _number((e.get("valid") or {}).get("accuracy" if accuracy else "loss"))
        if x is not None and y is not None:
            xs.append(x)
            ys.append(100 * y if accuracy else y)
    return xs, ys


def has_accuracy(runs: Sequence[Overlaid]) -> bool:
    return any((e.get("valid") or {}).get("accuracy") is not None for r in runs for e in r.curves.epochs)


def overlay_charts(runs: Sequence[Overlaid], axis: Axis, log_y: bool = False) -> tuple[Chart, Chart]:
    """(training loss, validation accuracy or loss) with one line per run."""
    accuracy = has_accuracy(runs)
    loss_lines, valid_lines = [], []
    for run in runs:
        colour, _, marker = run.style
        xs, ys = thin_points(*train_points(run.curves, axis))
        loss_lines.append(Line("", xs, ys, marker, colour))
        xs, ys = thin_points(*valid_points(run.curves, axis, accuracy))
        valid_lines.append(Line("", xs, ys, marker, colour))
    integer = axis != "time"
    loss = Chart("train loss", AXIS_LABEL[axis], tuple(loss_lines), log_y=log_y, x_integer=integer)
    if accuracy:
        valid = Chart("valid accuracy %", AXIS_LABEL[axis], tuple(valid_lines), x_integer=integer, y_clamp=(0.0, 100.0))
    else:
        valid = Chart("valid loss", AXIS_LABEL[axis], tuple(valid_lines), log_y=log_y, x_integer=integer)
    return loss, valid


def progress(run: Overlaid) -> tuple[str, dict[str, Any] | None]:
    """ "12/300" and the best validation so far, from the curves (fresher than summary.json's heartbeat)."""
    record = run.record
    total = record.epochs if record is not None and record.epochs else "?"
    if run.curves.epochs:
        best = max(
            (e.get("valid") for e in run.curves.epochs if score(e.get("valid")) is not None),
            key=lambda v: score(v) or (0.0, 0.0),
            default=None,
        )
        return f"{run.curves.epochs[-1].get('epoch', '?')}/{total}", best
    done = record.epoch if record is not None and record.epoch is not None else 0
    return f"{done}/{total}", record.best_valid if record is not None else None


def legend(runs: Sequence[Overlaid], width: int, colour: bool = True, ranks: dict[str, int] | None = None) -> Text:
    """One line per run: its marker, its label, status, epochs, best validation, test, rank; cut at `width`."""
    text = Text(no_wrap=True, overflow="ellipsis")
    for i, run in enumerate(runs):
        _, rich_colour, marker = run.style
        record = run.record
        tail = ""
        if record is not None:
            epochs, best = progress(run)
            tail = f"  {record.status} {epochs}  best {fmt_score(best)}"
            if record.test:
                tail += f"  test {fmt_score(record.test)}"
            if ranks and record.run_dir in ranks:
                tail += f"  #{ranks[record.run_dir]}"
        line = Text(no_wrap=True, overflow="ellipsis")
        line.append(f"{marker}{marker} ", style=f"bold {rich_colour}" if colour else "bold")
        line.append(run.label, style="bold")
        line.append(tail, style="dim")
        line.truncate(max(8, width), overflow="ellipsis")
        if i:
            text.append("\n")
        text.append_text(line)
    return text


def diff_lines(runs: Sequence[Overlaid]) -> list[str]:
    """The settings that differ, one row per key, a column per run headed by its legend marker."""
    records = [r.record for r in runs if r.record is not None]
    keys = compare.differing_keys(records)
    if not keys:
        return []
    table = [("differs", *(r.style[2] * 2 for r in runs if r.record is not None))]
    table += [(key, *(compare.fmt_value(rec.config.get(key, "-")) for rec in records)) for key in keys]
    return compare.align(table)
