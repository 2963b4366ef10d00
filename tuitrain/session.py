"""Provides starting runs: a new one in a fresh run directory, a resumed one, or a checkpoint reopened.

Every way of training (headless, the app's child process, in-process tests) gets its Trainer
here, with its RunWriter attached and the run directory named to the trainer.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from tuitrain import checkpoints
from tuitrain.config import Config, apply_overrides
from tuitrain.data import Dataset
from tuitrain.engine import Trainer
from tuitrain.errors import UsageError
from tuitrain.runs import CHECKPOINTS, DEFAULT_OUT, check_run_dir, create_run_dir, load_run_config
from tuitrain.threads import ThreadGovernor
from tuitrain.writer import RunWriter

Checkpoint = Literal["last", "best"]
Warn = Callable[[str], None]


def attach_writer(
    trainer: Trainer, run_dir: str | os.PathLike[str], *, resume: bool = False, warn: Warn | None = None
) -> RunWriter:
    """Keep `run_dir` for `trainer`: the writer becomes its first consumer."""
    writer = RunWriter(trainer, run_dir=run_dir, resume=resume, warn=warn)
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


def _remove_if_empty(path: Path) -> None:
    try:
        path.rmdir()
    except OSError:
        pass
