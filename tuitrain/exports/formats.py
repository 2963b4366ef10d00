"""Provides `tuitrain export`: runs' metrics (or a confusion matrix) as CSV, runs as TensorBoard events
(scalars, weight and gradient histograms, HParams), a network as safetensors or ONNX.

Each format is written by the library made for it (csv, torch.utils.tensorboard, safetensors,
torch.onnx + onnx.checker + onnxruntime); the optional ones are extras, and a missing one is a
one-line error naming it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tuitrain.errors import TuitrainError, UsageError, escape
from tuitrain.exports.csv_rows import EPOCH_COLUMNS, GROUP_COLUMNS, epoch_rows, group_rows, write_rows
from tuitrain.files import STDOUT, folder_beside, resolve_output, write_output
from tuitrain.store.ownership import enclosing_run, owning
from tuitrain.store.run_dir import (
    CHECKPOINTS,
    METRICS,
    RunDirError,
    check_run_dir,
    iter_events,
    load_run_config,
    timeline,
)

FORMATS = ("csv", "tensorboard", "safetensors", "onnx", "png")
FOLDERS = ("tensorboard", "png")  # formats that write a folder rather than one file
EXTRAS = {"tensorboard": ("tensorboard",), "safetensors": ("safetensors",), "onnx": ("onnx", "onnxruntime")}
STEP_COLUMNS = ("step", "epoch", "wall_seconds", "train_loss", "train_accuracy", "lr")


def require_extra(fmt: str) -> None:
    """A one-line error naming the extra to install when a format's library is missing."""
    missing = [m for m in EXTRAS.get(fmt, ()) if importlib.util.find_spec(m) is None]
    if missing:
        raise UsageError(f"--format {fmt} needs {', '.join(missing)} (the {fmt} extra): pip install 'tuitrain[{fmt}]'")


def step_rows(run_dir: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """The run's recorded step events as one timeline (epochs a resume redid dropped), streamed."""
    last = -1
    for e in timeline(check_run_dir(run_dir) / METRICS, ("step",)):
        if int(e["step"]) <= last:
            continue  # a step recorded twice (a resume from a mid-epoch checkpoint): once
        last = int(e["step"])
        yield {
            "step": e["step"],
            "epoch": e.get("epoch"),
            "wall_seconds": e.get("seconds"),  # training seconds so far, as total_seconds is for an epoch
            "train_loss": e.get("loss"),
            "train_accuracy": e.get("accuracy"),
            "lr": e.get("lr"),
        }


def write_csv(run_dirs: list[Path], out: Path | str, steps: bool) -> str:
    """One row per epoch (or recorded step); with several runs, a `run` column first."""
    columns = STEP_COLUMNS if steps else EPOCH_COLUMNS
    several = len(run_dirs) > 1

    def rows() -> Iterator[dict[str, Any]]:
        for run_dir in run_dirs:
            for row in step_rows(run_dir) if steps else epoch_rows(run_dir):
                yield {"run": run_dir.name, **row} if several else row

    return write_output(out, lambda path: write_rows(path, (("run",) if several else ()) + columns, rows()))


def write_group_csv(groups: list[tuple[str, list[Path]]], out: Path | str) -> str:
    """One row per group (runs differing only by seed) and epoch: n, and each metric's mean, std, min, max."""
    return write_output(out, lambda path: write_rows(path, GROUP_COLUMNS, group_rows(groups)))


EXPORT_SUFFIX = ".tuitrain-export"  # ends the event files an export writes (a live run's have none)


def write_tensorboard(run_dirs: list[Path], out: Path, hparams: list[dict[str, Any]] | None = None) -> Path:
    """Event files TensorBoard reads: step and epoch scalars, the test result (no duplicated steps), the
    recorded weight and gradient histories as histograms, and the run's settings and results for the
    HParams dashboard. One run is written into `out` itself; several, each into `out/<its folder's name>`
    (one TensorBoard run each). `hparams`: per run, the settings to show (tensorboard_files.choose_hparams;
    None: each run's main settings).

    Built in a folder beside `out`, then moved in, then the previous export's files removed: a
    failing export leaves the old one whole, and a re-export replaces, never doubles, the curves.
    """
    from torch.utils.tensorboard import SummaryWriter

    from tuitrain.exports import tensorboard_files as tb

    names = [d.name for d in run_dirs] if len(run_dirs) > 1 else [""]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise UsageError(
            f"two runs are named {escape(twice[0])}: each becomes a folder of that name; export them apart"
        )
    if hparams is None:
        hparams = tb.choose_hparams([tb.flat_settings(d) for d in run_dirs], [])
    domains = tb.text_domains(hparams)
    out = resolve_output(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"cannot write {escape(out)}: it is not a folder (TensorBoard writes a folder)")
    with folder_beside(out) as build:
        for run_dir, name, settings in zip(run_dirs, names, hparams, strict=True):
            with SummaryWriter(log_dir=str(build / name), filename_suffix=EXPORT_SUFFIX) as board:
                _write_scalars(board, run_dir)
                tb.add_histories(board, run_dir)
                tb.add_run_hparams(board, run_dir, settings, domains)
        for name in names:
            folder = out / name
            folder.mkdir(parents=True, exist_ok=True)
            # the lock is held: no process writes here, so every older event file is an earlier export
            # or a finished run's live record, both replaced by this export
            old = [p for p in folder.glob("events.out.tfevents.*") if p.is_file()]
            for new in (build / name).iterdir():
                os.replace(new, folder / new.name)
            for path in old:
                path.unlink(missing_ok=True)
    return out


def _write_scalars(board: Any, run_dir: Path) -> None:
    for row in step_rows(run_dir):
        board.add_scalar("step/train_loss", row["train_loss"], row["step"])
        if row["train_accuracy"] is not None:
            board.add_scalar("step/train_accuracy", row["train_accuracy"], row["step"])
        board.add_scalar("step/lr", row["lr"], row["step"])
    for row in epoch_rows(run_dir):
        for key in ("train_loss", "train_accuracy", "valid_loss", "valid_accuracy", "lr"):
            if row[key] is not None:
                board.add_scalar(f"epoch/{key}", row[key], row["epoch"])
    end = None
    for _, event in iter_events(run_dir / METRICS, b'"end"'):
        if event.get("event") == "end" and event.get("test"):
            end = event
    if end is not None:
        for key, value in end["test"].items():
            if value is not None:
                board.add_scalar(f"test/{key}", value, end.get("epoch", 0))


def checkpoint_model(run_dir: Path, which: str) -> tuple[Any, Any, dict[str, Any], tuple[int, ...]]:
    """(network in eval mode, config, checkpoint, input shape) from the run's files alone: the data set
    is not needed (a CSV that moved, MNIST offline), the sizes are the checkpoint's own."""
    from tuitrain.store import checkpoints
    from tuitrain.store.checkpoints import CheckpointError
    from tuitrain.training.models import build_model

    config = load_run_config(run_dir)
    state = checkpoints.load(run_dir / CHECKPOINTS[which])
    weights = state["model"]
    matrices = [t for name, t in weights.items() if name.endswith("weight") and t.dim() >= 2]
    if not matrices:
        raise CheckpointError(f"{escape(run_dir / CHECKPOINTS[which])}: holds no layer weights")
    input_shape = (1, 28, 28) if config.model.kind == "lenet" else (int(matrices[0].shape[1]),)
    model = build_model(config.model, input_shape, int(matrices[-1].shape[0]))
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise CheckpointError(
            f"{escape(run_dir / CHECKPOINTS[which])}: does not fit its configuration: {first}"
        ) from None
    return model.eval(), config, state, input_shape


def write_safetensors(run_dir: Path, out: Path | str, which: str) -> str:
    """The checkpoint's weights (names as in the model's state_dict) with the config as metadata."""
    from safetensors.torch import save_file

    from tuitrain.store import checkpoints

    config = load_run_config(run_dir)
    state = checkpoints.load(run_dir / CHECKPOINTS[which])
    tensors = {name: t.detach().cpu().contiguous() for name, t in state["model"].items()}
    metadata = {
        "config": json.dumps(config.to_dict()),
        "epoch": str(state["epoch"]),
        "step": str(state["step"]),
        "checkpoint": which,
        "format": "tuitrain",
    }
    return write_output(out, lambda path: save_file(tensors, str(path), metadata=metadata), text=False)


def sample_inputs(config: Any, input_shape: tuple[int, ...]) -> Any:
    """Eight test inputs to check an ONNX file on: the run's own when its data loads, else seeded
    random ones of the same shape (the data file may have moved)."""
    import torch

    from tuitrain.data.sets import load_dataset

    try:
        return load_dataset(config.data, config.train.seed).test.x[:8].cpu()
    except (TuitrainError, OSError):
        return torch.randn((8, *input_shape), generator=torch.Generator().manual_seed(0))


class ExportMismatch(TuitrainError):
    """The exported network computes something else than the checkpoint (a failure: exit 1)."""


def write_onnx(run_dir: Path, out: Path | str, which: str) -> tuple[str, float]:
    """The network as ONNX (batch size free), checked by onnx.checker and run by ONNX Runtime on
    test samples; returns where it went and the largest difference from PyTorch's outputs."""
    import onnx
    import onnxruntime
    import torch

    model, config, _, input_shape = checkpoint_model(run_dir, which)
    samples = sample_inputs(config, input_shape)
    found: list[float] = []

    def write_checked(path: Path) -> None:
        with warnings.catch_warnings():
            # the tracer's notes on LeNet's 28x28 padding, said for every graph pass: the checks below
            # are what tells whether the file is right
            warnings.simplefilter("ignore", torch.jit.TracerWarning)  # type: ignore[attr-defined]
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
            want = model(samples)
        got_tensor = torch.from_numpy(got)
        found.append(float((got_tensor - want).abs().max()))
        try:  # float32's own tolerances (relative plus absolute), as torch's tests compare float32
            torch.testing.assert_close(got_tensor, want)
        except AssertionError:
            scale = float(want.abs().max())
            raise ExportMismatch(
                f"ONNX Runtime's outputs differ from PyTorch's by {found[0]:.3g} on outputs up to {scale:.3g} "
                "(over float32's tolerance); the file was not written"
            ) from None

    where = write_output(out, write_checked, text=False)  # in place only once checked
    return where, found[0]


def default_output(run_dirs: list[Path], fmt: str, which: str, steps: bool, confusion: bool = False) -> Path:
    first = run_dirs[0]
    if fmt == "csv" and confusion:
        return first / f"confusion-{which}.csv"
    if fmt == "csv":
        name = "steps.csv" if steps else "epochs.csv"
        return Path(name) if len(run_dirs) > 1 else first / name
    if fmt == "tensorboard":
        return Path("tensorboard") if len(run_dirs) > 1 else first / "tensorboard"
    if fmt == "png":
        return first / "pictures"
    return first / f"model-{which}.{'safetensors' if fmt == 'safetensors' else 'onnx'}"


def export(
    run_dirs: list[str],
    fmt: str,
    output: str | None = None,
    which: str | None = None,
    steps: bool = False,
    note: Callable[[str], None] = lambda line: None,
    groups: list[tuple[str, list[str]]] | None = None,
    confusion: bool = False,
    hparams: list[dict[str, Any]] | None = None,
    sample: int | None = None,
) -> list[str]:
    """Export; returns one line per file written, for the user (`note` hears what they should know).

    `which`: the checkpoint (best or last); None: best for safetensors and ONNX, last (the final
    network, whose test metrics the run reported) for the confusion matrix.
    `groups`: the runs as seed groups, (label, run directories) each (tuitrain.runs.compare finds
    them): a CSV of one row per group and epoch instead of one per run and epoch.
    `confusion`: a CSV of the confusion matrix over the test split instead (one classification run).
    `hparams`: tensorboard, the settings each run shows in the HParams dashboard
    (tensorboard_files.choose_hparams); None: each run's main settings.
    `sample`: png of an image run, the test sample stepped through the network (default 0)."""
    if fmt not in FORMATS:
        raise UsageError(f"--format must be one of {', '.join(FORMATS)}, not '{fmt}'")
    if which is not None and which not in CHECKPOINTS:
        raise UsageError(f"--checkpoint must be one of {', '.join(CHECKPOINTS)}, not '{which}'")
    require_extra(fmt)
    dirs = [check_run_dir(d) for d in run_dirs]
    if len(dirs) > 1 and fmt not in ("csv", "tensorboard"):
        raise UsageError(f"--format {fmt} exports one run at a time (csv and tensorboard take several)")
    if groups is not None and (fmt != "csv" or steps):
        raise UsageError("--groups is for --format csv, per epoch (without --steps)")
    if confusion and (fmt != "csv" or steps or groups is not None or len(dirs) > 1):
        raise UsageError("--confusion is for --format csv of one run (without --steps or --groups)")
    if output == STDOUT and fmt in FOLDERS:
        raise UsageError(f"--format {fmt} writes a folder: -o - (standard output) is not possible")
    if sample is not None and fmt != "png":
        raise UsageError("--sample is for --format png (the test image stepped through the network)")
    which = which or ("last" if confusion else "best")
    if (fmt in ("safetensors", "onnx", "png") or confusion) and which == "best":
        which = _checkpoint_or_last(dirs[0], note)
    if groups is not None and not (output and output != STDOUT):
        default = Path("groups.csv") if len(dirs) > 1 else dirs[0] / "groups.csv"
        out = Path(output).expanduser() if output else default
    else:
        chosen = Path(output).expanduser() if output and output != STDOUT else None
        out = chosen or default_output(dirs, fmt, which, steps, confusion)
    target: Path | str = STDOUT if output == STDOUT else out
    try:
        run_dir = enclosing_run(resolve_output(out) if fmt in FOLDERS else resolve_output(out).parent)
        with _owning_for_export(run_dir if output != STDOUT else None):
            if fmt == "csv" and groups is not None:
                checked = [(label, [check_run_dir(d) for d in members]) for label, members in groups]
                return [f"{write_group_csv(checked, target)}"]
            if fmt == "csv" and confusion:
                from tuitrain.exports.confusion import write_confusion_csv

                return [f"{write_confusion_csv(dirs[0], target, which)}"]
            if fmt == "csv":
                return [f"{write_csv(dirs, target, steps)}"]
            if fmt == "tensorboard":
                return [f"{write_tensorboard(dirs, out, hparams)}  (tensorboard --logdir {out})"]
            if fmt == "safetensors":
                return [f"{write_safetensors(dirs[0], target, which)}"]
            if fmt == "png":
                from tuitrain.exports.pictures import write_pictures  # torchvision: imported only when asked

                return write_pictures(dirs[0], out, which, sample or 0)
            path, difference = write_onnx(dirs[0], target, which)
            return [f"{path}  (onnx.checker passed; ONNX Runtime matches PyTorch within {difference:.1g})"]
    except OSError as exc:
        raise UsageError(f"cannot write {escape(out)}: {exc.strerror or exc}") from None


def _checkpoint_or_last(run_dir: Path, note: Callable[[str], None]) -> str:
    """best, or last (with a note) when the run has no best.pt (it never validated) but a last.pt."""
    if not (run_dir / CHECKPOINTS["best"]).exists() and (run_dir / CHECKPOINTS["last"]).exists():
        note(f"note: {escape(run_dir)} has no {CHECKPOINTS['best']}; exporting {CHECKPOINTS['last']}")
        return "last"
    return "best"


@contextmanager
def _owning_for_export(run_dir: Path | None) -> Iterator[None]:
    """Writing into a run directory takes its lock: a run that trains keeps its files to itself."""
    try:
        with owning(run_dir):
            yield
    except RunDirError as exc:
        if "in use by" not in str(exc):
            raise
        raise UsageError(f"{exc}; export it elsewhere with -o PATH, or after it ends") from None
