"""Provides the networks: a single neuron, an MLP and LeNet-5, built from a ModelConfig."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from tuitrain.config import ModelConfig

ACTIVATION_LAYERS = {
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "prelu": nn.PReLU,
    "identity": nn.Identity,
}


class Neuron(nn.Module):
    """y = sigmoid(w . x + b); the sigmoid lives in the loss (BCE-with-logits) for stability."""

    def __init__(self, inputs: int = 2):
        super().__init__()
        self.linear = nn.Linear(inputs, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.linear(x)
        return out


class MLP(nn.Module):
    def __init__(self, inputs: int, hidden: list[int], outputs: int, activation: str = "relu"):
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = inputs
        for units in hidden:
            layers += [nn.Linear(width, units), ACTIVATION_LAYERS[activation]()]
            width = units
        layers.append(nn.Linear(width, outputs))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.layers(x)
        return out


class LeNet5(nn.Module):
    """LeNet-5 on 32x32 input; 28x28 images are zero-padded by 2 pixels on each side."""

    def __init__(self, outputs: int = 10, activation: str = "relu"):
        super().__init__()
        act = ACTIVATION_LAYERS[activation]
        self.features = nn.Sequential(
            nn.Conv2d(1, 6, 5),
            act(),
            nn.MaxPool2d(2),  # 32 -> 28 -> 14
            nn.Conv2d(6, 16, 5),
            act(),
            nn.MaxPool2d(2),  # 14 -> 10 -> 5
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(16 * 5 * 5, 120),
            act(),
            nn.Linear(120, 84),
            act(),
            nn.Linear(84, outputs),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] == 28:
            x = nn.functional.pad(x, (2, 2, 2, 2))
        out: torch.Tensor = self.classifier(self.features(x))
        return out


def build_model(cfg: ModelConfig, input_shape: tuple[int, ...], outputs: int) -> nn.Module:
    if cfg.kind == "neuron":
        model: nn.Module = Neuron(math.prod(input_shape))
    elif cfg.kind == "lenet":
        model = LeNet5(outputs, cfg.activation)
    else:
        model = MLP(math.prod(input_shape), cfg.hidden, outputs, cfg.activation)
    if cfg.init == "kaiming":
        for module in model.modules():
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                nn.init.kaiming_uniform_(module.weight, nonlinearity="relu")
    return model


@dataclass(frozen=True)
class Layer:
    """One row of a network summary."""

    name: str
    kind: str  # the module's class name
    detail: str  # sizes in words: "2→100", "1→6, 5×5 kernel"
    parameters: int


def _layer_detail(module: nn.Module) -> str:
    if isinstance(module, nn.Linear):
        return f"{module.in_features}→{module.out_features}"
    if isinstance(module, nn.Conv2d):
        kh, kw = module.kernel_size
        return f"{module.in_channels}→{module.out_channels}, {kh}×{kw} kernel"
    if isinstance(module, nn.MaxPool2d):
        return f"{module.kernel_size}×{module.kernel_size}" if isinstance(module.kernel_size, int) else ""
    return ""


def describe(model: nn.Module) -> list[Layer]:
    """The network's leaf layers, in order, with their parameter counts."""
    rows = []
    for name, module in model.named_modules():
        if any(True for _ in module.children()) or isinstance(module, nn.Flatten):
            continue
        count = sum(p.numel() for p in module.parameters(recurse=False))
        rows.append(Layer(name or "model", type(module).__name__, _layer_detail(module), count))
    return rows


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
