"""Measures the roofline: this machine's float32 matrix-multiply peak and each case's FLOPs per sample.

Achieved GFLOP/s of a training run = samples/s x (forward + backward FLOPs per sample), counted by
torch's own FlopCounterMode on one real training step (matmuls and convolutions; element-wise work
is left out, as rooflines usually do). The peak is the best of several large square matmuls with
the same thread count, in the same process.

    .venv/bin/python bench/roofline.py mlp-256=mlp:256:fashion-mnist rings=rings:1000   # JSON
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

PEAK_SIZE = 2048  # square matmul side: large enough to be compute-bound on a CPU
PEAK_SECONDS = 2.0  # measure for about this long


def matmul_peak_gflops(
    size: int = PEAK_SIZE, seconds: float = PEAK_SECONDS, device: str = "cpu", dtype: str = "float32"
) -> float:
    """Best observed GFLOP/s of a `size`-square matmul (2*n^3 FLOPs each) in `dtype` (float32, bfloat16)."""
    import torch

    kind = getattr(torch, dtype)
    a = torch.randn(size, size, device=device, dtype=kind)
    b = torch.randn(size, size, device=device, dtype=kind)
    out = torch.empty(size, size, device=device, dtype=kind)
    torch.matmul(a, b, out=out)  # warm-up: thread pool, caches
    best = 0.0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        torch.matmul(a, b, out=out)
        if device != "cpu":
            torch.cuda.synchronize()
        best = max(best, 2 * size**3 / (time.perf_counter() - start) / 1e9)
    return best


def flops_per_sample(preset: str, batch_size: int, dataset: str | None = None) -> float:
    """Forward + backward FLOPs of one training step of `preset` at `batch_size`, per sample."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from tuitrain.config import DATASET_SHAPES, resolve_config
    from tuitrain.training.models import build_model

    config = resolve_config(preset, batch_size=batch_size, dataset=dataset)
    input_shape, outputs = DATASET_SHAPES[config.data.dataset]
    model = build_model(config.model, input_shape, outputs)
    x = torch.randn(batch_size, *input_shape)  # no gradient for the input, as in training
    with FlopCounterMode(display=False) as counter:
        model(x).sum().backward()  # the loss itself is element-wise: not counted
    return counter.get_total_flops() / batch_size


def matmul_ceiling_gflops(preset: str, batch_size: int, dataset: str | None = None, seconds: float = 1.0) -> float:
    """GFLOP/s of one training step's own matmuls and convolutions, replayed alone with the same shapes.

    The most the step could reach if everything else (element-wise work, the loss, the optimizer,
    Python) cost nothing: the honest ceiling for `% of peak` at this batch size."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils.flop_counter import FlopCounterMode

    from tuitrain.config import DATASET_SHAPES, resolve_config
    from tuitrain.training.models import build_model

    aten = torch.ops.aten
    counted = {aten.mm, aten.addmm, aten.bmm, aten.convolution, aten.convolution_backward}

    class Recording(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.calls: list[tuple[Any, tuple[Any, ...], dict[str, Any]]] = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
            kwargs = kwargs or {}
            if func.overloadpacket in counted:
                copy = tuple(a.detach().clone() if isinstance(a, torch.Tensor) else a for a in args)
                self.calls.append((func, copy, kwargs))
            return func(*args, **kwargs)

    config = resolve_config(preset, batch_size=batch_size, dataset=dataset)
    input_shape, outputs = DATASET_SHAPES[config.data.dataset]
    model = build_model(config.model, input_shape, outputs)
    x = torch.randn(batch_size, *input_shape)
    recording = Recording()
    with recording:
        model(x).sum().backward()
    with FlopCounterMode(display=False) as counter:
        for func, args, kwargs in recording.calls:
            func(*args, **kwargs)
    flops = counter.get_total_flops()
    for func, args, kwargs in recording.calls:  # warm-up
        func(*args, **kwargs)
    rounds, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for func, args, kwargs in recording.calls:
            func(*args, **kwargs)
        rounds += 1
    return flops * rounds / (time.perf_counter() - start) / 1e9


def main(argv: list[str]) -> None:
    """argv: NAME=PRESET:BATCH[:DATASET] ...; prints {"peak_gflops", "flops_per_sample", "ceiling_gflops"}."""
    out: dict[str, Any] = {"peak_gflops": matmul_peak_gflops(), "flops_per_sample": {}, "ceiling_gflops": {}}
    for spec in argv:
        name, _, rest = spec.partition("=")
        preset, batch, *dataset = rest.split(":")
        out["flops_per_sample"][name] = flops_per_sample(preset, int(batch), dataset[0] if dataset else None)
        out["ceiling_gflops"][name] = matmul_ceiling_gflops(preset, int(batch), dataset[0] if dataset else None)
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1:] or ["mlp-256=mlp:256:fashion-mnist", "lenet-256=lenet:256:fashion-mnist", "rings=rings:1000"])
