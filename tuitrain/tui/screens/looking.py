"""Provides the dashboard's look inside a run: the parameter table, a tensor's drill-down, predictions."""

from __future__ import annotations

import time
from collections import deque
from typing import Any

from textual import work
from textual.widgets import TabbedContent

from tuitrain.events import Inspection
from tuitrain.tui.screens.steering import Steering
from tuitrain.tui.widgets.param_detail import ParamDetail
from tuitrain.tui.widgets.params import ParamTable
from tuitrain.tui.widgets.predictions import PredictionPanel

INSPECT_INTERVAL = 0.75  # seconds between inspection requests while a look-inside panel is visible ...
LOOK_BUDGET = 0.03  # ... and never more than this share of the training process's time (measured cost)


class LookingInside(Steering):
    """The Dashboard's base for inspections: asked for only while someone looks, at a measured cost."""

    _pending: deque[tuple[int, Any]]  # the Dashboard's events waiting for its next flush
    _generation: int  # the run they belong to (a restart makes a new one)
    _inspect_pending: bool  # an inspection was asked for and has not come yet
    _inspect_asked: float  # when (monotonic seconds)
    _inspect_interval: float  # seconds between asks: INSPECT_INTERVAL, or more when inspections cost more

    def wake(self) -> None:
        """Have the Dashboard fold pending events in now, not at its next flush."""
        raise NotImplementedError

    def looking_inside(self) -> bool:
        if self.app.screen is not self:
            return False
        return self.query_one("#panels", TabbedContent).active in ("params", "predictions")

    def maybe_inspect(self) -> None:
        """Ask for an Inspection only while someone looks at parameters or predictions."""
        now = time.monotonic()
        if not self.looking_inside() or now - self._inspect_asked < self._inspect_interval:
            return
        if self._inspect_pending and now - self._inspect_asked < 5:
            return
        self._inspect_asked = now
        controls = self.controls()
        if controls is not None and self.history.state in ("running", "paused") and self.training():
            self._inspect_pending = True
            controls.request_inspection()
        elif not self.steerable or (
            self.history.ended and (self.history.inspection is None or self._needs_final_look())
        ):
            self._inspect_pending = True
            self.inspect_directly(self._generation)

    def _needs_final_look(self) -> bool:
        ins = self.history.inspection
        return self.history.ended and ins is not None and ins.step != self.history.step

    @work(thread=True, exclusive=True, exit_on_error=False, group="inspect")
    def inspect_directly(self, generation: int) -> None:
        try:
            inspection = self.source.inspect()
        finally:
            self._inspect_pending = False
        if inspection is not None:
            self._pending.append((generation, inspection))
            self.wake()

    def show_inspection(self, inspection: Inspection) -> None:
        self._inspect_pending = False
        self._inspect_interval = min(60.0, max(INSPECT_INTERVAL, inspection.seconds / LOOK_BUDGET))
        self.query_one(ParamTable).show(inspection.params, inspection.step, self.history.histories)
        if inspection.predictions is not None:
            panel = self.query_one(PredictionPanel)
            panel.standardized = bool(((self.history.config or {}).get("data") or {}).get("standardize"))
            panel.show(inspection.predictions)
        detail = self.query_one(ParamDetail)
        if detail.display:
            detail.show(inspection)

    def on_data_table_row_selected(self, event: ParamTable.RowSelected) -> None:
        self.open_tensor(str(event.row_key.value))

    def open_tensor(self, name: str) -> None:
        """The drill-down in place of the table: the status line and every key stay."""
        self.query_one("#panels", TabbedContent).active = "params"
        self.query_one(ParamTable).display = False
        self.query_one(ParamDetail).open(name, self.history.inspection, self.history.histories)
        self._inspect_asked = 0.0

    def on_param_detail_closed(self) -> None:
        table = self.query_one(ParamTable)
        table.display = True
        table.focus()
