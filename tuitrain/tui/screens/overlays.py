"""Provides the dashboard's links to other runs: earlier runs overlaid on its charts, the runs screen, branching."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from rich.segment import Segment
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen, Screen
from textual.strip import Strip
from textual.widgets import Checkbox, Label, SelectionList, Static
from textual.widgets.option_list import OptionDoesNotExist

from tuitrain.errors import escape
from tuitrain.fmt import fmt_score
from tuitrain.runs import compare
from tuitrain.store.run_dir import BranchSpec
from tuitrain.tui.screens.branch import BranchDialog, OpenBranch, OpenRuns
from tuitrain.tui.screens.steering import Steering
from tuitrain.tui.widgets.charts import Line
from tuitrain.tui.widgets.overlay import (
    Overlaid,
    OverlaidGroup,
    group_chart_lines,
    group_legend,
    legend,
    overlay_groups,
    thin_points,
    train_points,
    valid_points,
)

FIRST_COLOUR = 2  # PALETTE index of the first overlaid run: cyan and orange are the live run's own
POLL = 2.0  # seconds between reads of the overlaid runs' files (they may still be training)
GROUP = "group:"  # a picker row standing for a seed group: GROUP, then its runs' directories, a line each


def expand(values: list[str]) -> list[str]:
    """The run directories the picker's checked rows stand for (a group's row: all its runs), once each."""
    dirs: list[str] = []
    for value in values:
        for d in value.removeprefix(GROUP).split("\n") if value.startswith(GROUP) else [value]:
            if d not in dirs:
                dirs.append(d)
    return dirs


class Checklist(SelectionList[str]):
    """A SelectionList whose unchecked rows show an empty box (`▐ ▌`), not the same `X` in another colour:
    the difference reads without colour too."""

    def render_line(self, y: int) -> Strip:
        line = super().render_line(y)
        try:
            selection = self.get_option_at_index(self.scroll_offset.y + y)
        except OptionDoesNotExist:  # a line below the last row
            return line
        segments = list(line)
        inner = Checkbox.BUTTON_INNER
        if selection.value in self.selected or len(segments) < 2 or segments[1].text != inner:
            return line
        segments[1] = Segment(" " * len(inner), segments[1].style, segments[1].control)
        return Strip(segments, line.cell_length)


class RunPicker(ModalScreen[list[str] | None]):
    """Pick runs (space toggles, enter confirms) from a folder; dismissed with their directories.

    Runs that differ only by seed are also offered as one row for their group (first, `adam (3 seeds)`):
    checking it overlays them all, drawn as the group's band. Enter with nothing checked overlays the
    highlighted run (or group) when none was overlaid before (else it clears the overlays, and says so)."""

    BINDINGS = [Binding("escape", "cancel", "Cancel"), Binding("enter", "done", "Overlay", priority=True)]

    def __init__(self, out_dir: str, exclude: str | None, chosen: list[str]):
        super().__init__()
        self.out_dir, self.exclude, self.chosen = out_dir, exclude, chosen

    def compose(self) -> ComposeResult:
        records = [r for r in compare.load_records(self.out_dir) if r.run_dir != self.exclude]
        records.sort(key=lambda r: -r.updated_at)
        labels = compare.labels(records) if len(records) > 1 else [r.name for r in records]
        groups = [g for g in compare.make_groups(records) if len(g.records) > 1] if len(records) > 1 else []
        whole = {r.run_dir for g in groups if all(r.run_dir in self.chosen for r in g.records) for r in g.records}
        options = [
            (
                Text(f"{escape(g.label)} ({len(g.records)} seeds)  {group_numbers(g)}"),
                GROUP + "\n".join(r.run_dir for r in g.records),
                all(r.run_dir in whole for r in g.records),
            )
            for g in groups
        ]
        options += [
            (
                Text(f"{escape(label)}  {r.status}  best {fmt_score(r.best_valid)}  ({escape(r.name)})"),
                r.run_dir,
                r.run_dir in self.chosen and r.run_dir not in whole,  # a whole group: its row is checked
            )
            for r, label in zip(records, labels, strict=True)
        ]
        with Vertical(id="picker"):
            yield Label(f"Overlay runs from {escape(self.out_dir)} (space selects, enter overlays, esc cancels)")
            yield Checklist(*options, id="picker-list")
            if not options:
                yield Static("no other runs there yet")

    def action_done(self) -> None:
        picker = self.query_one(Checklist)
        chosen = expand(list(picker.selected))
        if not chosen and not self.chosen:
            if picker.option_count == 0:
                self.notify("no other runs to overlay here", timeout=3)
                self.dismiss(None)
                return
            if picker.highlighted is None:
                self.notify("space checks a run, enter overlays the checked ones", timeout=4)
                return
            chosen = expand([picker.get_option_at_index(picker.highlighted).value])
        if not chosen:
            self.notify("overlays removed", timeout=3)
        self.dismiss(chosen)

    def action_cancel(self) -> None:
        self.dismiss(None)


def group_numbers(group: compare.Group) -> str:
    """ "mean 97.10% ± 0.40pp (n=3)" of a group's ranking metric, or what it is waiting for."""
    if not group.n:
        return group.failure_note() or "no numbers yet"
    accuracy = group.higher_better
    text = f"mean {compare.fmt_metric(group.mean, accuracy)}"
    if group.std is not None:
        text += f" ± {compare.fmt_metric(group.std, accuracy, spread=True)}"
    return f"{text} (n={group.n})"


class Linking:
    """A dashboard's links to other runs: earlier runs overlaid on its charts (`redraw` draws them), the
    runs screen, branching. `screen` is the dashboard (its legend, dialogs and workers).

    Overlaid runs that differ only by seed — from each other or from this run — are drawn as their
    group: the mean of its finished runs between min and max lines (tuitrain.tui.widgets.overlay), this
    run taking its place in the band once it has finished (its own live line stays the dashboard's)."""

    def __init__(self, screen: Screen[None], steering: Steering, redraw: Callable[[], None]) -> None:
        self.screen, self.steering, self.redraw = screen, steering, redraw
        self.overlays: list[Overlaid] = []
        self.groups: list[OverlaidGroup] = []  # the overlays in their seed groups (as last read)
        self.own: Overlaid | None = None  # this run's curves from its files, for the band of its group
        self._overlaid = False  # overlays drawn on the charts last time

    def out_dir(self) -> str:
        """Where this run's siblings live: the live run's --out, else the watched run's parent folder."""
        return self.steering.source.out_dir

    def start_polling(self) -> None:
        self.screen.set_interval(POLL, self._poll_if_any)

    def _poll_if_any(self) -> None:
        if self.overlays:  # no thread (and no redraw) while there are none
            self.poll()

    def overlay(self) -> None:
        def chosen(dirs: list[str] | None) -> None:
            if dirs is None:
                return
            kept = {o.curves_dir: o for o in self.overlays} if self.overlays else {}
            self.overlays = [
                kept.get(d) or Overlaid(Path(d).name, compare.Curves([], []), FIRST_COLOUR + i, curves_dir=d)
                for i, d in enumerate(dirs)
            ]
            self.groups = []  # plain lines until the runs' records say which share a group
            self.poll()

        current = [o.curves_dir for o in self.overlays if o.curves_dir]
        self.screen.app.push_screen(RunPicker(self.out_dir(), self.steering.run_dir(), current), chosen)

    def poll(self) -> None:
        self.screen.run_worker(self._read, thread=True, exclusive=True, exit_on_error=False, group="overlay-poll")

    def _read(self) -> None:
        """In a worker thread: the overlaid runs' curves and names, read again."""
        runs = list(self.overlays)
        app = self.screen.app
        if not runs:
            app.call_from_thread(self.changed, [])
            return
        for run in runs:
            run.curves.update(run.curves_dir or "")
        own = self.steering.run_dir()
        try:
            records = compare.load_run_records([r.curves_dir for r in runs if r.curves_dir])
            mine = compare.load_run_records([own]) if own else []
        except Exception:  # a run deleted meanwhile: keep the curves already read
            records, mine = [], []
        labels = compare.labels([*mine, *records])[len(mine) :]  # named by how they differ from this run too
        for run, record, label in zip(runs, records, labels, strict=False):
            run.record, run.label = record, label
        app.call_from_thread(self.changed, self._group(runs, records, mine))

    def _group(
        self, runs: list[Overlaid], records: list[compare.RunRecord], mine: list[compare.RunRecord]
    ) -> list[OverlaidGroup]:
        """In the worker thread: the overlaid runs in their seed groups, this run in its group's band."""
        if len(records) != len(runs):
            return []  # some run unreadable this time: plain lines
        own = None
        if mine:
            if self.own is None or self.own.curves_dir != mine[0].run_dir:  # a restart is a new run
                self.own = Overlaid("this run", compare.Curves([], []), 0, curves_dir=mine[0].run_dir)
            own = self.own
            own.record = mine[0]
            own.curves.update(mine[0].run_dir)
        entries = overlay_groups([*runs, *([own] if own else [])], compare.make_groups([*mine, *records]), FIRST_COLOUR)
        kept = []
        for entry in entries:
            if own is not None and any(r is own for r in entry.runs):
                if len(entry.runs) == 1:
                    continue  # this run alone: the dashboard's own lines
                entry.label += " (with this run)"
            kept.append(entry)
        return kept if any(len(e.runs) > 1 for e in kept) else []

    def changed(self, groups: list[OverlaidGroup] | None = None) -> None:
        screen = self.screen
        if not screen.is_attached:
            return
        if groups is not None:
            current = {id(o) for o in self.overlays}  # the overlays may have been chosen again meanwhile
            self.groups = groups if all(id(r) in current or r is self.own for g in groups for r in g.runs) else []
        if not self.overlays and not self._overlaid:
            return  # none now and none drawn: a redraw would cost the training for nothing (polled every few s)
        self._overlaid = bool(self.overlays)
        box = screen.query_one("#overlay-legend", Static)
        box.display = bool(self.overlays)
        if self.groups:
            box.update(group_legend(self.groups, max(20, screen.size.width - 2), ranks=False))
        elif self.overlays:
            box.update(legend(self.overlays, max(20, screen.size.width - 2)))
        self.redraw()

    def lines(self, accuracy: bool) -> tuple[tuple[Line, ...], tuple[Line, ...]]:
        """The overlaid runs' lines for the live charts: training loss by step; validation accuracy
        (or loss, for regression) by epoch, the live charts' own axes; seed groups as their bands."""
        if self.groups:
            hidden = [self.own] if self.own is not None else []
            return (
                group_chart_lines(self.groups, lambda c: train_points(c, "step"), hidden=hidden),
                group_chart_lines(self.groups, lambda c: valid_points(c, "epoch", accuracy), hidden=hidden),
            )
        loss, epoch = [], []
        for run in self.overlays:
            colour, _, marker = run.style
            loss.append(Line("", *thin_points(*train_points(run.curves, "step")), marker, colour))
            epoch.append(Line("", *thin_points(*valid_points(run.curves, "epoch", accuracy)), marker, colour))
        return tuple(loss), tuple(epoch)

    def runs(self) -> None:
        self.screen.post_message(OpenRuns(self.out_dir()))

    def branch(self) -> None:
        """The branch dialog (tuitrain.tui.controls says when: after the run stopped)."""
        run_dir = self.steering.run_dir()
        if run_dir is None:
            return

        def start(spec: BranchSpec | None) -> None:
            if spec is not None:
                self.screen.post_message(OpenBranch(spec))

        self.screen.app.push_screen(BranchDialog(run_dir), start)
