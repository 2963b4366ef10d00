"""Provides the drill-down for one parameter tensor: histogram, heatmap, filters, the neuron's line."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.widgets import Static

from tuitrain.store.histories import Histories
from tuitrain.tui.widgets.charts import Chart, Line, TimedPlot
from tuitrain.tui.widgets.confusion import label
from tuitrain.tui.widgets.param_history import HEAT_ROWS, ParamHistory
from tuitrain.tui.widgets.render import Depth, Phrase, colour_depth, fit_phrases, heatmap, heatmap_legend

if TYPE_CHECKING:  # torch loads when the first tensor arrives, not with the app (1.3 s of CPU at start)
    import torch

DETAIL_BODY = 16  # lines for the histogram and the heatmap where the screen has room ...
MIN_BODY = 8  # ... and at least this many where it has not
HEAT_EXTRA = 3  # the history heatmap's caption, step mark and step labels, around its value bands
MIN_HEAT_ROWS = 5
MAX_TILES = 48  # filters or input images drawn at most
HISTOGRAM_BINS = 30


def _tiles(images: torch.Tensor, peak: float, width: int, depth: Depth, scale: int = 1) -> Text:
    """Small signed images (N x h x w) side by side, wrapped to `width` columns."""
    n, h, w = images.shape
    if scale > 1:
        images = images.repeat_interleave(scale, 1).repeat_interleave(scale, 2)
        h, w = h * scale, w * scale
    per_row = max(1, (width + 1) // (w + 1))
    out = Text(no_wrap=True, overflow="crop")
    for start in range(0, min(n, MAX_TILES), per_row):
        chunk = images[start : start + per_row].tolist()
        blocks = [heatmap(img, peak, depth).split("\n") for img in chunk]
        for line in range(len(blocks[0])):
            for block in blocks:
                out.append_text(block[line]).append(" ")
            out.append("\n")
        out.append("\n")
    if n > MAX_TILES:
        out.append(f"(first {MAX_TILES} of {n} shown)", "dim")
    return out


def finite_peak(values: torch.Tensor) -> float:
    """The largest finite magnitude (1.0 when there is none), so one NaN does not blank the picture."""
    import torch

    finite = values[torch.isfinite(values)]
    return (finite.abs().max().item() if finite.numel() else 0.0) or 1.0


def tensor_picture(values: torch.Tensor, width: int, depth: Depth = "truecolor") -> Text:
    """A heatmap suited to the tensor's shape (blue negative, red positive)."""
    import torch.nn.functional as F

    peak = finite_peak(values)
    if values.dim() == 4:  # conv filters: out x in x kh x kw, one small image each
        out_ch, in_ch, kh, kw = values.shape
        return _tiles(values.reshape(out_ch * in_ch, kh, kw), peak, width, depth, scale=2 if kh <= 7 else 1)
    if values.dim() == 2 and values.shape[1] == 784:  # weights into each unit, seen as the image they match
        return _tiles(F.avg_pool2d(values.reshape(-1, 1, 28, 28), 2).squeeze(1), peak, width, depth)
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
    return heatmap(matrix.tolist(), peak, depth)


def histogram_chart(values: torch.Tensor) -> Chart:
    """Counts of the finite values in HISTOGRAM_BINS bins (integer count ticks)."""
    import torch

    flat = values.reshape(-1).double()
    finite = flat[torch.isfinite(flat)]
    skipped = flat.numel() - finite.numel()
    title = "histogram of values" + (f"  ({skipped:,} NaN/inf left out)" if skipped else "")
    if not finite.numel():
        return Chart(title, "value", empty="no finite values")
    lo, hi = finite.min().item(), finite.max().item()
    if hi <= lo:  # all equal: one bar
        return Chart(title, "value", (Line("", (lo,), (float(finite.numel()),), "sd", "cyan", "bar"),), y_integer=True)
    counts = torch.histc(finite, bins=HISTOGRAM_BINS, min=lo, max=hi).tolist()
    width = (hi - lo) / HISTOGRAM_BINS
    centres = tuple(lo + width * (i + 0.5) for i in range(HISTOGRAM_BINS))
    return Chart(
        title, "value", (Line("", centres, tuple(counts), "sd", "cyan", "bar"),), y_integer=True, x_range=(lo, hi)
    )


class ParamDetail(VerticalScroll, can_focus=True):
    """The Parameters panel's drill-down into one tensor, in place of the table (the status line
    and every dashboard key stay); `show(inspection)` keeps it live while training runs, and
    `show_history(histories)` its look back over the recorded steps."""

    BINDINGS = [
        Binding("escape,backspace", "close", "Back to the table", tooltip="back to the parameter table"),
        Binding("g", "toggle_gradients", "Gradients", tooltip="history of the values / of the gradient"),
        Binding("left", "scrub(-1)", "Step back", show=False, tooltip="history: one recorded step back"),
        Binding("right", "scrub(1)", "Step on", show=False, tooltip="history: one recorded step on"),
        Binding("home", "scrub_to(0)", "First", show=False, tooltip="history: the first recorded step"),
        Binding("end", "scrub_to(-1)", "Latest", show=False, tooltip="history: the latest recorded step"),
    ]

    class Closed(Message):
        """The user went back to the table."""

    def __init__(self, *, id: str | None = None):
        super().__init__(id=id)
        self.param_name = ""
        self.inspection: Any = None
        self.histories: Histories | None = None
        self.title_lines = 1

    def compose(self) -> ComposeResult:
        yield Static(id="detail-title")
        with Horizontal(id="detail-body"):
            yield TimedPlot(id="detail-hist")
            with VerticalScroll(id="detail-map"):
                yield Static(id="detail-heatmap")
        yield ParamHistory(id="param-history")

    def open(self, name: str, inspection: Any, histories: Histories | None = None) -> None:
        self.param_name = name
        self.display = True
        self.query_one("#detail-title", Static).update(name)
        if inspection is not None:
            self.call_after_refresh(self.show, inspection)
        if histories is not None:
            self.call_after_refresh(self.show_history, histories)
        self.scroll_home(animate=False)
        self.focus()

    def action_close(self) -> None:
        self.display = False
        self.post_message(self.Closed())

    def action_toggle_gradients(self) -> None:
        history = self.query_one(ParamHistory)
        history.gradients = not history.gradients
        history.redraw()
        self._bring_history_into_view()

    def action_scrub(self, delta: int) -> None:
        self.query_one(ParamHistory).scrub(delta=delta)
        self._bring_history_into_view()

    def action_scrub_to(self, index: int) -> None:
        self.query_one(ParamHistory).scrub(to=index)
        self._bring_history_into_view()

    def _bring_history_into_view(self) -> None:
        """The history keys work from anywhere in the drill-down: what they change comes on screen."""
        self.call_after_refresh(self.scroll_to_widget, self.query_one("#history-scrub"), animate=False)

    def show_history(self, histories: Histories) -> None:
        """The tensor's recorded steps (live: called again as records come)."""
        self.histories = histories
        if self.is_mounted and self.display and self.param_name:
            self.query_one(ParamHistory).show(self.param_name, histories, colour_depth(self.app))

    def fit(self) -> tuple[int, int]:
        """Body lines and history value bands so the title, histogram, heatmap and the whole history
        heatmap share the visible height (16 and 10 where there is room; less of both where not)."""
        space = self.scrollable_content_region.height - self.title_lines
        rows = max(MIN_HEAT_ROWS, min(HEAT_ROWS, space - HEAT_EXTRA - 12))
        body = max(MIN_BODY, min(DETAIL_BODY, space - HEAT_EXTRA - rows))
        return body, rows

    def apply_fit(self) -> None:
        body, rows = self.fit()
        self.query_one("#detail-body").styles.height = body
        self.query_one(ParamHistory).rows = rows

    def on_resize(self) -> None:
        self.apply_fit()
        if self.inspection is not None:
            self.show(self.inspection)
        if self.histories is not None:
            self.show_history(self.histories)

    def show(self, inspection: Any) -> None:
        self.inspection = inspection
        params = {p.name: p for p in inspection.params}
        p = params.get(self.param_name)
        if p is None or not self.is_mounted or not self.display:
            return
        depth = colour_depth(self.app)
        width = max(20, self.query_one("#detail-title").size.width or self.size.width - 4)
        grad = "-" if p.grad_norm is None else f"{p.grad_norm:.3g}"
        phrases: list[Phrase] = [
            (p.name, "bold"),
            f"shape {tuple(p.shape)}",
            f"{p.count:,} values",
            _stat("mean", f"{p.mean:.4g}"),
            _stat("std", f"{p.std:.4g}"),
            _stat("min", f"{p.min:.4g}"),
            _stat("max", f"{p.max:.4g}"),
            _stat("grad norm", grad),
            _stat("step", f"{inspection.step:,}"),
        ]
        neuron = self._neuron(params)
        title = fit_phrases(phrases, width)
        if neuron:
            title.append("\n").append_text(fit_phrases(neuron[0], width))
        self.query_one("#detail-title", Static).update(title)
        if len(title.plain.split("\n")) != self.title_lines:
            self.title_lines = len(title.plain.split("\n"))
            self.apply_fit()
            self.query_one(ParamHistory).redraw()
        plot = self.query_one("#detail-hist", TimedPlot)
        values = p.values.float()
        plot.show(self._line_chart(neuron[1], inspection.predictions) if neuron else histogram_chart(values))
        map_width = max(10, self.query_one("#detail-map").size.width - 2)
        non_finite = int((~values.isfinite()).sum().item())
        picture = fit_phrases(heatmap_legend(depth, non_finite), map_width, gap=" ").append("\n")
        self.query_one("#detail-heatmap", Static).update(picture.append_text(tensor_picture(values, map_width, depth)))

    @staticmethod
    def _neuron(params: dict[str, Any]) -> tuple[list[Text], tuple[float, float, float]] | None:
        """The single neuron: w1, w2, b and its decision line w1*x1 + w2*x2 + b = 0."""
        w, b = params.get("linear.weight"), params.get("linear.bias")
        if w is None or b is None or tuple(w.shape) != (1, 2) or len(params) != 2:
            return None
        w1, w2 = w.values.reshape(-1).tolist()
        bias = b.values.reshape(-1).item()
        if not all(map(math.isfinite, (w1, w2, bias))):
            line = "undefined (NaN or infinite weights)"
        elif abs(w2) > 1e-9:
            line = f"x2 = {-w1 / w2:.3g}·x1 {'-' if bias / w2 > 0 else '+'} {abs(bias / w2):.3g}"
        else:
            line = f"x1 = {-bias / w1:.3g}" if abs(w1) > 1e-9 else "none (all weights are zero)"
        return (
            [
                _stat("w1", f"{w1:.4g}"),
                _stat("w2", f"{w2:.4g}"),
                _stat("b", f"{bias:.4g}"),
                _stat(" decision line:", line),
            ],
            (w1, w2, bias),
        )

    @staticmethod
    def _line_chart(weights: tuple[float, float, float], pred: Any) -> Chart:
        w1, w2, b = weights
        lines = []
        x_range = y_range = None
        if pred is not None and pred.bounds is not None:
            xmin, xmax, ymin, ymax = pred.bounds
            x_range, y_range = (xmin, xmax), (ymin, ymax)
            pts, labels = pred.inputs.tolist(), pred.targets.reshape(-1).tolist()
            names = list(getattr(pred, "class_names", None) or [])
            for cls, colour, marker in ((0, "blue", "•"), (1, "orange", "+")):
                chosen = [p for p, t in zip(pts, labels, strict=False) if round(t) == cls]
                lines.append(
                    Line(
                        label(names, cls),  # the class names the Predictions panel uses
                        tuple(p[0] for p in chosen),
                        tuple(p[1] for p in chosen),
                        marker,
                        colour,
                        "scatter",
                    )
                )
        else:
            xmin, xmax = -3.0, 3.0
        if abs(w2) > 1e-9 and all(map(math.isfinite, (w1, w2, b))):
            xs = tuple(xmin + (xmax - xmin) * i / 50 for i in range(51))
            lines.append(Line("decision line", xs, tuple(-(w1 * x + b) / w2 for x in xs), "braille", "red"))
        return Chart(
            "decision line w1·x1 + w2·x2 + b = 0 over the test points",
            "x1",
            tuple(lines),
            x_range=x_range,
            y_range=y_range,
        )


def _stat(name: str, value: str) -> Text:
    return Text(name + " ", "dim").append(value)
