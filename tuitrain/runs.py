"""Provides run directories: the RunWriter consumer, reading metrics back, and rebuilding a Trainer.

A run directory `<out>/<YYYYmmdd-HHMMSS>-<preset>/` holds

    config.toml     the resolved configuration (rewritten when a resume changes --epochs)
    metrics.jsonl   the `--json` events, step events decimated; a resume appends a new start event
    last.pt         the latest checkpoint (throttled; always written at the end and on interrupt)
    best.pt         the checkpoint with the best validation score so far
    summary.json    status, epochs, best/last/test metrics; "running" while training (refreshed with
                    each checkpoint), then completed | stopped | interrupted | diverged | failed,
                    or "aborted" after a second Ctrl-C (`list_runs` also says aborted for a
                    "running" run whose process is gone: kill -9, power loss)

Every file except metrics.jsonl is replaced atomically; metrics.jsonl is append-only.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

from tuitrain import checkpoints
from tuitrain.checkpoints import CheckpointError
from tuitrain.checks import read_summary_file
from tuitrain.errors import TuitrainError, UsageError, escape, quote
from tuitrain.events import EpochEnded, Event, Inspection, RunEnded, RunStarted, StepProgress, event_to_dict

log = logging.getLogger(__name__)

CONFIG, METRICS, SUMMARY = "config.toml", "metrics.jsonl", "summary.json"
CHECKPOINTS = {"last": "last.pt", "best": "best.pt"}
DEFAULT_OUT = "runs"

STEP_LINE_INTERVAL = 0.5  # seconds between step events written to metrics.jsonl
CHECKPOINT_INTERVAL = 5.0  # at most one last.pt (and best.pt) per this many seconds at epoch ends
MIDEPOCH_INTERVAL = 60.0  # a checkpoint inside a long epoch at most this often
CHECKPOINT_BUDGET = 0.02  # and never more than this fraction of the time (slow disks, big models)


class RunDirError(UsageError):
    """A path that is not a run directory, or an --out that cannot be written (exit 2)."""


# ----------------------------------------------------------------------------- directories

def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.") or "run"


def create_run_dir(out_dir: str | os.PathLike, preset: str, now: float | None = None) -> Path:
    """Make `<out_dir>/<YYYYmmdd-HHMMSS>-<preset>` (with -2, -3, ... when a run started that second)."""
    out = Path(out_dir).expanduser()
    stamp = datetime.fromtimestamp(time.time() if now is None else now).strftime("%Y%m%d-%H%M%S")
    base = f"{stamp}-{_slug(preset)}"
    try:
        out.mkdir(parents=True, exist_ok=True)
        for n in range(1, 10_000):
            path = out / (base if n == 1 else f"{base}-{n}")
            try:
                path.mkdir()  # atomic: two processes never get the same folder
                return path
            except FileExistsError:
                continue
    except OSError as exc:
        raise RunDirError(f"cannot create a run directory in --out {out}: {exc.strerror or exc}") from None
    raise RunDirError(f"cannot create a run directory in --out {out}: too many runs named {base}")


def check_run_dir(run_dir: str | os.PathLike) -> Path:
    path = Path(run_dir).expanduser()
    if not path.is_dir():
        raise RunDirError(f"{run_dir}: no such run directory")
    if not (path / CONFIG).is_file():
        raise RunDirError(f"{run_dir}: not a run directory (no {CONFIG}; runs live under --out, default ./runs)")
    return path


def read_summary(run_dir: str | os.PathLike) -> dict[str, Any]:
    """The run's summary.json, or {} when it is missing, unreadable or damaged (see summary_problem)."""
    return read_summary_file(Path(run_dir) / SUMMARY)[0]


def load_run_config(run_dir: str | os.PathLike) -> Any:
    import tomllib

    from tuitrain.config import ConfigError, config_from_dict

    path = check_run_dir(run_dir) / CONFIG
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
        return config_from_dict(raw, source=escape(path))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise RunDirError(f"{escape(path)}: cannot read: {exc}") from None
    except RecursionError:
        raise RunDirError(f"{escape(path)}: cannot read: values nested too deeply") from None
    except ConfigError as exc:
        raise RunDirError(str(exc)) from None


# ----------------------------------------------------------------------------- reading metrics

def read_events(path: str | os.PathLike, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
    """The complete JSON lines of `path` from byte `offset`, and the offset to continue from.

    A half-written last line is left for the next call; a broken line is skipped with a warning
    (logger "tuitrain.runs"). A missing file reads as no events; one that cannot be read (a
    directory, no permission) is a RunDirError.
    """
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return [], offset
    except OSError as exc:
        raise RunDirError(f"cannot read {quote(path)}: {exc.strerror or exc}") from None
    end = data.rfind(b"\n") + 1  # bytes up to and including the last newline
    events: list[dict[str, Any]] = []
    position = offset
    for raw in data[:end].split(b"\n")[:-1]:
        if raw.strip():
            try:
                event = json.loads(raw.decode("utf-8"))
                if not isinstance(event, dict):
                    raise ValueError("not an object")
                events.append(event)
            except (ValueError, RecursionError) as exc:  # RecursionError: arrays nested thousands deep
                log.warning("%s: skipping broken line at byte %d: %s", path, position,
                            exc if isinstance(exc, ValueError) else "nested too deeply")
        position += len(raw) + 1
    return events, offset + end


def repair_tail(path: Path) -> None:
    """Cut a half-written last line (a process killed mid-write) so appended lines stay whole."""
    try:
        with open(path, "r+b") as f:
            size = f.seek(0, os.SEEK_END)
            if size == 0:
                return
            f.seek(max(0, size - 1))
            if f.read(1) == b"\n":
                return
            chunk = min(size, 1 << 20)
            f.seek(size - chunk)
            cut = f.read(chunk).rfind(b"\n")
            f.truncate(size - chunk + cut + 1 if cut >= 0 else (0 if chunk == size else size))
    except FileNotFoundError:
        pass


def epoch_history(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Epoch events as the run's timeline: a resume's start event drops epochs it will redo."""
    epochs: list[dict[str, Any]] = []
    for event in events:
        if event.get("event") == "start":
            start = event.get("start_epoch") or 0
            epochs = [e for e in epochs if e.get("epoch", 0) <= start]
        elif event.get("event") == "epoch":
            epochs.append(event)
    return epochs


# ----------------------------------------------------------------------------- the writer

def valid_score(valid: dict[str, Any] | None) -> tuple[float, float] | None:
    """Higher is better: accuracy first where there is one, then lower loss."""
    if not valid or valid.get("loss") is None:
        return None
    return (valid.get("accuracy") if valid.get("accuracy") is not None else 0.0, -valid["loss"])


class RunWriter:
    """Consumer that keeps a run directory: put it first, `trainer.consumers.insert(0, writer)`.

    New run: `RunWriter(trainer, out_dir)` creates `<out_dir>/<stamp>-<preset>/` at once (or pass
    `run_dir=` made by create_run_dir). Resume: `RunWriter(trainer, run_dir=DIR, resume=True)` after
    `trainer_from_run(DIR)`. It sets `RunStarted.run_dir` so printers after it show the folder.
    Write failures (a full disk) never stop training: they go to `warn` and to `self.errors`, and the
    previous files stay intact.
    """

    def __init__(self, trainer: Any, out_dir: str | os.PathLike = DEFAULT_OUT, *, run_dir: str | os.PathLike | None = None,
                 resume: bool = False, warn: Callable[[str], None] | None = None):
        self.trainer = trainer
        self.warn = warn or log.warning
        self.errors: list[str] = []
        if resume:
            self.run_dir = check_run_dir(run_dir if run_dir is not None else out_dir)
            checkpoints.remove_stale_temporaries(self.run_dir)
            repair_tail(self.run_dir / METRICS)
        else:
            self.run_dir = Path(run_dir) if run_dir is not None else create_run_dir(out_dir, trainer.config.name)
        self.summary: dict[str, Any] = read_summary(self.run_dir) if resume else {}
        best = getattr(trainer, "run_best", None) or self.summary.get("best") or {}
        self.best: dict[str, Any] = dict(best)  # {"epoch", "step", "valid"}
        self._best_state: dict[str, Any] | None = None  # in memory until flushed
        self.last_valid: dict[str, Any] | None = self.summary.get("last_valid")
        self.started_at = self.summary.get("started_at") or time.time()
        self._metrics = None
        self._last_step_line = 0.0
        self._last_save = time.monotonic()
        self._save_cost = 0.0
        self._saved_step = -1
        self._saved_epoch: tuple[int, int, int] | None = None
        if resume:  # last.pt holds the state just loaded
            self._saved_step, self._saved_epoch = trainer.step, (trainer.epoch, trainer.step, trainer.epoch_step)
        try:  # a run directory that cannot be written at the start is an error, not a warning
            checkpoints.atomic_write(self.run_dir / CONFIG, trainer.config.to_toml())
            self._metrics = open(self.run_dir / METRICS, "ab")
        except OSError as exc:
            raise RunDirError(f"cannot write in run directory {self.run_dir}: {exc.strerror or exc}") from None
        self._write_summary("running")

    # -------------------------------------------------------------- consumer
    def __call__(self, event: Event) -> None:
        now = time.monotonic()
        if isinstance(event, StepProgress):
            if now - self._last_step_line >= STEP_LINE_INTERVAL:
                self._last_step_line = now
                self._line(event)
            if now - self._last_save >= max(MIDEPOCH_INTERVAL, self._save_cost / CHECKPOINT_BUDGET):
                self.save()
        elif isinstance(event, EpochEnded):
            self._line(event)
            self.last_valid = event.valid.to_dict()
            score = valid_score(self.last_valid)
            if score is not None and (not self.best or score > valid_score(self.best.get("valid"))):
                self.best = {"epoch": event.epoch, "step": event.step, "valid": self.last_valid}
                self._best_state = checkpoints.snapshot(self.trainer, best=self.best)
            if now - self._last_save >= max(CHECKPOINT_INTERVAL, self._save_cost / CHECKPOINT_BUDGET):
                self.save()
        elif isinstance(event, RunStarted):
            event.run_dir = str(self.run_dir)
            self._line(event)
            self._write_summary("running")
        elif isinstance(event, RunEnded):
            self._line(event)
            # a diverged model holds NaNs: keep the last good checkpoint rather than overwrite it
            self.save(last=event.status != "diverged" or not (self.run_dir / CHECKPOINTS["last"]).exists())
            self._write_summary(event.status, event)
            self.close()
        elif not isinstance(event, Inspection):  # inspections are large and for live viewers only
            self._line(event)

    # -------------------------------------------------------------- writing
    def _fail(self, what: str, exc: OSError) -> None:
        message = f"cannot write {what} in {self.run_dir}: {exc.strerror or exc}"
        if message not in self.errors:
            self.errors.append(message)
            self.warn(message + ("; the previous file is intact" if what.endswith(".pt") else ""))

    def _write(self, name: str, data: str | bytes) -> bool:
        try:
            checkpoints.atomic_write(self.run_dir / name, data)
            return True
        except OSError as exc:
            self._fail(name, exc)
            return False

    def _line(self, event: Event) -> None:
        if self._metrics is None:
            return
        try:
            self._metrics.write(json.dumps(event_to_dict(event)).encode("utf-8") + b"\n")
            self._metrics.flush()
        except OSError as exc:
            self._fail(METRICS, exc)

    def save(self, last: bool = True) -> None:
        """Write last.pt (and best.pt when it changed) now, and refresh summary.json."""
        start = time.monotonic()
        if self._metrics is not None:
            try:
                self._metrics.flush()
                os.fsync(self._metrics.fileno())
            except OSError as exc:
                self._fail(METRICS, exc)
        if self._best_state is not None:
            if self._write(CHECKPOINTS["best"], checkpoints.to_bytes(self._best_state)):
                self._best_state = None
        if last and self.trainer.step != self._saved_step:
            state = checkpoints.snapshot(self.trainer, best=self.best)
            if self._write(CHECKPOINTS["last"], checkpoints.to_bytes(state)):
                self._saved_step = self.trainer.step
                self._saved_epoch = (state["epoch"], state["step"], state["epoch_step"])
        self._write_summary(self.summary.get("status", "running"))
        end = time.monotonic()
        self._save_cost, self._last_save = end - start, end

    def _write_summary(self, status: str, ended: RunEnded | None = None) -> None:
        t, config = self.trainer, self.trainer.config
        summary = {
            "run_dir": str(self.run_dir), "preset": config.name, "status": status,
            "epoch": t.epoch, "epochs": config.train.epochs, "step": t.step, "epoch_step": t.epoch_step,
            "best": self.best or None, "last_valid": self.last_valid,
            "train_seconds": round(t.train_seconds, 3), "started_at": self.started_at, "updated_at": time.time(),
            "host": socket.gethostname(), "pid": os.getpid(),
            "checkpoints": {k: v for k, v in CHECKPOINTS.items() if (self.run_dir / v).exists()},
        }
        if ended is not None:
            summary.update(event_to_dict(ended), event=None, status=status)
            summary.pop("event")
            summary["ended_at"] = time.time()
        self.summary = summary
        self._write(SUMMARY, json.dumps(summary, indent=2) + "\n")

    def abort(self, reason: str) -> None:
        """The process is leaving at once (a second Ctrl-C): no checkpoint, just say so in the summary."""
        if self.summary.get("status") != "running":
            return
        saved = self._saved_epoch
        self.summary.update(status="aborted", updated_at=time.time(), message=(
            f"{reason}; --resume continues from the last checkpoint" + (f" (epoch {saved[0]}, step {saved[1]})"
                                                                       if saved else " (none was written)")))
        if saved:
            self.summary.update(epoch=saved[0], step=saved[1], epoch_step=saved[2])
        try:
            checkpoints.atomic_write(self.run_dir / SUMMARY, json.dumps(self.summary, indent=2) + "\n", durable=False)
        except OSError:
            pass
        self.close()

    def close(self) -> None:
        if self._metrics is not None:
            try:
                self._metrics.close()
            except OSError as exc:
                self._fail(METRICS, exc)
            self._metrics = None


# ----------------------------------------------------------------------------- rebuilding

def trainer_from_run(run_dir: str | os.PathLike, which: str = "last", consumers: Any = (),
                     epochs: int | None = None) -> Any:
    """A Trainer with the run's configuration, its data, and the `which` ("last"|"best") checkpoint.

    `epochs` replaces the configured number of epochs (to train a run further).
    """
    from tuitrain.engine import Trainer

    if which not in CHECKPOINTS:
        raise UsageError(f"checkpoint must be one of {', '.join(CHECKPOINTS)}, not '{which}'")
    path = check_run_dir(run_dir)
    config = load_run_config(path)
    if epochs is not None:
        config.train.epochs = epochs
    state = checkpoints.load(path / CHECKPOINTS[which])  # before the data: fail fast
    trainer = Trainer(config, consumers)
    checkpoints.restore(trainer, state, path / CHECKPOINTS[which])
    trainer.run_best = state.get("best") or None
    return trainer


# ----------------------------------------------------------------------------- listing

def _alive(summary: dict[str, Any]) -> bool:
    if summary.get("host") != socket.gethostname() or not summary.get("pid"):
        return True  # cannot tell from here
    try:
        os.kill(int(summary["pid"]), 0)
        return True
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError, OverflowError):
        return True


def _unreadable(path: Path) -> str | None:
    """Why the run directory or one of its files cannot be read (no permission, a folder where a file
    belongs), or None; raises FileNotFoundError when the folder is not a run (no config.toml)."""
    for name in (CONFIG, METRICS, SUMMARY):
        try:
            with open(path / name, "rb"):
                pass
        except FileNotFoundError:
            if name == CONFIG:
                raise
        except OSError as exc:
            return f"{name}: {exc.strerror or exc}"
    return None


def list_runs(out_dir: str | os.PathLike = DEFAULT_OUT) -> list[dict[str, Any]]:
    """One dict per run directory under `out_dir`, oldest first (from summary.json, else config.toml).

    A run whose summary.json is damaged (wrong types, NaN, not JSON) has status "damaged"; one whose
    folder or files cannot be read has status "unreadable"; `problem` says what is wrong (else None).
    """
    out = Path(out_dir).expanduser()
    if not out.is_dir():
        return []
    try:
        entries = sorted(out.iterdir())
    except OSError as exc:
        raise RunDirError(f"cannot list the runs in {quote(out)}: {exc.strerror or exc}") from None
    rows = []
    for path in entries:
        if not path.is_dir():
            continue
        try:
            problem = _unreadable(path)
        except FileNotFoundError:
            continue  # not a run
        summary, status, problem = ({}, "unreadable", problem) if problem else read_summary_file(path / SUMMARY)
        if status is None:
            status = summary.get("status") or "unknown"
            if status == "running" and not _alive(summary):
                status = "aborted"  # killed without a chance to write its summary: resume it
        preset = summary.get("preset")
        if preset is None:
            try:
                preset = load_run_config(path).name
            except TuitrainError:
                preset = "?"
        try:
            mtime = path.stat().st_mtime
        except OSError:
            mtime = 0.0
        rows.append({
            "run_dir": str(path), "name": path.name, "preset": preset, "status": status,
            "epoch": summary.get("epoch"), "epochs": summary.get("epochs"),
            "best": summary.get("best"), "test": summary.get("test"),
            "updated_at": summary.get("updated_at") or mtime, "problem": problem,
        })
    return rows
