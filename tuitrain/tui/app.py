"""Provides the Textual application and the factory used by the CLI and the tests."""

from __future__ import annotations

import traceback
from pathlib import Path

from textual.app import App
from textual.command import CommandPalette

from tuitrain.errors import TuitrainError
from tuitrain.store.run_dir import write_crash_log
from tuitrain.tui.screens.branch import OpenBranch, OpenRuns, OpenSetup, WatchRun
from tuitrain.tui.screens.comparison import ComparisonScreen
from tuitrain.tui.screens.dashboard import Dashboard
from tuitrain.tui.screens.palette import Palette
from tuitrain.tui.screens.runs import RunsScreen
from tuitrain.tui.screens.setup import SetupScreen
from tuitrain.tui.source import LiveRun, Source, WatchedRun


class TuitrainApp(App[None]):
    """Opens the setup screen, or a dashboard on a source when one is given."""

    CSS_PATH = "app.tcss"
    TITLE = "tuitrain"
    COMMAND_PALETTE_BINDING = "ctrl+p"

    def __init__(
        self,
        source: Source | None = None,
        preset: str | None = None,
        show_speed: bool = True,
        runs_out: str | None = None,
        compare_dirs: list[str] | None = None,
    ):
        super().__init__()
        self.source = source
        self.preset = preset
        self.runs_out = runs_out  # `tuitrain runs --open`: the runs screen first
        self.compare_dirs = compare_dirs  # `tuitrain train` with comma lists: the race's runs, compared live
        self.show_speed = show_speed
        self.crash: str | None = None  # one line for the shell: what happened, where the traceback is
        self.saving: list[Source] = []  # runs stopped by a crash: the launcher waits for their checkpoints

    def on_mount(self) -> None:
        if self.compare_dirs is not None:
            self.push_screen(ComparisonScreen(self.compare_dirs, f"Race of {len(self.compare_dirs)} runs", race=True))
        elif self.runs_out is not None:
            self.push_screen(RunsScreen(self.runs_out))
        elif self.source is not None:
            self.push_screen(Dashboard(self.source, show_speed=self.show_speed))
        else:
            self.push_screen(SetupScreen(self.preset))

    def on_open_runs(self, message: OpenRuns) -> None:
        self.push_screen(RunsScreen(message.out_dir))

    def on_open_setup(self, message: OpenSetup) -> None:
        """Back to the setup screen beneath the dashboards (kept as it was), or a new one in their place."""
        if any(isinstance(screen, SetupScreen) for screen in self.screen_stack):
            while not isinstance(self.screen, SetupScreen):
                self.pop_screen()
        else:
            self.switch_screen(SetupScreen(message.preset or self.preset))

    def on_watch_run(self, message: WatchRun) -> None:
        self.push_screen(Dashboard(WatchedRun(message.run_dir)))

    def on_open_branch(self, message: OpenBranch) -> None:
        """A branch trains in a dashboard of its own, beside its parent's run directory."""
        spec = message.spec
        try:
            config = spec.config()
        except TuitrainError as exc:
            self.notify(str(exc), severity="error", timeout=6)
            return
        out_dir = str(Path(spec.parent).parent)
        self.push_screen(Dashboard(LiveRun(config, out_dir=out_dir, branch=spec), show_speed=self.show_speed))

    def action_command_palette(self) -> None:
        """ctrl+p: Textual's palette, hardened (see Palette)."""
        if self.use_command_palette and not CommandPalette.is_open(self):  # type: ignore[arg-type]
            self.push_screen(Palette())

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

    def _handle_exception(self, error: Exception) -> None:
        """A bug: stop training (it saves), write the traceback to a log, leave with one line and exit 1."""
        # Textual has no public hook for an unhandled exception: App._handle_exception and
        # App._exit_renderables are private (pinned in constraints.txt, checked by tests/test_private_api.py).
        dashboards = [screen for screen in self.screen_stack if isinstance(screen, Dashboard)]
        run_dir = None
        for dashboard in dashboards:
            controls = dashboard.source.controls
            if controls is not None:
                run_dir = controls.run_dir or run_dir
                if controls.state in ("running", "paused"):
                    controls.stop("interrupted")
                    self.saving.append(dashboard.source)
        log = write_crash_log("".join(traceback.format_exception(error)), run_dir)
        where = f"the traceback is in {log}" if log else "the traceback could not be written"
        saved = "; the run was saved and can be resumed" if run_dir else ""
        self.crash = f"tuitrain stopped on an internal error ({type(error).__name__}: {error}){saved}; {where}"
        super()._handle_exception(error)
        self._exit_renderables.clear()  # the traceback went to the log, not over the user's shell


def make_app(
    source: Source | None = None,
    preset: str | None = None,
    show_speed: bool = True,
    runs_out: str | None = None,
    compare_dirs: list[str] | None = None,
) -> TuitrainApp:
    from tuitrain.runs.remote import prepare

    prepare()  # while stdout/stderr are still the real ones: runs train in child processes
    return TuitrainApp(source, preset, show_speed, runs_out, compare_dirs)
