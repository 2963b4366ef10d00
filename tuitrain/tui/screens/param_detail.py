"""Provides the drill-down for one parameter tensor: histogram, heatmap, filters, the neuron's line."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Footer, Static
from textual_plotext import PlotextPlot

from tuitrain.tui.widgets.render import diverging, heatmap, pixels

MAX_TILES = 48  # filters or input images drawn at most


def _tiles(images: torch.Tensor, peak: float, width: int, scale: int = 1) -> Text:
    """Small signed images (N x h x w) side by side, wrapped to `width` columns."""
    n, h, w = images.shape
    if scale > 1:
        images = images.repeat_interleave(scale, 1).repeat_interleave(scale, 2)
        h, w = h * scale, w * scale
    per_row = max(1, (width + 1) // (w + 1))
    out = Text(no_wrap=True, overflow="crop")
    for start in range(0, min(n, MAX_TILES), per_row):
        chunk = images[start:start + per_row].tolist()
        blocks = [pixels([[diverging(v / peak) for v in row] for row in img]).split("\n") for img in chunk]
        for line in range(len(blocks[0])):
            for block in blocks:
                out.append_text(block[line]).append(" ")
            out.append("\n")
        out.append("\n")
    if n > MAX_TILES:
        out.append(f"(first {MAX_TILES} of {n} shown)", "dim")
    return out


def tensor_picture(values: torch.Tensor, width: int) -> Text:
    """A heatmap suited to the tensor's shape (blue negative, red positive)."""
    peak = values.abs().max().item() or 1.0
    if values.dim() == 4:  # conv filters: out x in x kh x kw, one small image each
        out_ch, in_ch, kh, kw = values.shape
        return _tiles(values.reshape(out_ch * in_ch, kh, kw), peak, width, scale=2 if kh <= 7 else 1)
    if values.dim() == 2 and values.shape[1] == 784:  # weights into each unit, seen as the image they match
        return _tiles(F.avg_pool2d(values.reshape(-1, 1, 28, 28), 2).squeeze(1), peak, width)
    matrix = values.reshape(1, -1) if values.dim() < 2 else values.reshape(values.shape[0], -1)
    rows, cols = matrix.shape
    if rows == 1 and cols > width:
        pad = (-cols) % width
        matrix = F.pad(matrix, (0, pad)).reshape(-1, width)
        rows, cols = matrix.shape
    if cols > width:
        matrix = F.adaptive_avg_pool1d(matrix.unsqueeze(0), width).squeeze(0)
    if rows > 120:
        matrix = F.adaptive_avg_pool1d(matrix.t().unsqueeze(0), 120).squeeze(0).t()
    return heatmap(matrix.tolist(), peak)


class ParamDetail(ModalScreen[None]):
    """Opened from the parameter table; `show(inspection)` keeps it live while training runs."""

    BINDINGS = [Binding("escape,q", "close", "Close")]

    def __init__(self, name: str):
        super().__init__()
        self.param_name = name
        self.inspection: Any = None

    def compose(self) -> ComposeResult:
        with Vertical(id="detail"):
            yield Static(self.param_name, id="detail-title")
            with Horizontal(id="detail-body"):
                yield PlotextPlot(id="detail-hist")
                with VerticalScroll(id="detail-map"):
                    yield Static(id="detail-heatmap")
        yield Footer()

    def action_close(self) -> None:
        self.dismiss(None)

    def on_resize(self) -> None:
        if self.inspection is not None:
            self.show(self.inspection)

    def show(self, inspection: Any) -> None:
        self.inspection = inspection
        params = {p.name: p for p in inspection.params}
        p = params.get(self.param_name)
        if p is None or not self.is_mounted:
            return
        title = Text.assemble((p.name, "bold"), f"  shape {tuple(p.shape)}  {p.count:,} values  ",
                              ("mean ", "dim"), f"{p.mean:.4g}", ("  std ", "dim"), f"{p.std:.4g}",
                              ("  min ", "dim"), f"{p.min:.4g}", ("  max ", "dim"), f"{p.max:.4g}",
                              ("  grad norm ", "dim"), "-" if p.grad_norm is None else f"{p.grad_norm:.3g}",
                              ("  step ", "dim"), f"{inspection.step:,}")
        neuron = self._neuron(params)
        if neuron:
            title.append("\n").append_text(neuron[0])
        self.query_one("#detail-title", Static).update(title)
        plot = self.query_one("#detail-hist", PlotextPlot)
        plt = plot.plt
        plt.clear_figure()
        if neuron:
            self._draw_line(plt, neuron[1], inspection.predictions)
        else:
            plt.title("histogram of values")
            plt.hist(p.values.reshape(-1).tolist(), bins=30, color="cyan")
        plot.refresh()
        width = max(10, self.query_one("#detail-map").size.width - 2)
        picture = Text("heatmap (blue < 0 < red)\n", "dim").append_text(tensor_picture(p.values.float(), width))
        self.query_one("#detail-heatmap", Static).update(picture)

    @staticmethod
    def _neuron(params: dict[str, Any]) -> tuple[Text, tuple[float, float, float]] | None:
        """The single neuron: w1, w2, b and its decision line w1*x1 + w2*x2 + b = 0."""
        w, b = params.get("linear.weight"), params.get("linear.bias")
        if w is None or b is None or tuple(w.shape) != (1, 2) or len(params) != 2:
            return None
        w1, w2 = w.values.reshape(-1).tolist()
        bias = b.values.reshape(-1).item()
        line = (f"x2 = {-w1 / w2:.3g}·x1 {'-' if bias / w2 > 0 else '+'} {abs(bias / w2):.3g}" if abs(w2) > 1e-9 else f"x1 = {-bias / w1:.3g}"
                if abs(w1) > 1e-9 else "none (all weights are zero)")
        return (Text.assemble(("w1 ", "dim"), f"{w1:.4g}", ("  w2 ", "dim"), f"{w2:.4g}", ("  b ", "dim"),
                              f"{bias:.4g}", ("   decision line: ", "dim"), line), (w1, w2, bias))

    @staticmethod
    def _draw_line(plt: Any, weights: tuple[float, float, float], pred: Any) -> None:
        w1, w2, b = weights
        plt.title("decision line w1·x1 + w2·x2 + b = 0 over the test points")
        if pred is not None and pred.bounds is not None:
            xmin, xmax, ymin, ymax = pred.bounds
            pts, labels = pred.inputs.tolist(), pred.targets.reshape(-1).tolist()
            for cls, colour, marker in ((0, "blue", "•"), (1, "orange", "+")):
                chosen = [p for p, t in zip(pts, labels) if round(t) == cls]
                if chosen:
                    plt.scatter([p[0] for p in chosen], [p[1] for p in chosen], color=colour, marker=marker,
                                label=f"class {cls}")
            plt.xlim(xmin, xmax)
            plt.ylim(ymin, ymax)
        else:
            xmin, xmax = -3.0, 3.0
        if abs(w2) > 1e-9:
            xs = [xmin + (xmax - xmin) * i / 50 for i in range(51)]
            plt.plot(xs, [-(w1 * x + b) / w2 for x in xs], color="red", marker="braille", label="decision line")
