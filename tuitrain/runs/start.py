"""Provides starting runs: a new one in a fresh run directory, a resumed one, or a checkpoint reopened.

Every way of training (headless, the app's child process, in-process tests) gets its Trainer
here, with its RunWriter attached and the run directory named to the trainer.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from tuitrain.config import Config, apply_overrides
from tuitrain.data.sets import Dataset
from tuitrain.errors import UsageError
from tuitrain.store import checkpoints
from tuitrain.store.ownership import check_not_in_use
from tuitrain.store.run_dir import (
    BRANCH_OPTIONS,
    CHECKPOINTS,
    CONFIG,
    DEFAULT_OUT,
    HISTORIES,
    METRICS,
    check_run_dir,
    chosen_checkpoint,
    create_run_dir,
    load_run_config,
    read_events,
)
from tuitrain.store.writer import RunWriter
from tuitrain.training.engine import Trainer
from tuitrain.training.threads import ThreadGovernor

Checkpoint = Literal["last", "best"]
Warn = Callable[[str], None]


def attach_writer(
    trainer: Trainer,
    run_dir: str | os.PathLike[str],
    *,
    resume: bool = False,
    warn: Warn | None = None,
    histories_from: int | None = None,
) -> RunWriter:
    """Keep `run_dir` for `trainer`: the writer becomes its first consumer."""
    writer = RunWriter(trainer, run_dir=run_dir, resume=resume, warn=warn, histories_from=histories_from)
    trainer.run_dir = str(writer.run_dir)
    trainer.consumers.insert(0, writer)
    return writer


def new_run(
    config: Config,
    out_dir: str | os.PathLike[str] = DEFAULT_OUT,
    *,
    run_dir: str | os.PathLike[str] | None = None,
    data: Dataset | None = None,
    warn: Warn | None = None,
) -> tuple[Trainer, RunWriter]:
    """A Trainer for a new run in `run_dir` (made under `out_dir` when not given, before any data loads)."""
    made = run_dir is None
    path = create_run_dir(out_dir, config.name) if run_dir is None else Path(run_dir)
    try:
        trainer = Trainer(config, data=data)
        writer = attach_writer(trainer, path, warn=warn)
    except BaseException:
        if made:
            _remove_if_empty(path)
        raise
    return trainer, writer


def restore_trainer(
    run_dir: str | os.PathLike[str],
    which: Checkpoint = "last",
    epochs: int | None = None,
    prepare: Callable[[Trainer], None] | None = None,
) -> tuple[Trainer, dict[str, Any]]:
    """A Trainer with the run's configuration and data, in the state of its `which` checkpoint.

    Returns the checkpoint too (the writer's state rides in it). `epochs` replaces the configured
    number of epochs (to train a run further).
    """
    if which not in CHECKPOINTS:
        raise UsageError(f"checkpoint must be one of {', '.join(CHECKPOINTS)}, not '{which}'")
    path = check_run_dir(run_dir)
    config = load_run_config(path)
    if epochs is not None:  # checked like a new setting: config.toml is only rewritten with valid values
        config = apply_overrides(config, epochs=epochs)
    state = checkpoints.load(path / CHECKPOINTS[which])  # before the data: fail fast
    trainer = Trainer(config)
    if prepare is not None:  # e.g. one rank of several processes, before its state is loaded
        prepare(trainer)
    checkpoints.restore(trainer, state, path / CHECKPOINTS[which])
    return trainer, state


def trainer_from_run(run_dir: str | os.PathLike[str], which: Checkpoint = "last", epochs: int | None = None) -> Trainer:
    """The network of a run's checkpoint, ready to evaluate or inspect."""
    return restore_trainer(run_dir, which, epochs)[0]


RESUME_OPTIONS = ("epochs", "lr", "threads")  # what --resume may change


def check_resume_options(preset: str | None, overrides: dict[str, Any], out: str | None) -> None:
    """A resume names no preset, changes only RESUME_OPTIONS and continues in its own directory."""
    if preset is not None:
        raise UsageError("give PRESET for a new run or --resume RUN_DIR, not both")
    fixed = [f"--{k.replace('_', '-')}" for k, v in overrides.items() if v is not None and k not in RESUME_OPTIONS]
    if fixed:
        raise UsageError(f"{', '.join(fixed)}: cannot change a run when resuming (only --epochs, --lr and --threads)")
    if out is not None:
        raise UsageError("--out does not apply to --resume: the run continues in its own directory")


def check_resume(run_dir: str | os.PathLike[str], epochs: int | None) -> None:
    """Refuse a resume that would train nothing, before any data loads."""
    path = check_run_dir(run_dir)
    target = load_run_config(path).train.epochs
    state = checkpoints.load(path / CHECKPOINTS["last"])
    done = state["epoch"]
    if epochs is None:
        if done >= target and not state["epoch_step"]:
            raise UsageError(
                f"{run_dir}: already trained {done} of {target} epochs; "
                f"pass --epochs N (more than {done}) to train further"
            )
    elif epochs <= done:
        raise UsageError(f"--epochs {epochs}: the run has done {done} epochs already; ask for more")


def resume_run(
    run_dir: str | os.PathLike[str],
    *,
    epochs: int | None = None,
    lr: float | None = None,
    threads: int | None = None,
    warn: Warn | None = None,
    prepare: Callable[[Trainer], None] | None = None,
) -> tuple[Trainer, RunWriter]:
    """Continue a run in its own directory from its last checkpoint (optionally longer, or at another rate)."""
    check_not_in_use(check_run_dir(run_dir))
    apply_overrides(load_run_config(run_dir), epochs=epochs, lr=lr, threads=threads)  # checked first
    check_resume(run_dir, epochs)
    trainer, state = restore_trainer(run_dir, "last", epochs, prepare)
    if lr is not None:  # e.g. after a divergence: continue from the last good checkpoint more gently
        trainer.config = apply_overrides(trainer.config, lr=lr)
        trainer.set_lr(trainer.config.train.lr)
    if threads is not None:  # a runtime setting: it changes no result a resume must reproduce
        trainer.config = apply_overrides(trainer.config, threads=threads)
        trainer.governor = ThreadGovernor(threads)
    writer = attach_writer(trainer, run_dir, resume=True, warn=warn)
    writer.load_state_dict(state)
    return trainer, writer


def branch_run(
    parent_dir: str | os.PathLike[str],
    which: Checkpoint = "last",
    out_dir: str | os.PathLike[str] | None = None,
    *,
    warn: Warn | None = None,
    **changes: Any,
) -> tuple[Trainer, RunWriter]:
    """A new run that continues `parent_dir` from its `which` checkpoint, exactly, with `changes`.

    It gets its own directory (beside the parent unless `out_dir` says otherwise) whose
    metrics.jsonl starts with the parent's lines up to the branch step, so its curves continue
    the parent's; summary.json names the parent. A changed optimizer starts with fresh state.
    """
    unknown = [k for k, v in changes.items() if v is not None and k not in BRANCH_OPTIONS]
    if unknown:
        flag = "--" + unknown[0].replace("_", "-")
        raise UsageError(f"a branch may change only --epochs, --lr, --optimizer and --threads, not {flag}")
    parent = check_run_dir(parent_dir)
    checkpoint = chosen_checkpoint(parent, which, str(parent_dir), "branch from")
    config = apply_overrides(load_run_config(parent), **changes)  # checked before anything loads
    state = checkpoints.load(checkpoint)
    if state["epoch"] >= config.train.epochs and not state["epoch_step"]:
        raise UsageError(
            f"the {which} checkpoint is at epoch {state['epoch']} of {config.train.epochs}; "
            f"pass --epochs N (more than {state['epoch']}) to train the branch further"
        )
    path = create_run_dir(out_dir if out_dir is not None else parent.parent, f"{config.name}-branch")
    try:
        trainer = Trainer(config)
        if config.train.optimizer != state["config"]["train"]["optimizer"]:
            state = {**state, "optimizer": trainer.optimizer.state_dict(), "config": config.to_dict()}
        checkpoints.restore(trainer, state, parent / CHECKPOINTS[which])
        trainer.set_lr(config.train.lr)
        origin = {"run_dir": str(parent), "checkpoint": which, "epoch": state["epoch"], "step": state["step"]}
        checkpoints.atomic_write(path / METRICS, inherited_lines(parent, state["step"], origin))
        if (parent / HISTORIES).is_file():  # the weight histories continue the parent's too
            shutil.copyfile(parent / HISTORIES, path / HISTORIES)
        writer = attach_writer(trainer, path, warn=warn, histories_from=state["step"])
        writer.parent = origin
        writer.load_state_dict(state)
        inherit_best(writer, parent)
    except BaseException:
        shutil.rmtree(path, ignore_errors=True)
        raise
    return trainer, writer


def inherited_lines(parent: Path, step: int, origin: dict[str, Any]) -> bytes:
    """The parent's metrics.jsonl lines up to `step` (its curves so far), then a branch event."""
    events, _ = read_events(parent / METRICS)
    kept = [e for e in events if e.get("event") in ("start", "step", "epoch", "recovery") and e.get("step", 0) <= step]
    kept.append({"event": "branch", "parent": origin, "epoch": origin["epoch"], "step": step})
    return b"".join(json.dumps(e).encode("utf-8") + b"\n" for e in kept)


def inherit_best(writer: RunWriter, parent: Path) -> None:
    """Keep the parent's best epoch (and its best.pt) when it lies on the branch's timeline; else start afresh."""
    best_step = writer.best.get("step")
    source = parent / CHECKPOINTS["best"]
    if best_step is None or not source.exists():
        writer.best = {}
        return
    try:
        if checkpoints.load(source)["step"] != best_step:
            raise OSError("another best")
        shutil.copyfile(source, writer.run_dir / CHECKPOINTS["best"])
    except (OSError, UsageError):
        writer.best = {}


def _remove_if_empty(path: Path) -> None:
    """Undo a new run directory that could not start (a full or read-only disk): what the writer
    began (its configuration, empty logs) goes, so `runs` lists no run that never was."""
    for name in (CONFIG, METRICS, HISTORIES):
        try:
            if (path / name).is_file() and (name == CONFIG or (path / name).stat().st_size == 0):
                (path / name).unlink()
        except OSError:
            pass
    checkpoints.remove_stale_temporaries(path)
    try:
        path.rmdir()
    except OSError:
        pass
