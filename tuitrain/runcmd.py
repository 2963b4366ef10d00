"""Provides the headless `run` (new or --resume) with signal handling, and the `runs` and `eval` commands."""

from __future__ import annotations

import errno
import json
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

import click

from tuitrain.errors import UsageError, escape

EXIT_CODES = {"completed": 0, "stopped": 0, "diverged": 3, "failed": 1, "interrupted": 130}
STOP_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")  # SIGHUP: the SSH session or terminal closed


def warn(message: str) -> None:
    try:
        click.echo(f"Warning: {message}", err=True)
    except OSError:
        pass


class GracefulStop:
    """First SIGINT/SIGTERM/SIGHUP: stop at the next step boundary; a second one: exit at once.

    Installed only in the main thread of the headless CLI. Exit code 128 + signal number.
    """

    def __init__(self, trainer: Any, notice: Callable[[str], None] = warn):
        self.trainer = trainer
        self.notice = notice
        self.signum: int | None = None
        self.previous: dict[int, Any] = {}

    def install(self) -> "GracefulStop":
        if threading.current_thread() is threading.main_thread():
            for name in STOP_SIGNALS:
                sig = getattr(signal, name, None)
                # an ignored signal stays ignored: `nohup` (SIGHUP) and `cmd &` in scripts (SIGINT)
                if sig is not None and signal.getsignal(sig) is not signal.SIG_IGN:
                    self.previous[sig] = signal.signal(sig, self.handle)
        return self

    def uninstall(self) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        self.previous.clear()

    def handle(self, signum: int, frame: Any = None) -> None:
        if self.signum is not None:
            raise SystemExit(128 + signum)  # second signal: at once (every file on disk is whole)
        self.signum = signum
        self.trainer.stop("interrupted")
        if signum != getattr(signal, "SIGHUP", None):
            self.notice(f"{signal.Signals(signum).name}: stopping after this step and saving a checkpoint "
                        "(again to quit at once)")

    @property
    def exit_code(self) -> int | None:
        return None if self.signum is None else 128 + self.signum


class OutputGuard:
    """Wraps a printer so a vanished terminal (closed SSH session: EIO, EPIPE) cannot end training."""

    def __init__(self, printer: Callable[[Any], None]):
        self.printer: Callable[[Any], None] | None = printer

    def __call__(self, event: Any) -> None:
        if self.printer is None:
            return
        try:
            self.printer(event)
        except OSError as exc:
            if exc.errno not in (errno.EIO, errno.EPIPE, errno.ENXIO, errno.EBADF):
                raise
            self.printer = None


def run_command(preset: str | None, resume: str | None, out: str | None, json_mode: bool,
                overrides: dict[str, Any]) -> int:
    """Train headless (new run, or `--resume RUN_DIR`); returns the exit code."""
    from tuitrain import runs
    from tuitrain.headless import make_printer

    if resume is not None:
        if preset is not None:
            raise UsageError("give PRESET for a new run or --resume RUN_DIR, not both")
        fixed = [f"--{k.replace('_', '-')}" for k, v in overrides.items() if v is not None and k not in ("epochs", "lr")]
        if fixed:
            raise UsageError(f"{', '.join(fixed)}: cannot change a run when resuming (only --epochs and --lr)")
        if out is not None:
            raise UsageError("--out does not apply to --resume: the run continues in its own directory")
        trainer = prepare_resume(resume, overrides.get("epochs"))
        if overrides.get("lr") is not None:  # e.g. after a divergence: continue from the last good checkpoint
            from tuitrain.config import apply_overrides

            trainer.config = apply_overrides(trainer.config, lr=overrides["lr"])
            for group in trainer.optimizer.param_groups:
                group["lr"] = trainer.config.train.lr
        writer = runs.RunWriter(trainer, run_dir=resume, resume=True, warn=warn)
    else:
        if preset is None:
            raise UsageError("missing PRESET (or --resume RUN_DIR)")
        from tuitrain.config import resolve_config
        from tuitrain.engine import Trainer

        config = resolve_config(preset, **overrides)
        run_dir = runs.create_run_dir(out or runs.DEFAULT_OUT, config.name)  # fail before loading data
        try:
            trainer = Trainer(config)
        except BaseException:
            _remove_if_empty(run_dir)
            raise
        writer = runs.RunWriter(trainer, run_dir=run_dir, warn=warn)
    trainer.consumers = [writer, OutputGuard(make_printer(json_mode))]
    stopper = GracefulStop(trainer).install()
    try:
        ended = trainer.run()
    except (SystemExit, KeyboardInterrupt):  # a second signal: leave at once
        writer.abort(f"stopped at once by a second {signal.Signals(stopper.signum or signal.SIGINT).name}")
        raise
    finally:
        stopper.uninstall()
        writer.close()
    if ended.status == "diverged" and not json_mode:
        warn_line = f"Error: {ended.message}"
        try:
            click.echo(warn_line, err=True)
        except OSError:
            pass
    if writer.errors and ended.status not in ("diverged",):
        try:
            click.echo(f"Error: {writer.errors[-1]}", err=True)
        except OSError:
            pass
        return 1
    if ended.status == "interrupted" and stopper.exit_code is not None:
        return stopper.exit_code
    return EXIT_CODES.get(ended.status, 1)


def prepare_resume(run_dir: str, epochs: int | None) -> Any:
    from tuitrain import runs
    from tuitrain.checkpoints import load

    path = runs.check_run_dir(run_dir)
    state = load(path / runs.CHECKPOINTS["last"])
    done, target = state["epoch"], state.get("config", {}).get("train", {}).get("epochs")
    if epochs is None:
        if target is not None and done >= target and not state["epoch_step"]:
            raise UsageError(f"{run_dir}: already trained {done} of {target} epochs; "
                             f"pass --epochs N (more than {done}) to train further")
    elif epochs <= done:
        raise UsageError(f"--epochs {epochs}: the run has done {done} epochs already; ask for more")
    return runs.trainer_from_run(path, "last", epochs=epochs)


def _remove_if_empty(path: Path) -> None:
    try:
        path.rmdir()
    except OSError:
        pass


# ----------------------------------------------------------------------------- runs, eval

def _age(seconds: float) -> str:
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit} ago"
    return f"{int(seconds)}s ago"


def _score(metrics: dict[str, Any] | None) -> str:
    if not metrics:
        return "-"
    if metrics.get("accuracy") is not None:
        return f"acc {metrics['accuracy']:.2%}"
    return f"loss {metrics['loss']:.4g}" if metrics.get("loss") is not None else "-"


def runs_command(out: str, json_mode: bool) -> int:
    from tuitrain import runs

    rows = runs.list_runs(out)
    if json_mode:
        for row in rows:
            click.echo(json.dumps(row))
        return 0
    if not rows:
        click.echo(f"no runs in {out}", err=True)
        return 0
    now = time.time()
    table = [("RUN", "PRESET", "STATUS", "EPOCHS", "BEST VALID", "AGE")]
    for r in rows:
        epochs = f"{r['epoch'] if r['epoch'] is not None else '?'}/{r['epochs'] if r['epochs'] is not None else '?'}"
        best = _score((r.get("best") or {}).get("valid"))
        table.append((escape(r["name"]), escape(r["preset"]), escape(r["status"]), epochs, best,
                      _age(now - r["updated_at"])))
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    return 0


def eval_command(run_dir: str, which: str, json_mode: bool) -> int:
    from tuitrain import runs

    path = runs.check_run_dir(run_dir)
    if which == "best" and not (path / runs.CHECKPOINTS["best"]).exists() and (path / runs.CHECKPOINTS["last"]).exists():
        which = "last"  # stopped before its first validation: there is no best yet
    trainer = runs.trainer_from_run(path, which)
    test = trainer.evaluate(trainer.data.test)
    valid = trainer.evaluate(trainer.data.valid)
    if json_mode:
        click.echo(json.dumps({"event": "eval", "run_dir": str(run_dir), "checkpoint": which,
                               "epoch": trainer.epoch, "step": trainer.step,
                               "valid": valid.to_dict(), "test": test.to_dict()}))
        return 0
    from tuitrain.headless import fmt_metrics

    where = f"epoch {trainer.epoch}" + (f" (+{trainer.epoch_step} steps)" if trainer.epoch_step else "")
    click.echo(f"{trainer.config.name}, {which} checkpoint at {where}, step {trainer.step}")
    click.echo(f"valid {fmt_metrics(valid)}")
    click.echo(f"test  {fmt_metrics(test)}")
    return 0
