"""Provides the divergence post-mortem's vocabulary: the lr a recovery uses and one paragraph in words.

A diverged run's `RunEnded.diagnosis` (and summary.json's) is a plain JSON dict, made by
tuitrain.training.flight when the loss or a gradient first became NaN or infinite:

    {"first_nonfinite": {"module": "layers.3", "where": "output" | "gradient" | "loss",
                         "step": N, "batch": K, "epoch": E} | null,
     "growth": [{"tensor": "layers.1.weight", "measure": "gradient norm" | "loss", "factor": 40.0,
                 "over_steps": 30}, ...],
     "lr": 5.0, "recover_lr": 2.5, "advice": "..."}

This module imports no torch, so the app (and any reader of run files) can describe one cheaply.
"""

from __future__ import annotations

from typing import Any

RECOVER_FACTOR = 0.5  # `--on-diverge recover` and the app's R: the last good checkpoint at half the rate
WHERE = ("output", "gradient", "loss")


def recover_lr(lr: float) -> float:
    """The learning rate a recovery continues at (tuitrain.headless.commands.recover, the app's R)."""
    return lr * RECOVER_FACTOR


def fmt_factor(factor: float) -> str:
    return f"×{factor:.3g}" if factor < 1000 else f"×{factor:.2e}".replace("e+0", "e").replace("e+", "e")


def describe_growth(item: dict[str, Any]) -> str:
    """A line such as: layers.1.weight gradient norm ×40 over the last 30 steps."""
    name = "the loss" if item.get("measure") == "loss" else f"{item.get('tensor')} {item.get('measure', '')}".strip()
    steps = item.get("over_steps")
    over = "over the last step" if steps == 1 else f"over the last {steps} steps"
    return f"{name} {fmt_factor(float(item.get('factor', 0.0)))} {over}"


def describe_first(first: dict[str, Any]) -> str:
    where, module = first.get("where"), first.get("module")
    at = f"step {first.get('step')}"
    if first.get("batch") is not None:
        at += f" (batch {first['batch']}" + (f" of epoch {first['epoch']})" if first.get("epoch") else ")")
    if where == "output":
        return f"the output of {module} was the first value to become NaN or infinite, at {at}"
    if where == "gradient":
        return f"the gradient at {module} was the first value to become NaN or infinite, at {at}"
    return f"the loss ({module}) became NaN or infinite at {at} while every layer's output was finite"


def describe_diagnosis(diagnosis: dict[str, Any] | None) -> str:
    """One plain-text paragraph (no markup, no newlines) for a diverged run's diagnosis; "" for None."""
    if not diagnosis:
        return ""
    parts: list[str] = []
    first = diagnosis.get("first_nonfinite")
    if isinstance(first, dict):
        text = describe_first(first)
        parts.append(text[0].upper() + text[1:] + ".")
    else:
        parts.append("Replaying the last steps from the last good state found no NaN or infinite value in training.")
    growth = [g for g in diagnosis.get("growth") or [] if isinstance(g, dict)]
    if growth:
        parts.append("Before that, " + "; ".join(describe_growth(g) for g in growth) + ".")
    else:
        parts.append("Nothing grew steadily before it: it blew up at once.")
    advice = diagnosis.get("advice")
    if isinstance(advice, str) and advice:
        parts.append(advice)
    return "Post-mortem: " + " ".join(parts)


def make_advice(first: dict[str, Any] | None, growth: list[dict[str, Any]], lr: float) -> str:
    """What to do next, naming the rate a recovery (R, --on-diverge recover) would continue at."""
    gradient = (first is not None and first.get("where") == "gradient") or any(
        g.get("measure") == "gradient norm" for g in growth
    )
    hint = "the gradients grew until they overflowed" if gradient else "the activations overflowed"
    return (
        f"At lr {lr:g} {hint}: recover (R in the app, or --on-diverge recover) goes back to the last "
        f"good checkpoint at lr {recover_lr(lr):g}; if it diverges again, try a smaller --lr "
        f"(e.g. {lr / 10:g}) or another optimizer."
    )
