"""Case (b): the loop the PyTorch tutorials teach (seed 004), written out for the benchmark.

A torchvision dataset decoding each image to PIL and back through `ToTensor`, a shuffling
`DataLoader`, and `loss.item()` after every step (one host sync per step). It trains on the same
54,000-image split as tuitrain (a `Subset` of the training set) and evaluates the test set at the end.
For `rings` the same pattern runs over a `TensorDataset`. Prints one JSON object on stdout.

    python bench/tutorial_loop.py --model mlp --batch-size 64 --root DIR   # DIR/FashionMNIST/raw/*-ubyte
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Subset, TensorDataset

sys.path.insert(0, str(Path(__file__).parent))
from bare_loop import LeNet, mlp, rings_data


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", choices=["mlp", "lenet", "rings"], required=True)
    p.add_argument("--batch-size", type=int, required=True)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--root", default="", help="folder holding FashionMNIST/raw/ (uncompressed IDX files)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    torch.manual_seed(args.seed)
    if args.model == "rings":
        (x, y), _, (tx, ty) = rings_data(args.seed)
        train_set, test_set = TensorDataset(x, y), TensorDataset(tx, ty)
    else:
        from torchvision import datasets, transforms

        to_tensor = transforms.Compose([transforms.ToTensor()])
        full = datasets.FashionMNIST(root=args.root, train=True, transform=to_tensor, download=False)
        test_set = datasets.FashionMNIST(root=args.root, train=False, transform=to_tensor, download=False)
        # tuitrain holds out 10% for validation; train on the same 54,000 images for a like-for-like count
        order = torch.randperm(len(full), generator=torch.Generator().manual_seed(args.seed))
        train_set = Subset(full, order[round(len(full) * 0.1) :].tolist())
    train_loader = DataLoader(train_set, batch_size=args.batch_size, shuffle=True)
    test_loader = DataLoader(test_set, batch_size=args.batch_size, shuffle=False)

    torch.manual_seed(args.seed)
    if args.model == "rings":
        model = mlp(2, [100, 100], 3)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    else:
        model = mlp(784, [512, 256], 10) if args.model == "mlp" else LeNet()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_function = nn.CrossEntropyLoss()

    train_seconds, samples = 0.0, 0
    for _ in range(args.epochs):
        start = time.perf_counter()
        running_loss = 0.0
        for inputs, labels in train_loader:
            optimizer.zero_grad()
            loss = loss_function(model(inputs), labels)
            loss.backward()
            optimizer.step()
            running_loss += loss.item()
            samples += len(labels)
        train_seconds += time.perf_counter() - start

    model.eval()
    correct = total = 0
    test_loss = 0.0
    with torch.no_grad():
        for inputs, labels in test_loader:
            outputs = model(inputs)
            test_loss += loss_function(outputs, labels).item() * len(labels)
            _, predicted = torch.max(outputs.data, 1)
            total += labels.size(0)
            correct += (predicted == labels).sum().item()
    print(
        json.dumps(
            {
                "samples": samples,
                "train_seconds": train_seconds,
                "samples_per_s": samples / train_seconds,
                "train_loss": running_loss / len(train_loader),
                "test_loss": test_loss / total,
                "test_accuracy": correct / total,
            }
        )
    )


if __name__ == "__main__":
    main()
