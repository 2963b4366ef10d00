"""Case (a): the training loop an experienced engineer writes by hand, with no framework around it.

Data preloaded as tensors, randperm shuffling, zero_grad(set_to_none=True), the loss tracked on the
device (one host read per epoch), validation after every epoch and the test set at the end - the
same data split, network, initial weights, optimizer and shuffle order as `tuitrain run` with the
same seed, so the final losses match tuitrain's. Prints one JSON object on stdout.

    python bench/bare_loop.py --model mlp --batch-size 64 --epochs 1 --data-dir /usr/share/datasets/fashion-mnist
"""

from __future__ import annotations

import argparse
import gzip
import json
import time
from pathlib import Path

import torch
from torch import nn


def read_idx(path: Path) -> torch.Tensor:
    raw = (gzip.open if path.suffix == ".gz" else open)(path, "rb").read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return torch.frombuffer(bytearray(raw[4 + 4 * ndim :]), dtype=torch.uint8).reshape(dims)


def idx_file(folder: Path, stem: str) -> Path:
    plain = folder / stem
    return plain if plain.is_file() else folder / f"{stem}.gz"


def image_data(folder: Path, seed: int, valid_fraction: float = 0.1):
    x = read_idx(idx_file(folder, "train-images-idx3-ubyte")).unsqueeze(1).float().div_(255)
    y = read_idx(idx_file(folder, "train-labels-idx1-ubyte")).long()
    tx = read_idx(idx_file(folder, "t10k-images-idx3-ubyte")).unsqueeze(1).float().div_(255)
    ty = read_idx(idx_file(folder, "t10k-labels-idx1-ubyte")).long()
    order = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))
    n_valid = round(x.shape[0] * valid_fraction)
    v, t = order[:n_valid], order[n_valid:]
    return (x[t], y[t]), (x[v], y[v]), (tx, ty)


def rings_data(seed: int, n: int = 15000, fraction: float = 0.15):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 2, generator=g) * 2 - 1
    r = x.norm(dim=1)
    y = (r >= 0.5).long() + (r >= 1.0).long()
    order = torch.randperm(n, generator=g)
    k = round(n * fraction)
    te, va, tr = order[:k], order[k : 2 * k], order[2 * k :]
    return (x[tr], y[tr]), (x[va], y[va]), (x[te], y[te])


def mlp(inputs: int, hidden: list[int], outputs: int) -> nn.Module:
    layers: list[nn.Module] = [nn.Flatten()]
    for units in hidden:
        layers += [nn.Linear(inputs, units), nn.ReLU()]
        inputs = units
    return nn.Sequential(*layers, nn.Linear(inputs, outputs))


class LeNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2)
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(nn.functional.pad(x, (2, 2, 2, 2))))


@torch.inference_mode()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn: nn.Module) -> tuple[float, float]:
    model.eval()
    loss, hits = torch.zeros(()), torch.zeros((), dtype=torch.long)
    for xb, yb in zip(x.split(8192), y.split(8192), strict=True):
        logits = model(xb)
        loss += loss_fn(logits, yb) * xb.shape[0]
        hits += (logits.argmax(1) == yb).sum()
    model.train()
    return loss.item() / len(x), hits.item() / len(x)


def train_epoch(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    loss_fn: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    bs: int,
    shuffle: torch.Generator,
) -> float:
    """One pass in a shuffled order; the loss stays on the device until the one read at the end."""
    n = len(x)
    order = torch.randperm(n, generator=shuffle, device=x.device)
    loss_sum = torch.zeros((), device=x.device)
    for i in range(0, n, bs):
        idx = order[i : i + bs]
        xb, yb = x[idx], y[idx]
        loss = loss_fn(model(xb), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss_sum += loss.detach() * len(idx)
    return loss_sum.item() / n


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", choices=["mlp", "lenet", "rings"], required=True)
    p.add_argument("--batch-size", type=int, required=True)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--data-dir", default="")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fused", action="store_true", help="Adam(fused=True)")
    args = p.parse_args()

    if args.model == "rings":
        (x, y), valid, test = rings_data(args.seed)
    else:
        (x, y), valid, test = image_data(Path(args.data_dir), args.seed)
    torch.manual_seed(args.seed)
    if args.model == "rings":
        model = mlp(2, [100, 100], 3)
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
    else:
        model = mlp(784, [512, 256], 10) if args.model == "mlp" else LeNet()
        opt = torch.optim.Adam(model.parameters(), lr=1e-3, **({"fused": True} if args.fused else {}))
    loss_fn = nn.CrossEntropyLoss()
    shuffle = torch.Generator().manual_seed(args.seed)
    n, bs = len(x), args.batch_size

    train_seconds, samples = 0.0, 0
    for _ in range(args.epochs):
        start = time.perf_counter()
        train_loss = train_epoch(model, opt, loss_fn, x, y, bs, shuffle)
        train_seconds += time.perf_counter() - start
        samples += n
        valid_loss, valid_acc = evaluate(model, *valid, loss_fn)
    test_loss, test_acc = evaluate(model, *test, loss_fn)
    print(
        json.dumps(
            {
                "samples": samples,
                "train_seconds": train_seconds,
                "samples_per_s": samples / train_seconds,
                "train_loss": train_loss,
                "valid_loss": valid_loss,
                "test_loss": test_loss,
                "test_accuracy": test_acc,
            }
        )
    )


if __name__ == "__main__":
    main()
