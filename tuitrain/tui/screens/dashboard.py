"""Provides the live dashboard: charts, status, parameters, predictions and units for one training run."""

from __future__ import annotations

import functools
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from rich.console import Group
from rich.text import Text
from textual import events, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.message import Message
from textual.notifications import SeverityLevel
from textual.screen import Screen
from textual.widgets import Footer, Static, TabbedContent, TabPane, Tabs
from textual.widgets._footer import FooterKey  # what Footer.compose yields (not exported by textual.widgets)
from textual.worker import Worker, WorkerState

from tuitrain.errors import TuitrainError, UsageError
from tuitrain.events import URGENT, Event, HistoryRecord, Inspection, LrFound, RunEnded, RunStarted, StepProgress
from tuitrain.fmt import fmt_result, plural
from tuitrain.training.threads import usable_cpus
from tuitrain.training.vitals import Vitals
from tuitrain.tui import state as ui_state
from tuitrain.tui.controls import BY_NAME, CONTROLS, Control, always, perform, shown
from tuitrain.tui.pacing import FIRST_POINTS, RedrawPacer
from tuitrain.tui.screens import steering as steering_rules
from tuitrain.tui.screens.branch import OpenSetup
from tuitrain.tui.screens.dialogs import Confirm, ConfirmQuit, HelpScreen, KeyRow, key_label, key_rows
from tuitrain.tui.screens.looking import INSPECT_INTERVAL, LOOK_PANELS, LookingInside
from tuitrain.tui.screens.lr_finder import LrFinder
from tuitrain.tui.screens.overlays import Linking
from tuitrain.tui.screens.palette import PaletteCommand, ScreenCommands
from tuitrain.tui.screens.steering import Reply, Steering, typed_number
from tuitrain.tui.screenshot import save_screen
from tuitrain.tui.series import SMOOTHING_LEVELS, RunHistory
from tuitrain.tui.source import Source, as_source
from tuitrain.tui.widgets.charts import EpochChart, LossChart
from tuitrain.tui.widgets.health import HealthBoard
from tuitrain.tui.widgets.overlay import Overlaid
from tuitrain.tui.widgets.param_detail import ParamDetail
from tuitrain.tui.widgets.params import ParamTable
from tuitrain.tui.widgets.predictions import PredictionPanel
from tuitrain.tui.widgets.render import fit_phrases
from tuitrain.tui.widgets.status import StatusLine
from tuitrain.tui.widgets.units import UnitsPanel

VITALS_INTERVAL = 1.0  # seconds between looks at the training process's memory, CPU and pulse
SILENT_WARNING = 5.0  # seconds without a word from the training process before the app says so
PANELS = ("charts", "params", "predictions", "units")
ADVICE = {
    "diverged": "Press R to go on from the last good checkpoint at half the learning rate, or - then r to start over.",
    "failed": "Press r to try again; for out-of-memory use a smaller --batch-size.",
}


def _phrases(text: str, separator: str) -> list[str]:
    """Phrases of a sentence, each keeping its separator's punctuation ("a; b" -> ["a;", "b"])."""
    parts = text.split(separator)
    return [part + separator.rstrip() for part in parts[:-1]] + parts[-1:]


def control_bindings(controls: tuple[Control, ...]) -> list[BindingType]:
    """Each control's binding, then (for one that is not always available) a fallback on the same keys
    that says why the control does nothing now (check_action picks one of the two)."""
    bindings: list[BindingType] = [
        Binding(
            c.keys,
            c.action,
            c.label,
            show=bool(c.label),
            key_display=c.key_display or None,
            priority=c.priority,
            tooltip=c.help,
        )
        for c in controls
    ]
    bindings += [
        Binding(c.keys, f"unavailable('{c.name}')", show=False, priority=c.priority)
        for c in controls
        if c.available is not always
    ]
    return bindings


class FittingFooter(Footer):
    """The footer with as many keys as fit whole before the palette key, in the screen's order of bindings
    (the most needed first), never one cut mid-word; refitted when the width changes."""

    _fitted_width = 0

    def compose(self) -> ComposeResult:
        keys = [item for item in super().compose() if isinstance(item, FooterKey)]
        order = [binding.action for binding in self.screen.BINDINGS if isinstance(binding, Binding)]
        keys.sort(key=lambda key: order.index(key.action) if key.action in order else len(order))  # the table's
        width = self.app.size.width
        self._fitted_width = width
        palette = [key for key in keys if key.has_class("-command-palette")]
        room = width - sum(len(key.key_display) + len(key.description) + 2 for key in palette)  # │^p palette
        for key in keys:
            if key in palette:
                continue
            room -= len(key.key_display) + (len(key.description) + 1 if key.description else 0) + 1  # margin
            if room < -1:  # the last key's margin may go under the palette key
                break
            yield key
        yield from palette

    def on_resize(self, event: events.Resize) -> None:
        if self.app.size.width != self._fitted_width:
            self.call_after_refresh(self.recompose)


class Dashboard(Screen[None]):
    """Folds engine events from a source (live Trainer or watched run) into charts and tables.

    It owns its parts: `steering` (UI-free: what changes the run), `looking` (the inspections behind the
    parameters and predictions panels) and `linking` (other runs: overlays, the runs screen, branching);
    its keys, footer, help and palette come from tuitrain.tui.controls."""

    BINDINGS = control_bindings(CONTROLS)
    COMMANDS = {ScreenCommands}

    @dataclass
    class Wake(Message):
        """Posted from the training thread when an event should be shown without waiting."""

        def can_replace(self, message: Message) -> bool:
            return isinstance(message, Dashboard.Wake)

    class RunUpdated(Message):
        """Posted after buffered events were folded in (tests and other widgets can listen)."""

        def __init__(self, history: RunHistory, count: int):
            super().__init__()
            self.history, self.count = history, count

    def __init__(self, source: Source, show_speed: bool = True):
        super().__init__()
        self.source = as_source(source)
        self.show_speed = show_speed
        self.steering = Steering(self.source, self.fresh_history())  # what changes the run
        self.looking = LookingInside(self, self.steering, self.deliver, lambda: self._generation)
        self.linking = Linking(self, self.steering, lambda: self.draw_charts())  # other runs: overlays, runs, branch
        self._pending: deque[tuple[int, Any]] = deque()
        self._generation = 0
        self._charts_dirty = False
        self.pacer = RedrawPacer()  # chart redraws spaced by what the app's CPU use costs the training
        remembered = ui_state.load()
        self.smoothing_index = max(0, min(remembered["smoothing_index"], len(SMOOTHING_LEVELS) - 1))
        self.log_y = remembered["log_y"]
        self._shown_state = ""
        self._banner: list[str] = []
        self._banner_note = ""  # a diverged run's post-mortem, under the banner's phrases
        self._silence_reported = False
        self.vitals: Vitals | None = None
        self._footer_keys: tuple[bool, ...] | None = None  # what refresh_footer last showed
        self.finder: LrFinder | None = None  # the LR finder's screen while it is open: LrFound events go there

    @property
    def history(self) -> RunHistory:
        """The run on screen (a new one at every start)."""
        return self.steering.history

    @history.setter
    def history(self, history: RunHistory) -> None:
        self.steering.history = history

    @property
    def overlays(self) -> list[Overlaid]:
        return self.linking.overlays

    def compose(self) -> ComposeResult:
        yield StatusLine(id="status", show_speed=self.show_speed)
        yield Static(id="banner")
        with TabbedContent(id="panels", initial="charts"):
            with TabPane("Charts", id="charts"):
                with Horizontal(id="chart-row"):
                    yield LossChart(id="loss-chart")
                    yield EpochChart(id="epoch-chart")
                yield Static(id="overlay-legend")
            with TabPane("Parameters", id="params"):
                yield HealthBoard(id="health-board")
                yield ParamTable(id="param-table")
                yield ParamDetail(id="param-detail")
            with TabPane("Predictions", id="predictions"):
                yield PredictionPanel(id="prediction-panel")
            with TabPane("Units", id="units"):
                yield UnitsPanel(id="units-panel")
        yield FittingFooter(compact=True)

    def on_mount(self) -> None:
        self.query_one(StatusLine).read_only = not self.steering.steerable
        self.query_one("#banner").display = False
        self.query_one("#overlay-legend").display = False
        self.linking.start_polling()
        self._flush_interval = self.pacer.flush_interval
        self._flush_timer = self.set_interval(self._flush_interval, self.flush)
        # asks only while a look-inside panel is shown: a timer that fires for nothing still wakes the app
        self._inspect_timer = self.set_interval(INSPECT_INTERVAL / 3, self.looking.maybe_inspect, pause=True)
        self.set_interval(VITALS_INTERVAL, self.check_vitals)
        self.start_run()

    def fresh_history(self) -> RunHistory:
        """What the status line can say before the run's start event (or when it fails before one)."""
        config = self.source.config
        lr = config.train.lr if config is not None else 0.0
        return RunHistory(preset=self.source.title, lr=lr)

    # ------------------------------------------------------------------ events in
    def start_run(self) -> None:
        self._generation += 1
        generation = self._generation
        self.history = self.fresh_history()
        self.looking.pending = False
        self._banner, self._banner_note = [], ""
        self.query_one("#banner").display = False

        early_left = FIRST_POINTS

        def sink(event: Event) -> None:  # runs in the training thread: keep it cheap
            nonlocal early_left
            self._pending.append((generation, event))
            early = early_left > 0 and isinstance(event, StepProgress)  # drawn at once, not at the next flush
            early_left -= 1 if early else 0
            if isinstance(event, URGENT) or early:
                try:
                    self.post_message(self.Wake())
                except RuntimeError:  # the app is closing
                    pass

        self._charts_dirty = True
        self.follow_source(sink)
        self.query_one(StatusLine).show(self.history)  # STARTING at once, not the last run's end
        self._shown_state = self.history.state
        self.refresh_footer()
        if self.query_one("#panels", TabbedContent).active == "charts":
            self.draw_charts()

    @work(thread=True, exclusive=True, exit_on_error=False, group="training")
    def follow_source(self, sink: Any) -> None:
        self.source.follow(sink)

    def deliver(self, generation: int, event: Event) -> None:
        """An event from another thread than the run's (an inspection), shown now."""
        self._pending.append((generation, event))
        self.post_message(self.Wake())

    def on_dashboard_wake(self, message: Wake) -> None:
        self.flush()

    def flush(self) -> None:
        """Fold buffered events into the history; redraw what changed (charts at most 4x/s)."""
        count = 0
        charted = False
        inspection = None
        recorded = False
        points_before = len(self.history.train_loss)
        while self._pending:
            generation, event = self._pending.popleft()
            if generation != self._generation:
                continue
            count += 1
            if isinstance(event, Inspection) and event.units is not None:  # the Units panel's: no params
                self.history.step = max(self.history.step, event.step)
                inspection = event
                continue
            self.history.add(event)
            if isinstance(event, Inspection):
                inspection = event
                continue
            if isinstance(event, HistoryRecord):
                recorded = True
                continue
            if isinstance(event, LrFound):
                if self.finder is not None:
                    self.finder.show(event)
                continue
            if isinstance(event, RunStarted) and event.threads:
                self.pacer.set_cores(event.threads * event.world_size, usable_cpus())
                self.pace_flushes()
            if isinstance(event, RunStarted) and event.start_epoch and event.run_dir and self.steering.steerable:
                recorded = self.history.histories.load(event.run_dir) or recorded  # recovered: earlier steps too
            charted = True
            if isinstance(event, RunEnded):
                self.show_end(event)
        if charted:
            self._charts_dirty = True
        # the first few points are shown as they come (a line needs two): the wait is over at once
        first_point = points_before < FIRST_POINTS and len(self.history.train_loss) > points_before
        if count:
            changed = self.history.state != self._shown_state
            if changed:
                self._shown_state = self.history.state
                self.refresh_footer()  # the footer shows the keys that work in this state
            if changed or first_point or self.pacer.status_due(time.monotonic()):
                self.query_one(StatusLine).show(self.history)
            self.post_message(self.RunUpdated(self.history, count))
        if inspection is not None:
            self.looking.show(inspection)
        detail = self.query_one(ParamDetail)
        if recorded and detail.display:
            detail.show_history(self.history.histories)
        if recorded and self.query_one("#panels", TabbedContent).active == "params":
            self.looking.show_health()
        now = time.monotonic()
        self.pacer.account(now, self.history.state == "running")
        if self._charts_dirty and (self.pacer.due(now) or self.history.ended or first_point):
            self._charts_dirty = False
            self.pacer.drawn(now)
            if self.query_one("#panels", TabbedContent).active == "charts":
                self.draw_charts()

    def pace_flushes(self) -> None:
        """Flush less often while the run trains on every core (the pacer's interval)."""
        if self.pacer.flush_interval != self._flush_interval:
            self._flush_interval = self.pacer.flush_interval
            self._flush_timer.stop()
            self._flush_timer = self.set_interval(self._flush_interval, self.flush)

    def draw_charts(self) -> None:
        smoothing = SMOOTHING_LEVELS[self.smoothing_index]
        loss, epoch = self.linking.lines(accuracy=not self.history.regression)
        self.query_one(LossChart).draw(self.history, smoothing, self.log_y, loss)
        self.query_one(EpochChart).draw(self.history, self.log_y, epoch)

    def show_end(self, event: RunEnded) -> None:
        h = self.history
        banner = self.query_one("#banner", Static)
        if event.status in ("completed", "stopped", "interrupted"):
            test = f"test {fmt_result(event.test)}" if event.test is not None else ""
            keys = self.end_keys()
            self._banner_note = ""
            self._banner = [
                f"Run {h.state} after {plural(event.epoch, 'epoch')} ({plural(event.step, 'step')}).",
                test,
                keys,
            ]
            banner.set_class(False, "error")
        else:
            advice = ADVICE.get(event.status, "") if self.steering.steerable else ""
            from tuitrain.training.postmortem import describe_diagnosis  # no torch

            self._banner = [
                f"Run {event.status}:",
                *_phrases(event.message or "see the log", "; "),
                *_phrases(advice, ", "),
            ]
            self._banner_note = describe_diagnosis(event.diagnosis)  # a paragraph, wrapped at words
            banner.set_class(True, "error")
            self.notify(event.message or event.status, title=f"Run {event.status}", severity="error", timeout=8)
        self.fit_banner()
        banner.display = True
        self.looking.soon()  # refresh the look-inside panels once from the final weights
        if isinstance(self.app.screen, ConfirmQuit):
            self.app.screen.run_ended("stopped" if event.status == "interrupted" else event.status)

    def end_keys(self) -> str:
        """What the keys can do once a run has ended: again, branch from it, compare it, quit."""
        keys = ["r: restart"] if self.steering.steerable else []
        if self.steering.run_dir() is not None:
            keys.append("b: branch")
        keys += ["o: overlay", "v: runs", "q: quit"]
        return "  ".join(keys)

    def fit_banner(self, width: int | None = None) -> None:
        """The end banner, broken only between phrases (refitted when the terminal is resized)."""
        if self._banner:
            banner = self.query_one("#banner", Static)
            room = width if width is not None else banner.content_size.width or self.size.width - 2
            phrases = fit_phrases([p for p in self._banner if p], room)
            if self._banner_note:
                phrases.end = "\n"  # the paragraph starts on a line of its own
            banner.update(Group(phrases, Text(self._banner_note)) if self._banner_note else phrases)

    def on_resize(self, event: events.Resize) -> None:
        # the banner's own width is still the old one here: it spans the screen less its padding
        self.fit_banner(max(10, event.size.width - 2))

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state != WorkerState.ERROR or event.worker.group not in ("training", "inspect"):
            return
        error = event.worker.error
        if event.worker.group == "inspect":
            self.notify(str(error), title="Cannot look inside", severity="warning", timeout=6)
            return
        self.history.state = "failed"
        self.query_one(StatusLine).show(self.history)
        banner = self.query_one("#banner", Static)
        what = str(error) if isinstance(error, TuitrainError) else f"{type(error).__name__}: {error}"
        self._banner = ["Training failed:", *_phrases(what, "; "), "Press r to try again, or q to quit."]
        self.fit_banner()
        banner.set_class(True, "error")
        banner.display = True
        self.notify(str(error), title="Training failed", severity="error", timeout=8)

    def check_vitals(self) -> None:
        """Show the training process's memory and CPU; say so when it stops answering."""
        controls = self.steering.controls
        vitals = controls.vitals() if controls is not None and self.steering.training() else None
        self.vitals = vitals
        self.query_one(StatusLine).show_vitals(vitals)
        silent = vitals is not None and vitals.silent_seconds >= SILENT_WARNING
        if vitals is not None and silent and not self._silence_reported:
            self.notify(
                f"The training process has not answered for {vitals.silent_seconds:.0f} s (busy or hung). "
                "q quits; its last checkpoint stays on disk.",
                title="Not answering",
                severity="warning",
                timeout=10,
            )
        self._silence_reported = silent

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        pane = event.pane.id
        if pane == "charts":
            # nothing there takes focus: a table left focused in the hidden Parameters pane would pull it
            # back into view at its next update (the health board's, within a second); the tab bar has it
            self.query_one("#panels", TabbedContent).query_one(Tabs).focus()
            self.draw_charts()
        elif pane == "params":
            self.looking.show_health()
            detail, board = self.query_one(ParamDetail), self.query_one(HealthBoard)
            (detail if detail.display else board if board.row_count else self.query_one(ParamTable)).focus()
        elif pane == "predictions":
            self.query_one(PredictionPanel).focus()
        elif pane == "units":
            self.query_one(UnitsPanel).focus()
        if pane in LOOK_PANELS:
            self._inspect_timer.resume()
        else:
            self._inspect_timer.pause()
        self.looking.soon()
        self.looking.maybe_inspect()

    # ------------------------------------------------------------------ views
    def action_log_y(self) -> None:
        self.log_y = not self.log_y
        ui_state.remember(log_y=self.log_y)
        self.draw_charts()

    def action_smoothing(self, delta: int) -> None:
        self.smoothing_index = max(0, min(len(SMOOTHING_LEVELS) - 1, self.smoothing_index + delta))
        ui_state.remember(smoothing_index=self.smoothing_index)
        self.draw_charts()

    def action_panel(self, delta: int) -> None:
        panels = self.query_one("#panels", TabbedContent)
        panels.active = PANELS[(PANELS.index(panels.active) + delta) % len(PANELS)]

    def action_show_panel(self, panel: str) -> None:
        self.query_one("#panels", TabbedContent).active = panel

    def action_screenshot(self) -> None:
        """The screen as SVG in the run directory (before it has one: the runs folder), named by the panel."""
        folder = self.steering.run_dir() or self.steering.source.out_dir
        panel = self.query_one("#panels", TabbedContent).active or "screen"
        try:
            path = save_screen(self.app, folder, panel)
        except (OSError, UsageError) as exc:
            self.notify(f"cannot save the screen: {exc}", severity="error", timeout=6)
            return
        self.notify(f"saved {path}", title="Screen as SVG", timeout=6)

    @classmethod
    def key_rows(cls) -> list[KeyRow]:
        """Every key of the dashboard, its panels and the tensor drill-down (the help and README's table)."""
        return [
            *key_rows(cls.BINDINGS),
            ("enter", "(parameters) open the selected tensor"),
            *key_rows(ParamDetail.BINDINGS, "tensor"),
            *key_rows(PredictionPanel.BINDINGS, "predictions"),
            *key_rows(UnitsPanel.BINDINGS, "units"),
            ("ctrl+p", "command palette: every action by name, e.g. a learning rate to type"),
            ("ctrl+q", "quit (asks first while training)"),
        ]

    def action_help(self) -> None:
        self.app.push_screen(HelpScreen(self.key_rows(), "Dashboard keys"))

    # ------------------------------------------------------------------ controls (tuitrain.tui.controls)
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "control":  # shown (and working) or, when it does nothing now, ...
            return shown(BY_NAME[str(parameters[0])], self.steering)
        if action == "unavailable":  # ... its fallback on the same keys, which says why
            return not shown(BY_NAME[str(parameters[0])], self.steering)
        return True

    def refresh_footer(self) -> None:
        """`refresh_bindings`, when a control's key changed: the footer's refresh lays out the whole screen."""
        keys = tuple(shown(control, self.steering) for control in CONTROLS if control.available is not always)
        if keys != self._footer_keys:
            self._footer_keys = keys
            self.refresh_bindings()

    async def action_control(self, name: str) -> None:
        """A control's key or palette entry: its call, or a toast saying why it does nothing now."""
        control = BY_NAME[name]
        if control.steer is None and control.available(self.steering) is None:
            await self.run_action(control.view)
        else:
            self.tell(perform(control, self.steering))

    def action_unavailable(self, name: str) -> None:
        self.notify(BY_NAME[name].available(self.steering) or "not available now", timeout=3)

    def tell(self, reply: Reply) -> None:
        """Show what a steering call answered, and do what it asks next."""
        question = reply.ask
        if question is not None:

            def answer(yes: bool | None) -> None:
                if yes:
                    self.tell(question.then())

            self.app.push_screen(Confirm(question.text, question.yes, question.no), answer)
        if reply.text:
            severity: SeverityLevel = "error" if reply.error else "information"
            self.notify(reply.text, title=reply.title, severity=severity, timeout=reply.timeout)
        if reply.start:
            self.start_run()
        else:
            self.query_one(StatusLine).show(self.history)  # a learning rate for the next start, say

    def palette_commands(self, query: str) -> list[PaletteCommand]:
        """Every control by name for the command palette (ctrl+p); a typed number sets the learning rate."""
        steerable = self.steering.steerable
        offered = [
            (c, binding)
            for c, binding in zip(
                CONTROLS, self.BINDINGS[: len(CONTROLS)], strict=True
            )  # each control's own binding first
            if c.palette and isinstance(binding, Binding) and (steerable or c.steer is None)
        ]
        offered.sort(key=lambda pair: (pair[0].steer is not None, bool(pair[0].label)))  # the footer's last
        commands = [
            PaletteCommand(c.palette, key_label(b), functools.partial(self.action_control, c.name)) for c, b in offered
        ]
        typed = typed_number(query) if steerable else None
        if typed is not None:
            lr: float = typed
            commands.insert(
                0,
                PaletteCommand(
                    f"Set learning rate to {lr:g}",
                    "live while training; else for the next start",
                    lambda: self.tell(self.steering.set_lr(lr)),
                ),
            )
        commands.append(
            PaletteCommand(
                "Export the epochs as CSV (RUN_DIR/epochs.csv)",
                "for a spreadsheet or pandas",
                lambda: self.tell(self.steering.export_csv()),
            )
        )
        inspection = self.history.inspection
        for param in inspection.params if inspection is not None else []:
            commands.append(
                PaletteCommand(
                    f"Open tensor {param.name}",
                    "histogram, heatmap and history",
                    functools.partial(self.looking.open_tensor, param.name),
                )
            )
        return commands

    def action_lr_find(self) -> None:
        """f: the LR range test from the paused weights, on a copy; enter on its curve sets the rate on the run."""
        controls = self.steering.controls
        if controls is None:
            return
        finder = self.finder = LrFinder(self.history.step, controls.lr)

        def chosen(lr: float | None) -> None:
            self.finder = None
            if lr is not None:
                self.tell(self.steering.set_lr(lr))
            elif not finder.finished:
                controls.cancel_find_lr()

        self.app.push_screen(finder, chosen)
        controls.find_lr()

    def action_overlay(self) -> None:
        self.linking.overlay()

    def action_runs(self) -> None:
        self.linking.runs()

    def action_branch(self) -> None:
        self.linking.branch()

    def on_data_table_row_selected(self, event: ParamTable.RowSelected) -> None:
        self.looking.open_tensor(str(event.row_key.value))

    def on_health_board_layer_chosen(self, message: HealthBoard.LayerChosen) -> None:
        """Enter on a layer: its first tensor's drill-down (the others are a row away in the table)."""
        if message.tensors:
            self.looking.open_tensor(message.tensors[0])

    def on_units_panel_sample_changed(self, message: UnitsPanel.SampleChanged) -> None:
        """, or . on the Units panel (or a sample chosen elsewhere): ask for that sample now."""
        self.looking.soon()
        self.looking.maybe_inspect()

    def on_prediction_panel_sample_chosen(self, message: PredictionPanel.SampleChosen) -> None:
        """A test sample chosen on the predictions panel is the one the Units panel steps through."""
        self.query_one(UnitsPanel).set_sample(message.sample)

    def on_param_detail_closed(self) -> None:
        self.looking.close_tensor()

    def action_quit_run(self) -> None:
        if self.steering.live():

            def answer(quit_now: bool | None) -> None:
                if quit_now:
                    self.shutdown()

            self.app.push_screen(ConfirmQuit(), answer)
        else:
            self.shutdown()

    def action_setup(self) -> None:
        """N: back to the setup screen for a new run; a run still training is stopped and saved first."""
        if not self.steering.live():
            self.leave_for_setup()
            return
        state = "paused" if self.history.state == "paused" else "running"
        question = f"Training is {state}. Save a checkpoint and go back to the setup screen?"

        def answer(yes: bool | None) -> None:
            if yes:
                self.leave_for_setup()

        self.app.push_screen(Confirm(question, "Stop and go", "Stay"), answer)

    def leave_for_setup(self) -> None:
        controls = self.steering.controls
        if controls is not None and self.steering.training():
            controls.stop("interrupted")
            self.notify("saving a checkpoint …", timeout=10)
        self.wait_then_setup()

    @work(thread=True, exclusive=True, exit_on_error=False, group="shutdown")
    def wait_then_setup(self) -> None:
        saved = self.source.wait(steering_rules.SAVE_WAIT)
        self.source.close()
        config = self.source.config
        self.app.call_from_thread(self.app.post_message, OpenSetup(config.name if config is not None else None))
        if not saved:
            run_dir = self.steering.run_dir()
            where = f"; `tuitrain run --resume {run_dir}` continues from its last checkpoint" if run_dir else ""
            self.app.call_from_thread(self.notify, f"the run had not finished saving{where}", severity="warning")

    def shutdown(self) -> None:
        """Stop the run and leave once its checkpoint and summary are written (waiting off the UI thread)."""
        controls = self.steering.controls
        if controls is not None and self.steering.training():
            controls.stop("interrupted")
            self.notify("saving a checkpoint before quitting …", timeout=10)
        self.wait_then_exit()

    @work(thread=True, exclusive=True, exit_on_error=False, group="shutdown")
    def wait_then_exit(self) -> None:
        steering = self.steering
        wait = steering_rules.SAVE_WAIT
        deadline = time.monotonic() + wait
        stopped = steering.controls if steering.training() else None  # shutdown() has stopped these
        saved = False
        while not saved and time.monotonic() < deadline:
            controls = steering.controls
            if controls is not None and controls is not stopped and controls.state in ("running", "paused"):
                controls.stop("interrupted")  # a restart in flight when quit was pressed: it saves too
                stopped = controls
            saved = self.source.wait(0.2)
        self.source.close()
        if saved:
            self.app.call_from_thread(self.app.exit, None, 0)
            return
        controls = steering.controls
        run_dir = controls.run_dir if controls is not None else None
        where = f"; `tuitrain run --resume {run_dir}` continues from its last checkpoint" if run_dir else ""
        message = f"tuitrain: quit before the run had finished saving (waited {wait:.0f} s){where}"
        self.app.call_from_thread(self.app.exit, None, 1, message)

    def on_unmount(self) -> None:
        controls = self.steering.controls
        if controls is not None and self.steering.training():
            controls.stop("interrupted")  # however the app ends, training must not outlive it unsaved
        self.source.close()
