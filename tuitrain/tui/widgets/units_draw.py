"""Provides the Units panel's pictures as text: unit maps over the input plane, the enlarged unit with its
incoming weights, contribution curves (a Chart), and an image stepped through the network.

Maps use a diverging scale (blue < 0 < red, white about 0, each unit scaled by its own largest magnitude)
that reads in truecolor, 256 and 16 colours; with NO_COLOR they are shades: ░▒▓█ above 0, - = ≡ below it.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rich.segment import Segment
from rich.style import Style
from rich.text import Span, Text
from textual.strip import Strip

from tuitrain.tui.widgets.charts import TRAIN_COLOUR, VALID_COLOUR, Chart, Line
from tuitrain.tui.widgets.render import (
    Depth,
    Phrase,
    bar,
    diverging_colour,
    fit_phrases,
    grey_picture,
    named,
)
from tuitrain.tui.widgets.text_lines import text_strips

MAP_COLUMNS = 8  # a small unit map: 8 x 8 pixels = 8 columns x 4 lines ...
MAP_LINES = MAP_COLUMNS // 2
CELL_WIDTH = MAP_COLUMNS + 2  # ... 2 columns of gap ...
CELL_HEIGHT = MAP_LINES + 1  # ... and its label line under it
BIG_SIDE = 24  # the enlarged unit: 24 x 24 pixels (24 columns x 12 lines)
POSITIVE_SHADES = "░▒▓█"
NEGATIVE_SHADES = "-=≡"
CURVE_COLOUR = "gray"  # each unit's contribution: faint
KINK_MARKER = "▲"

if TYPE_CHECKING:  # torch stays out of the app's start (the data arrives with the first inspection)
    from tuitrain.training.units import FeatureMaps, LayerMaps, UnitCurves


def unit_char(value: float) -> str:
    """NO_COLOR: a scaled value in [-1, 1] as a shade (░▒▓█ above 0, - = ≡ below, · about 0)."""
    if not math.isfinite(value):
        return "?"
    v = max(-1.0, min(1.0, value))
    if abs(v) < 0.08:
        return "·"
    shades = POSITIVE_SHADES if v > 0 else NEGATIVE_SHADES
    return shades[min(len(shades) - 1, int(abs(v) * len(shades)))]


def resample(values: Any, rows: int, cols: int) -> list[list[float]]:
    """A H x W tensor averaged down (or repeated up) to rows x cols, top row first as given."""
    import torch.nn.functional as F

    t = values.detach().float().reshape(1, 1, *values.shape[-2:])
    small = F.adaptive_avg_pool2d(t, (rows, cols)) if rows <= t.shape[2] else F.interpolate(t, size=(rows, cols))
    out: list[list[float]] = small[0, 0].tolist()
    return out


def peak(values: list[list[float]]) -> float:
    return max((abs(v) for row in values for v in row if math.isfinite(v)), default=0.0)


LEVELS = 12  # colour steps each side of 0: the maps' colours and styles are cached per step pair
Runs = list[tuple[str, Style | None]]  # one text line of a picture: runs of characters in one style


@functools.lru_cache(maxsize=4096)
def _cell_style(top: int, bottom: int | None, depth: Depth) -> Style:
    colour = diverging_colour(top / LEVELS, depth)
    return Style(color=colour, bgcolor=None if bottom is None else diverging_colour(bottom / LEVELS, depth))


def _level(value: float) -> int:
    return round(max(-1.0, min(1.0, value)) * LEVELS) if math.isfinite(value) else 0


_MEAN_CHARS = {total: unit_char(total / (2 * LEVELS)) for total in range(-2 * LEVELS, 2 * LEVELS + 1)}


def _runs(upper: list[int], lower: list[int] | None, depth: Depth) -> Runs:
    """One line of two pixel rows (levels -LEVELS..LEVELS): '▀' runs, or NO_COLOR shades of their mean."""
    if depth == "none":
        pairs = zip(upper, lower if lower is not None else upper, strict=False)
        return [("".join(_MEAN_CHARS[a + b] for a, b in pairs), None)]
    runs: Runs = []
    run, style = 0, None
    for col, level in enumerate(upper):
        cell = _cell_style(level, lower[col] if lower is not None and col < len(lower) else None, depth)
        if cell is not style and run:
            runs.append(("▀" * run, style))
            run = 0
        style, run = cell, run + 1
    if run:
        runs.append(("▀" * run, style))
    return runs


def level_lines(levels: list[list[int]], depth: Depth) -> list[Runs]:
    """Rows of levels (top first), two per text line."""
    return [_runs(levels[i], levels[i + 1] if i + 1 < len(levels) else None, depth) for i in range(0, len(levels), 2)]


def signed_lines(values: list[list[float]], depth: Depth, scale: float | None = None) -> list[Runs]:
    """Rows of values (top first) scaled by `scale` (default: their largest magnitude), two per text line:
    '▀' with the upper value as foreground, the lower as background; NO_COLOR: shades of their mean."""
    top = scale if scale else peak(values) or 1.0
    return level_lines([[_level(v / top) for v in row] for row in values], depth)


def runs_text(lines: list[Runs]) -> Text:
    canvas = Canvas()
    for index, line in enumerate(lines):
        if index:
            canvas.add("\n")
        canvas.add_runs(line)
    return canvas.text()


def signed_picture(values: list[list[float]], depth: Depth, scale: float | None = None) -> Text:
    return runs_text(signed_lines(values, depth, scale))


class Canvas:
    """Lines of styled segments built piece by piece: as a Text (rich's Text.append per piece is slow) or
    as strips for TextLines, which skips the Text altogether (the unit grid redraws live)."""

    def __init__(self) -> None:
        self.lines: list[list[Segment]] = [[]]

    def add(self, piece: str, style: Style | str | None = None) -> None:
        chosen = _parsed(style) if isinstance(style, str) else style
        first, *rest = piece.split("\n")
        if first:
            self.lines[-1].append(Segment(first, chosen))
        for part in rest:
            self.lines.append([Segment(part, chosen)] if part else [])

    def add_runs(self, runs: Runs) -> None:
        line = self.lines[-1]
        for piece, style in runs:  # runs never hold a line break
            line.append(Segment(piece, style))

    def add_text(self, text: Text) -> None:
        for index, strip in enumerate(text_strips(text)):
            if index:
                self.lines.append([])
            self.lines[-1].extend(strip)

    def strips(self) -> list[Strip]:
        return [Strip(line) for line in self.lines]

    def text(self) -> Text:
        parts: list[str] = []
        spans: list[Span] = []
        offset = 0
        for index, line in enumerate(self.lines):
            if index:
                parts.append("\n")
                offset += 1
            for segment in line:
                if segment.style:
                    spans.append(Span(offset, offset + len(segment.text), segment.style))
                parts.append(segment.text)
                offset += len(segment.text)
        return Text("".join(parts), spans=spans, no_wrap=True, overflow="crop")


@functools.lru_cache(maxsize=256)
def _parsed(style: str) -> Style:
    return Style.parse(style)


def layer_pictures(activations: Any, side: int, depth: Depth) -> list[list[Runs]]:
    """Every unit's map (units x H x W, row 0 = bottom) at side x side pixels, each to its own peak."""
    import torch
    import torch.nn.functional as F

    maps = torch.nan_to_num(activations.detach().float().flip(1).unsqueeze(1))  # top row first
    small = F.adaptive_avg_pool2d(maps, (side, side))[:, 0]
    peaks = small.abs().flatten(1).amax(1).clamp_min(1e-12)
    levels = (small / peaks[:, None, None] * LEVELS).round().clamp(-LEVELS, LEVELS).int().tolist()
    return [level_lines(unit, depth) for unit in levels]


def plane(activations: Any) -> Any:
    """A unit's map with the top row first (the data's row 0 is the bottom of the plane)."""
    return activations.flip(0)


def legend(depth: Depth) -> list[Phrase]:
    if depth == "none":
        return [("░▒▓█ > 0  · ≈ 0  - = ≡ < 0, each unit to its own peak", "dim")]
    return [("red > 0, white ≈ 0, blue < 0, each unit to its own peak", "dim")]


@dataclass
class GridPlace:
    """Where a layer's grid lies in the drawn text: its first map line, units per row, unit count."""

    layer: int
    first_line: int
    columns: int
    units: int


def map_grid(
    layers: list[LayerMaps], width: int, depth: Depth, cursor: tuple[int, int] | None
) -> tuple[Canvas, list[GridPlace]]:
    """Every hidden layer: a heading, then one small map per unit in rows (the cursor's label reversed)."""
    columns = max(1, (width + 2) // CELL_WIDTH)
    out = Canvas()
    places: list[GridPlace] = []
    line = 0
    gap = " " * (CELL_WIDTH - MAP_COLUMNS)
    for index, layer in enumerate(layers):
        units = int(layer.activations.shape[0])
        inputs = int(layer.weights.shape[1]) if layer.weights.dim() == 2 else 0
        dead = int((layer.activations.detach().flatten(1).abs().amax(1) == 0).sum()) if units else 0
        heading = fit_phrases(
            [
                (f"hidden layer {index + 1} ({layer.name})", "bold"),
                (f"{units} units", ""),
                (f"{inputs} inputs each", "dim"),
                (f"{dead} never active on the plane" if dead else "", "dim"),
            ],
            width,
        )
        out.add_text(heading)
        out.add("\n")
        line += len(heading.plain.split("\n"))
        places.append(GridPlace(index, line, columns, units))
        pictures = layer_pictures(layer.activations, MAP_COLUMNS, depth)
        for start in range(0, units, columns):
            chunk = range(start, min(units, start + columns))
            for row in range(MAP_LINES):
                for j in chunk:
                    out.add_runs(pictures[j][row])
                    out.add(gap)
                out.add("\n")
            for j in chunk:
                chosen = cursor == (index, j)
                label = (f"▶{j}" if chosen else f"{j}").ljust(MAP_COLUMNS)[:MAP_COLUMNS]
                out.add(label, "bold reverse" if chosen else "dim")
                out.add(gap)
            out.add("\n")
            line += CELL_HEIGHT
        out.add("\n")
        line += 1
    return out, places


def input_names(layers: list[LayerMaps], index: int) -> list[str]:
    """What feeds layer `index`: the two inputs, or the previous layer's units."""
    if index == 0:
        return ["x1", "x2"]
    return [f"unit {j}" for j in range(int(layers[index - 1].activations.shape[0]))]


def unit_detail(
    layers: list[LayerMaps],
    bounds: tuple[float, float, float, float],
    cursor: tuple[int, int],
    width: int,
    depth: Depth,
) -> Text:
    """The chosen unit enlarged over the plane, and beside it its bias and incoming weights, largest first."""
    index, j = cursor
    layer = layers[index]
    values = resample(plane(layer.activations[j]), BIG_SIDE, BIG_SIDE)
    picture = signed_picture(values, depth).split("\n")
    xmin, xmax, ymin, ymax = bounds
    weights = layer.weights[j].tolist() if layer.weights.dim() == 2 else []
    names = input_names(layers, index)
    order = sorted(range(len(weights)), key=lambda k: -abs(weights[k]))
    side = max(10, width - BIG_SIDE - 9)
    lo, hi = float(layer.activations[j].min()), float(layer.activations[j].max())
    notes = [
        Text(f"hidden layer {index + 1}, unit {j}", "bold"),
        Text(f"activation {lo:.3g} … {hi:.3g} on the plane", "dim"),
        Text(f"bias {float(layer.bias[j]):+.4f}"),
        Text(f"incoming weights ({len(weights)}, largest first):"),
    ]
    listed = fit_phrases([f"{names[k] if k < len(names) else k} {weights[k]:+.3f}" for k in order], side, gap="   ")
    notes += list(listed.split("\n"))[: len(picture) - len(notes) - 1]
    shown = sum(len(n.plain.split("   ")) for n in notes[4:]) if len(notes) > 4 else 0
    if shown < len(weights):
        notes.append(Text(f"… {len(weights) - shown} smaller ones", "dim"))
    out = Text(no_wrap=True, overflow="crop")
    for row, part in enumerate(picture):
        out.append(f"{ymax:6.2g} " if row == 0 else f"{ymin:6.2g} " if row == len(picture) - 1 else " " * 7)
        out.append_text(part).append("  ")
        if row < len(notes):
            out.append_text(notes[row])
        out.append("\n")
    out.append(" " * 7 + f"{xmin:<.3g}".ljust(BIG_SIDE - 6) + f"{xmax:>.3g}".rjust(6), "dim")
    out.append("   esc closes", "dim")
    return out


def curves_chart(curves: UnitCurves) -> Chart:
    """Each unit's contribution faint, the fitted output (their sum plus the bias) bold on top, kinks marked."""
    x = tuple(curves.x.tolist())
    lines = [Line("", x, tuple(row), "braille", CURVE_COLOUR) for row in curves.contributions.tolist()]
    output = curves.output.reshape(-1).tolist()
    lines.append(Line("network output = sum + bias", x, tuple(output), "braille", TRAIN_COLOUR))
    kinks = kink_points(curves)
    if kinks:
        lines.append(
            Line("kinks", tuple(k for k, _ in kinks), tuple(y for _, y in kinks), KINK_MARKER, VALID_COLOUR, "scatter")
        )
    return Chart(f"{len(curves.contributions)} unit contributions ({curves.layer})", "x", tuple(lines))


def kink_points(curves: UnitCurves) -> list[tuple[float, float]]:
    """Each kink inside the plotted range, on the fitted curve (where the sum bends)."""
    if curves.kinks is None or not len(curves.x):
        return []
    xs = curves.x.tolist()
    ys = curves.output.reshape(-1).tolist()
    lo, hi = xs[0], xs[-1]
    out = []
    for k in curves.kinks.tolist():
        if math.isfinite(k) and lo <= k <= hi:
            nearest = min(range(len(xs)), key=lambda i: abs(xs[i] - k))
            out.append((k, ys[nearest]))
    return out


def curves_notes(curves: UnitCurves, width: int) -> Text:
    """Under the chart: where the kinks sit, and the sum it draws."""
    kinks = sorted(k for k, _ in kink_points(curves))
    total = curves.contributions.sum(0) + curves.bias
    gap = float((total - curves.output.reshape(-1)).abs().max()) if len(curves.x) else 0.0
    phrases: list[Phrase] = [
        ("grey: each unit's contribution w_out·act(w_in·x+b)", "dim"),
        (f"bold: their sum + bias {curves.bias:+.3f} = the fitted curve (off by {gap:.1e})", "dim"),
    ]
    if curves.kinks is not None:
        outside = len(curves.kinks) - len(kinks)
        phrases.append((f"▲ {len(kinks)} kinks in range" + (f", {outside} outside" if outside else "") + ":", ""))
        phrases += [f"{k:+.2f}" for k in kinks]
    return fit_phrases(phrases, width, max_lines=4)


def _label(names: list[str], index: int) -> str:
    return names[index] if 0 <= index < len(names) else str(index)


def _pictures_row(pictures: list[Text], labels: list[str], cell: int, width: int) -> Text:
    """Pictures side by side (as many per row as fit), each with its label under it."""
    out = Text(no_wrap=True, overflow="crop")
    per_row = max(1, (width + 2) // (cell + 2))
    for start in range(0, len(pictures), per_row):
        chunk = [p.split("\n") for p in pictures[start : start + per_row]]
        for row in range(max(len(c) for c in chunk)):
            for c in chunk:
                out.append_text(c[row] if row < len(c) else Text(" " * cell)).append("  ")
            out.append("\n")
        for name in labels[start : start + per_row]:
            out.append(name[:cell].ljust(cell), "dim").append("  ")
        out.append("\n")
    return out


def stage_side(h: int) -> int:
    """Pixels per side a feature map is drawn with: 28 -> 14, 14 -> 14, 10 -> 10, 5 -> 5."""
    return min(h, 14)


def score_lines(features: FeatureMaps, names: list[str], depth: Depth) -> list[Text]:
    """One line per class: its name, a bar of its score, the score; the true class and a wrong top one marked."""
    scores = features.scores.reshape(-1).tolist()
    finite = all(math.isfinite(score) for score in scores)
    best = max(range(len(scores)), key=lambda k: scores[k]) if scores and finite else -1
    lines = [Text("class scores", "bold")]
    if not finite:  # a diverged network: no class is on top, and a bar of NaN means nothing
        lines[0].append("  not finite: the weights diverged", Style(color=named("red", depth)))
    for k, score in enumerate(scores):
        colour = named("green" if k == features.label else "red" if k == best else "cyan", depth)
        mark = " ✓ true" if k == features.label else " ✗ top" if k == best else ""
        drawn = bar(score, 20) if math.isfinite(score) else " " * 20
        line = Text(_label(names, k)[:12].ljust(13)).append(drawn, Style(color=colour))
        lines.append(line.append(f" {score:6.1%}{mark}" if math.isfinite(score) else f"    {score}{mark}"))
    return lines


def features_text(features: FeatureMaps, names: list[str], width: int, depth: Depth) -> Text:
    """The sample with its class scores beside it, then each stage's maps in a labelled row (or the MLP's
    most active first-layer units as weight templates)."""
    out = Text(no_wrap=True, overflow="crop")
    image = features.image.float()
    lo, hi = float(image.min()), float(image.max())
    picture = grey_picture(resample((image - lo) / max(hi - lo, 1e-6), 14, 14), depth).split("\n")
    left = [Text(f"input {image.shape[-2]}x{image.shape[-1]}", "bold"), *picture]
    right = score_lines(features, names, depth)
    for row in range(max(len(left), len(right))):
        part = left[row] if row < len(left) else Text("")
        out.append_text(part).append(" " * max(2, 16 - part.cell_len))
        if row < len(right):
            out.append_text(right[row])
        out.append("\n")
    for stage in features.stages:
        c, h, w = (int(v) for v in stage.maps.shape)
        side = stage_side(h)
        scale = peak(stage.maps.reshape(1, -1).tolist()) or 1.0  # one scale per stage: channels compare
        pictures = [signed_picture(resample(stage.maps[k], side, side), depth, scale) for k in range(c)]
        out.append(f"{stage.name} {c}x{h}x{w}", "bold").append("  one map per channel, to the stage's peak\n", "dim")
        out.append_text(_pictures_row(pictures, [f"{k}" for k in range(c)], side, width))
    if features.templates:
        out.append(f"first-layer units most active for this sample ({len(features.templates)})", "bold")
        out.append("  their incoming weights as templates, then the activation\n", "dim")
        pictures = [signed_picture(resample(t.weights, 14, 14), depth) for t in features.templates]
        labels = [f"u{t.unit} {t.activation:.2g}" for t in features.templates]
        out.append_text(_pictures_row(pictures, labels, 14, width))
    return out
