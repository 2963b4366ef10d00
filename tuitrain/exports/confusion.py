"""Provides `tuitrain export --format csv --confusion`: a checkpoint's confusion matrix over the test split as CSV.

One row per true class: its name, then how many of its test samples were predicted as each class (one
column per class, named by it), then the share predicted right (per_class_accuracy; empty for a class
with no test samples). Classification runs only: a binary run (one output, class 1 when the logit is
above 0, as the run's accuracy counts it) gives a 2x2 matrix; a regression run has no classes (refused).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from tuitrain.errors import UsageError, escape
from tuitrain.exports.formats import checkpoint_model
from tuitrain.files import write_output

TRUE_COLUMN = "true_class"
ACCURACY_COLUMN = "per_class_accuracy"


def confusion_table(run_dir: Path, which: str) -> tuple[list[str], Any]:
    """(class names, the C x C matrix of counts: true class per row, predicted per column) of the
    run's checkpoint `which` over its test split."""
    import torch

    from tuitrain.data.sets import load_dataset
    from tuitrain.training.inspection import confusion

    model, config, _, _ = checkpoint_model(run_dir, which)
    data = load_dataset(config.data, config.train.seed)
    if data.task == "regression":
        raise UsageError(
            f"--confusion is for classification runs: {escape(run_dir)} learns a regression ({data.name}), no classes"
        )
    with torch.no_grad():
        if data.task == "binary":  # one logit: class 1 above 0 (probability above one half)
            true = data.test.y.reshape(-1).long()
            predicted = torch.cat([(model(chunk).reshape(-1) > 0).long() for chunk in torch.split(data.test.x, 4096)])
            matrix = torch.bincount(true * 2 + predicted, minlength=4).reshape(2, 2)
        else:
            matrix = confusion(model, data).matrix
    names = list(data.class_names) or [str(i) for i in range(matrix.shape[0])]
    return names, matrix


def write_confusion_csv(run_dir: Path, out: Path | str, which: str) -> str:
    """The confusion matrix CSV at `out` (- for standard output), written atomically; returns where."""
    from tuitrain.training.inspection import class_accuracy

    names, matrix = confusion_table(run_dir, which)
    accuracy = class_accuracy(matrix)
    counts = matrix.tolist()

    def produce(path: Path) -> None:
        with open(path, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow([TRUE_COLUMN, *names, ACCURACY_COLUMN])
            for name, row, share in zip(names, counts, accuracy, strict=True):
                writer.writerow([name, *row, "" if share is None else f"{share:.6g}"])

    return write_output(out, produce)
