"""Provides run directories: creating and checking them, reading their files back, listing them.

A run directory `<out>/<YYYYmmdd-HHMMSS>-<preset>/` holds

    config.toml     the resolved configuration (rewritten when a resume changes --epochs)
    metrics.jsonl   the `--json` events, step events decimated; a resume appends a new start event
    histories.jsonl weight and gradient histograms of every tensor at recorded steps (tuitrain.store.histories),
                    bounded: thinned by atomic rewrite; a resume drops the records of the steps it redoes
    last.pt         the latest checkpoint (throttled; always written at the end and on interrupt)
    best.pt         the checkpoint with the best validation score so far
    summary.json    status, epochs, best/last/test metrics; "running" while training (refreshed with
                    each checkpoint), then completed | stopped | interrupted | diverged | failed,
                    or "aborted" after a second Ctrl-C (`list_runs` says crashed for a
                    "running" run whose process is gone: kill -9, power loss)

Every file except metrics.jsonl is replaced atomically; metrics.jsonl is append-only (histories.jsonl
is appended, and replaced atomically when thinned).
tuitrain.store.writer keeps these files during a run; tuitrain.runs.start starts and resumes runs.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeGuard

from tuitrain.checks import read_summary_file
from tuitrain.errors import TuitrainError, UsageError, escape, quote
from tuitrain.files import is_regular, kind_of, open_regular, read_regular_text
from tuitrain.store.histories import HISTORIES as HISTORIES  # named here with the run directory's other files

log = logging.getLogger(__name__)

CONFIG, METRICS, SUMMARY = "config.toml", "metrics.jsonl", "summary.json"
CRASH_LOG = "crash.log"  # a traceback, appended: the app's own or its training process's


def state_dir() -> Path:
    """$XDG_STATE_HOME/tuitrain (default ~/.local/state/tuitrain): logs of crashes outside a run."""
    return Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "tuitrain"


def write_crash_log(details: str, run_dir: str | Path | None, who: str = "tuitrain") -> Path | None:
    """Append a traceback to RUN_DIR/crash.log, or to a crash-STAMP.log in the state folder when there
    is no run directory or it cannot be written; the path, or None when nothing could be written."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for path in ([Path(run_dir) / CRASH_LOG] if run_dir else []) + [state_dir() / f"crash-{stamp}.log"]:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "a", encoding="utf-8") as crash_log:
                crash_log.write(f"{stamp} {who} crashed:\n{details}\n")
            return path
        except OSError:
            log.warning("cannot write %s", path, exc_info=True)
    return None


CHECKPOINTS = {"last": "last.pt", "best": "best.pt"}
LOCK = ".lock"  # pid and host of the process that writes the run directory
DEFAULT_OUT = "runs"


class RunDirError(UsageError):
    """A path that is not a run directory, or an --out that cannot be written (exit 2)."""


# ----------------------------------------------------------------------------- directories


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.") or "run"


def create_run_dir(out_dir: str | os.PathLike[str], preset: str, now: float | None = None) -> Path:
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


def chosen_checkpoint(run: Path, which: str, shown_as: str, purpose: str) -> Path:
    """RUN's `which` checkpoint file ("last"/"best"); UsageError (exit 2) naming the other one when it
    exists and this one does not (`shown_as`: the run as the user typed it; `purpose`: "branch from")."""
    if which not in CHECKPOINTS:
        raise UsageError(f"checkpoint must be one of {', '.join(CHECKPOINTS)}, not '{which}'")
    if not (run / CHECKPOINTS[which]).is_file():
        other = "last" if which == "best" else "best"
        hint = f"; try --checkpoint {other}" if (run / CHECKPOINTS[other]).is_file() else ""
        raise UsageError(f"{shown_as}: no {CHECKPOINTS[which]} to {purpose}{hint}")
    return run / CHECKPOINTS[which]


def check_run_dir(run_dir: str | os.PathLike[str]) -> Path:
    path = Path(run_dir).expanduser()
    if not path.is_dir():
        raise RunDirError(f"{run_dir}: no such run directory")
    config = path / CONFIG
    if os.path.lexists(config) and not is_regular(config):
        raise RunDirError(f"{escape(config)} is {kind_of(os.stat(config).st_mode)}, not a file: not a run directory")
    if not config.is_file():
        raise RunDirError(f"{run_dir}: not a run directory (no {CONFIG}; runs live under --out, default ./runs)")
    return path


def read_summary(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The run's summary.json, or {} when it is missing, unreadable or damaged (see summary_problem)."""
    return read_summary_file(Path(run_dir) / SUMMARY)[0]


def load_run_config(run_dir: str | os.PathLike[str]) -> Any:
    import tomllib

    from tuitrain.config import config_from_dict
    from tuitrain.errors import ConfigError

    path = check_run_dir(run_dir) / CONFIG
    try:
        raw = tomllib.loads(read_regular_text(path))
        if not raw:  # not "all defaults": the run's settings are lost, and guessing them would mislead
            raise RunDirError(f"{escape(path)} is empty: this run's settings are lost")
        # the data file is checked where it is read (resume, branch); `runs`, `compare` and export need
        # only the settings, even after the CSV moved
        return config_from_dict(raw, source=escape(path), check_data=False)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise RunDirError(f"{escape(path)}: cannot read: {exc}") from None
    except RecursionError:
        raise RunDirError(f"{escape(path)}: cannot read: values nested too deeply") from None
    except ConfigError as exc:
        raise RunDirError(str(exc)) from None


BRANCH_OPTIONS = ("epochs", "lr", "optimizer", "threads")  # what a branch may change


@dataclass(frozen=True)
class BranchSpec:
    """A branch to start (the app sends it to its training process): parent run, checkpoint, changes."""

    parent: str
    checkpoint: str = "last"  # last | best
    changes: dict[str, Any] = field(default_factory=dict)

    def config(self) -> Any:
        """The branch's configuration, checked (before any data loads)."""
        from tuitrain.config import apply_overrides

        unknown = [k for k, v in self.changes.items() if v is not None and k not in BRANCH_OPTIONS]
        if unknown:
            raise UsageError(f"a branch may change only epochs, lr, optimizer and threads, not {unknown[0]}")
        return apply_overrides(load_run_config(self.parent), **self.changes)


# ----------------------------------------------------------------------------- reading metrics


def read_events(path: str | os.PathLike[str], offset: int = 0) -> tuple[list[dict[str, Any]], int]:
    """The complete JSON lines of `path` from byte `offset`, and the offset to continue from.

    A half-written last line is left for the next call; a broken line is skipped with a warning
    (logger "tuitrain.store.run_dir"). A missing file reads as no events; one that cannot be read (a
    directory, no permission) is a RunDirError.
    """
    try:
        with open_regular(path) as f:
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
                log.warning(
                    "%s: skipping broken line at byte %d: %s",
                    path,
                    position,
                    exc if isinstance(exc, ValueError) else "nested too deeply",
                )
        position += len(raw) + 1
    return events, offset + end


def iter_events(path: str | os.PathLike[str], start: bytes = b"") -> Iterator[tuple[int, dict[str, Any]]]:
    """(line index, event) for each complete JSON line, streamed (memory bounded by one line); with
    `start`, only lines containing it are parsed. A missing file yields nothing."""
    try:
        handle = open_regular(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise RunDirError(f"cannot read {quote(path)}: {exc.strerror or exc}") from None
    with handle:
        for index, raw in enumerate(handle):
            if not raw.endswith(b"\n") or (start and start not in raw) or not raw.strip():
                continue  # a half-written last line is the writer's, not ours yet
            try:
                event = json.loads(raw)
            except (ValueError, RecursionError):
                continue  # read_events warns about broken lines; a stream just leaves them out
            if isinstance(event, dict):
                yield index, event


def timeline(path: str | os.PathLike[str], kinds: tuple[str, ...] = ("epoch",)) -> Iterator[dict[str, Any]]:
    """The `kinds` events of the run's timeline in order, streamed: an event a later resume redid
    (its epoch after that resume's start_epoch) is left out, as epoch_history does in memory."""
    starts = [(i, e.get("start_epoch") or 0) for i, e in iter_events(path, b'"start"') if e.get("event") == "start"]
    cut_after: list[float] = [math.inf] * (len(starts) + 1)  # cut_after[k]: least start_epoch of starts[k:]
    for k in range(len(starts) - 1, -1, -1):
        cut_after[k] = min(cut_after[k + 1], starts[k][1])
    k = 0
    for index, event in iter_events(path):
        while k < len(starts) and starts[k][0] <= index:
            k += 1
        if event.get("event") in kinds and (event.get("epoch") or 0) <= cut_after[k]:
            yield event


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


# ----------------------------------------------------------------------------- listing

STALE_SECONDS = 600.0  # a "running" run on another host silent this long is listed as stale


def owner_alive(owner: dict[str, Any]) -> bool:
    """Whether the process named by a lock or summary (pid, host) still runs; True when it cannot tell."""
    if owner.get("host") != socket.gethostname():
        return True
    pid = owner.get("pid")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True


def live_status(summary: dict[str, Any], now: float | None = None) -> str:
    """A "running" summary checked against its heartbeat: running, crashed (its process is gone) or
    stale (another host, no update for STALE_SECONDS); other statuses as they are."""
    status = str(summary.get("status") or "unknown")
    if status != "running":
        return status
    if summary.get("host") == socket.gethostname():
        return "running" if owner_alive(summary) else "crashed"
    updated = summary.get("updated_at")
    now = time.time() if now is None else now
    if isinstance(updated, (int, float)) and now - updated > STALE_SECONDS:
        return "stale"
    return "running"


def _unreadable(path: Path) -> str | None:
    """Why the run directory or one of its files cannot be read (no permission, a folder, FIFO or
    device where a file belongs), or None; raises FileNotFoundError when the folder is not a run
    (no config.toml)."""
    for name in (CONFIG, METRICS, SUMMARY):
        try:
            with open_regular(path / name):
                pass
        except FileNotFoundError:
            if name == CONFIG:
                raise
        except OSError as exc:
            return f"{name}: {exc.strerror or exc}"
    return None


def list_runs(out_dir: str | os.PathLike[str] = DEFAULT_OUT) -> list[dict[str, Any]]:
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
        if path.is_dir() and (row := run_row(path)) is not None:
            rows.append(row)
    return rows


def run_row(path: Path) -> dict[str, Any] | None:
    """`list_runs`' dict for one folder, or None when it is not a run (no config.toml)."""
    try:
        problem = _unreadable(path)
    except FileNotFoundError:
        return None
    summary, status, problem = ({}, "unreadable", problem) if problem else read_summary_file(path / SUMMARY)
    if status is None and not summary and not (path / METRICS).exists():
        status = "queued"  # a race's run that has not started yet
    if status is None:
        status = live_status(summary)  # killed without a chance to write its summary: crashed
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
    row = {
        "run_dir": str(path),
        "name": path.name,
        "preset": preset,
        "status": status,
        "epoch": summary.get("epoch"),
        "epochs": summary.get("epochs"),
        "best": summary.get("best"),
        "last_valid": summary.get("last_valid"),
        "test": summary.get("test"),
        "updated_at": summary.get("updated_at") or mtime,
        "parent": summary.get("parent"),
        "problem": problem,
        "lost": None,
    }
    if status == "crashed":  # counted to what --resume continues from, the epochs after it lost
        point = resume_point(path, summary)
        row.update(epoch=point["epoch"], best=point["best"], last_valid=point["last_valid"], lost=point["lost"])
    return row


def resume_point(run_dir: str | os.PathLike[str], summary: dict[str, Any]) -> dict[str, Any]:
    """A run whose process is gone as its files can resume it: `epoch` and `step` of last.pt (summary.json's
    "checkpoint"), the `best` and `last_valid` of the epochs up to it, and `lost`: {"from", "to", "step"},
    the epochs metrics.jsonl recorded after it (None when none were), which `--resume` trains again
    from `step`.

    One rule for `runs`, `compare`, the runs screen and `watch` (a heartbeat can refresh summary.json
    between checkpoints, so its own epoch and best may be ahead of the files)."""
    saved = summary.get("checkpoint")
    epoch, step = summary.get("epoch"), summary.get("step")
    if isinstance(saved, dict) and is_count_value(saved.get("epoch")) and is_count_value(saved.get("step")):
        epoch, step = saved["epoch"], saved["step"]
    best, last_valid = summary.get("best"), summary.get("last_valid")
    point: dict[str, Any] = {"epoch": epoch, "step": step, "best": best, "last_valid": last_valid, "lost": None}
    if not isinstance(epoch, int):
        return point
    kept: list[dict[str, Any]] = []
    reached = epoch
    try:
        for event in timeline(Path(run_dir) / METRICS):
            number = event.get("epoch")
            if is_count_value(number):
                reached = max(reached, number)
                if number <= epoch:
                    kept.append(event)
    except RunDirError:
        return point
    if reached > epoch:
        point["lost"] = {"from": epoch + 1, "to": reached, "step": step}
        top: tuple[tuple[float, float], dict[str, Any]] | None = None
        for event in kept:  # the first of equals, as the writer keeps it
            score = _valid_score(event.get("valid"))
            if score is not None and (top is None or score > top[0]):
                top = (score, event)
        point["best"] = (
            {"epoch": top[1]["epoch"], "step": top[1].get("step"), "valid": top[1].get("valid")} if top else None
        )
        point["last_valid"] = next((e.get("valid") for e in reversed(kept) if e.get("epoch") == epoch), None)
    return point


def is_count_value(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _valid_score(valid: Any) -> tuple[float, float] | None:
    """As the run's writer ranks validations: accuracy first where there is one, then lower loss."""
    if not isinstance(valid, dict) or not isinstance(valid.get("loss"), (int, float)):
        return None
    accuracy = valid.get("accuracy")
    return (float(accuracy) if isinstance(accuracy, (int, float)) else 0.0, -float(valid["loss"]))


def check_run_files(run_dir: Path) -> None:
    """Every file the run keeps is a regular file or absent: a FIFO or device there is never opened."""
    for name in (CONFIG, METRICS, SUMMARY, HISTORIES, *CHECKPOINTS.values()):
        path = run_dir / name
        if os.path.lexists(path) and not is_regular(path):
            try:
                what = kind_of(os.stat(path).st_mode)
            except OSError:
                what = "a broken link"
            raise RunDirError(f"{escape(path)} is {what}, not a file: move it away to use this run")
