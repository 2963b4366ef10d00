"""Provides the dashboard's look inside a run: the parameter table, a tensor's drill-down, predictions, units."""

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
from tuitrain.tui.widgets.units import UnitsPanel

INSPECT_INTERVAL = 0.75  # seconds between inspection requests while a look-inside panel is visible ...
LOOK_BUDGET = 0.03  # ... and never more than this share of the training process's time (measured cost)
DRAW_BUDGET = 0.05  # the Units panel's redraw (200 maps) may take this share of the app's core, measured
LOOK_PANELS = ("params", "predictions", "units")


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
        self.units_shown: tuple[int, int] | None = None  # (step, sample) of the units on the Units panel

    def soon(self) -> None:
        """Look again at the next chance (a panel was opened, the run ended)."""
        self.asked = 0.0

    def looking(self) -> bool:
        if self.screen.app.screen is not self.screen:
            return False
        return self.screen.query_one("#panels", TabbedContent).active in LOOK_PANELS

    def asking_units(self) -> tuple[bool, int]:
        """Whether the Units panel is the one shown (then the inspection is of units only), and its sample."""
        units = self.screen.query_one("#panels", TabbedContent).active == "units"
        return units, self.screen.query_one(UnitsPanel).sample

    def maybe_inspect(self) -> None:
        """Ask for an Inspection only while someone looks at parameters, predictions or units."""
        now = time.monotonic()
        if not self.looking() or now - self.asked < self.interval:
            return
        if self.pending and now - self.asked < 5:
            return
        self.asked = now
        steering, history = self.steering, self.steering.history
        controls = steering.controls
        units, sample = self.asking_units()
        if controls is not None and history.state in ("running", "paused") and steering.training():
            self.pending = True
            controls.request_inspection(units=units, sample=sample)
        elif not steering.steerable or (history.ended and self._needs_final_look(units, sample)):
            self.pending = True
            self.screen.run_worker(
                functools.partial(self.inspect_directly, self.generation(), units, sample),
                thread=True,
                exclusive=True,
                exit_on_error=False,
                group="inspect",
            )

    def _needs_final_look(self, units: bool = False, sample: int = 0) -> bool:
        """An ended run: one look from its final weights (for the units: per sample)."""
        history = self.steering.history
        if units:
            return self.units_shown != (history.step, sample)
        ins = history.inspection
        return ins is None or ins.step != history.step

    def inspect_directly(self, generation: int, units: bool = False, sample: int = 0) -> None:
        """In a worker thread: the source's own look (a finished or watched run)."""
        try:
            inspection = self.steering.source.inspect(units=units, sample=sample)
        finally:
            self.pending = False
        if inspection is not None:
            self.deliver(generation, inspection)

    def show(self, inspection: Inspection) -> None:
        self.pending = False
        self.interval = min(60.0, max(INSPECT_INTERVAL, inspection.seconds / LOOK_BUDGET))
        history, screen = self.steering.history, self.screen
        if inspection.units is not None:
            self.show_units(inspection)
            return
        screen.query_one(ParamTable).show(inspection.params, inspection.step, history.histories)
        if inspection.predictions is not None:
            panel = screen.query_one(PredictionPanel)
            panel.standardized = bool(((history.config or {}).get("data") or {}).get("standardize"))
            panel.show(inspection.predictions)
        detail = screen.query_one(ParamDetail)
        if detail.display:
            detail.show(inspection)

    def show_units(self, inspection: Inspection) -> None:
        """The Units panel: live or paused while the run trains, else as of the inspected epoch."""
        steering, history = self.steering, self.steering.history
        panel = self.screen.query_one(UnitsPanel)
        predictions = history.inspection.predictions if history.inspection is not None else None
        if predictions is not None:
            panel.class_names = list(predictions.class_names)
            true = getattr(predictions, "confusion_true", None)
            panel.sample_count = len(true) if true is not None else panel.sample_count
        training = steering.steerable and history.state in ("running", "paused") and not history.ended
        when = ("paused" if history.state == "paused" else "live") if training else f"as of epoch {inspection.epoch}"
        units = inspection.units
        assert units is not None
        features = units.features
        self.units_shown = (inspection.step, features.sample if features is not None else panel.sample)
        start = time.perf_counter()
        panel.show(units, when)
        drawn = time.perf_counter() - start  # on 2 busy cores a 7 ms grid can take 100 ms: ask less often then
        self.interval = min(60.0, max(self.interval, drawn / DRAW_BUDGET))

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
