"""Provides the dashboard's look inside a run: the parameter table, a tensor's drill-down, predictions."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable

from textual.screen import Screen
from textual.widgets import TabbedContent

from tuitrain.events import Inspection
from tuitrain.store.health import layer_health
from tuitrain.tui.screens.steering import Steering
from tuitrain.tui.widgets.health import HealthBoard
from tuitrain.tui.widgets.param_detail import ParamDetail
from tuitrain.tui.widgets.params import ParamTable
from tuitrain.tui.widgets.predictions import PredictionPanel

INSPECT_INTERVAL = 0.75  # seconds between inspection requests while a look-inside panel is visible ...
LOOK_BUDGET = 0.03  # ... and never more than this share of the training process's time (measured cost)


class LookingInside:
    """A dashboard's inspections: asked for only while someone looks, at a measured cost.

    `screen` is the dashboard (its panels and widgets); `deliver(generation, inspection)` hands an
    inspection made here to the dashboard's events of that run, `generation()` names the run on screen."""

    def __init__(
        self,
        screen: Screen[None],
        steering: Steering,
        deliver: Callable[[int, Inspection], None],
        generation: Callable[[], int],
    ) -> None:
        self.screen, self.steering = screen, steering
        self.deliver, self.generation = deliver, generation
        self.pending = False  # an inspection was asked for and has not come yet
        self.asked = 0.0  # when (monotonic seconds)
        self.interval = INSPECT_INTERVAL  # seconds between asks: more when inspections cost more
        self.health_version = -1  # the histories' version the health board shows

    def soon(self) -> None:
        """Look again at the next chance (a panel was opened, the run ended)."""
        self.asked = 0.0

    def looking(self) -> bool:
        if self.screen.app.screen is not self.screen:
            return False
        return self.screen.query_one("#panels", TabbedContent).active in ("params", "predictions")

    def maybe_inspect(self) -> None:
        """Ask for an Inspection only while someone looks at parameters or predictions."""
        now = time.monotonic()
        if not self.looking() or now - self.asked < self.interval:
            return
        if self.pending and now - self.asked < 5:
            return
        self.asked = now
        steering, history = self.steering, self.steering.history
        controls = steering.controls
        if controls is not None and history.state in ("running", "paused") and steering.training():
            self.pending = True
            controls.request_inspection()
        elif not steering.steerable or (history.ended and (history.inspection is None or self._needs_final_look())):
            self.pending = True
            self.screen.run_worker(
                functools.partial(self.inspect_directly, self.generation()),
                thread=True,
                exclusive=True,
                exit_on_error=False,
                group="inspect",
            )

    def _needs_final_look(self) -> bool:
        history = self.steering.history
        ins = history.inspection
        return history.ended and ins is not None and ins.step != history.step

    def inspect_directly(self, generation: int) -> None:
        """In a worker thread: the source's own look (a finished or watched run)."""
        try:
            inspection = self.steering.source.inspect()
        finally:
            self.pending = False
        if inspection is not None:
            self.deliver(generation, inspection)

    def show(self, inspection: Inspection) -> None:
        self.pending = False
        self.interval = min(60.0, max(INSPECT_INTERVAL, inspection.seconds / LOOK_BUDGET))
        history, screen = self.steering.history, self.screen
        screen.query_one(ParamTable).show(inspection.params, inspection.step, history.histories)
        if inspection.predictions is not None:
            panel = screen.query_one(PredictionPanel)
            panel.standardized = bool(((history.config or {}).get("data") or {}).get("standardize"))
            panel.show(inspection.predictions)
        detail = screen.query_one(ParamDetail)
        if detail.display:
            detail.show(inspection)

    def show_health(self) -> None:
        """The layer health board from the recorded histories, when they have changed since it was drawn."""
        history = self.steering.history
        if history.histories.version == self.health_version:
            return
        self.health_version = history.histories.version
        activation = ((history.config or {}).get("model") or {}).get("activation")
        try:
            health = layer_health(history.histories.records, None, activation)
        except LookupError:  # nothing recorded yet (or a run without histories)
            return
        self.screen.query_one(HealthBoard).show(health)

    def open_tensor(self, name: str) -> None:
        """The drill-down in place of the table: the status line and every key stay."""
        history, screen = self.steering.history, self.screen
        screen.query_one("#panels", TabbedContent).active = "params"
        screen.query_one(ParamTable).display = False
        screen.query_one(HealthBoard).display = False
        screen.query_one(ParamDetail).open(name, history.inspection, history.histories)
        self.soon()

    def close_tensor(self) -> None:
        table = self.screen.query_one(ParamTable)
        table.display = True
        board = self.screen.query_one(HealthBoard)
        board.display = True
        (board if board.row_count else table).focus()
