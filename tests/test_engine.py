"""The engine against known answers: seed accuracies, exact gradient steps, control, reproducibility."""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path

import pytest
import torch
from helpers import EventWaiter as Recorder

from tuitrain.config import OPTIMIZERS, apply_overrides, load_preset
from tuitrain.events import EpochEnded, HistoryRecord, Inspection, RunEnded, StateChanged, StepProgress
from tuitrain.training.engine import Trainer
from tuitrain.training.recorder import RECORD_INTERVAL

TINY = str(Path(__file__).parent / "data" / "tiny_rings.toml")
TIMEOUT = 60  # seconds; only reached when something is broken


def train(config, **overrides):
    events = []
    trainer = Trainer(apply_overrides(config, **overrides), [events.append])
    end = trainer.run()
    return trainer, end, events


def test_single_neuron_separates_blobs():
    _, end, _ = train(load_preset("neuron"))
    assert end.status == "completed"
    assert end.test.accuracy >= 0.95


@pytest.mark.slow  # the preset's full 1000 epochs: the acceptance figure, not the edit loop
def test_rings_preset_reaches_seed_accuracy():
    _, end, events = train(load_preset("rings"))
    assert end.test.accuracy >= 0.975
    epochs = [e for e in events if isinstance(e, EpochEnded)]
    assert len(epochs) == 1000 and epochs[-1].valid.accuracy >= 0.975


@pytest.mark.slow  # the acceptance figure at the preset's full length, not the edit loop
def test_square_preset_reaches_seed_mse():
    _, end, _ = train(load_preset("square"))
    assert end.test.accuracy is None
    assert end.test.loss <= 2e-3


def test_square_without_activation_is_stuck_at_a_line():
    _, end, _ = train(load_preset("square"), activation="identity", epochs=200)
    assert end.test.loss > 0.05  # a straight line cannot fit x^2: the seed's 0.088


def test_wave_preset_fits_the_trend():
    _, end, _ = train(load_preset("wave"))
    assert end.test.loss < 0.2  # standardized units; predicting the mean scores 1.0


def test_neuron_step_matches_hand_computed_gradient():
    config = apply_overrides(load_preset("neuron"), batch_size=100_000, epochs=1, lr=0.5)
    trainer = Trainer(config)
    x, y = trainer.data.train.x, trainer.data.train.y
    w0 = trainer.model.linear.weight.detach().clone()
    b0 = trainer.model.linear.bias.detach().clone()
    residual = torch.sigmoid(x @ w0.T + b0) - y  # d(BCE)/d(logit), per sample
    expected_w = w0 - 0.5 * (residual * x).mean(0, keepdim=True)
    expected_b = b0 - 0.5 * residual.mean(0)
    trainer.run()
    assert trainer.step == 1
    torch.testing.assert_close(trainer.model.linear.weight.detach(), expected_w)
    torch.testing.assert_close(trainer.model.linear.bias.detach(), expected_b)


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_every_optimizer_lowers_the_loss(optimizer):
    lrs = {"sgd": 0.5, "momentum": 0.1, "nesterov": 0.1, "adagrad": 0.05}
    config = apply_overrides(load_preset(TINY), optimizer=optimizer, lr=lrs.get(optimizer, 0.01), epochs=5)
    trainer = Trainer(config)
    before = trainer.evaluate(trainer.data.valid).loss
    end = trainer.run()
    assert end.status == "completed"
    assert trainer.evaluate(trainer.data.valid).loss < 0.8 * before


def run_summary(config):
    trainer, end, events = train(config)
    epochs = [(e.train.loss, e.valid.loss, e.valid.accuracy) for e in events if isinstance(e, EpochEnded)]
    params = [p.detach().clone() for p in trainer.model.parameters()]
    return end.test, epochs, params


def test_same_seed_same_numbers_on_cpu():
    config = load_preset(TINY)
    first, second = run_summary(config), run_summary(config)
    assert first[0] == second[0] and first[1] == second[1]
    for a, b in zip(first[2], second[2], strict=True):
        assert torch.equal(a, b)
    other = run_summary(apply_overrides(config, seed=2))
    assert other[1] != first[1]


def test_divergence_stops_with_advice():
    _, end, _ = train(load_preset("square"), lr=50.0, epochs=50)
    assert end.status == "diverged"
    assert "lower learning rate" in end.message and "--lr" in end.message
    assert end.test is None


def test_pause_step_lr_inspect_stop_from_another_thread():
    config = apply_overrides(load_preset("rings"), epochs=100_000, batch_size=50)
    recorder = Recorder()
    trainer = Trainer(config, [recorder])
    worker = threading.Thread(target=trainer.run)
    worker.start()
    try:
        recorder.wait_for(lambda e: isinstance(e, StepProgress))
        trainer.pause()
        recorder.wait_for(lambda e: isinstance(e, StateChanged) and e.state == "paused")
        paused_at = trainer.step
        # what a paused screen shows is where the run paused, not the last report up to 0.1 s before it
        shown = [e for e in recorder.events if isinstance(e, StepProgress)][-1]
        assert shown.step == paused_at and shown.epoch_step == trainer.epoch_step
        mark = len(recorder.events)
        trainer.step_once()
        progress = recorder.wait_for(lambda e: isinstance(e, StepProgress), mark)
        assert progress.step == paused_at + 1 == trainer.step
        mark = len(recorder.events)
        trainer.set_lr(0.123)
        changed = recorder.wait_for(lambda e: isinstance(e, StateChanged), mark)
        assert (changed.state, changed.lr, trainer.lr) == ("paused", 0.123, 0.123)
        mark = len(recorder.events)
        trainer.request_inspection()
        seen = recorder.wait_for(lambda e: isinstance(e, Inspection), mark)
        assert [p.name for p in seen.params] == [n for n, _ in trainer.model.named_parameters()]
        assert trainer.step == paused_at + 1  # nothing stepped while paused
        trainer.resume()
        mark = len(recorder.events)
        trainer.request_inspection()
        live = recorder.wait_for(lambda e: isinstance(e, Inspection), mark)
        assert all(p.update_ratio is not None and p.grad_norm is not None for p in live.params)
        assert live.predictions.kind == "points" and live.predictions.grid.shape[-1] == 3
    finally:
        trainer.stop()
        worker.join(TIMEOUT)
    end = recorder.events[-1]
    assert isinstance(end, RunEnded) and end.status == "interrupted" and end.test is not None


def test_inspection_costs_nothing_unasked():
    recorder = Recorder()
    Trainer(load_preset(TINY), [recorder]).run()
    assert not any(isinstance(e, Inspection) for e in recorder.events)


def test_events_are_plain_dataclasses():
    _, _, events = train(load_preset(TINY))
    assert [e.event for e in events][:1] == ["start"] and events[-1].event == "end"
    assert all(dataclasses.is_dataclass(e) for e in events)


def test_histories_are_recorded_only_while_switched_on():
    config = apply_overrides(load_preset("rings"), epochs=100_000, batch_size=50)
    recorder = Recorder()
    trainer = Trainer(config, [recorder])
    assert trainer.histories
    worker = threading.Thread(target=trainer.run)
    worker.start()
    records = lambda start=0: [e for e in recorder.events[start:] if isinstance(e, HistoryRecord)]  # noqa: E731
    try:
        recorder.wait_for(lambda e: isinstance(e, HistoryRecord) and e.step > 0)  # on by default
        trainer.pause()
        recorder.wait_for(lambda e: isinstance(e, StateChanged) and e.state == "paused")
        trainer.set_histories(False)
        assert not trainer.histories  # at once, though the loop takes it at its next step boundary
        mark, off_at = len(recorder.events), trainer.step
        trainer.resume()
        recorder.wait_for(lambda e: isinstance(e, StepProgress) and e.step > off_at + 200, mark)
        time.sleep(4 * RECORD_INTERVAL)  # several records' worth of time
        trainer.pause()
        recorder.wait_for(lambda e: isinstance(e, StateChanged) and e.state == "paused", mark)
        assert records(mark) == [], "recorded while switched off"
        trainer.set_histories(True)
        assert trainer.histories
        on_at = trainer.step
        mark = len(recorder.events)
        trainer.resume()
        again = recorder.wait_for(lambda e: isinstance(e, HistoryRecord), mark)
        assert again.step > on_at
    finally:
        trainer.stop()
        worker.join(TIMEOUT)
    assert isinstance(recorder.events[-1], RunEnded)


def test_histories_switched_off_before_the_run_are_never_recorded():
    recorder = Recorder()
    trainer = Trainer(load_preset(TINY), [recorder])
    trainer.set_histories(False)
    assert not trainer.histories
    assert trainer.run().status == "completed"
    assert not any(isinstance(e, HistoryRecord) for e in recorder.events)
    recorder = Recorder()
    Trainer(load_preset(TINY), [recorder]).run()  # the same run, switched on: it records
    assert any(isinstance(e, HistoryRecord) for e in recorder.events)


def test_no_histories_in_the_configuration_leaves_nothing_to_switch_on():
    recorder = Recorder()
    trainer = Trainer(apply_overrides(load_preset(TINY), histories=False), [recorder])
    assert not trainer.histories
    trainer.set_histories(True)  # --no-histories: the run's choice stands
    assert not trainer.histories
    trainer.run()
    assert not any(isinstance(e, HistoryRecord) for e in recorder.events)
