"""The screen as a picture: `P` saves what the dashboard shows as SVG in the run directory, in watch too."""

from __future__ import annotations

from helpers import until

from tuitrain.config import resolve_config
from tuitrain.runs.start import new_run
from tuitrain.tui.app import make_app
from tuitrain.tui.screenshot import save_screen, screenshot_name
from tuitrain.tui.source import WatchedRun


def test_names_sort_by_time_and_say_the_panel():
    assert screenshot_name("units", now=0).startswith("screen-19700101-")
    assert screenshot_name("units", now=0).endswith("-units.svg")
    assert screenshot_name("a/b c").endswith("-a-b-c.svg")  # never a path


async def test_p_saves_the_watched_screen_into_its_run_directory(tmp_path, monkeypatch):
    trainer, writer = new_run(resolve_config("rings", epochs=1), tmp_path)
    trainer.run()
    run_dir = writer.run_dir
    app = make_app(WatchedRun(str(run_dir)))
    async with app.run_test(size=(100, 30)) as pilot:
        dash = app.screen
        told: list[str] = []
        monkeypatch.setattr(dash, "notify", lambda message, **_: told.append(message))
        await until(pilot, lambda: dash.history.ended, what="the run's end event")
        await pilot.press("2")
        await pilot.press("P")
        await until(pilot, lambda: list(run_dir.glob("screen-*-params.svg")), what="the SVG")
        saved = next(run_dir.glob("screen-*-params.svg"))
        svg = saved.read_text()
        assert svg.startswith("<svg") and "Parameters" in svg and "layers.1.weight" in svg
        assert told == [f"saved {saved}"]
        second = save_screen(app, run_dir, "params")  # the same second: a new name, never a replaced file
        assert second != saved and second.exists() and saved.exists()
        assert not [p for p in run_dir.iterdir() if ".tmp-" in p.name]
