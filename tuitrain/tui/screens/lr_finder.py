"""Provides the LR finder's modal screen: the range test from the paused run's weights (`f` on the dashboard),
its progress, then the smoothed loss against the learning rate (log axis) with a cursor to pick one.

The test runs in the training process on a copy of the network and optimizer (RunControl.find_lr); the
dashboard hands this screen the LrFound events it answers with (`show`). ←/→ move the cursor along the
curve (shift: ten points), starting at the suggestion; enter dismisses with the rate under the cursor
(the dashboard sets it on the run), escape with None (the dashboard cancels a test still running).
"""

from __future__ import annotations

import math

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import ProgressBar, Static

from tuitrain.events import LrFound
from tuitrain.tui.widgets.charts import TRAIN_COLOUR, TRAIN_MARKER, Chart, Line, TimedPlot, log_ticks

CURSOR_MARKER = "●"
CURSOR_COLOUR = "red"
STOPS = {
    "end": "all {steps} steps taken",
    "exploded": "stopped at step {taken} of {steps}: the loss passed 4x its best",
    "nan": "stopped at step {taken} of {steps}: the loss became NaN or infinite",
    "stopped": "ended early after {taken} of {steps} steps",
}


def nearest(curve: list[tuple[float, float]], lr: float | None) -> int:
    """The curve's point nearest `lr` on a log scale; with no `lr`, the lowest loss."""
    if not curve:
        return 0
    if lr is None or not (math.isfinite(lr) and lr > 0):
        return min(range(len(curve)), key=lambda i: curve[i][1])
    return min(range(len(curve)), key=lambda i: abs(math.log10(curve[i][0]) - math.log10(lr)))


def curve_chart(found: LrFound | None, cursor: int | None) -> Chart:
    """The smoothed loss against log10(lr) (the x ticks are written as rates by LrCurve), the cursor on top."""
    curve = found.curve if found is not None else []
    xs = tuple(math.log10(lr) for lr, _ in curve)
    ys = tuple(loss for _, loss in curve)
    lines = [Line("", xs, ys, TRAIN_MARKER, TRAIN_COLOUR)]  # no legend: the title says what it is
    if cursor is not None and 0 <= cursor < len(curve):
        lines.append(Line("", (xs[cursor],), (ys[cursor],), CURSOR_MARKER, CURSOR_COLOUR, kind="scatter"))
    empty = "no curve" if found is not None and found.done else "testing …"
    return Chart("smoothed loss vs learning rate", "lr (log scale)", tuple(lines), empty=empty)


class LrCurve(TimedPlot):
    """The curve, its x axis labelled with rates (10^k), a vertical line at the cursor."""

    def _draw(self) -> None:
        super()._draw()
        lines = self.chart.lines
        if not lines or len(lines[0].x) < 2:
            return
        xs = lines[0].x
        lo, hi = min(xs), max(xs)
        if hi > lo:
            ticks, labels = log_ticks(lo, hi, max(2, min(10, (self.size.width - 8) // 10)))
            self.plt.xticks(ticks, labels)
        if len(lines) > 1:
            self.plt.vline(lines[1].x[0], CURSOR_COLOUR)


class LrFinder(ModalScreen[float | None]):
    """Shows an LR range test as it runs, then lets the user pick a rate on its curve (module docstring)."""

    BINDINGS = [
        Binding("left", "move(-1)", "lower lr", show=False),
        Binding("right", "move(1)", "higher lr", show=False),
        Binding("shift+left", "move(-10)", show=False),
        Binding("shift+right", "move(10)", show=False),
        Binding("home", "move(-100000)", show=False),
        Binding("end", "move(100000)", show=False),
        Binding("enter", "choose", "Set this lr"),
        Binding("escape", "cancel", "Cancel"),
    ]

    def __init__(self, step: int, lr: float) -> None:
        super().__init__()
        self.start_step, self.lr_now = step, lr
        self.found: LrFound | None = None  # the latest event: the curve so far, or the result
        self.cursor: int | None = None  # index into the finished curve

    @property
    def finished(self) -> bool:
        return self.found is not None and self.found.done

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static(
                Text.assemble(
                    ("LR range test", "bold"),
                    f" from the paused weights at step {self.start_step:,}, on a copy (the run is left as it was)",
                ),
                id="finder-title",
            )
            yield ProgressBar(total=None, show_eta=False, id="finder-progress")
            yield LrCurve(id="finder-curve")
            yield Static(id="finder-reading")
            yield Static(id="finder-keys")

    def on_mount(self) -> None:
        self.update_view()

    # ------------------------------------------------------------------ the test's events
    def show(self, found: LrFound) -> None:
        """An LrFound event of this test: the curve so far, or the result (the cursor then starts at the suggestion)."""
        if self.finished:
            return
        self.found = found
        if found.done and found.curve:
            self.cursor = nearest(found.curve, found.suggested_lr)
        self.update_view()

    def update_view(self) -> None:
        found = self.found
        bar = self.query_one(ProgressBar)
        if found is not None and not found.done:
            bar.update(total=found.steps, progress=found.taken)
        bar.display = not self.finished
        self.query_one(LrCurve).show(curve_chart(found, self.cursor))
        self.query_one("#finder-reading", Static).update(self.reading())
        keys = "←/→ move (shift: 10 points)   enter: set this lr on the run   escape: cancel"
        if not self.finished:
            keys = "testing … escape cancels (the run stays paused, as it was)"
        elif self.cursor is None:
            keys = "escape closes"
        self.query_one("#finder-keys", Static).update(Text(keys, "dim"))

    def reading(self) -> Text:
        """The rate and loss under the cursor, the suggestion and how the test ended (or what it does now)."""
        found = self.found
        now = f"the run's lr now: {self.lr_now:.3g}"
        if found is None:
            return Text(f"starting …   {now}")
        if not found.done:
            return Text(f"step {found.taken} of {found.steps}   {now}")
        if self.cursor is None:  # refused, failed, or no finite loss
            return Text(found.message or "no curve to read", "red")
        lr, loss = found.curve[self.cursor]
        text = Text.assemble(("cursor: ", "bold"), (f"lr {lr:.3g}  loss {loss:.4g}", "bold cyan"), f"   {now}\n")
        if found.suggested_lr is not None:
            text.append(f"suggested: {found.suggested_lr:.3g} ({found.rule})")
        else:
            text.append("no suggestion")
        ended = STOPS.get(found.stop, "")
        if ended:
            text.append("; " + ended.format(steps=found.steps, taken=found.taken))
        if found.message:
            text.append(f"\nnote: {found.message}", "dim")
        return text

    # ------------------------------------------------------------------ keys
    def action_move(self, delta: int) -> None:
        if self.cursor is None or self.found is None:
            return
        self.cursor = max(0, min(len(self.found.curve) - 1, self.cursor + delta))
        self.update_view()

    def chosen_lr(self) -> float | None:
        """The rate under the cursor (None until the curve is there)."""
        if self.cursor is None or self.found is None:
            return None
        return self.found.curve[self.cursor][0]

    def action_choose(self) -> None:
        lr = self.chosen_lr()
        if lr is None:
            self.notify("no curve yet: the test is still running" if not self.finished else "no curve to pick from")
            return
        self.dismiss(lr)

    def action_cancel(self) -> None:
        self.dismiss(None)
