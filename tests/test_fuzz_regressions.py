"""Focused regressions for the crashes the tmux fuzz test (tests/test_fuzz.py) found.

Each one reaches, in a Pilot, the moment a fast key hit in a real terminal: a key already waiting in
the app's queue while a screen is half gone or half laid out.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from textual import events
from textual.command import CommandList, CommandPalette

from tuitrain.config import resolve_config
from tuitrain.tui.app import make_app
from tuitrain.tui.source import InProcess, LiveRun

TIMEOUT = 30.0


async def until(pilot, condition, what: str, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if not pilot.app.is_running:
            raise AssertionError(f"the app stopped (return code {pilot.app.return_code}) before {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.02)


async def spin_until(condition, what: str, timeout: float = TIMEOUT) -> None:
    """Wait without letting the app go idle (no refresh in between, unlike pilot.pause)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0)


def fuzz_app():
    source = LiveRun(resolve_config("rings", epochs=100_000), factory=InProcess())
    return make_app(source)


async def test_ctrl_p_queued_while_the_last_palette_is_being_removed():
    """A palette that closes itself (it ran a command) is removed a few ticks later; a ctrl+p already
    queued used to open Textual's palette with the same fixed id: DuplicateIds, the app crashed."""
    app = fuzz_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: app.screen.history.step > 0, "training")
        await pilot.press("ctrl+p")
        await until(pilot, lambda: CommandPalette.is_open(app), "the palette")
        old = app.screen
        old.dismiss()  # what the palette does from its own handler when it runs a command
        app.post_message(events.Key("ctrl+p", None))  # the user's next ctrl+p, already on its way
        await until(pilot, lambda: CommandPalette.is_open(app) and app.screen is not old, "a new palette")
        await pilot.press("escape")
        await until(pilot, lambda: not CommandPalette.is_open(app), "the palette to close")
        assert app.is_running and app.return_code is None


@pytest.mark.parametrize("key", ["pageup", "pagedown"])
async def test_page_keys_in_the_palette_before_its_list_is_laid_out(key):
    """PageUp/PageDown just as the first results arrive (options there, list not yet sized) used to
    raise KeyError in Textual's OptionList._move_page; now they do nothing until the list is drawn."""
    app = fuzz_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: app.screen.history.step > 0, "training")
        app.post_message(events.Key("ctrl+p", None))

        def results_not_laid_out() -> bool:
            lists = app.screen.query(CommandList) if CommandPalette.is_open(app) else []
            return bool(lists) and lists[0].option_count > 0

        await spin_until(results_not_laid_out, "the palette's first results")
        assert not app.screen.query_one(CommandList).scrollable_content_region  # the moment we want
        app.post_message(events.Key(key, None))
        await pilot.pause(0.2)
        assert app.is_running and app.return_code is None
        await pilot.press(key)  # once drawn, paging works as before
        assert app.screen.query_one(CommandList).highlighted is not None
        await pilot.press("escape")
    assert app.return_code in (None, 0)
