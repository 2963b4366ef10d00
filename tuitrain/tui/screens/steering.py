"""Provides the dashboard's steering: pause, step, learning rate, stop, restart and quit, by key or command."""

from __future__ import annotations

import functools
import math
import re
import time

from textual import work
from textual.screen import Screen

from tuitrain.config import apply_overrides
from tuitrain.errors import TuitrainError
from tuitrain.training.control import RunControl
from tuitrain.tui.screens.dialogs import Confirm, ConfirmQuit
from tuitrain.tui.screens.palette import Command, ScreenCommands
from tuitrain.tui.series import RunHistory
from tuitrain.tui.source import LiveRun, Source
from tuitrain.tui.widgets.status import StatusLine

SAVE_WAIT = 15.0  # seconds quitting waits for the run to save before leaving anyway (exit 1)


def typed_number(query: str) -> float | None:
    """0.05, "lr 0.05", "learning rate = 1e-3" → the number; anything else → None."""
    match = re.fullmatch(
        r"\s*(?:(?:set\s+)?(?:lr|learning\s*rate)\s*(?:to|=)?\s*)?([-+]?(?:\d+\.?\d*|\.\d+)(?:e[-+]?\d+)?)\s*",
        query,
        re.IGNORECASE,
    )
    return float(match.group(1)) if match else None


class Steering(Screen[None]):
    """The Dashboard's base: everything that changes the run rather than the view."""

    COMMANDS = {ScreenCommands}
    source: Source
    history: RunHistory

    def start_run(self) -> None:
        """Follow a new run from the start (the Dashboard fills this in)."""
        raise NotImplementedError

    @property
    def steerable(self) -> bool:
        """A run this dashboard started (not one it only watches)."""
        return isinstance(self.source, LiveRun)

    def controls(self) -> RunControl | None:
        return self.source.controls

    STEERING = ("toggle_pause", "step", "lr", "stop", "restart", "recover")
    # In the footer while the run starts as they will be once it trains (a press meanwhile says why
    # it waits): a footer that changed as training began would lay out the whole screen just then.
    SHOWN_WHILE_STARTING = ("toggle_pause", "stop", "restart")
    _footer_keys: tuple[bool | None, ...] | None = None  # what refresh_footer last showed

    def refused(self, action: str) -> bool:
        """Say why `action` does nothing now, if it does nothing (see SHOWN_WHILE_STARTING)."""
        reason = self.unavailable_reason(action)
        if reason is not None:
            self.notify(reason, timeout=3)
        return reason is not None

    def unavailable_reason(self, action: str) -> str | None:
        """Why a steering key does nothing right now (None: it works)."""
        if not self.steerable:
            return "a watched run is steered by its own process (read-only here)"
        h, running = self.history, self.training()
        if action in ("toggle_pause", "stop", "step") and h.ended:
            return f"the run has ended ({h.state}); r starts it again"
        if action in ("toggle_pause", "stop", "step") and not running:
            return "the run is still starting"
        if action == "restart" and h.state == "starting":  # a second start would queue behind this one, unseen
            return "the run is still starting"
        if action == "recover" and h.state != "diverged":
            return "R goes back to the last good checkpoint after a divergence (NaN loss); this run has not diverged"
        if action == "step" and h.state != "paused":
            return "n steps once while paused: press space first"
        return None

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in self.SHOWN_WHILE_STARTING and self.steerable and self.history.state == "starting":
            return True
        if action in self.STEERING:
            return self.unavailable_reason(action) is None
        if action == "unavailable":  # the fallback for a key whose action does nothing now
            return self.unavailable_reason(str(parameters[0])) is not None
        return True

    def refresh_footer(self) -> None:
        """`refresh_bindings`, when a steering key changed: the footer's refresh lays out the whole screen."""
        keys = tuple(self.check_action(action, ()) for action in self.STEERING)
        if keys != self._footer_keys:
            self._footer_keys = keys
            self.refresh_bindings()

    def action_unavailable(self, action: str) -> None:
        self.notify(self.unavailable_reason(action) or "not available now", timeout=3)

    def training(self) -> bool:
        controls = self.controls()
        return controls is not None and controls.state in ("running", "paused")

    def action_toggle_pause(self) -> None:
        controls = self.controls()
        if self.refused("toggle_pause") or controls is None:
            return
        if self.history.state == "paused":
            controls.resume()
        else:
            controls.pause()

    def action_step(self) -> None:
        controls = self.controls()
        if controls is not None:
            controls.step_once()

    def action_lr(self, factor: float) -> None:
        controls = self.controls()
        if self.history.ended or controls is None or not self.training():  # settings of the next start
            train = self.source.config.train if isinstance(self.source, LiveRun) else None
            if train is not None:
                train.lr *= factor
                self.history.lr = train.lr
                self.query_one(StatusLine).show(self.history)
                self.notify(f"r restarts with learning rate {train.lr:.4g}", timeout=3)
            return
        lr = controls.lr * factor
        controls.set_lr(lr)
        self.notify(f"learning rate → {lr:.4g}", timeout=2)

    def action_stop(self) -> None:
        controls = self.controls()
        if not self.refused("stop") and controls is not None:
            controls.stop("interrupted")  # like Ctrl-C headless: checkpoint saved, resumable

    def action_restart(self) -> None:
        """Start again with the same settings; while training, ask first (the run is saved, resumable)."""
        if self.refused("restart"):
            return
        if not (self.training() and not self.history.ended):
            self.start_run()
            return

        def answer(yes: bool | None) -> None:
            if yes:
                controls = self.controls()
                if controls is not None:
                    controls.stop("interrupted")
                self.start_run()

        self.app.push_screen(
            Confirm("Stop this run (saved, resumable) and start a new one?", "Restart", "Keep training"), answer
        )

    def palette_commands(self, query: str) -> list[Command]:
        """Every action by name for the command palette (ctrl+p); a typed number sets the learning rate."""
        run = self.run_action
        commands = [
            Command("Panel: charts", "loss and accuracy charts", lambda: run("show_panel('charts')")),
            Command("Panel: parameters", "the table of parameter tensors", lambda: run("show_panel('params')")),
            Command(
                "Panel: predictions", "test predictions, confusion matrix", lambda: run("show_panel('predictions')")
            ),
            Command("Toggle log scale (loss chart)", "l", lambda: run("log_y")),
            Command("More smoothing", "]", lambda: run("smoothing(1)")),
            Command("Less smoothing", "[", lambda: run("smoothing(-1)")),
            Command("Keys: list every key", "?", lambda: run("help")),
            Command("Runs: every run in this folder (sort, compare, branch)", "v", lambda: run("runs")),
            Command("Overlay earlier runs on the charts", "o", lambda: run("overlay")),
            Command("Branch: a new run from this run's checkpoint (after it stops)", "b", lambda: run("branch")),
        ]
        if self.steerable:
            commands += [
                Command("Pause / resume", "space", lambda: run("toggle_pause")),
                Command("Single step (while paused)", "n", lambda: run("step")),
                Command("Learning rate ×2", "+", lambda: run("lr(2.0)")),
                Command("Learning rate ÷2", "-", lambda: run("lr(0.5)")),
                Command("Stop the run (saves a resumable checkpoint)", "s", lambda: run("stop")),
                Command("Restart with the same settings", "r", lambda: run("restart")),
                Command(
                    "Recover a diverged run (last good checkpoint, half the learning rate)", "R", lambda: run("recover")
                ),
            ]
            typed = typed_number(query)
            if typed is not None:
                lr: float = typed
                commands.insert(
                    0,
                    Command(
                        f"Set learning rate to {lr:g}",
                        "live while training; else for the next start",
                        lambda: self.set_lr_to(lr),
                    ),
                )
        commands.append(
            Command("Export the epochs as CSV (RUN_DIR/epochs.csv)", "for a spreadsheet or pandas", self.export_csv)
        )
        inspection = self.history.inspection
        for param in inspection.params if inspection is not None else []:
            commands.append(
                Command(
                    f"Open tensor {param.name}",
                    "histogram, heatmap and history",
                    functools.partial(self.open_tensor, param.name),
                )
            )
        return commands

    def run_dir(self) -> str | None:
        controls = self.controls()
        if controls is not None:
            return controls.run_dir
        watched = getattr(self.source, "run_dir", None)
        return str(watched) if watched is not None else None

    def export_csv(self) -> None:
        from tuitrain.errors import TuitrainError
        from tuitrain.exports.csv_rows import write_epoch_csv

        run_dir = self.run_dir()
        if run_dir is None:
            self.notify("no run directory yet: the run is still starting", timeout=3)
            return
        try:
            path = write_epoch_csv(run_dir)
        except (TuitrainError, OSError) as exc:
            self.notify(str(exc), title="Export", severity="error", timeout=6)
            return
        self.notify(f"epochs written to {path}", title="Export", timeout=6)

    def open_tensor(self, name: str) -> None:
        """Filled in by the Dashboard: the drill-down of one parameter tensor."""
        raise NotImplementedError

    def action_recover(self) -> None:
        """After a divergence: continue from the last good checkpoint at half the learning rate."""
        source = self.source
        if not isinstance(source, LiveRun):
            return
        lr = self.history.lr / 2
        source.recover(lr)
        self.notify(f"back to the last good checkpoint with learning rate {lr:.4g}", timeout=4)
        self.start_run()

    def set_lr_to(self, lr: float) -> None:
        """A typed learning rate (command palette): checked like --lr, live or for the next start."""
        source = self.source
        try:
            if not math.isfinite(lr):
                raise TuitrainError("the learning rate must be a finite number")
            if isinstance(source, LiveRun):
                apply_overrides(source.config, lr=lr)
        except TuitrainError as exc:
            self.notify(str(exc), title="Learning rate", severity="error", timeout=5)
            return
        controls = self.controls()
        if controls is not None and self.training() and not self.history.ended:
            controls.set_lr(lr)
            self.notify(f"learning rate → {lr:.4g}", timeout=2)
        elif isinstance(source, LiveRun):
            source.config.train.lr = lr
            self.history.lr = lr
            self.query_one(StatusLine).show(self.history)
            self.notify(f"r restarts with learning rate {lr:.4g}", timeout=3)

    def action_quit_run(self) -> None:
        if self.training() and not self.history.ended:

            def answer(quit_now: bool | None) -> None:
                if quit_now:
                    self.shutdown()

            self.app.push_screen(ConfirmQuit(), answer)
        else:
            self.shutdown()

    def shutdown(self) -> None:
        """Stop the run and leave once its checkpoint and summary are written (waiting off the UI thread)."""
        controls = self.controls()
        if controls is not None and self.training():
            controls.stop("interrupted")
            self.notify("saving a checkpoint before quitting …", timeout=10)
        self.wait_then_exit()

    @work(thread=True, exclusive=True, exit_on_error=False, group="shutdown")
    def wait_then_exit(self) -> None:
        deadline = time.monotonic() + SAVE_WAIT
        stopped = self.controls() if self.training() else None  # shutdown() has stopped these
        saved = False
        while not saved and time.monotonic() < deadline:
            controls = self.controls()
            if controls is not None and controls is not stopped and controls.state in ("running", "paused"):
                controls.stop("interrupted")  # a restart in flight when quit was pressed: it saves too
                stopped = controls
            saved = self.source.wait(0.2)
        self.source.close()
        if saved:
            self.app.call_from_thread(self.app.exit, None, 0)
            return
        controls = self.controls()
        run_dir = controls.run_dir if controls is not None else None
        where = f"; `tuitrain run --resume {run_dir}` continues from its last checkpoint" if run_dir else ""
        message = f"tuitrain: quit before the run had finished saving (waited {SAVE_WAIT:.0f} s){where}"
        self.app.call_from_thread(self.app.exit, None, 1, message)
