"""Provides the flight recorder behind the divergence post-mortem (tuitrain.training.postmortem).

While training stays finite it keeps two things, neither of which reads the device:

- a ring of the last RING_STEPS steps' per-parameter gradient norms and loss, a preallocated tensor
  on the device written by two ops a step (`_foreach_norm`, `stack`); where that costs more than
  RING_BUDGET of the loop's time (a small network on a CPU), every few steps instead;
- the last two known-good states (model and optimizer state, the shuffle of their epoch, their step),
  copied on the device at most every KEEP_INTERVAL seconds and within KEEP_BUDGET of the time, only
  right after the loop's own loss check found the loss finite (or at an epoch's start).

When the run diverges, `diagnose` replays the steps from the newest finite state with hooks on every
module (one device read per replayed step) and names the first module whose output, or gradient,
became NaN or infinite, with the step and the batch; the ring says what grew before it.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from tuitrain.training.postmortem import make_advice, recover_lr
from tuitrain.training.step import autocast, build_optimizer

if TYPE_CHECKING:
    from tuitrain.training.engine import Trainer

RING_STEPS = 32  # steps of gradient norms and losses kept for the post-mortem ...
RING_BUDGET = 0.01  # ... each step's, unless that costs more than this share of the time: then every few
RING_STRIDE_MAX = 16  # steps, at most
KEEP_INTERVAL = 1.0  # seconds between copies of a known-good state, at least ...
KEEP_BUDGET = 0.01  # ... and never more than this share of the time (a copy's measured cost)
REPLAY_SECONDS = 60.0  # a replay that takes longer gives up: the ring alone answers then
GROWTH_MIN = 2.0  # a tensor whose gradient norm grew by at least this factor is named ...
GROWTH_SHOWN = 3  # ... the largest few of them


@dataclass
class Snapshot:
    """A known-good state: where it was taken, and what to replay the steps after it from."""

    step: int
    epoch: int  # epochs completed
    epoch_step: int  # steps done in the epoch in progress
    epoch_rng: torch.Tensor  # the shuffle generator's state at that epoch's start
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    seconds: float = 0.0  # what the copy cost


def _clone(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, dict):
        return {k: _clone(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clone(v) for v in value]
    return value


def _tensors(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _tensors(v)]
    if isinstance(value, list):
        return [t for v in value for t in _tensors(v)]
    return []


def finite_state(snapshot: Snapshot) -> bool:
    floats = [t for t in _tensors([snapshot.model, snapshot.optimizer]) if t.is_floating_point()]
    if not floats:
        return True
    return bool(torch.stack([t.isfinite().all() for t in floats]).all())


class FlightRecorder:
    """Owned by the Trainer: `push` after each optimizer step, `keep` at its finite-loss checks."""

    def __init__(self, model: nn.Module, device: torch.device, steps: int = RING_STEPS):
        self.model = model
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.ring = torch.full((steps, len(self.params) + 1), math.nan, device=device)
        self.ring_steps = [-1] * steps  # the step each row holds (host ints: no read)
        self._zero = torch.zeros((), device=device)
        self._row = 0  # the ring's next row
        self._next_push = 0  # the step the ring records next
        self._pushed_at: tuple[float, int] | None = None  # (perf_counter, step) of the last record
        self.snapshots: list[Snapshot] = []  # oldest first, at most two
        self._kept_at = -math.inf
        self._keep_cost = 0.0

    # ------------------------------------------------------------------ while training
    def push(self, step: int, loss: torch.Tensor) -> None:
        """The step just taken: its gradient norms and loss into the ring (on the device, no read),
        unless recording every step would cost more than RING_BUDGET of the time: then every few."""
        if step < self._next_push:
            return
        start = time.perf_counter()
        row = self._row
        self._row = (row + 1) % len(self.ring_steps)
        grads = [p.grad if p.grad is not None else self._zero for p in self.params]
        norms = torch._foreach_norm(grads) if grads else []
        torch.stack([*norms, loss.detach().float()], out=self.ring[row])
        self.ring_steps[row] = step
        end = time.perf_counter()
        every = 1
        if self._pushed_at is not None:
            per_step = (start - self._pushed_at[0]) / max(step - self._pushed_at[1], 1)
            every = min(RING_STRIDE_MAX, max(1, math.ceil((end - start) / (RING_BUDGET * max(per_step, 1e-9)))))
        self._next_push = step + every
        self._pushed_at = (start, step)

    def keep_due(self, now: float) -> bool:
        return now - self._kept_at >= max(KEEP_INTERVAL, self._keep_cost / KEEP_BUDGET)

    def keep(self, trainer: Trainer, now: float) -> None:
        """Copy the trainer's state (known good: its loss was just found finite) on its device."""
        start = time.perf_counter()
        rng = trainer._epoch_rng if trainer._epoch_rng is not None else trainer.generator.get_state()
        snapshot = Snapshot(
            trainer.step,
            trainer.epoch,
            trainer.epoch_step,
            rng.clone(),
            {k: v.detach().clone() for k, v in trainer.model.state_dict().items()},
            _clone(trainer.optimizer.state_dict()),
        )
        self.snapshots = [*self.snapshots[-1:], snapshot]
        self._keep_cost = snapshot.seconds = time.perf_counter() - start
        self._kept_at = now

    # ------------------------------------------------------------------ after a divergence
    def rows(self) -> tuple[list[int], torch.Tensor]:
        """The ring's steps in order and their rows (read from the device once)."""
        order = sorted((s, r) for r, s in enumerate(self.ring_steps) if s >= 0)
        data = self.ring.detach().cpu()
        return [s for s, _ in order], data[[r for _, r in order]] if order else data[:0]

    def names(self) -> list[str]:
        by_id = {id(p): name for name, p in self.model.named_parameters()}
        return [by_id.get(id(p), f"parameter {i}") for i, p in enumerate(self.params)] + ["loss"]

    def growth(self) -> list[dict[str, Any]]:
        """What grew over the ring's steps: each series' last finite value over its first."""
        steps, data = self.rows()
        found: list[dict[str, Any]] = []
        for column, name in enumerate(self.names()):
            series = [(s, float(v)) for s, v in zip(steps, data[:, column].tolist(), strict=False) if math.isfinite(v)]
            start = next((i for i, (_, v) in enumerate(series) if v > 0), None)  # a dead layer's norm is 0
            if start is None or start == len(series) - 1:
                continue
            (s0, v0), (s1, v1) = series[start], series[-1]
            factor = v1 / v0
            if factor >= GROWTH_MIN and math.isfinite(factor):
                measure = "loss" if name == "loss" else "gradient norm"
                found.append(
                    {"tensor": name, "measure": measure, "factor": float(f"{factor:.4g}"), "over_steps": s1 - s0}
                )
        found.sort(key=lambda g: -g["factor"])
        return found[:GROWTH_SHOWN]

    def first_in_ring(self) -> dict[str, Any] | None:
        """Without a replay: the first step the ring holds with a NaN or infinite loss or gradient norm."""
        steps, data = self.rows()
        names = self.names()
        for s, row in zip(steps, data.tolist(), strict=False):
            bad = [i for i, v in enumerate(row) if not math.isfinite(v)]
            if bad:
                grads = [i for i in bad if i < len(names) - 1]
                module = names[grads[-1]].rsplit(".", 1)[0] if grads else "loss"
                return {"module": module, "where": "gradient" if grads else "loss", "step": s, "batch": None}
        return None

    def diagnose(self, trainer: Trainer) -> dict[str, Any]:
        """The post-mortem: where it first became non-finite, what grew before, and what to do."""
        first = None
        good = next((s for s in reversed(self.snapshots) if finite_state(s)), None)
        if good is not None:
            first = replay(trainer, good, trainer.step)
        if first is None:
            first = self.first_in_ring()
        growth = self.growth()
        lr = trainer.lr
        return {
            "first_nonfinite": first,
            "growth": growth,
            "lr": lr,
            "recover_lr": recover_lr(lr),
            "advice": make_advice(first, growth, lr),
        }


class Probe:
    """Hooks on every module of a replayed network: device-side finiteness flags, read once a step."""

    def __init__(self, model: nn.Module, loss_name: str):
        self.handles: list[RemovableHandle] = []
        self.forward: list[tuple[str, torch.Tensor]] = []
        self.backward: list[tuple[str, torch.Tensor]] = []
        self.loss_name = loss_name
        owners = {}
        for name, module in model.named_modules():
            label = name or type(model).__name__
            self.handles.append(module.register_forward_hook(self._output_hook(label)))
            if not any(True for _ in module.children()):  # a gradient is named after the leaf that made it
                self.handles.append(module.register_forward_pre_hook(self._input_hook(label)))
            for p in module.parameters(recurse=False):
                owners[id(p)] = label
        for p in model.parameters():
            if p.requires_grad:
                hook = self._grad_hook(owners.get(id(p), "?"))
                self.handles.append(p.register_hook(hook))  # type: ignore[no-untyped-call]

    def _flag(self, into: list[tuple[str, torch.Tensor]], label: str, t: torch.Tensor) -> None:
        if t.is_floating_point():
            into.append((label, t.detach().isfinite().all()))

    def _output_hook(self, label: str) -> Any:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            if isinstance(output, torch.Tensor):
                self._flag(self.forward, label, output)

        return hook

    def _input_hook(self, label: str) -> Any:
        """The gradient this module's backward passes to its input."""

        def hook(module: nn.Module, args: Any) -> None:
            for arg in args:
                if isinstance(arg, torch.Tensor) and arg.requires_grad:
                    arg.register_hook(lambda g: self._flag(self.backward, label, g))  # type: ignore[no-untyped-call]

        return hook

    def _grad_hook(self, label: str) -> Any:
        return lambda g: self._flag(self.backward, label, g)

    def reset(self) -> None:
        self.forward, self.backward = [], []

    def first(self, logits: torch.Tensor, loss: torch.Tensor) -> tuple[str, str] | None:
        """(module, where) of the first non-finite value of the step, reading the device once."""
        flags = [f for _, f in self.forward] + [logits.isfinite().all() & loss.isfinite().all()]
        flags += [f for _, f in self.backward]
        values = torch.stack(flags).tolist()
        n = len(self.forward)
        for i, ok in enumerate(values):
            if ok:
                continue
            if i < n:
                return self.forward[i][0], "output"
            if i == n:
                return self.loss_name, "loss"
            return self.backward[i - n - 1][0], "gradient"
        return None

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def replay(trainer: Trainer, snapshot: Snapshot, until: int) -> dict[str, Any] | None:
    """Train a copy of the network again from `snapshot` up to step `until`, the same batches in the
    same order (all of a batch: a distributed run's ranks average their shares' gradients), and find
    the first step where an output, the loss or a gradient became NaN or infinite."""
    tc, d, device = trainer.config.train, trainer.data, trainer.device
    model = copy.deepcopy(trainer.model)
    model.load_state_dict(snapshot.model)
    optimizer = build_optimizer(tc.optimizer, model.parameters(), tc.lr, tc.momentum, tc.weight_decay)
    optimizer.load_state_dict(_clone(snapshot.optimizer))
    model.train()
    n, bs = len(d.train), tc.batch_size
    steps = math.ceil(n / bs)
    generator = torch.Generator(device=device)
    generator.set_state(snapshot.epoch_rng)
    order = torch.randperm(n, device=device, generator=generator)
    epoch, i, step = snapshot.epoch, snapshot.epoch_step, snapshot.step
    probe = Probe(model, type(trainer.loss_fn).__name__)
    deadline = time.perf_counter() + REPLAY_SECONDS
    try:
        while step < until and time.perf_counter() < deadline:
            if i >= steps:  # the next epoch's shuffle, drawn as the loop draws it
                epoch, i = epoch + 1, 0
                order = torch.randperm(n, device=device, generator=generator)
            idx = order[i * bs : (i + 1) * bs]
            xb, yb = d.train.x.index_select(0, idx), d.train.y.index_select(0, idx)
            probe.reset()
            with autocast(tc.precision, device):
                logits = model(xb).float()
            loss = trainer.loss_fn(logits, yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            found = probe.first(logits, loss)
            if found is not None:
                module, where = found
                return {"module": module, "where": where, "step": step + 1, "batch": i, "epoch": epoch + 1}
            optimizer.step()
            step, i = step + 1, i + 1
    finally:
        probe.remove()
    return None
