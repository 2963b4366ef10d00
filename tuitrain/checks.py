"""Provides the type checks for what is read back from run files: JSON lines, summaries, checkpoints.

Files on disk can be damaged or hand-edited; whatever passes these checks has the types the
writers give it, so no reader or viewer trips over a string where a number belongs.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tuitrain.errors import escape
from tuitrain.files import read_regular

MAX_COUNT = 2**63  # epochs, steps, sample counts and process ids fit a 64-bit integer


def is_count(value: Any) -> bool:
    """A whole number from 0 to 2**63 - 1 (true and false are not numbers here)."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < MAX_COUNT


def is_number(value: Any) -> bool:
    """An int or float that converts to a float (NaN and Inf included)."""
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and (not isinstance(value, int) or abs(value) < MAX_COUNT)
    )


def is_finite(value: Any) -> bool:
    return is_number(value) and math.isfinite(value)


def is_metrics(value: Any) -> bool:
    """{"loss": ..., "accuracy": ...} with finite numbers or nulls."""
    return isinstance(value, dict) and all(value.get(k) is None or is_finite(value[k]) for k in ("loss", "accuracy"))


def is_best(value: Any) -> bool:
    """The best epoch as run files keep it: {"epoch", "step", "valid": metrics}."""
    return (
        isinstance(value, dict)
        and all(value.get(k) is None or is_count(value[k]) for k in ("epoch", "step"))
        and (value.get("valid") is None or is_metrics(value["valid"]))
    )


def is_diagnosis(value: Any) -> bool:
    """A diverged run's post-mortem (tuitrain.training.postmortem): its known keys with their types."""
    if not isinstance(value, dict):
        return False
    first, growth = value.get("first_nonfinite"), value.get("growth", [])
    first_ok = first is None or (
        isinstance(first, dict)
        and all(first.get(k) is None or isinstance(first[k], str) for k in ("module", "where"))
        and all(first.get(k) is None or is_count(first[k]) for k in ("step", "batch", "epoch"))
    )
    growth_ok = isinstance(growth, list) and all(
        isinstance(g, dict)
        and all(g.get(k) is None or isinstance(g[k], str) for k in ("tensor", "measure"))
        and (g.get("factor") is None or is_finite(g["factor"]))
        and (g.get("over_steps") is None or is_count(g["over_steps"]))
        for g in growth
    )
    numbers_ok = all(value.get(k) is None or is_finite(value[k]) for k in ("lr", "recover_lr"))
    return first_ok and growth_ok and numbers_ok and (value.get("advice") is None or isinstance(value["advice"], str))


def is_names(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())


def show(value: Any, limit: int = 40) -> str:
    """A value for a message: JSON, cut to `limit` characters, control characters escaped."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError, RecursionError):
        text = type(value).__name__
    return escape(text if len(text) <= limit else text[: limit - 3] + "...")


# what each summary.json field must hold (null is allowed for all but status: it reads as absent)
SUMMARY_FIELDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    **{k: (lambda v: isinstance(v, str), "a string") for k in ("status", "preset", "run_dir", "host", "message")},
    **{k: (is_count, "a whole number") for k in ("epoch", "epochs", "step", "epoch_step", "pid")},
    **{
        k: (is_finite, "a finite number")
        for k in ("train_seconds", "samples_per_s", "started_at", "updated_at", "ended_at")
    },
    **{k: (is_metrics, "metrics (loss, accuracy)") for k in ("last_valid", "test")},
    "best": (is_best, "the best epoch (epoch, step, valid)"),
    "diagnosis": (is_diagnosis, "a divergence post-mortem (first_nonfinite, growth, advice)"),
    "checkpoints": (is_names, "names of checkpoint files"),
    "parent": (lambda v: is_parent(v), "the run it branched from (run_dir, checkpoint, epoch, step)"),
}


def is_parent(value: Any) -> bool:
    """A branch's origin as summary.json keeps it: {"run_dir": str, "checkpoint": str, "epoch", "step"}."""
    return (
        isinstance(value, dict)
        and isinstance(value.get("run_dir"), str)
        and isinstance(value.get("checkpoint"), str)
        and all(is_count(value.get(k)) for k in ("epoch", "step"))
    )


def summary_problem(data: Any) -> str | None:
    """What is wrong with a parsed summary.json (a wrong type, NaN or Infinity), or None."""
    if not isinstance(data, dict):
        return "not a JSON object"
    for key, (check, what) in SUMMARY_FIELDS.items():
        if key in data and (data[key] is not None or key == "status") and not check(data[key]):
            return f"{key} must be {what}, not {show(data[key])}"
    return None


def read_summary_file(path: Path) -> tuple[dict[str, Any], str | None, str | None]:
    """(summary, None, None), or ({}, "unreadable" | "damaged", what is wrong); missing is ({}, None, None)."""
    try:
        data = json.loads(read_regular(path).decode("utf-8"))
    except FileNotFoundError:
        return {}, None, None
    except UnicodeDecodeError:
        return {}, "damaged", f"{path.name}: not UTF-8 text"
    except OSError as exc:  # a directory, FIFO or device where the file belongs, no permission
        return {}, "unreadable", f"{path.name}: {exc.strerror or exc}"
    except (ValueError, RecursionError) as exc:
        first = str(exc).splitlines()[0] if isinstance(exc, ValueError) else "nested too deeply"
        return {}, "damaged", f"{path.name}: not valid JSON ({first})"
    problem = summary_problem(data)
    if problem is not None:
        return {}, "damaged", f"{path.name}: {problem}"
    return data, None, None
