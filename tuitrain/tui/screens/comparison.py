"""Provides the comparison screen: several runs' curves overlaid on shared axes, a legend, what differs."""

from __future__ import annotations

import os
from itertools import pairwise
from pathlib import Path

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Static

from tuitrain.runs import compare
from tuitrain.tui.screens.dialogs import Confirm, HelpScreen, key_rows
from tuitrain.tui.widgets.charts import TimedPlot
from tuitrain.tui.widgets.overlay import (
    AXES,
    AXIS_LABEL,
    SPREAD_NAME,
    SPREADS,
    Overlaid,
    OverlaidGroup,
    Spread,
    diff_lines,
    group_charts,
    group_diff_lines,
    group_legend,
    legend,
    overlay_charts,
    overlay_groups,
    pending,
)

POLL = 1.0  # seconds between looks at the runs' files (live runs keep growing)


class ComparisonScreen(Screen[None]):
    """Overlays the runs in `run_dirs`; runs that are still training keep updating."""

    BINDINGS = [
        Binding("escape,q", "close", "Back"),
        Binding("x", "axis", "X axis", tooltip="x axis: step, epoch or seconds of training"),
        Binding("l", "log_y", "Log-y", tooltip="log scale on the loss charts"),
        Binding("d", "toggle_diff", "Differences", tooltip="show or hide the settings that differ"),
        Binding("s", "spread", "Band", tooltip="seed groups' band: min-max or mean ± std over the seeds"),
        Binding("question_mark", "help", "Keys", tooltip="this list of keys"),
    ]

    class Updated(Message):
        """Posted after the curves were read again (tests wait for it)."""

        def __init__(self, runs: list[Overlaid]):
            super().__init__()
            self.runs = runs

    def __init__(self, run_dirs: list[str], title: str = "", race: bool = False):
        super().__init__()
        self.run_dirs = [str(d) for d in run_dirs]
        self.runs = [Overlaid(Path(d).name, compare.Curves([], []), i) for i, d in enumerate(self.run_dirs)]
        self.axis_index = 0
        self.log_y = False
        self.spread_index = 0  # the seed groups' band: min-max, or mean ± std (`s`)
        self.heading = title
        self.groups: list[OverlaidGroup] = [OverlaidGroup(run.label, [run], run.index) for run in self.runs]
        self.race = race  # the app's own race (`train` with comma lists): leaving it stops the race

    def compose(self) -> ComposeResult:
        yield Static(id="compare-title")
        with Horizontal(id="compare-charts"):
            yield TimedPlot(id="compare-loss")
            yield TimedPlot(id="compare-valid")
        yield Static(id="compare-legend")
        yield Static(id="compare-diff")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.poll()
        self.set_interval(POLL, self.poll)

    @property
    def axis(self) -> str:
        return AXES[self.axis_index]

    @work(thread=True, exclusive=True, exit_on_error=False, group="compare-poll")
    def poll(self) -> None:
        """Read what the runs appended and their summaries (file reads: off the UI thread)."""
        changed = False
        for run in self.runs:
            path = self.run_dirs[run.index]
            changed = run.curves.update(path) or changed
        records = []
        for d in self.run_dirs:
            try:
                records.extend(compare.load_run_records([d]))
            except Exception:  # a folder deleted meanwhile, a run not yet written: shown without its row
                records.append(None)  # type: ignore[arg-type]
        known = [r for r in records if r is not None]
        names = compare.labels(known) if known else []
        by_dir = dict(zip((r.run_dir for r in known), names, strict=True))
        for run, record in zip(self.runs, records, strict=False):
            run.record = record
            if record is not None:
                run.label = by_dir.get(record.run_dir, run.label)
                # a crashed run counts to the checkpoint --resume continues from, as `tuitrain runs` does
                until = record.lost.get("step") if record.lost else None
                changed = run.curves.keep_until(until if isinstance(until, int) else None) or changed
        self.app.call_from_thread(self.show, known, changed)

    def show(self, records: list[compare.RunRecord], changed: bool) -> None:
        if not self.is_attached:
            return
        width = max(20, self.size.width - 2)
        training = sum(1 for r in records if r.status == "running")
        queued = sum(1 for r in records if r.status == "queued")
        title = self.heading or f"Comparing {len(self.runs)} runs"
        if training or queued:
            title += f"  ({training} training, {queued} queued)" if queued else f"  ({training} training)"
        # runs differing only by seed are one group: a mean curve in a band, one legend line; its runs
        # still training are their own lines until they finish (then the band takes them in)
        ranked = compare.make_groups(records)
        groups = overlay_groups(self.runs, ranked)
        regrouped = membership(groups) != membership(self.groups)
        had_groups, self.groups = self.seed_groups, groups
        if self.seed_groups != had_groups:
            self.refresh_bindings()  # `s` (the band) shows while there are seed groups
        title += f"  x: {AXIS_LABEL[self.axis]}"
        if self.seed_groups:
            title += f"  band: {SPREAD_NAME[self.spread]}  (x switches, l log-y, s band, d differences, esc back)"
        else:
            title += "  (x switches, l log-y, d differences, esc back)"
        self.query_one("#compare-title", Static).update(Text(title, no_wrap=True, overflow="ellipsis"))
        if self.seed_groups:
            shown = group_legend(self.groups, width, not no_color(), self.spread)
            body = "\n".join([*notes(self.runs, records), *verdicts(ranked), *group_diff_lines(self.groups)])
        else:  # single runs: a line and a legend line each, ranked one by one as `tuitrain compare` lists them
            ranks = {r.run_dir: i for i, r in enumerate(compare.ranked(records), 1) if compare.headline(r)[1]}
            shown = legend(self.runs, width, not no_color(), ranks)
            body = "\n".join([*notes(self.runs, records), *diff_lines(self.runs)])
        self.query_one("#compare-legend", Static).update(shown)
        self.query_one("#compare-diff", Static).update(Text(body, no_wrap=True, overflow="ellipsis"))
        if changed or regrouped:
            self.draw()
        self.post_message(self.Updated(self.runs))

    @property
    def spread(self) -> Spread:
        return SPREADS[self.spread_index]

    @property
    def seed_groups(self) -> bool:
        """Whether some runs differ only by seed (drawn as bands); otherwise every run is its own line."""
        return any(len(g.runs) > 1 for g in self.groups)

    def draw(self) -> None:
        if self.seed_groups:
            loss, valid = group_charts(self.groups, self.axis, self.log_y, self.spread)  # type: ignore[arg-type]
        else:
            loss, valid = overlay_charts(self.runs, self.axis, self.log_y)  # type: ignore[arg-type]
        self.query_one("#compare-loss", TimedPlot).show(loss)
        self.query_one("#compare-valid", TimedPlot).show(valid)

    def action_axis(self) -> None:
        self.axis_index = (self.axis_index + 1) % len(AXES)
        self.draw()
        self.poll()

    def action_log_y(self) -> None:
        self.log_y = not self.log_y
        self.draw()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "spread":
            return self.seed_groups  # no seed groups, no band: the key leaves the footer
        return True

    def action_spread(self) -> None:
        """The seed groups' band: min-max over the runs, or the mean ± their standard deviation."""
        self.spread_index = (self.spread_index + 1) % len(SPREADS)
        self.draw()
        self.poll()  # the title and the legend say which band

    def action_toggle_diff(self) -> None:
        diff = self.query_one("#compare-diff")
        diff.display = not diff.display

    def action_help(self) -> None:
        self.app.push_screen(HelpScreen(key_rows(self.BINDINGS), "Comparison keys"))

    def action_close(self) -> None:
        if len(self.app.screen_stack) > 2:
            self.app.pop_screen()
            return
        training = [r for r in self.runs if r.record is not None and r.record.status in ("running", "queued")]
        if not training or not self.race:
            self.app.exit()
            return

        def answer(yes: bool | None) -> None:
            if yes:
                self.app.exit()

        question = "Stop the race? The run in progress is saved (resumable); queued runs do not start."
        self.app.push_screen(Confirm(question, "Stop the race", "Keep racing"), answer)


def notes(runs: list[Overlaid], records: list[compare.RunRecord]) -> list[str]:
    """What the legend's numbers leave unsaid: runs of different tasks, epochs a crash lost."""
    lines = []
    note = compare.mixed(records)
    if note:
        lines.append(f"note: {note}")
    for run in runs:
        record = run.record
        if record is not None and record.lost:
            lines.append(
                f"{run.style[2] * 2} {run.label}: {record.status}; --resume continues from epoch {record.epoch}, "
                f"{compare.lost_range(record.lost)} lost"
            )
    return lines


def verdicts(ranked: list[compare.Group]) -> list[str]:
    """For groups of seeds (best first): whether each one's difference from the one above it is beyond noise."""
    if not any(g.n > 1 for g in ranked):
        return []
    return [compare.verdict_line(a, b) for a, b in pairwise(ranked) if b.verdict is not None]


def membership(groups: list[OverlaidGroup]) -> list[list[tuple[int, bool]]]:
    """Which runs each group holds and which of them are still pending (a change redraws the charts)."""
    return [[(id(r), pending(r)) for r in g.runs] for g in groups]


def no_color() -> bool:
    return bool(os.environ.get("NO_COLOR"))
