"""Provides Recorder: weight and gradient histograms of every tensor, taken on the device at a bounded cadence."""

from __future__ import annotations

import time

import torch
from torch import nn

from tuitrain.events import HistoryRecord, TensorRecord
from tuitrain.store.histories import BINS

RECORD_INTERVAL = 0.25  # seconds between records at least ...
RECORD_STEPS = 5  # ... and optimizer steps between them at least ...
RECORD_BUDGET = 0.01  # ... and never more than this share of the time (a record's measured cost) ...
RECORD_MAX_INTERVAL = 5.0  # ... but at least this often: one slow record (a busy machine) must not end them
DEAD_SAMPLES = 128  # training samples in the fixed batch that tells dead ReLU units
STATS = 8  # per tensor before its bins: low, high, mean, std, grad low, grad high, grad norm, update ratio


def _bins(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Counts in BINS equal bins over [min, max], and the bounds, all left on the device (no sync)."""
    low, high = t.aminmax()
    scale = BINS / (high - low).clamp_min(1e-30)
    index = ((t - low) * scale).long().clamp_(0, BINS - 1)
    counts = torch.zeros(BINS, device=t.device).index_add_(0, index, torch.ones_like(t))
    return counts, low, high


class Recorder:
    """Owned by the Trainer: `before_step()` and `after_step()` around each optimizer step cost one
    comparison unless a record is due; a record reads the device once, whatever the tensor count."""

    def __init__(
        self,
        model: nn.Module,
        sample: torch.Tensor | None,
        enabled: bool = True,
        interval: float = RECORD_INTERVAL,
        steps: int = RECORD_STEPS,
        budget: float = RECORD_BUDGET,
    ):
        self.model = model
        self.sample = sample  # the fixed batch for dead units (None: not recorded)
        self.available = enabled  # the run's configuration (--no-histories: never, whatever is asked later)
        self.enabled = enabled  # recording now (switched off and on while training: `switch`)
        self.interval = interval
        self.steps = steps
        self.budget = budget
        self.due_at = 0.0  # perf_counter time of the next record, at the earliest
        self.due_step = 0
        self.last_step = -1
        self.cost = 0.0  # seconds the last record took (with its snapshot)
        self._armed = False
        self._before: dict[str, torch.Tensor] | None = None
        self._snapshot_cost = 0.0
        self._layers = self._relu_layers()

    def _relu_layers(self) -> list[tuple[str, nn.Module]]:
        """(name of the layer before it, ReLU module) for every ReLU: that layer's units are the ones that die."""
        found: list[tuple[str, nn.Module]] = []
        last = ""
        for name, module in self.model.named_modules():
            if isinstance(module, nn.ReLU):
                found.append((last, module))
            elif any(True for _ in module.parameters(recurse=False)):
                last = name
        return found

    def switch(self, enabled: bool) -> None:
        """Record from now on, or not (the loop's thread, between two steps). Never on when the
        configuration turned recording off: there is nothing to turn on."""
        self.enabled = enabled and self.available
        if not self.enabled:  # a record armed for the next step is not taken
            self._armed, self._before = False, None

    def before_step(self) -> None:
        if self._armed:
            start = time.perf_counter()
            self._before = {name: p.detach().clone() for name, p in self.model.named_parameters()}
            self._snapshot_cost = time.perf_counter() - start

    def after_step(self, step: int, epoch: int, now: float) -> HistoryRecord | None:
        """The record of the step just taken when it was armed; else arms the next step when one is due."""
        if self._before is not None:
            before, self._before, self._armed = self._before, None, False
            return self.record(step, epoch, before)
        if self.enabled and step >= self.due_step and now >= self.due_at:
            self._armed = True
        return None

    @torch.no_grad()
    def record(self, step: int, epoch: int, before: dict[str, torch.Tensor] | None = None) -> HistoryRecord | None:
        """Every tensor now (its update ratio across the step when `before` holds the weights before it)."""
        if not self.enabled or step == self.last_step:
            return None
        start = time.perf_counter()
        rows, names, has_grad = [], [], []
        for name, p in self.model.named_parameters():
            w = torch.nan_to_num(p.detach().float().reshape(-1), nan=0.0, posinf=0.0, neginf=0.0)
            counts, low, high = _bins(w)
            std = w.std() if w.numel() > 1 else torch.zeros((), device=w.device)
            grad = p.grad
            if grad is not None:
                g = torch.nan_to_num(grad.detach().float().reshape(-1), nan=0.0, posinf=0.0, neginf=0.0)
                grad_counts, grad_low, grad_high = _bins(g)
                grad_norm = g.norm()
            else:
                grad_counts, grad_low, grad_high, grad_norm = torch.zeros(BINS, device=w.device), low, low, low
            ratio = (w - before[name].float().reshape(-1)).norm() / w.norm().clamp_min(1e-12) if before else low
            stats = torch.stack([low, high, w.mean(), std, grad_low, grad_high, grad_norm, ratio])
            rows.append(torch.cat([stats, counts, grad_counts]))
            names.append(name)
            has_grad.append(grad is not None)
        dead = self._dead_shares()
        flat = torch.cat(rows + ([dead] if dead is not None else [])).cpu().tolist()  # the one host sync
        tensors = []
        width = STATS + 2 * BINS
        for i, name in enumerate(names):
            row = flat[i * width : (i + 1) * width]
            counts_w = [round(c) for c in row[STATS : STATS + BINS]]
            tensors.append(
                TensorRecord(
                    name,
                    counts_w,
                    row[0],
                    row[1],
                    row[2],
                    row[3],
                    [round(c) for c in row[STATS + BINS :]] if has_grad[i] else None,
                    row[4] if has_grad[i] else 0.0,
                    row[5] if has_grad[i] else 0.0,
                    row[6] if has_grad[i] else None,
                    row[7] if before else None,
                )
            )
        shares = flat[len(names) * width :]
        record = HistoryRecord(step, epoch, tensors, {name: s for (name, _), s in zip(self._layers, shares)})
        self.last_step = step
        now = time.perf_counter()
        cost = now - start + self._snapshot_cost
        self._snapshot_cost = 0.0
        if before is not None:  # the first record pays for warming up (allocations, lazy kernels): not paced by it
            self.cost = cost
        self.due_at = now + max(self.interval, min(RECORD_MAX_INTERVAL, self.cost / self.budget))
        self.due_step = step + self.steps
        return record

    def _dead_shares(self) -> torch.Tensor | None:
        """Per ReLU layer, the share of its units (channels for convolutions) not positive for any
        sample of the fixed batch, on the device."""
        if self.sample is None or not self._layers:
            return None
        alive: list[torch.Tensor] = []

        def hook(_module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
            positive = output > 0  # units along dim 1: features, or a convolution's channels
            if positive.dim() > 1:
                alive.append(positive.transpose(0, 1).reshape(positive.shape[1], -1).any(1))
            else:
                alive.append(positive.any().reshape(1))

        handles = [module.register_forward_hook(hook) for _, module in self._layers]
        was_training = self.model.training
        try:
            self.model.eval()
            self.model(self.sample)
        finally:
            self.model.train(was_training)
            for handle in handles:
                handle.remove()
        if len(alive) != len(self._layers):  # a module used twice or not at all: shares would not match names
            return None
        return torch.stack([1.0 - a.float().mean() for a in alive])
