"""Pilot tests of the runs screen, the comparison view, dashboard overlays and branches."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest
from helpers import InProcess, screen_text, until
from textual.widgets import DataTable, Input, SelectionList, Static

from tuitrain.config import resolve_config
from tuitrain.runs import start as session
from tuitrain.store.run_dir import BranchSpec
from tuitrain.tui.app import make_app
from tuitrain.tui.screens.branch import BranchDialog, OpenBranch
from tuitrain.tui.screens.comparison import ComparisonScreen
from tuitrain.tui.screens.dashboard import Dashboard
from tuitrain.tui.screens.overlays import RunPicker
from tuitrain.tui.screens.runs import RunsScreen
from tuitrain.tui.source import LiveRun

TINY = str(Path(__file__).parent / "data" / "tiny_rings.toml")


def tiny(**overrides):
    return resolve_config(TINY, device="cpu", **overrides)


@pytest.fixture(scope="module")
def three_runs(tmp_path_factory):
    """Three finished runs of the tiny preset at different learning rates (sgd: they differ clearly)."""
    out = tmp_path_factory.mktemp("runs")
    for lr in (0.5, 0.05, 0.005):
        trainer, _ = session.new_run(tiny(optimizer="sgd", lr=lr, epochs=3), out)
        trainer.run()
    return out


def listed(app) -> int:
    return app.screen.query_one(DataTable).row_count if isinstance(app.screen, RunsScreen) else -1


def table_rows(screen: RunsScreen) -> list[list[str]]:
    table = screen.query_one(DataTable)
    return [[str(cell) for cell in table.get_row_at(i)] for i in range(table.row_count)]


async def test_runs_screen_lists_and_sorts_the_runs(three_runs):
    app = make_app(runs_out=str(three_runs))
    async with app.run_test(size=(160, 30)) as pilot:
        await until(
            pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.query_one(DataTable).row_count == 3
        )
        screen = app.screen
        rows = table_rows(screen)
        assert {row[7] for row in rows} == {"0.5", "0.05", "0.005"}  # the lr column
        assert [row[2] for row in rows] == ["completed"] * 3
        newest = [row[1] for row in rows]
        await pilot.press("s")  # newest -> best valid
        await until(pilot, lambda: screen.sort_name == "best valid", what="sorted by best valid")
        best = [row[4] for row in table_rows(screen)]
        values = [float(b.split()[-1].rstrip("%")) for b in best]
        assert values == sorted(values, reverse=True) and len(newest) == 3
        await pilot.press("slash")
        await pilot.press(*"lr=0.05")
        await until(pilot, lambda: screen.query_one(DataTable).row_count == 1, what="filtered to one run")
        assert table_rows(screen)[0][7] == "0.05"
        assert "1 of 3" in str(screen.query_one("#runs-title", Static).render())


async def test_two_selected_runs_compare_with_what_differs_in_the_legend(three_runs):
    app = make_app(runs_out=str(three_runs))
    async with app.run_test(size=(120, 40)) as pilot:
        await until(
            pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.query_one(DataTable).row_count == 3
        )
        await pilot.press("space", "space", "c")
        await until(pilot, lambda: isinstance(app.screen, ComparisonScreen), what="the comparison")
        screen = app.screen
        await until(pilot, lambda: all(r.record is not None and r.curves.epochs for r in screen.runs), what="curves")
        assert len(screen.runs) == 2
        legend = str(screen.query_one("#compare-legend", Static).render())
        shown = [line.split()[1] for line in legend.splitlines()]
        assert len(shown) == 2 and all(name.startswith("lr=") for name in shown)  # named by the differing key
        assert "train.lr" in str(screen.query_one("#compare-diff", Static).render())
        loss, valid = screen.query_one("#compare-loss").chart, screen.query_one("#compare-valid").chart
        assert len(loss.lines) == 2 and len(valid.lines) == 2
        assert {line.marker for line in valid.lines} == {"•", "+"} and all(len(line.x) == 3 for line in valid.lines)
        await pilot.press("x")  # step -> epoch
        assert screen.query_one("#compare-valid").chart.xlabel == "epoch"
        text = screen_text(app)
        assert "valid accuracy %" in text and "lr=" in text
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, RunsScreen), what="back to the runs")


async def test_a_live_runs_curve_grows_in_the_comparison(tmp_path):
    trainer, writer = session.new_run(tiny(epochs=100_000), tmp_path)
    thread = threading.Thread(target=trainer.run, daemon=True)
    thread.start()
    app = make_app(compare_dirs=[str(writer.run_dir)])
    try:
        async with app.run_test(size=(100, 30)) as pilot:
            await until(pilot, lambda: isinstance(app.screen, ComparisonScreen))
            screen = app.screen
            await until(pilot, lambda: len(screen.runs[0].curves.epochs) >= 1, what="a first epoch")
            first = len(screen.runs[0].curves.epochs)
            await until(pilot, lambda: len(screen.runs[0].curves.epochs) > first + 2, what="more epochs")
            await until(pilot, lambda: len(screen.query_one("#compare-valid").chart.lines[0].x) > first)
            assert "training" in str(screen.query_one("#compare-title", Static).render())
    finally:
        trainer.stop("interrupted")
        thread.join(30)


async def test_the_dashboard_overlays_earlier_runs_on_its_charts(three_runs, tmp_path):
    out = tmp_path / "runs"
    shutil.copytree(three_runs, out)  # this run joins them: the other tests keep their three
    source = LiveRun(tiny(epochs=2), out_dir=str(out), factory=InProcess())
    app = make_app(source)
    async with app.run_test(size=(120, 36)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, Dashboard) and app.screen.history.ended, what="run end")
        dashboard = app.screen
        before = len(dashboard.query_one("#loss-chart").chart.lines)
        await pilot.press("o")
        await until(pilot, lambda: isinstance(app.screen, RunPicker), what="the picker")
        assert app.screen.query_one(SelectionList).option_count == 3  # the others, not this run
        await pilot.press("space", "enter")
        await until(pilot, lambda: app.screen is dashboard and dashboard.overlays and dashboard.overlays[0].record)
        await until(pilot, lambda: len(dashboard.query_one("#loss-chart").chart.lines) == before + 1)
        legend = str(dashboard.query_one("#overlay-legend", Static).render())
        assert "completed 3/3" in legend and "optimizer=" not in legend
        assert "sgd" in legend  # this run is adam: the overlaid one is named by what differs


async def test_branch_from_the_runs_screen_and_its_charts_continue_the_parent(three_runs, tmp_path):
    messages = []
    out = tmp_path / "runs"
    shutil.copytree(three_runs, out)  # the branch goes beside its parent: the other tests keep their three
    app = make_app(runs_out=str(out))
    async with app.run_test(size=(120, 36), message_hook=messages.append) as pilot:
        await until(
            pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.query_one(DataTable).row_count == 3
        )
        parent = app.screen.cursor_record()
        await pilot.press("b")
        await until(pilot, lambda: isinstance(app.screen, BranchDialog), what="the branch dialog")
        app.screen.query_one("#branch-epochs", Input).value = "2"  # not more than the 3 done
        await pilot.click("#branch-start")
        assert "ask for more" in str(app.screen.query_one("#branch-error", Static).render())
        app.screen.query_one("#branch-epochs", Input).value = "5"
        app.screen.query_one("#branch-lr", Input).value = "0.1"
        await pilot.press("escape")  # cancelled: nothing starts
        assert not [m for m in messages if isinstance(m, OpenBranch)]
        await pilot.press("b")
        await until(pilot, lambda: isinstance(app.screen, BranchDialog))
        app.screen.query_one("#branch-epochs", Input).value = "5"
        app.screen.query_one("#branch-lr", Input).value = "0.1"
        spec = app.screen.spec()
    assert spec == BranchSpec(parent.run_dir, "last", {"lr": 0.1, "epochs": 5, "optimizer": "sgd"})
    # the dashboard the app opens for it (in-process here): inherited epochs first, then its own
    source = LiveRun(spec.config(), out_dir=str(out), factory=InProcess(), branch=spec)
    app = make_app(source)
    async with app.run_test(size=(120, 36)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, Dashboard) and app.screen.history.ended, what="branch end")
        history = app.screen.history
        assert history.epoch_valid.x == [1.0, 2.0, 3.0, 4.0, 5.0] and history.state == "completed"
        assert history.lr == pytest.approx(0.1)
    assert sorted(p.name.endswith("-branch") for p in out.iterdir()) == [False, False, False, True]  # beside its parent
