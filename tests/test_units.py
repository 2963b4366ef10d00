"""What each unit learned (tuitrain.training.units): known answers computed by hand, and the plumbing."""

from __future__ import annotations

import threading
import time

import pytest
import torch
from conftest import TINY, train_tiny
from helpers import EventWaiter as Recorder
from torch import nn

from tuitrain.config import apply_overrides, load_preset, resolve_config
from tuitrain.data.sets import load_dataset
from tuitrain.events import Inspection, StateChanged, StepProgress
from tuitrain.training import inspection
from tuitrain.training.engine import Trainer
from tuitrain.training.models import build_model
from tuitrain.training.units import CURVE_POINTS, MAP_SIDE, TOP_TEMPLATES, Units, compute_units, plane_points

TIMEOUT = 30.0


def network(preset: str, hidden: list[int] | None = None, samples: int | None = None, **overrides):
    """A freshly built network of `preset` and its data (seeded: the same every time)."""
    config = resolve_config(preset, **overrides)
    if hidden is not None:
        config.model.hidden = hidden
    if samples is not None:
        config.data.samples = samples
    data = load_dataset(config.data, config.train.seed)
    torch.manual_seed(0)
    return build_model(config.model, data.input_shape, data.num_outputs), data


def by_hand_rings(model, data) -> tuple[torch.Tensor, torch.Tensor, tuple]:
    """Both hidden layers of an MLP 2-h-h-3 over the decision regions' plane, computed directly."""
    everything = torch.cat([data.train.x, data.test.x])
    lo, hi = everything.min(0).values, everything.max(0).values
    ys, xs = torch.linspace(lo[1], hi[1], MAP_SIDE), torch.linspace(lo[0], hi[0], MAP_SIDE)
    points = torch.stack([xs.repeat(MAP_SIDE), ys.repeat_interleave(MAP_SIDE)], 1)  # row 0 = bottom
    first, second = model.layers[1], model.layers[3]
    with torch.no_grad():
        h1 = torch.relu(points @ first.weight.T + first.bias)
        h2 = torch.relu(h1 @ second.weight.T + second.bias)
    bounds = (lo[0].item(), hi[0].item(), lo[1].item(), hi[1].item())
    return h1.T.reshape(-1, MAP_SIDE, MAP_SIDE), h2.T.reshape(-1, MAP_SIDE, MAP_SIDE), bounds


def test_rings_maps_every_hidden_unit_as_computed_by_hand():
    model, data = network("rings", hidden=[100, 100], samples=600)
    units = compute_units(model, data)
    assert units.kind == "maps" and units.maps is not None
    assert [layer.name for layer in units.maps.layers] == ["layers.1", "layers.3"]
    h1, h2, bounds = by_hand_rings(model, data)
    assert units.maps.bounds == pytest.approx(bounds)
    for layer, want, linear in zip(units.maps.layers, (h1, h2), (model.layers[1], model.layers[3]), strict=True):
        assert layer.activations.shape == (100, MAP_SIDE, MAP_SIDE)
        torch.testing.assert_close(layer.activations, want, atol=1e-6, rtol=0)
        assert torch.equal(layer.weights, linear.weight.detach()) and torch.equal(layer.bias, linear.bias.detach())
        assert layer.weights.data_ptr() != linear.weight.data_ptr()  # a copy: training changes the live one
    # the same plane as the decision regions
    predictions = inspection.predictions(model, data, inspection.sample_indices(data))
    assert predictions.bounds == units.maps.bounds
    assert plane_points(units.maps.bounds)[0].tolist() == pytest.approx([bounds[0], bounds[2]])


def test_maps_are_over_the_data_as_the_network_sees_it_when_standardized():
    model, data = network("rings", hidden=[8], samples=400)
    data.train.x, data.test.x = data.train.x * 3 + 1, data.test.x * 3 + 1  # as _standardize leaves it: scaled
    units = compute_units(model, data)
    assert units.maps is not None
    assert units.maps.bounds == inspection.predictions(model, data, inspection.sample_indices(data)).bounds


def test_square_contributions_sum_to_the_fitted_curve_with_kinks_at_minus_b_over_w():
    model, data = network("square", hidden=[16], samples=300)
    units = compute_units(model, data)
    assert units.kind == "curves" and units.curves is not None
    curves = units.curves
    assert curves.layer == "layers.1" and curves.contributions.shape == (16, CURVE_POINTS)
    with torch.no_grad():
        direct = model(curves.x.unsqueeze(1))[:, 0]
    torch.testing.assert_close(curves.contributions.sum(0) + curves.bias, direct, atol=1e-5, rtol=0)
    torch.testing.assert_close(curves.output, direct, atol=1e-6, rtol=0)
    hidden, head = model.layers[1], model.layers[3]
    w, b = hidden.weight.detach()[:, 0], hidden.bias.detach()
    assert curves.kinks is not None
    torch.testing.assert_close(curves.kinks, -b / w)
    # each hinge w_out * relu(w_in * x + b) by hand
    hinge = head.weight.detach()[0, :, None] * torch.relu(w[:, None] * curves.x[None, :] + b[:, None])
    torch.testing.assert_close(curves.contributions, hinge, atol=1e-6, rtol=0)
    # the fitted curve is the one the predictions viewer draws
    predictions = inspection.predictions(model, data, inspection.sample_indices(data))
    torch.testing.assert_close(predictions.curve_x, curves.x)
    torch.testing.assert_close(predictions.curve_y, curves.output)


def test_a_deeper_curve_network_has_no_kinks_and_still_sums():
    model, data = network("wave", hidden=[8, 6], samples=300)
    curves = compute_units(model, data).curves
    assert curves is not None and curves.layer == "layers.3" and curves.kinks is None
    assert curves.contributions.shape == (6, CURVE_POINTS)
    torch.testing.assert_close(curves.contributions.sum(0) + curves.bias, curves.output, atol=1e-5, rtol=0)


def test_lenet_steps_one_test_image_through_its_stages(idx_dir):
    model, data = network("lenet", dataset="mnist", data_dir=str(idx_dir))
    units = compute_units(model, data, sample=3)
    assert units.kind == "features" and units.features is not None
    features = units.features
    assert (features.sample, features.label) == (3, int(data.test.y[3]))
    assert features.class_names == list(data.class_names) and len(features.class_names) == 10
    assert features.image.shape == (28, 28)  # before LeNet's 2-pixel padding
    shapes = {stage.name: tuple(stage.maps.shape) for stage in features.stages}
    assert shapes == {"conv1": (6, 28, 28), "pool1": (6, 14, 14), "conv2": (16, 10, 10), "pool2": (16, 5, 5)}
    assert [stage.layer for stage in features.stages] == ["features.1", "features.2", "features.4", "features.5"]
    x = data.test.x[3:4]
    with torch.no_grad():
        conv1 = torch.relu(model.features[0](nn.functional.pad(x, (2, 2, 2, 2))))[0]
        scores = model(x).softmax(1)[0]
    torch.testing.assert_close(features.stages[0].maps, conv1)
    torch.testing.assert_close(features.stages[1].maps, nn.functional.max_pool2d(conv1, 2))
    torch.testing.assert_close(features.scores, scores)
    assert compute_units(model, data, sample=10**6).features.sample == len(data.test) - 1  # clamped


def test_an_mlp_on_images_shows_its_most_active_first_layer_units_as_templates(idx_dir):
    model, data = network("mlp", dataset="mnist", data_dir=str(idx_dir), hidden=[32, 16])
    features = compute_units(model, data, sample=5).features
    assert features is not None and not features.stages
    templates = features.templates
    assert len(templates) == TOP_TEMPLATES
    assert all(t.weights.shape == (28, 28) for t in templates)
    activations = [t.activation for t in templates]
    assert activations == sorted(activations, reverse=True)
    first = model.layers[1]
    with torch.no_grad():
        direct = torch.relu(first(data.test.x[5].reshape(1, -1)))[0]
    assert templates[0].activation == pytest.approx(direct.max().item(), abs=1e-6)
    assert templates[0].activation == pytest.approx(direct[templates[0].unit].item(), abs=1e-6)
    assert torch.equal(templates[0].weights, first.weight.detach()[templates[0].unit].reshape(28, 28))


def test_a_single_neuron_has_nothing_to_show_and_says_why():
    model, data = network("neuron")
    units = compute_units(model, data)
    assert units.kind == "none" and "no hidden units" in units.reason


def test_the_network_is_left_as_it_was():
    model, data = network("rings", hidden=[4], samples=200)
    model.train()
    compute_units(model, data)
    assert model.training
    model.eval()
    compute_units(model, data)
    assert not model.training


def test_compute_units_is_cheap():
    model, data = network("rings", hidden=[100, 100], samples=600)
    compute_units(model, data)
    start = time.perf_counter()
    for _ in range(5):
        compute_units(model, data)
    assert (time.perf_counter() - start) / 5 < 0.05  # seconds; about 1 ms on one core


# ----------------------------------------------------------------------------- plumbing


def same_units(a: Units, b: Units) -> None:
    assert a.kind == b.kind and a.maps is not None and b.maps is not None
    assert a.maps.bounds == b.maps.bounds
    for x, y in zip(a.maps.layers, b.maps.layers, strict=True):
        assert x.name == y.name
        torch.testing.assert_close(x.activations, y.activations)
        torch.testing.assert_close(x.weights, y.weights)


def test_an_engine_run_answers_a_units_request_paused_and_live():
    config = apply_overrides(load_preset(TINY), epochs=100_000)
    recorder = Recorder()
    trainer = Trainer(config, [recorder])
    worker = threading.Thread(target=trainer.run, daemon=True)
    worker.start()
    try:
        recorder.wait_for(lambda e: isinstance(e, StepProgress))
        trainer.pause()
        recorder.wait_for(lambda e: isinstance(e, StateChanged) and e.state == "paused")
        mark = len(recorder.events)
        trainer.request_inspection(units=True)
        paused = recorder.wait_for(lambda e: isinstance(e, Inspection), mark)
        assert paused.params == [] and paused.predictions is None and paused.step == trainer.step
        same_units(paused.units, compute_units(trainer.model, trainer.data))
        mark = len(recorder.events)
        trainer.request_inspection()  # the parameters' look is as it was
        looked = recorder.wait_for(lambda e: isinstance(e, Inspection), mark)
        assert looked.units is None and looked.params and looked.predictions.kind == "points"
        trainer.resume()
        mark = len(recorder.events)
        trainer.request_inspection(units=True)
        trainer.request_inspection()
        recorder.wait_for(lambda e: len([x for x in recorder.events[mark:] if isinstance(x, Inspection)]) >= 2)
        live = [e for e in recorder.events[mark:] if isinstance(e, Inspection)][:2]
        assert [e.units is not None for e in live] == [True, False]  # both asks answered, in order
        assert live[0].units.maps.layers[0].activations.shape == (32, MAP_SIDE, MAP_SIDE)
        assert all(p.update_ratio is not None for p in live[1].params)
    finally:
        trainer.stop()
        worker.join(TIMEOUT)
    finished = trainer.inspect(units=True)  # after the end: from the final network
    same_units(finished.units, compute_units(trainer.model, trainer.data))


def test_a_watched_run_answers_from_its_checkpoint(tmp_path):
    from tuitrain.store import checkpoints
    from tuitrain.store.run_dir import CHECKPOINTS
    from tuitrain.tui.source import WatchedRun

    run_dir = train_tiny(tmp_path, epochs=2)
    watched = WatchedRun(str(run_dir))
    found = watched.inspect(units=True)
    assert found is not None and found.units.kind == "maps" and found.params == []
    assert found.epoch == checkpoints.load(run_dir / CHECKPOINTS["last"])["epoch"] == 2  # "as of epoch 2"
    assert watched.inspect(units=True) is None  # nothing new
    other = watched.inspect()  # the parameters' look, from the same checkpoint
    assert other is not None and other.units is None and other.params
    assert watched.inspect() is None
    same_units(found.units, compute_units(watched.trainer.model, watched.trainer.data))


@pytest.mark.slow  # a real child process
def test_a_child_process_carries_units_across_its_pipe(tmp_path):
    from tuitrain.runs.remote import RemoteTrainer

    config = apply_overrides(load_preset(TINY), epochs=100_000)
    control = RemoteTrainer(config, str(tmp_path))
    events: list = []
    worker = threading.Thread(target=control.run, args=(events.append,), daemon=True)
    worker.start()
    try:
        deadline = time.monotonic() + TIMEOUT
        while not any(isinstance(e, StepProgress) for e in events) and time.monotonic() < deadline:
            time.sleep(0.02)
        control.pause()
        control.request_inspection(units=True)
        while not any(isinstance(e, Inspection) for e in events) and time.monotonic() < deadline:
            time.sleep(0.02)
        live = next(e for e in events if isinstance(e, Inspection))
        assert live.units.kind == "maps" and [layer.name for layer in live.units.maps.layers] == [
            "layers.1",
            "layers.3",
        ]
    finally:
        control.stop()
        worker.join(TIMEOUT)
    finished = control.inspect(units=True)  # the Inspect command, served by the finished child
    assert finished is not None and finished.units.kind == "maps" and finished.params == []
    control.close()
    control.join(TIMEOUT)
