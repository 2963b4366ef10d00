"""Provides your own data from a CSV file: 2-D points with a class (`x1,x2,label`) or a 1-D curve (`x,y`).

Read with the csv module and checked line by line, so a bad row is reported with its line number
before anything trains. torch-free: the configuration checks use it too.
"""

from __future__ import annotations

import csv
import functools
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

from tuitrain.errors import UsageError, escape

LAYOUTS = {("x1", "x2", "label"): "classes", ("x", "y"): "regression"}
MIN_ROWS = 20  # enough for train, validation and test splits of a few points each
MAX_CLASSES = 100
FLOAT32_MAX = 3.4028234663852886e38  # values train as float32: beyond this they become inf
# a label written like a number: an integer is a class index, anything else is refused, not made a name
NUMERIC = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
INTEGER = re.compile(r"[+-]?\d+")


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
    if abs(value) > FLOAT32_MAX:
        raise UsageError(f"{where}: {column} {text.strip()!r} is beyond float32's range (about ±3.4e38)")
    return value


def _label(text: str, where: str) -> str:
    """A class label, refused before anything is sized by it: an integer index beyond MAX_CLASSES would
    mean that many outputs (and the memory for them)."""
    if not text:
        raise UsageError(f"{where}: the label is empty")
    if not text.isprintable():  # a line break: most often a quote left open on an earlier line
        raise UsageError(f"{where}: the label {text[:40]!r} contains a line break or control character")
    if INTEGER.fullmatch(text):
        # compared as text first: int() of thousands of digits is refused by Python (and slow)
        if text.lstrip("+-").lstrip("0") and (len(text.lstrip("+-").lstrip("0")) > 9 or int(text) >= MAX_CLASSES):
            raise UsageError(
                f"{where}: label {text[:40]} is not a class index 0 to {MAX_CLASSES - 1} "
                f"(at most {MAX_CLASSES} classes are supported)"
            )
        if int(text) < 0:
            raise UsageError(f"{where}: labels must be 0, 1, 2, ... or names, not {text}")
    elif NUMERIC.fullmatch(text):
        raise UsageError(
            f"{where}: label {text[:40]} is a number but not a class index 0 to {MAX_CLASSES - 1}; "
            "labels are 0, 1, 2, ... or names"
        )
    return text


def _classes(labels: list[str]) -> tuple[tuple[str, ...], list[int]]:
    """Integer labels 0..K-1 keep their numbers; any other labels are names, sorted."""
    if all(INTEGER.fullmatch(label) for label in labels):  # each checked by _label: 0..MAX_CLASSES-1
        numbers = [int(label) for label in labels]
        return tuple(str(i) for i in range(max(numbers) + 1)), numbers
    names = tuple(sorted(set(labels)))
    index = {name: i for i, name in enumerate(names)}
    return names, [index[label] for label in labels]


@functools.lru_cache(maxsize=8)
def _read(path: str, mtime_ns: int, size: int) -> Table:
    name = escape(path)
    # each row with the line it starts on: a quoted field may span lines
    rows: list[tuple[int, list[str]]] = []
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f, strict=True)
            line = 1
            try:
                for row in reader:
                    rows.append((line, row))
                    line = reader.line_num + 1
            except csv.Error as exc:
                raise UsageError(f"{name} line {line}: {_csv_problem(exc)}") from None
    except UnicodeDecodeError:
        raise UsageError(f"{name}: not a text CSV file") from None
    except OSError as exc:
        raise UsageError(f"cannot read {name}: {exc.strerror or exc}") from None
    if not rows:
        raise UsageError(f"{name} is empty: it needs a header (x1,x2,label or x,y) and rows")
    header = tuple(cell.strip().lower() for cell in rows[0][1])
    if header not in LAYOUTS:
        raise UsageError(
            f"{name} line 1: the header must be x1,x2,label (classes) or x,y (regression), not {','.join(header)}"
        )
    task, width = LAYOUTS[header], len(header)
    xs: list[tuple[float, ...]] = []
    targets: list[str] = []
    for line, row in rows[1:]:
        if not row or all(not cell.strip() for cell in row):
            continue  # blank lines are allowed
        where = f"{name} line {line}"
        if len(row) != width:
            raise UsageError(f"{where}: {len(row)} values, expected {width} ({','.join(header)})")
        xs.append(tuple(_number(cell, column, where) for cell, column in zip(row[:-1], header, strict=False)))
        if task == "regression":
            _number(row[-1], header[-1], where)
            targets.append(row[-1].strip())
        else:
            targets.append(_label(row[-1].strip(), where))
    if len(xs) < MIN_ROWS:
        raise UsageError(f"{name}: {len(xs)} rows; at least {MIN_ROWS} are needed to split train/valid/test")
    if task == "regression":
        return Table(path, task, tuple(xs), tuple(float(t) for t in targets), ())
    classes, indices = _classes(targets)
    if not 2 <= len(classes) <= MAX_CLASSES:
        raise UsageError(f"{name}: {len(classes)} classes; between 2 and {MAX_CLASSES} are supported")
    return Table(path, task, tuple(xs), tuple(float(i) for i in indices), classes)


def _csv_problem(exc: csv.Error) -> str:
    text = str(exc)
    if "field limit" in text:
        return f"a field is longer than {csv.field_size_limit():,} characters (a quote left open?)"
    if "unexpected end of data" in text:
        return "a quote opened here is never closed"
    return f"not valid CSV ({text})"


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
