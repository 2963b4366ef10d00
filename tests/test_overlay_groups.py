"""Seed groups drawn live: bands that grow as a race's runs finish (recorded runs replayed into run
directories, as a race writes them), the band's two spreads (`s`: min-max or mean ± std), the comparison
view's picture at 100x30, and the dashboard's overlay (`o`) drawing overlaid seeds as their group."""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
import statistics
import time
from pathlib import Path

import pytest
from helpers import InProcess, check_snapshot, screen_text, until
from textual.widgets import SelectionList, Static

from tuitrain.config import resolve_config
from tuitrain.runs import compare
from tuitrain.runs import start as session
from tuitrain.tui.app import make_app
from tuitrain.tui.screens.comparison import ComparisonScreen
from tuitrain.tui.screens.dashboard import Dashboard
from tuitrain.tui.screens.overlays import GROUP, RunPicker, expand
from tuitrain.tui.source import LiveRun
from tuitrain.tui.widgets.overlay import (
    BAND_MARKER,
    LIVE_MARKER,
    Overlaid,
    OverlaidGroup,
    band,
    group_chart_lines,
    seeds_note,
    valid_points,
)

TINY = str(Path(__file__).parent / "data" / "tiny_rings.toml")
EPOCHS = 10
STEPS = 10  # per epoch

CONFIG = """name = "tiny_rings"
description = "rings, small and quick, for tests"

[model]
kind = "mlp"
hidden = [32, 32]
activation = "relu"
init = "default"

[data]
dataset = "rings"
samples = 2000
valid_fraction = 0.15
test_fraction = 0.15
standardize = false
data_dir = ""
path = ""

[train]
optimizer = "{optimizer}"
lr = 0.01
momentum = 0.9
weight_decay = 0.0
batch_size = 100
epochs = {epochs}
seed = {seed}
device = "cpu"
threads = 0
histories = true
precision = "fp32"
"""


class Replay:
    """A recorded run written into its run directory the way a race's run writes it: config.toml when
    queued, then metrics.jsonl appended epoch by epoch, summary.json rewritten (running, then completed).
    Its numbers are made up and exact: valid accuracy `top - 0.3 / epoch + seed noise`, so pictures
    and statistics are the same on every machine."""

    def __init__(self, out: Path, optimizer: str, seed: int, top: float):
        self.optimizer, self.seed, self.top = optimizer, seed, top
        self.dir = out / f"20260101-000000-tiny_rings-{optimizer}-seed{seed}"
        self.dir.mkdir(parents=True)
        (self.dir / "config.toml").write_text(CONFIG.format(optimizer=optimizer, seed=seed, epochs=EPOCHS))
        self.epoch = 0

    def accuracy(self, epoch: int) -> float:
        return round(self.top - 0.3 / epoch + 0.01 * (self.seed - 1) * (1 + epoch / EPOCHS), 6)

    def loss(self, step: int) -> float:
        return round((1.2 + 2 * (0.95 - self.top)) / (1 + step / 20) + 0.02 * self.seed, 6)

    def advance(self, epochs: int) -> None:
        """Train `epochs` more epochs (the first one writes the start line); running until the last."""
        lines = []
        if self.epoch == 0:
            lines.append({"event": "start", "preset": "tiny_rings", "task": "classes", "steps_per_epoch": STEPS})
            lines[0].update(epochs=EPOCHS, start_epoch=0, run_dir=str(self.dir))
        for _ in range(epochs):
            self.epoch += 1
            for step in range((self.epoch - 1) * STEPS + 1, self.epoch * STEPS + 1):
                lines.append({"event": "step", "epoch": self.epoch, "step": step, "loss": self.loss(step)})
                lines[-1].update(seconds=step / 100)
            valid = {"loss": round(1 - self.accuracy(self.epoch), 6), "accuracy": self.accuracy(self.epoch)}
            train = {"loss": self.loss(self.epoch * STEPS), "accuracy": valid["accuracy"]}
            lines.append({"event": "epoch", "epoch": self.epoch, "step": self.epoch * STEPS, "train": train})
            lines[-1].update(valid=valid, seconds=0.1, total_seconds=self.epoch / 10)
        with open(self.dir / "metrics.jsonl", "a", encoding="utf-8") as f:
            f.writelines(json.dumps(line) + "\n" for line in lines)
        done = self.epoch >= EPOCHS
        best = max(range(1, self.epoch + 1), key=self.accuracy)
        best_valid = {"loss": round(1 - self.accuracy(best), 6), "accuracy": self.accuracy(best)}
        summary = {
            "run_dir": str(self.dir),
            "preset": "tiny_rings",
            "status": "completed" if done else "running",
            "epoch": self.epoch,
            "epochs": EPOCHS,
            "step": self.epoch * STEPS,
            "best": {"epoch": best, "step": best * STEPS, "valid": best_valid},
            "last_valid": {"loss": round(1 - self.accuracy(self.epoch), 6), "accuracy": self.accuracy(self.epoch)},
            "updated_at": 1767225600.0 + self.seed if done else time.time(),
            "host": socket.gethostname(),
            "pid": os.getpid(),  # "running": this process is alive
        }
        if done:
            summary["test"] = {"loss": round(1 - self.test, 6), "accuracy": self.test}
        (self.dir / "summary.json").write_text(json.dumps(summary))

    @property
    def test(self) -> float:
        return round(self.accuracy(EPOCHS) - 0.005, 6)


def finished(out: Path, optimizer: str, top: float, seeds=(0, 1, 2)) -> list[Replay]:
    runs = [Replay(out, optimizer, seed, top) for seed in seeds]
    for run in runs:
        run.advance(EPOCHS)
    return runs


# ----------------------------------------------------------------------------- the band's arithmetic


def test_the_band_is_min_max_or_mean_plus_minus_std_point_by_point():
    points = [([1.0, 2.0], [0.5, 0.6]), ([1.0, 2.0], [0.7, 0.9]), ([1.0, 2.0], [0.6, 0.6]), ([1.0], [0.2])]
    xs, means, lows, highs = band(points)
    assert xs == [1.0, 2.0] and means == pytest.approx([0.5, 0.7]) and lows == [0.2, 0.6] and highs == [0.7, 0.9]
    xs, means, lows, highs = band(points, "std")
    first = statistics.stdev([0.5, 0.7, 0.6, 0.2])
    second = statistics.stdev([0.6, 0.9, 0.6])
    assert lows == pytest.approx([0.5 - first, 0.7 - second]) and highs == pytest.approx([0.5 + first, 0.7 + second])
    assert band([([1.0], [0.4])], "std")[2:] == ([0.4], [0.4])  # one run: no spread
    assert not any(math.isnan(v) for v in lows + highs)


def test_a_live_groups_band_is_its_finished_runs_and_the_rest_are_their_own_lines(tmp_path):
    runs = [Replay(tmp_path, "adam", seed, 0.9) for seed in range(3)]
    runs[0].advance(EPOCHS)
    runs[1].advance(EPOCHS)
    runs[2].advance(4)
    records = compare.load_run_records([r.dir for r in runs])
    overlaid = [Overlaid(r.name, compare.Curves([], []), i, r) for i, r in enumerate(records)]
    for run, replay in zip(overlaid, runs, strict=True):
        run.curves.update(replay.dir)
    (group,) = compare.make_groups(records)
    assert group.n == 2 and [r.run_dir for r in group.pending] == [str(runs[2].dir)] and not group.failed
    assert group.failure_note() == "1 of 3 runs still training, left out of the numbers"
    entry = OverlaidGroup(group.label, overlaid, 2, group)
    lines = group_chart_lines([entry], lambda c: valid_points(c, "epoch", True))
    assert [line.marker for line in lines] == [BAND_MARKER, BAND_MARKER, LIVE_MARKER, entry.style[2]]
    low, high, live, mean = lines
    assert len(mean.x) == EPOCHS and len(live.x) == 4  # the mean: the two finished runs only
    assert mean.y == pytest.approx([100 * (runs[0].accuracy(e) + runs[1].accuracy(e)) / 2 for e in range(1, 11)])
    assert low.y == pytest.approx([100 * runs[0].accuracy(e) for e in range(1, 11)])
    assert high.y == pytest.approx([100 * runs[1].accuracy(e) for e in range(1, 11)])
    assert seeds_note(entry) == "3 seeds (2 finished, 1 training): mean x, band · min-max, ~ training"
    assert group_chart_lines([entry], lambda c: valid_points(c, "epoch", True), hidden=[overlaid[2]])[2] == mean


# ----------------------------------------------------------------------------- the comparison view


def seed_runs(out: Path) -> list[str]:
    """sgd and adam, seeds 0 to 2 each: two groups, clearly apart."""
    return [str(r.dir) for r in [*finished(out, "sgd", 0.8), *finished(out, "adam", 0.95)]]


async def test_the_comparison_view_draws_one_band_per_group_at_100x30(tmp_path):
    app = make_app(compare_dirs=seed_runs(tmp_path))
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, ComparisonScreen), what="the comparison")
        screen = app.screen
        await until(pilot, lambda: len(screen.query_one("#compare-valid").chart.lines) == 6, what="the bands")
        await until(pilot, lambda: screen_text(app).count("3 seeds: mean") == 2, what="the legend")
        await until(pilot, lambda: "s Band" in screen_text(app) and "train.optimizer" in screen_text(app))
        await pilot.pause(0.2)  # the widgets' heights follow their text a refresh later
        check_snapshot("comparison_seed_groups_100x30", screen_text(app))


async def test_s_switches_the_band_between_min_max_and_mean_plus_minus_std(tmp_path):
    runs = finished(tmp_path, "adam", 0.9)
    app = make_app(compare_dirs=[str(r.dir) for r in runs])
    async with app.run_test(size=(120, 30)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, ComparisonScreen), what="the comparison")
        screen = app.screen
        valid = screen.query_one("#compare-valid")
        await until(pilot, lambda: valid.chart is not None and len(valid.chart.lines) == 3, what="the band")
        assert valid.chart.lines[0].y == pytest.approx([100 * runs[0].accuracy(e) for e in range(1, 11)])
        assert "band: min-max" in screen_text(app)
        await pilot.press("s")
        await until(pilot, lambda: "band: ± std" in screen_text(app), what="the title and legend to say ± std")
        assert "band · ± std" in str(screen.query_one("#compare-legend", Static).render())
        low, high, mean = valid.chart.lines
        for e in range(EPOCHS):
            std = 100 * statistics.stdev([r.accuracy(e + 1) for r in runs])
            assert (low.y[e], high.y[e]) == pytest.approx((mean.y[e] - std, mean.y[e] + std))
        assert "band: ± std over seeds" in valid.chart.notes
        await pilot.press("s")
        await until(pilot, lambda: "band: min-max" in screen_text(app), what="min-max again")


async def test_a_live_races_group_band_grows_as_its_runs_finish(tmp_path):
    """`tuitrain train rings --optimizer sgd,adam --seed 0,1,2` follows the race's folders: replayed here."""
    sgd = [Replay(tmp_path, "sgd", seed, 0.8) for seed in range(3)]
    adam = [Replay(tmp_path, "adam", seed, 0.95) for seed in range(3)]
    app = make_app(compare_dirs=[str(r.dir) for r in [*sgd, *adam]])  # the race: all queued at first
    async with app.run_test(size=(120, 30)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, ComparisonScreen), what="the comparison")
        screen = app.screen

        def lines(marker: str) -> list:
            chart = screen.query_one("#compare-valid").chart
            return [line for line in chart.lines if line.marker == marker] if chart is not None else []

        def legend() -> str:
            return str(screen.query_one("#compare-legend", Static).render())

        await until(pilot, lambda: "3 seeds (3 queued)" in legend(), what="the queued groups")
        sgd[0].advance(3)  # the first run trains: the group's only curve, drawn as a plain line
        await until(pilot, lambda: lines("•") and len(lines("•")[0].x) == 3, what="the first run's line")
        assert not lines(BAND_MARKER) and not lines(LIVE_MARKER)
        assert "3 seeds (1 training, 2 queued)" in legend()
        sgd[0].advance(EPOCHS - 3)
        sgd[1].advance(4)  # the first finished: the mean of one run, the second its own live line
        await until(pilot, lambda: lines(LIVE_MARKER) and len(lines(LIVE_MARKER)[0].x) == 4, what="a live line")
        assert not lines(BAND_MARKER) and len(lines("•")[0].x) == EPOCHS
        assert "3 seeds (1 finished, 1 training, 1 queued): mean •, ~ training" in legend()
        sgd[1].advance(EPOCHS - 4)
        sgd[2].advance(2)  # two finished: a band appears
        await until(pilot, lambda: len(lines(BAND_MARKER)) == 2, what="the band of two")
        low, high = lines(BAND_MARKER)
        assert low.y == pytest.approx([100 * sgd[0].accuracy(e) for e in range(1, 11)])
        assert high.y == pytest.approx([100 * sgd[1].accuracy(e) for e in range(1, 11)])
        assert "(n=2)" in legend() and "1 of 3 runs still training" not in legend()
        sgd[2].advance(EPOCHS - 2)  # the third finished: the band takes it in, no live line left
        await until(pilot, lambda: not lines(LIVE_MARKER) and "sgd  3 seeds: mean •" in legend(), what="sgd done")
        low, high = lines(BAND_MARKER)
        assert high.y == pytest.approx([100 * sgd[2].accuracy(e) for e in range(1, 11)])  # seed 2 is the top
        assert "(n=3)" in legend()
        for run in adam:
            run.advance(EPOCHS)
        await until(pilot, lambda: len(lines(BAND_MARKER)) == 4 and "training" not in legend(), what="all done")
        assert "Race of 6 runs" in screen_text(app) and "training)" not in screen_text(app)


# ----------------------------------------------------------------------------- the dashboard's overlay


def tiny(**overrides):
    return resolve_config(TINY, device="cpu", epochs=2, **overrides)


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    """adam seeds 1 and 2 (the dashboard's run is seed 0 of the same configuration), sgd seeds 0 and 1."""
    out = tmp_path_factory.mktemp("seeded")
    for optimizer, seed in (("adam", 1), ("adam", 2), ("sgd", 0), ("sgd", 1)):
        trainer, writer = session.new_run(tiny(optimizer=optimizer, seed=seed), out)
        trainer.run()
        writer.close()
    return out


async def test_the_dashboard_overlays_seeds_as_their_group_with_its_own_run_in_the_band(seeded, tmp_path):
    out = tmp_path / "runs"
    shutil.copytree(seeded, out, dirs_exist_ok=True)  # this run joins them: the fixture's stay four
    source = LiveRun(tiny(optimizer="adam", seed=0), out_dir=str(out), factory=InProcess())
    app = make_app(source)
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, Dashboard) and app.screen.history.ended, what="run end")
        dashboard = app.screen
        before = len(dashboard.query_one("#loss-chart").chart.lines)
        await pilot.press("o")
        await until(pilot, lambda: isinstance(app.screen, RunPicker), what="the picker")
        picker = app.screen.query_one(SelectionList)
        assert picker.option_count == 6  # two groups of two seeds, then the four runs
        groups = [picker.get_option_at_index(i) for i in range(2)]
        assert all(o.value.startswith(GROUP) and len(expand([o.value])) == 2 for o in groups)
        assert sorted(str(o.prompt).split()[0] for o in groups) == ["adam", "sgd"]
        assert all("(2 seeds)  mean " in str(o.prompt) and "(n=2)" in str(o.prompt) for o in groups)
        await pilot.press("space", "down", "space", "enter")  # both groups
        await until(pilot, lambda: app.screen is dashboard and len(dashboard.linking.groups) == 2, what="groups")
        await until(pilot, lambda: len(dashboard.query_one("#loss-chart").chart.lines) == before + 6, what="bands")
        chart = dashboard.query_one("#epoch-chart").chart
        assert [line.marker for line in chart.lines[:4]] == [BAND_MARKER] * 4  # under the means, under this run
        labels = sorted(g.label for g in dashboard.linking.groups)
        assert labels == ["adam (with this run)", "sgd"]
        assert {len(g.finished) for g in dashboard.linking.groups} == {3, 2}  # this run is in adam's band
        await until(pilot, lambda: "adam (with this run)  3 seeds: mean" in screen_text(app), what="the legend")
        legend = str(dashboard.query_one("#overlay-legend", Static).render())
        assert "sgd  2 seeds: mean" in legend and f"band {BAND_MARKER} min-max" in legend and "#" not in legend
        if os.environ.get("SHOW_SCREENS"):
            print(screen_text(app))
        await pilot.press("o")  # the picker again: the groups' rows are checked
        await until(pilot, lambda: isinstance(app.screen, RunPicker), what="the picker again")
        picker = app.screen.query_one(SelectionList)
        assert sorted(expand(list(picker.selected))) == sorted(str(out / r.name) for r in seeded.iterdir())
        assert len(picker.selected) == 2
