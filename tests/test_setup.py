"""The setup screen: every field checked as typed, a visible focus order, data offered, narrow terminals."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import screen_text, until
from textual.widgets import Button, Input, OptionList, Select

from tuitrain.tui.app import make_app
from tuitrain.tui.screens.dashboard import Dashboard
from tuitrain.tui.screens.setup import FIELDS, SetupScreen

FASHION = Path("/usr/share/datasets/fashion-mnist")


async def open_setup(pilot, app) -> SetupScreen:
    await until(pilot, lambda: isinstance(app.screen, SetupScreen), what="setup screen")
    await pilot.pause()
    return app.screen


async def test_every_tab_stop_is_a_visible_control_in_form_order():
    app = make_app(preset="rings")
    async with app.run_test(size=(100, 30)) as pilot:
        await open_setup(pilot, app)
        seen = []
        for _ in range(len(FIELDS) + 2):
            await pilot.press("tab")
            focused = app.focused
            assert isinstance(focused, (Input, Select, Button, OptionList)), focused
            assert focused.display and focused.size.width > 0 and focused.region.height > 0, focused
            seen.append(focused.id)
        enabled = [f.key for f in FIELDS if f.key != "momentum"]  # rings trains with sgd: no momentum
        assert seen[: len(enabled)] == enabled and seen[len(enabled)] == "start"


async def test_text_in_a_number_field_is_marked_explained_and_blocks_start():
    app = make_app(preset="rings")
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_setup(pilot, app)
        lr = screen.query_one("#lr", Input)
        lr.value = "abc"
        await pilot.pause()
        assert lr.value == "abc" and lr.has_class("-invalid")
        message = str(screen.query_one("#lr-error").render())
        assert "Learning rate must be a number" in message and "--lr" not in message
        assert screen.query_one("#start", Button).disabled
        await pilot.press("ctrl+s")
        await pilot.pause(0.2)
        assert isinstance(app.screen, SetupScreen) and app.focused is lr  # not started; the field says why
        lr.value = "-3"
        await pilot.pause()
        assert "out of range" in str(screen.query_one("#lr-error").render())
        lr.value = "0.05"
        await pilot.pause()
        assert not lr.has_class("-invalid") and not screen.query_one("#start", Button).disabled
        screen.query_one("#device", Select).value = "cuda"  # this machine has no GPU
        screen.query_one("#data_dir", Input).value = "/no/such/folder"
        await pilot.pause()
        assert "✗ Data folder: no such folder" in str(screen.query_one("#data_dir-error").render())
        if not __import__("torch").cuda.is_available():
            assert "no CUDA GPU" in str(screen.query_one("#device-error").render())
        assert screen.query_one("#start", Button).disabled


async def test_momentum_weight_decay_and_data_folder_reach_the_config(tmp_path):
    from conftest import make_idx_set

    folder = make_idx_set(tmp_path / "digits")
    app = make_app(preset="mlp")
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_setup(pilot, app)
        assert screen.query_one("#momentum", Input).disabled  # adam has no momentum setting
        screen.query_one("#optimizer", Select).value = "nesterov"
        screen.query_one("#momentum", Input).value = "0.8"
        screen.query_one("#weight_decay", Input).value = "0.0005"
        screen.query_one("#data_dir", Input).value = str(folder)
        await pilot.pause()
        assert not screen.query_one("#momentum", Input).disabled
        config = screen.resolved()
        assert (config.train.optimizer, config.train.momentum, config.train.weight_decay) == ("nesterov", 0.8, 0.0005)
        assert config.data.data_dir == str(folder)
        assert "● ready" in screen_text(app)  # the Data line follows the folder field


async def test_the_data_line_follows_the_data_set():
    app = make_app(preset="mlp")
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_setup(pilot, app)
        assert "mnist" in str(screen.query_one("#data-status").render())
        screen.query_one("#dataset", Select).value = "rings"  # mlp on rings: a valid pair, generated data
        await pilot.pause()
        line = str(screen.query_one("#data-status").render())
        assert "● ready" in line and "rings" in line and "mnist" not in line


@pytest.mark.skipif(
    not FASHION.is_dir(), reason="Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)"
)
async def test_missing_mnist_offers_the_fashion_mnist_on_disk_in_one_key():
    app = make_app(preset="mlp")
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_setup(pilot, app)
        assert "press f to use it" in screen_text(app)
        await pilot.press("f")
        await pilot.pause()
        assert screen.query_one("#dataset", Select).value == "fashion-mnist"
        assert "● ready" in str(screen.query_one("#data-status").render())
        assert "press f" not in screen_text(app)


@pytest.mark.parametrize("size", [(60, 20), (80, 24), (200, 50)])
async def test_narrow_and_wide_terminals_keep_controls_readable(size):
    app = make_app(preset="rings")
    async with app.run_test(size=size) as pilot:
        screen = await open_setup(pilot, app)
        await pilot.pause()
        for select in screen.query(Select):
            assert select.size.width >= 12, (select.id, select.size)
        footer = screen_text(app).splitlines()[-1]
        assert "Start" in footer and "Quit" in footer


async def test_start_uses_exactly_what_the_fields_show():
    app = make_app(preset="rings")
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_setup(pilot, app)
        screen.query_one("#epochs", Input).value = "1"
        screen.query_one("#lr", Input).value = "0.02"
        await pilot.pause()
        await pilot.press("ctrl+s")
        await until(pilot, lambda: isinstance(app.screen, Dashboard), what="dashboard")
        assert app.screen.source.config.train.epochs == 1 and app.screen.source.config.train.lr == 0.02
        await until(pilot, lambda: app.screen.history.ended, what="the one epoch")
