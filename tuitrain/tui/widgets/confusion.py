"""Provides the confusion matrix you can open: a cell cursor, per-class accuracy and the most confused pairs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rich.style import Style
from rich.text import Text
from textual import events
from textual.message import Message
from textual.widgets import Static

from tuitrain.tui.widgets.render import Depth, Phrase, named

if TYPE_CHECKING:
    from types import ModuleType


def inspection() -> ModuleType:
    """The core's inspection helpers, loaded (with torch) when a matrix first arrives, not with the app."""
    from tuitrain.training import inspection

    return inspection


SHORT_NAMES = {  # confusion-matrix column headers, at most 7 cells
    "T-shirt": "T-shirt",
    "T-shirt/top": "T-shirt",
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
ACCURACY_WIDTH = 5  # " 100%": the per-class accuracy column after the matrix
CONFUSED_PAIRS = 5  # mistakes listed under the matrix


def label(names: list[str], index: int) -> str:
    return names[index] if 0 <= index < len(names) else str(index)


def short_name(names: list[str], index: int) -> str:
    """A column header: the fixed abbreviation, the name when it is short, else the class number."""
    name = label(names, index)
    return SHORT_NAMES.get(name) or (name if len(name) <= 7 else str(index))


@dataclass
class Layout:
    rows: list[str]  # row labels, already cut to row_width
    heads: list[str]
    row_width: int
    column: int  # characters per count, after one of gap
    accuracy: bool  # whether the per-class accuracy column fits


def layout(matrix: Any, names: list[str], width: int, accuracy: bool = False) -> Layout:
    """Names across where they fit, else class numbers (and numbered row names); accuracy where it fits."""
    values = matrix.tolist()
    classes = len(values)
    counts = max((len(str(v)) for row in values for v in row), default=1)
    rows = [label(names, i) for i in range(classes)]
    row_width = max((len(r) for r in rows), default=1)
    heads = [short_name(names, j) for j in range(classes)]
    column = max(counts, max((len(h) for h in heads), default=1))
    extra = ACCURACY_WIDTH if accuracy else 0
    unnamed = any(h == str(j) != label(names, j) for j, h in enumerate(heads))  # no short form known
    if unnamed or row_width + classes * (column + 1) + extra > width:
        heads = [str(j) for j in range(classes)]
        column = max(counts, len(str(classes - 1)))
        rows = [f"{i} {r}" for i, r in enumerate(rows)]
        room = width - classes * (column + 1)
        accuracy = accuracy and room - extra >= 6  # the numbered row names matter more
        row_width = min(max(len(r) for r in rows), max(3, room - (extra if accuracy else 0)))
    return Layout([r[:row_width] for r in rows], heads, row_width, column, accuracy)


def confusion_text(
    matrix: Any,
    names: list[str],
    width: int,
    depth: Depth = "truecolor",
    cursor: tuple[int, int] | None = None,
    accuracy: bool = False,
) -> Text:
    """Counts with true classes down and predicted classes across; narrow: class numbers across.

    The `cursor` cell is drawn reversed (and, without colour, marked '>'); its row and column names
    underlined. With `accuracy`, each row ends with its class's share predicted right."""
    values = matrix.tolist()
    shape = layout(matrix, names, width, accuracy)
    column = shape.column
    row_at, col_at = cursor if cursor is not None else (-1, -1)
    out = Text(no_wrap=True, overflow="crop")
    out.append(" " * shape.row_width)
    for j, head in enumerate(shape.heads):
        out.append(" ").append(head.rjust(column), Style(bold=True, underline=j == col_at))
    if shape.accuracy:
        out.append(" acc".rjust(ACCURACY_WIDTH), "bold")
    shares = inspection().class_accuracy(matrix)
    for i, row in enumerate(values):
        out.append("\n").append(shape.rows[i].ljust(shape.row_width), Style(underline=i == row_at))
        for j, v in enumerate(row):
            style = (
                Style(color=named("green", depth), bold=True)
                if i == j
                else (Style(color=named("red", depth)) if v else Style(dim=True))
            )
            if (i, j) == (row_at, col_at):
                mark = ">" if depth == "none" else " "
                out.append((mark + str(v)).rjust(column + 1), style + Style(reverse=True, dim=False, bold=True))
            else:
                out.append(" ").append(str(v).rjust(column), style)
        if shape.accuracy:
            share = shares[i]
            out.append(
                ("–" if share is None else f"{share:.0%}").rjust(ACCURACY_WIDTH), "cyan" if depth != "none" else ""
            )
    return out


def cell_at(matrix: Any, names: list[str], width: int, accuracy: bool, x: int, y: int) -> tuple[int, int] | None:
    """The (true, predicted) cell under a click at column x, line y of `confusion_text`'s output."""
    shape = layout(matrix, names, width, accuracy)
    classes = len(shape.heads)
    row, offset = y - 1, x - shape.row_width
    if not 0 <= row < classes or offset < 0:
        return None
    col = offset // (shape.column + 1)
    return (row, col) if col < classes else None


def pairs_phrases(matrix: Any, names: list[str], depth: Depth) -> list[Phrase]:
    """ "most confused" and one phrase per pair: "Shirt → T-shirt 118"."""
    pairs = inspection().confused_pairs(matrix, CONFUSED_PAIRS)
    if not pairs:
        return [("most confused", "bold"), ("none: every test sample right", "")]
    red = "" if depth == "none" else named("red", depth)
    head: list[Phrase] = [("most confused", "bold")]
    return head + [Text(f"{label(names, i)} → {label(names, j)} ").append(str(count), red) for i, j, count in pairs]


def accuracy_phrases(matrix: Any, names: list[str]) -> list[Phrase]:
    """Per-class accuracy as phrases, for layouts too narrow for the column."""
    head: list[Phrase] = [("per class accuracy", "bold")]
    return head + [
        f"{label(names, i)} {'–' if share is None else format(share, '.0%')}"
        for i, share in enumerate(inspection().class_accuracy(matrix))
    ]


def cell_order(pred: Any, row: int, column: int) -> list[int]:
    """Test-set indices of the cell's samples, most confident first (the surest mistakes lead)."""
    if pred.confusion_true is None or pred.confusion_predicted is None:
        return []
    found = inspection().cell_samples(pred.confusion_true, pred.confusion_predicted, row, column)
    confidence = pred.confusion_confidence.float()[found]
    ordered: list[int] = found[confidence.argsort(descending=True, stable=True)].tolist()
    return ordered


def confusion_when(pred: Any) -> str:
    """When the matrix was counted: "epoch 3 (step 2,532)", "step 40" or "computed 5 s ago"."""
    epoch, step = getattr(pred, "confusion_epoch", None), getattr(pred, "confusion_step", None)
    if epoch is not None:
        return f"epoch {epoch}" + (f" (step {step:,})" if step is not None else "")
    if step is not None:
        return f"step {step:,}"
    age = getattr(pred, "confusion_age", 0.0)
    return "computed just now" if age < 1 else f"computed {fmt_age(age)} ago"


def confusion_caption(pred: Any) -> str:
    """How fresh the matrix is and what it counts: "epoch 3 (step 2,532), all 10,000 test images"."""
    images = getattr(pred, "confusion_images", 0)
    what = "images" if getattr(pred, "kind", "image") == "image" else "samples"
    return f"{confusion_when(pred)}, {'all ' + format(images, ',') if images else 'the'} test {what}"


def fmt_age(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds} s" if seconds < 60 else f"{seconds // 60} min {seconds % 60:02d} s"


class ConfusionView(Static):
    """The matrix as drawn; a click on a count says which cell it was."""

    class CellClicked(Message):
        def __init__(self, row: int, column: int):
            super().__init__()
            self.row, self.column = row, column

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.drawn: tuple[Any, list[str], int, bool] | None = None  # matrix, names, width, accuracy

    def draw(self, matrix: Any, names: list[str], width: int, depth: Depth, cursor: tuple[int, int] | None) -> None:
        self.drawn = (matrix, names, width, True)
        self.update(confusion_text(matrix, names, width, depth, cursor, accuracy=True))

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if self.drawn is None or offset is None:
            return
        cell = cell_at(*self.drawn, offset.x, offset.y)
        if cell is not None:
            event.stop()
            self.post_message(self.CellClicked(*cell))
