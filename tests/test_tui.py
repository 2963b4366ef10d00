"""Pilot tests of the Textual app: setup, dashboard controls, look-inside panels, snapshots.

The key flows run twice: in-process (the test can look at the model) and in a child process
(what users run).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import run_cli
from helpers import MODES, TIMEOUT, check_snapshot, live_app, screen_text, until

from tuitrain.config import resolve_config
from tuitrain.events import event_from_dict, event_to_dict
from tuitrain.tui.app import make_app
from tuitrain.tui.screens.dashboard import Dashboard
from tuitrain.tui.screens.dialogs import Confirm, ConfirmQuit
from tuitrain.tui.screens.setup import SetupScreen
from tuitrain.tui.source import WatchedRun
from tuitrain.tui.widgets.param_detail import ParamDetail
from tuitrain.tui.widgets.params import ParamTable
from tuitrain.tui.widgets.predictions import PredictionPanel


async def test_setup_start_charts_receive_points():
    app = make_app(preset="rings")
    updates = []
    async with app.run_test(size=(100, 30), message_hook=updates.append) as pilot:
        await until(pilot, lambda: isinstance(app.screen, SetupScreen), what="setup screen")
        text = screen_text(app)
        assert "rings" in text and "neuron" in text and "Optimizer" in text and "ready" in text
        app.screen.query_one("#epochs").value = "2"
        await pilot.press("ctrl+s")
        await until(pilot, lambda: isinstance(app.screen, Dashboard), what="dashboard")
        dash = app.screen
        await until(pilot, lambda: dash.history.ended, what="run end")
        assert dash.history.state == "completed"
        assert len(dash.history.valid_loss) == 2 and len(dash.history.epoch_valid) == 2
        assert any(isinstance(m, Dashboard.RunUpdated) for m in updates)
        assert dash.query_one("#banner").display


@pytest.mark.parametrize("mode", MODES)
async def test_pause_step_lr_stop(mode):
    app, source, _ = live_app("rings", mode, epochs=100_000)
    async with app.run_test(size=(100, 30)) as pilot:
        dash = app.screen
        await until(pilot, lambda: dash.history.state == "running" and dash.history.step > 0, what="running")
        await pilot.press("space")
        await until(pilot, lambda: dash.history.state == "paused", what="paused")
        before = dash.history.step
        await pilot.press("n")  # the single step reports its step at once
        await until(pilot, lambda: dash.history.step > before, what="a single step shown")
        step = dash.history.step
        await pilot.press("n")
        await until(pilot, lambda: dash.history.step == step + 1, what="one step")
        await pilot.pause(0.3)
        assert dash.history.step == step + 1  # and no more while paused
        await pilot.press("plus")
        await until(pilot, lambda: abs(dash.history.lr - 0.02) < 1e-12, what="lr x2 applied by the engine")
        await pilot.press("minus", "minus")
        await until(pilot, lambda: abs(dash.history.lr - 0.005) < 1e-12, what="lr /4 applied by the engine")
        assert abs(source.controls.lr - 0.005) < 1e-12
        await pilot.press("space")
        await until(pilot, lambda: dash.history.step > step + 5, what="steps after resume")
        assert dash.history.state == "running"
        await pilot.press("s")
        await until(pilot, lambda: dash.history.state == "interrupted", what="stopped")
        run_dir = Path(source.controls.run_dir)
        await until(
            pilot,
            lambda: json.loads((run_dir / "summary.json").read_text())["status"] == "interrupted",
            what="summary written",
        )
        assert (run_dir / "last.pt").is_file()


@pytest.mark.parametrize("mode", MODES)
async def test_parameter_table_and_drilldown(mode):
    app, source, factory = live_app("rings", mode, epochs=100_000)
    async with app.run_test(size=(120, 36)) as pilot:
        dash = app.screen
        await until(pilot, lambda: dash.history.step > 0, what="steps")
        await pilot.press("tab")
        table = dash.query_one(ParamTable)
        await until(pilot, lambda: dash.history.inspection is not None and table.row_count, what="inspection")
        names = [
            "layers.1.weight",
            "layers.1.bias",
            "layers.3.weight",
            "layers.3.bias",
            "layers.5.weight",
            "layers.5.bias",
        ]
        if mode == "in-process":
            assert names == [name for name, _ in factory.trainer.model.named_parameters()]
        assert [str(key.value) for key in table.rows] == names
        first = table.get_row_at(0)
        assert first[0] == names[0] and first[1] == "100×2"
        await pilot.press("enter")
        detail = dash.query_one(ParamDetail)
        await until(pilot, lambda: detail.display and "heatmap" in screen_text(app), what="heatmap drawn")
        assert "RUNNING" in screen_text(app)  # the status line stays visible
        await pilot.press("space")  # global keys work in the drill-down
        await until(pilot, lambda: dash.history.state == "paused", what="paused from the drill-down")
        await pilot.press("plus")
        await until(pilot, lambda: abs(dash.history.lr - 0.02) < 1e-12, what="lr x2 from the drill-down")
        await pilot.press("escape")
        await until(pilot, lambda: not detail.display and dash.query_one(ParamTable).display, what="back")
        source.controls.stop()


async def test_neuron_drilldown_shows_line():
    app, _, _ = live_app("neuron", epochs=3)
    async with app.run_test(size=(100, 30)) as pilot:
        dash = app.screen
        await until(pilot, lambda: dash.history.ended, what="run end")
        await pilot.press("2")
        await until(pilot, lambda: dash.history.inspection is not None, what="final inspection")
        await pilot.press("enter")
        await until(pilot, lambda: "decision line" in screen_text(app), what="neuron line")
        text = screen_text(app)
        assert "w1" in text and "w2" in text and "x2 =" in text


@pytest.mark.parametrize("mode", MODES)
async def test_prediction_viewer_images(tmp_path, mode):
    from conftest import make_idx_set

    folder = make_idx_set(tmp_path / "fashion")
    app, _, _ = live_app("mlp", mode, dataset="fashion-mnist", data_dir=str(folder), epochs=1)
    async with app.run_test(size=(100, 34)) as pilot:
        dash = app.screen
        await pilot.press("3")
        panel = dash.query_one(PredictionPanel)
        await until(pilot, lambda: dash.history.ended, what="run end")
        await until(
            pilot,
            lambda: (
                panel.predictions is not None
                and dash.history.inspection is not None
                and dash.history.inspection.step == dash.history.step
            ),
            what="predictions of the final network",
        )
        await pilot.pause()
        text = screen_text(app)
        names = panel.predictions.class_names
        assert sum(name in text for name in names) >= 3  # true/predicted labels under the images
        assert "page 1/" in text
        pages = panel.visible_indices()[1]
        await pilot.press("full_stop")
        assert panel.page == (1 if pages > 1 else 0)
        await pilot.press("m")
        assert panel.mistakes_only


async def test_decision_regions_for_points():
    app, _, _ = live_app("rings", epochs=2)
    async with app.run_test(size=(100, 30)) as pilot:
        dash = app.screen
        await pilot.press("3")
        await until(pilot, lambda: dash.history.ended, what="run end")
        panel = dash.query_one(PredictionPanel)
        await until(pilot, lambda: panel.predictions is not None, what="predictions")
        await pilot.pause()
        assert "decision regions" in screen_text(app)
        assert panel.predictions.kind == "points"


@pytest.mark.parametrize("mode", MODES)
async def test_restart_starts_a_new_run_directory(mode):
    app, source, _ = live_app("rings", mode, epochs=100_000)
    async with app.run_test(size=(100, 30)) as pilot:
        dash = app.screen
        await until(pilot, lambda: dash.history.step > 0 and source.controls.run_dir, what="first run")
        first = source.controls.run_dir
        await pilot.press("r")
        await until(pilot, lambda: isinstance(app.screen, Confirm), what="asks first: the run is training")
        await pilot.press("y")
        await until(pilot, lambda: app.screen is dash, what="dialog closed")
        assert dash.history.state in ("starting", "running")  # the new run at once, not the old one's end
        await until(
            pilot,
            lambda: (
                source.controls is not None and source.controls.run_dir not in (None, first) and dash.history.step > 0
            ),
            what="a new run",
        )
        assert json.loads((Path(first) / "summary.json").read_text())["status"] == "interrupted"
        source.controls.stop()


@pytest.mark.parametrize("mode", MODES)
async def test_quit_asks_while_training_and_saves(mode):
    app, source, _ = live_app("rings", mode, epochs=100_000)
    async with app.run_test(size=(100, 30)) as pilot:
        dash = app.screen
        await until(pilot, lambda: dash.history.state == "running", what="running")
        await pilot.press("q")
        await until(pilot, lambda: isinstance(app.screen, ConfirmQuit), what="confirmation")
        await pilot.press("n")
        await until(pilot, lambda: app.screen is dash, what="back to dashboard")
        assert source.controls.state == "running"
        await pilot.press("q")
        await until(pilot, lambda: isinstance(app.screen, ConfirmQuit), what="confirmation")
        await pilot.press("y")
        await until(pilot, lambda: not app.is_running, what="the app to exit")
    assert app.return_code == 0
    run_dir = Path(source.controls.run_dir)  # quitting saved the run like Ctrl-C does headless
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "interrupted" and (run_dir / "last.pt").is_file()
    if mode == "child-process":
        source.controls.process.join(TIMEOUT)
        assert source.controls.process.exitcode == 0


async def test_quit_question_follows_a_run_that_ends_while_it_is_open():
    # found in tmux: q near the end of a run left "Training is still running" over a completed run
    app, source, _ = live_app("rings", epochs=100_000)
    async with app.run_test(size=(100, 30)) as pilot:
        dash = app.screen
        await until(pilot, lambda: dash.history.state == "running", what="running")
        await pilot.press("q")
        await until(pilot, lambda: isinstance(app.screen, ConfirmQuit), what="confirmation")
        source.controls.stop()  # the run ends on its own while the question is open
        await until(pilot, lambda: dash.history.ended, what="run end")
        await pilot.pause()
        assert "The run stopped. Quit?" in screen_text(app) and "still running" not in screen_text(app)
        await pilot.press("y")
        await until(pilot, lambda: not app.is_running, what="the app to exit")
    assert app.return_code == 0


async def test_keys_that_do_nothing_say_why():
    app, source, _ = live_app("neuron", epochs=2)
    notes = []
    async with app.run_test(size=(100, 30)) as pilot:
        dash = app.screen
        app.notify = lambda message, **kw: notes.append(message)  # what the toast would say
        await until(pilot, lambda: dash.history.ended, what="run end")
        await pilot.pause()
        footer = screen_text(app).splitlines()[-1]
        assert "Restart" in footer and "Pause" not in footer and "Stop" not in footer
        await pilot.press("space")
        await pilot.press("n")
        await pilot.pause()
        assert len(notes) == 2 and all("ended" in note for note in notes)


async def test_snapshot_finished_neuron_parameters():
    app, _, _ = live_app("neuron", show_speed=False, epochs=2, seed=0)
    async with app.run_test(size=(100, 24)) as pilot:
        dash = app.screen
        await until(pilot, lambda: dash.history.ended, what="run end")
        await pilot.press("2")
        await until(
            pilot,
            lambda: dash.history.inspection is not None and dash.history.inspection.step == dash.history.step,
            what="final inspection",
        )
        # the health board above depends on when records fell in so short a run (tests/test_health.py has it)
        dash.query_one("#health-board").display = False
        # the table measures its columns when the app is next idle, and is drawn at those widths after that
        await until(pilot, lambda: "linear.weight  1×2" in screen_text(app), what="the table drawn at its widths")
        await pilot.pause()
        check_snapshot("neuron_finished_params_100x24", without_update_column(screen_text(app)))


def without_update_column(text: str) -> str:
    """The screen with the update/weight column cut off: whether a ratio was measured during a run
    this short (and shown after the end, marked with its step) depends on when the records fell."""
    lines = text.split("\n")
    header = next((i for i, line in enumerate(lines) if "update/weight" in line), None)
    if header is None:
        return text
    column = lines[header].index("update/weight")
    for i in range(header + 1, len(lines)):
        if not lines[i].strip():
            break
        lines[i] = lines[i][:column].rstrip()
    return "\n".join(lines)


def test_train_bad_input_exits_2():
    result = run_cli("train", "rings", "--lr", "0")
    assert result.returncode == 2
    assert result.stderr.startswith("Error: --lr") and "Traceback" not in result.stderr


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux not installed")
@pytest.mark.slow  # a real process
def test_tmux_smoke(tmp_path):
    """A real terminal: charts move, space pauses, q asks, y quits and restores the screen."""
    session = f"tuitrain-test-{os.getpid()}"
    marker = tmp_path / "exit"
    command = f"{sys.executable} -m tuitrain train rings; echo $? > {marker}"
    env_prefix = "TERM=xterm-256color "
    subprocess.run(
        ["tmux", "new-session", "-d", "-s", session, "-x", "100", "-y", "30", env_prefix + command], check=True
    )

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
    from tuitrain.tui.series import Series

    series = Series(limit=100)
    for i in range(10_000):
        series.add(i, 1.0)
    assert len(series) <= 100
    assert series.x == sorted(series.x) and series.x[-1] == 9999
    assert all(abs(v - 1.0) < 1e-9 for v in series.smoothed(0.9))  # bias-corrected EMA of a constant
    series.add(10_000, float("nan"))  # non-finite points are dropped, not drawn
    assert series.x[-1] == 9999


def test_events_round_trip_through_json_lines():
    from tuitrain.events import EpochEnded, Metrics, RunEnded

    epoch = EpochEnded(3, 33, Metrics(0.5, 0.8), Metrics(0.6, 0.75), 0.01, 1.0, 1000.0, 3.0)
    assert event_from_dict(event_to_dict(epoch)) == epoch
    end = RunEnded("completed", 3, 33, None, 3.0, 1000.0)
    assert event_from_dict(event_to_dict(end)) == end
    assert event_from_dict({"event": "something-new"}) is None


async def test_watch_run_directory(tmp_path):
    from tuitrain.runs.start import new_run

    trainer, writer = new_run(resolve_config("rings", epochs=3), tmp_path)
    trainer.run()
    app = make_app(WatchedRun(str(writer.run_dir)))
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


@pytest.mark.slow  # a real process
async def test_an_internal_error_saves_the_run_and_logs_the_traceback(monkeypatch):
    from tuitrain.tui.widgets.charts import LossChart

    def broken(self, *args, **kwargs):
        raise ValueError("math domain error")

    app, source, _ = live_app("rings", "child-process", epochs=100_000)
    with pytest.raises(ValueError):
        async with app.run_test(size=(100, 30)) as pilot:
            dash = app.screen
            await until(pilot, lambda: dash.history.step > 0 and source.controls.run_dir, what="training")
            monkeypatch.setattr(LossChart, "draw", broken)
            await pilot.press("l")
            await until(pilot, lambda: not app.is_running, what="the app to stop")
    assert app.return_code == 1
    run_dir = Path(source.controls.run_dir)
    assert app.crash.startswith("tuitrain stopped on an internal error (ValueError: math domain error)")
    assert str(run_dir / "crash.log") in app.crash and "\n" not in app.crash
    assert "Traceback" in (run_dir / "crash.log").read_text()
    assert source.wait(TIMEOUT)
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "interrupted"


async def test_help_lists_every_key_and_scrolls_at_80x24():
    from tuitrain.tui.screens.dialogs import HelpScreen

    app, source, _ = live_app("rings", epochs=100_000)
    async with app.run_test(size=(80, 24)) as pilot:
        dash = app.screen
        await until(pilot, lambda: dash.history.step > 0, what="training")
        await pilot.press("space")  # paused: a training thread in this process slows every redraw (GIL)
        await until(pilot, lambda: dash.history.state == "paused", what="paused")
        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen), what="help")
        await pilot.pause()
        text = screen_text(app)
        for keys, _ in Dashboard.key_rows()[:12]:  # the first screenful
            assert f" {keys} " in text, keys
        dialog = app.screen.query_one("#dialog")
        assert dialog.max_scroll_y > 0  # more keys than fit: it scrolls
        await pilot.press("end")
        await pilot.pause()
        assert "ctrl+q" in screen_text(app)
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is dash, what="closed")
        source.controls.stop()


def test_readme_key_table_is_the_bindings():
    from tuitrain.tui.screens.dialogs import keys_markdown

    table = keys_markdown(Dashboard.key_rows())
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    assert table in readme, f"README's key table drifted from the bindings; it should read:\n{table}"


async def test_command_palette_sets_a_typed_learning_rate_and_opens_a_tensor():
    from textual.command import CommandPalette

    app, source, _ = live_app("rings", epochs=100_000)
    async with app.run_test(size=(100, 30)) as pilot:
        dash = app.screen
        await until(pilot, lambda: dash.history.state == "running", what="running")
        # paused: typing into the palette beside a training thread in this process took 100 s on 2 cores
        await pilot.press("space")
        await until(pilot, lambda: dash.history.state == "paused", what="paused")
        await pilot.press("ctrl+p")
        await until(pilot, lambda: isinstance(app.screen, CommandPalette), what="palette")
        await pilot.press(*"lr 0.0625")
        await until(pilot, lambda: "Set learning rate to 0.0625" in screen_text(app), what="the typed command")
        await pilot.press("enter")
        await until(pilot, lambda: abs(dash.history.lr - 0.0625) < 1e-12, what="lr applied by the engine")
        await pilot.press("2")
        await until(pilot, lambda: dash.history.inspection is not None, what="parameters")
        await pilot.press("ctrl+p")
        await until(pilot, lambda: isinstance(app.screen, CommandPalette), what="palette")
        await pilot.press(*"open tensor layers.3.weight")
        await until(pilot, lambda: "Open tensor layers.3.weight" in screen_text(app), what="the tensor command")
        await pilot.press("enter")
        detail = dash.query_one(ParamDetail)
        await until(pilot, lambda: detail.display, what="drill-down")
        assert detail.param_name == "layers.3.weight"
        await pilot.press("escape")
        await pilot.press("ctrl+p")
        await until(pilot, lambda: isinstance(app.screen, CommandPalette), what="palette")
        await pilot.press(*"lr abc")
        await pilot.pause(0.3)
        assert "Set learning rate" not in screen_text(app)  # nothing to set from text that is not a number
        await pilot.press("escape")
        source.controls.stop()


@pytest.mark.parametrize("mode", MODES)
async def test_a_diverged_run_recovers_from_its_last_good_checkpoint(mode):
    app, source, _ = live_app("square", mode, lr=100.0, epochs=50)
    async with app.run_test(size=(100, 30)) as pilot:
        dash = app.screen
        await until(pilot, lambda: dash.history.state == "diverged", what="divergence")
        first = source.controls.run_dir
        await pilot.press("l")  # log-y on a diverged run's charts (a crash once)
        await pilot.resize_terminal(70, 22)
        await pilot.press("R")
        await until(
            pilot,
            lambda: (
                dash.history.state in ("running", "diverged", "completed")
                and source.controls.run_dir == first
                and dash.history.lr == 50.0
            ),
            what="resumed at half the rate",
        )
        assert source.controls.run_dir == first  # the same run goes on, from its checkpoint
        await until(pilot, lambda: dash.history.ended, what="the recovered run's end")


@pytest.mark.slow  # a real process
async def test_watch_says_crashed_when_the_training_process_was_killed(tmp_path):
    from helpers import start_tuitrain as tuitrain
    from helpers import wait_for_step

    (tmp_path / "long.toml").write_text(
        'name = "long"\n[model]\nkind = "mlp"\nhidden = [16]\n[data]\n'
        'dataset = "rings"\nsamples = 2000\n[train]\nepochs = 1000000\n'
    )
    proc = tuitrain("run", "long.toml", "--out", "out", cwd=tmp_path)
    try:
        run_dir = wait_for_step(tmp_path / "out")
    finally:
        proc.kill()
        proc.communicate(timeout=30)
    app = make_app(WatchedRun(str(run_dir)))
    async with app.run_test(size=(100, 30)) as pilot:
        dash = app.screen
        await until(pilot, lambda: dash.history.state == "crashed", what="crashed, not RUNNING forever")
        assert "--resume" in dash.history.message
        assert "crashed" in screen_text(app).lower()
        await pilot.press("q")


async def test_palette_exports_the_epochs_as_csv():
    import csv

    from textual.command import CommandPalette

    app, source, _ = live_app("rings", epochs=3)
    async with app.run_test(size=(100, 30)) as pilot:
        dash = app.screen
        await until(pilot, lambda: dash.history.ended, what="run end")
        await pilot.press("ctrl+p")
        await until(pilot, lambda: isinstance(app.screen, CommandPalette), what="palette")
        await pilot.press(*"export")
        await until(pilot, lambda: "Export the epochs as CSV" in screen_text(app), what="the export command")
        await pilot.press("enter")
        path = Path(source.controls.run_dir) / "epochs.csv"
        await until(pilot, path.exists, what="epochs.csv")
    rows = list(csv.DictReader(path.open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    summary = json.loads((path.parent / "summary.json").read_text())
    assert float(rows[-1]["valid_accuracy"]) == summary["last_valid"]["accuracy"]
