"""Provides the networks: a single neuron, an MLP and LeNet-5, built from a ModelConfig."""

from __future__ import annotations

import math

import torch
from torch import nn

from tuitrain.config import ModelConfig

ACTIVATION_LAYERS = {
    "sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU, "prelu": nn.PReLU, "identity": nn.Identity,
}


class Neuron(nn.Module):
    """y = sigmoid(w . x + b); the sigmoid lives in the loss (BCE-with-logits) for stability."""

    def __init__(self, inputs: int = 2):
        super().__init__()
        self.linear = nn.Linear(inputs, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)


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
        return self.layers(x)


class LeNet5(nn.Module):
    """LeNet-5 on 32x32 input; 28x28 images are zero-padded by 2 pixels on each side."""

    def __init__(self, outputs: int = 10, activation: str = "relu"):
        super().__init__()
        act = ACTIVATION_LAYERS[activation]
        self.features = nn.Sequential(
            nn.Conv2d(1, 6, 5), act(), nn.MaxPool2d(2),   # 32 -> 28 -> 14
            nn.Conv2d(6, 16, 5), act(), nn.MaxPool2d(2),  # 14 -> 10 -> 5
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(16 * 5 * 5, 120), act(), nn.Linear(120, 84), act(), nn.Linear(84, outputs),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] == 28:
            x = nn.functional.pad(x, (2, 2, 2, 2))
        return self.classifier(self.features(x))


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


def describe(model: nn.Module) -> list[tuple[str, str, int]]:
    """(layer, detail, parameter count) rows for a network summary."""
    rows = []
    for name, module in model.named_modules():
        if any(True for _ in module.children()) or isinstance(module, nn.Flatten):
            continue
        count = sum(p.numel() for p in module.parameters(recurse=False))
        rows.append((name or "model", f"{type(module).__name__}({module.extra_repr()})", count))
    return rows


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
