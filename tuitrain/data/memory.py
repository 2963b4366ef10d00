"""Provides memory estimates for a configuration and the check that refuses runs that cannot fit.

Everything here is arithmetic on the configuration: nothing is allocated, torch is imported only to
ask a CUDA device for its free memory.
"""

from __future__ import annotations

import math
import os
from itertools import pairwise
from pathlib import Path
from typing import Any

from tuitrain.config import DATASET_SHAPES, IMAGE_SETS, Config, data_shape, sample_count
from tuitrain.errors import UsageError

# inputs per sample, network outputs, bytes per sample as held (float32 x, y float32 or int64);
# the same numbers as data.py's sets (a test checks them against it)
HELD_BYTES = {
    "blobs": 12,
    "rings": 16,
    "square": 8,
    "wave": 8,  # per sample on the device: inputs + target
    "mnist": 784 * 4 + 8,
    "fashion-mnist": 784 * 4 + 8,
}
DATA_SHAPES = {name: (math.prod(shape), outputs, HELD_BYTES[name]) for name, (shape, outputs) in DATASET_SHAPES.items()}


def _shape(config: Config) -> tuple[int, int, int]:
    """Inputs, outputs and held bytes per sample of the configured data set."""
    if config.data.dataset == "csv":  # your own file: float32 inputs and an int64 class or float32 target
        shape, outputs = data_shape(config.data)
        return math.prod(shape), outputs, 4 * math.prod(shape) + 8
    return DATA_SHAPES[config.data.dataset]


IMAGE_SET_SAMPLES = 70_000  # MNIST-type: 60,000 train + 10,000 test (data.py checks the real files)
OPTIMIZER_SLOTS = {"sgd": 0, "momentum": 1, "nesterov": 1, "adagrad": 1, "rmsprop": 1, "adam": 2, "adamw": 2}
EVAL_BATCH = 8192  # engine.EVAL_BATCH: samples per forward pass when evaluating
LENET_LAYERS = [(1 * 25, 6), (6 * 25, 16), (400, 120), (120, 84)]  # (inputs per unit, units) before the head
LENET_ACTIVATIONS = 32 * 32 + 2 * 6 * 28 * 28 + 6 * 14 * 14 + 2 * 16 * 10 * 10 + 16 * 5 * 5 + 2 * 120 + 2 * 84


def parameter_estimate(config: Config) -> int:
    """The network's parameter count, computed without building it (models.py has the layers)."""
    inputs, outputs, _ = _shape(config)
    model = config.model
    prelu = model.activation == "prelu"  # one learned slope per activation layer
    if model.kind == "neuron":
        return inputs + 1
    if model.kind == "lenet":
        body = sum(fan_in * units + units for fan_in, units in LENET_LAYERS)
        return body + 84 * outputs + outputs + (4 if prelu else 0)
    widths = [inputs, *model.hidden, outputs]
    return sum(a * b + b for a, b in pairwise(widths)) + (len(model.hidden) if prelu else 0)


def _activations_per_sample(config: Config) -> int:
    inputs, outputs, _ = _shape(config)
    if config.model.kind == "lenet":
        return LENET_ACTIVATIONS + outputs
    if config.model.kind == "neuron":
        return inputs + 1
    return inputs + 2 * sum(config.model.hidden) + outputs  # each layer's output and its activation


def memory_estimate(config: Config) -> dict[str, int]:
    """Bytes that training `config` needs at its peak, by part: network, data and batch."""
    dataset, train = config.data.dataset, config.train
    _, _, held = _shape(config)
    params = parameter_estimate(config)
    slots = OPTIMIZER_SLOTS[train.optimizer]
    # weights, gradients and optimizer state; while a checkpoint is written, a copy of the
    # weights and state and its serialized bytes
    network = params * 4 * (2 + slots) + 2 * params * 4 * (1 + slots)
    if dataset in IMAGE_SETS:
        samples = IMAGE_SET_SAMPLES
        data = samples * (3 * 784 + 2 * held)  # file bytes, their tensor, floats, split copies
        n_train = round(60_000 * (1 - config.data.valid_fraction))
    else:
        samples = sample_count(config.data)
        data = samples * (3 * held + 16)  # generated, split copies, standardized; shuffle indices
        n_train = round(samples * (1 - config.data.valid_fraction - config.data.test_fraction))
    per_sample = _activations_per_sample(config) * 4
    batch = max(
        2 * per_sample * min(train.batch_size, max(n_train, 1)),  # forward outputs and gradients
        per_sample * min(EVAL_BATCH, samples),
    )
    return {"network": network, "data": data, "batch": batch}


def _cgroup_limit() -> int | None:
    """Bytes this process's cgroup may still use (v2 memory.max, or v1), None when unlimited."""
    for limit_file, usage_file in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"),
    ):
        try:
            limit = Path(limit_file).read_text().strip()
        except OSError:
            continue
        if not limit.isdigit() or int(limit) >= 2**60:  # "max", or v1's "unlimited" page-rounded 2**63
            return None
        try:
            used = int(Path(usage_file).read_text().strip())
        except (OSError, ValueError):
            used = 0
        return max(0, int(limit) - used)
    return None


def available_memory() -> int | None:
    """Bytes of memory this process can still get: MemAvailable, or less under a cgroup limit."""
    available = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
                break
    except (OSError, ValueError, IndexError):
        pass
    if available is None:
        try:
            available = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (AttributeError, ValueError, OSError):
            return None
    limit = _cgroup_limit()
    return available if limit is None else min(available, limit)


def fmt_bytes(n: float) -> str:
    if n >= 10e9:
        return f"{n / 1e9:,.0f} GB"
    if n >= 1e9:
        return f"{n / 1e9:.1f} GB"
    return f"{max(n, 0) / 1e6:,.0f} MB"


def check_fits(config: Config, device: Any = None, available: int | None = None) -> None:
    """Refuse, before anything is allocated, a run whose estimated peak memory exceeds what is free.

    `available` defaults to the machine's (see available_memory); a CUDA `device` is also
    checked against its free GPU memory (network, data and batches live there).
    """
    parts = memory_estimate(config)
    params, optimizer = parameter_estimate(config), config.train.optimizer
    samples = IMAGE_SET_SAMPLES if config.data.dataset in IMAGE_SETS else sample_count(config.data)
    what = {
        "network": ("the network", f"{params:,} parameters with {optimizer}", "use fewer or smaller hidden layers"),
        "data": ("the data set", f"{samples:,} {config.data.dataset} samples", "use fewer data.samples"),
        "batch": (
            "a batch",
            f"{min(config.train.batch_size, samples):,} samples through "
            f"{_activations_per_sample(config):,} activations each",
            "use a smaller --batch-size or smaller hidden layers",
        ),
    }
    checks: list[tuple[str, int | None, dict[str, int]]] = [
        ("this machine", available if available is not None else available_memory(), parts)
    ]
    if device is not None and getattr(device, "type", str(device).split(":")[0]) == "cuda":
        import torch

        gpu_free, _ = torch.cuda.mem_get_info(device)
        _, _, held = _shape(config)
        checks.append((f"the GPU ({device})", gpu_free, {**parts, "data": samples * held}))
    for where, free, need in checks:
        total = sum(need.values())
        if free is None or total <= free:
            continue
        largest = max(need, key=lambda k: need[k])
        subject, detail, advice = what[largest]
        if need[largest] > free:
            head = f"{subject} needs about {fmt_bytes(need[largest])} ({detail})"
        else:
            head = (
                f"training needs about {fmt_bytes(total)} (the network {fmt_bytes(need['network'])}, "
                f"the data {fmt_bytes(need['data'])}, a batch {fmt_bytes(need['batch'])})"
            )
        raise UsageError(f"{head} but {where} has {fmt_bytes(free)} available; {advice}")
