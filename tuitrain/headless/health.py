"""Provides `tuitrain health`: the layer health board of a run, from its files, as a table or JSON."""

from __future__ import annotations

import json

from tuitrain.headless.printers import stdout_line
from tuitrain.store.health import (
    UPDATE_BAND,
    Health,
    LayerHealth,
    health_to_dict,
    in_band,
    run_health,
    sparkline,
)

TREND_WIDTH = 12  # characters of each sparkline in the table


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.2g}" if abs(value) < 1e-3 or abs(value) >= 1e4 else f"{value:.3g}"


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def _ratio(value: float | None) -> str:
    """The update ratio with its place against the band in words (no colour needed): low, high or nothing."""
    inside = in_band(value)
    mark = "" if inside is None or inside else (" low" if value is not None and value < UPDATE_BAND[0] else " high")
    return _number(value) + mark


def _activation(layer: LayerHealth) -> str:
    if layer.activation_mean is None or layer.activation_std is None:
        return "-"
    return f"{_number(layer.activation_mean)}±{_number(layer.activation_std)}"


COLUMNS = [  # the verdict second, as in the app: a narrow terminal still shows the answer
    "layer",
    "verdict",
    "grad norm",
    "trend",  # of the gradient norm
    "update/weight",
    "trend",  # of the update ratio
    "act",  # the activation after the layer
    "mean±std",  # of its outputs on the probe batch
    "dead",
    "sat",
    "nan/inf",
]


def health_table(health: Health) -> list[str]:
    """The board as fixed-width lines: a heading, one row per layer (worst first) and a key."""
    rows = [
        [
            layer.name or "(model)",
            layer.verdict,
            _number(layer.grad_norm),
            sparkline(layer.grad_norms, TREND_WIDTH),
            _ratio(layer.update_ratio),
            sparkline(layer.update_ratios, TREND_WIDTH),
            layer.activation or "-",
            _activation(layer),
            _share(layer.dead_fraction),
            _share(layer.saturated_fraction),
            str(layer.nonfinite) if health.probed else "-",
        ]
        for layer in health.layers
    ]
    right = {2, 4, 7, 8, 9, 10}
    widths = [max(len(c) for c in column) for column in zip(COLUMNS, *rows, strict=True)]

    def line(cells: list[str]) -> str:
        padded = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))]
        return "  ".join(padded).rstrip()

    low, high = UPDATE_BAND
    lines = [f"Layer health at step {health.step} (worst first)", "", line(COLUMNS)]
    lines += [line(row) for row in rows]
    lines.append("")
    lines.append(
        f"update/weight: healthy about {low:g} to {high:g}; trends: recorded steps, oldest to newest, own scale each"
    )
    if not health.probed:
        lines.append("recorded by an older tuitrain: no activation statistics or non-finite counts")
    return lines


def health_command(run_dir: str, step: int | None, json_mode: bool) -> int:
    """`tuitrain health RUN_DIR`: exit 0 with the board; bad input raises UsageError (exit 2)."""
    health = run_health(run_dir, step)
    if json_mode:
        stdout_line(json.dumps(health_to_dict(health)))
    else:
        for text in health_table(health):
            stdout_line(text)
    return 0
