"""Provides the live parameter table: one row per tensor with its statistics."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widgets import DataTable

COLUMNS = ("name", "shape", "count", "mean", "std", "min", "max", "grad norm", "update/weight")


UPDATE_WIDTH = 17  # characters: a 4-digit ratio, a space, "@" and a 7-digit step


def _num(value: float | None) -> Text:
    return Text("-" if value is None else f"{value:.3g}", justify="right")


def _measured(value: float, step: int | None) -> Text:
    """An update ratio measured at an earlier step than the row's (paused, ended): dim, with its step."""
    if step is None:
        return _num(value)
    return Text(f"{value:.3g} @{step}", style="dim", justify="right")


def row_cells(p: Any, update: Text | None = None) -> list[Any]:
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
        update if update is not None else _num(p.update_ratio),
    ]


class ParamTable(DataTable[Any]):
    """Rows keyed by parameter name; `show(params)` updates cells in place (no flicker).

    The update ratio is measured only across a step taken while an inspection waits (so not while paused,
    nor after the end): then the row keeps the last measured value, shown dim as of its step (`0.0012 @412`)."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._updates: dict[str, tuple[int, float]] = {}  # name -> (step, update ratio) last measured
        self._step: int | None = None  # the step last shown: one before it is a new run's (restart)
        self._rows_added = False  # rows added since the last idle (see on_idle)

    def on_mount(self) -> None:
        self.cursor_type = "row"
        self.zebra_stripes = True
        for column in COLUMNS:
            # update/weight is set wide enough for a measured value as of its step ("8.07e-05 @1100000"):
            # widening it as values arrive (update_width) sometimes left every column at its label's width
            self.add_column(column, key=column, width=UPDATE_WIDTH if column == "update/weight" else None)

    def on_idle(self) -> None:
        """DataTable measures new rows' columns when idle, after its own idle handler (this one runs
        next), but keeps rows it drew before that at their labels' widths: touching a cell draws
        them again (under load the table otherwise stayed at `name  shape  count` widths)."""
        if self._rows_added and self.row_count:
            self._rows_added = False
            key = next(iter(self.rows))
            self.update_cell(key, "name", self.get_cell(key, "name"))

    def last_update(self, name: str, step: int | None, histories: Any = None) -> tuple[int, float] | None:
        """The newest update ratio of tensor `name` measured at or before `step`: by an inspection or
        in the recorded histories (a restart's earlier steps are not this run's)."""
        found = self._updates.get(name)
        if found is not None and step is not None and found[0] > step:
            found = None
        if histories is not None:
            for at, t in reversed(histories.tensor(name)):
                if step is not None and at > step:
                    continue
                if t.update_ratio is not None:
                    if found is None or at > found[0]:
                        found = (at, t.update_ratio)
                    break
        return found

    def update_cell_of(self, p: Any, step: int | None, histories: Any) -> Text:
        if p.update_ratio is not None:
            if step is not None:
                self._updates[p.name] = (step, p.update_ratio)
            return _num(p.update_ratio)
        found = self.last_update(p.name, step, histories)
        return _num(None) if found is None else _measured(found[1], found[0])

    def show(self, params: list[Any], step: int | None = None, histories: Any = None) -> None:
        """The tensors at `step`; `histories` (tuitrain.store.histories.Histories) also supplies update ratios."""
        if step is not None and self._step is not None and step < self._step:
            self._updates.clear()
        self._step = step if step is not None else self._step
        cells = [row_cells(p, self.update_cell_of(p, step, histories)) for p in params]
        names = {p.name for p in params}
        if {str(k.value) for k in self.rows} != names:
            self.clear()
            for p, row in zip(params, cells, strict=True):
                self.add_row(*row, key=p.name)
            self._rows_added = True
            return
        for p, row in zip(params, cells, strict=True):
            for column, cell in zip(COLUMNS[3:], row[3:], strict=True):
                self.update_cell(p.name, column, cell)
