"""Focused regressions for the crashes the tmux fuzz test (tests/test_fuzz.py) found.

Each one reaches, in a Pilot, the moment a fast key hit in a real terminal: a key already waiting in
the app's queue while a screen is half gone or half laid out.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from helpers import TIMEOUT, Spy, driving, fuzz_app
from helpers import until_running as until
from textual import events
from textual.command import CommandList, CommandPalette
from textual.widgets import OptionList


async def spin_until(condition, what: str, timeout: float = TIMEOUT) -> None:
    """Wait without letting the app go idle (no refresh in between, unlike pilot.pause)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0)


@pytest.fixture
def spy():
    return Spy()


async def restart_held_at_its_start(pilot, spy: Spy):
    """Train, stop, then r with the next run held at its start: the dashboard says STARTING, no controls yet."""
    dash = pilot.app.screen
    await until(pilot, lambda: dash.history.step > 0, "training")
    await pilot.press("s")
    await until(pilot, lambda: dash.history.ended, "the stop")
    spy.gate.clear()
    await pilot.press("r")
    await until(pilot, lambda: spy.calls == 2, "the restart to begin")
    assert dash.history.state == "starting"
    return dash


@pytest.mark.slow  # a race against a live training thread, replayed as the fuzz found it
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


@pytest.mark.slow  # a race against a live training thread, replayed as the fuzz found it
async def test_a_palette_selection_on_its_way_when_escape_closed_it():
    """Enter then escape in the palette, both handled before the selection's message arrived: the
    palette was dismissed twice, the second time popping the dashboard (a blank app), and the selected
    command then raised NoMatches on the removed dashboard."""
    app = fuzz_app()
    async with app.run_test(size=(100, 30)) as pilot:
        dash = app.screen
        await until(pilot, lambda: dash.history.step > 0, "training")
        await pilot.press("ctrl+p")
        await until(
            pilot,
            lambda: CommandPalette.is_open(app) and app.screen.query_one(CommandList).option_count,
            "the palette's commands",
        )
        palette = app.screen
        await pilot.press("down")  # the first command highlighted
        commands = palette.query_one(CommandList)
        index = commands.highlighted
        selected = OptionList.OptionSelected(commands, commands.get_option_at_index(index), index)
        palette.post_message(selected)  # Enter's selection, waiting in the palette's queue ...
        await palette.run_action("escape")  # ... when escape closes the palette
        await pilot.pause(0.3)
        assert app.is_running and app.return_code is None
        assert app.screen is dash and dash.is_mounted
        await pilot.press("2")
        await until(pilot, lambda: dash.query_one("#panels").active == "params", "the dashboard to answer")


async def test_a_palette_search_that_starts_after_the_palette_closed():
    """A search worker that began as the palette closed looked for its removed command list:
    NoMatches in a worker stopped the app (fuzz seed 20261). It now ends quietly."""
    app = fuzz_app()
    async with app.run_test(size=(100, 30)) as pilot:
        dash = app.screen
        await until(pilot, lambda: dash.history.step > 0, "training")
        await pilot.press("ctrl+p")
        await until(pilot, lambda: CommandPalette.is_open(app), "the palette")
        palette = app.screen
        await palette.run_action("escape")
        await until(pilot, lambda: not palette.is_attached, "the palette to be removed")
        worker = palette._gather_commands("lr")  # the search that was on its way
        await worker.wait() if worker.is_running else None
        await pilot.pause(0.1)
        assert app.is_running and app.return_code is None and app.screen is dash


@pytest.mark.parametrize("key", ["pageup", "pagedown"])
@pytest.mark.slow  # a race against a live training thread, replayed as the fuzz found it
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


async def test_restart_keys_while_a_run_starts_start_it_once(spy):
    """r while a restarted run was still starting (no controls yet) started a second run queued behind
    the first: the dashboard followed the second, stuck at STARTING, while the first trained unseen; a
    quit then waited for it, the queued run started after the app had gone, and the exit code was 1."""
    app = fuzz_app(spy)
    async with driving(app, spy) as pilot:
        dash = await restart_held_at_its_start(pilot, spy)
        await pilot.press("r", "r")
        await pilot.pause(0.1)
        spy.gate.set()
        await until(pilot, lambda: dash.history.state == "running" and dash.history.step > 0, "the restarted run")
        assert spy.calls == 2
        await pilot.press("q")
        await pilot.press("y")
        await until(pilot, lambda: not app.is_running, "the app to quit", timeout=10)
    assert app.return_code == 0 and spy.calls == 2


@pytest.mark.slow  # a race against a live training thread, replayed as the fuzz found it
async def test_quitting_closes_each_run_once_after_it_ended(spy):
    """Quitting closed a run's controls three times (the quit, the dashboard's unmount, the launcher),
    and once while its follow thread still read the pipe: with a child process, two threads read one
    pipe at once and one got garbage (UnpicklingError printed over the terminal)."""
    app = fuzz_app(spy)
    async with driving(app, spy) as pilot:
        dash = app.screen
        await until(pilot, lambda: dash.history.step > 0, "training")
        await pilot.press("s")
        await until(pilot, lambda: dash.history.ended, "the stop")
        await pilot.press("r")
        await until(pilot, lambda: dash.history.state == "running" and dash.history.step > 0, "the restart")
        await pilot.press("q")
        await pilot.press("y")
        await until(pilot, lambda: not app.is_running, "the app to quit", timeout=10)
    app.source.close()  # what the launcher does after the app
    assert app.return_code == 0
    assert [r["closes"] for r in spy.runs] == [1, 1]
    assert not any(r["closed_while_running"] for r in spy.runs)


async def test_quitting_stops_a_restart_still_starting(spy):
    """q pressed while a restart was still starting (no controls yet): the quit sent its stop to nobody,
    the restarted run trained on once it started, and the app gave up waiting for its save after 15 s
    with exit code 1 (fuzz seed 20261). The quit now stops such a run as soon as it appears."""
    app = fuzz_app(spy)
    async with driving(app, spy) as pilot:
        dash = await restart_held_at_its_start(pilot, spy)
        await pilot.press("q")
        if app.screen is not dash:  # a confirmation, if the app asks while a run starts
            await pilot.press("y")
        await pilot.pause(0.1)
        started = time.monotonic()
        spy.gate.set()
        await until(pilot, lambda: not app.is_running, "the app to quit", timeout=10)
    assert app.return_code == 0
    assert time.monotonic() - started < 10  # not the 15 s timeout: the run was told to stop
    assert len(spy.runs) == 2 and not spy.runs[1]["running"]


async def test_a_quit_that_cannot_wait_for_the_save_says_so(spy, monkeypatch):
    """Exit code 1 after a quit used to come with no word on stderr: now one line says the save was
    not seen to finish, and how to continue the run."""
    monkeypatch.setattr("tuitrain.tui.screens.steering.SAVE_WAIT", 0.0)
    app = fuzz_app(spy)
    exits = []
    exit_app = app.exit
    app.exit = lambda *args: (exits.append(args), exit_app(*args))  # the message textual prints on stderr
    async with driving(app, spy) as pilot:
        dash = app.screen
        await until(pilot, lambda: dash.history.step > 0 and app.source.controls.run_dir, "training")
        run_dir = app.source.controls.run_dir
        await pilot.press("q")
        await until(pilot, lambda: app.screen is not dash, "the confirmation")
        await pilot.press("y")
        await until(pilot, lambda: not app.is_running, "the app to quit", timeout=10)
    assert app.return_code == 1
    [(_, code, message)] = exits
    assert "finished saving" in message and f"tuitrain run --resume {run_dir}" in message
