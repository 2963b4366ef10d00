"""Provides Recorder: weight and gradient histograms of every tensor, taken on the device at a bounded cadence,
and what a fixed batch shows of every activation (dead and saturated units, mean, spread) at the same records."""

from __future__ import annotations

import time

import torch
from torch import nn

from tuitrain.events import HistoryRecord, TensorRecord
from tuitrain.store.histories import BINS, ActivationRecord, ProbedHistoryRecord

RECORD_INTERVAL = 0.25  # seconds between records at least ...
RECORD_STEPS = 5  # ... and optimizer steps between them at least ...
RECORD_BUDGET = 0.01  # ... and never more than this share of the time (a record's measured cost) ...
RECORD_MAX_INTERVAL = 5.0  # ... but at least this often: one slow record (a busy machine) must not end them
DEAD_SAMPLES = 128  # training samples in the fixed batch that tells dead ReLU units
STATS = 9  # per tensor before its bins: low, high, mean, std, grad low, grad high, grad norm, update ratio, non-finite
ACTIVATION_STATS = 5  # per activation module: mean, std, dead share, saturated share (NaN: not its kind), non-finite
# Units die in the ReLU family: never positive, no gradient (LeakyReLU/PReLU: only the small negative slope's).
RELU_FAMILY: tuple[type[nn.Module], ...] = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.RReLU)
# Squashing functions saturate: (lowest, highest) output; Hardtanh's own bounds are read from the module.
SQUASHING: dict[type[nn.Module], tuple[float, float]] = {
    nn.Sigmoid: (0.0, 1.0),
    nn.Tanh: (-1.0, 1.0),
    nn.Hardsigmoid: (0.0, 1.0),
    nn.Softsign: (-1.0, 1.0),
    nn.Hardtanh: (-1.0, 1.0),
}
OTHER_ACTIVATIONS: tuple[type[nn.Module], ...] = (nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish, nn.Softplus)
# A squashed value this close to either end (a share of the output range) is saturated: sigmoid below 0.01 or
# above 0.99 (slope under 0.01, a 25th of its best), tanh beyond +-0.98 (slope under 0.04).
SATURATION_MARGIN = 0.01


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
        self._activations = self._activation_layers()
        self._layers = [(name, module) for name, module in self._activations if isinstance(module, nn.ReLU)]

    def _activation_layers(self) -> list[tuple[str, nn.Module]]:
        """(name of the layer before it, activation module) for every activation (the first after a layer):
        that layer's units are the ones that die or saturate. A PReLU's own weight is not such a layer."""
        found: list[tuple[str, nn.Module]] = []
        last, taken = "", set()
        for name, module in self.model.named_modules():
            if isinstance(module, RELU_FAMILY + tuple(SQUASHING) + OTHER_ACTIVATIONS):
                if last not in taken:
                    found.append((last, module))
                    taken.add(last)
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
            bad = (~torch.isfinite(p.detach())).sum()
            if grad is not None:
                g = torch.nan_to_num(grad.detach().float().reshape(-1), nan=0.0, posinf=0.0, neginf=0.0)
                grad_counts, grad_low, grad_high = _bins(g)
                grad_norm = g.norm()
                bad = bad + (~torch.isfinite(grad.detach())).sum()
            else:
                grad_counts, grad_low, grad_high, grad_norm = torch.zeros(BINS, device=w.device), low, low, low
            ratio = (w - before[name].float().reshape(-1)).norm() / w.norm().clamp_min(1e-12) if before else low
            stats = torch.stack([low, high, w.mean(), std, grad_low, grad_high, grad_norm, ratio, bad.to(low.dtype)])
            rows.append(torch.cat([stats, counts, grad_counts]))
            names.append(name)
            has_grad.append(grad is not None)
        probe = self._probe()
        flat = torch.cat(rows + ([probe] if probe is not None else [])).cpu().tolist()  # the one host sync
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
        activations = _activation_records(self._activations, flat[len(names) * width :])
        dead = {name: activations[name].dead for name, _ in self._layers if name in activations}
        nonfinite = {name: round(flat[i * width + 8]) for i, name in enumerate(names) if flat[i * width + 8]}
        record = ProbedHistoryRecord(
            step, epoch, tensors, {k: v for k, v in dead.items() if v is not None}, "history", activations, nonfinite
        )
        self.last_step = step
        now = time.perf_counter()
        cost = now - start + self._snapshot_cost
        self._snapshot_cost = 0.0
        if before is not None:  # the first record pays for warming up (allocations, lazy kernels): not paced by it
            self.cost = cost
        self.due_at = now + max(self.interval, min(RECORD_MAX_INTERVAL, self.cost / self.budget))
        self.due_step = step + self.steps
        return record

    def _probe(self) -> torch.Tensor | None:
        """ACTIVATION_STATS values per activation module (see `_activation_stats`) from one forward pass
        of the fixed batch, flat and on the device; None without a batch, or when the modules did not run
        once each (a module used twice or not at all: the values would not match the names)."""
        if self.sample is None or not self._activations:
            return None
        found: dict[int, list[torch.Tensor]] = {id(module): [] for _, module in self._activations}

        def hook(module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
            found[id(module)].append(_activation_stats(module, output))

        handles = [module.register_forward_hook(hook) for _, module in self._activations]
        was_training = self.model.training
        try:
            self.model.eval()
            self.model(self.sample)
        finally:
            self.model.train(was_training)
            for handle in handles:
                handle.remove()
        if any(len(stats) != 1 for stats in found.values()):
            return None
        return torch.cat([found[id(module)][0] for _, module in self._activations])


def _activation_stats(module: nn.Module, output: torch.Tensor) -> torch.Tensor:
    """Mean, std, dead share (ReLU family: units, or a convolution's channels, not positive for any sample),
    saturated share (squashing: values within SATURATION_MARGIN of the range's ends), and the units with a
    NaN or infinite output; NaN where a share does not apply. On the device, one pass per reduction."""
    y = output.detach().float()
    others = [d for d in range(y.dim()) if d != 1]  # units along dim 1: features, or a convolution's channels
    sums = y.sum(others) if y.dim() > 1 else y.sum().reshape(1)
    nan = torch.full((), float("nan"), device=y.device)
    dead = saturated = nan
    if isinstance(module, RELU_FAMILY) and y.numel():
        top = y.amax(others) if y.dim() > 1 else y.amax().reshape(1)
        dead = (~(top > 0)).float().mean()  # a NaN maximum is not positive either
    else:
        bounds = next((b for kind, b in SQUASHING.items() if isinstance(module, kind)), None)
        if isinstance(module, nn.Hardtanh):
            bounds = (float(module.min_val), float(module.max_val))
        if bounds is not None and y.numel():
            half = (bounds[1] - bounds[0]) / 2
            saturated = ((y - (bounds[0] + half)).abs() >= half * (1 - 2 * SATURATION_MARGIN)).float().mean()
    mean = sums.sum() / max(y.numel(), 1)
    std = y.std() if y.numel() > 1 else torch.zeros((), device=y.device)
    bad = (~torch.isfinite(sums)).sum().float()
    return torch.stack([mean, std, dead, saturated, bad])


def _activation_records(layers: list[tuple[str, nn.Module]], flat: list[float]) -> dict[str, ActivationRecord]:
    """The probe's values read back (none when it was not taken), keyed by the layer each activation follows."""
    if len(flat) != ACTIVATION_STATS * len(layers):
        return {}
    found = {}
    for i, (name, module) in enumerate(layers):
        mean, std, dead, saturated, bad = flat[i * ACTIVATION_STATS : (i + 1) * ACTIVATION_STATS]
        found[name] = ActivationRecord(
            type(module).__name__.lower(),
            mean,
            std,
            None if dead != dead else dead,
            None if saturated != saturated else saturated,
            round(bad),
        )
    return found
