"""Provides your own data from a CSV file: 2-D points with a class (`x1,x2,label`) or a 1-D curve (`x,y`).

Read with the csv module and checked line by line, so a bad row is reported with its line number
before anything trains. torch-free: the configuration checks use it too.
"""

from __future__ import annotations

import csv
import functools
import math
import os
from dataclasses import dataclass
from pathlib import Path

from tuitrain.errors import UsageError, escape

LAYOUTS = {("x1", "x2", "label"): "classes", ("x", "y"): "regression"}
MIN_ROWS = 20  # enough for train, validation and test splits of a few points each
MAX_CLASSES = 100


@dataclass(frozen=True)
class Table:
    path: str
    task: str  # "classes" or "regression"
    x: tuple[tuple[float, ...], ...]
    y: tuple[float, ...]  # class indices (as floats) or targets
    classes: tuple[str, ...]  # class names in index order; () for regression

    @property
    def inputs(self) -> int:
        return len(self.x[0])

    @property
    def outputs(self) -> int:
        return len(self.classes) if self.task == "classes" else 1


def _number(text: str, column: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"{where}: {column} is not a number ({text.strip()!r})") from None
    if not math.isfinite(value):
        raise UsageError(f"{where}: {column} must be a finite number, not {text.strip()!r}")
    return value


def _classes(labels: list[str]) -> tuple[tuple[str, ...], list[int]]:
    """Integer labels 0..K-1 keep their numbers; any other labels are names, sorted."""
    try:
        numbers = [int(label) for label in labels]
    except ValueError:
        names = tuple(sorted(set(labels)))
        index = {name: i for i, name in enumerate(names)}
        return names, [index[label] for label in labels]
    if min(numbers) < 0:
        raise UsageError(f"labels must be 0, 1, 2, ... or names, not {min(numbers)}")
    return tuple(str(i) for i in range(max(numbers) + 1)), numbers


@functools.lru_cache(maxsize=8)
def _read(path: str, mtime_ns: int, size: int) -> Table:
    name = escape(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f))
    except UnicodeDecodeError:
        raise UsageError(f"{name}: not a text CSV file") from None
    except OSError as exc:
        raise UsageError(f"cannot read {name}: {exc.strerror or exc}") from None
    if not rows:
        raise UsageError(f"{name} is empty: it needs a header (x1,x2,label or x,y) and rows")
    header = tuple(cell.strip().lower() for cell in rows[0])
    if header not in LAYOUTS:
        raise UsageError(
            f"{name} line 1: the header must be x1,x2,label (classes) or x,y (regression), not {','.join(header)}"
        )
    task, width = LAYOUTS[header], len(header)
    xs: list[tuple[float, ...]] = []
    targets: list[str] = []
    for line, row in enumerate(rows[1:], start=2):
        if not row or all(not cell.strip() for cell in row):
            continue  # blank lines are allowed
        where = f"{name} line {line}"
        if len(row) != width:
            raise UsageError(f"{where}: {len(row)} values, expected {width} ({','.join(header)})")
        xs.append(tuple(_number(cell, column, where) for cell, column in zip(row[:-1], header)))
        targets.append(row[-1].strip())
        if task == "regression":
            _number(row[-1], header[-1], where)
        elif not targets[-1]:
            raise UsageError(f"{where}: the label is empty")
    if len(xs) < MIN_ROWS:
        raise UsageError(f"{name}: {len(xs)} rows; at least {MIN_ROWS} are needed to split train/valid/test")
    if task == "regression":
        return Table(path, task, tuple(xs), tuple(float(t) for t in targets), ())
    classes, indices = _classes(targets)
    if not 2 <= len(classes) <= MAX_CLASSES:
        raise UsageError(f"{name}: {len(classes)} classes; between 2 and {MAX_CLASSES} are supported")
    return Table(path, task, tuple(xs), tuple(float(i) for i in indices), classes)


def load_table(path: str | os.PathLike[str]) -> Table:
    """The checked table (re-read only when the file changed)."""
    p = Path(path)
    try:
        stat = p.stat()
    except OSError:
        raise UsageError(f"no data file at {escape(str(path))}") from None
    if not p.is_file():
        raise UsageError(f"{escape(str(path))} is not a file")
    return _read(str(p), stat.st_mtime_ns, stat.st_size)
