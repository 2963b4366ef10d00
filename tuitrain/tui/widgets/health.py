"""Provides HealthBoard: the layer health board, one row per layer, worst first, a verdict in words.

Fed with `tuitrain.store.health.layer_health(...)` (live: the records a viewer holds; or a run's files via
`run_health`): `board.show(health)`. Enter on a row posts `HealthBoard.LayerChosen(name)` so the screen can
open that layer's tensors. Clicking a column heading sorts by it (again: the other way); `w` goes back to
worst first. Colour only repeats what the words say: the ratio's " low"/" high", the verdict."""

from __future__ import annotations

import math
from typing import Any

from rich.text import Text
from textual.binding import Binding
from textual.message import Message
from textual.widgets import DataTable

from tuitrain.store.health import UPDATE_BAND, Health, LayerHealth, in_band, sparkline
from tuitrain.store.histories import UPDATE_REFERENCE
from tuitrain.tui.widgets.render import Depth, colour_depth, named

TREND_WIDTH = 12  # characters per sparkline
COLUMNS = (  # key, heading; the verdict second, so a narrow terminal still shows the answer
    ("layer", "layer"),
    ("verdict", "verdict"),
    ("grad", "grad norm"),
    ("grad_trend", "trend"),
    ("ratio", "update/weight"),
    ("ratio_trend", "trend"),
    ("dead", "dead"),
    ("saturated", "sat"),
    ("activation", "act mean±std"),
    ("nonfinite", "nan/inf"),
)


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def _share(value: float | None) -> Text:
    return Text("-" if value is None else f"{value:.0%}", justify="right")


def _off_band(ratio: float | None) -> float:
    """How many decades an update ratio lies from UPDATE_REFERENCE (for sorting by it; missing last)."""
    return -1.0 if ratio is None or ratio <= 0 else abs(math.log10(ratio / UPDATE_REFERENCE))


SORT_KEYS: dict[str, Any] = {  # column -> what sorts it, largest (worst) first
    "layer": lambda h: -h.order,
    "grad": lambda h: -1.0 if h.grad_norm is None else h.grad_norm,
    "grad_trend": lambda h: -1.0 if h.grad_norm is None else h.grad_norm,
    "ratio": lambda h: _off_band(h.update_ratio),
    "ratio_trend": lambda h: _off_band(h.update_ratio),
    "dead": lambda h: -1.0 if h.dead_fraction is None else h.dead_fraction,
    "saturated": lambda h: -1.0 if h.saturated_fraction is None else h.saturated_fraction,
    "activation": lambda h: -1.0 if h.activation_std is None else h.activation_std,
    "nonfinite": lambda h: h.nonfinite,
    "verdict": lambda h: (-h.rank, h.score, -h.order),
}


class HealthBoard(DataTable[Any]):
    """One row per layer, keyed by the layer's name; `show(health)` updates it in place."""

    BINDINGS = [Binding("w", "worst_first", "Worst first", tooltip="sort the layers worst first again")]

    class LayerChosen(Message):
        """Enter on a layer's row: `name` is the module ("layers.1"); its tensors are `name + ".weight"`, ..."""

        def __init__(self, name: str, tensors: list[str]):
            super().__init__()
            self.name = name
            self.tensors = tensors

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.health: Health | None = None
        self.rows_by_name: dict[str, LayerHealth] = {}
        self.sort_column = "verdict"  # worst first
        self.sort_reverse = False

    def on_mount(self) -> None:
        self.cursor_type = "row"
        self.zebra_stripes = True
        for key, heading in COLUMNS:
            self.add_column(heading, key=key)

    def show(self, health: Health) -> None:
        """The board at `health.step`; rows kept (and the cursor on its layer) when the layers are the same."""
        self.health = health
        self.rows_by_name = {layer.name: layer for layer in health.layers}
        depth = colour_depth(self.app)
        if {str(k.value) for k in self.rows} != set(self.rows_by_name):
            self.clear()
            for layer in health.layers:
                self.add_row(*self.cells(layer, depth), key=layer.name)
        else:
            for layer in health.layers:
                for (key, _), cell in zip(COLUMNS, self.cells(layer, depth), strict=True):
                    self.update_cell(layer.name, key, cell)
        self._sort()

    def cells(self, layer: LayerHealth, depth: Depth) -> list[Any]:
        colour = depth != "none"
        inside = in_band(layer.update_ratio)
        ratio = Text(_num(layer.update_ratio), justify="right")
        if inside is False and layer.update_ratio is not None:
            high = layer.update_ratio > UPDATE_BAND[1]
            ratio.append(" high" if high else " low")
            if colour:
                ratio.stylize(named("red" if high else "yellow", depth))
        elif inside and colour:
            ratio.stylize(named("green", depth))
        verdict = Text(layer.verdict, style=named("green" if layer.ok else "red", depth) if colour else "")
        if not layer.ok:
            verdict.stylize("bold")
        mean_std = (
            "-"
            if layer.activation_mean is None or layer.activation_std is None
            else f"{_num(layer.activation_mean)}±{_num(layer.activation_std)}"
        )
        return [
            layer.name or "(model)",
            verdict,
            Text(_num(layer.grad_norm), justify="right"),
            sparkline(layer.grad_norms, TREND_WIDTH),
            ratio,
            sparkline(layer.update_ratios, TREND_WIDTH),
            _share(layer.dead_fraction),
            _share(layer.saturated_fraction),
            Text(f"{layer.activation or ''} {mean_std}".strip(), justify="right"),
            Text(str(layer.nonfinite), justify="right"),
        ]

    def sort_by(self, column: str, reverse: bool = False) -> None:
        """Worst first by `column` (a key of COLUMNS); `reverse`: best first."""
        self.sort_column, self.sort_reverse = column, reverse
        self._sort()

    def _sort(self) -> None:
        if not self.rows_by_name:
            return
        chosen = self._chosen()
        measure = SORT_KEYS[self.sort_column]
        # rows are found by their layer cell ("(model)" stands for parameters of the model itself)
        by_cell = {(name or "(model)"): layer for name, layer in self.rows_by_name.items()}
        self.sort("layer", key=lambda cell: measure(by_cell[str(cell)]), reverse=not self.sort_reverse)
        if chosen is not None:
            self.move_cursor(row=self.get_row_index(chosen))

    def _chosen(self) -> str | None:
        if not self.row_count:
            return None
        try:
            return str(self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value)
        except Exception:  # no row under the cursor
            return None

    def action_worst_first(self) -> None:
        self.sort_by("verdict")

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        event.stop()
        column = str(event.column_key.value)
        self.sort_by(column, reverse=not self.sort_reverse if column == self.sort_column else False)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()  # the screen hears LayerChosen, not a row of some other table
        name = str(event.row_key.value)
        layer = self.rows_by_name.get(name)
        self.post_message(self.LayerChosen(name, list(layer.tensors) if layer else []))
