"""`tuitrain export`: every format read back by its own library (csv, TensorBoard's reader, safetensors, ONNX)."""

from __future__ import annotations

import csv
import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch
from conftest import CliResult, run_cli

from tuitrain.config import apply_overrides, load_preset
from tuitrain.exports.formats import step_rows
from tuitrain.runs import start as session
from tuitrain.store.run_dir import epoch_history, read_events

TINY = str(Path(__file__).parent / "data" / "tiny_rings.toml")


def tuitrain(*args: str) -> CliResult:
    """`tuitrain ARGS` in this process (exit code, stdout, stderr and the warnings a process would print)."""
    return run_cli(*args)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two finished `rings` runs (learning rates 0.05 and 0.1): the first trained 15 epochs, then
    resumed to 30 (the issue's `tuitrain run rings --epochs 30`, with a resume in it); the second 2."""
    out = tmp_path_factory.mktemp("export")
    made = []
    for lr, epochs in ((0.05, 15), (0.1, 2)):
        trainer, writer = session.new_run(apply_overrides(load_preset("rings"), epochs=epochs, lr=lr), out)
        trainer.run()
        writer.close()
        made.append(Path(writer.run_dir))
    resumed, writer = session.resume_run(made[0], epochs=30)
    resumed.run()
    writer.close()
    return made


def test_csv_one_row_per_epoch(runs: list[Path]) -> None:
    done = tuitrain("export", str(runs[0]), "--format", "csv")
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader((runs[0] / "epochs.csv").open()))
    assert [int(r["epoch"]) for r in rows] == list(range(1, 31))
    events, _ = read_events(runs[0] / "metrics.jsonl")
    last = [e for e in events if e["event"] == "epoch"][-1]
    assert float(rows[-1]["valid_loss"]) == pytest.approx(last["valid"]["loss"])
    assert float(rows[-1]["lr"]) == pytest.approx(last["lr"])


def test_csv_of_several_runs_has_a_run_column(runs: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "all.csv"
    done = tuitrain("export", *map(str, runs), "--format", "csv", "-o", str(out))
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(out.open()))
    assert {r["run"] for r in rows} == {runs[0].name, runs[1].name}
    assert sum(r["run"] == runs[1].name for r in rows) == 2


def test_csv_steps_are_one_timeline(runs: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "steps.csv"
    assert tuitrain("export", str(runs[0]), "--format", "csv", "--steps", "-o", str(out)).returncode == 0
    rows = list(csv.DictReader(out.open()))
    steps = [int(r["step"]) for r in rows]
    assert steps == sorted(set(steps)) and steps  # increasing, no step twice across the resume
    seconds = [float(r["wall_seconds"]) for r in rows]  # every row has its training time (issue 27)
    assert seconds == sorted(seconds) and seconds[-1] > 0
    assert steps == [r["step"] for r in step_rows(runs[0])]


def test_tensorboard_events_read_back(runs: list[Path], tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "tb"
    done = tuitrain("export", str(runs[0]), "--format", "tensorboard", "-o", str(out))
    assert done.returncode == 0, done.stderr
    board = EventAccumulator(str(out))
    board.Reload()
    tags = board.Tags()["scalars"]
    assert {"epoch/valid_loss", "epoch/train_accuracy", "step/train_loss", "test/accuracy"} <= set(tags)
    valid = board.Scalars("epoch/valid_loss")
    assert [s.step for s in valid] == list(range(1, 31))  # the resumed run: each epoch once
    steps = [s.step for s in board.Scalars("step/train_loss")]
    assert steps == sorted(set(steps))
    timeline = epoch_history(read_events(runs[0] / "metrics.jsonl")[0])
    assert valid[-1].value == pytest.approx(timeline[-1]["valid"]["loss"], rel=1e-6)


def test_safetensors_hold_the_checkpoint_weights_and_config(runs: list[Path], tmp_path: Path) -> None:
    from safetensors import safe_open
    from safetensors.torch import load_file

    out = tmp_path / "w.safetensors"
    done = tuitrain("export", str(runs[1]), "--format", "safetensors", "--checkpoint", "last", "-o", str(out))
    assert done.returncode == 0, done.stderr
    weights = load_file(str(out))
    saved = torch.load(runs[1] / "last.pt", weights_only=True)["model"]
    assert weights.keys() == saved.keys()
    assert all(torch.equal(weights[k], saved[k]) for k in saved)
    with safe_open(str(out), "pt") as f:
        config = json.loads(f.metadata()["config"])
    assert config["train"]["lr"] == 0.1


def test_onnx_checked_and_equal_to_pytorch(runs: list[Path], tmp_path: Path) -> None:
    import numpy as np
    import onnx
    import onnxruntime

    out = tmp_path / "net.onnx"
    done = tuitrain("export", str(runs[1]), "--format", "onnx", "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert "onnx.checker passed" in done.stdout
    onnx.checker.check_model(str(out))
    trainer = session.trainer_from_run(runs[1], "best")
    x = trainer.data.test.x[:16]
    (got,) = onnxruntime.InferenceSession(str(out)).run(None, {"input": x.numpy()})
    with torch.no_grad():
        want = trainer.model.eval()(x).numpy()
    assert np.max(np.abs(got - want)) <= 1e-5


def test_onnx_of_a_lenet_says_one_line(idx_dir: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    # found by hand: exporting LeNet printed a screenful of torch's tracer and constant-folding warnings
    pytest.importorskip("onnxruntime")
    config = apply_overrides(load_preset("lenet"), data_dir=str(idx_dir), epochs=1, batch_size=16)
    trainer, writer = session.new_run(config, tmp_path)
    trainer.run()
    writer.close()
    done = tuitrain("export", writer.run_dir, "--format", "onnx", "-o", str(tmp_path / "lenet.onnx"))
    assert done.returncode == 0, done.stderr
    assert "onnx.checker passed" in done.stdout and "Warning" not in done.stderr, done.stderr
    written = capfd.readouterr()  # in this process: what a library wrote to the descriptors, past sys.stderr
    assert "Warning" not in written.err and "Warning" not in written.out, written.err


def test_missing_extra_is_one_line(runs: list[Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # not installed: find_spec says None, import fails
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    done = tuitrain("export", str(runs[1]), "--format", "onnx")
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "Error: --format onnx needs onnxruntime (the onnx extra): pip install 'tuitrain[onnx]'"
    )


def test_bad_input_is_one_line(tmp_path: Path) -> None:
    done = tuitrain("export", str(tmp_path), "--format", "csv")
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and done.stderr.startswith("Error: ")


def test_run_tensorboard_writes_events_live_and_a_resume_continues_them(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    first = tuitrain("run", TINY, "--epochs", "2", "--tensorboard", "--out", str(tmp_path), "--json")
    assert first.returncode == 0, first.stderr
    [run_dir] = list(tmp_path.iterdir())
    again = tuitrain("run", "--resume", str(run_dir), "--epochs", "4", "--tensorboard")
    assert again.returncode == 0, again.stderr
    board = EventAccumulator(str(run_dir / "tensorboard"))
    board.Reload()
    assert [s.step for s in board.Scalars("epoch/valid_loss")] == [1, 2, 3, 4]
    timeline = epoch_history(read_events(run_dir / "metrics.jsonl")[0])
    assert [s.value for s in board.Scalars("epoch/valid_loss")] == pytest.approx(
        [e["valid"]["loss"] for e in timeline], rel=1e-6
    )
    assert "test/accuracy" in board.Tags()["scalars"]


@pytest.mark.slow  # the app's training child process
async def test_the_app_writes_tensorboard_events_too(tmp_path: Path) -> None:
    import functools

    from helpers import until
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from tuitrain.tui.app import make_app
    from tuitrain.tui.source import LiveRun, child_process

    factory = functools.partial(child_process, tensorboard=True)  # what `tuitrain train --tensorboard` uses
    source = LiveRun(apply_overrides(load_preset(TINY), epochs=2), out_dir=str(tmp_path), factory=factory)
    app = make_app(source)
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: getattr(app.screen, "history", None) and app.screen.history.ended, what="the end")
    source.close()
    source.wait(30)
    [run_dir] = list(tmp_path.iterdir())
    board = EventAccumulator(str(run_dir / "tensorboard"))
    board.Reload()
    assert [s.step for s in board.Scalars("epoch/valid_loss")] == [1, 2]
