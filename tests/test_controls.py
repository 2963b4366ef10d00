"""The dashboard's controls, each defined once (tuitrain.tui.controls): the table drives the bindings, the
footer, the `?` help, the palette and the toasts that say why a key does nothing; the steering behind
them runs without an App."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest
from helpers import live_app, screen_text, until
from textual.binding import Binding

from tuitrain.config import resolve_config
from tuitrain.events import RunEnded
from tuitrain.tui import controls as controls_module
from tuitrain.tui.app import make_app
from tuitrain.tui.controls import BY_NAME, CONTROLS, WATCHED, perform, shown
from tuitrain.tui.screens import steering as steering_module
from tuitrain.tui.screens.dashboard import Dashboard
from tuitrain.tui.screens.dialogs import HelpScreen
from tuitrain.tui.screens.steering import Steering
from tuitrain.tui.series import RunHistory
from tuitrain.tui.source import LiveRun, Source, WatchedRun


def never_started(config_lr: float = 0.1) -> LiveRun:
    config = resolve_config("rings", epochs=1)
    config.train.lr = config_lr
    return LiveRun(config, factory=lambda *a, **k: pytest.fail("not started in this test"))


# ---------------------------------------------------------------- the table drives everything
def test_every_control_is_a_binding_a_help_row_and_a_palette_entry() -> None:
    bindings = [b for b in Dashboard.BINDINGS if isinstance(b, Binding)]
    rows = dict((what, keys) for keys, what in Dashboard.key_rows())
    dashboard = Dashboard(never_started())  # steerable: every control is offered
    palette = {command.name: command.help for command in dashboard.palette_commands("")}
    for control in CONTROLS:
        main = [b for b in bindings if b.action == control.action]
        assert len(main) == 1, control.name
        binding = main[0]
        assert (binding.key, binding.description, binding.tooltip) == (control.keys, control.label, control.help)
        assert binding.show == bool(control.label)
        assert control.help in rows, control.name  # the `?` help and README's table
        assert control.palette in palette, control.name
        assert palette[control.palette] == rows[control.help]  # the palette names the key
        fallback = [b for b in bindings if b.action == f"unavailable('{control.name}')"]
        assert len(fallback) == (control.available is not controls_module.always)
        assert all(b.key == control.keys for b in fallback)
    assert len(bindings) == len(CONTROLS) + sum(c.available is not controls_module.always for c in CONTROLS)
    assert rows["weight and gradient histories on/off (recorded from the next step)"] == "h"


def test_a_watched_run_offers_no_steering_in_the_palette(tmp_path: Path) -> None:
    names = {command.name for command in Dashboard(WatchedRun(str(tmp_path))).palette_commands("lr 0.1")}
    for control in CONTROLS:
        assert (control.palette in names) == (control.steer is None), control.name
    assert not any(name.startswith("Set learning rate") for name in names)


def test_steering_and_the_table_need_no_textual() -> None:
    for module in (steering_module, controls_module):
        tree = ast.parse(inspect.getsource(module))
        imported = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        imported += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        assert not [name for name in imported if name.split(".")[0] in ("textual", "rich")], module.__name__


# ---------------------------------------------------------------- the steering, without an App
class FakeControl:
    """A RunControl stand-in that records the calls made on it."""

    def __init__(self) -> None:
        self.state = "running"
        self.lr = 0.1
        self.histories = True
        self.run_dir: str | None = "runs/fake"
        self.calls: list[str] = []

    def pause(self) -> None:
        self.calls.append("pause")

    def resume(self) -> None:
        self.calls.append("resume")

    def step_once(self) -> None:
        self.calls.append("step")

    def stop(self, status: str = "interrupted") -> None:
        self.calls.append(f"stop {status}")

    def set_lr(self, lr: float) -> None:
        self.calls.append(f"lr {lr:g}")
        self.lr = lr

    def set_histories(self, enabled: bool) -> None:
        self.calls.append(f"histories {enabled}")
        self.histories = enabled


class FakeSource:
    """A steerable Source whose run is a FakeControl."""

    title = "fake"
    steerable = True
    out_dir = "runs"

    def __init__(self) -> None:
        self.controls = FakeControl()
        self.config = resolve_config("rings", epochs=1)
        self.recovered: list[float] = []

    @property
    def run_dir(self) -> str | None:
        return self.controls.run_dir

    def recover(self, lr: float) -> None:
        self.recovered.append(lr)

    def follow(self, sink: object) -> None:
        pass

    def inspect(self) -> None:
        return None

    def close(self) -> None:
        pass

    def wait(self, timeout: float) -> bool:
        return True


def test_the_steering_runs_and_answers_without_an_app() -> None:
    source = FakeSource()
    assert isinstance(source, Source)
    history = RunHistory(preset="fake", lr=0.1)
    history.state = "running"
    steering = Steering(source, history)  # type: ignore[arg-type]
    run = source.controls

    reply = perform(BY_NAME["step"], steering)
    assert reply.text == "n steps once while paused: press space first" and run.calls == []
    assert not shown(BY_NAME["step"], steering) and shown(BY_NAME["pause"], steering)

    perform(BY_NAME["pause"], steering)
    history.state = "paused"
    assert shown(BY_NAME["step"], steering)
    perform(BY_NAME["step"], steering)
    assert perform(BY_NAME["lr_up"], steering).text == "learning rate → 0.2"
    assert run.calls == ["pause", "step", "lr 0.2"]

    assert perform(BY_NAME["branch"], steering).text.startswith("stop the run first (s)")
    restart = perform(BY_NAME["restart"], steering)  # while training: asks first
    assert restart.ask is not None and not restart.start and run.calls[-1] == "lr 0.2"
    assert restart.ask.then().start and run.calls[-1] == "stop interrupted"

    run.state, history.state = "completed", "completed"  # ended: lr for the next start, no live keys
    assert perform(BY_NAME["lr_down"], steering).text == f"r restarts with learning rate {source.config.train.lr:.4g}"
    assert history.lr == source.config.train.lr
    assert perform(BY_NAME["pause"], steering).text == "the run has ended (completed); r starts it again"
    assert perform(BY_NAME["histories"], steering).text.startswith("the run has ended")
    assert perform(BY_NAME["branch"], steering).text == "" and perform(BY_NAME["restart"], steering).start
    assert perform(BY_NAME["recover"], steering).text.startswith("R goes back to the last good checkpoint")
    history.state = "diverged"
    recovered = perform(BY_NAME["recover"], steering)
    assert recovered.start and source.recovered == [history.lr / 2]

    bad = steering.set_lr(float("nan"))
    assert bad.error and "finite" in bad.text


def test_h_flips_the_histories_of_a_live_run_only() -> None:
    source = FakeSource()
    history = RunHistory(preset="fake", lr=0.1)
    steering = Steering(source, history)  # type: ignore[arg-type]
    source.controls.state = "starting"
    assert perform(BY_NAME["histories"], steering).text == "the run is still starting"
    assert shown(BY_NAME["histories"], steering)  # in the footer while it starts, as once it trains
    source.controls.state = history.state = "running"
    assert perform(BY_NAME["histories"], steering).text == "histories off"
    assert perform(BY_NAME["histories"], steering).text == "histories on"
    assert source.controls.calls == ["histories False", "histories True"]
    source.steerable = False
    assert perform(BY_NAME["histories"], steering).text == WATCHED and not shown(BY_NAME["histories"], steering)


# ---------------------------------------------------------------- in the app
class Replayed:
    """A watched-run stand-in that replays fixed events and says nothing else (tuitrain.tui.source.Followed)."""

    title = "replayed"
    controls = None

    def __init__(self, events: list[object]) -> None:
        self.events = events

    def follow(self, sink) -> None:  # type: ignore[no-untyped-def]
        for event in self.events:
            sink(event)

    def inspect(self) -> None:
        return None

    def close(self) -> None:
        pass

    def wait(self, timeout: float) -> bool:
        return True


async def test_an_unavailable_key_says_why_live_and_watched() -> None:
    app, source, _ = live_app("rings", epochs=100_000)
    notes: list[str] = []
    async with app.run_test(size=(100, 30)) as pilot:
        dash = app.screen
        app.notify = lambda message, **kw: notes.append(message)  # type: ignore[method-assign]
        await until(pilot, lambda: dash.history.state == "running", what="running")
        await pilot.press("n", "b")
        await pilot.pause()
        assert notes == [
            "n steps once while paused: press space first",
            "stop the run first (s): a branch starts from a saved checkpoint",
        ]
        await pilot.press("space")  # paused: a training thread in this process slows every redraw (GIL)
        await until(pilot, lambda: dash.history.state == "paused", what="paused")
        await pilot.press("question_mark")  # the help lists h, from the table
        await until(pilot, lambda: isinstance(app.screen, HelpScreen), what="help")
        assert ("h", "weight and gradient histories on/off (recorded from the next step)") in app.screen.rows
        for _ in range(30):  # scroll down to it: the list is longer than the dialog
            if "histories on/off" in screen_text(app):
                break
            await pilot.press("down")
            await pilot.pause()
        assert " h " in screen_text(app) and "histories on/off" in screen_text(app)
        source.controls.stop()

    watched = make_app(Replayed([RunEnded("completed", 1, 10, None, 1.0, 0.1, "")]))
    notes.clear()
    async with watched.run_test(size=(100, 30)) as pilot:
        dash = watched.screen
        watched.notify = lambda message, **kw: notes.append(message)  # type: ignore[method-assign]
        await until(pilot, lambda: dash.history.ended, what="the replayed end")
        await pilot.press("h", "space")
        await pilot.pause()
        assert notes == [WATCHED, WATCHED]


async def test_h_toggles_the_histories_of_the_live_run() -> None:
    from tuitrain.training.engine import Trainer

    if not hasattr(Trainer, "set_histories"):
        pytest.skip("the core API Trainer.set_histories / Trainer.histories has not landed yet")
    app, source, factory = live_app("rings", epochs=100_000)
    notes: list[str] = []
    async with app.run_test(size=(100, 30)) as pilot:
        dash = app.screen
        app.notify = lambda message, **kw: notes.append(message)  # type: ignore[method-assign]
        await until(pilot, lambda: dash.history.state == "running", what="running")
        before = factory.trainer.histories
        await pilot.press("h")
        await until(pilot, lambda: factory.trainer.histories != before, what="histories toggled")
        assert notes[-1] == ("histories on" if not before else "histories off")
        await pilot.press("h")
        await until(pilot, lambda: factory.trainer.histories == before, what="histories back")
        source.controls.stop()


def footer_pairs(app) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    """The footer's (key, label) pairs left of the palette key."""
    footer = screen_text(app).splitlines()[-1]
    assert footer.rstrip().endswith("^p palette"), footer
    words = footer[: footer.rindex("^p palette")].rstrip(" ▏│|").split()
    assert len(words) % 2 == 0, footer  # a key without its label, or a label in two parts
    return list(zip(words[::2], words[1::2], strict=True))


@pytest.mark.parametrize("size", [(40, 12), (60, 20), (100, 30)])
async def test_footer_labels_are_whole_or_absent(size: tuple[int, int]) -> None:
    app, source, _ = live_app("rings", epochs=100_000)
    async with app.run_test(size=size) as pilot:
        dash = app.screen
        labels = {app.get_key_display(b): b.description for b in dash.BINDINGS if isinstance(b, Binding) and b.show}
        await until(pilot, lambda: dash.history.state == "running", what="running")
        await pilot.pause()
        running = footer_pairs(app)
        await pilot.press("space")
        await until(pilot, lambda: dash.history.state == "paused", what="paused")
        await pilot.pause(0.2)
        paused = footer_pairs(app)
        for pairs in (running, paused):
            assert pairs[:2] == [("?", "Keys"), ("q", "Quit")]  # the most needed first
            for key, label in pairs:
                assert labels.get(key) == label, (key, label, pairs)
        source.controls.stop()


async def test_the_footer_lists_branch_overlay_and_runs_where_they_apply() -> None:
    app, source, _ = live_app("neuron", epochs=2)
    async with app.run_test(size=(160, 30)) as pilot:
        dash = app.screen
        await until(pilot, lambda: dash.history.ended and source.controls.run_dir, what="run end")
        await pilot.pause(0.2)
        pairs = footer_pairs(app)
        assert {("o", "Overlay"), ("v", "Runs"), ("b", "Branch"), ("r", "Restart")} <= set(pairs)
        assert not {"Pause", "Stop", "Step", "Hist"} & {label for _, label in pairs}


def test_readme_module_map_names_every_module() -> None:
    """README → Development lists every module of the package (in its folder's row, or by its own name)."""
    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text()
    section = readme[readme.index("## Development") :]
    missing = []
    for path in sorted((root / "tuitrain").rglob("*.py")):
        relative = path.relative_to(root / "tuitrain")
        if path.name in ("__init__.py", "__main__.py") or (relative.parts[0] == "tui" and len(relative.parts) > 2):
            continue  # the app's own modules are described by folder (screens/, widgets/)
        if f"`{path.name}`" not in section:
            missing.append(str(relative))
    assert not missing, f"README's module map does not name: {missing}"
