"""Provides the prediction viewer: image grid with labels, 2-D decision regions, 1-D fitted curve."""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any, cast

from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.message import Message
from textual.widgets import Static

from tuitrain.tui.widgets.charts import TRAIN_COLOUR, VALID_COLOUR, VALID_MARKER, Chart, Line, TimedPlot
from tuitrain.tui.widgets.confusion import (
    ConfusionView,
    accuracy_phrases,
    cell_order,
    confusion_caption,
    confusion_when,
    label,
    layout,
    pairs_phrases,
)
from tuitrain.tui.widgets.render import Depth, colour_depth, fit_phrases
from tuitrain.tui.widgets.samples import (
    CELL_HEIGHT,
    CELL_WIDTH,
    Point,
    decision_regions,
    image_grid,
    image_rows,
    predicted,
    regions_legend,
    truth,
)

POINTS_PER_PAGE = 24  # an opened cell of 2-D points lists this many with their confidence per page
MIN_PICTURE = 6  # lines the decision regions keep however much room the confusion matrix needs below them


class PredictionPanel(VerticalScroll, can_focus=True):
    """Shows the latest Predictions; keys page through images, filter to mistakes and open matrix cells."""

    BINDINGS = [
        Binding("pagedown,full_stop", "page(1)", "Next page", key_display=".", show=False),
        Binding("pageup,comma", "page(-1)", "Prev page", key_display=",", show=False),
        Binding("m", "mistakes", "Mistakes only", show=False),
        # one row in the key table for the four arrows (key_rows skips bindings with no description)
        Binding("up", "cursor(-1, 0)", key_display="↑ ↓ ← →", show=False, tooltip="move over the confusion matrix"),
        Binding("down", "cursor(1, 0)", show=False),
        Binding("left", "cursor(0, -1)", show=False),
        Binding("right", "cursor(0, 1)", show=False),
        Binding(
            "enter",
            "open_cell",
            key_display="enter",
            show=False,
            tooltip="open the matrix cell: its test samples, surest first",
        ),
        Binding("escape", "close_cell", show=False, tooltip="back from a cell to the sample page"),
    ]

    class SampleChosen(Message):
        """A test image was chosen (clicked, or a confusion cell opened): its index into the test split."""

        def __init__(self, sample: int) -> None:
            super().__init__()
            self.sample = sample

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.predictions: Any = None
        self.standardized = False  # the run standardizes its data: the curve's axes are in those units
        self.page = 0
        self.mistakes_only = False
        self.cursor = (0, 0)  # (true, predicted) cell under the matrix cursor
        self.cell: tuple[int, int] | None = None  # the opened cell
        self.cell_page = 0
        self.test_inputs: Any = None  # the whole test split in small form, kept from the last new matrix

    def compose(self) -> ComposeResult:
        yield Static("Waiting for predictions…", id="pred-info")
        yield Static(id="pred-body")
        yield TimedPlot(id="pred-curve")
        yield Static(id="pred-confusion-title")
        yield ConfusionView(id="pred-confusion")
        yield Static(id="pred-pairs")

    def show(self, predictions: Any) -> None:
        self.predictions = predictions
        if getattr(predictions, "confusion_inputs", None) is not None:
            self.test_inputs = predictions.confusion_inputs
        self.redraw()

    def on_resize(self) -> None:
        self.redraw()

    def action_page(self, delta: int) -> None:
        if self.cell is not None:
            self.cell_page += delta
        else:
            self.page += delta
        self.redraw()

    def action_mistakes(self) -> None:
        self.mistakes_only = not self.mistakes_only
        self.page = 0
        self.redraw()

    def class_count(self) -> int:
        matrix = getattr(self.predictions, "confusion", None)
        return 0 if matrix is None else int(matrix.shape[0])

    def action_cursor(self, rows: int, columns: int) -> None:
        classes = self.class_count()
        if not classes:  # nothing to select: the arrows scroll as in any scrolling view
            self.scroll_relative(columns, rows, animate=False)
            return
        row, column = self.cursor
        self.cursor = ((row + rows) % classes, (column + columns) % classes)
        self.redraw()
        self.call_after_refresh(self.matrix_into_view)

    def matrix_into_view(self) -> None:
        """The matrix and the pairs under it on screen (the matrix's top first when not all fit)."""
        self.scroll_to_widget(self.query_one("#pred-pairs"), animate=False, immediate=True)
        self.scroll_to_widget(self.query_one(ConfusionView), animate=False, immediate=True)

    def action_open_cell(self) -> None:
        if self.class_count():
            self.open_cell(*self.cursor)

    def open_cell(self, row: int, column: int) -> None:
        """Show the test samples of true class `row` predicted as `column` in place of the sample page."""
        self.cursor = self.cell = (row, column)
        self.cell_page = 0
        self.redraw()
        self.scroll_home(animate=False)
        if self.predictions.kind == "image":
            shown = self.cell_view()[1]
            if shown:  # the surest sample of the cell is the Units panel's
                self.post_message(self.SampleChosen(shown[0]))

    def test_index(self, index: int) -> int | None:
        """The test-split index of the fixed sample's `index`-th image (the engine's sample_indices rule)."""
        true = getattr(self.predictions, "confusion_true", None)
        if true is None:
            return None
        from tuitrain.training.inspection import sample_indices  # torch: not at the app's start

        indices = sample_indices(cast(Any, SimpleNamespace(test=range(len(true)))))
        return int(indices[index]) if 0 <= index < len(indices) else None

    def on_click(self, event: events.Click) -> None:
        """A click on an image chooses it for the Units panel."""
        pred = self.predictions
        body = self.query_one("#pred-body", Static)
        offset = event.get_content_offset(body)
        if pred is None or pred.kind != "image" or offset is None or offset.x % CELL_WIDTH >= CELL_WIDTH - 2:
            return
        columns = self.page_shape()[0]
        if offset.x // CELL_WIDTH >= columns:
            return
        at = offset.y // CELL_HEIGHT * columns + offset.x // CELL_WIDTH
        shown = (
            self.cell_view()[1] if self.cell is not None else [self.test_index(i) for i in self.visible_indices()[0]]
        )
        chosen = shown[at] if at < len(shown) else None
        if chosen is not None:
            self.post_message(self.SampleChosen(chosen))
            self.notify(f"test sample {chosen}: 4 shows it stepped through the network", timeout=3)

    def action_close_cell(self) -> None:
        if self.cell is not None:
            self.cell = None
            self.redraw()
            self.scroll_home(animate=False)

    def on_confusion_view_cell_clicked(self, event: ConfusionView.CellClicked) -> None:
        self.focus()
        self.open_cell(event.row, event.column)

    def page_shape(self) -> tuple[int, int]:
        """Images per row and per page that fit the panel."""
        columns = max(1, (self.size.width - 1) // CELL_WIDTH)
        return columns, columns * max(1, (self.size.height - 1 - self.matrix_height()) // CELL_HEIGHT)

    def matrix_texts(self, width: int, depth: Depth) -> tuple[Text, Text]:
        """The confusion matrix's title and the phrases under it (most confused pairs), fitted to `width`."""
        pred = self.predictions
        title = fit_phrases(
            [
                ("confusion matrix", "bold"),
                ("rows: true class", "dim"),
                ("columns: predicted", "dim"),
                (confusion_caption(pred), ""),
                ("arrows+enter (or a click) open a cell", "dim"),
            ],
            width,
        )
        phrases = pairs_phrases(pred.confusion, pred.class_names, depth)
        if not layout(pred.confusion, pred.class_names, width, accuracy=True).accuracy:
            phrases = accuracy_phrases(pred.confusion, pred.class_names) + phrases
        return title, fit_phrases(phrases, width)

    def matrix_height(self) -> int:
        """Lines the confusion matrix takes under the samples (its margin, title, rows and pairs): the
        pictures above leave it this room, so the matrix shows without scrolling where the panel allows."""
        pred = self.predictions
        if pred is None or getattr(pred, "confusion", None) is None:
            return 0
        title, pairs = self.matrix_texts(max(20, self.size.width - 2), colour_depth(self.app))
        return 1 + len(title.plain.split("\n")) + self.class_count() + 1 + len(pairs.plain.split("\n"))

    def visible_indices(self) -> tuple[list[int], int, int]:
        """The sample indices on the current page, the page number and the page count."""
        pred = self.predictions
        n = pred.inputs.shape[0]
        indices = list(range(n))
        if self.mistakes_only:
            cls, _ = predicted(pred)
            true = truth(pred)
            indices = [i for i in indices if cls[i] != true[i]]
        columns, per_page = self.page_shape()
        pages = max(1, math.ceil(len(indices) / per_page))
        self.page %= pages
        return indices[self.page * per_page : (self.page + 1) * per_page], pages, columns

    def cell_view(self) -> tuple[list[int], list[int], int]:
        """The opened cell's test-set indices (surest first), those on the current page, and the page count."""
        assert self.cell is not None
        order = cell_order(self.predictions, *self.cell)
        per_page = self.page_shape()[1] if self.predictions.kind == "image" else POINTS_PER_PAGE
        pages = max(1, math.ceil(len(order) / per_page))
        self.cell_page %= pages
        return order, order[self.cell_page * per_page : (self.cell_page + 1) * per_page], pages

    def redraw(self) -> None:
        pred = self.predictions
        if pred is None or not self.is_mounted:
            return
        depth = colour_depth(self.app)
        width = max(20, self.size.width - 2)
        info, body = self.query_one("#pred-info", Static), self.query_one("#pred-body", Static)
        curve = self.query_one("#pred-curve", TimedPlot)
        if self.cell is not None and max(self.cell) >= self.class_count():
            self.cell = None  # a new run with fewer classes, or none
        curve.display = pred.kind == "curve"
        body.display = pred.kind != "curve"
        if self.cell is not None:
            self.draw_cell(info, body, width, depth)
        elif pred.kind == "image":
            shown, pages, columns = self.visible_indices()
            cls, _ = predicted(pred)
            wrong = sum(c != t for c, t in zip(cls, truth(pred), strict=True))
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
            room = self.size.height - 1 - len(header.split("\n")) - len(legend.split("\n")) - self.matrix_height()
            picture = decision_regions(pred, max(8, self.size.width - 2), max(MIN_PICTURE, room), depth)
            body.update(picture.append_text(legend))
        else:
            info.update(
                fit_phrases(
                    [
                        ("fitted curve", "bold"),
                        ("line: network output", "dim"),
                        ("dots: test points", "dim"),
                        (
                            "x and y standardized (mean 0, std 1), as the network sees them"
                            if self.standardized
                            else "",
                            "dim",
                        ),
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
        self.draw_matrix(width, depth)

    def draw_cell(self, info: Static, body: Static, width: int, depth: Depth) -> None:
        """The opened cell: its images with confidences, or its points on the decision regions."""
        pred = self.predictions
        row, column = self.cell or (0, 0)
        names = pred.class_names
        order, shown, pages = self.cell_view()
        what = "images" if pred.kind == "image" else "points"
        info.update(
            fit_phrases(
                [
                    (f"true {label(names, row)}, predicted {label(names, column)}", "bold"),
                    (f"{len(order):,} test {what}", ""),
                    (f"page {self.cell_page + 1}/{pages}", ""),
                    (confusion_when(pred), "dim"),
                    ("esc back  , . page  arrows+enter another cell", "dim"),
                ],
                width,
            )
        )
        inputs = self.test_inputs
        if not order:
            body.update(Text("No test samples in this cell.", "green" if row == column else ""))
        elif inputs is None or pred.confusion_true is None or len(inputs) != len(pred.confusion_true):
            body.update(Text("The test inputs come with the next confusion matrix (next epoch)."))
        elif pred.kind == "image":
            confidence = pred.confusion_confidence.float()
            items = [(i, row, column, float(confidence[i])) for i in shown]
            body.update(image_rows(inputs, names, items, self.page_shape()[0], depth))
        else:
            xy = inputs[order].tolist()
            marks: list[Point] = [(x, y, row, row != column) for x, y in xy]
            confidence = pred.confusion_confidence.float()
            listed = fit_phrases(
                [
                    f"({x:.2f}, {y:.2f}) {float(confidence[i]):.0%}"
                    for i, (x, y) in zip(shown, inputs[shown].tolist(), strict=True)
                ],
                width,
            )
            room = self.size.height - 3 - len(listed.split("\n")) - self.matrix_height()
            picture = decision_regions(pred, max(8, self.size.width - 2), max(MIN_PICTURE, room), depth, marks)
            body.update(picture.append_text(listed))

    def draw_matrix(self, width: int, depth: Depth) -> None:
        """The confusion matrix with its cursor and per-class accuracy, then the most confused pairs."""
        pred = self.predictions
        title, view = self.query_one("#pred-confusion-title", Static), self.query_one(ConfusionView)
        pairs = self.query_one("#pred-pairs", Static)
        title.display = view.display = pairs.display = pred.confusion is not None
        if pred.confusion is None:
            return
        classes = self.class_count()
        self.cursor = (min(self.cursor[0], classes - 1), min(self.cursor[1], classes - 1))
        matrix_title, pairs_text = self.matrix_texts(width, depth)
        title.update(matrix_title)
        view.draw(pred.confusion, pred.class_names, width, depth, self.cursor)
        pairs.update(pairs_text)
