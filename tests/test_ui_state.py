"""Remembered UI choices in $XDG_STATE_HOME: the last preset, smoothing, log scale, output folder."""

from __future__ import annotations

import json
import os
from pathlib import Path

from conftest import TINY
from helpers import ReplaySource, recorded_events, until
from textual.widgets import OptionList

from tuitrain.tui import state as ui_state
from tuitrain.tui.app import make_app
from tuitrain.tui.screens.setup import SetupScreen


def test_damaged_or_foreign_state_gives_the_defaults() -> None:
    path = ui_state.state_file()
    assert path.is_relative_to(Path(os.environ["XDG_STATE_HOME"]))
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    assert ui_state.load() == ui_state.DEFAULTS
    path.write_text(json.dumps({"log_y": "yes", "smoothing_index": 1, "preset": 3}))
    assert ui_state.load() == {**ui_state.DEFAULTS, "smoothing_index": 1}  # wrong types ignored
    ui_state.remember(log_y=True)
    assert ui_state.load()["log_y"] is True and ui_state.load()["smoothing_index"] == 1


async def test_the_setup_screen_opens_on_the_last_preset() -> None:
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, SetupScreen), what="setup screen")
        presets = app.screen.query_one("#presets", OptionList)
        presets.focus()
        presets.highlighted = list(app.screen.presets).index("wave")
        await until(pilot, lambda: app.screen.preset == "wave", what="wave picked")
    again = make_app()
    async with again.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: isinstance(again.screen, SetupScreen), what="setup screen")
        assert again.screen.preset == "wave"
        assert again.screen.query_one("#presets", OptionList).highlighted == list(again.screen.presets).index("wave")


async def test_log_scale_and_smoothing_survive_a_restart() -> None:
    events = recorded_events(TINY, epochs=1)  # a run's events, replayed: the choices are the app's, not the run's
    source = ReplaySource(events)
    app = make_app(source)
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: app.screen.history.step > 0, what="training")
        await pilot.press("l", "[")
        assert app.screen.log_y and app.screen.smoothing_index == 1
    source.close()
    source = ReplaySource(events)
    again = make_app(source)
    async with again.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: hasattr(again.screen, "log_y"), what="dashboard")
        assert again.screen.log_y and again.screen.smoothing_index == 1
    source.close()
