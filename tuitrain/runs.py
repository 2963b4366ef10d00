"""Provides run directories: creating and checking them, reading their files back, listing them.

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
tuitrain.writer keeps these files during a run; tuitrain.session starts and resumes runs.
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
from tuitrain.errors import TuitrainError, UsageError
from tuitrain.events import EpochEnded, Event, Inspection, RunEnded, RunStarted, StepProgress, event_to_dict

log = logging.getLogger(__name__)

CONFIG, METRICS, SUMMARY = "config.toml", "metrics.jsonl", "summary.json"
CHECKPOINTS = {"last": "last.pt", "best": "best.pt"}
DEFAULT_OUT = "runs"



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
    try:
        data = json.loads((Path(run_dir) / SUMMARY).read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def load_run_config(run_dir: str | os.PathLike) -> Any:
    import tomllib

    from tuitrain.config import ConfigError, config_from_dict

    path = check_run_dir(run_dir) / CONFIG
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
        return config_from_dict(raw, source=str(path))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise RunDirError(f"{path}: cannot read: {exc}") from None
    except ConfigError as exc:
        raise RunDirError(str(exc)) from None


# ----------------------------------------------------------------------------- reading metrics

def read_events(path: str | os.PathLike, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
    """The complete JSON lines of `path` from byte `offset`, and the offset to continue from.

    A half-written last line is left for the next call; a broken line is skipped with a warning
    (logger "tuitrain.runs"). A missing file reads as no events.
    """
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return [], offset
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
            except ValueError as exc:
                log.warning("%s: skipping broken line at byte %d: %s", path, position, exc)
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


def list_runs(out_dir: str | os.PathLike = DEFAULT_OUT) -> list[dict[str, Any]]:
    """One dict per run directory under `out_dir`, oldest first (from summary.json, else config.toml)."""
    out = Path(out_dir).expanduser()
    if not out.is_dir():
        return []
    rows = []
    for path in sorted(p for p in out.iterdir() if p.is_dir() and (p / CONFIG).is_file()):
        summary = read_summary(path)
        status = summary.get("status", "unknown")
        if status == "running" and not _alive(summary):
            status = "aborted"  # killed without a chance to write its summary: resume it
        preset = summary.get("preset")
        if preset is None:
            try:
                preset = load_run_config(path).name
            except TuitrainError:
                preset = "?"
        rows.append({
            "run_dir": str(path), "name": path.name, "preset": preset, "status": status,
            "epoch": summary.get("epoch"), "epochs": summary.get("epochs"),
            "best": summary.get("best"), "test": summary.get("test"),
            "updated_at": summary.get("updated_at") or path.stat().st_mtime,
        })
    return rows
