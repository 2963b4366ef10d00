"""Provides overlaid charts of several runs: a colour and a marker each, shared axes, a legend that fits."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
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


# ----------------------------------------------------------------------------- seed groups as bands
#
# Runs that differ only by seed are one group: drawn as the mean curve (the group's marker) between
# two thin lines (`BAND_MARKER`), all in the group's colour: the min and max over its runs at each
# point, or (`Spread` "std") the mean ± the runs' standard deviation there; a group of one run stays its
# plain line. Two lines, not a shaded fill: the charts draw lines, scatters and bars
# (tuitrain.tui.widgets.charts.draw_chart), and a fill would hide the other groups' curves beneath it.
#
# A live group (a race still training) is drawn from its finished runs: the mean and band grow as runs
# finish; a run still training is its own thin line (`LIVE_MARKER`, the group's colour) until it ends,
# so the mean never jumps where a partial run's curve stops. A group with no finished run yet shows its
# runs as plain lines.

BAND_MARKER = "·"
LIVE_MARKER = "~"
Spread = Literal["range", "std"]
SPREADS: tuple[Spread, ...] = ("range", "std")
SPREAD_NAME = {"range": "min-max", "std": "± std"}


@dataclass
class OverlaidGroup:
    """Runs of one seed group in an overlay, with the group's label, rank and colour."""

    label: str
    runs: list[Overlaid]
    index: int  # its place in PALETTE
    group: compare.Group | None = None

    @property
    def style(self) -> tuple[str, str, str]:
        return PALETTE[self.index % len(PALETTE)]

    @property
    def finished(self) -> list[Overlaid]:
        """Its runs that ended (what the mean and the band are drawn from)."""
        return [r for r in self.runs if not pending(r)]

    @property
    def live(self) -> list[Overlaid]:
        """Its runs still queued or training (their own lines until they end)."""
        return [r for r in self.runs if pending(r)]


def pending(run: Overlaid) -> bool:
    """Not finished: still queued or training, or not read yet."""
    return run.record is None or run.record.status in compare.PENDING


def overlay_groups(runs: Sequence[Overlaid], groups: Sequence[compare.Group], first: int = 0) -> list[OverlaidGroup]:
    """The runs gathered into their seed groups (in the order the runs come); a run without a record yet,
    or in no group, stands alone under its own label. Colours: each run keeps its own while no two runs
    share a group, else PALETTE from `first` on, one per group."""
    where = {r.run_dir: g for g in groups for r in g.records}
    found: dict[int, OverlaidGroup] = {}
    order: list[OverlaidGroup] = []
    for run in runs:
        group = where.get(run.record.run_dir) if run.record is not None else None
        if group is None:
            order.append(OverlaidGroup(run.label, [run], 0))
            continue
        if id(group) not in found:
            found[id(group)] = OverlaidGroup(group.label, [], 0, group)
            order.append(found[id(group)])
        found[id(group)].runs.append(run)
    for i, entry in enumerate(order):
        entry.index = entry.runs[0].index if len(entry.runs) == 1 and len(order) == len(runs) else first + i
    return order


Points = tuple[list[float], list[float]]


def band(
    points: Sequence[Points], spread: Spread = "range"
) -> tuple[list[float], list[float], list[float], list[float]]:
    """(x, mean, low, high) over several runs' curves, point by point (the i-th point of each: runs
    differing only by seed record the same epochs and steps); x is the runs' mean x there (seconds
    differ). low and high: the min and max there, or (`spread` "std") the mean ± the sample standard
    deviation (n - 1; zero where one run reached that point)."""
    xs, means, lows, highs = [], [], [], []
    for i in range(max((len(x) for x, _ in points), default=0)):
        here = [(x[i], y[i]) for x, y in points if i < len(x)]
        values = [y for _, y in here]
        mean = sum(values) / len(values)
        xs.append(sum(x for x, _ in here) / len(here))
        means.append(mean)
        if spread == "std":
            std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
            lows.append(mean - std)
            highs.append(mean + std)
        else:
            lows.append(min(values))
            highs.append(max(values))
    return xs, means, lows, highs


def group_lines(entry: OverlaidGroup, points: Sequence[Points], spread: Spread = "range") -> tuple[list[Line], Line]:
    """(the band's two lines, the mean's line) of a group's curves; one curve: no band, its own line."""
    colour, _, marker = entry.style
    if len(points) == 1:
        xs, ys = thin_points(*points[0])
        return [], Line("", xs, ys, marker, colour)
    x, mean, low, high = band(points, spread)
    bands = [Line("", *thin_points(x, edge), BAND_MARKER, colour) for edge in (low, high)]
    return bands, Line("", *thin_points(x, mean), marker, colour)


def group_chart_lines(
    groups: Sequence[OverlaidGroup],
    curve: Callable[[Curves], Points],
    spread: Spread = "range",
    hidden: Sequence[Overlaid] = (),
) -> tuple[Line, ...]:
    """One chart's lines for the groups (`curve`: a run's points): the bands first, then the runs still
    training (`LIVE_MARKER`), then the means on top; `hidden` runs count in their band once finished but
    get no line of their own (the dashboard draws its own run)."""
    bands: list[Line] = []
    lives: list[Line] = []
    means: list[Line] = []
    for entry in groups:
        colour, _, marker = entry.style
        done = entry.finished
        shown = [r for r in (entry.live if done else entry.runs) if not any(r is h for h in hidden)]
        for run in shown:
            xs, ys = thin_points(*curve(run.curves))
            if not xs:
                continue  # queued: nothing to draw yet
            lives.append(Line("", xs, ys, LIVE_MARKER if done else marker, colour))
        if done:
            edges, mean = group_lines(entry, [curve(r.curves) for r in done], spread)
            bands += edges
            means.append(mean)
    return (*bands, *lives, *means)


def group_charts(
    groups: Sequence[OverlaidGroup], axis: Axis, log_y: bool = False, spread: Spread = "range"
) -> tuple[Chart, Chart]:
    """(training loss, validation accuracy or loss): each group its mean curve inside a band (min-max,
    or mean ± std), the bands drawn first so every mean is on top."""
    runs = [run for g in groups for run in g.runs]
    accuracy = has_accuracy(runs)
    loss_lines = group_chart_lines(groups, lambda c: train_points(c, axis), spread)
    valid_lines = group_chart_lines(groups, lambda c: valid_points(c, axis, accuracy), spread)
    integer = axis != "time"
    notes = (f"band: {SPREAD_NAME[spread]} over seeds",) if any(len(g.finished) > 1 for g in groups) else ()
    loss = Chart("train loss", AXIS_LABEL[axis], loss_lines, log_y=log_y, x_integer=integer, notes=notes)
    if accuracy:
        valid = Chart(
            "valid accuracy %", AXIS_LABEL[axis], valid_lines, x_integer=integer, y_clamp=(0.0, 100.0), notes=notes
        )
    else:
        valid = Chart("valid loss", AXIS_LABEL[axis], valid_lines, log_y=log_y, x_integer=integer, notes=notes)
    return loss, valid


def seeds_note(entry: OverlaidGroup, spread: Spread = "range") -> str:
    """ "3 seeds: mean •, band · min-max"; live: "3 seeds (1 finished, 1 training, 1 queued): mean •, ~ training"."""
    _, _, marker = entry.style
    done = len(entry.finished)
    training = sum(1 for r in entry.live if r.record is not None and r.record.status == "running")
    waiting = len(entry.live) - training
    counts = [f"{done} finished"] if done else []
    counts += [f"{training} training"] if training else []
    counts += [f"{waiting} queued"] if waiting else []
    text = f"{len(entry.runs)} seeds" + (f" ({', '.join(counts)})" if entry.live else "")
    if not done:
        return f"{text}: {marker} each"
    text += f": mean {marker}"
    if done > 1:
        text += f", band {BAND_MARKER} {SPREAD_NAME[spread]}"
    if entry.live:
        text += f", {LIVE_MARKER} training"
    return text


def group_legend(
    groups: Sequence[OverlaidGroup], width: int, colour: bool = True, spread: Spread = "range", ranks: bool = True
) -> Text:
    """One line per group: its marker, its label, then for a group of seeds n, the band and the mean ±
    std of the ranking metric with its rank (`=2`: within seed noise of its neighbour; `ranks` False:
    none); a single run's line is as `legend` writes it."""
    text = Text(no_wrap=True, overflow="ellipsis")
    for i, entry in enumerate(groups):
        _, rich_colour, marker = entry.style
        if len(entry.runs) == 1:
            run = entry.runs[0]
            single = Overlaid(entry.label, run.curves, entry.index, run.record)
            line = legend([single], width, colour)
            if ranks and entry.group is not None and entry.group.n:
                line.append(f"  {'=' if entry.group.tied else '#'}{entry.group.rank}", style="dim")
                line.truncate(max(8, width), overflow="ellipsis")
        else:
            line = Text(no_wrap=True, overflow="ellipsis")
            line.append(f"{marker}{marker} ", style=f"bold {rich_colour}" if colour else "bold")
            line.append(entry.label, style="bold")
            line.append(f"  {seeds_note(entry, spread)}", style="dim")
            group = entry.group
            if group is not None and group.n:
                accuracy = group.higher_better
                stats = f"  {compare.fmt_metric(group.mean, accuracy)}"
                if group.std is not None:
                    stats += f" ± {compare.fmt_metric(group.std, accuracy, spread=True)}"
                stats += f" (n={group.n})"
                if ranks:
                    stats += f"  {'=' if group.tied else '#'}{group.rank}"
                line.append(stats, style="dim")
            if group is not None and group.failed:
                statuses = "/".join(sorted({r.status for r in group.failed}))
                failed = f"  {len(group.failed)} of {len(group.records)} runs {statuses}, left out of the numbers"
                line.append(failed, style="dim")
            line.truncate(max(8, width), overflow="ellipsis")
        if i:
            text.append("\n")
        text.append_text(line)
    return text


def group_diff_lines(groups: Sequence[OverlaidGroup]) -> list[str]:
    """The settings that differ between the groups (the seed left out), a column per group headed by its marker."""
    shown = [g for g in groups if g.runs[0].record is not None]
    records = [g.runs[0].record for g in shown if g.runs[0].record is not None]
    seeds = any(len(g.runs) > 1 for g in shown)  # groups of seeds: the seed is what a band spans
    keys = [k for k in compare.differing_keys(records) if not (seeds and k in compare.SEED_KEYS)]
    if not keys:
        return []
    table = [("differs", *(g.style[2] * 2 for g in shown))]
    table += [(key, *(compare.fmt_value(rec.config.get(key, "-")) for rec in records)) for key in keys]
    return compare.align(table)
