"""The layer health board: what the recorder probes, the verdicts, `tuitrain health`, and the widget."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import run_cli
from torch import nn

from tuitrain.events import HistoryRecord, TensorRecord
from tuitrain.store.health import (
    DEAD_LIMIT,
    EXPLODING,
    NONFINITE,
    OK,
    SATURATED,
    TOO_LARGE,
    TOO_SMALL,
    VANISHING,
    layer_health,
    run_health,
    sparkline,
    verdict,
)
from tuitrain.store.histories import (
    BINS,
    ActivationRecord,
    ProbedHistoryRecord,
    nonfinite_of,
    read_histories,
    record_from_json,
    record_to_json,
)
from tuitrain.training.recorder import Recorder

KEYS = {"name", "grad_norm", "update_ratio", "dead_fraction", "saturated_fraction", "nonfinite", "verdict"}


def rings_run(folder: Path, epochs: int, **overrides: object) -> Path:
    from tuitrain.config import apply_overrides, load_preset
    from tuitrain.runs import start as session

    trainer, writer = session.new_run(apply_overrides(load_preset("rings"), epochs=epochs, **overrides), folder)
    trainer.run()
    writer.close()
    return Path(writer.run_dir)


def board(run_dir: Path, *args: str) -> dict:
    result = run_cli("health", str(run_dir), "--json", *args)
    assert result.code == 0, result.err
    data = json.loads(result.out)
    assert isinstance(data, dict)
    return data


# ----------------------------------------------------------------------------- known answers from training


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """The rings preset (seed 0) for 10 epochs: as it is, and with Adam at lr 1.0, where most ReLUs die."""
    folder = tmp_path_factory.mktemp("runs")
    return rings_run(folder, 10), rings_run(folder, 10, optimizer="adam", lr=1.0)


def test_adam_at_lr_1_kills_the_relus_and_the_board_says_so(two_runs):
    healthy, sick = two_runs
    sick_board = board(sick)
    verdicts = {layer["name"]: layer["verdict"] for layer in sick_board["layers"]}
    assert verdicts["layers.1"].startswith("dead units ") and verdicts["layers.3"].startswith("dead units ")
    dead = [layer for layer in sick_board["layers"] if layer["verdict"].startswith("dead units")]
    assert sick_board["layers"][: len(dead)] == dead  # worst first
    for layer in dead:
        assert layer["dead_fraction"] >= DEAD_LIMIT
        assert layer["verdict"] == f"dead units {layer['dead_fraction']:.0%}"
    healthy_board = board(healthy)
    assert {layer["name"] for layer in healthy_board["layers"]} == {"layers.1", "layers.3", "layers.5"}
    for layer in healthy_board["layers"]:
        assert not layer["verdict"].startswith("dead units")
        assert layer["dead_fraction"] is None or layer["dead_fraction"] < DEAD_LIMIT
    assert healthy_board["step"] == sick_board["step"] == read_histories(healthy / "histories.jsonl")[-1].step


def test_json_shape_and_step(two_runs):
    healthy, _ = two_runs
    records = read_histories(healthy / "histories.jsonl")
    data = board(healthy)
    assert set(data) == {"step", "layers"} and data["step"] == records[-1].step
    for layer in data["layers"]:
        assert set(layer) >= KEYS
        assert isinstance(layer["nonfinite"], int) and layer["nonfinite"] == 0
        assert layer["saturated_fraction"] is None  # ReLU network
        assert isinstance(layer["verdict"], str) and layer["verdict"]
    assert next(x for x in data["layers"] if x["name"] == "layers.5")["dead_fraction"] is None  # no ReLU after it
    assert len(records) >= 2, "records are paced by their cost: a loaded machine still takes two"
    middle = records[(len(records) - 1) // 2].step  # not the last: a step after it is still inside the records
    assert board(healthy, "--step", str(middle))["step"] == middle
    assert board(healthy, "--step", str(middle + 1))["step"] == middle  # the newest record at or before it
    table = run_cli("health", str(healthy))
    assert table.code == 0 and table.err == ""
    lines = table.out.splitlines()
    assert lines[0] == f"Layer health at step {records[-1].step} (worst first)"
    assert "verdict" in lines[2] and any(line.startswith("layers.1 ") for line in lines)


def test_recorded_activations(two_runs):
    _, sick = two_runs
    record = read_histories(sick / "histories.jsonl")[-1]
    assert isinstance(record, ProbedHistoryRecord) and record.probed
    assert set(record.activations) == {"layers.1", "layers.3"} == set(record.dead)
    for name, activation in record.activations.items():
        assert activation.kind == "relu" and activation.dead == pytest.approx(record.dead[name])
        assert activation.saturated is None and activation.mean >= 0 and activation.std >= 0
    assert nonfinite_of(record) == {}


# ----------------------------------------------------------------------------- the recorder's probe


def probe_model() -> nn.Sequential:
    """tanh after a unit that saturates and one that does not; ReLU after a live unit and a dead one."""
    model = nn.Sequential(nn.Linear(1, 2), nn.Tanh(), nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 1))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[100.0], [0.001]]))
        model[0].bias.zero_()
        model[2].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 0.0]]))
        model[2].bias.copy_(torch.tensor([0.0, -1.0]))
    return model


def test_probe_counts_saturated_and_dead_units_and_non_finite_values():
    model = probe_model()
    sample = torch.tensor([[1.0], [-1.0], [1.0], [-1.0]])
    record = Recorder(model, sample).record(0, 0)
    assert isinstance(record, ProbedHistoryRecord)
    tanh, relu = record.activations["0"], record.activations["2"]
    assert (tanh.kind, relu.kind) == ("tanh", "relu")
    assert tanh.saturated == 0.5 and tanh.dead is None  # unit 0 at +-1, unit 1 near 0
    assert relu.dead == 0.5 and relu.saturated is None and record.dead == {"2": 0.5}
    outputs = torch.tanh(model[0](sample))
    assert tanh.mean == pytest.approx(outputs.mean().item(), abs=1e-6)
    assert tanh.std == pytest.approx(outputs.std().item(), rel=1e-5)
    assert record.nonfinite == {} and tanh.nonfinite == relu.nonfinite == 0
    with torch.no_grad():
        model[2].weight[0, 0] = float("nan")
    record = Recorder(model, sample).record(1, 0)
    assert isinstance(record, ProbedHistoryRecord)
    assert record.nonfinite == {"2.weight": 1}
    assert record.activations["2"].nonfinite == 1  # units: unit 0 after the ReLU is NaN (for every sample)
    health = layer_health([record])
    assert health.layers[0].name == "2" and health.layers[0].verdict == "non-finite values"


def test_probed_record_round_trips_and_old_lines_still_read():
    tensors = [TensorRecord("a.weight", [1] * BINS, -1.0, 1.0, 0.0, 0.5, [2] * BINS, -0.1, 0.1, 0.3, 0.002)]
    activation = ActivationRecord("sigmoid", 0.5, 0.25, None, 0.125, 0)
    record = ProbedHistoryRecord(7, 1, tensors, {}, "history", {"a": activation}, {"a.weight": 3})
    line = record_to_json(record)
    data = json.loads(line)
    assert data["activations"] == {"a": {"kind": "sigmoid", "mean": 0.5, "std": 0.25, "saturated": 0.125}}
    assert data["nonfinite"] == {"a.weight": 3}
    assert record_from_json(data) == record
    # a line as tuitrain wrote it before activations were recorded (no "activations", no "nonfinite")
    del data["activations"], data["nonfinite"]
    data["dead"] = {"a": 0.75}
    old = record_from_json(data)
    assert old is not None and old.dead == {"a": 0.75} and nonfinite_of(old) is None
    health = layer_health([old])
    assert not health.probed and health.layers[0].verdict == "dead units 75%"
    assert health.layers[0].nonfinite == 0 and health.layers[0].saturated_fraction is None
    # a plain HistoryRecord (as events carry it) is written as before: no new keys
    plain = json.loads(record_to_json(HistoryRecord(7, 1, tensors, {"a": 0.5})))
    assert "activations" not in plain and "nonfinite" not in plain


def test_an_old_runs_histories_still_give_a_board(two_runs, tmp_path):
    import shutil

    _, sick = two_runs
    old = tmp_path / "old-run"
    shutil.copytree(sick, old)
    lines = (old / "histories.jsonl").read_bytes().splitlines()
    stripped = []
    for raw in lines:
        data = json.loads(raw)
        data.pop("activations"), data.pop("nonfinite")
        stripped.append(json.dumps(data))
    (old / "histories.jsonl").write_text("\n".join(stripped) + "\n")
    new, was = board(sick), board(old)
    assert [x["name"] for x in was["layers"]] == [x["name"] for x in new["layers"]]
    assert [x["verdict"] for x in was["layers"]] == [x["verdict"] for x in new["layers"]]
    assert all(x["activation_mean"] is None and x["saturated_fraction"] is None for x in was["layers"])
    table = run_cli("health", str(old)).out
    assert "recorded by an older tuitrain" in table


# ----------------------------------------------------------------------------- verdicts


def test_verdicts_by_threshold():
    assert verdict(1.0, [1.0], 1.0, 1e-3, None, None, 2)[:2] == (NONFINITE, "non-finite values")
    assert verdict(500.0, [1.0, 2.0], 500.0, 1e-3, None, None, 0)[0] == EXPLODING
    assert verdict(2e4, [], 2e4, 1e-3, None, None, 0)[0] == EXPLODING
    assert verdict(1.0, [1.0], 1.0, 1e-3, 0.63, None, 0)[:2] == (2, "dead units 63%")
    assert verdict(1.0, [1.0], 1.0, 1e-3, 0.39, None, 0)[0] == OK
    assert verdict(1.0, [1.0], 1.0, 1e-3, None, 0.8, 0)[:2] == (SATURATED, "saturated 80%")
    assert verdict(1e-5, [1e-5], 1.0, 1e-3, None, None, 0)[:2] == (VANISHING, "vanishing gradient")
    assert verdict(1e-9, [], None, 1e-3, None, None, 0)[0] == VANISHING
    assert verdict(1.0, [1.0], 1.0, 0.05, None, None, 0)[:2] == (TOO_LARGE, "updates too large")
    assert verdict(1.0, [1.0], 1.0, 1e-5, None, None, 0)[:2] == (TOO_SMALL, "updates too small")
    assert verdict(1.0, [1.0], 1.0, None, None, None, 0)[:2] == (OK, "ok")


def tensor(name: str, grad: float | None, ratio: float | None) -> TensorRecord:
    return TensorRecord(name, [0] * BINS, 0.0, 0.0, 0.0, 0.0, None, 0.0, 0.0, grad, ratio)


def fake_records() -> list[HistoryRecord]:
    """Three layers: a healthy one, one whose updates are too large, one with dead units."""
    records = []
    for step in (0, 10, 20, 30):
        tensors = [
            tensor("first.weight", 0.5, 1e-3),
            tensor("first.bias", 0.1, 1e-3),
            tensor("middle.weight", 0.4, 0.05),
            tensor("last.weight", 0.3, 2e-3),
        ]
        records.append(HistoryRecord(step, 1, tensors, {"first": 0.1, "last": 0.9}))
    return records


def test_layer_health_worst_first_and_series():
    health = layer_health(fake_records())
    assert [(x.name, x.verdict) for x in health.layers] == [
        ("last", "dead units 90%"),
        ("middle", "updates too large"),
        ("first", "ok"),
    ]
    first = health.layers[2]
    assert first.tensors == ["first.weight", "first.bias"] and first.steps == [0, 10, 20, 30]
    assert first.grad_norm == pytest.approx((0.5**2 + 0.1**2) ** 0.5)
    assert layer_health(fake_records(), step=15).step == 10
    with pytest.raises(LookupError):
        layer_health(fake_records()[1:], step=5)


def test_sparkline():
    assert sparkline([1.0, 10.0, 100.0]) == "▁▅█"
    assert sparkline([None, 2.0, 2.0]) == " ▁▁"
    assert sparkline([0.5, 1.0], log=False) == "▁█"
    assert sparkline(list(range(1, 40)), width=16) == sparkline(list(range(24, 40)), width=16)
    assert len(sparkline([float(i) for i in range(1, 40)], width=16)) == 16


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("case", ["missing", "not a run", "step before", "step after", "no histories"])
def test_bad_input_is_one_line_exit_2(case, tmp_path, two_runs):
    healthy, _ = two_runs
    args = {
        "missing": [str(tmp_path / "nowhere")],
        "not a run": [str(tmp_path)],
        "step before": [str(healthy), "--step", "0"],
        "step after": [str(healthy), "--step", "99999999"],
        "no histories": [str(tmp_path / "bare")],
    }[case]
    if case == "step before":  # the first record is at step 0: the board there is fine; make it start later
        import shutil

        shutil.copytree(healthy, tmp_path / "later")
        lines = (tmp_path / "later" / "histories.jsonl").read_text().splitlines()
        (tmp_path / "later" / "histories.jsonl").write_text("\n".join(lines[1:]) + "\n")
        args[0] = str(tmp_path / "later")
    if case == "no histories":
        (tmp_path / "bare").mkdir()
        (tmp_path / "bare" / "config.toml").write_text((healthy / "config.toml").read_text())
    result = run_cli("health", *args)
    assert result.code == 2 and result.out == ""
    assert result.err.startswith("Error: ") and result.err.count("\n") == 1 and "Traceback" not in result.err


def test_run_health_in_process(two_runs):
    healthy, _ = two_runs
    assert run_health(healthy).layers and run_health(healthy, 0).step == 0


# ----------------------------------------------------------------------------- the widget


async def test_board_shows_worst_first_sorts_and_posts_layer_chosen(monkeypatch):
    from textual.app import App, ComposeResult

    from tuitrain.tui.widgets.health import HealthBoard

    chosen: list[tuple[str, list[str]]] = []

    class BoardApp(App[None]):
        def compose(self) -> ComposeResult:
            yield HealthBoard()

        def on_health_board_layer_chosen(self, message: HealthBoard.LayerChosen) -> None:
            chosen.append((message.name, message.tensors))

    app = BoardApp()
    async with app.run_test(size=(140, 12)) as pilot:
        table = app.query_one(HealthBoard)
        table.show(layer_health(fake_records()))
        await pilot.pause()

        def names() -> list[str]:
            return [str(table.get_row_at(i)[0]) for i in range(table.row_count)]

        assert names() == ["last", "middle", "first"]
        row = table.get_row_at(1)
        assert str(row[4]).endswith(" high") and str(row[1]) == "updates too large"  # in words, not only colour
        assert str(row[3]) == "▁▁▁▁"  # a flat gradient-norm series
        table.focus()
        await pilot.press("enter")
        await pilot.pause()
        assert chosen == [("last", ["last.weight"])]
        table.sort_by("layer")
        assert names() == ["first", "middle", "last"]  # network order
        await pilot.press("w")
        assert names() == ["last", "middle", "first"]
        await pilot.press("down", "enter")
        await pilot.pause()
        assert chosen[-1][0] == "middle"
        table.show(layer_health(fake_records(), step=10))  # same layers: rows kept, cursor stays on its layer
        await pilot.pause()
        assert names() == ["last", "middle", "first"] and table.cursor_row == 1


async def test_board_without_colour_says_everything_in_words(monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    from textual.app import App, ComposeResult

    from tuitrain.tui.widgets.health import HealthBoard

    class BoardApp(App[None]):
        def compose(self) -> ComposeResult:
            yield HealthBoard()

    app = BoardApp()
    async with app.run_test(size=(140, 12)) as pilot:
        table = app.query_one(HealthBoard)
        table.show(layer_health(fake_records()))
        await pilot.pause()
        assert app.no_color
        row = table.get_row_at(1)
        assert str(row[4]).endswith(" high") and not row[4].spans and str(row[1]) == "updates too large"


async def test_the_parameters_panel_opens_on_the_board_and_enter_drills_into_the_layer():
    """The dashboard's Parameters panel: one row per layer above the tensors, focused, and Enter opens
    the chosen layer's weight in the drill-down (the board follows the recorded histories)."""
    from helpers import live_app, until

    from tuitrain.tui.widgets.health import HealthBoard
    from tuitrain.tui.widgets.param_detail import ParamDetail
    from tuitrain.tui.widgets.params import ParamTable

    app, _, _ = live_app("rings", epochs=20, seed=0, show_speed=False)
    async with app.run_test(size=(100, 30)) as pilot:
        dash = app.screen
        await until(pilot, lambda: dash.history.ended, what="the run's end")
        await pilot.press("2")
        board = dash.query_one(HealthBoard)
        await until(pilot, lambda: board.row_count == 3, what="a row per layer")
        assert {str(key.value) for key in board.rows} == {"layers.1", "layers.3", "layers.5"}
        assert app.focused is board and dash.query_one(ParamTable).display
        first = str(board.coordinate_to_cell_key(board.cursor_coordinate).row_key.value)
        await pilot.press("enter")
        detail = dash.query_one(ParamDetail)
        await until(pilot, lambda: detail.display, what="the drill-down")
        assert detail.param_name == f"{first}.weight" and not board.display
        await pilot.press("escape")
        await until(pilot, lambda: board.display and app.focused is board, what="back on the board")


async def test_charts_stay_shown_after_the_focused_board_updates():
    """`1` from the Parameters panel, its health board focused: the board's next updates (while the run
    trains) must not pull the hidden panel back into view (the dashboard fuzz found it)."""
    from helpers import live_app, until
    from textual.widgets import TabbedContent

    from tuitrain.tui.widgets.health import HealthBoard

    app, source, _ = live_app("rings", epochs=100_000, seed=0, show_speed=False)
    async with app.run_test(size=(100, 30)) as pilot:
        dash = app.screen
        await until(pilot, lambda: dash.history.state == "running" and dash.history.step > 0, what="running")
        await pilot.press("2")
        board = dash.query_one(HealthBoard)
        await until(pilot, lambda: board.row_count == 3 and app.focused is board, what="the focused board")
        await pilot.press("1")
        histories = dash.history.histories
        seen = histories.version
        await until(pilot, lambda: histories.version >= seen + 3, what="three more recorded histories")
        await pilot.pause()
        assert dash.query_one("#panels", TabbedContent).active == "charts"
        source.controls.stop()
