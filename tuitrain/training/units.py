"""Provides what each unit learned: activation maps (2-D inputs), contribution curves (1-D), feature maps (images)."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Literal, NamedTuple, cast

import torch
from torch import nn

from tuitrain.data.sets import Dataset
from tuitrain.training.models import LeNet5, Neuron

MAP_SIDE = 24  # unit maps for 2-D inputs: cells per side of the input plane (the Units panel draws these)
CURVE_POINTS = 200  # contribution curves for 1-D inputs: points along the data range
TOP_TEMPLATES = 8  # MLP on images: the first-layer units most active for the sample, shown as weight templates


@dataclass
class LayerMaps:
    """One hidden layer's units over the input plane (2-D inputs)."""

    name: str  # the layer's module name, as in the parameter table ("layers.1" for the first Linear)
    activations: torch.Tensor  # units x MAP_SIDE x MAP_SIDE, after the activation function; row 0 = bottom (ymin)
    weights: torch.Tensor  # units x inputs: each unit's incoming weights
    bias: torch.Tensor  # units


@dataclass
class UnitMaps:
    bounds: tuple[float, float, float, float]  # xmin, xmax, ymin, ymax of the plane (as the decision regions)
    layers: list[LayerMaps]  # every hidden layer, input side first


@dataclass
class UnitCurves:
    """The last hidden layer's units as the output's summands (1-D inputs, one output):
    output(x) = contributions[:, i].sum() + bias, e.g. w_out_j * relu(w_in_j * x + b_j) for a ReLU layer."""

    layer: str  # the last hidden layer's module name
    x: torch.Tensor  # CURVE_POINTS inputs along the data range
    contributions: torch.Tensor  # units x CURVE_POINTS
    bias: float  # the output layer's bias
    output: torch.Tensor  # CURVE_POINTS: the network's output (the fitted curve)
    kinks: torch.Tensor | None = None  # units: x where w_in_j * x + b_j = 0 (one hidden layer), else None


@dataclass
class FeatureStage:
    name: str  # e.g. "conv1", "pool1", "conv2", "pool2"
    maps: torch.Tensor  # channels x H x W, after the activation function (pooling stages: after pooling)
    layer: str = ""  # the module whose output this is, as in the parameter table ("features.1")


@dataclass
class UnitTemplate:
    unit: int  # index in the first hidden layer
    activation: float  # its activation for the sample
    weights: torch.Tensor  # H x W: its incoming weights as an image


@dataclass
class FeatureMaps:
    """One test image stepped through the network."""

    sample: int  # index into the test split
    label: int  # its true class
    image: torch.Tensor  # H x W as the network sees it (channels averaged); LeNet: before its 2-pixel padding
    scores: torch.Tensor  # class probabilities
    stages: list[FeatureStage] = field(
        default_factory=list
    )  # LeNet: conv1 6x28x28, pool1 6x14x14, conv2 16x10x10, pool2
    templates: list[UnitTemplate] = field(default_factory=list)  # MLP: top units, most active first
    class_names: list[str] = field(default_factory=list)  # the data set's, for `label` and `scores`


@dataclass
class Units:
    kind: Literal["maps", "curves", "features", "none"]
    maps: UnitMaps | None = None
    curves: UnitCurves | None = None
    features: FeatureMaps | None = None
    reason: str = ""  # kind "none": why there is nothing to show (a single neuron has no hidden units, ...)


def compute_units(model: nn.Module, data: Dataset, sample: int = 0) -> Units:
    """What the network's units respond to now: unit maps for 2 inputs, contribution curves for 1, one test
    image stepped through for images (`sample`: its index into the test split, clamped into it). LeNet pads
    28x28 images to 32x32, so its conv1 maps are 28x28 (FeatureMaps.image is the unpadded input).

    Over the inputs as the network sees them (standardized ones when the data is), as inspection.predictions
    does. Cheap: MAP_SIDE**2 points, CURVE_POINTS points or one image; the network's mode is left as it was."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():  # not inference_mode: viewers may change the tensors in place
            return _compute(model, data, sample)
    finally:
        model.train(was_training)


def _compute(model: nn.Module, data: Dataset, sample: int) -> Units:
    if isinstance(model, Neuron):
        return Units(
            "none",
            reason="a single neuron has no hidden units: its weights and bias are all it learned (see Parameters)",
        )
    if isinstance(model, LeNet5):
        return Units("features", features=_lenet(model, data, sample))
    layers = getattr(model, "layers", None)
    if not isinstance(layers, nn.Sequential):
        return Units("none", reason=f"nothing to show for a {type(model).__name__}")
    hidden = _hidden_layers(layers)
    if not hidden:
        return Units("none", reason="no hidden layers: the network is one linear layer, its weights are all it learned")
    if data.is_image:
        return Units("features", features=_templates(layers, hidden, data, sample))
    inputs = math.prod(data.input_shape)
    if inputs == 2:
        return Units("maps", maps=_maps(layers, hidden, data))
    outputs = cast(nn.Linear, layers[-1]).out_features
    if inputs == 1 and outputs == 1:
        return Units("curves", curves=_curves(layers, hidden, data))
    if inputs == 1:
        return Units("none", reason=f"contribution curves need one output; this network has {outputs}")
    return Units("none", reason=f"units are shown for 1 or 2 inputs and for images; this data has {inputs} inputs")


def plane_bounds(data: Dataset) -> tuple[float, float, float, float]:
    """The decision regions' bounds (inspection.predictions): min and max over train and test inputs."""
    everything = torch.cat([data.train.x, data.test.x])
    lo, hi = everything.min(0).values, everything.max(0).values
    return (lo[0].item(), hi[0].item(), lo[1].item(), hi[1].item())


def plane_points(bounds: tuple[float, float, float, float], side: int = MAP_SIDE) -> torch.Tensor:
    """The side x side grid over the input plane as (side*side) x 2 points, row by row from ymin up
    (the layout of inspection.predictions' decision-region grid)."""
    xmin, xmax, ymin, ymax = bounds
    gy, gx = torch.meshgrid(torch.linspace(ymin, ymax, side), torch.linspace(xmin, xmax, side), indexing="ij")
    return torch.stack([gx.flatten(), gy.flatten()], 1)


class _Hidden(NamedTuple):
    name: str  # the Linear's module name ("layers.1")
    linear: nn.Linear
    act_name: str  # its activation's module name ("layers.2")
    act: nn.Module


def _hidden_layers(layers: nn.Sequential) -> list[_Hidden]:
    """An MLP's hidden layers, input side first: models.MLP's Sequential is Flatten, Linear, act, ..., Linear."""
    return [
        _Hidden(f"layers.{name}", module, f"layers.{after_name}", after)
        for (name, module), (after_name, after) in itertools.pairwise(layers.named_children())
        if isinstance(module, nn.Linear) and not isinstance(after, nn.Linear)
    ]


def _through(layers: nn.Sequential, prefix: str, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """x through a Sequential: its output, and every child's output by module name."""
    seen = {}
    for name, module in layers.named_children():
        x = module(x)
        seen[f"{prefix}.{name}"] = x
    return x, seen


def _copy(t: torch.Tensor) -> torch.Tensor:
    """A CPU copy (never the live weights themselves: training changes those in place)."""
    return t.detach().float().cpu().clone()


def _maps(model: nn.Sequential, hidden: list[_Hidden], data: Dataset) -> UnitMaps:
    bounds = plane_bounds(data)
    points = plane_points(bounds).to(data.train.x.device)
    _, seen = _through(model, "layers", points)
    layers = []
    for name, linear, act, _ in hidden:
        values = seen[act].T.reshape(linear.out_features, MAP_SIDE, MAP_SIDE)
        layers.append(LayerMaps(name, _copy(values), _copy(linear.weight), _copy(linear.bias)))
    return UnitMaps(bounds, layers)


def _curves(model: nn.Sequential, hidden: list[_Hidden], data: Dataset) -> UnitCurves:
    # the fitted curve's range in inspection.predictions: the training inputs'
    x = torch.linspace(data.train.x.min().item(), data.train.x.max().item(), CURVE_POINTS)
    out, seen = _through(model, "layers", x.to(data.train.x.device).unsqueeze(1))
    name, _, act, _ = hidden[-1]
    head = cast(nn.Linear, model[-1])
    contributions = (seen[act] * head.weight[0]).T  # units x points: w_out_j * h_j(x)
    kinks = None
    first = hidden[0].linear
    if len(hidden) == 1 and isinstance(hidden[0].act, (nn.ReLU, nn.LeakyReLU, nn.PReLU)):  # hinges
        kinks = (-first.bias / first.weight[:, 0]).masked_fill(first.weight[:, 0] == 0, math.nan)
    return UnitCurves(
        name,
        x,
        _copy(contributions),
        float(head.bias[0].item()),
        _copy(out[:, 0]),
        None if kinks is None else _copy(kinks),
    )


def _image(data: Dataset, sample: int) -> tuple[int, torch.Tensor]:
    """The sample's index (clamped into the test split) and the image, 1 x C x H x W."""
    index = min(max(int(sample), 0), len(data.test) - 1)
    return index, data.test.x[index : index + 1]


def _lenet(model: LeNet5, data: Dataset, sample: int) -> FeatureMaps:
    """LeNet's stages for one image. 28x28 inputs are zero-padded to 32x32 (as LeNet5.forward does),
    so conv1's maps are 28x28, pool1's 14x14, conv2's 10x10 and pool2's 5x5."""
    index, x = _image(data, sample)
    image = x[0].mean(0)
    if x.shape[-1] == 28:
        x = nn.functional.pad(x, (2, 2, 2, 2))
    features, seen = _through(model.features, "features", x)
    stages, convs = [], 0
    children = list(model.features.named_children())
    for i, (name, module) in enumerate(children):
        convs += isinstance(module, nn.Conv2d)
        following = children[i + 1][1] if i + 1 < len(children) else None
        if isinstance(module, nn.MaxPool2d):
            kind = "pool"
        elif following is None or isinstance(following, nn.MaxPool2d):
            kind = "conv"  # a convolution's output after its activation, just before the pooling
        else:
            continue
        stages.append(FeatureStage(f"{kind}{convs}", _copy(seen[f"features.{name}"][0]), f"features.{name}"))
    scores = model.classifier(features).softmax(1)[0]
    label = int(data.test.y[index].item())
    return FeatureMaps(index, label, _copy(image), _copy(scores), stages, class_names=list(data.class_names))


def _templates(model: nn.Sequential, hidden: list[_Hidden], data: Dataset, sample: int) -> FeatureMaps:
    """An MLP on images: the first hidden layer's most active units for the sample, as weight images."""
    index, x = _image(data, sample)
    out, seen = _through(model, "layers", x)
    _, linear, act, _ = hidden[0]
    activations = seen[act][0]
    top = torch.topk(activations, min(TOP_TEMPLATES, activations.numel()))
    shape = x.shape[1:]  # C x H x W: weight images averaged over channels, as the image is
    templates = [
        UnitTemplate(int(unit), float(value), _copy(linear.weight[int(unit)].reshape(shape).mean(0)))
        for value, unit in zip(top.values.tolist(), top.indices.tolist(), strict=True)
    ]
    scores = out.softmax(1)[0]
    label = int(data.test.y[index].item())
    image = _copy(x[0].mean(0))
    return FeatureMaps(index, label, image, _copy(scores), templates=templates, class_names=list(data.class_names))
