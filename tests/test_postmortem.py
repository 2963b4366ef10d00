"""The divergence post-mortem against known answers: the module, where, the step and the batch where a
value first became NaN or infinite; the end event, summary.json and the headless end carry it."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import run_cli
from torch import nn

from tuitrain.checks import summary_problem
from tuitrain.config import apply_overrides, load_preset
from tuitrain.events import EpochEnded, RunEnded, event_from_dict, event_to_dict
from tuitrain.runs import start as session
from tuitrain.training import flight
from tuitrain.training.engine import Trainer
from tuitrain.training.postmortem import describe_diagnosis, recover_lr

TINY = str(Path(__file__).parent / "data" / "tiny_rings.toml")
MARKER = (0.123456, -0.654321)  # one training sample is set to this: no other has it


class Tripwire(nn.Module):
    """Passes its input on, except that a batch holding the marker sample comes out infinite."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hit = (x == torch.tensor(MARKER, device=x.device)).all(1).any()
        return x * torch.where(hit, math.inf, 1.0)


class _Blowup(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, armed: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(armed)
        return x.clone()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (armed,) = ctx.saved_tensors
        return grad * torch.where(armed > 0, math.inf, 1.0), None


class GradTrip(nn.Module):
    """The identity forward; once armed (a buffer: checkpoints and snapshots keep it), its backward
    pass makes every gradient through it infinite."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("armed", torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = _Blowup.apply(x, self.armed)
        return out


class Amplify(nn.Module):
    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor


def orders(trainer: Trainer, epochs: int) -> list[torch.Tensor]:
    """The shuffles the trainer will draw, epoch by epoch."""
    generator = torch.Generator(device=trainer.device)
    generator.set_state(trainer.generator.get_state())
    return [torch.randperm(len(trainer.data.train), generator=generator) for _ in range(epochs)]


def test_an_infinite_output_is_named_with_its_step_and_batch() -> None:
    trainer = Trainer(apply_overrides(load_preset(TINY), epochs=2))
    trainer.model.layers.insert(1, Tripwire())  # after Flatten: layers.1 sees the raw samples
    bs = trainer.config.train.batch_size
    batch = 7
    marked = int(orders(trainer, 1)[0][batch * bs + 3])  # the 4th sample of the epoch's 8th batch
    trainer.data.train.x[marked] = torch.tensor(MARKER)
    end = trainer.run()
    assert end.status == "diverged"
    assert end.diagnosis is not None
    assert end.diagnosis["first_nonfinite"] == {
        "module": "layers.1",
        "where": "output",
        "step": batch + 1,
        "batch": batch,
        "epoch": 1,
    }
    assert end.diagnosis["recover_lr"] == trainer.lr / 2 == recover_lr(trainer.lr)
    text = describe_diagnosis(end.diagnosis)
    assert "output of layers.1" in text and "step 8 (batch 7 of epoch 1)" in text and "lr 0.005" in text


def test_an_infinite_gradient_is_named_after_the_layer_whose_backward_made_it(monkeypatch) -> None:
    monkeypatch.setattr(flight, "KEEP_INTERVAL", 0.0)  # a known-good state at every check: replays cross epochs
    monkeypatch.setattr(flight, "KEEP_BUDGET", math.inf)  # (the arming below happens outside the training)
    trainer = Trainer(apply_overrides(load_preset(TINY), epochs=4))
    trainer.model.layers.insert(2, GradTrip())  # after the first Linear (layers.1)
    steps = math.ceil(len(trainer.data.train) / trainer.config.train.batch_size)

    def arm(event: object) -> None:
        if isinstance(event, EpochEnded) and event.epoch == 2:
            trainer.model.layers[2].armed.fill_(1.0)

    trainer.consumers.append(arm)
    end = trainer.run()
    assert end.status == "diverged"
    assert end.diagnosis is not None
    assert end.diagnosis["first_nonfinite"] == {
        "module": "layers.2",
        "where": "gradient",
        "step": 2 * steps + 1,
        "batch": 0,
        "epoch": 3,
    }
    assert len(trainer.flight.snapshots) == 2  # the two newest known-good states, no more


def test_a_loss_that_overflows_from_finite_outputs_is_the_loss() -> None:
    trainer = Trainer(apply_overrides(load_preset("square"), epochs=1))
    trainer.model.layers.append(Amplify(1e25))  # finite outputs whose square error overflows float32
    end = trainer.run()
    assert end.status == "diverged"
    assert end.diagnosis is not None
    assert end.diagnosis["first_nonfinite"] == {"module": "MSELoss", "where": "loss", "step": 1, "batch": 0, "epoch": 1}


def test_growth_names_what_grew_over_the_ring(monkeypatch) -> None:
    monkeypatch.setattr(flight, "RING_BUDGET", 1.0)  # every step recorded, however fast this loop runs
    trainer = Trainer(apply_overrides(load_preset(TINY), epochs=1))
    recorder = trainer.flight
    weight = trainer.model.layers[3].weight
    for step in range(1, 31):  # layers.3.weight's gradient norm: 1, then x40 by the 30th step
        for p in trainer.model.parameters():
            p.grad = torch.ones_like(p) / math.sqrt(p.numel())
        weight.grad = torch.ones_like(weight) / math.sqrt(weight.numel()) * (1 + 39 * (step - 1) / 29)
        recorder.push(step, torch.tensor(0.5))
    growth = recorder.growth()
    assert growth == [{"tensor": "layers.3.weight", "measure": "gradient norm", "factor": 40.0, "over_steps": 29}]
    assert "layers.3.weight gradient norm ×40 over the last 29 steps" in describe_diagnosis(
        {"first_nonfinite": None, "growth": growth, "advice": ""}
    )


def test_the_end_event_summary_and_headless_lines_carry_it(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run_cli("run", "square", "--lr", "50", "--epochs", "20", "--out", str(out), "--json")
    assert result.code == 3, result.err
    end = json.loads(result.out.splitlines()[-1])
    diagnosis = end["diagnosis"]
    assert diagnosis["first_nonfinite"]["where"] in ("output", "gradient", "loss")
    assert diagnosis["first_nonfinite"]["step"] <= end["step"]
    assert diagnosis["recover_lr"] == 25.0 and "lr 25" in diagnosis["advice"]
    assert isinstance(diagnosis["growth"], list)
    run_dir = next(out.iterdir())
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["diagnosis"] == diagnosis and summary_problem(summary) is None
    written = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert written[-1]["event"] == "end" and written[-1]["diagnosis"] == diagnosis
    again = event_from_dict(written[-1])
    assert isinstance(again, RunEnded) and again.diagnosis == diagnosis

    plain = run_cli("run", "square", "--lr", "50", "--epochs", "20", "--out", str(out))
    assert plain.code == 3
    lines = [line for line in plain.out.splitlines() if line.startswith("Post-mortem: ")]
    assert len(lines) == 1, plain.out
    assert "lr 25" in lines[0] and "Post-mortem" not in plain.err


def test_recover_continues_at_the_lr_the_advice_names(tmp_path: Path) -> None:
    args = ("run", "square", "--lr", "1.2", "--epochs", "40", "--on-diverge", "recover", "--json")
    result = run_cli(*args, "--out", str(tmp_path / "out"))
    lines = [json.loads(line) for line in result.out.splitlines()]
    pairs = [(a, b) for a, b in itertools.pairwise(lines) if a["event"] == "end" and b["event"] == "recovery"]
    assert pairs, result.out
    for ended, recovery in pairs:
        assert ended["status"] == "diverged"
        assert ended["diagnosis"]["recover_lr"] == recovery["new_lr"]
        assert f"lr {recovery['new_lr']:g}" in ended["diagnosis"]["advice"]


def test_a_healthy_run_has_no_diagnosis(tmp_path: Path) -> None:
    trainer, writer = session.new_run(apply_overrides(load_preset(TINY), epochs=1), tmp_path)
    end = trainer.run()
    writer.close()
    assert end.status == "completed" and end.diagnosis is None
    assert "diagnosis" not in event_to_dict(end)
    assert "diagnosis" not in json.loads((Path(writer.run_dir) / "summary.json").read_text())


def test_old_end_lines_still_read_and_a_damaged_diagnosis_is_refused() -> None:
    old = {"event": "end", "status": "diverged", "epoch": 0, "step": 7, "test": None, "train_seconds": 0.1}
    old |= {"samples_per_s": 70.0, "message": "loss became NaN"}
    ended = event_from_dict(old)
    assert isinstance(ended, RunEnded) and ended.diagnosis is None
    assert event_from_dict({**old, "diagnosis": "layers.1"}) is None
    assert event_from_dict({**old, "diagnosis": {"first_nonfinite": {"step": "seven"}}}) is None
    assert summary_problem({"status": "diverged", "diagnosis": {"growth": [{"factor": "big"}]}}) is not None


@pytest.mark.parametrize("diagnosis", [None, {}])
def test_nothing_to_describe_is_empty(diagnosis: dict[str, Any] | None) -> None:
    assert describe_diagnosis(diagnosis) == ""


async def test_the_dashboard_banner_of_a_diverged_run_says_where_it_started():
    from helpers import live_app, screen_text, until

    app, _, _ = live_app("square", lr=50.0, epochs=20, show_speed=False)
    async with app.run_test(size=(120, 30)) as pilot:
        dash = app.screen
        await until(pilot, lambda: dash.history.state == "diverged", what="divergence")
        await until(pilot, lambda: "Post-mortem:" in screen_text(app), what="the post-mortem in the banner")
        assert "The loss (MSELoss) became NaN or infinite at step 10" in " ".join(screen_text(app).split())
