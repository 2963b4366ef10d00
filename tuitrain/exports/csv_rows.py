"""Provides exports of a run's records for other tools: its epochs as CSV, one row each."""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from tuitrain.files import write_output
from tuitrain.store.run_dir import METRICS, check_run_dir, timeline

EPOCH_COLUMNS = ("epoch", "step", "wall_seconds", "train_loss", "train_accuracy", "valid_loss", "valid_accuracy", "lr")


def epoch_rows(run_dir: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """One dict per epoch of the run's timeline (a resume's redone epochs counted once), streamed."""
    for event in timeline(check_run_dir(run_dir) / METRICS, ("epoch",)):
        train, valid = event.get("train") or {}, event.get("valid") or {}
        yield {
            "epoch": event.get("epoch"),
            "step": event.get("step"),
            "wall_seconds": event.get("total_seconds"),
            "train_loss": train.get("loss"),
            "train_accuracy": train.get("accuracy"),
            "valid_loss": valid.get("loss"),
            "valid_accuracy": valid.get("accuracy"),
            "lr": event.get("lr"),
        }


def write_rows(path: Path, columns: tuple[str, ...], rows: Iterable[dict[str, Any]]) -> None:
    """A CSV file at `path`, row by row (a long run's export never sits whole in memory)."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def write_epoch_csv(run_dir: str | os.PathLike[str], path: str | os.PathLike[str] | None = None) -> Path:
    """RUN_DIR/epochs.csv (or `path`), written atomically; returns where it went."""
    out = Path(path) if path is not None else Path(run_dir) / "epochs.csv"
    write_output(out, lambda tmp: write_rows(tmp, EPOCH_COLUMNS, epoch_rows(run_dir)))
    return out


GROUP_METRICS = ("train_loss", "train_accuracy", "valid_loss", "valid_accuracy")
GROUP_COLUMNS = (
    "group",
    "epoch",
    "n",
    *(f"{metric}_{stat}" for metric in GROUP_METRICS for stat in ("mean", "std", "min", "max")),
)


def group_rows(groups: Iterable[tuple[str, list[Path]]]) -> Iterator[dict[str, Any]]:
    """One row per group and epoch: how many of its runs reached that epoch (n), and the mean, sample
    standard deviation (empty below two values), min and max of each metric over them."""
    for label, run_dirs in groups:
        by_epoch: dict[int, list[dict[str, Any]]] = {}
        for run_dir in run_dirs:
            for row in epoch_rows(run_dir):
                if isinstance(row["epoch"], int):
                    by_epoch.setdefault(row["epoch"], []).append(row)
        for epoch in sorted(by_epoch):
            rows = by_epoch[epoch]
            out: dict[str, Any] = {"group": label, "epoch": epoch, "n": len(rows)}
            for metric in GROUP_METRICS:
                values = [float(r[metric]) for r in rows if isinstance(r[metric], (int, float))]
                values = [v for v in values if math.isfinite(v)]
                mean = sum(values) / len(values) if values else None
                std = (
                    math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
                    if mean is not None and len(values) > 1
                    else None
                )
                out[f"{metric}_mean"] = mean
                out[f"{metric}_std"] = std
                out[f"{metric}_min"] = min(values) if values else None
                out[f"{metric}_max"] = max(values) if values else None
            yield out
