"""Provides drawings of test samples: images with their labels and confidence, 2-D decision regions."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.style import Style
from rich.text import Text

from tuitrain.tui.widgets.render import (
    Depth,
    Phrase,
    bar,
    class_char,
    class_point,
    class_region,
    grey_picture,
    mistake_style,
    named,
)

CELL_WIDTH = 16  # 14 image columns + 2 of gap
CELL_HEIGHT = 11  # 7 image lines, true label, predicted label, confidence bar, gap
Sample = tuple[int, int, int, float]  # an image to draw: its index, true class, predicted class, confidence
Point = tuple[float, float, int, bool]  # a test point to mark: x, y, true class, misclassified


def _label(names: list[str], index: int) -> str:
    return names[index] if 0 <= index < len(names) else str(index)


def predicted(pred: Any) -> tuple[list[int], list[float]]:
    """Predicted class and confidence per sample (binary: P>0.5 is class 1)."""
    out = pred.outputs
    if pred.task == "classes":
        conf, cls = out.max(dim=1)
        return cls.tolist(), conf.tolist()
    probs = out.tolist()
    return [int(p > 0.5) for p in probs], [p if p > 0.5 else 1 - p for p in probs]


def truth(pred: Any) -> list[int]:
    return [round(float(v)) for v in pred.targets.reshape(-1).tolist()]


def image_cell(image: Any, depth: Depth = "truecolor") -> list[Text]:
    """A 28x28 (or any) image as 7 lines of 14 half-block columns, contrast-stretched."""
    import torch.nn.functional as F

    img = image.float().reshape(1, 1, *image.shape[-2:])
    small = F.adaptive_avg_pool2d(img, (14, 14))[0, 0]
    lo, hi = small.min().item(), small.max().item()
    norm = ((small - lo) / max(hi - lo, 1e-6)).tolist()
    return list(grey_picture(norm, depth).split("\n"))


def image_grid(pred: Any, indices: list[int], columns: int, depth: Depth = "truecolor") -> Text:
    """The fixed sample's images at `indices`, each with its true and predicted label and confidence."""
    cls, conf = predicted(pred)
    true = truth(pred)
    return image_rows(pred.inputs, pred.class_names, [(i, true[i], cls[i], conf[i]) for i in indices], columns, depth)


def image_rows(pictures: Any, names: list[str], items: list[Sample], columns: int, depth: Depth) -> Text:
    """Images (index into `pictures`, true class, predicted class, confidence) in rows of `columns`."""
    out = Text(no_wrap=True, overflow="crop")
    for start in range(0, len(items), columns):
        chunk = items[start : start + columns]
        cells = [image_cell(pictures[i], depth) for i, _, _, _ in chunk]
        for line in range(len(cells[0]) if cells else 0):
            for cell in cells:
                out.append_text(cell[line]).append("  ")
            out.append("\n")
        for _, true, _, _ in chunk:
            out.append(_label(names, true)[:14].ljust(CELL_WIDTH), "dim")
        out.append("\n")
        for _, true, cls, _ in chunk:
            wrong = cls != true
            mark = "✗ " if wrong else "✓ "
            style = mistake_style(depth) if wrong else Style(color=named("green", depth))
            out.append((mark + _label(names, cls))[:14], style).append(
                " " * (CELL_WIDTH - min(14, 2 + len(_label(names, cls))))
            )
        out.append("\n")
        for _, true, cls, conf in chunk:
            colour = named("red" if cls != true else "cyan", depth)
            out.append(bar(conf, 9), colour).append(f"{conf:4.0%}".ljust(CELL_WIDTH - 9))
        out.append("\n\n")
    return out


def decision_regions(
    pred: Any, width: int, height: int, depth: Depth = "truecolor", points: list[Point] | None = None
) -> Text:
    """The network's class per grid cell (brighter where surer) with the sample points on top.

    With colour, two grid rows per line ('▀': upper = foreground, lower = background); points are
    '●' in a brighter shade of their true class. Without (depth "none"), one character per class
    region, points as their true class digit, mistakes as 'x'. `points` (x, y, true class, wrong)
    replaces the fixed sample's (an opened confusion-matrix cell shows just its own)."""
    grid = pred.grid  # G x G x C, row 0 = bottom
    xmin, xmax, ymin, ymax = pred.bounds
    gh, gw = grid.shape[0], grid.shape[1]
    side = max(4, min(width, 2 * height))  # half-block pixels are about square
    cols, lines = side, side // 2
    conf, cls = grid.max(dim=2)
    cls_l, conf_l = cls.tolist(), conf.tolist()
    col_index = [min(gw - 1, c * gw // cols) for c in range(cols)]

    def pixel(r: int, c: int) -> tuple[int, float]:
        gr = gh - 1 - min(gh - 1, r * gh // (2 * lines))  # top of the picture = largest y
        return cls_l[gr][col_index[c]], conf_l[gr][col_index[c]]

    if points is None:
        pcls, _ = predicted(pred)
        true = truth(pred)
        points = [(x, y, true[i], pcls[i] != true[i]) for i, (x, y) in enumerate(pred.inputs.tolist())]
    plain = depth == "none"
    marks: dict[tuple[int, int], tuple[str, Any]] = {}
    for x, y, k, wrong in points:
        c = int((x - xmin) / max(xmax - xmin, 1e-9) * (cols - 1))
        line = int((ymax - y) / max(ymax - ymin, 1e-9) * (2 * lines - 1)) // 2
        if not (0 <= c < cols and 0 <= line < lines):
            continue
        if plain:
            marks[(line, c)] = ("x" if wrong else str(k % 10), "bold")
        else:
            marks[(line, c)] = (
                ("✗", mistake_style(depth)) if wrong else ("●", Style(color=class_point(k, depth), bold=True))
            )
    out = Text(no_wrap=True, overflow="crop")
    for line in range(lines):
        for c in range(cols):
            top_cls, top_conf = pixel(2 * line, c)
            low_cls, low_conf = pixel(2 * line + 1, c)
            mark = marks.get((line, c))
            if plain:
                out.append(mark[0] if mark else class_char(top_cls), mark[1] if mark else "")
                continue
            bg = class_region(low_cls, low_conf, depth)
            if mark is not None:
                char, style = mark
                out.append(char, style if char == "✗" else style + Style(bgcolor=bg))
            else:
                out.append("▀", Style(color=class_region(top_cls, top_conf, depth), bgcolor=bg))
        out.append("\n")
    return out


def regions_legend(names: list[str], classes: int, depth: Depth) -> Sequence[Phrase]:
    """One phrase per class in its own colour (or region character), then the mistake mark."""
    if depth == "none":
        return [(f"{class_char(k)} region, {k % 10} point: {_label(names, k)}", "") for k in range(classes)] + [
            ("x misclassified", "bold")
        ]
    return [
        Text("● ", Style(color=class_point(k, depth), bold=True)).append(
            _label(names, k), Style(color=class_point(k, depth))
        )
        for k in range(classes)
    ] + [Text("✗", mistake_style(depth)).append(" misclassified")]
