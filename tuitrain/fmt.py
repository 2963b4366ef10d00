"""Provides the number formats every view shares: metrics, scores, durations, ages."""

from __future__ import annotations

from typing import Any

from tuitrain.events import Metrics


def fmt_metrics(m: Metrics | None) -> str:
    """Fixed-width `loss … acc …` for log columns."""
    if m is None:
        return "loss      -"
    text = f"loss {m.loss:9.4g}"
    return text + (f"  acc {m.accuracy:7.2%}" if m.accuracy is not None else "")


def fmt_result(m: Metrics) -> str:
    """`loss 0.0931, accuracy 98.62%` for sentences."""
    text = f"loss {m.loss:.4g}"
    return text + (f", accuracy {m.accuracy:.2%}" if m.accuracy is not None else "")


def fmt_score(metrics: dict[str, Any] | None) -> str:
    """A run's headline number from a metrics dict of its files: accuracy, else loss."""
    if not metrics:
        return "-"
    if metrics.get("accuracy") is not None:
        return f"acc {metrics['accuracy']:.2%}"
    return f"loss {metrics['loss']:.4g}" if metrics.get("loss") is not None else "-"


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    whole = int(max(0, seconds))
    h, rest = divmod(whole, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def fmt_age(seconds: float) -> str:
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit} ago"
    return f"{int(seconds)}s ago"


def plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}" + ("" if count == 1 else "s")
