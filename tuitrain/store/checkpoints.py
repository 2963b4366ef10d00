"""Provides atomic file writes and safe checkpoint files (torch.load with weights_only=True)."""

from __future__ import annotations

import io
import os
import pickle
import warnings
from pathlib import Path
from typing import Any

import torch

from tuitrain.checks import is_best, is_count, is_finite, is_number, show
from tuitrain.errors import UsageError, escape
from tuitrain.files import TMP_MARK as TMP_MARK
from tuitrain.files import open_regular, temporary_for
from tuitrain.files import remove_stale_temporaries as remove_stale_temporaries

FORMAT = "tuitrain-checkpoint"
ZIP_MAGIC = b"PK\x03\x04"  # torch.save's file format is a zip archive
VERSION = 1


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


def atomic_write(path: str | os.PathLike[str], data: bytes | str, durable: bool = True) -> None:
    """Write `data` to a temporary file beside `path`, fsync it, rename it over `path`.

    Readers see the old file or the new one, never a mix; on any error (a full disk) the
    temporary file is removed and the old file is untouched.
    """
    path = Path(path)
    if isinstance(data, str):
        data = data.encode("utf-8")
    tmp = temporary_for(path)
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
    state: dict[str, Any] = cpu_copy(trainer.state_dict())
    state.update(format=FORMAT, version=VERSION, torch_rng=torch.get_rng_state(), **extra)
    return state


def to_bytes(state: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def _is_state_dict(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items())


def _is_optimizer_state(value: Any) -> bool:
    """{"state": {param id: {name: tensor | number | None}}, "param_groups": [{"params": [ids], "lr": ...}]}."""
    if not isinstance(value, dict) or not isinstance(value.get("state"), dict):
        return False
    groups = value.get("param_groups")
    if not isinstance(groups, list) or not all(
        isinstance(g, dict)
        and is_number(g.get("lr"))
        and isinstance(g.get("params"), list)
        and all(is_count(i) for i in g["params"])
        for g in groups
    ):
        return False
    return all(
        is_count(k)
        and isinstance(v, dict)
        and all(isinstance(x, torch.Tensor) or x is None or is_number(x) for x in v.values())
        for k, v in value["state"].items()
    )


def _is_rng_state(value: Any) -> bool:
    return isinstance(value, torch.Tensor) and value.dtype == torch.uint8 and value.dim() == 1


def _is_config(value: Any) -> bool:
    train = value.get("train", {}) if isinstance(value, dict) else None
    return (
        isinstance(train, dict)
        and (train.get("epochs") is None or is_count(train["epochs"]))
        and (train.get("optimizer") is None or isinstance(train["optimizer"], str))
    )


# what each entry of a checkpoint must hold (those in REQUIRED must be there)
FIELDS = {
    "model": (_is_state_dict, "a state dict of tensors"),
    "optimizer": (_is_optimizer_state, "an optimizer state dict"),
    "epoch": (is_count, "a whole number"),
    "epoch_step": (is_count, "a whole number"),
    "step": (is_count, "a whole number"),
    "shuffle_rng": (_is_rng_state, "a uint8 tensor (a random generator state)"),
    "train_seconds": (lambda v: is_finite(v) and v >= 0, "a number of seconds"),
    "samples_seen": (is_count, "a whole number"),
    "world_size": (lambda v: is_count(v) and v >= 1, "a whole number of processes"),
    "torch_rng": (
        lambda v: _is_rng_state(v) and v.numel() == torch.get_rng_state().numel(),
        "torch's random generator state (a uint8 tensor)",
    ),
    "config": (_is_config, "a configuration (tables model, data, train)"),
    "best": (lambda v: v is None or is_best(v), "the best epoch (epoch, step, valid)"),
}
REQUIRED = ("model", "optimizer", "epoch", "epoch_step", "step", "shuffle_rng", "train_seconds", "samples_seen")


def load(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a checkpoint without ever running code from it; any problem is a one-line CheckpointError.

    Every entry is checked for its type here, before anything of it is used.
    """
    path = Path(path)
    where = escape(path)
    try:
        handle = open_regular(path)
    except FileNotFoundError:
        raise CheckpointError(f"no checkpoint at {where}") from None
    except OSError as exc:
        raise CheckpointError(f"{where}: cannot read: {exc.strerror or exc}") from None
    try:
        with handle, warnings.catch_warnings():  # torch warns about pickles on stderr; the error says it all
            warnings.simplefilter("ignore")
            if handle.read(4) != ZIP_MAGIC:  # torch.save writes a zip; anything else is not ours
                raise CheckpointError(f"{where}: not a tuitrain checkpoint (not a PyTorch checkpoint file)")
            handle.seek(0)
            state = torch.load(handle, map_location="cpu", weights_only=True)
    except CheckpointError:
        raise
    except pickle.UnpicklingError:  # weights_only refused a Python object: it could have run code
        raise CheckpointError(
            f"{where}: not a tuitrain checkpoint (it holds Python objects other than "
            "tensors and plain values; refused without running them)"
        ) from None
    except Exception as exc:  # truncated zip, random bytes, ...
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CheckpointError(f"{where}: not a readable checkpoint (truncated or corrupt?): {first[:200]}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{where}: not a tuitrain checkpoint")
    if not is_count(state.get("version", 0)):
        raise CheckpointError(f"{where}: damaged checkpoint: version must be a whole number")
    if state.get("version", 0) > VERSION:
        raise CheckpointError(f"{where}: written by a newer tuitrain (format {state.get('version')})")
    missing = [k for k in REQUIRED if k not in state]
    if missing:
        raise CheckpointError(f"{where}: checkpoint lacks {', '.join(missing)}")
    for key, (check, what) in FIELDS.items():
        if key in state and not check(state[key]):
            raise CheckpointError(f"{where}: damaged checkpoint: {key} must be {what}, not {show(state[key])}")
    return state


# an optimizer's state per parameter, and a setting only its own param groups have
OPTIMIZER_STATE = {
    "sgd": (),
    "momentum": ("momentum_buffer",),
    "nesterov": ("momentum_buffer",),
    "adagrad": ("sum",),
    "rmsprop": ("square_avg",),
    "adam": ("exp_avg", "exp_avg_sq"),
    "adamw": ("exp_avg", "exp_avg_sq"),
}
OPTIMIZER_SETTING = {
    "sgd": "nesterov",
    "momentum": "nesterov",
    "nesterov": "nesterov",
    "adagrad": "lr_decay",
    "rmsprop": "alpha",
    "adam": "betas",
    "adamw": "betas",
}


def mismatch(trainer: Any, state: dict[str, Any]) -> str | None:
    """Why `state` (checked by load) cannot go into `trainer`: another network or optimizer; else None."""
    model = trainer.model.state_dict()
    saved = state["model"]
    for key in model.keys() | saved.keys():
        if key not in saved or key not in model:
            what = "missing" if key not in saved else "extra"
            return f"checkpoint does not fit this network: {escape(key)} is {what}"
        if saved[key].shape != model[key].shape:
            return (
                f"checkpoint does not fit this network: {escape(key)} has shape {list(saved[key].shape)} "
                f"in the checkpoint, {list(model[key].shape)} here"
            )
    kind = trainer.config.train.optimizer
    saved_kind = state.get("config", {}).get("train", {}).get("optimizer")
    if saved_kind is not None and saved_kind != kind:
        return f"checkpoint holds {escape(saved_kind)} optimizer state, this run trains with {kind}"
    groups = state["optimizer"]["param_groups"]
    if any(OPTIMIZER_SETTING[kind] not in group for group in groups):
        return f"checkpoint's optimizer state is not {kind} state (its settings lack {OPTIMIZER_SETTING[kind]})"
    params = [p for group in trainer.optimizer.param_groups for p in group["params"]]
    ids = [i for group in groups for i in group["params"]]
    if len(ids) != len(params) or len(groups) != len(trainer.optimizer.param_groups):
        return f"checkpoint's optimizer state covers {len(ids)} tensors, this network has {len(params)}"
    for i, param in zip(ids, params, strict=False):
        entry = state["optimizer"]["state"].get(i, {})
        lacking = [k for k in OPTIMIZER_STATE[kind] if entry and k not in entry]
        if lacking:
            return f"checkpoint's optimizer state is not {kind} state (no {lacking[0]})"
        for name, value in entry.items():
            if (
                isinstance(value, torch.Tensor)
                and name != "step"
                and (value.shape != param.shape or value.dtype != param.dtype)
            ):
                return (
                    f"checkpoint's optimizer state does not fit this network: {escape(name)} is "
                    f"{list(value.shape)} {value.dtype}, its parameter {list(param.shape)} {param.dtype}"
                )
    rng, own = state["shuffle_rng"], trainer.generator.get_state()
    if rng.numel() != own.numel():
        return (
            f"checkpoint's shuffle state is for another device ({rng.numel()} bytes, {trainer.device} "
            f"uses {own.numel()}); resume on the machine kind it was trained on"
        )
    return None


def restore(trainer: Any, state: dict[str, Any], path: str | os.PathLike[str] = "checkpoint") -> None:
    """Load `state` (from load) into `trainer`; a checkpoint of another network or optimizer is a CheckpointError."""
    try:
        problem = mismatch(trainer, state)
        if problem is None:
            trainer.load_state_dict(state)
            rng = state.get("torch_rng")
            if isinstance(rng, torch.Tensor):
                torch.set_rng_state(rng)
    except Exception as exc:  # a state that did not come through load(), or one torch refuses anyway
        problem = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
    if problem is not None:
        raise CheckpointError(f"{escape(path)}: {problem}")
