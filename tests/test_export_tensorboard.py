"""`tuitrain export --format tensorboard` (and `run --tensorboard`) beyond scalars: the recorded weight and
gradient histories as histograms, several runs as one TensorBoard run each with an HParams entry, all
read back by TensorBoard's own reader (and, slow, its server)."""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from conftest import TINY, run_cli

from tuitrain.config import apply_overrides, load_preset
from tuitrain.exports import tensorboard_files
from tuitrain.exports.tensorboard_files import choose_hparams, histogram
from tuitrain.runs import start as session
from tuitrain.store.histories import read_histories
from tuitrain.store.run_dir import read_summary_file

pytest.importorskip("tensorboard")

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

EVERYTHING = {"histograms": 0, "scalars": 0, "tensors": 0}


@pytest.fixture(scope="module")
def race(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two tiny rings runs that differ by optimizer only (as `--optimizer sgd,adam` makes them)."""
    out = tmp_path_factory.mktemp("race")
    made = []
    for optimizer in ("sgd", "adam"):
        config = apply_overrides(load_preset(TINY), epochs=2, optimizer=optimizer)
        trainer, writer = session.new_run(config, out)
        trainer.run()
        writer.close()
        made.append(Path(writer.run_dir))
    return made


def board(folder: Path) -> EventAccumulator:
    accumulator = EventAccumulator(str(folder), size_guidance=EVERYTHING)
    accumulator.Reload()
    return accumulator


def hparams_of(accumulator: EventAccumulator) -> tuple[dict[str, Any], list[str]]:
    """(the session's settings, the experiment's metric tags) from the HParams plugin's own records."""
    settings: dict[str, Any] = {}
    metrics: list[str] = []
    for raw in accumulator.PluginTagToContent("hparams").values():
        data = plugin_data_pb2.HParamsPluginData.FromString(raw)
        if data.HasField("session_start_info"):
            for key, value in data.session_start_info.hparams.items():
                kind = value.WhichOneof("kind")
                settings[key] = getattr(value, kind) if kind else None
        if data.HasField("experiment"):
            metrics = [m.name.tag for m in data.experiment.metric_infos]
    return settings, metrics


def test_histograms_are_the_recorded_histories_at_their_steps(race: list[Path], tmp_path: Path) -> None:
    run = race[1]
    done = run_cli("export", run, "--format", "tensorboard", "-o", tmp_path / "tb")
    assert done.code == 0, done.err
    accumulator = board(tmp_path / "tb")
    records = read_histories(run / "histories.jsonl")
    assert len(records) >= 2
    names = [t.name for t in records[0].tensors]
    tags = accumulator.Tags()["histograms"]
    assert set(tags) == {f"weights/{n}" for n in names} | {f"gradients/{n}" for n in names}
    for name in names:
        assert [h.step for h in accumulator.Histograms(f"weights/{name}")] == [r.step for r in records]
        with_grad = [r.step for r in records if next(t for t in r.tensors if t.name == name).grad_counts is not None]
        assert [h.step for h in accumulator.Histograms(f"gradients/{name}")] == with_grad
    last = records[-1].tensors[0]
    value = accumulator.Histograms(f"weights/{last.name}")[-1].histogram_value
    assert value.num == sum(last.counts) and list(value.bucket) == last.counts
    assert (value.min, value.max) == pytest.approx((last.low, last.high))
    assert value.sum / value.num == pytest.approx(last.mean, rel=1e-4, abs=1e-6)
    variance = (value.sum_squares - value.sum**2 / value.num) / (value.num - 1)
    assert math.sqrt(max(variance, 0.0)) == pytest.approx(last.std, rel=1e-3)
    grads = accumulator.Histograms(f"gradients/{last.name}")[-1].histogram_value
    assert grads.sum_squares == pytest.approx(last.grad_norm**2, rel=1e-4)  # exact from the recorded norm


def test_histogram_of_one_value_and_of_nothing() -> None:
    single = histogram([5] + [0] * 31, 0.0, 0.0)  # a bias still at zero: every value in one bin
    assert single is not None
    assert single["bucket_limits"] == [0.0] and single["bucket_counts"] == [5] and single["sum"] == 0.0
    assert histogram([0] * 32, -1.0, 1.0) is None
    estimated = histogram([1] + [0] * 30 + [1], -1.0, 1.0)  # no mean nor std: bin centres
    assert estimated is not None and estimated["sum"] == pytest.approx(0.0, abs=1e-12)
    assert estimated["sum_squares"] == pytest.approx(2 * (1 - 1 / 32) ** 2)


def test_several_runs_become_tensorboard_runs_with_hparams(race: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "tb"
    done = run_cli("export", *race, "--format", "tensorboard", "-o", out)
    assert done.code == 0, done.err
    assert sorted(p.name for p in out.iterdir()) == sorted(r.name for r in race)
    for run, optimizer in zip(race, ("sgd", "adam"), strict=True):
        accumulator = board(out / run.name)
        settings, metrics = hparams_of(accumulator)
        assert settings == {"train.optimizer": optimizer}  # what differs, as `tuitrain compare` finds it
        assert metrics == [
            "hparams/test_accuracy",
            "hparams/test_loss",
            "hparams/best_valid_accuracy",
            "hparams/best_valid_loss",
        ]
        summary, _, _ = read_summary_file(run / "summary.json")
        [accuracy] = accumulator.Scalars("hparams/test_accuracy")
        assert accuracy.value == pytest.approx(summary["test"]["accuracy"], rel=1e-6)
        [best] = accumulator.Scalars("hparams/best_valid_loss")
        assert best.value == pytest.approx(summary["best"]["valid"]["loss"], rel=1e-6)
        assert {"epoch/valid_loss", "test/accuracy"} <= set(accumulator.Tags()["scalars"])
        assert any(t.startswith("gradients/") for t in accumulator.Tags()["histograms"])


def test_one_run_shows_its_main_settings(race: list[Path], tmp_path: Path) -> None:
    assert run_cli("export", race[0], "--format", "tensorboard", "-o", tmp_path / "tb").code == 0
    settings, _ = hparams_of(board(tmp_path / "tb"))
    assert settings["train.optimizer"] == "sgd" and settings["train.lr"] == pytest.approx(0.01)
    assert settings["train.batch_size"] == 100 and settings["train.seed"] == 1
    assert settings["model.hidden"] == "32x32" and settings["data.dataset"] == "rings"
    assert "train.momentum" not in settings  # sgd does not use it


def test_choose_hparams() -> None:
    adam = {"train.optimizer": "adam", "train.lr": 0.1, "train.threads": 2}
    momentum = {"train.optimizer": "momentum", "train.lr": 0.1, "train.momentum": 0.9}
    assert choose_hparams([adam, momentum], ["train.optimizer", "train.momentum"]) == [
        {"train.optimizer": "adam"},
        {"train.optimizer": "momentum", "train.momentum": 0.9},
    ]
    assert choose_hparams([adam, adam], []) == [{"train.optimizer": "adam", "train.lr": 0.1}] * 2


def test_several_runs_default_to_a_tensorboard_folder_and_a_failing_reexport_keeps_the_old(
    race: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert run_cli("export", *race, "--format", "tensorboard").code == 0
    files = sorted(str(p.relative_to(tmp_path)) for p in (tmp_path / "tensorboard").rglob("events.out.tfevents.*"))
    assert len(files) == 2

    def broken(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(tensorboard_files, "add_histories", broken)
    done = run_cli("export", *race, "--format", "tensorboard")
    assert done.code == 2 and "No space left" in done.err
    assert (
        sorted(str(p.relative_to(tmp_path)) for p in (tmp_path / "tensorboard").rglob("events.out.tfevents.*")) == files
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tensorboard"]  # no half-built folder beside it


def test_two_runs_of_one_name_are_refused(race: list[Path], tmp_path: Path) -> None:
    twin = tmp_path / "elsewhere" / race[0].name
    shutil.copytree(race[0], twin)
    done = run_cli("export", race[0], twin, "--format", "tensorboard", "-o", tmp_path / "tb")
    assert done.code == 2 and "two runs are named" in done.err and done.err.count("\n") == 1, done.err
    assert not (tmp_path / "tb").exists()


def test_run_tensorboard_writes_histograms_live(tmp_path: Path) -> None:
    done = run_cli("run", TINY, "--epochs", "2", "--tensorboard", "--out", str(tmp_path), "--json")
    assert done.code == 0, done.err
    [run_dir] = list(tmp_path.iterdir())
    accumulator = board(run_dir / "tensorboard")
    records = read_histories(run_dir / "histories.jsonl")
    name = records[0].tensors[0].name
    assert [h.step for h in accumulator.Histograms(f"weights/{name}")] == [r.step for r in records]
    assert f"gradients/{name}" in accumulator.Tags()["histograms"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read().decode("utf-8"))


@pytest.mark.slow  # a TensorBoard server process
def test_tensorboard_server_shows_the_histograms_and_hparams(race: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "tb"
    assert run_cli("export", *race, "--format", "tensorboard", "-o", out).code == 0
    port = free_port()
    command = [sys.executable, "-m", "tensorboard.main", "--logdir", str(out), "--port", str(port)]
    server = subprocess.Popen(
        [*command, "--host", "127.0.0.1", "--load_fast", "false", "--reload_interval", "1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        histograms: dict[str, Any] = {}
        plugins: dict[str, Any] = {}
        while time.monotonic() < deadline:
            if server.poll() is not None:
                pytest.skip(f"TensorBoard's server exited at once (code {server.returncode})")
            try:
                plugins = get_json(f"{base}/data/plugins_listing")
                histograms = get_json(f"{base}/data/plugin/histograms/tags")
            except OSError:
                time.sleep(0.5)
                continue
            if len(histograms) == 2:  # both runs loaded
                break
            time.sleep(0.5)
        else:
            pytest.skip("TensorBoard's server did not answer with both runs within 30 s")
        assert set(histograms) == {r.name for r in race}
        assert any(tag.startswith("weights/") for tag in histograms[race[0].name])
        assert any(tag.startswith("gradients/") for tag in histograms[race[0].name])
        assert plugins["hparams"]["enabled"] and plugins["histograms"]["enabled"]
        scalars = get_json(f"{base}/data/plugin/scalars/tags")
        assert "hparams/test_accuracy" in scalars[race[1].name]
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


async def test_the_runs_screen_exports_the_chosen_runs_as_a_race(race: list[Path]) -> None:
    from helpers import until
    from textual.widgets import DataTable

    from tuitrain.tui.app import make_app
    from tuitrain.tui.screens.runs import RunsScreen

    out = race[0].parent
    app = make_app(runs_out=str(out))
    async with app.run_test(size=(120, 30)) as pilot:
        await until(
            pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.query_one(DataTable).row_count == 2
        )
        await pilot.press("a", "e")  # every run, then export
        await until(pilot, lambda: any(len(list(p.iterdir())) == 2 for p in out.glob("tensorboard-*")), what="export")
    folder = next(out.glob("tensorboard-*"))
    optimizers = set()
    for run in race:
        settings, metrics = hparams_of(board(folder / run.name))
        assert list(settings) == ["train.optimizer"] and "hparams/test_accuracy" in metrics
        optimizers.add(settings["train.optimizer"])
    assert optimizers == {"sgd", "adam"}
