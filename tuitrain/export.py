"""Provides exports of a run's records for other tools: its epochs as CSV, one row each."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Any

from tuitrain.checkpoints import atomic_write
from tuitrain.runs import METRICS, check_run_dir, epoch_history, read_events

EPOCH_COLUMNS = ("epoch", "step", "wall_seconds", "train_loss", "train_accuracy", "valid_loss", "valid_accuracy", "lr")


def epoch_rows(run_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """One dict per epoch of the run's timeline (a resume's redone epochs counted once)."""
    events, _ = read_events(check_run_dir(run_dir) / METRICS)
    rows = []
    for event in epoch_history(events):
        train, valid = event.get("train") or {}, event.get("valid") or {}
        rows.append(
            {
                "epoch": event.get("epoch"),
                "step": event.get("step"),
                "wall_seconds": event.get("total_seconds"),
                "train_loss": train.get("loss"),
                "train_accuracy": train.get("accuracy"),
                "valid_loss": valid.get("loss"),
                "valid_accuracy": valid.get("accuracy"),
                "lr": event.get("lr"),
            }
        )
    return rows


def write_epoch_csv(run_dir: str | os.PathLike[str], path: str | os.PathLike[str] | None = None) -> Path:
    """RUN_DIR/epochs.csv (or `path`), written atomically; returns where it went."""
    out = Path(path) if path is not None else Path(run_dir) / "epochs.csv"
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=EPOCH_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(epoch_rows(run_dir))
    atomic_write(out, buffer.getvalue())
    return out
