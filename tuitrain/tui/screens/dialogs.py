"""Provides the small modal dialogs: quit confirmation and the key help."""

from __future__ import annotations

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Static

KEYS = [
    ("space", "pause / resume training"),
    ("n", "one optimizer step (while paused)"),
    ("+ / -", "learning rate ×2 / ÷2, applied live"),
    ("s", "stop the run (charts stay on screen)"),
    ("r", "restart with the same settings"),
    ("tab / shift+tab", "next / previous panel (1 2 3 jump to one)"),
    ("l", "log scale on the loss axes"),
    ("[ / ]", "less / more smoothing of the training loss"),
    ("enter", "parameters: open the selected tensor (histogram, heatmap)"),
    (", / .  pgup/pgdn", "predictions: previous / next page of images"),
    ("m", "predictions: show only mistakes"),
    ("escape", "close a dialog or the drill-down"),
    ("?", "this help"),
    ("q", "quit (asks first while training)"),
]


class ConfirmQuit(ModalScreen[bool]):
    """Asks before quitting while a run is in progress; dismisses with True to quit."""

    BINDINGS = [Binding("y", "answer(True)", "Quit"), Binding("n,escape", "answer(False)", "Keep training")]

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label("Training is still running. Stop it and quit?", id="question")
            with Horizontal(id="buttons"):
                yield Button("Quit (y)", variant="error", id="yes")
                yield Button("Keep training (n)", variant="primary", id="no")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)


class HelpScreen(ModalScreen[None]):
    """Lists every key of the dashboard."""

    BINDINGS = [Binding("escape,question_mark,q", "dismiss", "Close")]

    def compose(self) -> ComposeResult:
        table = Table(box=None, show_header=False, padding=(0, 2))
        table.add_column(style="bold cyan", no_wrap=True)
        table.add_column()
        for key, what in KEYS:
            table.add_row(key, what)
        with VerticalScroll(id="dialog"):
            yield Static("[b]Keys[/b]  (escape closes)")
            yield Static(table)

    def action_dismiss(self) -> None:  # type: ignore[override]
        self.dismiss(None)
