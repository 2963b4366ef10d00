"""Provides the small modal dialogs: quit confirmation and the key help."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.keys import format_key
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Static

KeyRow = tuple[str, str]


def key_label(binding: Binding) -> str:
    if binding.key_display:
        return binding.key_display
    return " / ".join(format_key(key.strip()) for key in binding.key.split(","))


def key_rows(bindings: list[BindingType], context: str = "") -> list[KeyRow]:
    """One (keys, what it does) row per documented binding; keys sharing an action are merged."""
    merged: dict[str, tuple[list[str], str]] = {}
    for binding in bindings:
        if not isinstance(binding, Binding):
            continue
        what = binding.tooltip or binding.description
        if not what or binding.action.startswith("unavailable"):
            continue
        keys, _ = merged.setdefault(binding.action, ([], f"({context}) {what}" if context else what))
        keys.append(key_label(binding))
    return [(", ".join(keys), what) for keys, what in merged.values()]


def keys_markdown(rows: list[KeyRow]) -> str:
    """README's key table: the same rows as the help dialog."""
    lines = ["| key | action |", "|---|---|"]
    lines += [f"| {keys} | {what} |" for keys, what in rows]
    return "\n".join(lines) + "\n"


class Confirm(ModalScreen[bool]):
    """Asks a yes/no question; dismisses with True for yes."""

    BINDINGS = [Binding("y", "answer(True)", "Yes"), Binding("n,escape", "answer(False)", "No")]

    def __init__(self, question: str, yes: str = "Yes", no: str = "No"):
        super().__init__()
        self.question, self.yes, self.no = question, yes, no

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label(self.question, id="question")
            with Horizontal(id="buttons"):
                yield Button(f"{self.yes} (y)", variant="error", id="yes")
                yield Button(f"{self.no} (n)", variant="primary", id="no")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)


class ConfirmQuit(Confirm):
    """Asks before quitting while a run is in progress, in the words of its state: running or paused
    (`state`; None: the state of the run on the screen beneath, else running)."""

    def __init__(self, state: str | None = None) -> None:
        super().__init__("Training is still running. Save a checkpoint and quit?", "Quit", "Keep training")
        self.state = state

    def compose(self) -> ComposeResult:
        if self.run_state() == "paused":
            self.question, self.no = "Training is paused. Save a checkpoint and quit?", "Stay"
        yield from super().compose()

    def run_state(self) -> str:
        if self.state is not None:
            return self.state
        beneath = [screen for screen in self.app.screen_stack if screen is not self]
        history = getattr(beneath[-1], "history", None) if beneath else None
        return str(getattr(history, "state", "running"))

    def run_ended(self, status: str) -> None:
        """The run ended while the question was open: it is no longer about stopping the training."""
        self.query_one("#question", Label).update(f"The run {status}. Quit?")
        self.query_one("#no", Button).label = "Stay (n)"


class HelpScreen(ModalScreen[None]):
    """Lists every key of the screen that opened it, from that screen's bindings."""

    BINDINGS = [Binding("escape,question_mark,q", "dismiss", "Close")]

    def __init__(self, rows: list[KeyRow], title: str = "Keys"):
        super().__init__()
        self.rows = rows
        self.title_text = title

    def compose(self) -> ComposeResult:
        table = Table(box=None, show_header=False, padding=(0, 1), expand=True)
        table.add_column(style="bold cyan", no_wrap=True)
        table.add_column(ratio=1)
        for keys, what in self.rows:
            table.add_row(keys, what)
        with VerticalScroll(id="dialog", classes="help"):
            yield Static(Text.assemble((self.title_text, "bold"), ("   ↑/↓ scroll, escape closes", "dim")))
            yield Static(table, id="help-table")

    def on_mount(self) -> None:
        self.query_one("#dialog").focus()

    def action_dismiss(self) -> None:  # type: ignore[override]
        self.dismiss(None)
