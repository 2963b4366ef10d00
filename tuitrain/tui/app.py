"""Provides the Textual application and the factory used by the CLI and the tests."""

from __future__ import annotations

from typing import Any

from textual.app import App

from tuitrain.tui.screens.dashboard import Dashboard
from tuitrain.tui.screens.setup import SetupScreen


class TuitrainApp(App):
    """Opens the setup screen, or a dashboard on a source when one is given."""

    CSS_PATH = "app.tcss"
    TITLE = "tuitrain"
    ENABLE_COMMAND_PALETTE = False

    def __init__(self, source: Any = None, preset: str | None = None, show_speed: bool = True):
        super().__init__()
        self.source = source
        self.preset = preset
        self.show_speed = show_speed

    def on_mount(self) -> None:
        if self.source is not None:
            self.push_screen(Dashboard(self.source, show_speed=self.show_speed))
        else:
            self.push_screen(SetupScreen(self.preset))

    async def action_quit(self) -> None:
        """ctrl+q goes through the dashboard's confirmation while a run is training."""
        dashboards = [screen for screen in self.screen_stack if isinstance(screen, Dashboard)]
        if dashboards and self.screen is dashboards[-1]:
            dashboards[-1].action_quit_run()
        else:
            for dashboard in dashboards:
                dashboard.shutdown()
            if not dashboards:
                self.exit()


def make_app(source: Any = None, preset: str | None = None, show_speed: bool = True) -> TuitrainApp:
    from tuitrain.remote import prepare

    prepare()  # while stdout/stderr are still the real ones: runs train in child processes
    return TuitrainApp(source, preset, show_speed)
