"""The confusion matrix you can open: accuracy per class, confused pairs, per-sample data, cursor and cells."""

from __future__ import annotations

import pytest
import torch
from conftest import TINY  # 2,000 points, 15% of them test
from helpers import FASHION, live_app, open_predictions, screen_text

from tuitrain.config import resolve_config
from tuitrain.training import inspection
from tuitrain.tui.app import make_app
from tuitrain.tui.source import WatchedRun
from tuitrain.tui.widgets.confusion import ConfusionView, cell_at, confusion_text, layout


# ---------------------------------------------------------------- the core, against known answers
def test_class_accuracy_and_most_confused_pairs_of_a_hand_made_matrix():
    matrix = torch.tensor(
        [
            [8, 2, 0, 0],  # 8 of 10 right
            [1, 3, 0, 0],  # 3 of 4
            [0, 5, 5, 0],  # half
            [0, 0, 0, 0],  # no test samples of class 3
        ]
    )
    assert inspection.class_accuracy(matrix) == [0.8, 0.75, 0.5, None]
    assert inspection.confused_pairs(matrix, 5) == [(2, 1, 5), (0, 1, 2), (1, 0, 1)]
    assert inspection.confused_pairs(matrix, 2) == [(2, 1, 5), (0, 1, 2)]
    assert inspection.confused_pairs(torch.eye(3, dtype=torch.long) * 7) == []
    true = torch.tensor([0, 2, 2, 1, 2, 0])
    guess = torch.tensor([1, 1, 2, 0, 1, 1])
    assert inspection.cell_samples(true, guess, 2, 1).tolist() == [1, 4]
    assert inspection.cell_samples(true, guess, 0, 1).tolist() == [0, 5]
    assert inspection.cell_samples(true, guess, 3, 3).tolist() == []


def test_the_drawn_matrix_has_accuracy_a_cursor_and_clickable_cells():
    matrix = torch.tensor([[90, 10, 0], [5, 95, 0], [0, 0, 0]])
    names = ["ant", "bee", "cat"]
    text = confusion_text(matrix, names, 60, "none", cursor=(1, 0), accuracy=True)
    lines = text.plain.split("\n")
    assert lines[0].split() == ["ant", "bee", "cat", "acc"]
    assert lines[1].split() == ["ant", "90", "10", "0", "90%"]
    assert lines[2].split() == ["bee", ">5", "95", "0", "95%"]  # the cursor, marked without colour
    assert lines[3].split() == ["cat", "0", "0", "0", "–"]
    shape = layout(matrix, names, 60, accuracy=True)
    for row in range(3):
        for column in range(3):
            x = shape.row_width + column * (shape.column + 1) + shape.column  # the last digit of the count
            assert cell_at(matrix, names, 60, True, x, row + 1) == (row, column)
    assert cell_at(matrix, names, 60, True, 0, 1) is None  # the row name
    assert cell_at(matrix, names, 60, True, shape.row_width + 1, 0) is None  # the header


# ---------------------------------------------------------------- per-sample data come with the matrix
@pytest.fixture(scope="module")
def rings_trainer(tmp_path_factory):
    from tuitrain.runs.start import new_run

    trainer, writer = new_run(resolve_config(TINY, epochs=2), tmp_path_factory.mktemp("runs"))
    trainer.run()
    trainer.test_run_dir = writer.run_dir
    return trainer


def test_predictions_carry_what_opening_a_cell_needs(rings_trainer):
    model, data = rings_trainer.model, rings_trainer.data
    sample = inspection.sample_indices(data)
    pred = inspection.predictions(model, data, sample, epoch=7, step=70)
    with torch.no_grad():
        truth_guess = model(data.test.x).argmax(1)
    assert pred.confusion_predicted.tolist() == truth_guess.tolist()
    assert pred.confusion_true.tolist() == data.test.y.tolist()
    assert len(pred.confusion_confidence) == len(data.test)
    assert bool(((pred.confusion_confidence >= 1 / 3 - 1e-3) & (pred.confusion_confidence <= 1)).all())
    for row in range(3):
        for column in range(3):
            found = inspection.cell_samples(pred.confusion_true, pred.confusion_predicted, row, column)
            assert len(found) == pred.confusion[row, column].item()
    assert pred.confusion_inputs is not None and pred.confusion_inputs.shape == (len(data.test), 2)
    # the inputs travel once per new matrix; the per-sample classes with every look
    again = inspection.predictions(model, data, sample, epoch=7, step=75)
    assert again.confusion_inputs is None and again.confusion_predicted is not None
    # paused: a single step that moved the network recomputes it on demand, looking again does not
    paused = inspection.predictions(model, data, sample, epoch=7, step=76, paused=True)
    assert paused.confusion_step == 76 and paused.confusion_inputs is not None
    assert inspection.predictions(model, data, sample, epoch=7, step=76, paused=True).confusion_inputs is None


def test_image_thumbnails_are_small_and_stretched():
    x = torch.rand(5, 1, 28, 28) * 0.5 + 0.2
    data = type("D", (), {"is_image": True, "test": type("S", (), {"x": x})()})()
    small = inspection.small_inputs(data)
    assert small.shape == (5, 14, 14) and small.dtype == torch.uint8
    assert small.amin((1, 2)).tolist() == [0] * 5 and small.amax((1, 2)).tolist() == [255] * 5


# ---------------------------------------------------------------- the panel


async def test_cursor_moves_and_enter_opens_exactly_the_cells_points():
    app, _, factory = live_app(TINY)
    async with app.run_test(size=(100, 34)) as pilot:
        panel = await open_predictions(app, pilot)
        assert panel.cursor == (0, 0) and panel.cell is None
        await pilot.press("right", "right", "down")
        assert panel.cursor == (1, 2)
        await pilot.press("right", "up", "up")  # wraps around the edges
        assert panel.cursor == (2, 0)
        await pilot.press("left", "up")
        assert panel.cursor == (1, 2)
        await pilot.press("left")
        await pilot.press("enter")
        assert panel.cell == (1, 1)
        trainer = factory.trainer
        with torch.no_grad():
            guess = trainer.model(trainer.data.test.x).argmax(1)
        expected = torch.nonzero((trainer.data.test.y == 1) & (guess == 1)).reshape(-1).tolist()
        order, shown, pages = panel.cell_view()
        assert sorted(order) == expected and expected  # exactly that (true, predicted) pair
        assert len(shown) == min(len(expected), 24) and pages == -(-len(expected) // 24)
        confidence = panel.predictions.confusion_confidence.float()[order]
        assert confidence.tolist() == sorted(confidence.tolist(), reverse=True)  # surest first
        text = screen_text(app)
        assert f"{len(expected):,} test points" in text and "true middle, predicted middle" in text
        await pilot.press("escape")
        assert panel.cell is None
        assert "decision regions" in screen_text(app)


@pytest.mark.slow  # a real process
async def test_a_cell_of_images_opens_by_key_and_by_click_in_the_child_process(tmp_path):
    from conftest import make_idx_set

    folder = make_idx_set(tmp_path / "fashion", train=300, test=60)
    app, _, _ = live_app("mlp", "child-process", dataset="fashion-mnist", data_dir=str(folder), epochs=1)
    async with app.run_test(size=(100, 40)) as pilot:
        panel = await open_predictions(app, pilot)
        pred = panel.predictions
        matrix = pred.confusion
        row, column = max(((i, j) for i in range(10) for j in range(10)), key=lambda c: matrix[c].item())
        panel.cursor = (row, column)
        await pilot.press("enter")
        order, shown, _ = panel.cell_view()
        true, guess = pred.confusion_true.tolist(), pred.confusion_predicted.tolist()
        expected = [i for i in range(len(true)) if (true[i], guess[i]) == (row, column)]
        assert sorted(order) == expected and len(expected) == matrix[row, column].item() > 0
        text = screen_text(app)
        assert f"true {FASHION[row]}, predicted {FASHION[column]}" in text
        assert text.count("✗ " + FASHION[column] if row != column else "✓ " + FASHION[column]) == len(shown)
        await pilot.press("escape")
        assert panel.cell is None and "test images" in screen_text(app)
        # a click on a count opens its cell
        view = panel.query_one(ConfusionView)
        panel.scroll_to_widget(view, animate=False)
        await pilot.pause()
        shape = layout(matrix, FASHION, view.drawn[2], accuracy=True)
        x = shape.row_width + 3 * (shape.column + 1) + shape.column
        await pilot.click(ConfusionView, offset=(x, 2 + 1))
        assert panel.cell == (2, 3) and panel.cursor == (2, 3)


async def test_cells_open_in_a_watched_run(rings_trainer):
    app = make_app(WatchedRun(str(rings_trainer.test_run_dir)))
    async with app.run_test(size=(80, 24)) as pilot:
        panel = await open_predictions(app, pilot)
        await pilot.press("down", "down", "enter")
        pred = panel.predictions
        expected = inspection.cell_samples(pred.confusion_true, pred.confusion_predicted, 2, 0).tolist()
        assert panel.cell == (2, 0) and sorted(panel.cell_view()[0]) == expected
        assert f"{len(expected):,} test points" in screen_text(app)
