"""Provides the learning-rate range test: train a few hundred steps while the rate grows exponentially,
record the loss against the rate, and suggest a rate from the curve.

The test (Smith 2017, "Cyclical Learning Rates for Training Neural Networks"; fastai's `lr_find`):
step i of n uses lr_i = start * (end / start) ** (i / (n - 1)) on the next training batch, and records
the batch loss. The curve is the exponentially weighted average of those losses (beta 0.98), bias
corrected like Adam's moments: s_i = a_i / (1 - beta ** (i + 1)) with a_i = beta a_{i-1} + (1 - beta) loss_i.
The test stops early once the smoothed loss passes 4x its best (or a loss is NaN/Inf): past that the
rate only diverges.

The suggestion is the rate where the smoothed loss falls fastest per decade of lr (the steepest
descent, before the curve's minimum, the first tenth of the steps skipped as a warm-up of the average),
cross-checked with the rate of the minimum smoothed loss divided by 10; both are reported. Where the
two are more than 10x apart (a flat curve whose noise makes a steep local slope) or the loss never
falls, minimum / 10 is suggested instead.

Nothing here writes files: `find_lr` trains a Trainer's own model and optimizer in place (a throwaway
Trainer: new, or restored from a run's checkpoint), `range_test` any model, optimizer and tensors.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from tuitrain.errors import UsageError
from tuitrain.training.step import autocast

if TYPE_CHECKING:
    from tuitrain.training.engine import Trainer

START_LR = 1e-7
END_LR = 10.0
STEPS = 100
MIN_STEPS, MAX_STEPS = 10, 10_000
BETA = 0.98  # the loss average's weight on its past (fastai's)
EXPLODE = 4.0  # stop once the smoothed loss is this many times its best
AGREE = 10.0  # the two rules "agree" when their rates are within this factor

STEEPEST_RULE = "steepest descent of the smoothed loss"
MINIMUM_RULE = "minimum-loss lr / 10"


@dataclass(frozen=True)
class RangeSettings:
    """The ramp: `steps` rates from `start_lr` to `end_lr`, evenly spaced on a log scale."""

    start_lr: float = START_LR
    end_lr: float = END_LR
    steps: int = STEPS
    beta: float = BETA
    explode: float = EXPLODE

    def check(self) -> None:
        """Refuse a ramp that cannot run (a UsageError naming the option)."""
        if not (math.isfinite(self.start_lr) and self.start_lr > 0):
            raise UsageError(f"--start-lr must be a positive number, not {self.start_lr:g}")
        if not (math.isfinite(self.end_lr) and self.end_lr > self.start_lr):
            raise UsageError(f"--end-lr must be larger than --start-lr ({self.start_lr:g}), not {self.end_lr:g}")
        if not MIN_STEPS <= self.steps <= MAX_STEPS:
            raise UsageError(f"--steps must be between {MIN_STEPS} and {MAX_STEPS}, not {self.steps}")
        if not 0 <= self.beta < 1:
            raise UsageError(f"beta must be in [0, 1), not {self.beta:g}")
        if not self.explode > 1:
            raise UsageError(f"explode must be more than 1, not {self.explode:g}")

    def lr_at(self, i: int) -> float:
        return float(self.start_lr * (self.end_lr / self.start_lr) ** (i / max(self.steps - 1, 1)))

    def to_dict(self) -> dict[str, Any]:
        return {
            "start_lr": self.start_lr,
            "end_lr": self.end_lr,
            "steps": self.steps,
            "beta": self.beta,
            "explode": self.explode,
        }


@dataclass(frozen=True)
class Suggestion:
    """The rate suggested and how: `rule` is STEEPEST_RULE, or MINIMUM_RULE where the curve has no descent
    or the two rules are more than AGREE x apart."""

    lr: float | None
    rule: str
    steepest_lr: float | None  # where the smoothed loss falls fastest (None: it never falls)
    min_loss_lr: float | None  # where the smoothed loss is lowest
    notes: tuple[str, ...] = ()

    @property
    def min_rule_lr(self) -> float | None:
        return None if self.min_loss_lr is None else self.min_loss_lr / 10

    @property
    def agree(self) -> bool | None:
        """Whether the two rules are within a factor AGREE of each other (None when one is missing)."""
        if self.steepest_lr is None or self.min_rule_lr is None:
            return None
        return max(self.steepest_lr, self.min_rule_lr) / min(self.steepest_lr, self.min_rule_lr) <= AGREE


@dataclass
class RangeResult:
    """The test's curve (one entry per step taken) and its suggestion."""

    settings: RangeSettings
    lrs: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)  # each step's batch loss (before its update)
    smoothed: list[float] = field(default_factory=list)
    stop: str = "end"  # "end": all steps taken; "exploded": smoothed loss past explode x best; "nan"; "stopped"
    suggestion: Suggestion = field(default_factory=lambda: Suggestion(None, MINIMUM_RULE, None, None))

    @property
    def curve(self) -> list[list[float]]:
        """[[lr, smoothed loss], ...]: what is plotted and printed."""
        return [[lr, loss] for lr, loss in zip(self.lrs, self.smoothed, strict=True)]

    def to_dict(self) -> dict[str, Any]:
        s = self.suggestion
        return {
            "suggested_lr": s.lr,
            "rule": s.rule,
            "steepest_lr": s.steepest_lr,
            "min_loss_lr": s.min_loss_lr,
            "min_loss_lr_div10": s.min_rule_lr,
            "rules_agree": s.agree,
            "notes": list(s.notes),
            "stop": self.stop,
            "steps_taken": len(self.lrs),
            **self.settings.to_dict(),
            "curve": self.curve,
            "raw_losses": self.losses,
        }


def smooth(losses: list[float], beta: float = BETA) -> list[float]:
    """The exponentially weighted average of `losses`, bias-corrected (the first values are not pulled to 0)."""
    out, avg = [], 0.0
    for i, loss in enumerate(losses):
        avg = beta * avg + (1 - beta) * loss
        out.append(avg / (1 - beta ** (i + 1)))
    return out


def suggest(lrs: list[float], smoothed: list[float]) -> Suggestion:
    """The steepest-descent rate of the smoothed curve, cross-checked with the minimum's rate / 10 (which
    is suggested instead when they are more than AGREE x apart, or the curve never falls).

    Points whose loss is not finite are left out. The slope is d(loss)/d(log10 lr) by central
    differences (one-sided at the ends), searched from a tenth into the curve up to its minimum.
    """
    points = [(lr, s) for lr, s in zip(lrs, smoothed, strict=True) if math.isfinite(s)]
    if len(points) < 3:
        return Suggestion(None, MINIMUM_RULE, None, None, ("too few finite losses to read a curve from",))
    xs = [math.log10(lr) for lr, _ in points]
    ys = [s for _, s in points]
    skip = len(points) // 10
    low = min(range(skip, len(points)), key=lambda i: ys[i])
    min_loss_lr = points[low][0]
    notes = []
    if low == len(points) - 1:
        notes.append("the loss was still falling at the last lr: try a higher --end-lr")
    steepest_lr = None
    if low - skip >= 2:
        slopes = [_slope(xs, ys, i) for i in range(skip, low + 1)]
        best = min(range(len(slopes)), key=lambda i: slopes[i])
        if slopes[best] < 0:
            steepest_lr = points[skip + best][0]
    if steepest_lr is None:
        notes.append("the loss did not fall before its minimum: try a lower --start-lr")
        return Suggestion(min_loss_lr / 10, MINIMUM_RULE, None, min_loss_lr, tuple(notes))
    found = Suggestion(steepest_lr, STEEPEST_RULE, steepest_lr, min_loss_lr, tuple(notes))
    if found.agree is False:  # a local slope against the whole curve's minimum: the slope is the one noise fools
        notes.append(
            f"the steepest descent (lr {steepest_lr:.3g}) is more than {AGREE:g}x from minimum / 10: "
            "a flat, noisy curve; suggesting minimum / 10 (read the curve)"
        )
        return Suggestion(min_loss_lr / 10, MINIMUM_RULE, steepest_lr, min_loss_lr, tuple(notes))
    return found


def _slope(xs: list[float], ys: list[float], i: int) -> float:
    lo, hi = max(i - 1, 0), min(i + 1, len(xs) - 1)
    return (ys[hi] - ys[lo]) / (xs[hi] - xs[lo])


Progress = Callable[[int, float, float, float], None]  # (step, lr, loss, smoothed loss)


def range_test(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    batch_size: int,
    settings: RangeSettings = RangeSettings(),
    generator: torch.Generator | None = None,
    precision: str = "fp32",
    progress: Progress | None = None,
    stop: Callable[[], bool] | None = None,
) -> RangeResult:
    """Train `model` with `optimizer` (its state kept: momentum, Adam's moments) on shuffled batches of
    (x, y), the rate ramped as `settings` says; the curve and its suggestion. `model` and `optimizer`
    are changed in place: hand it copies, or a throwaway Trainer's. `progress` hears each step;
    `stop()` returning True ends the test early (its curve so far still gets a suggestion).
    """
    settings.check()
    n = x.shape[0]
    if n == 0:
        raise UsageError("the training split is empty: nothing to test learning rates on")
    bs = max(1, min(batch_size, n))
    result = RangeResult(settings)
    order = torch.randperm(n, device=x.device, generator=generator)
    at, avg, best = 0, 0.0, math.inf
    model.train()
    for i in range(settings.steps):
        if stop is not None and stop():
            result.stop = "stopped"
            break
        if at + bs > n and at > 0:  # a new pass over the data, freshly shuffled
            order, at = torch.randperm(n, device=x.device, generator=generator), 0
        idx = order[at : at + bs]
        at += bs
        lr = settings.lr_at(i)
        for group in optimizer.param_groups:
            group["lr"] = lr
        with autocast(precision, x.device):
            out = model(x.index_select(0, idx)).float()
        loss = loss_fn(out, y.index_select(0, idx))
        value = float(loss.item())
        result.lrs.append(lr)
        result.losses.append(value)
        if not math.isfinite(value):
            result.smoothed.append(math.inf)
            result.stop = "nan"
            break
        avg = settings.beta * avg + (1 - settings.beta) * value
        smoothed = avg / (1 - settings.beta ** (i + 1))
        result.smoothed.append(smoothed)
        if progress is not None:
            progress(i + 1, lr, value, smoothed)
        if smoothed > settings.explode * best:
            result.stop = "exploded"
            break
        best = min(best, smoothed)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    result.suggestion = suggest(result.lrs, result.smoothed)
    return result


def find_lr(
    trainer: Trainer,
    settings: RangeSettings = RangeSettings(),
    progress: Progress | None = None,
    stop: Callable[[], bool] | None = None,
) -> RangeResult:
    """The range test on `trainer`'s network, optimizer (with its state), training split, batch size,
    precision and shuffling: a new Trainer tests fresh weights, one restored from a checkpoint
    (`tuitrain.runs.start.restore_trainer`) tests from there. The trainer is spent afterwards (its
    weights trained at rates up to divergence): the app and the CLI build one for the test alone.
    """
    settings.check()
    trainer.governor.apply()
    data, tc = trainer.data, trainer.config.train
    return range_test(
        trainer.train_model,
        trainer.optimizer,
        trainer.loss_fn,
        data.train.x,
        data.train.y,
        batch_size=tc.batch_size,
        settings=settings,
        generator=trainer.generator,
        precision=tc.precision,
        progress=progress,
        stop=stop,
    )
