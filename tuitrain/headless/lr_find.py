"""Provides `tuitrain lr-find`: the learning-rate range test in its own run directory, its curve and suggestion printed.

The folder `<out>/<YYYYmmdd-HHMMSS>-<preset>-lr-find/` holds

    lr_find.toml    the configuration tested (a branch's: its parent's)
    lr_find.json    the result: suggested_lr, rule, both rules' rates, settings, the curve, the parent if any
    lr_find.csv     step,lr,loss,smoothed_loss

It has no config.toml, so `runs`, `compare` and `--resume` never take it for a training run. A test
from a run's checkpoint (`--branch RUN_DIR`) only reads that run: its folder goes beside the parent
(or under --out), like a branch's.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuitrain.errors import UsageError, escape
from tuitrain.headless.printers import stderr_line, stdout_line

if TYPE_CHECKING:
    from tuitrain.config import Config
    from tuitrain.training.engine import Trainer
    from tuitrain.training.lr_find import RangeResult, RangeSettings

CONFIG_FILE, RESULT_FILE, CSV_FILE = "lr_find.toml", "lr_find.json", "lr_find.csv"
MARKER = "lr-find"  # the folder's name ends with it


def lr_find_command(
    preset: str | None,
    branch: str | None,
    which: str,
    out: str | None,
    json_mode: bool,
    overrides: dict[str, Any],
    settings: RangeSettings,
) -> int:
    """`tuitrain lr-find PRESET | --branch RUN_DIR`: test, save, print; the exit code."""
    check_options(preset, branch, overrides)
    settings.check()
    trainer, path, parent = start_lr_find(preset, branch, which, out, overrides)
    from tuitrain.training.lr_find import find_lr

    try:
        if json_mode:
            start = {"event": "lr_find_start", "run_dir": str(path), "preset": trainer.config.name, "parent": parent}
            stdout_line(json.dumps({**start, **settings.to_dict()}))
        else:
            source = f"the {which} checkpoint of {escape(branch)}" if branch is not None else "fresh weights"
            stderr_line(
                f"{escape(trainer.config.name)}: {settings.steps} steps, lr {settings.start_lr:g} to "
                f"{settings.end_lr:g}, {trainer.config.train.optimizer}, batch {trainer.config.train.batch_size}, "
                f"from {source}"
            )
        result = find_lr(trainer, settings)
        save_result(path, trainer.config, result, parent)
    except BaseException:
        shutil.rmtree(path, ignore_errors=True)  # a test that did not finish leaves no folder
        raise
    if json_mode:
        stdout_line(json.dumps({"event": "lr_find", "run_dir": str(path), "parent": parent, **result.to_dict()}))
    else:
        for line in curve_lines(result) if not on_terminal() else [plot(result)]:
            stdout_line(line)
        for line in suggestion_lines(result, path):
            stdout_line(line)
    if result.suggestion.lr is None:
        stderr_line(f"Error: no learning rate to suggest: {'; '.join(result.suggestion.notes)}")
        return 1
    return 0


def check_options(preset: str | None, branch: str | None, overrides: dict[str, Any]) -> None:
    """One run's settings, no ramp-shaped --lr; a branch's settings are its parent's (only --threads)."""
    listed = [k for k, v in overrides.items() if isinstance(v, tuple)]
    if listed:
        raise UsageError(f"--{listed[0].replace('_', '-')}: lr-find takes one value (lists are for run and train)")
    if overrides.get("lr") is not None:
        raise UsageError("lr-find tries the rates from --start-lr to --end-lr; --lr does not apply")
    if branch is not None:
        if preset is not None:
            raise UsageError("give PRESET or --branch RUN_DIR, not both")
        fixed = [k for k, v in overrides.items() if v is not None and k != "threads"]
        if fixed:
            flag = "--" + fixed[0].replace("_", "-")
            raise UsageError(f"{flag}: --branch tests the run's own settings (only --threads may change)")
    elif preset is None and not overrides.get("data_path"):
        raise UsageError("missing PRESET (or --branch RUN_DIR, or --data FILE.csv)")


def start_lr_find(
    preset: str | None, branch: str | None, which: str, out: str | None, overrides: dict[str, Any]
) -> tuple[Trainer, Path, dict[str, Any] | None]:
    """A throwaway Trainer (fresh, or in the state of the run's checkpoint), its new folder and the parent
    (None for fresh weights). The folder is made before any data loads; it is gone again on failure."""
    from tuitrain.config import apply_overrides, resolve_config
    from tuitrain.store import checkpoints
    from tuitrain.store.run_dir import DEFAULT_OUT, check_run_dir, chosen_checkpoint, load_run_config

    if branch is None:
        config = resolve_config(preset or "csv", **overrides)
        path = new_folder(out or DEFAULT_OUT, config)
        state, parent, source = None, None, path
    else:
        run = check_run_dir(branch)
        source = chosen_checkpoint(run, which, escape(branch), "start from")
        config = apply_overrides(load_run_config(run), threads=overrides.get("threads"))
        state = checkpoints.load(source)  # before the folder is made: a damaged checkpoint fails first
        path = new_folder(out if out is not None else run.parent, config)
        parent = {"run_dir": str(run), "checkpoint": which, "epoch": state["epoch"], "step": state["step"]}
    try:
        trainer = make_trainer(config, state, source)
    except BaseException:
        shutil.rmtree(path, ignore_errors=True)
        raise
    return trainer, path, parent


def new_folder(out_dir: str | os.PathLike[str], config: Config) -> Path:
    """`<out_dir>/<YYYYmmdd-HHMMSS>-<preset>-lr-find/` with the configuration tested in it."""
    from tuitrain.store import checkpoints
    from tuitrain.store.run_dir import create_run_dir

    path = create_run_dir(out_dir, f"{config.name}-{MARKER}")
    try:
        checkpoints.atomic_write(path / CONFIG_FILE, config.to_toml())
    except BaseException:
        shutil.rmtree(path, ignore_errors=True)
        raise
    return path


def make_trainer(config: Config, state: dict[str, Any] | None, source: Path) -> Trainer:
    """A Trainer for `config`, in the checkpoint `state` when given (read from `source`): weights,
    optimizer state (momentum, Adam's moments) and shuffling, as a branch loads them."""
    from tuitrain.store import checkpoints
    from tuitrain.training.engine import Trainer

    trainer = Trainer(config)
    if state is not None:
        checkpoints.restore(trainer, state, source)
    return trainer


def save_result(path: Path, config: Config, result: RangeResult, parent: dict[str, Any] | None) -> None:
    """lr_find.json and lr_find.csv in the test's folder (each written atomically)."""
    from tuitrain.store import checkpoints

    record = {"preset": config.name, "parent": parent, **result.to_dict()}
    checkpoints.atomic_write(path / RESULT_FILE, json.dumps(record, indent=1) + "\n")
    rows = ["step,lr,loss,smoothed_loss"]
    rows += [
        f"{i},{lr!r},{loss!r},{smoothed!r}"
        for i, (lr, loss, smoothed) in enumerate(zip(result.lrs, result.losses, result.smoothed, strict=True), 1)
    ]
    checkpoints.atomic_write(path / CSV_FILE, "\n".join(rows) + "\n")


# ----------------------------------------------------------------------------- printing


def on_terminal() -> bool:
    try:
        return sys.stdout is not None and sys.stdout.isatty()
    except (OSError, ValueError):
        return False


def curve_lines(result: RangeResult) -> list[str]:
    """Off a terminal: a header, then one "lr loss" line per step (the smoothed loss)."""
    return ["lr loss"] + [f"{lr:.6g} {loss:.6g}" for lr, loss in result.curve]


def plot(result: RangeResult, width: int | None = None, height: int = 20) -> str:
    """The smoothed loss against lr (log axis) drawn by plotext, the suggested rate marked."""
    import plotext as plt

    finite = [(lr, loss) for lr, loss in result.curve if math.isfinite(loss)]
    columns = width or shutil.get_terminal_size((100, 24)).columns
    plt.clear_figure()
    plt.theme("clear")
    plt.plotsize(max(40, min(columns, 120)), height)
    if finite:
        plt.plot([p[0] for p in finite], [p[1] for p in finite], marker="braille", color="blue")
    plt.xscale("log")
    low, high = result.settings.start_lr, result.settings.end_lr
    ticks = [10.0**e for e in range(math.ceil(math.log10(low)), math.floor(math.log10(high)) + 1)]
    plt.xticks(ticks, [f"{t:g}" for t in ticks])
    if result.suggestion.lr is not None:
        plt.vline(result.suggestion.lr, "red")
    plt.title("smoothed loss vs learning rate (red: suggested)")
    plt.xlabel("lr")
    if os.environ.get("NO_COLOR"):
        plt.clear_color()
    return str(plt.build())


STOPS = {
    "end": "all {steps} steps taken",
    "exploded": "stopped at step {taken} of {steps}: the smoothed loss passed {explode:g}x its best",
    "nan": "stopped at step {taken} of {steps}: the loss became NaN or infinite",
    "stopped": "stopped by request after {taken} of {steps} steps",
}


def suggestion_lines(result: RangeResult, path: Path | None = None) -> list[str]:
    """The suggestion, the rule that made it, the cross-check, how the test ended and where it is saved."""
    s, settings = result.suggestion, result.settings
    lines = []
    if s.lr is not None:
        lines.append(f"suggested lr: {s.lr:.3g}  ({s.rule})")
    else:
        lines.append("suggested lr: none")
    steepest = f"{s.steepest_lr:.3g}" if s.steepest_lr is not None else "none (the loss never fell)"
    lines.append(f"  steepest descent of the smoothed loss: lr {steepest}")
    if s.min_loss_lr is not None and s.min_rule_lr is not None:
        lines.append(
            f"  minimum smoothed loss at lr {s.min_loss_lr:.3g}; / 10 = {s.min_rule_lr:.3g}"
            + ("  (the two rules agree within 10x)" if s.agree else "")
        )
    lines.append(
        "  "
        + STOPS[result.stop].format(steps=settings.steps, taken=len(result.lrs), explode=settings.explode)
        + f"; loss smoothed with beta {settings.beta:g}, bias-corrected"
    )
    lines += [f"  note: {note}" for note in s.notes]
    if path is not None:
        lines.append(f"saved: {escape(path)}/{RESULT_FILE} and {CSV_FILE}")
    return lines
