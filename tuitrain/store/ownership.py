"""Provides the ownership of a run directory: its lock (one writing process at a time), taken before
anything in it changes, and held while an export writes into it."""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tuitrain.errors import escape
from tuitrain.files import is_regular, kind_of, read_regular
from tuitrain.store.run_dir import CONFIG, LOCK, METRICS, RunDirError, owner_alive


def take_lock(run_dir: Path) -> Path:
    """Own `run_dir` (one writing process at a time); a lock left by a dead process is taken over."""
    path = run_dir / LOCK
    me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
    for _ in range(3):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            if not path.is_symlink() and not is_regular(path):
                raise RunDirError(
                    f"{escape(path)} is {kind_of(os.stat(path).st_mode)}, not a lock file: remove it "
                    "if no tuitrain process uses this run"
                ) from None
            owner = _read_lock(path)
            if owner is not None and owner_alive(owner):
                elsewhere = owner.get("host") != socket.gethostname()
                hint = f"; if that process is gone, delete {escape(path)}" if elsewhere else ""
                raise RunDirError(
                    f"{run_dir} is in use by process {owner.get('pid')} on {owner.get('host')} "
                    f"(one process trains a run at a time{hint})"
                ) from None
            try:
                path.unlink()  # stale: its process is gone
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise RunDirError(f"cannot clear the stale lock {escape(path)}: {exc.strerror or exc}") from None
            continue
        except OSError as exc:
            raise RunDirError(f"cannot write in run directory {run_dir}: {exc.strerror or exc}") from None
        try:
            with os.fdopen(fd, "w") as handle:
                json.dump(me, handle)
        except OSError as exc:  # a full disk: no half-written lock left behind
            path.unlink(missing_ok=True)
            raise RunDirError(f"cannot write in run directory {run_dir}: {exc.strerror or exc}") from None
        return path
    raise RunDirError(f"{run_dir}: could not take its lock file {LOCK}")


def check_not_in_use(run_dir: Path) -> None:
    """Refuse early (before checkpoints and data load) a run another live process owns."""
    owner = _read_lock(run_dir / LOCK)
    if owner is not None and owner.get("pid") != os.getpid() and owner_alive(owner):
        take_lock(run_dir)  # raises, saying who owns it and how to clear it


def _read_lock(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(read_regular(path).decode("utf-8"))
        return data if isinstance(data, dict) else None
    except (OSError, ValueError):
        return None


def release_lock(path: Path | None) -> None:
    if path is None:
        return
    owner = _read_lock(path)
    if owner is not None and owner.get("pid") == os.getpid():
        try:
            path.unlink()
        except OSError:
            pass


def enclosing_run(path: Path) -> Path | None:
    """The run directory that `path` lies in (it, its parent or grandparent), or None."""
    for folder in (path, *list(path.parents)[:2]):
        if is_regular(folder / CONFIG) and (folder / METRICS).exists():
            return folder
    return None


@contextmanager
def owning(run_dir: Path | None) -> Iterator[None]:
    """Hold `run_dir`'s lock while writing into it (a live run's files are its own); None: no lock."""
    lock = take_lock(run_dir) if run_dir is not None else None
    try:
        yield
    finally:
        release_lock(lock)
