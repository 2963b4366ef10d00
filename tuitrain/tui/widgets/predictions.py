"""Provides the prediction viewer: image grid with labels, 2-D decision regions, 1-D fitted curve."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from rich.style import Style
from rich.text import Text
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import Static

from tuitrain.tui.widgets.charts import TRAIN_COLOUR, VALID_COLOUR, VALID_MARKER, Chart, Line, TimedPlot
from tuitrain.tui.widgets.render import (
    Depth,
    Phrase,
    bar,
    class_char,
    class_point,
    class_region,
    colour_depth,
    fit_phrases,
    grey_picture,
    mistake_style,
    named,
)

CELL_WIDTH = 16  # 14 image columns + 2 of gap
CELL_HEIGHT = 11  # 7 image lines, true label, predicted label, confidence bar, gap
SHORT_NAMES = {  # confusion-matrix column headers, at most 7 cells
    "T-shirt": "Tee",
    "T-shirt/top": "Tee",
    "Trouser": "Trouser",
    "Pullover": "Pullov",
    "Dress": "Dress",
    "Coat": "Coat",
    "Sandal": "Sandal",
    "Shirt": "Shirt",
    "Sneaker": "Sneaker",
    "Bag": "Bag",
    "Boot": "Boot",
    "Ankle boot": "Boot",
}


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
    return [int(round(float(v))) for v in pred.targets.reshape(-1).tolist()]


def image_cell(image: Any, depth: Depth = "truecolor") -> list[Text]:
    """A 28x28 (or any) image as 7 lines of 14 half-block columns, contrast-stretched."""
    import torch.nn.functional as F

    img = image.float().reshape(1, 1, *image.shape[-2:])
    small = F.adaptive_avg_pool2d(img, (14, 14))[0, 0]
    lo, hi = small.min().item(), small.max().item()
    norm = ((small - lo) / max(hi - lo, 1e-6)).tolist()
    return list(grey_picture(norm, depth).split("\n"))


def image_grid(pred: Any, indices: list[int], columns: int, depth: Depth = "truecolor") -> Text:
    names = pred.class_names
    cls, conf = predicted(pred)
    true = truth(pred)
    out = Text(no_wrap=True, overflow="crop")
    for start in range(0, len(indices), columns):
        chunk = indices[start : start + columns]
        cells = [image_cell(pred.inputs[i], depth) for i in chunk]
        for line in range(len(cells[0]) if cells else 0):
            for cell in cells:
                out.append_text(cell[line]).append("  ")
            out.append("\n")
        for i in chunk:
            out.append(_label(names, true[i])[:14].ljust(CELL_WIDTH), "dim")
        out.append("\n")
        for i in chunk:
            wrong = cls[i] != true[i]
            mark = "✗ " if wrong else "✓ "
            style = mistake_style(depth) if wrong else Style(color=named("green", depth))
            out.append((mark + _label(names, cls[i]))[:14], style).append(
                " " * (CELL_WIDTH - min(14, 2 + len(_label(names, cls[i]))))
            )
        out.append("\n")
        for i in chunk:
            colour = named("red" if cls[i] != true[i] else "cyan", depth)
            out.append(bar(conf[i], 9), colour).append(f"{conf[i]:4.0%}".ljust(CELL_WIDTH - 9))
        out.append("\n\n")
    return out


def decision_regions(pred: Any, width: int, height: int, depth: Depth = "truecolor") -> Text:
    """The network's class per grid cell (brighter where surer) with the sample points on top.

    With colour, two grid rows per line ('▀': upper = foreground, lower = background); points are
    '●' in a brighter shade of their true class. Without (depth "none"), one character per class
    region, points as their true class digit, mistakes as 'x'."""
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

    pcls, _ = predicted(pred)
    true = truth(pred)
    plain = depth == "none"
    marks: dict[tuple[int, int], tuple[str, Any]] = {}
    for i, (x, y) in enumerate(pred.inputs.tolist()):
        c = int((x - xmin) / max(xmax - xmin, 1e-9) * (cols - 1))
        line = int((ymax - y) / max(ymax - ymin, 1e-9) * (2 * lines - 1)) // 2
        if not (0 <= c < cols and 0 <= line < lines):
            continue
        wrong = pcls[i] != true[i]
        if plain:
            marks[(line, c)] = ("x" if wrong else str(true[i] % 10), "bold")
        else:
            marks[(line, c)] = (
                ("✗", mistake_style(depth)) if wrong else ("●", Style(color=class_point(true[i], depth), bold=True))
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


def short_name(names: list[str], index: int) -> str:
    """A column header: the fixed abbreviation, the name when it is short, else the class number."""
    name = _label(names, index)
    return SHORT_NAMES.get(name) or (name if len(name) <= 7 else str(index))


def confusion_text(matrix: Any, names: list[str], width: int, depth: Depth = "truecolor") -> Text:
    """Counts with true classes down and predicted classes across; narrow: class numbers across."""
    values = matrix.tolist()
    classes = len(values)
    counts = max((len(str(v)) for row in values for v in row), default=1)
    rows = [_label(names, i) for i in range(classes)]
    row_width = max((len(r) for r in rows), default=1)
    heads = [short_name(names, j) for j in range(classes)]
    column = max(counts, max((len(h) for h in heads), default=1))
    unnamed = any(h == str(j) != _label(names, j) for j, h in enumerate(heads))  # no short form known
    numbered = unnamed or row_width + classes * (column + 1) > width
    if numbered:
        heads = [str(j) for j in range(classes)]
        column = max(counts, len(str(classes - 1)))
        rows = [f"{i} {r}" for i, r in enumerate(rows)]
        row_width = min(max(len(r) for r in rows), max(3, width - classes * (column + 1)))
    out = Text(no_wrap=True, overflow="crop")
    out.append(" " * row_width)
    for head in heads:
        out.append(" " + head.rjust(column), "bold")
    for i, row in enumerate(values):
        out.append("\n" + rows[i][:row_width].ljust(row_width))
        for j, v in enumerate(row):
            style = (
                Style(color=named("green", depth), bold=True)
                if i == j
                else (Style(color=named("red", depth)) if v else Style(dim=True))
            )
            out.append(" ").append(str(v).rjust(column), style)
    return out


def confusion_caption(pred: Any) -> str:
    """How fresh the matrix is and what it counts: "epoch 3 (step 2,532), all 10,000 test images"."""
    epoch, step = getattr(pred, "confusion_epoch", None), getattr(pred, "confusion_step", None)
    if epoch is not None:
        when = f"epoch {epoch}" + (f" (step {step:,})" if step is not None else "")
    elif step is not None:
        when = f"step {step:,}"
    else:
        age = getattr(pred, "confusion_age", 0.0)
        when = "computed just now" if age < 1 else f"computed {fmt_age(age)} ago"
    images = getattr(pred, "confusion_images", 0)
    return f"{when}, {'all ' + format(images, ',') if images else 'the'} test images"


def fmt_age(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds} s" if seconds < 60 else f"{seconds // 60} min {seconds % 60:02d} s"


class PredictionPanel(VerticalScroll, can_focus=True):
    """Shows the latest Predictions; keys page through images and filter to mistakes."""

    BINDINGS = [
        Binding("pagedown,full_stop", "page(1)", "Next page", key_display=".", show=False),
        Binding("pageup,comma", "page(-1)", "Prev page", key_display=",", show=False),
        Binding("m", "mistakes", "Mistakes only", show=False),
    ]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.predictions: Any = None
        self.page = 0
        self.mistakes_only = False

    def compose(self):
        yield Static("Waiting for predictions…", id="pred-info")
        yield Static(id="pred-body")
        yield TimedPlot(id="pred-curve")
        yield Static(id="pred-confusion-title")
        yield Static(id="pred-confusion")

    def show(self, predictions: Any) -> None:
        self.predictions = predictions
        self.redraw()

    def on_resize(self) -> None:
        self.redraw()

    def action_page(self, delta: int) -> None:
        self.page += delta
        self.redraw()

    def action_mistakes(self) -> None:
        self.mistakes_only = not self.mistakes_only
        self.page = 0
        self.redraw()

    def visible_indices(self) -> tuple[list[int], int, int]:
        """The sample indices on the current page, the page number and the page count."""
        pred = self.predictions
        n = pred.inputs.shape[0]
        indices = list(range(n))
        if self.mistakes_only:
            cls, _ = predicted(pred)
            true = truth(pred)
            indices = [i for i in indices if cls[i] != true[i]]
        columns = max(1, (self.size.width - 1) // CELL_WIDTH)
        rows = max(1, (self.size.height - 1) // CELL_HEIGHT)
        per_page = columns * rows
        pages = max(1, math.ceil(len(indices) / per_page))
        self.page %= pages
        return indices[self.page * per_page : (self.page + 1) * per_page], pages, columns

    def redraw(self) -> None:
        pred = self.predictions
        if pred is None or not self.is_mounted:
            return
        depth = colour_depth(self.app)
        width = max(20, self.size.width - 2)
        info, body = self.query_one("#pred-info", Static), self.query_one("#pred-body", Static)
        curve = self.query_one("#pred-curve", TimedPlot)
        curve.display = pred.kind == "curve"
        body.display = pred.kind != "curve"
        if pred.kind == "image":
            shown, pages, columns = self.visible_indices()
            cls, _ = predicted(pred)
            wrong = sum(c != t for c, t in zip(cls, truth(pred)))
            info.update(
                fit_phrases(
                    [
                        ("test images", "bold"),
                        (f"page {self.page + 1}/{pages}", ""),
                        (f"{wrong}/{len(cls)} wrong", ""),
                        ("(mistakes only)" if self.mistakes_only else "", ""),
                        (", . page  m mistakes", "dim"),
                    ],
                    width,
                )
            )
            body.update(
                image_grid(pred, shown, columns, depth) if shown else Text("No mistakes on these samples.", "green")
            )
        elif pred.kind == "points":
            classes = pred.grid.shape[2]
            shade = (
                "one character per predicted class"
                if depth == "none"
                else "colour: predicted class" + ("" if depth == "standard" else ", brighter = surer")
            )
            points = "digits: test points by true class" if depth == "none" else "dots: test points by true class"
            header = fit_phrases([("decision regions", "bold"), (shade, "dim"), (points, "dim")], width)
            legend = fit_phrases(regions_legend(pred.class_names, classes, depth), width)
            info.update(header)
            room = self.size.height - 1 - len(header.split("\n")) - len(legend.split("\n"))
            body.update(decision_regions(pred, max(8, self.size.width - 2), max(4, room), depth).append_text(legend))
        else:
            info.update(
                fit_phrases(
                    [
                        ("fitted curve", "bold"),
                        ("line: network output", "dim"),
                        ("dots: test points", "dim"),
                        ("(standardized units where the preset says so)", "dim"),
                    ],
                    width,
                )
            )
            curve.show(
                Chart(
                    "",
                    "x",
                    (
                        Line(
                            "data",
                            tuple(pred.inputs.reshape(-1).tolist()),
                            tuple(pred.targets.reshape(-1).tolist()),
                            VALID_MARKER,
                            VALID_COLOUR,
                            "scatter",
                        ),
                        Line(
                            "network",
                            tuple(pred.curve_x.tolist()),
                            tuple(pred.curve_y.reshape(-1).tolist()),
                            "braille",
                            TRAIN_COLOUR,
                        ),
                    ),
                )
            )
        title, confusion = self.query_one("#pred-confusion-title", Static), self.query_one("#pred-confusion", Static)
        title.display = confusion.display = pred.confusion is not None
        if pred.confusion is not None:
            title.update(
                fit_phrases(
                    [
                        ("confusion matrix", "bold"),
                        ("rows: true class", "dim"),
                        ("columns: predicted", "dim"),
                        (confusion_caption(pred), ""),
                    ],
                    width,
                )
            )
            confusion.update(confusion_text(pred.confusion, pred.class_names, width, depth))
