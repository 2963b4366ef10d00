"""Provides the headless commands behind the CLI (`run`, `runs`, `eval`); each returns its exit code."""

from __future__ import annotations

import functools
import json
import signal
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tuitrain.errors import UsageError
from tuitrain.events import Event, Recovery, RunEnded
from tuitrain.headless.printers import (
    BackgroundPrinter,
    OutputGuard,
    RecoverableEnd,
    eval_lines,
    make_printer,
    runs_table,
    same_file,
    stderr_line,
    stdout_line,
)
from tuitrain.runs.signals import GracefulStop

if TYPE_CHECKING:
    from tuitrain.store.writer import RunWriter
    from tuitrain.training.engine import Trainer

EXIT_CODES = {"completed": 0, "stopped": 0, "diverged": 3, "failed": 1, "interrupted": 130}


def warn(message: str) -> None:
    stderr_line(f"Warning: {message}")


MAX_RECOVERIES = 3  # --on-diverge recover: at most this many rollbacks in one run


def run_command(
    preset: str | None,
    resume: str | None,
    out: str | None,
    json_mode: bool,
    overrides: dict[str, Any],
    on_diverge: str = "stop",
    tensorboard: bool = False,
    run_dir: str | None = None,
) -> int:
    """Train headless (a new run, or `--resume RUN_DIR`) and return the exit code.

    `run_dir`: a folder made beforehand for the new run (a race's child process).
    """
    from tuitrain.config import resolve_config

    prefetch(preset, resume, overrides)
    from tuitrain.runs import distributed  # torch: the data files are being read meanwhile
    from tuitrain.runs import start as session

    if tensorboard:
        from tuitrain.exports.formats import require_extra

        require_extra("tensorboard")  # before any run directory is made
    rank = distributed.this_rank()
    if rank is not None and rank.rank > 0:
        return distributed_worker(rank, preset, resume, overrides)
    prepare = None
    if rank is not None:
        if on_diverge == "recover":
            raise UsageError("--on-diverge recover trains one process; with several, resume with a lower --lr")
        distributed.init(rank, overrides.get("device") or "auto")
        prepare = functools.partial(distributed.attach, rank=rank)
    if resume is not None:
        session.check_resume_options(preset, overrides, out)
        trainer, writer = session.resume_run(
            resume,
            epochs=overrides.get("epochs"),
            lr=overrides.get("lr"),
            threads=overrides.get("threads"),
            warn=warn,
            prepare=prepare,
        )
    else:
        if preset is None and overrides.get("data_path"):
            preset = "csv"  # your own file: the small network made for it
        if preset is None:
            raise UsageError("missing PRESET (or --resume RUN_DIR, or --data FILE.csv)")
        config = resolve_config(preset, **overrides)
        trainer, writer = session.new_run(config, out or "runs", run_dir=run_dir, warn=warn)
        if prepare is not None:
            prepare(trainer)
    return drive(trainer, writer, json_mode, on_diverge, tensorboard, rank)


def prefetch(preset: str | None, resume: str | None, overrides: dict[str, Any]) -> None:
    """Start reading the run's data files, if it has some, before torch is imported; any error waits its turn."""
    from tuitrain.config import resolve_config
    from tuitrain.data import idx
    from tuitrain.errors import TuitrainError
    from tuitrain.store.run_dir import load_run_config

    try:
        config = load_run_config(resume) if resume is not None else resolve_config(preset or "csv", **overrides)
    except (TuitrainError, OSError, ValueError):
        return
    idx.prefetch(config.data)


def branch_command(
    parent: str, which: str, out: str | None, json_mode: bool, overrides: dict[str, Any], tensorboard: bool
) -> int:
    """`run --branch RUN_DIR`: a new run from the parent's checkpoint, trained like any other."""
    from tuitrain.runs import start as session

    if tensorboard:
        from tuitrain.exports.formats import require_extra

        require_extra("tensorboard")
    trainer, writer = session.branch_run(parent, "best" if which == "best" else "last", out, warn=warn, **overrides)
    return drive(trainer, writer, json_mode, "stop", tensorboard, None)


def drive(trainer: Trainer, writer: RunWriter, json_mode: bool, on_diverge: str, tensorboard: bool, rank: Any) -> int:
    """Train to the end with the printer, signal handling and recoveries asked for; the exit code."""
    from tuitrain.runs import distributed

    printer = BackgroundPrinter(OutputGuard(make_printer(json_mode), warn=stderr_line))
    stopper = GracefulStop(trainer, notice=warn).install()
    try:
        for attempt in range(1, MAX_RECOVERIES + 2):
            recoverable = on_diverge == "recover" and attempt <= MAX_RECOVERIES and not json_mode
            trainer.consumers.append(RecoverableEnd(printer) if recoverable else printer)
            if tensorboard:
                from tuitrain.exports.tensorboard_live import TensorBoardLog

                trainer.consumers.append(TensorBoardLog(trainer))
            stopper.trainer = trainer
            ended = trainer.run()
            if ended.status != "diverged" or on_diverge != "recover" or attempt > MAX_RECOVERIES:
                break
            try:
                trainer, writer = recover(trainer, writer, ended, attempt, printer)
            except Exception:
                printer(ended)  # no recovery after all: the end it held back
                raise
    except (SystemExit, KeyboardInterrupt):  # a second signal: leave at once
        writer.abort(f"stopped at once by a second {signal.Signals(stopper.signum or signal.SIGINT).name}")
        raise
    finally:
        stopper.uninstall()
        writer.close()
        printer.close()
        if rank is not None:
            distributed.finish()
    return exit_code(ended, writer.errors, stopper.exit_code, json_mode)


def distributed_worker(rank: Any, preset: str | None, resume: str | None, overrides: dict[str, Any]) -> int:
    """Ranks 1..N-1 of a torchrun job: train their share silently; rank 0 writes and prints."""
    from tuitrain.config import resolve_config
    from tuitrain.runs import distributed
    from tuitrain.runs import start as session
    from tuitrain.training.engine import Trainer

    distributed.init(rank, overrides.get("device") or "auto")
    prepare = functools.partial(distributed.attach, rank=rank)
    if resume is not None:
        trainer, _ = session.restore_trainer(resume, "last", overrides.get("epochs"), prepare)
        if overrides.get("lr") is not None:
            trainer.set_lr(overrides["lr"])
    else:
        if preset is None:
            raise UsageError("missing PRESET (or --resume RUN_DIR)")
        trainer = Trainer(resolve_config(preset, **overrides))
        prepare(trainer)
    stopper = GracefulStop(trainer, notice=lambda _: None).install()
    try:
        ended = trainer.run()
    finally:
        stopper.uninstall()
        distributed.finish()
    return exit_code(ended, [], stopper.exit_code, True)


def recover(
    trainer: Trainer, writer: RunWriter, ended: RunEnded, attempt: int, printer: Callable[[Event], None]
) -> tuple[Trainer, RunWriter]:
    """Back to the run's last good checkpoint at half the learning rate, recorded in its metrics."""
    from tuitrain.runs import start as session
    from tuitrain.training.postmortem import recover_lr

    run_dir, lr = writer.run_dir, trainer.lr
    writer.close()
    resumed, resumed_writer = session.resume_run(run_dir, lr=recover_lr(lr), warn=warn)
    note = Recovery(ended.step, resumed.step, resumed.epoch, lr, recover_lr(lr), attempt)
    resumed_writer(note)
    printer(note)
    return resumed, resumed_writer


def exit_code(ended: RunEnded, write_errors: list[str], signal_code: int | None, json_mode: bool) -> int:
    if ended.status == "diverged" and not json_mode and not same_file(sys.stdout, sys.stderr):
        stderr_line(f"Error: {ended.message}")  # the end line on stdout has it too: once where they meet
    if write_errors and ended.status != "diverged":
        stderr_line(f"Error: {write_errors[-1]}")
        return 1
    if ended.status == "interrupted" and signal_code is not None:
        return signal_code
    return EXIT_CODES.get(ended.status, 1)


def runs_command(out: str, json_mode: bool) -> int:
    from tuitrain.runs import compare

    records = compare.load_records(out)
    if json_mode:
        for record in records:
            stdout_line(json.dumps(record.to_dict()))
    elif not records:
        stderr_line(f"no runs in {out}")
    else:
        for line in runs_table(records):
            stdout_line(line)
    return 0


def compare_command(run_dirs: list[str], json_mode: bool) -> int:
    """`tuitrain compare`: the ranked runs, the seed groups ranked with their noise verdicts, what differs."""
    from tuitrain.runs import compare

    records = compare.load_run_records(run_dirs)
    if json_mode:
        stdout_line(json.dumps(compare.comparison(records)))
        return 0
    for line in compare.ranking_table(records):
        stdout_line(line)
    if len(records) > 1:  # the runs as groups of seeds, and whether their differences are beyond noise
        stdout_line()
        for line in compare.group_table(records):
            stdout_line(line)
    stdout_line()
    for line in compare.diff_table(records):
        stdout_line(line)
    return 0


def eval_command(run_dir: str, which: str, json_mode: bool) -> int:
    from tuitrain.runs import start as session
    from tuitrain.store import run_dir as runs

    path = runs.check_run_dir(run_dir)
    if (
        which == "best"
        and not (path / runs.CHECKPOINTS["best"]).exists()
        and (path / runs.CHECKPOINTS["last"]).exists()
    ):
        which = "last"  # stopped before its first validation: there is no best yet
    trainer = session.trainer_from_run(path, "best" if which == "best" else "last")
    test = trainer.evaluate(trainer.data.test)
    valid = trainer.evaluate(trainer.data.valid)
    if json_mode:
        stdout_line(
            json.dumps(
                {
                    "event": "eval",
                    "run_dir": str(run_dir),
                    "checkpoint": which,
                    "epoch": trainer.epoch,
                    "step": trainer.step,
                    "valid": valid.to_dict(),
                    "test": test.to_dict(),
                }
            )
        )
    else:
        for line in eval_lines(
            trainer.config.name, which, trainer.epoch, trainer.epoch_step, trainer.step, valid, test
        ):
            stdout_line(line)
    return 0
