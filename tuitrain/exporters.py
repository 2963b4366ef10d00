"""Provides `tuitrain export`: a run's metrics as CSV or TensorBoard events, its network as safetensors or ONNX.

Each format is written by the library made for it (csv, torch.utils.tensorboard, safetensors,
torch.onnx + onnx.checker + onnxruntime); the optional ones are extras, and a missing one is a
one-line error naming it.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import os
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tuitrain.checkpoints import atomic_write
from tuitrain.errors import UsageError
from tuitrain.export import EPOCH_COLUMNS, epoch_rows
from tuitrain.runs import CHECKPOINTS, METRICS, check_run_dir, read_events

FORMATS = ("csv", "tensorboard", "safetensors", "onnx")
EXTRAS = {"tensorboard": ("tensorboard",), "safetensors": ("safetensors",), "onnx": ("onnx", "onnxruntime")}
STEP_COLUMNS = ("step", "epoch", "wall_seconds", "train_loss", "train_accuracy", "lr")
ONNX_TOLERANCE = 1e-5  # largest difference allowed between ONNX Runtime's outputs and PyTorch's


def require_extra(fmt: str) -> None:
    """A one-line error naming the extra to install when a format's library is missing."""
    missing = [m for m in EXTRAS.get(fmt, ()) if importlib.util.find_spec(m) is None]
    if missing:
        raise UsageError(f"--format {fmt} needs {', '.join(missing)} (the {fmt} extra): pip install 'tuitrain[{fmt}]'")


def step_rows(run_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The run's recorded step events as one timeline: epochs a resume redid are dropped, a step once."""
    events, _ = read_events(check_run_dir(run_dir) / METRICS)
    steps: dict[int, dict[str, Any]] = {}
    for event in events:
        if event.get("event") == "start":
            redone_after = event.get("start_epoch") or 0
            steps = {s: e for s, e in steps.items() if e.get("epoch", 0) <= redone_after}
        elif event.get("event") == "step":
            steps[int(event["step"])] = event
    return [
        {
            "step": e["step"],
            "epoch": e.get("epoch"),
            "wall_seconds": e.get("total_seconds"),
            "train_loss": e.get("loss"),
            "train_accuracy": e.get("accuracy"),
            "lr": e.get("lr"),
        }
        for _, e in sorted(steps.items())
    ]


def write_csv(run_dirs: list[Path], out: Path, steps: bool) -> Path:
    """One row per epoch (or recorded step); with several runs, a `run` column first."""
    columns = STEP_COLUMNS if steps else EPOCH_COLUMNS
    several = len(run_dirs) > 1
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=(("run",) if several else ()) + columns, lineterminator="\n")
    writer.writeheader()
    for run_dir in run_dirs:
        for row in step_rows(run_dir) if steps else epoch_rows(run_dir):
            writer.writerow({"run": run_dir.name, **row} if several else row)
    atomic_write(out, buffer.getvalue())
    return out


def write_tensorboard(run_dir: Path, out: Path) -> Path:
    """Event files TensorBoard reads: step and epoch scalars, the test result (no duplicated steps)."""
    from torch.utils.tensorboard import SummaryWriter

    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("events.out.tfevents.*"):  # a re-export replaces, never doubles, the curves
        old.unlink()
    events, _ = read_events(run_dir / METRICS)
    with SummaryWriter(log_dir=str(out)) as board:
        for row in step_rows(run_dir):
            board.add_scalar("step/train_loss", row["train_loss"], row["step"])
            if row["train_accuracy"] is not None:
                board.add_scalar("step/train_accuracy", row["train_accuracy"], row["step"])
            board.add_scalar("step/lr", row["lr"], row["step"])
        for row in epoch_rows(run_dir):
            for key in ("train_loss", "train_accuracy", "valid_loss", "valid_accuracy", "lr"):
                if row[key] is not None:
                    board.add_scalar(f"epoch/{key}", row[key], row["epoch"])
        ends = [e for e in events if e.get("event") == "end" and e.get("test")]
        if ends:
            for key, value in ends[-1]["test"].items():
                if value is not None:
                    board.add_scalar(f"test/{key}", value, ends[-1].get("epoch", 0))
    return out


def write_safetensors(run_dir: Path, out: Path, which: str) -> Path:
    """The checkpoint's weights (names as in the model's state_dict) with the config as metadata."""
    from safetensors.torch import save_file

    from tuitrain.session import trainer_from_run

    trainer = trainer_from_run(run_dir, which)  # type: ignore[arg-type]
    tensors = {name: t.detach().cpu().contiguous() for name, t in trainer.model.state_dict().items()}
    metadata = {
        "config": json.dumps(trainer.config.to_dict()),
        "epoch": str(trainer.epoch),
        "step": str(trainer.step),
        "checkpoint": which,
        "format": "tuitrain",
    }
    _atomic(out, lambda path: save_file(tensors, str(path), metadata=metadata))
    return out


def write_onnx(run_dir: Path, out: Path, which: str) -> tuple[Path, float]:
    """The network as ONNX (batch size free), checked by onnx.checker and run by ONNX Runtime on
    test samples; returns the largest difference from PyTorch's outputs."""
    import numpy as np
    import onnx
    import onnxruntime
    import torch

    from tuitrain.session import trainer_from_run

    trainer = trainer_from_run(run_dir, which)  # type: ignore[arg-type]
    model = trainer.model.eval().cpu()
    samples = trainer.data.test.x[:8].cpu()

    def write_checked(path: Path) -> None:
        with warnings.catch_warnings():
            # the tracer's notes on LeNet's 28x28 padding, said for every graph pass: the checks below
            # are what tells whether the file is right
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.filterwarnings("ignore", message="Constant folding", category=UserWarning)
            torch.onnx.export(  # the TorchScript exporter: the dynamo one needs onnxscript, these nets do not
                model,
                (samples[:1],),
                str(path),
                dynamo=False,
                input_names=["input"],
                output_names=["output"],
                dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
            )
        onnx.checker.check_model(str(path), full_check=True)
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        (got,) = session.run(None, {"input": samples.numpy()})
        with torch.no_grad():
            want = model(samples).numpy()
        found.append(float(np.max(np.abs(got - want))))
        if found[0] > ONNX_TOLERANCE:
            raise UsageError(f"ONNX Runtime's outputs differ from PyTorch's by {found[0]:.2g} (over {ONNX_TOLERANCE})")

    found: list[float] = []
    _atomic(out, write_checked)  # renamed into place only once checked
    difference = found[0]
    return out, difference


def _atomic(out: Path, write: Callable[[Path], object]) -> None:
    """Write through a temporary file beside `out`, then rename: never half a file."""
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, out)
    finally:
        Path(tmp).unlink(missing_ok=True)


def default_output(run_dirs: list[Path], fmt: str, which: str, steps: bool) -> Path:
    first = run_dirs[0]
    if fmt == "csv":
        name = "steps.csv" if steps else "epochs.csv"
        return Path(name) if len(run_dirs) > 1 else first / name
    if fmt == "tensorboard":
        return first / "tensorboard"
    return first / f"model-{which}.{'safetensors' if fmt == 'safetensors' else 'onnx'}"


def export(
    run_dirs: list[str], fmt: str, output: str | None = None, which: str = "best", steps: bool = False
) -> list[str]:
    """Export; returns one line per file written, for the user."""
    if fmt not in FORMATS:
        raise UsageError(f"--format must be one of {', '.join(FORMATS)}, not '{fmt}'")
    if which not in CHECKPOINTS:
        raise UsageError(f"--checkpoint must be one of {', '.join(CHECKPOINTS)}, not '{which}'")
    require_extra(fmt)
    dirs = [check_run_dir(d) for d in run_dirs]
    if len(dirs) > 1 and fmt != "csv":
        raise UsageError(f"--format {fmt} exports one run at a time (csv takes several)")
    out = Path(output) if output else default_output(dirs, fmt, which, steps)
    try:
        if fmt == "csv":
            return [f"{write_csv(dirs, out, steps)}"]
        if fmt == "tensorboard":
            return [f"{write_tensorboard(dirs[0], out)}  (tensorboard --logdir {out})"]
        if fmt == "safetensors":
            return [f"{write_safetensors(dirs[0], out, which)}"]
        path, difference = write_onnx(dirs[0], out, which)
        return [f"{path}  (onnx.checker passed; ONNX Runtime matches PyTorch within {difference:.1g})"]
    except OSError as exc:
        raise UsageError(f"cannot write {out}: {exc.strerror or exc}") from None
