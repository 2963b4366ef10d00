"""Provides on-request looks inside a network: per-tensor statistics and test-set predictions."""

from __future__ import annotations

import time
import weakref
from dataclasses import dataclass, field

import torch
from torch import nn

from tuitrain.data.sets import Dataset

PREDICTION_SAMPLES = 64  # fixed test inputs shown by the prediction viewer
GRID_SIZE = 48  # decision-region resolution for 2-D inputs, cells per side
CURVE_POINTS = 200  # points on the fitted curve for 1-D inputs
CONFUSION_BUDGET = 0.02  # without epoch numbers, the whole-test-set confusion matrix may take this share of the time
THUMBNAIL_SIDE = 14  # test images travel with a new confusion matrix at this size (as the viewer draws them)


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
    # per test sample, so a viewer can open a cell (true row, predicted column) without asking again:
    confusion_true: torch.Tensor | None = None  # true class (int16)
    confusion_predicted: torch.Tensor | None = None  # predicted class (int16)
    confusion_confidence: torch.Tensor | None = None  # softmax probability of the predicted class (float16)
    # the test inputs to show them: images as uint8 thumbnails (N x 14 x 14), points as N x 2; only with a newly
    # computed matrix (about once per epoch) since they never change; None otherwise: viewers keep the last
    confusion_inputs: torch.Tensor | None = None


@dataclass
class _Confusion:
    data: object  # the Dataset it counts (a restart with other data recomputes)
    matrix: torch.Tensor
    epoch: int | None
    step: int | None
    at: float  # time.monotonic() when computed
    cost: float  # seconds it took
    true: torch.Tensor  # per test sample, CPU: true class, predicted class, its probability
    predicted: torch.Tensor
    confidence: torch.Tensor
    inputs: torch.Tensor  # the test inputs in small form (see Predictions.confusion_inputs)


_confusions: weakref.WeakKeyDictionary[nn.Module, _Confusion] = weakref.WeakKeyDictionary()


def confusion(
    model: nn.Module, data: Dataset, epoch: int | None = None, step: int | None = None, paused: bool = False
) -> _Confusion:
    """The class confusion over the whole test split, computed at most once per epoch.

    Given `epoch`, the matrix is kept until the epoch changes (or, `paused`, until a single step moved the
    network: then the user asked to see it); without it (a caller that cannot say), until its age is
    CONFUSION_BUDGET^-1 times what it cost, so it never takes more than that share of the training time.
    It is never recomputed for the look-inside panels' every refresh."""
    now = time.monotonic()
    cached = _confusions.get(model)
    if cached is not None and cached.data is data:
        if epoch is not None and cached.epoch == epoch and not (paused and cached.step != step):
            return cached
        if epoch is None and now - cached.at < cached.cost / CONFUSION_BUDGET:
            return cached
    probs = torch.cat([model(chunk).softmax(1) for chunk in torch.split(data.test.x, 4096)])
    confidence, predicted = probs.max(1)
    classes = len(data.class_names) or int(data.test.y.max().item()) + 1
    true = data.test.y.reshape(-1)
    pairs = true * classes + predicted
    matrix = torch.bincount(pairs, minlength=classes * classes).reshape(classes, classes).cpu()
    inputs = cached.inputs if cached is not None and cached.data is data else small_inputs(data)
    small = torch.int16 if classes < 2**15 else torch.int32
    done = time.monotonic()
    _confusions[model] = result = _Confusion(
        data,
        matrix,
        epoch,
        step,
        done,
        done - now,
        true.to(small).cpu(),
        predicted.to(small).cpu(),
        confidence.half().cpu(),
        inputs,
    )
    return result


def small_inputs(data: Dataset) -> torch.Tensor:
    """The test inputs as a viewer shows them: images as contrast-stretched uint8 thumbnails, else as they are."""
    x = data.test.x
    if not data.is_image:
        return x.reshape(len(x), -1).float().cpu()
    pictures = x.float().mean(1, keepdim=True) if x.dim() == 4 else x.float().reshape(len(x), 1, *x.shape[-2:])
    side = (min(THUMBNAIL_SIDE, pictures.shape[-2]), min(THUMBNAIL_SIDE, pictures.shape[-1]))
    small = torch.nn.functional.adaptive_avg_pool2d(pictures, side)[:, 0]
    lo = small.amin((1, 2), keepdim=True)
    hi = small.amax((1, 2), keepdim=True)
    return ((small - lo) / (hi - lo).clamp_min(1e-6) * 255).round().to(torch.uint8).cpu()


def class_accuracy(matrix: torch.Tensor) -> list[float | None]:
    """Per true class (row): the share predicted right; None for a class with no test samples."""
    rows = matrix.sum(1).tolist()
    right = matrix.diagonal().tolist()
    return [r / n if n else None for r, n in zip(right, rows, strict=True)]


def confused_pairs(matrix: torch.Tensor, top: int = 5) -> list[tuple[int, int, int]]:
    """The most frequent mistakes as (true class, predicted class, count), largest first; ties by class order."""
    values = matrix.tolist()
    pairs = [(count, i, j) for i, row in enumerate(values) for j, count in enumerate(row) if i != j and count > 0]
    pairs.sort(key=lambda p: (-p[0], p[1], p[2]))
    return [(i, j, count) for count, i, j in pairs[:top]]


def cell_samples(true: torch.Tensor, predicted: torch.Tensor, row: int, column: int) -> torch.Tensor:
    """Indices into the test split of the samples of true class `row` predicted as `column`."""
    return torch.nonzero((true.long() == row) & (predicted.long() == column)).reshape(-1)


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
    model: nn.Module,
    data: Dataset,
    indices: torch.Tensor,
    epoch: int | None = None,
    step: int | None = None,
    paused: bool = False,
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
        asked = time.monotonic()
        counted = confusion(model, data, epoch, step, paused)
        result.confusion, result.confusion_images = counted.matrix, len(data.test)
        result.confusion_epoch, result.confusion_step = counted.epoch, counted.step
        result.confusion_age = max(0.0, time.monotonic() - counted.at)
        result.confusion_true, result.confusion_predicted = counted.true, counted.predicted
        result.confusion_confidence = counted.confidence
        if counted.at >= asked:  # new: the inputs travel once with it
            result.confusion_inputs = counted.inputs
    model.train(was_training)
    return result
