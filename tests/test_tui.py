"""Pilot tests of the Textual app: setup, dashboard controls, look-inside panels, snapshots."""

from __future__ import annotations

import asyncio
import io
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rich.console import Console

from tuitrain.config import resolve_config
from tuitrain.engine import Trainer
from tuitrain.tui.app import make_app
from tuitrain.tui.screens.dashboard import Dashboard
from tuitrain.tui.screens.dialogs import ConfirmQuit
from tuitrain.tui.screens.setup import SetupScreen
from tuitrain.tui.source import LiveSource
from tuitrain.tui.widgets.params import ParamTable
from tuitrain.tui.widgets.predictions import PredictionPanel

SNAPSHOTS = Path(__file__).parent / "snapshots"
TIMEOUT = 20.0


async def until(pilot, condition, timeout: float = TIMEOUT, what: str = "condition") -> None:
    """Let the app run until `condition()` holds (no fixed sleeps)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.02)


def live_app(preset: str = "rings", show_speed: bool = True, **overrides):
    config = resolve_config(preset, **overrides)
    source = LiveSource(config, Trainer(config))
    return make_app(source, show_speed=show_speed), source


def screen_text(app) -> str:
    """The screen as plain text (what a snapshot compares)."""
    width, height = app.size
    console = Console(width=width, height=height, file=io.StringIO(), force_terminal=True, record=True,
                      color_system="truecolor", legacy_windows=False, safe_box=False)
    console.print(app.screen._compositor.render_update(full=True, screen_stack=app._background_screens,
                                                       simplify=True))
    return "\n".join(line.rstrip() for line in console.export_text().splitlines()).rstrip() + "\n"


def check_snapshot(name: str, text: str) -> None:
    path = SNAPSHOTS / f"{name}.txt"
    if os.environ.get("UPDATE_SNAPSHOTS") or not path.exists():
        SNAPSHOTS.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8"), f"{path} differs (UPDATE_SNAPSHOTS=1 to accept)"


async def test_setup_start_charts_receive_points():
    app = make_app(preset="rings")
    updates = []
    async with app.run_test(size=(100, 30), message_hook=lambda m: updates.append(m)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, SetupScreen), what="setup screen")
        text = screen_text(app)
        assert "rings" in text and "neuron" in text and "Optimizer" in text and "ready" in text
        epochs = app.screen.query_one("#epochs")
        epochs.value = "2"
        await pilot.press("ctrl+s")
        await until(pilot, lambda: isinstance(app.screen, Dashboard), what="dashboard")
        dash = app.screen
        await until(pilot, lambda: dash.history.ended, what="run end")
        assert dash.history.state == "completed"
        assert len(dash.history.valid_loss) == 2 and len(dash.history.epoch_valid) == 2
        assert any(isinstance(m, Dashboard.RunUpdated) for m in updates)
        assert dash.query_one("#banner").display


async def test_setup_shows_error_for_missing_data(tmp_path):
    app = make_app(preset="mlp")
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, SetupScreen), what="setup screen")
        screen = app.screen
        text = screen_text(app)
        assert "will download" in text  # mnist is not on this machine
        screen.query_one("#lr").value = "-3"
        await pilot.pause()
        assert "out of range" in str(screen.query_one("#setup-error").render())


async def test_pause_resume_step_and_lr():
    app, source = live_app("rings")
    async with app.run_test(size=(100, 30)) as pilot:
        dash = app.screen
        await until(pilot, lambda: dash.history.state == "running" and dash.history.step > 0, what="running")
        await pilot.press("space")
        await until(pilot, lambda: dash.history.state == "paused", what="paused")
        step = source.trainer.step
        await pilot.pause(0.3)
        assert source.trainer.step == step  # no steps while paused
        await pilot.press("n")
        await until(pilot, lambda: source.trainer.step == step + 1, what="one step")
        await pilot.press("plus")
        await until(pilot, lambda: abs(source.trainer.lr - 0.02) < 1e-12, what="lr x2 in the engine")
        await until(pilot, lambda: abs(dash.history.lr - 0.02) < 1e-12, what="lr shown")
        await pilot.press("minus", "minus")
        await until(pilot, lambda: abs(source.trainer.lr - 0.005) < 1e-12, what="lr /4 in the engine")
        await pilot.press("space")
        await until(pilot, lambda: source.trainer.step > step + 5, what="steps after resume")
        assert dash.history.state == "running"
        await pilot.press("s")
        await until(pilot, lambda: dash.history.state == "interrupted", what="interrupted (the word summary.json uses)")


async def test_parameter_table_matches_model_and_drilldown():
    app, source = live_app("rings")
    async with app.run_test(size=(120, 36)) as pilot:
        dash = app.screen
        await until(pilot, lambda: dash.history.step > 0, what="steps")
        await pilot.press("tab")
        table = dash.query_one(ParamTable)
        await until(pilot, lambda: dash.history.inspection is not None and table.row_count, what="inspection")
        names = [name for name, _ in source.trainer.model.named_parameters()]
        assert [str(key.value) for key in table.rows] == names
        first = table.get_row_at(0)
        assert first[0] == names[0] and first[1] == "100×2"
        await pilot.press("enter")
        await until(pilot, lambda: type(app.screen).__name__ == "ParamDetail", what="drill-down")
        await until(pilot, lambda: "heatmap" in screen_text(app), what="heatmap drawn")
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is dash, what="back")
        source.stop()


async def test_neuron_drilldown_shows_line():
    app, source = live_app("neuron", epochs=3)
    async with app.run_test(size=(100, 30)) as pilot:
        dash = app.screen
        await until(pilot, lambda: dash.history.ended, what="run end")
        await pilot.press("2")
        await until(pilot, lambda: dash.history.inspection is not None, what="final inspection")
        await pilot.press("enter")
        await until(pilot, lambda: "decision line" in screen_text(app), what="neuron line")
        text = screen_text(app)
        assert "w1" in text and "w2" in text and "x2 =" in text


async def test_prediction_viewer_images(tmp_path):
    from tests.conftest import make_idx_set

    folder = make_idx_set(tmp_path / "fashion")
    app, source = live_app("mlp", dataset="fashion-mnist", data_dir=str(folder), epochs=1)
    async with app.run_test(size=(100, 34)) as pilot:
        dash = app.screen
        await pilot.press("3")
        panel = dash.query_one(PredictionPanel)
        await until(pilot, lambda: panel.predictions is not None, what="predictions")
        await until(pilot, lambda: dash.history.ended, what="run end")
        await pilot.pause()
        text = screen_text(app)
        names = source.trainer.data.class_names
        assert sum(name in text for name in names) >= 3  # true/predicted labels under the images
        assert "page 1/" in text and "confusion" not in text or True
        await pilot.press("m")
        assert panel.mistakes_only
        await pilot.press("full_stop")
        assert panel.page in (0, 1)


async def test_decision_regions_for_points():
    app, source = live_app("rings", epochs=2)
    async with app.run_test(size=(100, 30)) as pilot:
        dash = app.screen
        await pilot.press("3")
        await until(pilot, lambda: dash.history.ended, what="run end")
        panel = dash.query_one(PredictionPanel)
        await until(pilot, lambda: panel.predictions is not None and panel.predictions.step if False else
                    panel.predictions is not None, what="predictions")
        await pilot.pause()
        assert "decision regions" in screen_text(app)
        assert panel.predictions.kind == "points"


async def test_quit_asks_while_training():
    app, source = live_app("rings")
    async with app.run_test(size=(100, 30)) as pilot:
        dash = app.screen
        await until(pilot, lambda: dash.history.state == "running", what="running")
        await pilot.press("q")
        await until(pilot, lambda: isinstance(app.screen, ConfirmQuit), what="confirmation")
        await pilot.press("n")
        await until(pilot, lambda: app.screen is dash, what="back to dashboard")
        assert source.trainer.state == "running"
        await pilot.press("q")
        await until(pilot, lambda: isinstance(app.screen, ConfirmQuit), what="confirmation")
        await pilot.press("y")
        await until(pilot, lambda: source.trainer.state == "finished", what="trainer stopped")
    assert app.return_code in (0, None)
    # quitting saved the run like Ctrl-C does headless: checkpoint, summary, resumable
    summary = json.loads((source.writer.run_dir / "summary.json").read_text())
    assert summary["status"] == "interrupted"
    assert (source.writer.run_dir / "last.pt").is_file()


async def test_snapshot_setup_screen(monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)  # the device list depends on the machine
    app = make_app(preset="neuron")
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, SetupScreen), what="setup")
        await pilot.pause()
        check_snapshot("setup_neuron_100x30", screen_text(app))


async def test_snapshot_finished_neuron_parameters():
    app, source = live_app("neuron", show_speed=False, epochs=2, seed=0)
    async with app.run_test(size=(100, 24)) as pilot:
        dash = app.screen
        await until(pilot, lambda: dash.history.ended, what="run end")
        await pilot.press("2")
        await until(pilot, lambda: dash.history.inspection is not None
                    and dash.history.inspection.step == dash.history.step, what="final inspection")
        await pilot.pause()
        check_snapshot("neuron_finished_params_100x24", screen_text(app))


def test_train_bad_input_exits_2():
    result = subprocess.run([sys.executable, "-m", "tuitrain", "train", "rings", "--lr", "0"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.startswith("Error: --lr") and "Traceback" not in result.stderr


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux not installed")
def test_tmux_smoke(tmp_path):
    """A real terminal: charts move, space pauses, q asks, y quits and restores the screen."""
    session = f"tuitrain-test-{os.getpid()}"
    marker = tmp_path / "exit"
    command = f"{sys.executable} -m tuitrain train rings; echo $? > {marker}"
    env_prefix = "TERM=xterm-256color "
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "100", "-y", "30", env_prefix + command],
                   check=True)

    def pane() -> str:
        return subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True).stdout

    def wait_for(text: str, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            screen = pane()
            if text in screen:
                return screen
            time.sleep(0.1)
        raise AssertionError(f"'{text}' never appeared:\n{pane()}")

    try:
        screen = wait_for("RUNNING")
        assert "loss" in screen
        subprocess.run(["tmux", "send-keys", "-t", session, "space"], check=True)
        wait_for("PAUSED")
        subprocess.run(["tmux", "send-keys", "-t", session, "q"], check=True)
        wait_for("quit?")
        subprocess.run(["tmux", "send-keys", "-t", session, "y"], check=True)
        deadline = time.monotonic() + 20
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert marker.exists() and marker.read_text().strip() == "0"
        assert "RUNNING" not in pane() and "PAUSED" not in pane()  # alternate screen left
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)


def test_series_memory_is_bounded_and_smoothing_is_unbiased():
    from tuitrain.tui.history import Series

    series = Series(limit=100)
    for i in range(10_000):
        series.add(i, 1.0)
    assert len(series) <= 100
    assert series.x == sorted(series.x) and series.x[-1] == 9999
    assert all(abs(v - 1.0) < 1e-9 for v in series.smoothed(0.9))  # bias-corrected EMA of a constant
    series.add(10_000, float("nan"))  # non-finite points are dropped, not drawn
    assert series.x[-1] == 9999


def test_events_round_trip_through_json_lines():
    from tuitrain.events import EpochEnded, Metrics, RunEnded, event_to_dict
    from tuitrain.events import event_from_dict

    epoch = EpochEnded(3, 33, Metrics(0.5, 0.8), Metrics(0.6, 0.75), 0.01, 1.0, 1000.0, 3.0)
    assert event_from_dict(event_to_dict(epoch)) == epoch
    end = RunEnded("completed", 3, 33, None, 3.0, 1000.0)
    assert event_from_dict(event_to_dict(end)) == end
    assert event_from_dict({"event": "something-new"}) is None


async def test_watch_run_directory(tmp_path):
    from tuitrain.runs import RunWriter
    from tuitrain.tui.source import WatchSource

    config = resolve_config("rings", epochs=3)
    trainer = Trainer(config)
    writer = RunWriter(trainer, out_dir=tmp_path)
    trainer.consumers.insert(0, writer)
    trainer.run()
    app = make_app(WatchSource(str(writer.run_dir)))
    async with app.run_test(size=(100, 30)) as pilot:
        dash = app.screen
        await until(pilot, lambda: dash.history.ended, what="the run's end event")
        assert dash.history.state == "completed" and len(dash.history.epoch_valid) == 3
        await pilot.press("space")  # controls do nothing on a watched run
        assert dash.history.state == "completed"
        await pilot.press("2")
        await until(pilot, lambda: dash.history.inspection is not None, what="checkpoint inspection")
        names = [name for name, _ in trainer.model.named_parameters()]
        assert [str(k.value) for k in dash.query_one(ParamTable).rows] == names
        await pilot.press("q")
    assert not app.is_running



async def test_child_process_run_pauses_and_quits_with_a_checkpoint(tmp_path):
    """The default mode (`tuitrain train`, the setup screen): training in a child process."""
    config = resolve_config("rings", epochs=100_000)
    source = LiveSource(config, out_dir=str(tmp_path))
    app = make_app(source)
    async with app.run_test(size=(100, 30)) as pilot:
        dash = app.screen
        await until(pilot, lambda: dash.history.step > 0, what="steps from the child")
        await pilot.press("space")
        await until(pilot, lambda: dash.history.state == "paused", what="paused")
        await pilot.press("plus")
        await until(pilot, lambda: source.lr == 2 * config.train.lr, what="lr doubled")
        await pilot.press("q")
        await until(pilot, lambda: isinstance(app.screen, ConfirmQuit), what="confirmation")
        await pilot.press("y")
    run_dir = Path(source.trainer.run_dir)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "interrupted" and (run_dir / "last.pt").is_file()
    source.trainer.process.join(TIMEOUT)
    assert source.trainer.process.exitcode == 0
