"""Provides a tensor's look back: histograms over the recorded steps, a step scrubber, update ratios, dead units."""

from __future__ import annotations

import math
from collections.abc import Sequence

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Static

from tuitrain.events import TensorRecord
from tuitrain.store.histories import BINS, UPDATE_REFERENCE, Histories
from tuitrain.tui.widgets.charts import Chart, Line, TimedPlot
from tuitrain.tui.widgets.render import SHADES, Depth, grey_colour

HEAT_ROWS = 10  # value bands of the heatmap, top = largest values
BAR_ROWS = 4  # text rows of a scrubbed histogram's bars
BARS = " ▁▂▃▄▅▆▇█"
AXIS = 9  # columns for the value labels left of the heatmap
LINE_COLOURS = ("cyan+", "orange", "green+", "magenta+", "yellow+", "blue+", "red+", "white")
Entry = tuple[int, TensorRecord]  # (step, the tensor at that step)


def _side(t: TensorRecord, gradients: bool) -> tuple[list[int], float, float] | None:
    """The counts and range of the values (or of the gradient: None where there is none yet)."""
    if gradients:
        return None if t.grad_counts is None else (t.grad_counts, t.grad_low, t.grad_high)
    return t.counts, t.low, t.high


def _label(value: float) -> str:
    return f"{value:.3g}"[: AXIS - 1].rjust(AXIS - 1) + " "


def columns(count: int, width: int) -> list[int]:
    """Which of `count` records each of at most `width` columns shows (evenly spread, first and last kept)."""
    if count <= width:
        return list(range(count))
    if width < 2:
        return [count - 1]
    return sorted({round(i * (count - 1) / (width - 1)) for i in range(width)})


def rebin(counts: Sequence[int], low: float, high: float, lo: float, hi: float, rows: int) -> list[float]:
    """A record's BINS counts over [low, high] moved onto `rows` equal bands over the shared [lo, hi]."""
    out = [0.0] * rows
    span = hi - lo
    for b, count in enumerate(counts):
        if not count:
            continue
        centre = low + (b + 0.5) * (high - low) / BINS
        band = int((centre - lo) / span * rows) if span > 0 else rows // 2
        out[min(rows - 1, max(0, band))] += count
    return out


def heat_cell(share: float, depth: Depth) -> Text:
    """One cell shaded by its share of the column's largest band: a shade character, and in colour also
    a grey level, so it reads the same in 256 and 16 colours and without colour."""
    if share <= 0:
        return Text(" ")
    level = min(len(SHADES) - 1, max(1, math.ceil(share * (len(SHADES) - 1))))
    char = SHADES[level]
    if depth == "none":
        return Text(char)
    return Text(char, grey_colour(0.3 + 0.7 * share, depth))


def history_heatmap(
    entries: list[Entry], gradients: bool, width: int, depth: Depth, chosen: int | None = None, rows: int = HEAT_ROWS
) -> Text:
    """Steps across, value bands up, shaded by count; a ▲ under the column of record `chosen`."""
    room = max(2, width - AXIS)
    picked = columns(len(entries), room)
    cells = [(i, entries[i][0], _side(entries[i][1], gradients)) for i in picked]
    sides = [side for _, _, side in cells if side is not None]
    what = "gradient" if gradients else "values"
    if not sides:
        return Text(f"no {what} recorded yet" + (" (gradients come with the first step)" if gradients else ""), "dim")
    lo, hi = min(s[1] for s in sides), max(s[2] for s in sides)
    stretch = max(1, min(6, room // max(1, len(cells))))  # few records: wider columns
    bands = [rebin(*side, lo, hi, rows) if side is not None else [0.0] * rows for _, _, side in cells]
    peaks = [max(col) or 1.0 for col in bands]
    out = Text(no_wrap=True, overflow="crop")
    for r in range(rows - 1, -1, -1):
        edge = hi if r == rows - 1 else lo if r == 0 else (lo + hi) / 2 if r == rows // 2 else None
        out.append(_label(edge) if edge is not None else " " * AXIS, "dim")
        for col, peak in zip(bands, peaks, strict=False):
            for _ in range(stretch):
                out.append_text(heat_cell(col[r] / peak, depth))
        out.append("\n")
    marks = "".join(("▲" if i == chosen else " ") * stretch for i, _, _ in cells)
    if chosen is not None and chosen not in picked:  # between two shown columns: the nearest one
        nearest = min(range(len(picked)), key=lambda k: abs(picked[k] - chosen))
        marks = " " * (nearest * stretch) + "▲"
    out.append(" " * AXIS + marks.rstrip() + "\n")
    first, last = f"step {cells[0][1]:,}", f"{cells[-1][1]:,}"
    span = len(cells) * stretch
    out.append(" " * AXIS + first + " " * max(1, span - len(first) - len(last)) + last, "dim")
    return out


def bars(counts: Sequence[int], rows: int = BAR_ROWS) -> list[str]:
    """A histogram as `rows` lines of eighth-block bars, one column per bin, the tallest bin full."""
    peak = max(counts) or 1
    lines = []
    for r in range(rows - 1, -1, -1):
        line = ""
        for c in counts:
            eighths = round(c / peak * rows * 8) - r * 8
            line += BARS[max(1 if r == 0 else 0, min(8, eighths))] if c else " "  # any count shows
        lines.append(line)
    return lines


def snapshot_block(step: int, t: TensorRecord, gradients: bool, title: str) -> list[Text]:
    """A record's histogram with its range and statistics, as lines of BINS + a few columns."""
    side = _side(t, gradients)
    head = Text(f"{title}: step {step:,}", "bold")
    if side is None:
        return [head, Text("no gradient at this step", "dim")]
    counts, low, high = side
    lines = [head] + [Text(line) for line in bars(counts)]
    lines.append(Text(f"{low:.3g}".ljust(BINS // 2) + f"{high:.3g}".rjust(BINS - BINS // 2), "dim"))

    def stat(name: str, value: float | None) -> str:
        return f"{name} {'-' if value is None else f'{value:.3g}'}"

    lines.append(Text(f"{stat('mean', t.mean)}  {stat('std', t.std)}"))
    lines.append(Text(f"{stat('grad norm', t.grad_norm)}  {stat('update/weight', t.update_ratio)}"))
    return lines


def side_by_side(left: list[Text], right: list[Text], gap: int = 6) -> Text:
    width = max(BINS, *(len(t.plain) for t in left)) + gap
    out = Text(no_wrap=True, overflow="crop")
    for i in range(max(len(left), len(right))):
        a = left[i] if i < len(left) else Text("")
        b = right[i] if i < len(right) else Text("")
        out.append_text(a).append(" " * (width - len(a.plain))).append_text(b).append("\n")
    return out


def _layer(name: str) -> str:
    return name.rsplit(".", 1)[0] if "." in name else name


def ratio_chart(histories: Histories, focus: str) -> Chart:
    """The update/weight ratio of every layer's weights over the steps, log axis, a reference line at 1e-3."""
    names = [t.name for t in histories.records[-1].tensors] if len(histories) else []
    weights = [n for n in names if n.endswith("weight")] or names
    ordered = [n for n in weights if n != focus] + ([focus] if focus in weights else [])  # the open one on top
    lines = []
    for k, name in enumerate(ordered):
        points = [(s, t.update_ratio) for s, t in histories.tensor(name) if t.update_ratio is not None]
        if points:
            colour = "red+" if name == focus else LINE_COLOURS[k % len(LINE_COLOURS)]
            lines.append(
                Line(_layer(name), tuple(p[0] for p in points), tuple(p[1] for p in points), "braille", colour)
            )
    steps = [r.step for r in histories.records]
    if lines and steps:
        ends = (float(min(steps)), float(max(steps)))
        lines.insert(0, Line(f"{UPDATE_REFERENCE:g}", ends, (UPDATE_REFERENCE, UPDATE_REFERENCE), "-", "white"))
    return Chart("update/weight ratio per layer", "step", tuple(lines), log_y=True, x_integer=True)


def dead_chart(histories: Histories, focus: str) -> Chart | None:
    """Per layer followed by a ReLU, the percentage of its units never positive on the fixed batch (None: no ReLU)."""
    layers = list(histories.records[-1].dead) if len(histories) else []
    if not layers:
        return None
    lines = []
    for k, layer in enumerate(layers):
        points = [(r.step, 100 * r.dead[layer]) for r in histories.records if layer in r.dead]
        colour = "red+" if layer == _layer(focus) else LINE_COLOURS[k % len(LINE_COLOURS)]
        lines.append(Line(layer, tuple(p[0] for p in points), tuple(p[1] for p in points), "braille", colour))
    return Chart("dead ReLU units %", "step", tuple(lines), x_integer=True, y_range=(0.0, 100.0))


class ParamHistory(Vertical):
    """The history part of the tensor drill-down; `show` redraws it, `scrub` moves the chosen step."""

    def __init__(self, *, id: str | None = None):
        super().__init__(id=id)
        self.name_shown = ""
        self.histories: Histories | None = None
        self.chosen: int | None = None  # index of the scrubbed record; None follows the latest
        self.gradients = False
        self.depth: Depth = "truecolor"
        self.rows = HEAT_ROWS  # value bands drawn: fewer where the screen is short (ParamDetail.fit)

    def compose(self) -> ComposeResult:
        yield Static(id="history-heat")
        yield Static(id="history-scrub")
        with Horizontal(id="history-charts"):
            yield TimedPlot(id="history-ratio")
            yield TimedPlot(id="history-dead")

    def entries(self) -> list[Entry]:
        return self.histories.tensor(self.name_shown) if self.histories is not None else []

    def index(self) -> int | None:
        """The scrubbed record (the latest unless moved), or None with no records."""
        count = len(self.entries())
        if not count:
            return None
        return count - 1 if self.chosen is None else min(self.chosen, count - 1)

    def scrub(self, delta: int | None = None, to: int | None = None) -> None:
        """One record back or on (delta), or to the first (0) or latest (-1)."""
        count = len(self.entries())
        if not count:
            return
        current = self.index() or 0
        target = (count - 1 if to < 0 else to) if to is not None else current + (delta or 0)
        target = max(0, min(count - 1, target))
        self.chosen = None if target == count - 1 else target
        self.redraw()

    def show(self, name: str, histories: Histories, depth: Depth) -> None:
        if name != self.name_shown:
            self.chosen = None
        if self.histories is not None and histories is not self.histories:
            self.chosen = None  # a new run
        self.name_shown, self.histories, self.depth = name, histories, depth
        self.redraw()

    def redraw(self) -> None:
        if not self.is_mounted or self.histories is None:
            return
        entries = self.entries()
        index = self.index()
        width = max(20, self.size.width or 80)
        what = "gradient" if self.gradients else "values"
        caption = Text(f"{what} over {len(entries):,} recorded steps", "bold")
        caption.append("   g: values/gradients  ←/→: step  home/end: first/latest", "dim")
        heat = history_heatmap(entries, self.gradients, width, self.depth, index, self.rows)
        self.query_one("#history-heat", Static).update(caption.append("\n").append_text(heat))
        scrub = self.query_one("#history-scrub", Static)
        if index is None:
            scrub.update("")
        else:
            step, t = entries[index]
            last_step, last = entries[-1]
            chosen = snapshot_block(step, t, self.gradients, f"chosen ({index + 1} of {len(entries)})")
            scrub.update(side_by_side(chosen, snapshot_block(last_step, last, self.gradients, "latest")))
        self.query_one("#history-ratio", TimedPlot).show(ratio_chart(self.histories, self.name_shown))
        dead = dead_chart(self.histories, self.name_shown)
        plot = self.query_one("#history-dead", TimedPlot)
        plot.display = dead is not None
        if dead is not None:
            plot.show(dead)
