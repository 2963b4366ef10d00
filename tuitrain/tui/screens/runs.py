"""Provides the runs screen: every run under --out in a table to sort, filter, select, compare and branch."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input, Static

from tuitrain.errors import TuitrainError, escape
from tuitrain.fmt import fmt_age, fmt_score
from tuitrain.runs import compare
from tuitrain.runs.compare import RunRecord
from tuitrain.store.run_dir import BranchSpec
from tuitrain.tui.screens.branch import BranchDialog, OpenBranch, WatchRun
from tuitrain.tui.screens.comparison import ComparisonScreen
from tuitrain.tui.screens.dialogs import HelpScreen, key_rows

POLL = 2.0  # seconds between re-reading the runs (live ones change)
# the most asked-for first: a narrow terminal scrolls the rest into view
COLUMNS = (
    "",
    "run",
    "status",
    "epochs",
    "best valid",
    "test",
    "optimizer",
    "lr",
    "batch",
    "last valid",
    "preset",
    "age",
)


def _score_key(metrics: dict[str, Any] | None) -> tuple[int, float, float]:
    s = compare.score(metrics)
    return (0, -s[0], -s[1]) if s is not None else (1, 0.0, 0.0)


SORTS = {  # name -> key (ascending is the natural order for the name)
    "newest": lambda r: -r.updated_at,
    "best valid": lambda r: _score_key(r.best_valid),
    "test": lambda r: _score_key(r.test),
    "name": lambda r: r.name,
    "status": lambda r: r.status,
    "lr": lambda r: r.lr if r.lr is not None else float("inf"),
}
COLUMN_SORT = {
    "run": "name",
    "status": "status",
    "lr": "lr",
    "best valid": "best valid",
    "test": "test",
    "age": "newest",
}


def matches(record: RunRecord, query: str) -> bool:
    """Every word of `query` appears in the run's name, preset, status, optimizer or learning rate."""
    hay = (
        f"{record.name} {record.preset} {record.status} {record.optimizer} lr={record.lr:g}".lower()
        if record.lr
        else (f"{record.name} {record.preset} {record.status} {record.optimizer}".lower())
    )
    return all(word in hay for word in query.lower().split())


class RunsScreen(Screen[None]):
    """The run directories under `out_dir`, refreshed while runs are live."""

    BINDINGS = [
        Binding("space", "select", "Select", tooltip="select the run (several: compare them)"),
        Binding("c,enter", "compare", "Compare", tooltip="overlay the selected runs (or the one under the cursor)"),
        Binding("b", "branch", "Branch", tooltip="a new run from this run's checkpoint, with other settings"),
        Binding("w", "watch", "Watch", tooltip="open the run in the dashboard (live charts, look inside)"),
        Binding(
            "e",
            "export",
            "Export",
            tooltip="the selected runs (or the one under the cursor) to TensorBoard: one run each, with HParams",
        ),
        Binding("s", "sort", "Sort", tooltip="sort by: newest, best valid, test, name, status, lr"),
        Binding("slash", "filter", "Filter", key_display="/", tooltip="show only runs matching words"),
        Binding("a", "select_all", "All", show=False, tooltip="select every run shown (again: none)"),
        Binding("escape,q", "close", "Back"),
        Binding("question_mark", "help", "Keys", tooltip="this list of keys"),
    ]

    class Refreshed(Message):
        """Posted after the table was rebuilt from the run files."""

        def __init__(self, records: list[RunRecord]):
            super().__init__()
            self.records = records

    def __init__(self, out_dir: str = "runs"):
        super().__init__()
        self.out_dir = out_dir
        self.records: list[RunRecord] = []
        self.shown: list[RunRecord] = []
        self.selected: set[str] = set()
        self.sort_name = "newest"
        self.filter_text = ""

    def compose(self) -> ComposeResult:
        yield Static(id="runs-title")
        yield Input(id="runs-filter", placeholder="words to match (name, preset, status, optimizer, lr=0.1)")
        yield DataTable(id="runs-table", cursor_type="row", zebra_stripes=True)
        yield Footer(compact=True)

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for label in COLUMNS:
            table.add_column(label, key=label or "selected")
        self.query_one("#runs-filter").display = False
        table.focus()
        self.reload()
        self.set_interval(POLL, self.reload)

    @work(thread=True, exclusive=True, exit_on_error=False, group="runs-reload")
    def reload(self) -> None:
        try:
            records = compare.load_records(self.out_dir)
        except Exception as exc:  # an --out that vanished or cannot be read: say so, keep the screen
            self.app.call_from_thread(self.notify, f"cannot read the runs: {exc}", severity="error", timeout=4)
            return
        self.app.call_from_thread(self.show, records)

    def show(self, records: list[RunRecord]) -> None:
        if not self.is_attached:
            return
        self.records = records
        self.selected &= {r.run_dir for r in records}
        shown = [r for r in records if matches(r, self.filter_text)]
        shown.sort(key=SORTS[self.sort_name])
        table = self.query_one(DataTable)
        cursor_run = (
            self.shown[table.cursor_row].run_dir if self.shown and 0 <= table.cursor_row < len(self.shown) else None
        )
        self.shown = shown
        table.clear()
        now = time.time()
        for r in shown:
            table.add_row(*self.cells(r, now), key=r.run_dir)
        if cursor_run is not None and cursor_run in {r.run_dir for r in shown}:
            table.move_cursor(row=[r.run_dir for r in shown].index(cursor_run), animate=False)
        self.update_title()
        self.post_message(self.Refreshed(shown))

    def cells(self, r: RunRecord, now: float) -> tuple[Text | str, ...]:
        epochs = compare.fmt_epochs(r)  # a crashed run: to its last checkpoint, the epochs after it lost
        mark = Text("✓", style="bold") if r.run_dir in self.selected else Text(" ")
        status = Text(escape(r.status), style="bold" if r.status == "running" else "")
        return (
            mark,
            escape(r.name),
            status,
            epochs,
            fmt_score(r.best_valid),
            fmt_score(r.test),
            escape(r.optimizer),
            f"{r.lr:g}" if r.lr is not None else "?",
            str(r.batch_size) if r.batch_size is not None else "?",
            fmt_score(r.last_valid),
            escape(r.preset),
            fmt_age(now - r.updated_at),
        )

    def update_title(self) -> None:
        count = f"{len(self.shown)} of {len(self.records)}" if self.filter_text else str(len(self.records))
        text = f"Runs in {escape(self.out_dir)}: {count}  sorted by {self.sort_name}"
        if self.filter_text:
            text += f"  matching '{escape(self.filter_text)}'"
        if self.selected:
            text += f"  {len(self.selected)} selected (c compares)"
        if not self.records:
            text += "  (none yet: `tuitrain run PRESET` or Start a run, then come back)"
        self.query_one("#runs-title", Static).update(Text(text, no_wrap=True, overflow="ellipsis"))

    def cursor_record(self) -> RunRecord | None:
        row = self.query_one(DataTable).cursor_row
        return self.shown[row] if self.shown and 0 <= row < len(self.shown) else None

    # ------------------------------------------------------------------ actions
    def action_select(self) -> None:
        record = self.cursor_record()
        if record is None:
            return
        self.selected ^= {record.run_dir}
        table = self.query_one(DataTable)
        mark = Text("✓", style="bold") if record.run_dir in self.selected else Text(" ")
        table.update_cell(record.run_dir, "selected", mark)
        if table.cursor_row < len(self.shown) - 1:
            table.move_cursor(row=table.cursor_row + 1)
        self.update_title()

    def action_select_all(self) -> None:
        every = {r.run_dir for r in self.shown}
        self.selected = set() if every <= self.selected else self.selected | every
        self.show(self.records)

    def chosen(self) -> list[str]:
        """The selected runs in table order, else the one under the cursor."""
        picked = [r.run_dir for r in self.shown if r.run_dir in self.selected]
        record = self.cursor_record()
        return picked or ([record.run_dir] if record is not None else [])

    def action_compare(self) -> None:
        chosen = self.chosen()
        if not chosen:
            self.notify("no runs yet", timeout=3)
            return
        self.app.push_screen(ComparisonScreen(chosen))

    def action_sort(self) -> None:
        names = list(SORTS)
        self.sort_name = names[(names.index(self.sort_name) + 1) % len(names)]
        self.show(self.records)

    @on(DataTable.HeaderSelected)
    def header_sort(self, event: DataTable.HeaderSelected) -> None:
        name = COLUMN_SORT.get(str(event.column_key.value))
        if name is not None:
            self.sort_name = name
            self.show(self.records)

    def action_filter(self) -> None:
        box = self.query_one("#runs-filter", Input)
        box.display = True
        box.focus()

    @on(Input.Changed, "#runs-filter")
    def filter_changed(self, event: Input.Changed) -> None:
        self.filter_text = event.value.strip()
        self.show(self.records)

    @on(Input.Submitted, "#runs-filter")
    def filter_done(self) -> None:
        box = self.query_one("#runs-filter", Input)
        box.display = bool(self.filter_text)
        self.query_one(DataTable).focus()

    def action_watch(self) -> None:
        record = self.cursor_record()
        if record is None:
            return
        self.post_message(WatchRun(record.run_dir))

    def action_branch(self) -> None:
        record = self.cursor_record()
        if record is None:
            return

        def start(spec: BranchSpec | None) -> None:
            if spec is not None:
                self.post_message(OpenBranch(spec))

        self.app.push_screen(BranchDialog(record.run_dir), start)

    def action_export(self) -> None:
        chosen = self.chosen()
        if not chosen:
            self.notify("no runs yet", timeout=3)
            return
        self.notify(f"exporting {len(chosen)} run{'s' if len(chosen) > 1 else ''} to TensorBoard …", timeout=3)
        self.export_tensorboard(chosen)

    @work(thread=True, exclusive=True, exit_on_error=False, group="runs-export")
    def export_tensorboard(self, chosen: list[str]) -> None:
        """OUT/tensorboard-<time>/, one TensorBoard run per run, HParams showing what differs (as the CLI's
        `export RUN... --format tensorboard`)."""
        from tuitrain.exports.formats import export

        folder = Path(self.out_dir) / f"tensorboard-{time.strftime('%Y%m%d-%H%M%S')}"
        try:
            export(chosen, "tensorboard", str(folder), hparams=compare.tensorboard_hparams(chosen))
        except (TuitrainError, OSError) as exc:
            self.app.call_from_thread(self.notify, f"cannot export: {exc}", severity="error", timeout=8)
            return
        said = f"{folder}  (tensorboard --logdir {folder})"
        self.app.call_from_thread(self.notify, said, title="Exported to TensorBoard", timeout=10)

    def action_help(self) -> None:
        self.app.push_screen(HelpScreen(key_rows(self.BINDINGS), "Runs keys"))

    def action_close(self) -> None:
        box = self.query_one("#runs-filter", Input)
        if box.has_focus:
            box.value = ""
            self.filter_done()
            return
        if len(self.app.screen_stack) > 2:
            self.app.pop_screen()
        else:
            self.app.exit()
