"""Provides on-request looks inside a network: per-tensor statistics and test-set predictions."""

from __future__ import annotations

import time
import weakref
from dataclasses import dataclass, field

import torch
from torch import nn

from tuitrain.data import Dataset

PREDICTION_SAMPLES = 64  # fixed test inputs shown by the prediction viewer
GRID_SIZE = 48  # decision-region resolution for 2-D inputs, cells per side
CURVE_POINTS = 200  # points on the fitted curve for 1-D inputs
CONFUSION_BUDGET = 0.02  # without epoch numbers, the whole-test-set confusion matrix may take this share of the time


@dataclass
class ParamStats:
    name: str
    shape: tuple[int, ...]
    count: int
    mean: float
    std: float
    min: float
    max: float
    grad_norm: float | None  # None before the first backward pass
    update_ratio: float | None  # |last update| / |weights|; None unless measured around a step
    values: torch.Tensor = field(repr=False)  # a CPU copy, for histograms and heatmaps


@dataclass
class Predictions:
    kind: str  # "image" | "points" | "curve"
    task: str  # binary | classes | regression
    inputs: torch.Tensor  # CPU, the fixed sample of test inputs
    targets: torch.Tensor  # class index (classes), 0/1 (binary) or value (regression)
    outputs: torch.Tensor  # class probabilities (N x C), P(class 1) (N) or predicted value (N)
    class_names: list[str] = field(default_factory=list)
    grid: torch.Tensor | None = None  # points: P(class) per cell, GRID x GRID x C (row 0 = bottom)
    bounds: tuple[float, float, float, float] | None = None  # points: xmin, xmax, ymin, ymax
    curve_x: torch.Tensor | None = None  # curve: inputs along the data range
    curve_y: torch.Tensor | None = None  # curve: the network's outputs there
    confusion: torch.Tensor | None = None  # classes: C x C counts over the whole test split
    confusion_images: int = 0  # test images counted in `confusion`
    confusion_epoch: int | None = None  # the epoch it was computed in (when the caller said)
    confusion_step: int | None = None  # the step it was computed at (when the caller said)
    confusion_age: float = 0.0  # seconds between computing it and these predictions


@dataclass
class _Confusion:
    data: object  # the Dataset it counts (a restart with other data recomputes)
    matrix: torch.Tensor
    epoch: int | None
    step: int | None
    at: float  # time.monotonic() when computed
    cost: float  # seconds it took


_confusions: weakref.WeakKeyDictionary[nn.Module, _Confusion] = weakref.WeakKeyDictionary()


def confusion(model: nn.Module, data: Dataset, epoch: int | None = None, step: int | None = None) -> _Confusion:
    """The class confusion over the whole test split, computed at most once per epoch.

    Given `epoch`, the matrix is kept until the epoch changes; without it (a caller that cannot say),
    until its age is CONFUSION_BUDGET^-1 times what it cost, so it never takes more than that share
    of the training time. It is never recomputed for the look-inside panels' every refresh."""
    now = time.monotonic()
    cached = _confusions.get(model)
    if cached is not None and cached.data is data:
        if epoch is not None and cached.epoch == epoch:
            return cached
        if epoch is None and now - cached.at < cached.cost / CONFUSION_BUDGET:
            return cached
    predicted = torch.cat([model(chunk).argmax(1) for chunk in torch.split(data.test.x, 4096)])
    classes = len(data.class_names) or int(data.test.y.max().item()) + 1
    pairs = data.test.y * classes + predicted
    matrix = torch.bincount(pairs, minlength=classes * classes).reshape(classes, classes).cpu()
    done = time.monotonic()
    _confusions[model] = result = _Confusion(data, matrix, epoch, step, done, done - now)
    return result


def param_stats(model: nn.Module, before: dict[str, torch.Tensor] | None = None) -> list[ParamStats]:
    rows = []
    with torch.no_grad():
        for name, p in model.named_parameters():
            w = p.detach().float()
            update = None
            if before is not None and name in before:
                update = ((w - before[name]).norm() / w.norm().clamp_min(1e-12)).item()
            rows.append(
                ParamStats(
                    name=name,
                    shape=tuple(p.shape),
                    count=p.numel(),
                    mean=w.mean().item(),
                    std=w.std().item() if p.numel() > 1 else 0.0,
                    min=w.min().item(),
                    max=w.max().item(),
                    grad_norm=None if p.grad is None else p.grad.detach().norm().item(),
                    update_ratio=update,
                    values=w.cpu().clone(),
                )
            )
    return rows


def _outputs(task: str, logits: torch.Tensor) -> torch.Tensor:
    if task == "classes":
        return logits.softmax(dim=1)
    if task == "binary":
        return logits.sigmoid().squeeze(1)
    return logits.squeeze(1)


def sample_indices(data: Dataset, count: int = PREDICTION_SAMPLES, seed: int = 0) -> torch.Tensor:
    n = len(data.test)
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[: min(count, n)]


@torch.inference_mode()
def predictions(
    model: nn.Module, data: Dataset, indices: torch.Tensor, epoch: int | None = None, step: int | None = None
) -> Predictions:
    """The fixed sample's predictions now (and the confusion matrix, see `confusion`)."""
    was_training = model.training
    model.eval()
    device = data.test.x.device
    x = data.test.x[indices.to(device)]
    y = data.test.y[indices.to(device)]
    out = _outputs(data.task, model(x)).cpu()
    dims = x[0].numel()
    kind = "image" if data.is_image else ("points" if dims == 2 else "curve")
    result = Predictions(
        kind, data.task, x.cpu(), y.cpu().squeeze(-1) if data.task != "classes" else y.cpu(), out, data.class_names
    )
    if kind == "points":
        everything = torch.cat([data.train.x, data.test.x])
        lo, hi = everything.min(0).values, everything.max(0).values
        xs = torch.linspace(lo[0].item(), hi[0].item(), GRID_SIZE, device=device)
        ys = torch.linspace(lo[1].item(), hi[1].item(), GRID_SIZE, device=device)
        gy, gx = torch.meshgrid(ys, xs, indexing="ij")
        probs = _outputs(data.task, model(torch.stack([gx.flatten(), gy.flatten()], 1)))
        if data.task == "binary":
            probs = torch.stack([1 - probs, probs], 1)
        result.grid = probs.reshape(GRID_SIZE, GRID_SIZE, -1).cpu()
        result.bounds = (lo[0].item(), hi[0].item(), lo[1].item(), hi[1].item())
    elif kind == "curve":
        x_lo, x_hi = data.train.x.min().item(), data.train.x.max().item()
        result.curve_x = torch.linspace(x_lo, x_hi, CURVE_POINTS)
        result.curve_y = _outputs(data.task, model(result.curve_x.to(device).unsqueeze(1))).cpu()
    if data.task == "classes":
        counted = confusion(model, data, epoch, step)
        result.confusion, result.confusion_images = counted.matrix, len(data.test)
        result.confusion_epoch, result.confusion_step = counted.epoch, counted.step
        result.confusion_age = max(0.0, time.monotonic() - counted.at)
    model.train(was_training)
    return result
