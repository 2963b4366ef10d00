"""Provides the live parameter table: one row per tensor with its statistics."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widgets import DataTable

COLUMNS = ("name", "shape", "count", "mean", "std", "min", "max", "grad norm", "update/weight")


def _num(value: float | None) -> Text:
    return Text("-" if value is None else f"{value:.3g}", justify="right")


def row_cells(p: Any) -> list[Any]:
    shape = "×".join(str(d) for d in p.shape) or "scalar"
    return [
        p.name,
        shape,
        Text(f"{p.count:,}", justify="right"),
        _num(p.mean),
        _num(p.std),
        _num(p.min),
        _num(p.max),
        _num(p.grad_norm),
        _num(p.update_ratio),
    ]


class ParamTable(DataTable):
    """Rows keyed by parameter name; `show(params)` updates cells in place (no flicker)."""

    def on_mount(self) -> None:
        self.cursor_type = "row"
        self.zebra_stripes = True
        for column in COLUMNS:
            self.add_column(column, key=column)

    def show(self, params: list[Any]) -> None:
        names = {p.name for p in params}
        if {str(k.value) for k in self.rows} != names:
            self.clear()
            for p in params:
                self.add_row(*row_cells(p), key=p.name)
            return
        for p in params:
            for column, cell in zip(COLUMNS[3:], row_cells(p)[3:]):
                self.update_cell(p.name, column, cell)
