"""Provides the prediction viewer: image grid with labels, 2-D decision regions, 1-D fitted curve."""

from __future__ import annotations

import math
from typing import Any

from rich.style import Style
from rich.table import Table
from rich.text import Text
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import Static
from textual_plotext import PlotextPlot

from tuitrain.tui.widgets.render import CLASS_COLOURS, bar, blend, grey, no_color, pixels

CELL_WIDTH = 16  # 14 image columns + 2 of gap
CELL_HEIGHT = 11  # 7 image lines, true label, predicted label, confidence bar, gap


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


def image_cell(image: Any) -> list[Text]:
    """A 28x28 (or any) image as 7 lines of 14 half-block columns, contrast-stretched."""
    import torch.nn.functional as F

    img = image.float().reshape(1, 1, *image.shape[-2:])
    small = F.adaptive_avg_pool2d(img, (14, 14))[0, 0]
    lo, hi = small.min().item(), small.max().item()
    norm = ((small - lo) / max(hi - lo, 1e-6)).tolist()
    return pixels([[grey(v) for v in row] for row in norm]).split("\n")


def image_grid(pred: Any, indices: list[int], columns: int) -> Text:
    names = pred.class_names
    cls, conf = predicted(pred)
    true = truth(pred)
    out = Text(no_wrap=True, overflow="crop")
    for start in range(0, len(indices), columns):
        chunk = indices[start:start + columns]
        cells = [image_cell(pred.inputs[i]) for i in chunk]
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
            style = "bold white on red" if wrong else "green"
            out.append((mark + _label(names, cls[i]))[:14], style).append(" " * (CELL_WIDTH - min(14, 2 + len(_label(names, cls[i])))))
        out.append("\n")
        for i in chunk:
            out.append(bar(conf[i], 9), "red" if cls[i] != true[i] else "cyan").append(f"{conf[i]:4.0%}".ljust(CELL_WIDTH - 9))
        out.append("\n\n")
    return out


def decision_regions(pred: Any, width: int, height: int) -> Text:
    """The network's class per grid cell (tinted by confidence) with the sample points on top."""
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
    plain = no_color()
    marks: dict[tuple[int, int], tuple[str, Any]] = {}
    for i, (x, y) in enumerate(pred.inputs.tolist()):
        c = int((x - xmin) / max(xmax - xmin, 1e-9) * (cols - 1))
        line = int((ymax - y) / max(ymax - ymin, 1e-9) * (2 * lines - 1)) // 2
        wrong = pcls[i] != true[i]
        if plain:
            marks[(line, c)] = ("x" if wrong else str(true[i]), "bold")
        else:
            r, g, b = (min(255, v + 60) for v in CLASS_COLOURS[true[i] % 10])
            marks[(line, c)] = ("✗", "bold white on red") if wrong else ("●", Style(color=f"rgb({r},{g},{b})", bold=True))
    shades = " .:-=+*#"
    out = Text(no_wrap=True, overflow="crop")
    for line in range(lines):
        for c in range(cols):
            top_cls, top_conf = pixel(2 * line, c)
            low_cls, low_conf = pixel(2 * line + 1, c)
            bg = blend(CLASS_COLOURS[low_cls % 10], 0.2 + 0.5 * low_conf)
            mark = marks.get((line, c))
            if mark is not None:
                char, style = mark
                if not plain and isinstance(style, Style):
                    style = style + Style(bgcolor=f"rgb({bg[0]},{bg[1]},{bg[2]})")
                out.append(char, style)
            elif plain:
                out.append(shades[top_cls % len(shades)])
            else:
                fg = blend(CLASS_COLOURS[top_cls % 10], 0.2 + 0.5 * top_conf)
                out.append("▀", Style(color=f"rgb({fg[0]},{fg[1]},{fg[2]})", bgcolor=f"rgb({bg[0]},{bg[1]},{bg[2]})"))
        out.append("\n")
    if plain:
        legend = "  ".join(f"{k} {_label(pred.class_names, k)} (region '{shades[k % len(shades)]}')"
                           for k in range(grid.shape[2])) + "   x misclassified"
    else:
        legend = "  ".join(f"● {_label(pred.class_names, k)}" for k in range(grid.shape[2])) + "   ✗ misclassified"
    out.append(legend, "dim")
    return out


def confusion_table(matrix: Any, names: list[str]) -> Table:
    table = Table(title="confusion matrix (rows: true, columns: predicted)", title_justify="left",
                  show_edge=False, pad_edge=False, box=None, padding=(0, 1))
    table.add_column("", style="dim", no_wrap=True)
    for j in range(matrix.shape[1]):
        table.add_column(_label(names, j)[:6], justify="right", no_wrap=True)
    values = matrix.tolist()
    for i, row in enumerate(values):
        cells = [Text(str(v), "bold green" if i == j else ("red" if v else "dim")) for j, v in enumerate(row)]
        table.add_row(_label(names, i)[:12], *cells)
    return table


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
        yield PlotextPlot(id="pred-curve")
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
        return indices[self.page * per_page:(self.page + 1) * per_page], pages, columns

    def redraw(self) -> None:
        pred = self.predictions
        if pred is None or not self.is_mounted:
            return
        info, body = self.query_one("#pred-info", Static), self.query_one("#pred-body", Static)
        curve, confusion = self.query_one("#pred-curve", PlotextPlot), self.query_one("#pred-confusion", Static)
        curve.display = pred.kind == "curve"
        body.display = pred.kind != "curve"
        if pred.kind == "image":
            shown, pages, columns = self.visible_indices()
            cls, _ = predicted(pred)
            wrong = sum(c != t for c, t in zip(cls, truth(pred)))
            info.update(Text.assemble(("test images", "bold"), f"  page {self.page + 1}/{pages}",
                                      f"  {wrong}/{len(cls)} wrong", "  (mistakes only)" if self.mistakes_only else "",
                                      ("   , . page  m mistakes", "dim")))
            body.update(image_grid(pred, shown, columns) if shown else Text("No mistakes on these samples.", "green"))
        elif pred.kind == "points":
            info.update(Text.assemble(("decision regions", "bold"), ("  shade: predicted class, brighter = surer; "
                                                                      "dots: test points by true class", "dim")))
            body.update(decision_regions(pred, max(8, self.size.width - 2), max(4, self.size.height - 3)))
        else:
            info.update(Text.assemble(("fitted curve", "bold"), ("  line: network output; dots: test points"
                                                                  " (standardized units where the preset says so)", "dim")))
            plt = curve.plt
            plt.clear_figure()
            plt.scatter(pred.inputs.reshape(-1).tolist(), pred.targets.reshape(-1).tolist(), marker="•",
                        color="orange", label="data")
            plt.plot(pred.curve_x.tolist(), pred.curve_y.reshape(-1).tolist(), marker="braille", color="cyan",
                     label="network")
            curve.refresh()
        confusion.display = pred.confusion is not None
        if pred.confusion is not None:
            confusion.update(confusion_table(pred.confusion, pred.class_names))
