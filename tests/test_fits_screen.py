"""The look-inside fits the screen (issue 27): chart titles, the confusion matrix, the drill-down, footers, words."""

from __future__ import annotations

import math
import re
from types import SimpleNamespace

import pytest
import torch
from conftest import TINY
from helpers import FASHION, live_app, open_predictions, screen_text, until

from tuitrain.tui.widgets.charts import Chart, Line, draw_chart
from tuitrain.tui.widgets.confusion import short_name
from tuitrain.tui.widgets.param_detail import ParamDetail
from tuitrain.tui.widgets.params import ParamTable


def first_line(chart: Chart, width: int, height: int = 18) -> str:
    from textual_plotext.plot import Plot

    plt = Plot()
    draw_chart(plt, chart, width, height)
    plt.plotsize(width, height)
    plt._set_size(width, height)
    return re.sub(r"\x1b\[[0-9;]*m", "", plt.build()).splitlines()[0]


@pytest.mark.parametrize("lowest", [0.3, 0.002, 0.0004])
@pytest.mark.parametrize("log_y", [False, True])
def test_every_chart_names_itself_beside_wide_tick_labels(lowest, log_y):
    """A title as long as the figure but centred right of wide y labels was dropped by plotext (80x24, log)."""
    xs = tuple(float(x) for x in range(0, 3000, 10))
    ys = tuple(math.exp(-i / len(xs) * math.log(1 / lowest)) for i in range(len(xs)))
    chart = Chart(
        "loss",
        "step",
        (Line("valid", xs[::50], ys[::50]), Line("train", xs, ys)),
        log_y=log_y,
        x_integer=True,
        notes=("train smoothed 0.8",),
    )
    missing = [width for width in range(12, 90) if "loss" not in first_line(chart, width)]
    assert not missing


@pytest.mark.parametrize("size", [(100, 30), (80, 24)])
async def test_the_confusion_matrix_shows_without_scrolling(size):
    app, _, _ = live_app(TINY, epochs=2)
    async with app.run_test(size=size) as pilot:
        panel = await open_predictions(app, pilot)
        assert panel.scroll_y == 0
        text = screen_text(app)
        assert "decision regions" in text and "confusion matrix" in text
        names = panel.predictions.class_names
        rows = [line for line in text.splitlines() if line.split()[:1] and line.split()[0] in names and "%" in line]
        assert [row.split()[0] for row in rows] == names  # every row of the matrix on screen
        assert "most confused" in text


@pytest.mark.parametrize("size", [(100, 30), (60, 20), (40, 12)])
async def test_footers_end_cleanly(size):
    app, source, _ = live_app("rings", epochs=100_000)
    async with app.run_test(size=size) as pilot:
        dash = app.screen
        await until(pilot, lambda: dash.history.step > 0, what="steps")
        await pilot.pause()
        assert screen_text(app).splitlines()[-1].endswith("^p palette")  # not "paletteR"
        source.controls.stop()


async def test_the_drill_down_shows_the_whole_history_heatmap_at_100x30():
    app, source, _ = live_app("rings", epochs=100_000)
    async with app.run_test(size=(100, 30)) as pilot:
        dash = app.screen
        await until(pilot, lambda: dash.history.step > 0, what="steps")
        await pilot.press("2")
        table = dash.query_one(ParamTable)
        await until(pilot, lambda: dash.history.inspection is not None and table.row_count, what="inspection")
        table.focus()
        await pilot.press("enter")
        detail = dash.query_one(ParamDetail)
        steps = re.compile(r"^\W*\s+step [\d,]+\s+[\d,]+\s*\W*$")
        await until(
            pilot,
            lambda: detail.display and any(steps.match(line) for line in screen_text(app).splitlines()),
            what="the history heatmap down to its step labels",
        )
        text = screen_text(app)
        assert "histogram of values" in text and "recorded steps" in text
        assert screen_text(app).splitlines()[-1].rstrip().endswith("^p palette")
        source.controls.stop()


def test_one_naming_for_classes():
    assert short_name(FASHION, 0) == "T-shirt"  # not "Tee"
    pred = SimpleNamespace(
        bounds=(-1.0, 1.0, -1.0, 1.0),
        inputs=torch.tensor([[0.0, 0.5], [0.5, 0.0]]),
        targets=torch.tensor([0.0, 1.0]),
        class_names=["blue", "orange"],
    )
    chart = ParamDetail._line_chart((1.0, 1.0, 0.0), pred)
    assert [line.label for line in chart.lines][:2] == ["blue", "orange"]  # as the Predictions panel says


@pytest.mark.parametrize("preset, standardized", [("wave", True), ("square", False)])
async def test_the_fitted_curve_says_plainly_what_its_units_are(preset: str, standardized: bool) -> None:
    app, _, _ = live_app(preset, epochs=1)
    async with app.run_test(size=(100, 30)) as pilot:
        dash = app.screen
        await pilot.press("3")
        await until(pilot, lambda: dash.history.ended, what="run end")
        await until(pilot, lambda: "fitted curve" in screen_text(app), what="the fitted curve")
        if standardized:  # the caption's second line is laid out a refresh after its first
            await until(pilot, lambda: "standardized (mean 0, std 1)" in screen_text(app), what="the units")
        text = screen_text(app)
        assert ("standardized (mean 0, std 1)" in text) is standardized, text
        assert "where the preset says so" not in text
        await pilot.press("q")
