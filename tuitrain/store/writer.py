"""Provides RunWriter, the consumer that keeps a run directory's files during training."""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from tuitrain.events import (
    EpochEnded,
    Event,
    HistoryRecord,
    Inspection,
    LrFound,
    RunEnded,
    RunStarted,
    RunStatus,
    StepProgress,
    event_to_dict,
)
from tuitrain.store import checkpoints
from tuitrain.store.history_file import HistoryLog
from tuitrain.store.ownership import release_lock, take_lock
from tuitrain.store.run_dir import (
    CHECKPOINTS,
    CONFIG,
    DEFAULT_OUT,
    HISTORIES,
    METRICS,
    SUMMARY,
    RunDirError,
    check_run_dir,
    check_run_files,
    create_run_dir,
    read_summary,
    repair_tail,
)

log = logging.getLogger(__name__)

STEP_LINE_INTERVAL = 0.5  # seconds between step events written to metrics.jsonl, at first ...
STEP_LINE_SHARE = 0.001  # ... then at most this fraction of the run's age: a long run's file stays small
HEARTBEAT_INTERVAL = 10.0  # seconds between summary.json refreshes (pid, host, progress) while training
CHECKPOINT_INTERVAL = 5.0  # at most one last.pt (and best.pt) per this many seconds at epoch ends
MIDEPOCH_INTERVAL = 60.0  # a checkpoint inside a long epoch at most this often
CHECKPOINT_BUDGET = 0.02  # and never more than this fraction of the time (slow disks, big models)


def valid_score(valid: dict[str, Any] | None) -> tuple[float, float] | None:
    """Higher is better: accuracy first where there is one, then lower loss."""
    if not valid or valid.get("loss") is None:
        return None
    accuracy = valid.get("accuracy")
    return (float(accuracy) if accuracy is not None else 0.0, -float(valid["loss"]))


class RunWriter:
    """Consumer that keeps a run directory; it reads events and the trainer, and changes neither.

    New run: `RunWriter(trainer, out_dir)` creates `<out_dir>/<stamp>-<preset>/` at once (or pass
    `run_dir=` made by create_run_dir). Resume: `RunWriter(trainer, run_dir=DIR, resume=True)`, then
    `load_state_dict(checkpoint)` for the best score so far. tuitrain.runs.start does both and names the
    directory to the trainer, whose RunStarted event carries it. Write failures (a full disk) never
    stop training: they go to `warn` and to `self.errors`, and the previous files stay intact.
    """

    def __init__(
        self,
        trainer: Any,
        out_dir: str | os.PathLike[str] = DEFAULT_OUT,
        *,
        run_dir: str | os.PathLike[str] | None = None,
        resume: bool = False,
        warn: Callable[[str], None] | None = None,
        histories_from: int | None = None,
    ):
        self.trainer = trainer
        self.warn = warn or log.warning
        self.errors: list[str] = []
        if resume:
            self.run_dir = check_run_dir(run_dir if run_dir is not None else out_dir)
        else:
            self.run_dir = Path(run_dir) if run_dir is not None else create_run_dir(out_dir, trainer.config.name)
        # owned before anything in it changes: a refused second process must touch nothing
        self._lock: Path | None = take_lock(self.run_dir)
        if resume:
            try:
                check_run_files(self.run_dir)
                checkpoints.remove_stale_temporaries(self.run_dir)
                repair_tail(self.run_dir / METRICS)
            except RunDirError:
                release_lock(self._lock)
                raise
            except OSError as exc:
                release_lock(self._lock)
                raise RunDirError(f"cannot write in run directory {self.run_dir}: {exc.strerror or exc}") from None
        self.summary: dict[str, Any] = read_summary(self.run_dir) if resume else {}
        self.best: dict[str, Any] = {}  # {"epoch", "step", "valid"} of the best validation so far
        self._best_state: dict[str, Any] | None = None  # in memory until flushed
        self.last_valid: dict[str, Any] | None = self.summary.get("last_valid")
        self.parent: dict[str, Any] | None = self.summary.get("parent")  # a branch's origin (tuitrain.runs.start)
        self.started_at = self.summary.get("started_at") or time.time()
        self._metrics = None
        self._histories: HistoryLog | None = None
        self._last_step_line = 0.0
        self._last_save = time.monotonic()
        self._save_cost = 0.0
        self._saved_step = -1
        self._saved_epoch: tuple[int, int, int] | None = None
        self._ended = False
        if resume:  # last.pt holds the state just loaded
            self._saved_step, self._saved_epoch = trainer.step, (trainer.epoch, trainer.step, trainer.epoch_step)
        self._started = time.monotonic()
        self._last_heartbeat = self._started
        try:  # a run directory that cannot be written at the start is an error, not a warning
            checkpoints.atomic_write(self.run_dir / CONFIG, trainer.config.to_toml())
            self._metrics = open(self.run_dir / METRICS, "ab")
            # a branch's histories.jsonl starts as its parent's: kept up to the branch step, like a resume's
            kept = trainer.step if resume else histories_from
            self._histories = HistoryLog(self.run_dir / HISTORIES, kept)
        except OSError as exc:
            release_lock(self._lock)
            raise RunDirError(f"cannot write in run directory {self.run_dir}: {exc.strerror or exc}") from None

    # -------------------------------------------------------------- state carried in checkpoints
    def state_dict(self) -> dict[str, Any]:
        return {"best": dict(self.best) or None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """From a checkpoint (its "best" entry) when resuming."""
        best = state.get("best")
        self.best = dict(best) if isinstance(best, dict) else {}

    # -------------------------------------------------------------- consumer
    def __call__(self, event: Event) -> None:
        now = time.monotonic()
        if isinstance(event, StepProgress):
            if now - self._last_step_line >= max(STEP_LINE_INTERVAL, STEP_LINE_SHARE * (now - self._started)):
                self._last_step_line = now
                self._line(event)
            if now - self._last_save >= max(MIDEPOCH_INTERVAL, self._save_cost / CHECKPOINT_BUDGET):
                self.save()
            elif now - self._last_heartbeat >= HEARTBEAT_INTERVAL:
                self._heartbeat(now)
        elif isinstance(event, EpochEnded):
            self._line(event)
            self.last_valid = event.valid.to_dict()
            score, best = valid_score(self.last_valid), valid_score(self.best.get("valid"))
            if score is not None and (best is None or score > best):
                self.best = {"epoch": event.epoch, "step": event.step, "valid": self.last_valid}
                self._best_state = checkpoints.snapshot(self.trainer, **self.state_dict())
            if now - self._last_save >= max(CHECKPOINT_INTERVAL, self._save_cost / CHECKPOINT_BUDGET):
                self.save()
            elif now - self._last_heartbeat >= HEARTBEAT_INTERVAL:
                self._heartbeat(now)
        elif isinstance(event, RunStarted):
            self._line(event)
            if not (self.run_dir / CHECKPOINTS["last"]).exists():
                self.save()  # so a run stopped or killed in its first seconds can still be resumed
            self._write_summary("running")
        elif isinstance(event, RunEnded):
            self.save(last=event.status != "diverged")  # diverged: the last good checkpoint stays
            if event.status not in ("diverged", "failed") and self._saved_step != self.trainer.step:
                # the writer is the first consumer: the printers and the exit code hear the final word
                event.status = "failed"
                event.message = (
                    f"the final checkpoint could not be written: {self.errors[-1]}"
                    if self.errors
                    else "the final checkpoint could not be written"
                )
            self._line(event)
            self._write_summary(event.status, event, event.message)
            self._ended = True
            self.close()
        elif isinstance(event, HistoryRecord):
            self._record(event)
        elif not isinstance(event, Inspection | LrFound):  # large, and for live viewers only (the run is unchanged)
            self._line(event)

    # -------------------------------------------------------------- writing
    def _fail(self, what: str, exc: OSError) -> None:
        message = f"cannot write {what} in {self.run_dir}: {exc.strerror or exc}"
        if message not in self.errors:
            self.errors.append(message)
            kept = what.endswith(".pt") and (self.run_dir / what).exists()
            self.warn(message + ("; the previous file is intact" if kept else ""))

    def _heartbeat(self, now: float) -> None:
        """Refresh summary.json's progress and update time, so others can tell a live run from a dead one."""
        self._last_heartbeat = now
        self._write_summary(self.summary.get("status", "running"), durable=False)

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

    def _record(self, record: HistoryRecord) -> None:
        if self._histories is None:
            return
        try:
            self._histories.append(record)
        except OSError as exc:
            self._fail(HISTORIES, exc)

    def save(self, last: bool = True) -> None:
        """Write last.pt (and best.pt when it changed) now, and refresh summary.json."""
        start = time.monotonic()
        if self._metrics is not None:
            try:
                self._metrics.flush()
                os.fsync(self._metrics.fileno())
            except OSError as exc:
                self._fail(METRICS, exc)
        if self._histories is not None:
            try:
                self._histories.sync()
            except OSError as exc:
                self._fail(HISTORIES, exc)
        if self._best_state is not None:
            if self._write(CHECKPOINTS["best"], checkpoints.to_bytes(self._best_state)):
                self._best_state = None
        if last and self.trainer.step != self._saved_step:
            state = checkpoints.snapshot(self.trainer, **self.state_dict())
            # never save a network with NaN/infinite weights: resuming it could only diverge again
            if finite(state) and self._write(CHECKPOINTS["last"], checkpoints.to_bytes(state)):
                self._saved_step = self.trainer.step
                self._saved_epoch = (state["epoch"], state["step"], state["epoch_step"])
        self._write_summary(self.summary.get("status", "running"))
        end = time.monotonic()
        self._save_cost = end - start
        self._last_save = self._last_heartbeat = end

    def _write_summary(
        self, status: RunStatus, ended: RunEnded | None = None, message: str | None = None, durable: bool = True
    ) -> None:
        t, config = self.trainer, self.trainer.config
        summary = {
            "run_dir": str(self.run_dir),
            "preset": config.name,
            "status": status,
            "epoch": t.epoch,
            "epochs": config.train.epochs,
            "step": t.step,
            "epoch_step": t.epoch_step,
            "best": self.best or None,
            "last_valid": self.last_valid,
            "train_seconds": round(t.train_seconds, 3),
            "started_at": self.started_at,
            "updated_at": time.time(),
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "checkpoints": {k: v for k, v in CHECKPOINTS.items() if (self.run_dir / v).exists()},
            "checkpoint": {"epoch": self._saved_epoch[0], "step": self._saved_epoch[1]} if self._saved_epoch else None,
        }
        if self.parent is not None:
            summary["parent"] = self.parent
        if ended is not None:
            summary.update(event_to_dict(ended), event=None, status=status)
            summary.pop("event")
            summary["ended_at"] = time.time()
            if message is not None:
                summary["message"] = message
        self.summary = summary
        try:
            checkpoints.atomic_write(self.run_dir / SUMMARY, json.dumps(summary, indent=2) + "\n", durable=durable)
        except OSError as exc:
            self._fail(SUMMARY, exc)

    def abort(self, reason: str) -> None:
        """The process is leaving at once (a second Ctrl-C): no checkpoint, just say so in the summary."""
        if self._ended:
            return
        saved = self._saved_epoch
        self.summary.update(
            status="aborted",
            updated_at=time.time(),
            message=(
                f"{reason}; --resume continues from the last checkpoint"
                + (f" (epoch {saved[0]}, step {saved[1]})" if saved else " (none was written)")
            ),
        )
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
        if self._histories is not None:
            try:
                self._histories.close()
            except OSError as exc:
                self._fail(HISTORIES, exc)
            self._histories = None
        release_lock(self._lock)
        self._lock = None


def finite(state: dict[str, Any]) -> bool:
    """True when every floating-point weight of a checkpoint is a finite number."""
    return all(
        bool(torch.isfinite(t).all())
        for t in state["model"].values()
        if isinstance(t, torch.Tensor) and t.is_floating_point()
    )
