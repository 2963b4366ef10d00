"""The CUDA path: train, steer, look inside, checkpoint and resume on a GPU, without per-step host syncs.

Skipped (with the reason) where torch sees no GPU.
"""

from __future__ import annotations

import threading
import warnings
from pathlib import Path

import pytest
import torch

from tuitrain.config import apply_overrides, load_preset
from tuitrain.events import Inspection, RunEnded, StateChanged, StepProgress
from tuitrain.runs import start as session
from tuitrain.training.engine import Trainer

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU visible to torch")

TINY = str(Path(__file__).parent / "data" / "tiny_rings.toml")
TIMEOUT = 60


def test_trains_on_the_gpu_with_data_and_weights_there():
    events: list = []
    trainer = Trainer(apply_overrides(load_preset("rings"), device="cuda", epochs=200), [events.append])
    assert trainer.data.train.x.is_cuda and next(trainer.model.parameters()).is_cuda
    end = trainer.run()
    assert end.status == "completed" and end.test.accuracy > 0.9
    assert events[0].device.startswith("cuda")


def test_no_host_sync_per_step():
    """Steps only queue GPU work: the loop reads back once per progress interval, not once a step."""
    config = apply_overrides(load_preset(TINY), device="cuda", epochs=30, batch_size=10)
    events: list = []
    trainer = Trainer(config, [events.append])
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            trainer.run()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    syncs = sum("synchroniz" in str(w.message) for w in caught)
    reports = sum(isinstance(e, StepProgress) for e in events)
    epochs = config.train.epochs
    # each report reads its window (loss, accuracy); each epoch its sums and its evaluation
    assert syncs <= 3 * reports + 12 * (epochs + 1), (syncs, reports, trainer.step)
    assert syncs < trainer.step / 2


def test_pause_step_inspect_on_the_gpu():
    events: list = []
    done = threading.Event()
    trainer = Trainer(apply_overrides(load_preset("rings"), device="cuda", epochs=100_000), [events.append])
    worker = threading.Thread(target=lambda: (trainer.run(), done.set()))
    worker.start()
    try:
        while not any(isinstance(e, StepProgress) for e in events):
            done.wait(0.05)
        trainer.pause()
        while not any(isinstance(e, StateChanged) and e.state == "paused" for e in events):
            done.wait(0.05)
        at = trainer.step
        trainer.step_once()
        trainer.request_inspection()
        while not any(isinstance(e, Inspection) for e in events) or trainer.step == at:
            done.wait(0.05)
        assert trainer.step == at + 1
        inspection = next(e for e in events if isinstance(e, Inspection))
        assert inspection.params and inspection.predictions is not None
    finally:
        trainer.stop()
        worker.join(TIMEOUT)
    assert isinstance(events[-1], RunEnded)


def test_checkpoint_resume_on_the_gpu(tmp_path: Path):
    config = apply_overrides(load_preset(TINY), device="cuda", epochs=2)
    trainer, writer = session.new_run(config, tmp_path)
    trainer.run()
    writer.close()
    resumed, resumed_writer = session.resume_run(writer.run_dir, epochs=4)
    assert next(resumed.model.parameters()).is_cuda and resumed.epoch == 2
    end = resumed.run()
    resumed_writer.close()
    assert end.status == "completed" and resumed.epoch == 4
