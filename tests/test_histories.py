"""Weight and gradient histories: what the recorder measures, the bounded file, resume, and the drill-down."""

from __future__ import annotations

import itertools
import math
import random

import pytest
import torch
from helpers import MODES, live_app, screen_text, until
from rich.text import Text
from torch import nn

from tuitrain.config import resolve_config
from tuitrain.events import HistoryRecord, TensorRecord
from tuitrain.runs.start import new_run, resume_run
from tuitrain.store.histories import BINS, MAX_RECORDS, Histories, HistoryTail, read_histories, record_to_json
from tuitrain.store.history_file import HistoryLog
from tuitrain.store.run_dir import HISTORIES
from tuitrain.training.recorder import Recorder
from tuitrain.tui.app import make_app
from tuitrain.tui.source import WatchedRun
from tuitrain.tui.widgets.param_history import ParamHistory, bars, columns, history_heatmap, rebin
from tuitrain.tui.widgets.render import SHADES

LENET_SHAPES = {  # the tensors of LeNet-5, the largest preset by tensor count
    "features.0.weight": 150,
    "features.0.bias": 6,
    "features.3.weight": 2400,
    "features.3.bias": 16,
    "classifier.1.weight": 48000,
    "classifier.1.bias": 120,
    "classifier.3.weight": 10080,
    "classifier.3.bias": 84,
    "classifier.5.weight": 840,
    "classifier.5.bias": 10,
}


def histogram_std(t: TensorRecord) -> float:
    """The spread the recorded bins show (bin centres weighted by count)."""
    width = (t.high - t.low) / BINS
    centres = [t.low + (i + 0.5) * width for i in range(BINS)]
    n = sum(t.counts)
    mean = sum(c * k for c, k in zip(centres, t.counts, strict=True)) / n
    return math.sqrt(sum(k * (c - mean) ** 2 for c, k in zip(centres, t.counts, strict=True)) / n)


def fake_record(step: int, rng: random.Random) -> HistoryRecord:
    tensors = []
    for name, count in LENET_SHAPES.items():
        counts = [0] * BINS
        for _ in range(64):
            counts[rng.randrange(BINS)] += count // 64
        grads = [rng.randrange(count + 1) for _ in range(BINS)]
        scale = rng.uniform(0.01, 1.0)
        tensors.append(
            TensorRecord(
                name,
                counts,
                -scale,
                scale * 1.01,
                rng.gauss(0, 0.01),
                scale / 2,
                grads,
                -scale / 100,
                scale / 99,
                rng.uniform(0, 5),
                rng.uniform(1e-6, 1e-2),
            )
        )
    dead = {"features.0": rng.random(), "features.3": rng.random(), "classifier.1": 0.0, "classifier.3": 0.0}
    return HistoryRecord(step, step // 844 + 1, tensors, dead)


def test_a_run_records_the_start_its_widening_weights_and_the_end(tmp_path):
    trainer, writer = new_run(resolve_config("rings", epochs=30, optimizer="adam"), tmp_path)
    trainer.recorder.interval, trainer.recorder.budget = 0.0, 1.0  # about every RECORD_STEPS steps
    trainer.run()
    records = read_histories(writer.run_dir / HISTORIES)
    steps = [r.step for r in records]
    assert steps[0] == 0 and steps[-1] == trainer.step and steps == sorted(set(steps)) and len(steps) > 20
    first, last = records[0].tensors[0], records[-1].tensors[0]
    assert first.name == "layers.1.weight" and first.grad_counts is None and first.update_ratio is None
    assert all(sum(t.counts) == p.numel() for t, p in zip(records[-1].tensors, trainer.model.parameters(), strict=True))
    assert last.grad_counts is not None and sum(last.grad_counts) == 200 and last.grad_norm > 0
    weights = trainer.model.layers[1].weight.detach()
    assert math.isclose(last.std, weights.std().item(), rel_tol=1e-4)
    assert math.isclose(last.low, weights.min().item(), rel_tol=1e-5)  # six significant digits in the file
    assert math.isclose(last.high, weights.max().item(), rel_tol=1e-5)
    # the first layer's weights spread out as the network learns the rings (as LeNet's conv1 on Fashion-MNIST)
    assert histogram_std(last) > 1.2 * histogram_std(first) and last.std > 1.2 * first.std
    assert last.high - last.low > 1.2 * (first.high - first.low)
    ratios = [r.tensors[0].update_ratio for r in records[1:-1]]
    assert all(ratio is not None and 0 < ratio < 0.1 for ratio in ratios)
    assert set(records[-1].dead) == {"layers.1", "layers.3"}  # the two layers a ReLU follows
    assert all(0.0 <= share <= 1.0 for r in records for share in r.dead.values())


def test_recording_can_be_turned_off(tmp_path):
    trainer, writer = new_run(resolve_config("rings", epochs=5, histories=False), tmp_path)
    trainer.run()
    assert not (writer.run_dir / HISTORIES).exists()


def test_dead_relu_units_are_those_never_positive_on_the_fixed_batch():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 2))
    with torch.no_grad():
        model[0].bias[:] = 10.0  # every unit of the first layer fires for these inputs
        model[2].bias[:3] = -1e3  # three of the second layer's six units never can, the other three always do
        model[2].bias[3:] = 1e3
    record = Recorder(model, torch.randn(64, 4)).record(0, 0)
    assert record is not None and record.dead == {"0": 0.0, "2": 0.5}


@pytest.mark.slow  # a long run on purpose
def test_the_history_file_stays_bounded_over_a_long_run(tmp_path):
    """A 100,000-step LeNet run recording every 20 steps: 5,000 records, a file of at most MAX_RECORDS."""
    path, rng = tmp_path / HISTORIES, random.Random(0)
    log = HistoryLog(path)
    sizes = []
    for step in range(0, 100_000, 20):
        log.append(fake_record(step, rng))
        sizes.append(path.stat().st_size)
    log.close()
    assert max(sizes) <= 20 * 2**20
    records = read_histories(path)
    steps = [r.step for r in records]
    assert len(records) == len(log) <= MAX_RECORDS and len(records) > MAX_RECORDS // 2
    assert steps[0] == 0 and steps[-1] == 99_980 and steps == sorted(steps)
    recent = steps[-MAX_RECORDS // 4 :]
    assert all(b - a == 20 for a, b in itertools.pairwise(recent))  # recent records all kept, older ones thinned
    assert not list(tmp_path.glob(".*tmp*"))  # every rewrite renamed its temporary file into place


def test_a_resume_records_the_steps_it_redoes_once(tmp_path):
    path = tmp_path / HISTORIES
    rng = random.Random(1)
    log = HistoryLog(path)
    for step in range(0, 100, 10):
        log.append(fake_record(step, rng))
    log.close()
    with open(path, "ab") as f:  # killed while writing a line
        f.write(record_to_json(fake_record(100, rng))[:50])
    log = HistoryLog(path, resume_step=50)  # the checkpoint was at step 50: steps 50-90 are redone
    assert [step for step, _ in log.lines] == [0, 10, 20, 30, 40]
    for step in range(50, 80, 10):
        log.append(fake_record(step, rng))
    log.close()
    assert [r.step for r in read_histories(path)] == list(range(0, 80, 10))


def test_a_resumed_run_continues_its_history(tmp_path):
    trainer, writer = new_run(resolve_config("rings", epochs=2), tmp_path)
    trainer.run()
    first = [r.step for r in read_histories(writer.run_dir / HISTORIES)]
    resumed, _ = resume_run(writer.run_dir, epochs=4)
    resumed.run()
    steps = [r.step for r in read_histories(writer.run_dir / HISTORIES)]
    assert steps[: len(first)] == first and steps[-1] == resumed.step and steps == sorted(set(steps))


def test_a_viewer_follows_the_file_through_thinning(tmp_path):
    path, rng = tmp_path / HISTORIES, random.Random(2)
    log = HistoryLog(path, limit=40)
    tail, seen = HistoryTail(path), Histories(limit=40)
    for step in range(0, 2000, 10):
        log.append(fake_record(step, rng))
        if step % 70 == 0:
            for record in tail.poll():
                seen.add(record)
    for record in tail.poll():
        seen.add(record)
    assert [r.step for r in seen.records] == [step for step, _ in log.lines]


def test_heatmap_columns_and_bins():
    assert columns(5, 10) == [0, 1, 2, 3, 4]
    picked = columns(1000, 50)
    assert picked[0] == 0 and picked[-1] == 999 and len(picked) <= 50
    counts = [0] * BINS
    counts[0], counts[-1] = 7, 3
    bands = rebin(counts, -1.0, 1.0, -2.0, 2.0, 8)
    assert sum(bands) == 10 and bands[2] == 7 and bands[5] == 3  # [-1, 1] is the middle four of eight bands


def test_heatmap_reads_without_colour():
    rng = random.Random(3)
    entries = [(r.step, r.tensors[0]) for r in (fake_record(step, rng) for step in range(0, 300, 10))]
    text = history_heatmap(entries, False, 60, "none", chosen=0)
    assert isinstance(text, Text) and not any(span.style for span in text.spans if span.style != "dim")
    picture = text.plain.splitlines()[:-2]
    assert {c for line in picture for c in line[9:]} <= set(SHADES)
    assert "▲" in text.plain.splitlines()[-2] and "step 0" in text.plain
    coloured = history_heatmap(entries, True, 60, "standard")
    assert any(span.style not in ("", "dim") for span in coloured.spans)


@pytest.mark.parametrize("mode", MODES)
async def test_scrubber_and_gradient_toggle(mode):
    app, source, _ = live_app("rings", mode, epochs=100_000)
    async with app.run_test(size=(120, 40)) as pilot:
        dash = app.screen
        await until(pilot, lambda: len(dash.history.histories) >= 4, what="records")
        await pilot.press("2")
        await until(pilot, lambda: dash.history.inspection is not None, what="inspection")
        await pilot.press("enter")
        view = dash.query_one(ParamHistory)
        await until(pilot, lambda: "recorded steps" in screen_text(app), what="the history")
        assert view.chosen is None and "values over" in screen_text(app)
        await pilot.press("space")
        await until(pilot, lambda: dash.history.state == "paused", what="paused")
        assert view.index() == len(view.entries()) - 1  # the latest, until moved
        await pilot.press("left")  # one back: chosen holds still when a record still on its way comes in
        assert view.chosen is not None and view.chosen < len(view.entries()) - 1
        await pilot.press("home")
        assert view.index() == 0
        await until(pilot, lambda: "chosen (1 of" in screen_text(app) and "step 0" in screen_text(app), what="first")
        await pilot.press("left")  # nothing before the first
        assert view.index() == 0
        await pilot.press("g")
        await until(pilot, lambda: "gradient over" in screen_text(app), what="gradients")
        assert "no gradient at this step" in screen_text(app)  # the start comes before any backward pass
        await pilot.press("right")
        assert view.index() == 1 and view.gradients
        await pilot.press("end")
        assert view.chosen is None and view.index() == len(view.entries()) - 1
        await pilot.press("g")
        assert not view.gradients
        source.controls.stop()
        await until(pilot, lambda: dash.history.ended, what="the end")
        await until(pilot, lambda: view.entries()[-1][0] == dash.history.step, what="the record at the end")


async def test_watch_shows_the_history_of_a_run_directory(tmp_path):
    trainer, writer = new_run(resolve_config("rings", epochs=20), tmp_path)
    trainer.recorder.interval, trainer.recorder.budget = 0.0, 1.0
    trainer.run()
    recorded = read_histories(writer.run_dir / HISTORIES)
    app = make_app(WatchedRun(str(writer.run_dir)))
    async with app.run_test(size=(120, 40)) as pilot:
        dash = app.screen
        await until(pilot, lambda: dash.history.ended and len(dash.history.histories) == len(recorded), what="records")
        await pilot.press("2")
        await until(pilot, lambda: dash.history.inspection is not None, what="checkpoint inspection")
        await pilot.press("enter")
        await until(pilot, lambda: f"over {len(recorded)} recorded steps" in screen_text(app), what="the history")
        await pilot.press("home")
        assert dash.query_one(ParamHistory).index() == 0
        await until(pilot, lambda: "chosen (1 of" in screen_text(app), what="the first record")
        ratio = dash.query_one("#history-ratio").chart
        assert ratio.log_y and [line.label for line in ratio.lines] == ["0.001", "layers.3", "layers.5", "layers.1"]
        dead = dash.query_one("#history-dead").chart
        assert [line.label for line in dead.lines] == ["layers.1", "layers.3"]
        assert len(dead.lines[0].x) == len(recorded)


def test_a_viewer_of_a_resumed_run_loads_the_steps_before_it(tmp_path):
    """The app after R (recover): the file's records first, then the resumed run's, which replace redone steps."""
    path, rng = tmp_path / HISTORIES, random.Random(4)
    log = HistoryLog(path)
    for step in range(0, 100, 10):
        log.append(fake_record(step, rng))
    log.close()
    seen = Histories()
    assert seen.load(tmp_path) and [r.step for r in seen.records] == list(range(0, 100, 10))
    seen.add(fake_record(60, rng))  # the resume's first record: its checkpoint was at step 60
    assert [r.step for r in seen.records] == [0, 10, 20, 30, 40, 50, 60]
    assert not Histories().load(tmp_path / "nothing-here")


def test_scrubbed_histogram_bars():
    counts = [0] * BINS
    counts[0], counts[1], counts[2] = 1, 400, 800
    lines = bars(counts, rows=2)
    assert lines[1][:3] == "▁██" and lines[0][:3] == "  █" and lines[1][3:] == " " * (BINS - 3)
