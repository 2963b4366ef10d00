"""Provides atomic file writes and safe checkpoint files (torch.load with weights_only=True)."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import torch

from tuitrain.errors import UsageError

FORMAT = "tuitrain-checkpoint"
VERSION = 1
TMP_MARK = ".tmp-"  # temporary files are ".<name>.tmp-<pid>" beside their target


class CheckpointError(UsageError):
    """A checkpoint that is missing, unreadable, corrupt or from another network (exit 2)."""


def fsync_dir(path: Path) -> None:
    """Make a rename inside `path` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def atomic_write(path: str | os.PathLike, data: bytes | str, durable: bool = True) -> None:
    """Write `data` to a temporary file beside `path`, fsync it, rename it over `path`.

    Readers see the old file or the new one, never a mix; on any error (a full disk) the
    temporary file is removed and the old file is untouched.
    """
    path = Path(path)
    if isinstance(data, str):
        data = data.encode("utf-8")
    tmp = path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        try:
            _write_all(fd, data)
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    if durable:
        fsync_dir(path.parent)


def remove_stale_temporaries(folder: Path) -> None:
    """Temporary files left by a process that was killed mid-write."""
    for tmp in folder.glob(f".*{TMP_MARK}*"):
        try:
            tmp.unlink()
        except OSError:
            pass


def cpu_copy(obj: Any) -> Any:
    """A deep copy with every tensor detached and on the CPU (a snapshot training cannot change)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: cpu_copy(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(cpu_copy(v) for v in obj)
    return obj


def snapshot(trainer: Any, **extra: Any) -> dict[str, Any]:
    """Everything to continue `trainer` exactly: its state_dict, torch's global RNG, and `extra`."""
    state = cpu_copy(trainer.state_dict())
    state.update(format=FORMAT, version=VERSION, torch_rng=torch.get_rng_state(), **extra)
    return state


def to_bytes(state: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def save(path: str | os.PathLike, state: dict[str, Any]) -> None:
    atomic_write(path, to_bytes(state))


def load(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint without ever running code from it; any problem is a one-line CheckpointError."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, random bytes, a pickle that wants to import code, ...
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CheckpointError(f"{path}: not a readable checkpoint (truncated or corrupt?): {first[:200]}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a tuitrain checkpoint")
    if state.get("version", 0) > VERSION:
        raise CheckpointError(f"{path}: written by a newer tuitrain (format {state.get('version')})")
    missing = [k for k in ("model", "optimizer", "epoch", "epoch_step", "step", "shuffle_rng") if k not in state]
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks {', '.join(missing)}")
    return state


def restore(trainer: Any, state: dict[str, Any], path: str | os.PathLike = "checkpoint") -> None:
    """Load `state` into `trainer`; a checkpoint of another network is a CheckpointError."""
    try:
        trainer.load_state_dict(state)
    except CheckpointError:
        raise
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CheckpointError(f"{path}: {first[:300]}") from None
    rng = state.get("torch_rng")
    if isinstance(rng, torch.Tensor):
        torch.set_rng_state(rng)
