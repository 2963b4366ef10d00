"""Dialogs and the setup screen as a new user meets them: the parameter table while paused, the branch
dialog's learning rate, the overlay picker's checkboxes, the setup screen's focus, csv and way back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import InProcess, until
from textual.widgets import Input

from tuitrain.config import resolve_config
from tuitrain.runs import start as session
from tuitrain.tui.app import make_app
from tuitrain.tui.screens.branch import BranchDialog, ended_lr
from tuitrain.tui.screens.dashboard import Dashboard
from tuitrain.tui.screens.overlays import Checklist, RunPicker
from tuitrain.tui.source import LiveRun
from tuitrain.tui.widgets.params import ParamTable

TINY = str(Path(__file__).parent / "data" / "tiny_rings.toml")


def tiny(**overrides):
    return resolve_config(TINY, device="cpu", **overrides)


def live(out: Path | None = None, **overrides):
    source = LiveRun(tiny(**overrides), out_dir=str(out or "runs"), factory=InProcess())
    return make_app(source, show_speed=False), source


def update_cells(table: ParamTable) -> list[str]:
    return [str(table.get_cell(key.value, "update/weight")) for key in table.rows]


# ---------------------------------------------------------------- update/weight while paused and after the end
async def test_update_per_weight_keeps_its_last_measured_value_while_paused_after_a_step_and_after_the_end():
    app, source = live(epochs=100_000)
    async with app.run_test(size=(100, 30)) as pilot:
        dash = app.screen
        await until(pilot, lambda: dash.history.state == "running" and dash.history.step > 0, what="running")
        await pilot.press("2")
        table = dash.query_one(ParamTable)
        await until(pilot, lambda: table.row_count and "-" not in update_cells(table), what="measured update")

        def looked_now() -> bool:
            ins = dash.history.inspection
            return ins is not None and ins.step == dash.history.step and dash.history.state == "paused"

        await pilot.press("space")
        await until(pilot, looked_now, what="an inspection while paused")
        cells = update_cells(table)
        assert "-" not in cells and all("@" in c for c in cells), cells  # as of the step it was measured at
        before = dash.history.step
        await pilot.press("n")
        await until(pilot, lambda: dash.history.step == before + 1 and looked_now(), what="a single step looked at")
        cells = update_cells(table)
        assert "-" not in cells and all("@" in c for c in cells), cells
        await pilot.press("s")
        await until(
            pilot,
            lambda: (
                dash.history.ended
                and dash.history.inspection is not None
                and dash.history.inspection.step == dash.history.step
            ),
            what="the final inspection",
        )
        assert "-" not in update_cells(table)


def test_a_measured_update_is_not_kept_across_a_restart():
    from types import SimpleNamespace

    table = ParamTable()
    p = SimpleNamespace(name="w", shape=(2,), count=2, mean=0.0, std=0.0, min=0.0, max=0.0, grad_norm=None)
    assert str(table.update_cell_of(SimpleNamespace(**vars(p), update_ratio=0.25), 40, None)) == "0.25"
    assert str(table.update_cell_of(SimpleNamespace(**vars(p), update_ratio=None), 41, None)) == "0.25 @40"
    assert str(table.update_cell_of(SimpleNamespace(**vars(p), update_ratio=None), 12, None)) == "-"  # a new run


# ---------------------------------------------------------------- the branch dialog's learning rate
def test_ended_lr_reads_the_last_learning_rate_from_the_end_of_the_metrics(tmp_path):
    lines = [{"event": "start", "lr": 9.0}, {"event": "step", "lr": 0.05}, {"event": "state", "lr": 0.00625}]
    lines += [{"event": "end", "status": "interrupted"}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(e) + "\n" for e in lines) + '{"event": "ste')
    assert ended_lr(str(tmp_path)) == 0.00625
    assert ended_lr(str(tmp_path / "missing")) is None


async def test_the_branch_dialog_offers_the_learning_rate_the_run_ended_with(tmp_path):
    app, source = live(tmp_path, epochs=100_000, lr=0.05)
    async with app.run_test(size=(100, 30)) as pilot:
        dash = app.screen
        await until(pilot, lambda: dash.history.state == "running" and dash.history.step > 0, what="running")
        for lr in (0.025, 0.0125, 0.00625):
            await pilot.press("minus")
            await until(pilot, lambda lr=lr: abs(dash.history.lr - lr) < 1e-12, what=f"lr {lr}")
        await pilot.press("s")
        run_dir = Path(source.controls.run_dir)
        await until(
            pilot,
            lambda: (
                dash.history.ended and json.loads((run_dir / "summary.json").read_text())["status"] == "interrupted"
            ),
            what="stopped and saved",
        )
        await pilot.press("b")
        await until(pilot, lambda: isinstance(app.screen, BranchDialog), what="the branch dialog")
        assert app.screen.query_one("#branch-lr", Input).value == "0.00625"  # not the starting 0.05
        assert app.screen.spec().changes["lr"] == pytest.approx(0.00625)


# ---------------------------------------------------------------- the overlay picker
@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    for lr in (0.5, 0.05):
        trainer, _ = session.new_run(tiny(optimizer="sgd", lr=lr, epochs=1), out)
        trainer.run()
    return out


async def test_the_overlay_picker_checks_only_the_chosen_runs(two_runs):
    runs = sorted(str(p) for p in two_runs.iterdir())
    app = make_app(runs_out=str(two_runs))
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        app.push_screen(RunPicker(str(two_runs), None, [runs[0]]))
        await until(pilot, lambda: isinstance(app.screen, RunPicker) and app.screen.query(Checklist), what="picker")
        picker = app.screen.query_one(Checklist)
        await until(pilot, lambda: picker.option_count == 2, what="two runs")
        await pilot.pause()
        lines = {picker.get_option_at_index(i).value: picker.render_line(i).text for i in range(2)}
        assert lines[runs[0]].startswith("▐X▌"), lines
        assert lines[runs[1]].startswith("▐ ▌"), lines
        await pilot.press("space")  # the highlighted (first) row toggles, and its box with it
        await pilot.pause()
        first = picker.get_option_at_index(0).value
        assert picker.render_line(0).text.startswith("▐X▌" if first in picker.selected else "▐ ▌")


async def test_enter_without_a_checked_run_overlays_the_highlighted_one(two_runs, tmp_path):
    import shutil

    out = tmp_path / "runs"
    shutil.copytree(two_runs, out)
    app, _ = live(out, epochs=1)
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, Dashboard) and app.screen.history.ended, what="run end")
        dashboard = app.screen
        await pilot.press("o")
        await until(pilot, lambda: isinstance(app.screen, RunPicker) and app.screen.query(Checklist), what="picker")
        picker = app.screen.query_one(Checklist)
        await until(pilot, lambda: picker.option_count == 2 and picker.highlighted is not None, what="rows")
        highlighted = picker.get_option_at_index(picker.highlighted).value
        await pilot.press("enter")  # nothing checked: not silently nothing
        await until(pilot, lambda: app.screen is dashboard and dashboard.overlays, what="an overlay")
        assert [o.curves_dir for o in dashboard.overlays] == [highlighted]
        await pilot.press("o")
        await until(pilot, lambda: isinstance(app.screen, RunPicker), what="the picker again")
        await pilot.press("space", "enter")  # unchecking the overlaid run removes it, and says so
        await until(pilot, lambda: app.screen is dashboard and not dashboard.overlays, what="overlay removed")


# ---------------------------------------------------------------- the setup screen
async def open_setup(pilot, app):
    from tuitrain.tui.screens.setup import SetupScreen

    await until(pilot, lambda: isinstance(app.screen, SetupScreen) and app.screen.base is not None, what="setup")
    await pilot.pause()
    return app.screen


async def test_the_focused_field_stands_out_and_typing_replaces_the_selected_value():
    from textual.widgets import Label

    app = make_app(preset="rings")
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_setup(pilot, app)
        await pilot.press("enter", "tab")  # the preset chosen: Optimizer, then Learning rate
        lr = screen.query_one("#lr", Input)
        await until(pilot, lambda: app.focused is lr, what="learning rate focused")
        await pilot.pause()
        label = lr.parent.query_one(Label)
        other = screen.query_one("#epochs", Input).parent.query_one(Label)
        assert label.rich_style.reverse and label.rich_style.bold  # visible without colour too
        assert not other.rich_style.reverse
        assert lr.rich_style.bgcolor != screen.query_one("#epochs", Input).rich_style.bgcolor
        assert lr.selected_text == lr.value  # tabbed into: the value is selected ...
        assert lr.get_component_rich_style("input--selection").reverse  # ... and shows it
        await pilot.press("5")
        assert lr.value == "5"  # typing replaces the selection
        await pilot.press("end", "0")
        assert lr.value == "50"  # after End it appends
        await pilot.press("tab")
        await pilot.pause()
        assert not label.rich_style.reverse  # the mark follows the focus


def write_csv(path: Path, rows: int = 60) -> Path:
    path.write_text("x1,x2,label\n" + "".join(f"{i % 7 / 7:.3f},{i % 5 / 5:.3f},{i % 2}\n" for i in range(rows)))
    return path


async def test_the_csv_preset_and_its_data_file_are_on_the_setup_screen(tmp_path):
    from textual.widgets import Button, OptionList

    good = write_csv(tmp_path / "points.csv")
    short = write_csv(tmp_path / "short.csv", rows=5)
    app = make_app(preset="csv")
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_setup(pilot, app)
        assert "csv" in [str(o.prompt) for o in screen.query_one("#presets", OptionList).options]
        assert screen.preset == "csv"
        path = screen.query_one("#path", Input)
        assert screen.query_one("#path-cell").display and not screen.query_one("#data_dir-cell").display
        assert "needs a value" in str(screen.query_one("#path-error").render())
        assert screen.query_one("#start", Button).disabled
        path.value = str(tmp_path / "nothing.csv")
        await pilot.pause()
        assert "no data file" in str(screen.query_one("#path-error").render()) and path.has_class("-invalid")
        path.value = str(short)
        await pilot.pause()
        assert "at least" in str(screen.query_one("#path-error").render())  # the file's own problem
        path.value = str(good)
        await pilot.pause()
        assert not path.has_class("-invalid") and not screen.query_one("#start", Button).disabled
        assert "60 rows" in str(screen.query_one("#data-status").render())
        config = screen.resolved()
        assert (config.data.dataset, config.data.path) == ("csv", str(good))
        screen.query_one("#epochs", Input).value = "1"
        await pilot.pause()
        await pilot.press("ctrl+s")
        await until(pilot, lambda: isinstance(app.screen, Dashboard), what="dashboard")
        await until(pilot, lambda: app.screen.history.ended, what="the one epoch")
        assert app.screen.history.state == "completed"
        assert app.screen.source.config.data.path == str(good)


async def test_the_data_file_field_is_hidden_for_other_data_sets():
    app = make_app(preset="rings")
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_setup(pilot, app)
        assert not screen.query_one("#path-cell").display and screen.query_one("#data_dir-cell").display
        assert screen.resolved().data.path == ""


async def test_the_update_column_grows_to_show_a_measured_value_whole():
    from types import SimpleNamespace

    from textual.app import App

    class Table(App):
        def compose(self):
            yield ParamTable()

    def tensor(update_ratio):
        stats = dict(shape=(2,), count=2, mean=0.0, std=0.0, min=0.0, max=0.0, grad_norm=None)
        return SimpleNamespace(name="w", update_ratio=update_ratio, **stats)

    app = Table()
    async with app.run_test(size=(120, 10)) as pilot:
        table = app.query_one(ParamTable)
        table.show([tensor(8.07e-05)], step=123_456)
        await pilot.pause()
        table.show([tensor(None)], step=123_460)  # paused: the last measured value, as of its step
        await pilot.pause()
        (cell,) = update_cells(table)
        assert cell == "8.07e-05 @123456"
        assert table.columns["update/weight"].get_render_width(table) >= len(cell) + 2  # whole, with its padding


# ---------------------------------------------------------------- the way back to the setup screen


async def test_n_saves_a_training_run_then_goes_back_to_the_setup_screen_as_it_was(tmp_path, monkeypatch):
    from tuitrain.tui.screens.dialogs import Confirm

    monkeypatch.chdir(tmp_path)
    app = make_app(preset="neuron")
    async with app.run_test(size=(100, 30)) as pilot:
        setup = await open_setup(pilot, app)
        setup.query_one("#epochs", Input).value = "100000"
        await pilot.pause()
        await pilot.press("ctrl+s")
        await until(
            pilot, lambda: isinstance(app.screen, Dashboard) and app.screen.history.state == "running", what="training"
        )
        await pilot.press("N")
        await until(pilot, lambda: isinstance(app.screen, Confirm), what="the question")
        assert "go back to the setup screen" in app.screen.question
        await pilot.press("y")
        await until(pilot, lambda: app.screen is setup, what="the setup screen again")
        assert setup.query_one("#epochs", Input).value == "100000"  # the form as the user left it
        (summary,) = Path(setup.out_dir).resolve().glob("*/summary.json")
        assert json.loads(summary.read_text())["status"] == "interrupted"  # saved before leaving


async def test_n_on_a_finished_run_opens_the_setup_screen_without_asking(tmp_path):
    from tuitrain.tui.screens.setup import SetupScreen

    app, _ = live(tmp_path, epochs=1)
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, Dashboard) and app.screen.history.ended, what="the end")
        await pilot.press("N")
        await until(pilot, lambda: isinstance(app.screen, SetupScreen), what="the setup screen")
