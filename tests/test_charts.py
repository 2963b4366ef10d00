"""Charts, numbers and colours: ticks, hostile data at many sizes, palettes per colour depth, status words."""

from __future__ import annotations

import copy
import dataclasses
import math
import re
from types import SimpleNamespace

import pytest
import torch
from rich.color import Color, ColorSystem
from rich.style import Style
from textual.app import App

from tuitrain.events import EpochEnded, Metrics, RunEnded, RunStarted, StateChanged, StepProgress
from tuitrain.tui.series import RunHistory
from tuitrain.tui.widgets.charts import (
    Chart,
    Line,
    TimedPlot,
    epoch_chart,
    fmt_tick,
    loss_chart,
    nice_ticks,
    tick_labels,
)
from tuitrain.tui.widgets.confusion import confusion_caption, confusion_text
from tuitrain.tui.widgets.render import (
    CLASS_256,
    DEPTHS,
    STANDARD_RGB,
    ansi16,
    class_point,
    class_region,
    colour_depth,
    diverging_colour,
    fit_phrases,
    heatmap,
    signed_char,
    xterm256,
)
from tuitrain.tui.widgets.samples import decision_regions, regions_legend
from tuitrain.tui.widgets.status import StatusLine

SIZES = [(100, 30), (70, 22), (40, 12), (200, 50), (60, 20), (12, 5)]
FASHION = ["T-shirt", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Boot"]
SYSTEMS = {"truecolor": ColorSystem.TRUECOLOR, "256": ColorSystem.EIGHT_BIT, "standard": ColorSystem.STANDARD}


# ---------------------------------------------------------------- ticks
def test_ticks_are_round_and_short():
    huge = tick_labels(nice_ticks(0, 1.25e34, 8))
    assert huge[-1] == "1.2e34" and all(len(label) <= 6 for label in huge)
    assert tick_labels(nice_ticks(0, 0.1, 3)) == ["0", "0.05", "0.10"]
    assert fmt_tick(350, 50) == "350" and fmt_tick(0.05) == "0.05" and fmt_tick(1e-5) == "1e-5"
    assert fmt_tick(-0.0) == "0" and fmt_tick(-1e-20, 0.5) == "0"
    labels = tick_labels(nice_ticks(-1, 1, 5))
    assert labels == ["-1.0", "-0.5", "0", "0.5", "1.0"] and not any(re.fullmatch(r"-0[.0]*", s) for s in labels)


def test_integer_ticks_for_steps_and_epochs():
    steps = nice_ticks(0, 2750.8, 6, integer=True)
    assert steps and all(t == int(t) for t in steps) and all("." not in s for s in tick_labels(steps))
    assert nice_ticks(0.5, 1.5, 5, integer=True) == [1.0]
    assert nice_ticks(0.2, 0.7, 5, integer=True) == []
    assert nice_ticks(0, 3, 8, integer=True) == [0, 1, 2, 3]


# ---------------------------------------------------------------- charts on hostile data, at many sizes
class ChartApp(App):
    def __init__(self, chart: Chart):
        super().__init__()
        self.chart = chart

    def compose(self):
        yield TimedPlot(id="plot")

    def on_mount(self) -> None:
        self.query_one(TimedPlot).show(self.chart)


def y_labels(text: str) -> list[str]:
    return [line.split("┤")[0].strip() for line in text.splitlines() if "┤" in line]


def x_labels(text: str) -> list[str]:
    lines = text.splitlines()
    axis = next((i for i, line in enumerate(lines) if "└" in line), None)
    return lines[axis + 1].split() if axis is not None and axis + 1 < len(lines) else []


def screen_text(plot: TimedPlot) -> str:
    """The text of the rows the screen gets (the plot's Strips)."""
    return "\n".join(plot.render_line(y).text for y in range(plot.size.height))


async def draw_at_sizes(chart: Chart, sizes=SIZES) -> dict[tuple[int, int], str]:
    """Render the chart in a real app at each size in turn (resizing, as a user would)."""
    out = {}
    app = ChartApp(chart)
    async with app.run_test(size=sizes[0]) as pilot:
        plot = app.query_one(TimedPlot)
        for size in sizes:
            await pilot.resize_terminal(*size)
            await pilot.pause()
            out[size] = screen_text(plot)
            assert "cannot draw" not in out[size], out[size]
            assert out[size] == plot.render().plain.rstrip("\n")  # the same picture as textual-plotext's
    return out


def cell_looks(strip) -> list[tuple[str, object, object, bool, bool]]:
    """Each cell's character, colours, bold and dim (what a terminal shows; not textual's metadata)."""
    return [
        (char, seg.style.color, seg.style.bgcolor, bool(seg.style.bold), bool(seg.style.dim))
        for seg in strip
        for char in seg.text
    ]


@pytest.mark.parametrize("kind", ["line", "scatter", "bar"])
async def test_chart_strips_match_textual_plotext_cell_for_cell(kind):
    """The Strips built from plotext's cell matrix show what Text.from_ansi(plot.build()) shows."""
    from textual.widget import Widget

    xs = tuple(range(60))
    chart = Chart(
        "loss",
        "step",
        (
            Line("valid", xs[::10], tuple(1 / (1 + x) for x in xs[::10]), "•", "orange", kind),
            Line("train", xs, tuple(1 / (1 + x) + 0.01 * (x % 3) for x in xs)),
        ),
        x_integer=True,
    )
    app = ChartApp(chart)
    async with app.run_test(size=(70, 22)) as pilot:
        await pilot.pause()
        plot = app.query_one(TimedPlot)
        fast = [plot.render_line(y) for y in range(plot.size.height)]
        plot._dirty_regions.add(plot.region)  # textual's own path: render() as a Visual, then its strips
        slow = [Widget.render_line(plot, y) for y in range(plot.size.height)]
        assert [cell_looks(s) for s in fast] == [cell_looks(s) for s in slow]
        colours = {look[1] for strip in fast for look in cell_looks(strip)}
        assert len(colours) >= 3  # the axes, the train line and the valid markers are drawn in colour
        plot.show(dataclasses.replace(chart, title="changed"))
        await pilot.pause()
        assert "changed" in screen_text(plot)  # a new chart makes a new picture


def history(events) -> RunHistory:
    h = RunHistory()
    for event in events:
        h.add(event)
    return h


def started(task="classes", epochs=3000, steps=13, start_epoch=0) -> RunStarted:
    return RunStarted(
        "rings", {"train": {"lr": 0.01}}, "cpu", task, 100, 10, 10, steps, epochs, start_epoch, 1000, "generated"
    )


def step(n, loss, acc=0.5, seconds=None, steps=13) -> StepProgress:
    return StepProgress(
        (n - 1) // steps + 1, n, (n - 1) % steps + 1, loss, acc, 0.01, 1000.0, n * 0.01 if seconds is None else seconds
    )


def epoch(e, loss, acc=0.5, steps=13) -> EpochEnded:
    return EpochEnded(e, e * steps, Metrics(loss, acc), Metrics(loss, acc), 0.01, 0.1, 1000.0, e * 0.1)


def diverged_history() -> RunHistory:
    """Loss climbing to 1e34 then NaN, as `train square --lr 100` does."""
    events = [started("regression", epochs=1000, steps=10)]
    for n, loss in enumerate([0.5, 3.0, 4e3, 1e9, 1.2e34, float("inf"), float("nan")], 1):
        events.append(step(n, loss, None, steps=10))
    events += [epoch(1, 1.2e34, None, steps=10), RunEnded("diverged", 0, 7, None, 0.1, 70.0, "loss became NaN")]
    return history(events)


HOSTILE = {
    "empty": [],
    "single point": [(5.0, 0.3)],
    "zeros and negatives": [(0, 0.0), (1, -1.0), (2, 0.5), (3, 2.0)],
    "non-finite and None": [(0, float("nan")), (1, float("inf")), (2, None), (3, 1e-30), (4, 1e30)],
    "all non-positive": [(0, 0.0), (1, -5.0)],
    "constant": [(0, 1.0), (1, 1.0), (2, 1.0)],
    "huge": [(0, 1.0), (1, 1.2e34)],
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
@pytest.mark.parametrize("log_y", [False, True])
async def test_chart_draws_hostile_data_at_every_size(name, log_y):
    points = HOSTILE[name]
    line = Line("train", tuple(p[0] for p in points), tuple(p[1] for p in points))
    chart = Chart("loss", "step", (line, Line("valid", (), ())), log_y=log_y, x_integer=True)
    before = copy.deepcopy(chart)
    drawn = await draw_at_sizes(chart)
    assert chart == before  # drawing changes nothing it is given
    big = drawn[(100, 30)]
    drawable = [p for p in points if p[1] is not None and math.isfinite(p[1]) and (p[1] > 0 or not log_y)]
    if not drawable:
        assert "no data yet" in big or "no positive values" in big
    else:
        assert all(len(label) <= 7 for label in y_labels(big)), y_labels(big)
        assert all(re.fullmatch(r"-?\d+", label) for label in x_labels(big)), x_labels(big)
    if log_y:
        assert "log scale" in big
    for (width, _height), text in drawn.items():
        if width >= 40:
            assert text.lstrip().startswith("loss"), text  # a title that does not fit is not dropped
            assert "log" in text.splitlines()[0] or not log_y
            assert len(y_labels(text)) >= 2 or not drawable, text
            assert len(x_labels(text)) >= 2 or not drawable, text


async def test_log_toggle_and_resize_after_divergence_keep_the_data():
    """`l` then a resize used to log already-logged values (math domain error) and crash on None."""
    h = diverged_history()
    stored = (list(h.train_loss.y), list(h.epoch_train.y))
    for chart in (loss_chart(h, 0.8, True), loss_chart(h, 0.0, False), epoch_chart(h, True), epoch_chart(h, False)):
        drawn = await draw_at_sizes(chart, [(100, 30), (70, 22), (100, 30), (40, 12)])
        labels = y_labels(drawn[(100, 30)])
        assert labels and all(len(label) <= 7 for label in labels), labels  # not 12044851294056602194...
        assert drawn[(100, 30)] == (await draw_at_sizes(chart, [(100, 30)]))[(100, 30)]  # a redraw is the same
    assert (list(h.train_loss.y), list(h.epoch_train.y)) == stored


async def test_accuracy_chart_is_percent_per_step_with_integer_epochs():
    events = [started(steps=10, epochs=3)]
    for n in range(1, 16):
        events.append(step(n, 1.0 / n, acc=0.4 + 0.03 * n, steps=10))
        if n == 10:
            events.append(epoch(1, 0.2, acc=0.7, steps=10))
    h = history(events)
    chart = epoch_chart(h, log_y=True)
    assert not chart.log_y and "log" not in chart.title  # accuracy stays linear
    train = next(line for line in chart.lines if line.label == "train")
    assert len(train.y) == 15 and max(train.y) > 80 and train.x[-1] == 1.5  # percent, per step, x in epochs
    assert chart.lines[-1].label == "train"  # drawn last: validation markers do not hide it
    text = (await draw_at_sizes(chart, [(100, 30)]))[(100, 30)]
    assert x_labels(text) == ["0", "1", "2"]
    assert max(float(label) for label in y_labels(text)) <= 100 and "accuracy %" in text
    loss = loss_chart(h, 0.0, True)
    assert loss.log_y and "log scale" in (await draw_at_sizes(loss, [(100, 30)]))[(100, 30)]


# ---------------------------------------------------------------- history: the run's words and numbers
def test_status_counts_epochs_completed_and_uses_the_run_files_words():
    h = history(
        [started(epochs=3000, steps=13), epoch(1029, 0.1), step(1029 * 13 + 37 % 13, 0.1), StateChanged("paused", 0.01)]
    )
    assert h.state == "paused" and h.epochs_done == 1029 and h.steps_into_epoch == 37 % 13
    h.add(RunEnded("interrupted", 1029, 1029 * 13 + 11, Metrics(0.1, 0.9), 10.0, 1000.0))
    assert h.state == "interrupted" and h.ended and h.epochs_done == 1029
    h.add(StateChanged("running", 0.01))  # a late state event does not undo the end
    assert h.state == "interrupted"
    for status in ("completed", "stopped", "diverged", "failed"):
        assert history([started(), RunEnded(status, 1, 13, None, 1.0, 1.0)]).state == status


async def test_status_line_says_what_the_banner_says_without_cutting_fields():
    h = history([started(epochs=3000, steps=13), epoch(1029, 0.1), step(1029 * 13 + 5, 0.1)])
    h.add(RunEnded("interrupted", 1029, 1029 * 13 + 5, None, 10.0, 1000.0))

    class StatusApp(App):
        def compose(self):
            yield StatusLine(id="status")

    app = StatusApp()
    async with app.run_test(size=(60, 10)) as pilot:
        status = app.query_one(StatusLine)
        for width in (60, 100, 200):
            await pilot.resize_terminal(width, 10)
            await pilot.pause()
            status.show(h)
            text = fit_phrases(status.phrases(h), status.content_size.width, max_lines=2)
            lines = text.plain.split("\n")
            assert len(lines) <= 2 and all(len(line) <= status.content_size.width for line in lines)
            assert "…" not in text.plain
            assert "INTERRUPTED" in text.plain and "epochs 1029/3000 +5 steps" in text.plain


def test_eta_waits_until_it_means_something():
    h = history([started(epochs=100, steps=100), step(1, 2.0, seconds=0.05)])
    assert h.eta_seconds() is None  # step 1: nothing to go on
    h.add(step(150, 1.0, seconds=2.0))
    assert h.eta_seconds() is None  # 1.5 % and 2 s
    h.add(step(400, 1.0, seconds=4.05))
    assert h.eta_seconds() == pytest.approx((10_000 - 400) * 4.0 / 399)
    h.add(StateChanged("paused", 0.01))
    assert h.eta_seconds() is None


# ---------------------------------------------------------------- colours per depth
def rings_predictions(grid_size=24):
    """Three classes by radius, the network sure of each: what `train rings` shows."""
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, grid_size), torch.linspace(-1, 1, grid_size), indexing="ij")
    r = (xs**2 + ys**2).sqrt()
    cls = (r > 0.45).long() + (r > 0.85).long()
    grid = torch.nn.functional.one_hot(cls, 3).float() * 0.6 + 0.4 / 3
    points = torch.tensor([[0.0, 0.0], [0.65, 0.0], [0.0, -0.95], [0.9, 0.9]])
    targets = torch.tensor([0, 1, 2, 0])  # the last one is wrong (outer region)
    outputs = torch.nn.functional.one_hot(torch.tensor([0, 1, 2, 2]), 3).float()
    return SimpleNamespace(
        kind="points",
        task="classes",
        grid=grid,
        bounds=(-1.0, 1.0, -1.0, 1.0),
        inputs=points,
        targets=targets,
        outputs=outputs,
        class_names=["inner", "middle", "outer"],
    )


def shown(colour, depth):
    """The colour a terminal of this depth receives: an RGB (which Textual's ANSI theme leaves alone)
    reduced by the terminal's colour system."""
    parsed = Color.parse(colour)
    assert parsed.triplet is not None, f"{colour}: a colour number would be repainted by Textual's ANSI theme"
    return parsed.downgrade(SYSTEMS[depth]).number if depth != "truecolor" else parsed.triplet


def test_palette_colours_reach_the_terminal_as_chosen():
    edges = {16 + 36 * r + 6 * g + b for k in range(6) for r, g, b in ((5, k, k), (k, k, 5))}  # blue-white-red
    used = {n for triple in CLASS_256 for n in triple} | edges | set(range(231, 256)) | {16, 46, 160}
    for number in sorted(used):
        assert Color.parse(xterm256(number)).downgrade(ColorSystem.EIGHT_BIT).number == number, number
    for index, name in enumerate(STANDARD_RGB):
        assert Color.parse(ansi16(name)).downgrade(ColorSystem.STANDARD).number == index, name


@pytest.mark.parametrize("depth", DEPTHS)
def test_ring_regions_keep_three_distinct_looks(depth):
    picture = decision_regions(rings_predictions(), 40, 20, depth)
    lines = picture.plain.split("\n")
    centre, middle, corner = lines[10][20], lines[10][33], lines[0][0]
    if depth == "none":
        assert len({centre, middle, corner}) == 3  # one character per class
        assert "x" in picture.plain
        return
    looks = {k: {shown(class_region(k, c, depth), depth) for c in (0.34, 0.6, 0.9, 1.0)} for k in range(3)}
    assert not (looks[0] & looks[1] or looks[1] & looks[2] or looks[0] & looks[2]), looks
    styles = {span.style.bgcolor.name for span in picture.spans if isinstance(span.style, Style) and span.style.bgcolor}
    assert len({shown(s, depth) for s in styles}) >= 3
    for span in picture.spans:  # every colour in the picture, as the terminal gets it
        for colour in (span.style.color, span.style.bgcolor):
            if colour is not None:
                shown(colour.name, depth)
    points = [shown(class_point(k, depth), depth) for k in range(3)]
    assert len(set(points)) == 3 and not set(points) & set().union(*looks.values())  # dots stand out


@pytest.mark.parametrize("depth", DEPTHS)
def test_class_legend_is_in_each_class_colour(depth):
    legend = fit_phrases(regions_legend(["inner", "middle", "outer"], 3, depth), 200)
    assert "inner" in legend.plain and "outer" in legend.plain and "misclassified" in legend.plain
    if depth == "none":
        assert all(
            f"{char} region, {k} point: {name}" in legend.plain
            for k, (char, name) in enumerate(zip("·░▒", ("inner", "middle", "outer"), strict=True))
        )
        return
    colours = {
        span.style.color.name
        for span in legend.spans
        if isinstance(span.style, Style) and span.style.color and span.style.bgcolor is None
    }
    assert len(colours) >= 3  # not one grey for all


@pytest.mark.parametrize("depth", DEPTHS)
def test_heatmap_keeps_the_sign(depth):
    values = [[-1.0, -0.5, 0.0, 0.5, 1.0, float("nan")]] * 2
    picture = heatmap(values, 1.0, depth)
    if depth == "none":
        assert picture.plain == "≡=·*#?"  # sign and size in the character, NaN marked
        assert signed_char(-0.1) == signed_char(0.1) == "·" and signed_char(float("inf")) == "?"
        return
    cells = [shown(diverging_colour(v, depth), depth) for v in (-1.0, -0.5, 0.0, 0.5, 1.0)]
    assert len(set(cells)) == 5, cells
    if depth != "standard":  # blue below zero, red above, white in between, in the colours the terminal gets
        triplets = [
            Color.parse(diverging_colour(v, depth)).downgrade(SYSTEMS[depth]).get_truecolor() for v in (-1.0, 0.0, 1.0)
        ]
        (r0, _, b0), (r1, g1, b1), (r2, _, b2) = triplets
        assert b0 > r0 + 100 and r2 > b2 + 100 and min(r1, g1, b1) > 200
    else:  # the standard colour numbers of blue and red
        assert cells[0] == 4 and cells[-1] == 1
    assert shown(diverging_colour(float("nan"), depth), depth) not in cells


def test_colour_depth_follows_the_app():
    app = SimpleNamespace(no_color=False, console=SimpleNamespace(color_system="256"))
    assert colour_depth(app) == "256"
    app.console.color_system = "standard"
    assert colour_depth(app) == "standard"
    app.no_color = True
    assert colour_depth(app) == "none"
    assert colour_depth(SimpleNamespace(no_color=False, console=SimpleNamespace(color_system=None))) == "none"


# ---------------------------------------------------------------- layout
@pytest.mark.parametrize("width", [58, 60, 80, 98, 100, 150, 198])
def test_confusion_matrix_fits_without_cut_names(width):
    matrix = torch.randint(0, 1000, (10, 10))
    text = confusion_text(matrix, FASHION, width)
    lines = text.plain.split("\n")
    assert all(len(line.rstrip()) <= width for line in lines), width
    heads = lines[0].split()
    assert heads in (
        [str(i) for i in range(10)],
        ["T-shirt", "Trouser", "Pullov", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Boot"],
    )
    assert all(name in line.split() for name, line in zip(FASHION, lines[1:], strict=True))  # row names whole
    title = fit_phrases(
        [
            ("confusion matrix", "bold"),
            ("rows: true class", "dim"),
            ("columns: predicted", "dim"),
            ("epoch 3 (step 2,532), all 10,000 test images", ""),
        ],
        width,
    )
    for phrase in ("confusion matrix", "rows: true class", "columns: predicted", "all 10,000 test images"):
        assert any(phrase in line for line in title.plain.split("\n")), (phrase, title.plain)


def test_fit_phrases_breaks_only_between_phrases():
    phrases = [("alpha beta", ""), ("gamma delta", ""), ("epsilon", "")]
    assert fit_phrases(phrases, 100).plain == "alpha beta  gamma delta  epsilon"
    assert fit_phrases(phrases, 24).plain == "alpha beta  gamma delta\nepsilon"
    assert fit_phrases(phrases, 12, max_lines=2).plain == "alpha beta\ngamma delta"
    assert fit_phrases([("a" * 30, "")], 10).plain == "a" * 9 + "…"
    assert fit_phrases(["Run completed after 3 epochs.", "", "r: restart  q: quit"], 40).plain == (
        "Run completed after 3 epochs.\nr: restart  q: quit"
    )  # plain strings; empty ones left out


def test_confusion_caption_says_how_fresh():
    pred = SimpleNamespace(confusion_epoch=3, confusion_step=2532, confusion_images=10_000, confusion_age=5.0)
    assert confusion_caption(pred) == "epoch 3 (step 2,532), all 10,000 test images"
    pred.confusion_epoch = pred.confusion_step = None
    assert confusion_caption(pred) == "computed 5 s ago, all 10,000 test images"


# ---------------------------------------------------------------- the confusion matrix's cost
def test_confusion_matrix_is_computed_once_per_epoch(monkeypatch):
    """It used to run the whole test set on every look (every 0.75 s): ~765 -> ~64 samples/s for LeNet."""
    from tuitrain.training import inspection

    n_test = 300
    data = SimpleNamespace(
        task="classes",
        is_image=True,
        class_names=["a", "b", "c"],
        test=Split(torch.randn(n_test, 1, 2, 2), torch.randint(0, 3, (n_test,))),
    )
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    batches: list[int] = []
    model.register_forward_hook(lambda module, args, out: batches.append(args[0].shape[0]))
    sample = torch.arange(8)

    def full_passes() -> int:
        return batches.count(n_test)

    for _ in range(5):
        pred = inspection.predictions(model, data, sample, epoch=1, step=10)
    assert full_passes() == 1 and pred.confusion.sum().item() == n_test and pred.confusion_epoch == 1
    assert pred.confusion_images == n_test
    pred = inspection.predictions(model, data, sample, epoch=2, step=20)
    assert full_passes() == 2 and pred.confusion_step == 20
    # no epoch given (a caller that cannot say): refreshed only when its cost fits CONFUSION_BUDGET
    monkeypatch.setattr(inspection, "CONFUSION_BUDGET", 1e9)
    pred = inspection.predictions(model, data, sample)
    assert full_passes() == 3 and pred.confusion_epoch is None
    monkeypatch.setattr(inspection, "CONFUSION_BUDGET", 1e-9)
    for _ in range(5):
        pred = inspection.predictions(model, data, sample)
    assert full_passes() == 3 and pred.confusion_age >= 0


class Split:
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.y)


# ---------------------------------------------------------------- the dashboard, end to end
class ScriptedSource:
    """A watched-run stand-in that replays fixed events (tuitrain.tui.source.Source)."""

    title = "scripted"
    controls = None

    def __init__(self, events):
        self.events = events

    def follow(self, sink):
        for event in self.events:
            sink(event)

    def inspect(self):
        return None

    def close(self):
        pass

    def wait(self, timeout):
        return True


async def test_dashboard_survives_log_y_and_resizes_after_divergence():
    """`train square --lr 100`, DIVERGED, `l`, resize: used to raise TypeError / IndexError / ValueError."""
    from tuitrain.tui.app import make_app
    from tuitrain.tui.screens.dashboard import Dashboard
    from tuitrain.tui.widgets.charts import EpochChart, LossChart

    events = [started("regression", epochs=1000, steps=10)]
    events += [step(n, loss, None, steps=10) for n, loss in enumerate([0.5, 3.0, 4e3, 1e9, 1.2e34], 1)]
    events.append(RunEnded("diverged", 0, 5, None, 0.05, 1000.0, "loss became NaN or infinite at step 6"))
    app = make_app(ScriptedSource(events))
    async with app.run_test(size=(100, 30)) as pilot:
        dash = app.screen
        assert isinstance(dash, Dashboard)
        for _ in range(200):
            if dash.history.ended:
                break
            await pilot.pause(0.02)
        assert dash.history.state == "diverged"
        for key, size in (("l", (70, 22)), (None, (40, 12)), ("l", (100, 30)), ("l", (60, 20))):
            if key:
                await pilot.press(key)
            await pilot.resize_terminal(*size)
            await pilot.pause()
            for chart in (dash.query_one(LossChart), dash.query_one(EpochChart)):
                text = chart.render().plain
                assert "cannot draw" not in text
                assert all(len(label) <= 7 for label in y_labels(text)), y_labels(text)
        assert "log" in dash.query_one(LossChart).render().plain.splitlines()[0]
        status = dash.query_one(StatusLine).content.plain
        assert "DIVERGED" in status and "epochs 0/1000 +5 steps" in status
        assert app.is_running
