"""The Units panel (key 4): what each hidden unit learned, drawn from a Units (tuitrain.training.units).

Widget tests build Units by hand; Pilot tests run real presets (rings, square, lenet) in the app."""

from __future__ import annotations

import pytest
import torch
from helpers import check_snapshot, live_app, screen_text, until
from textual.app import App, ComposeResult

from tuitrain.training.units import (
    MAP_SIDE,
    FeatureMaps,
    FeatureStage,
    LayerMaps,
    UnitCurves,
    UnitMaps,
    Units,
)
from tuitrain.tui.widgets.units import UnitsPanel
from tuitrain.tui.widgets.units_draw import POSITIVE_SHADES, map_grid, unit_char


def hand_maps(sizes=(100, 100), seed: int = 0) -> Units:
    """ReLU units over [-1, 1]^2: unit j of the first layer is relu(w·(x, y) + b)."""
    g = torch.Generator().manual_seed(seed)
    side = torch.linspace(-1, 1, MAP_SIDE)
    ys, xs = torch.meshgrid(side, side, indexing="ij")  # row 0 = bottom (ymin)
    plane = torch.stack([xs.reshape(-1), ys.reshape(-1)], 1)
    layers, inputs, width = [], plane, 2
    for index, units in enumerate(sizes):
        w, b = torch.randn(units, width, generator=g), torch.randn(units, generator=g) * 0.3
        inputs = torch.relu(inputs @ w.T + b)
        acts = inputs.T.reshape(units, MAP_SIDE, MAP_SIDE)
        layers.append(LayerMaps(f"layers.{2 * index + 1}", acts, w, b))
        width = units
    return Units("maps", maps=UnitMaps((-1.0, 1.0, -1.0, 1.0), layers))


def hand_curves(units: int = 5) -> Units:
    x = torch.linspace(-1, 1, 200)
    w_in, b = torch.linspace(-2, 2, units), torch.linspace(-0.5, 0.5, units)
    w_out = torch.ones(units)
    contributions = w_out[:, None] * torch.relu(w_in[:, None] * x[None] + b[:, None])
    output = contributions.sum(0) + 0.1
    kinks = -b / w_in
    return Units("curves", curves=UnitCurves("layers.1", x, contributions, 0.1, output, kinks))


def hand_features() -> Units:
    g = torch.Generator().manual_seed(1)
    stages = [
        FeatureStage("conv1", torch.rand(6, 28, 28, generator=g)),
        FeatureStage("pool1", torch.rand(6, 14, 14, generator=g)),
        FeatureStage("conv2", torch.rand(16, 10, 10, generator=g)),
        FeatureStage("pool2", torch.rand(16, 5, 5, generator=g)),
    ]
    scores = torch.softmax(torch.randn(10, generator=g), 0)
    return Units("features", features=FeatureMaps(3, 2, torch.rand(28, 28, generator=g), scores, stages))


class PanelApp(App[None]):
    def __init__(self, units: Units, when: str = "live") -> None:
        super().__init__()
        self.units, self.when = units, when

    def compose(self) -> ComposeResult:
        yield UnitsPanel(id="units-panel")

    def on_mount(self) -> None:
        self.query_one(UnitsPanel).show(self.units, self.when)
        self.query_one(UnitsPanel).focus()


def test_no_color_draws_shades_and_colour_draws_none():
    layer = hand_maps((6,)).maps.layers[0]  # type: ignore[union-attr]
    drawn, _ = map_grid([layer], 96, "none", (0, 0))
    plain = drawn.text()
    assert any(char in plain.plain for char in POSITIVE_SHADES)
    assert all(span.style.color is None and span.style.bgcolor is None for span in plain.spans)  # no colour
    coloured = map_grid([layer], 96, "256", (0, 0))[0].text()
    assert not any(char in coloured.plain for char in POSITIVE_SHADES)
    assert "▀" in coloured.plain
    assert unit_char(0.0) == "·" and unit_char(1.0) == "█" and unit_char(-1.0) == "≡"


async def test_maps_grid_cursor_and_enlarged_unit():
    app = PanelApp(hand_maps((100, 100)))
    async with app.run_test(size=(100, 30)) as pilot:
        panel = app.query_one(UnitsPanel)
        await pilot.pause()
        text = screen_text(app)
        assert "hidden layer 1 (layers.1)  100 units" in text and "live" in text
        assert len(panel.places) == 2 and [p.units for p in panel.places] == [100, 100]
        await pilot.press("right", "right", "down")
        assert panel.cursor == (0, 2 + panel.places[0].columns)
        await pilot.press("enter")
        await pilot.pause()
        text = screen_text(app)
        assert f"hidden layer 1, unit {panel.cursor[1]}" in text and "bias" in text and "x1 " in text
        await pilot.press("escape")
        assert not panel.enlarged
        for _ in range(12):  # down off the first layer into the second
            await pilot.press("down")
        assert panel.cursor[0] == 1


async def test_curves_chart_and_kinks():
    app = PanelApp(hand_curves(), "as of epoch 7")
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        text = screen_text(app)
        assert "as of epoch 7" in text and "5 unit contributions" in text
        assert "kinks in range" in text and "▲" in text


async def test_features_rows_and_sample_keys():
    app = PanelApp(hand_features())
    messages: list[UnitsPanel.SampleChanged] = []

    def hook(message) -> None:
        if isinstance(message, UnitsPanel.SampleChanged) and message not in messages:  # once, not per bubble hop
            messages.append(message)

    async with app.run_test(size=(100, 60), message_hook=hook) as pilot:
        panel = app.query_one(UnitsPanel)
        panel.class_names = ["zero", "one", "two", *map(str, range(3, 10))]
        panel.redraw()
        await pilot.pause()
        text = screen_text(app)
        assert "test sample 3" in text and "true class two" in text
        assert "conv1 6x28x28" in text and "conv2 16x10x10" in text and "class scores" in text
        await pilot.press("full_stop", "full_stop", "comma")
        assert panel.sample == 1 and [m.sample for m in messages] == [1, 2, 1]


async def test_no_hidden_units_says_why():
    app = PanelApp(Units("none", reason="a single neuron has no hidden units"))
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        assert "a single neuron has no hidden units" in screen_text(app)


# ----------------------------------------------------------------------------- the app on real runs
def units_of(dash):
    return dash.query_one(UnitsPanel)


async def open_units_while_training(pilot, dash) -> UnitsPanel:
    """Once the live run has stepped: `4`, then wait for the first units from the training process."""
    await until(pilot, lambda: dash.history.state == "running" and dash.history.step > 0, what="running")
    await pilot.press("4")
    panel = units_of(dash)
    await until(pilot, lambda: panel.units is not None, what="units")
    return panel


async def test_rings_lists_every_hidden_layer_and_updates_after_a_single_step():
    app, source, _ = live_app("rings", epochs=100_000)
    async with app.run_test(size=(100, 30)) as pilot:
        dash = app.screen
        panel = await open_units_while_training(pilot, dash)
        assert panel.units.kind == "maps"
        assert [int(layer.activations.shape[0]) for layer in panel.units.maps.layers] == [100, 100]
        await pilot.pause()
        assert [place.units for place in panel.places] == [100, 100]
        text = screen_text(app)
        assert "hidden layer 1 (layers.1)  100 units" in text and "live" in text
        await pilot.press("space")
        await until(pilot, lambda: dash.history.state == "paused" and panel.when == "paused", what="paused units")
        before_step = dash.looking.units_shown[0]
        before = panel.units.maps.layers[1].activations.clone()
        await pilot.press("n")
        await until(pilot, lambda: dash.looking.units_shown[0] > before_step, what="units after a single step")
        after = panel.units.maps.layers[1].activations
        assert not torch.equal(before, after)
        assert "paused" in screen_text(app)
        source.controls.stop()


async def test_square_draws_the_contribution_curves():
    app, _, _ = live_app("square", epochs=3)
    async with app.run_test(size=(100, 30)) as pilot:
        dash = app.screen
        await pilot.press("4")
        panel = units_of(dash)
        await until(pilot, lambda: dash.history.ended, what="run end")
        await until(
            pilot,
            lambda: panel.units is not None and panel.when == f"as of epoch {dash.history.epoch}",
            what="units of the final network",
        )
        assert panel.units.kind == "curves" and panel.units.curves.contributions.shape[0] == 100
        await pilot.pause()
        text = screen_text(app)
        assert "100 unit contributions (layers.1)" in text and "kinks in range" in text
        assert f"as of epoch {dash.history.epoch}" in text
        assert "⣿" in text or any("\u2800" < char <= "\u28ff" for char in text)  # braille lines drawn


async def test_lenet_steps_the_chosen_sample_through_conv1(tmp_path):
    from conftest import make_idx_set

    folder = make_idx_set(tmp_path / "fashion")
    app, source, _ = live_app("lenet", dataset="fashion-mnist", data_dir=str(folder), epochs=100_000, device="cpu")
    async with app.run_test(size=(100, 30)) as pilot:
        dash = app.screen
        panel = await open_units_while_training(pilot, dash)
        features = panel.units.features
        assert panel.units.kind == "features" and features.sample == 0 and panel.when == "live"
        conv1 = next(stage for stage in features.stages if stage.name == "conv1")
        assert conv1.maps.shape[0] == 6
        await pilot.pause()
        text = screen_text(app)
        assert "test sample 0" in text and "conv1 6x28x28" in text
        assert "0               1               2               3               4               5" in text
        await pilot.press("full_stop")  # live: asked of the training process
        await until(pilot, lambda: panel.units.features.sample == 1, what="the next sample, live")
        assert "test sample 1" in screen_text(app)
        source.controls.stop()
        await until(pilot, lambda: dash.history.ended, what="stopped")
        await pilot.press("full_stop")  # after the end: from the final weights
        await until(
            pilot,
            lambda: panel.units.features.sample == 2 and panel.when.startswith("as of epoch"),
            what="the sample after that, after the end",
        )


async def test_watched_run_says_as_of_epoch(tmp_path):
    from tuitrain.config import resolve_config
    from tuitrain.runs.start import new_run
    from tuitrain.tui.app import make_app
    from tuitrain.tui.source import WatchedRun

    trainer, writer = new_run(resolve_config("rings", epochs=2), tmp_path)
    trainer.run()
    app = make_app(WatchedRun(str(writer.run_dir)))
    async with app.run_test(size=(100, 30)) as pilot:
        dash = app.screen
        await until(pilot, lambda: dash.history.ended, what="the run's end event")
        await pilot.press("4")
        panel = units_of(dash)
        await until(pilot, lambda: panel.units is not None, what="units from the checkpoint")
        await pilot.pause()
        assert "as of epoch 2" in screen_text(app)
        assert [place.units for place in panel.places] == [100, 100]


@pytest.mark.slow  # a real training process
async def test_units_from_the_training_process():
    app, source, _ = live_app("rings", "child-process", epochs=100_000)
    async with app.run_test(size=(100, 30)) as pilot:
        dash = app.screen
        await pilot.press("4")
        panel = units_of(dash)
        await until(pilot, lambda: panel.units is not None and panel.when == "live", what="units", timeout=60)
        assert [place.units for place in panel.places] == [100, 100]
        source.controls.stop()


async def test_snapshot_finished_rings_units(monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")  # the maps as shades: the snapshot shows what each unit learned
    app, _, _ = live_app("rings", show_speed=False, epochs=2, seed=0)
    async with app.run_test(size=(100, 30)) as pilot:
        dash = app.screen
        await until(pilot, lambda: dash.history.ended, what="run end")
        await pilot.press("4")
        panel = units_of(dash)
        await until(
            pilot,
            lambda: panel.units is not None and dash.looking.units_shown == (dash.history.step, 0),
            what="units of the final network",
        )
        await pilot.pause()
        text = screen_text(app)
        assert "▀" not in text and any(char in text for char in POSITIVE_SHADES)
        check_snapshot("rings_finished_units_100x30", text)


async def test_mlp_sample_chosen_in_an_opened_confusion_cell_shows_its_templates(tmp_path):
    from conftest import make_idx_set
    from helpers import open_predictions

    from tuitrain.training.inspection import sample_indices
    from tuitrain.tui.widgets.samples import CELL_WIDTH

    folder = make_idx_set(tmp_path / "fashion")
    app, _, factory = live_app("mlp", dataset="fashion-mnist", data_dir=str(folder), epochs=1, device="cpu")
    async with app.run_test(size=(100, 34)) as pilot:
        dash = app.screen
        predictions = await open_predictions(app, pilot)
        panel = units_of(dash)
        # a click on the grid's second image: its index into the test split, as the engine chose the sample
        await pilot.click("#pred-body", offset=(CELL_WIDTH + 1, 1))
        second = int(sample_indices(factory.trainer.data)[predictions.visible_indices()[0][1]])
        await until(pilot, lambda: panel.sample == second, what="the clicked image chosen for the Units panel")
        row, column = next(
            (r, c)
            for r in range(predictions.class_count())
            for c in range(predictions.class_count())
            if int(predictions.predictions.confusion[r, c]) and (r, c) != (0, 0)
        )
        predictions.cursor = (row, column)
        await pilot.press("enter")
        surest = predictions.cell_view()[0][0]
        await until(pilot, lambda: panel.sample == surest, what="the cell's surest sample chosen for the Units panel")
        await pilot.press("4")
        await until(
            pilot,
            lambda: panel.units is not None and panel.units.features.sample == surest,
            what="units of that sample",
        )
        features = panel.units.features
        assert features.label == row and features.templates and not features.stages
        await pilot.pause()
        text = screen_text(app)
        assert f"test sample {surest}" in text and "most active" in text
        assert f"true class {predictions.predictions.class_names[row]}" in text


def test_a_diverged_network_has_no_top_class_and_says_why():
    from tuitrain.tui.widgets.units_draw import score_lines

    features = hand_features().features
    assert features is not None
    lines = [line.plain for line in score_lines(features, [], "256")]
    assert sum("✗ top" in line for line in lines) <= 1 and "not finite" not in lines[0]
    features.scores = torch.full((10,), float("nan"))
    lines = [line.plain for line in score_lines(features, [], "256")]
    assert lines[0] == "class scores  not finite: the weights diverged"
    assert not any("✗ top" in line for line in lines) and "█" not in "".join(lines)
    assert "nan ✓ true" in lines[1 + features.label]
