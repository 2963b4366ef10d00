"""Every number agrees everywhere (issue 27): a crashed run counts to the checkpoint `--resume`
continues from, with the epochs after it shown as lost, in `runs`, `compare`, `eval`, the runs
screen, its comparison and `watch`; a resumed run's charts drop what the resume trained again;
`compare` says when runs of different tasks are ranked together; the quit question fits a paused run."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import TINY, run_cli, train_tiny
from helpers import live_app, screen_text, until

from tuitrain.events import EpochEnded, Metrics, RunEnded, RunStarted, StepProgress
from tuitrain.runs import compare
from tuitrain.tui.app import make_app
from tuitrain.tui.series import RunHistory
from tuitrain.tui.source import WatchedRun

LOST_ACCURACY = 0.9999  # the lost epochs' validation: better than anything the checkpoints hold


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_tiny(tmp_path_factory.mktemp("out"), epochs=3)


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def lines(run: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def fake_crash(finished: Path, where: Path) -> Path:
    """`finished` (3 epochs, last checkpoint at epoch 3) as if killed with -9 at epoch 5: epochs 4 and 5
    in metrics.jsonl (better than any before), no end event, and a summary.json its last heartbeat
    left ahead of the checkpoint (epoch 5, best epoch 5), "running" with a process that is gone."""
    run = Path(shutil.copytree(finished, where))
    events = [e for e in lines(run) if e["event"] != "end"]
    last = next(e for e in reversed(events) if e["event"] == "epoch")
    per_epoch = last["step"] // last["epoch"]
    for epoch in (4, 5):
        step = epoch * per_epoch
        events.append(
            {
                "event": "step",
                "epoch": epoch,
                "step": step - 1,
                "epoch_step": per_epoch - 1,
                "loss": 0.01,
                "accuracy": 1.0,
                "lr": 0.01,
                "samples_per_s": 1000.0,
                "seconds": 1.0 + epoch,
            }
        )
        valid = {"loss": 0.001, "accuracy": LOST_ACCURACY}
        events.append({**last, "epoch": epoch, "step": step, "valid": valid, "total_seconds": 1.0 + epoch})
    (run / "metrics.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    summary = json.loads((run / "summary.json").read_text())
    for key in ("test", "ended_at", "message", "samples_per_s"):
        summary.pop(key, None)
    summary.update(
        status="running",
        pid=dead_pid(),
        host=socket.gethostname(),
        epoch=5,
        step=5 * per_epoch,
        best={"epoch": 5, "step": 5 * per_epoch, "valid": {"loss": 0.001, "accuracy": LOST_ACCURACY}},
        last_valid={"loss": 0.001, "accuracy": LOST_ACCURACY},
    )
    (run / "summary.json").write_text(json.dumps(summary))
    return run


def resumable_best(finished: Path) -> dict[str, Any]:
    best = json.loads((finished / "summary.json").read_text())["best"]
    assert best["epoch"] <= 3 and best["valid"]["accuracy"] < LOST_ACCURACY
    return best


def test_runs_compare_and_eval_count_a_crashed_run_to_its_checkpoint(finished: Path, tmp_path: Path) -> None:
    run = fake_crash(finished, tmp_path / "out" / "crashed")
    best = resumable_best(finished)
    done = run_cli("runs", "--out", tmp_path / "out", "--json")
    assert done.code == 0, done.err
    row = json.loads(done.out.splitlines()[0])
    assert row["status"] == "crashed" and row["epoch"] == 3
    assert row["best"]["epoch"] == best["epoch"] and row["best"]["valid"] == best["valid"]
    assert row["lost"]["from"] == 4 and row["lost"]["to"] == 5
    done = run_cli("compare", run, finished, "--json")
    assert done.code == 0, done.err
    crashed = next(r for r in json.loads(done.out)["runs"] if r["status"] == "crashed")
    assert crashed["epoch"] == 3 and crashed["best"]["valid"] == best["valid"]
    table = run_cli("compare", run, finished)
    assert "3/3 (epochs 4-5 lost)" in table.out, table.out
    done = run_cli("eval", run, "--checkpoint", "best", "--json")
    assert done.code == 0, done.err
    assert json.loads(done.out)["epoch"] == best["epoch"]


async def test_watch_counts_a_crashed_run_as_runs_does(finished: Path, tmp_path: Path) -> None:
    run = fake_crash(finished, tmp_path / "crashed")
    app = make_app(WatchedRun(str(run)))
    async with app.run_test(size=(120, 30)) as pilot:
        dash = app.screen
        await until(pilot, lambda: dash.history.state == "crashed", what="crashed")
        assert dash.history.epochs_done == 3 and dash.history.lost_to == 5
        assert "continues from epoch 3" in dash.history.message and "epochs 4-5 are lost" in dash.history.message
        await pilot.pause()
        status = str(dash.query_one("StatusLine").render())
        assert "3/3" in status and "4-5 lost" in status, status
        await pilot.press("q")


async def test_the_runs_screen_and_its_comparison_count_a_crashed_run_as_runs_does(
    finished: Path, tmp_path: Path
) -> None:
    from tuitrain.fmt import fmt_score
    from tuitrain.tui.screens.comparison import ComparisonScreen
    from tuitrain.tui.screens.runs import RunsScreen

    run = fake_crash(finished, tmp_path / "out" / "crashed")
    best = resumable_best(finished)
    app = make_app(runs_out=str(tmp_path / "out"))
    async with app.run_test(size=(160, 30)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.shown, what="the runs")
        screen = app.screen
        row = screen.query_one("DataTable").get_row(str(run))
        assert "3/3 (epochs 4-5 lost)" in [str(cell) for cell in row]
        await pilot.press("c")
        await until(pilot, lambda: isinstance(app.screen, ComparisonScreen), what="the comparison")
        comparison = app.screen
        await until(
            pilot, lambda: comparison.runs[0].record is not None and comparison.runs[0].curves.epochs, what="curves"
        )
        await pilot.pause(0.2)
        legend = str(comparison.query_one("#compare-legend").render())
        assert f"crashed 3/3  best {fmt_score(best['valid'])}" in legend, legend
        notes = str(comparison.query_one("#compare-diff").render())
        assert "continues from epoch 3" in notes and "epochs 4-5 lost" in notes, notes


async def test_a_resumed_run_draws_only_the_epochs_it_kept(finished: Path, tmp_path: Path) -> None:
    run = fake_crash(finished, tmp_path / "crashed")
    done = run_cli("run", "--resume", run, "--epochs", "4")
    assert done.code == 0, done.err
    app = make_app(WatchedRun(str(run)))
    async with app.run_test(size=(120, 30)) as pilot:
        h = app.screen.history
        await until(pilot, lambda: h.state == "completed", what="the resumed run's end")
        assert h.epoch_valid.x == [1.0, 2.0, 3.0, 4.0]
        assert max(h.train_loss.x) <= h.step and max(h.valid_loss.x) == h.step
        assert LOST_ACCURACY not in h.epoch_valid.y
        await pilot.press("q")


def test_a_resume_start_drops_the_points_it_trains_again() -> None:
    h = RunHistory()
    metrics = Metrics(loss=1.0, accuracy=0.5)
    h.add(RunStarted("p", {}, "cpu", "binary", 10, 2, 2, 10, 20, 0, 100, "d"))
    for epoch in range(1, 7):
        h.add(StepProgress(epoch, epoch * 10 - 5, 5, 1.0, 0.5, 0.1, 100.0, float(epoch)))
        h.add(EpochEnded(epoch, epoch * 10, metrics, metrics, 0.1, 1.0, 100.0, float(epoch)))
    h.add(RunEnded("crashed", 4, 40, None, 6.0, 0.0, "gone"))
    assert h.lost_to == 6 and h.epochs_done == 4
    h.add(RunStarted("p", {}, "cpu", "binary", 10, 2, 2, 10, 20, 4, 100, "d"))
    assert h.lost_to == 0
    assert h.epoch_valid.x == [1.0, 2.0, 3.0, 4.0] and h.epoch_train.x == [1.0, 2.0, 3.0, 4.0]
    assert max(h.train_loss.x) <= 40 and max(h.valid_loss.x) == 40 and max(h.train_acc.x) <= 40


def test_compare_says_when_it_ranks_runs_of_different_tasks(finished: Path, tmp_path: Path) -> None:
    other = Path(shutil.copytree(finished, tmp_path / "other"))
    config = (other / "config.toml").read_text()
    assert "samples = 2000" in config
    (other / "config.toml").write_text(config.replace("samples = 2000", "samples = 3000"))
    table = run_cli("compare", finished, other)
    assert table.code == 0, table.err
    assert "data sets" in table.out and "not measured on the same task" in table.out
    report = json.loads(run_cli("compare", finished, other, "--json").out)
    assert "data sets" in report["note"]
    same = json.loads(run_cli("compare", finished, shutil.copytree(finished, tmp_path / "same"), "--json").out)
    assert same["note"] is None
    assert "note:" not in run_cli("compare", finished, tmp_path / "same").out
    records = compare.load_run_records([finished, finished])
    records[1].preset = "another"
    assert "presets" in (compare.mixed(records) or "")


async def test_the_quit_question_over_a_paused_run_says_paused() -> None:
    from tuitrain.tui.screens.dialogs import ConfirmQuit

    app, source, _ = live_app(TINY, epochs=100_000)
    async with app.run_test(size=(100, 30)) as pilot:
        dash = app.screen
        await until(pilot, lambda: dash.history.state == "running" and dash.history.step > 0, what="running")
        await pilot.press("space")
        await until(pilot, lambda: dash.history.state == "paused", what="paused")
        await pilot.press("q")
        await until(pilot, lambda: isinstance(app.screen, ConfirmQuit), what="confirmation")
        await pilot.pause()
        text = screen_text(app)
        assert "Training is paused" in text and "still running" not in text, text
        await pilot.press("y")
        await until(pilot, lambda: not app.is_running, what="the app to exit")


async def test_the_end_banner_names_the_keys_that_work_after_the_end(finished: Path) -> None:
    app, source, _ = live_app(TINY, epochs=2)
    async with app.run_test(size=(140, 30)) as pilot:
        dash = app.screen
        await until(pilot, lambda: dash.history.ended, what="the end")
        await pilot.pause()
        banner = str(dash.query_one("#banner").render())
        for keys in ("r: restart", "b: branch", "o: overlay", "v: runs", "q: quit"):
            assert keys in banner, banner
        await pilot.press("q")
    watched = make_app(WatchedRun(str(finished)))
    async with watched.run_test(size=(140, 30)) as pilot:
        dash = watched.screen
        await until(pilot, lambda: dash.history.ended, what="the end")
        await pilot.pause()
        banner = str(dash.query_one("#banner").render())
        assert "r: restart" not in banner and "b: branch" in banner and "v: runs" in banner, banner
        await pilot.press("q")
