"""Provides the charts: immutable chart specs built from a RunHistory, drawn with plotext at render time.

A chart is a pure function of (spec, size): `draw_chart` never changes the data it is given and
does every transformation (log scale, percent, tick choice) on copies, so a resize, a redraw or a
second toggle of log-y always shows the same picture. Ticks are computed here and passed to
plotext as labels: `1.2e34`, `0.05`, `350`, integers on step, epoch and count axes.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass
from typing import Any, Literal

from rich.text import Text
from textual.app import RenderResult
from textual.strip import Strip
from textual_plotext import PlotextPlot

from tuitrain.tui.series import RunHistory
from tuitrain.tui.widgets.picture import figure_strips

TRAIN_MARKER = "braille"
VALID_MARKER = "•"
TRAIN_COLOUR = "cyan+"
VALID_COLOUR = "orange"
SCIENTIFIC_ABOVE = 1e5  # tick labels switch to 1.2e34 form at this magnitude ...
SCIENTIFIC_BELOW = 1e-3  # ... and below this one


# ---------------------------------------------------------------- ticks
def nice_ticks(lo: float, hi: float, n: int = 5, integer: bool = False) -> list[float]:
    """As many round values (multiples of 1, 2 or 5 x 10^k) inside [lo, hi] as fit in n, at least two
    where the range allows; integer=True keeps to whole numbers (steps, epochs, counts)."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return []
    lo, hi = min(lo, hi), max(lo, hi)
    if integer:
        lo, hi = math.ceil(lo - 1e-9), math.floor(hi + 1e-9)
        if lo > hi:
            return []
    span = hi - lo
    if span == 0 or not math.isfinite(span):
        return [float(lo)] if span == 0 else [float(lo), float(hi)]
    n = max(2, n)

    chosen: list[float] = []
    top = math.ceil(math.log10(span)) + 1
    for exponent in range(top, top - 8, -1):  # from one step over the whole range down to ~1e-7 of it
        for m in (5, 2, 1):
            step = m * 10.0**exponent
            if integer and step < 1:
                return chosen or [float(lo), float(hi)]
            first, last = math.ceil(lo / step - 1e-9), math.floor(hi / step + 1e-9)
            ticks = [0.0 if k == 0 else k * step for k in range(first, min(last, first + 4 * n) + 1)]
            if last - first + 1 > n:  # too many: the previous step, or every few of these
                return chosen if len(chosen) >= 2 else ticks[:: math.ceil(len(ticks) / n)]
            chosen = ticks
    return chosen


def _decimals(step: float) -> int:
    """Decimal places that write every multiple of `step` exactly (at most 6)."""
    for d in range(7):
        scaled = step * 10**d
        if abs(scaled - round(scaled)) < 1e-6 * max(1.0, scaled):
            return d
    return 6


def _strip(text: str) -> str:
    return text.rstrip("0").rstrip(".") if "." in text else text


def fmt_tick(value: float, step: float | None = None, scientific: bool | None = None) -> str:
    """One tick label: '1.2e34', '0.05', '350', never '-0'. `step` (the axis spacing) sets a shared
    precision; without it, three significant digits at most and no trailing zeros."""
    if not math.isfinite(value):
        return str(value)
    size = abs(value)
    auto = step is None or not step > 0 or not math.isfinite(step)
    if step is None or auto:
        step = 10.0 ** (math.floor(math.log10(size)) - 2) if size else 1.0
    if size < step * 1e-6:
        return "0"
    if scientific is None:
        scientific = size >= SCIENTIFIC_ABOVE or size < SCIENTIFIC_BELOW
    if scientific:
        exponent = math.floor(math.log10(size))
        digits = min(3, max(0, exponent - math.floor(math.log10(step) + 1e-9)))
        mantissa = value / 10.0**exponent
        if round(abs(mantissa), digits) >= 10:  # 9.99e4 rounding up to 10.0e4
            exponent += 1
            mantissa /= 10
        return f"{_strip(f'{mantissa:.{digits}f}')}e{exponent}"
    text = f"{value:.{_decimals(step)}f}"
    if auto:
        text = _strip(text)
    return "0" if float(text) == 0 else text


def tick_labels(ticks: list[float]) -> list[str]:
    """Labels for the ticks of one axis: one shared precision, scientific for all or none."""
    if not ticks:
        return []
    step = min((b - a for a, b in itertools.pairwise(ticks)), default=0.0) or None
    largest = max(abs(t) for t in ticks)
    scientific = largest >= SCIENTIFIC_ABOVE or largest < SCIENTIFIC_BELOW
    return [fmt_tick(t, step, scientific) for t in ticks]


def log_ticks(lo: float, hi: float, n: int) -> tuple[list[float], list[str]]:
    """Ticks for a log axis given as exponents (lo, hi = log10 of the range): positions and labels."""
    decades = list(range(math.ceil(lo - 1e-9), math.floor(hi + 1e-9) + 1))
    if len(decades) >= 2:
        stride = next((s for s in (1, 2, 5, 10, 20, 50, 100) if len(decades) / s <= max(2, n)), 100)
        chosen = [k for k in decades if k % stride == 0] if len(decades) > stride else decades[:1]
        chosen = chosen if len(chosen) >= 2 else [decades[0], decades[-1]]
        return [float(k) for k in chosen], [fmt_tick(10.0**k) for k in chosen]
    candidates = [math.log10(m * 10.0**k) for k in range(math.floor(lo) - 1, math.ceil(hi) + 1) for m in (1, 2, 5)]
    inside = [c for c in candidates if lo - 1e-9 <= c <= hi + 1e-9]
    if 2 <= len(inside) <= 2 * n:
        return inside, [fmt_tick(10.0**c) for c in inside]
    values = [v for v in nice_ticks(10.0**lo, 10.0**hi, n) if v > 0]
    return [math.log10(v) for v in values], tick_labels(values)


# ---------------------------------------------------------------- chart specs
@dataclass(frozen=True)
class Line:
    label: str
    x: tuple[float, ...]
    y: tuple[float | None, ...]
    marker: str = TRAIN_MARKER
    colour: str = TRAIN_COLOUR
    kind: Literal["line", "scatter", "bar"] = "line"


@dataclass(frozen=True)
class Chart:
    """What to draw; `lines` are drawn in order, so the last one is on top."""

    title: str
    xlabel: str = ""
    lines: tuple[Line, ...] = ()
    log_y: bool = False
    x_integer: bool = False  # steps, epochs: integer ticks only
    y_integer: bool = False  # counts
    whole_x: bool = False  # widen the x range to whole numbers (an epoch axis with fractional points)
    x_range: tuple[float, float] | None = None  # fixed ranges (otherwise the data's; y_range: linear axes)
    y_range: tuple[float, float] | None = None
    y_clamp: tuple[float, float] | None = None  # the data range, padded, never leaves this (percent: 0-100)
    empty: str = "no data yet"
    notes: tuple[str, ...] = ()  # added to the title while they fit ("train smoothed 0.8")


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _span(lo: float, hi: float, integer: bool) -> tuple[float, float]:
    """A range that is never empty: a single value gets room around it."""
    if hi > lo:
        return lo, hi
    if integer:
        return (max(0.0, lo - 1) if lo >= 0 else lo - 1), hi + 1
    pad = abs(lo) * 0.1 or 1.0
    return lo - pad, hi + pad


def title_room(width: int, label_width: int = 0) -> int:
    """The longest title plotext draws: it centres the title on the canvas (right of the y tick
    labels) and drops, rather than cuts, one that would cross either edge of the figure."""
    centre = label_width + 1 + max(0, width - 2 - label_width) // 2
    return max((n for n in range(width + 1) if n // 2 <= centre and n - n // 2 <= width - centre), default=0)


def chart_title(chart: Chart, dropped: int, width: int, label_width: int = 0) -> str:
    """The title, '(log scale)' when the axis is, then notes while they fit: all within the room
    plotext leaves beside y tick labels `label_width` wide, so the chart always names itself."""
    room = title_room(width, label_width)
    title = chart.title
    if chart.log_y:
        title += next((mark for mark in (" (log scale)", " (log)") if len(title) + len(mark) <= room), "")
    extras = list(chart.notes)
    if dropped:
        extras.append(f"{dropped:,} ≤ 0 not drawn" if chart.log_y else f"{dropped:,} NaN/inf not drawn")
    for extra in extras:
        if len(title) + 2 + len(extra) <= room:
            title += "  " + extra
    return title[:room]


def _every_nth(values: list[float], most: int) -> list[float]:
    """At most about `most` evenly spaced values, the last one always among them."""
    stride = -(-len(values) // most)
    kept = values[::stride]
    if (len(values) - 1) % stride:
        kept.append(values[-1])
    return kept


def draw_chart(plt: Any, chart: Chart, width: int, height: int) -> None:
    """Draw `chart` on a cleared plotext figure of width x height cells (no data is changed)."""
    series, dropped = [], 0
    for line in chart.lines:
        xs, ys = [], []
        for x, y in zip(line.x, line.y, strict=False):
            if x is None or y is None or not (_finite(x) and _finite(y)) or (chart.log_y and y <= 0):
                dropped += 1
                continue
            xs.append(float(x))
            ys.append(math.log10(y) if chart.log_y else float(y))
        if line.kind == "line" and len(xs) > 2 * width:  # two braille dots per cell: more points draw nothing new
            xs, ys = _every_nth(xs, 2 * width), _every_nth(ys, 2 * width)
        if xs:
            series.append((line, xs, ys))
    if chart.xlabel:
        plt.xlabel(chart.xlabel)
    if not series:
        plt.title(chart_title(chart, dropped, width))
        plt.xlim(0, 1)
        plt.ylim(0, 1)
        plt.xticks([], [])
        plt.yticks([], [])
        message = "no positive values for a log axis" if chart.log_y and dropped else chart.empty
        if width >= len(message) + 4 and height >= 5:
            plt.text(message, 0.5, 0.5, alignment="center")
        return
    all_x = [x for _, xs, _ in series for x in xs]
    all_y = [y for _, _, ys in series for y in ys]
    fixed_x = chart.x_range if chart.x_range and all(map(_finite, chart.x_range)) else None
    fixed_y = chart.y_range if chart.y_range and all(map(_finite, chart.y_range)) and not chart.log_y else None
    xlo, xhi = fixed_x or (min(all_x), max(all_x))
    if chart.whole_x:
        xlo, xhi = math.floor(xlo), max(math.ceil(xhi), math.floor(xlo) + 1)
    xlo, xhi = _span(xlo, xhi, chart.x_integer)
    if fixed_y is not None:
        ylo, yhi = _span(*fixed_y, chart.y_integer)
    else:
        ylo, yhi = _span(min(all_y), max(all_y), chart.y_integer)
        if any(line.kind == "bar" for line, _, _ in series):
            ylo = min(0.0, ylo)
        else:
            pad = (yhi - ylo) * 0.05
            ylo, yhi = ylo - pad, yhi + pad
        if chart.y_clamp is not None and max(ylo, chart.y_clamp[0]) < min(yhi, chart.y_clamp[1]):
            ylo, yhi = max(ylo, chart.y_clamp[0]), min(yhi, chart.y_clamp[1])
    ny = max(2, min(8, (height - 4) // 2))
    nx = max(2, min(10, (width - 8) // 10))
    xt = nice_ticks(xlo, xhi, nx, integer=chart.x_integer)
    if chart.log_y:
        yt, ylabels = log_ticks(ylo, yhi, ny)
    else:
        yt = nice_ticks(ylo, yhi, ny, integer=chart.y_integer)
        ylabels = tick_labels(yt)
    plt.title(chart_title(chart, dropped, width, max((len(label) for label in ylabels), default=0)))
    plt.xlim(xlo, xhi)
    plt.ylim(ylo, yhi)
    plt.xticks(xt, tick_labels(xt))
    plt.yticks(yt, ylabels)
    for line, xs, ys in series:
        if line.kind == "scatter":
            plt.scatter(xs, ys, marker=line.marker, color=line.colour, label=line.label or None)
        elif line.kind == "bar":
            plt.bar(
                xs,
                ys,
                marker=line.marker,
                color=line.colour,
                width=0.8,
                reset_ticks=False,
                label=line.label or None,
                minimum=0,
            )
        else:
            plt.plot(xs, ys, marker=line.marker, color=line.colour, label=line.label or None)


# ---------------------------------------------------------------- the dashboard's charts
def loss_chart(history: RunHistory, smoothing: float = 0.0, log_y: bool = False) -> Chart:
    """Training loss per progress event (smoothed) and validation loss per epoch, x = step."""
    train, valid = history.train_loss, history.valid_loss
    notes = (f"train smoothed {smoothing:g}",) if smoothing else ()
    return Chart(
        "loss",
        "step",
        (
            Line("valid", tuple(valid.x), tuple(valid.y), VALID_MARKER, VALID_COLOUR),
            Line("train", tuple(train.x), tuple(train.smoothed(smoothing)), TRAIN_MARKER, TRAIN_COLOUR),  # on top
        ),
        log_y=log_y,
        x_integer=True,
        notes=notes,
    )


def epoch_chart(history: RunHistory, log_y: bool = False) -> Chart:
    """Accuracy in percent (training per step, validation per epoch); regression: loss per epoch."""
    if history.regression:
        return Chart(
            "loss per epoch",
            "epoch",
            (
                Line("valid", tuple(history.epoch_valid.x), tuple(history.epoch_valid.y), VALID_MARKER, VALID_COLOUR),
                Line("train", tuple(history.epoch_train.x), tuple(history.epoch_train.y), TRAIN_MARKER, TRAIN_COLOUR),
            ),
            log_y=log_y,
            x_integer=True,
        )
    steps = history.steps_per_epoch
    if len(history.train_acc) and steps:
        train = Line(
            "train",
            tuple(x / steps for x in history.train_acc.x),
            tuple(100 * y for y in history.train_acc.y),
            TRAIN_MARKER,
            TRAIN_COLOUR,
        )
    else:  # a watched run whose log has no step events: the per-epoch figure
        train = Line(
            "train",
            tuple(history.epoch_train.x),
            tuple(100 * y for y in history.epoch_train.y),
            TRAIN_MARKER,
            TRAIN_COLOUR,
        )
    valid = Line(
        "valid", tuple(history.epoch_valid.x), tuple(100 * y for y in history.epoch_valid.y), VALID_MARKER, VALID_COLOUR
    )
    return Chart("accuracy %", "epoch", (valid, train), x_integer=True, whole_x=True, y_clamp=(0.0, 100.0))


class TimedPlot(PlotextPlot):
    """Draws its Chart at render time, so the picture follows the size.

    The picture is built once per (chart, size, theme) and its rows handed to textual as Strips
    (tuitrain.tui.widgets.picture); `render()` gives the same picture as rich Text."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.chart = Chart("")
        self._shown = 0  # bumped by show(): part of the picture's key, cheaper than hashing the chart
        self._picture: tuple[tuple[Any, ...], list[Strip] | None] | None = None

    def show(self, chart: Chart) -> None:
        if chart != self.chart:  # an unchanged chart costs no redraw
            self.chart = chart
            self._shown += 1
            self.refresh()

    def _draw(self) -> None:
        """The chart on a cleared figure, sized and themed as textual-plotext's render() does."""
        plt, (width, height) = self.plt, self.size
        plt.clear_figure()
        draw_chart(plt, self.chart, width, height)
        plt.plotsize(width, height)
        # Private, as in textual-plotext's own render(): plotsize() clamps the size to plotext's idea of
        # the terminal, _set_size() undoes that; _get_plotext_theme_name() is the name the widget registered
        # its theme under. No public equivalent; pinned in constraints.txt, checked by tests/test_private_api.py.
        plt._set_size(width, height)
        plt.theme(self._get_plotext_theme_name(self.app.theme))

    def render(self) -> RenderResult:
        try:
            self._draw()
            return Text.from_ansi(self.plt.build())
        except Exception as error:
            return Text(f"{self.chart.title}: cannot draw this chart ({type(error).__name__}: {error})", "red")

    def render_line(self, y: int) -> Strip:
        base = self.visual_style.rich_style
        key = (self._shown, self.size, self._get_plotext_theme_name(self.app.theme), base)
        if self._picture is None or self._picture[0] != key:
            try:
                self._draw()
                self._picture = (key, figure_strips(self.plt, base))
            except Exception:  # render() says what went wrong, in the chart's place
                self._picture = (key, None)
        strips = self._picture[1]
        if strips is None:
            return super().render_line(y)
        return strips[y] if y < len(strips) else Strip.blank(self.size.width, base)


def under(chart: Chart, lines: tuple[Line, ...]) -> Chart:
    """`chart` with `lines` drawn first, beneath its own (other runs overlaid on a live one)."""
    return dataclasses.replace(chart, lines=(*lines, *chart.lines)) if lines else chart


class LossChart(TimedPlot):
    def draw(self, history: RunHistory, smoothing: float, log_y: bool, others: tuple[Line, ...] = ()) -> None:
        self.show(under(loss_chart(history, smoothing, log_y), others))


class EpochChart(TimedPlot):
    def draw(self, history: RunHistory, log_y: bool, others: tuple[Line, ...] = ()) -> None:
        self.show(under(epoch_chart(history, log_y), others))
