"""The LR range test from a paused live run (`f` in the app): a side branch on copies that leaves the run
exactly as it was, its LrFound events through the child process, and the finder's modal screen."""

from __future__ import annotations

import json
import math
import threading
from pathlib import Path
from typing import Any

import pytest
import torch
from helpers import live_app, screen_text, until

from tuitrain.config import apply_overrides, load_preset
from tuitrain.events import Event, LrFound, RunEnded, StateChanged, StepProgress, event_from_dict, event_to_dict
from tuitrain.training.control import FindLr
from tuitrain.training.engine import Trainer
from tuitrain.tui.screens.lr_finder import LrFinder, nearest

TIMEOUT = 60.0


class Recorder:
    """A consumer that keeps every event and lets a test wait for one."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.cond = threading.Condition()

    def __call__(self, event: Event) -> None:
        with self.cond:
            self.events.append(event)
            self.cond.notify_all()

    def wait_for(self, predicate: Any, start: int = 0) -> Any:
        with self.cond:
            ok = self.cond.wait_for(lambda: any(predicate(e) for e in self.events[start:]), TIMEOUT)
        assert ok, f"timed out; last events: {self.events[-3:]}"
        return next(e for e in self.events[start:] if predicate(e))


def config(optimizer: str = "adam") -> Any:
    config = apply_overrides(load_preset("rings"), epochs=100_000, batch_size=50, optimizer=optimizer)
    config.data.samples = 3_000
    return config


def paused_after(steps: int, recorder: Recorder, optimizer: str = "adam") -> tuple[Trainer, threading.Thread]:
    """A run paused before its first step, then stepped `steps` times: the same state in every test run."""
    trainer = Trainer(config(optimizer), [recorder])
    trainer.pause()  # before the start: the loop pauses at its first step boundary
    worker = threading.Thread(target=trainer.run, daemon=True)
    worker.start()
    for _ in range(steps):
        mark = len(recorder.events)
        trainer.step_once()
        recorder.wait_for(lambda e: isinstance(e, StepProgress), mark)
    return trainer, worker


def snapshot(trainer: Trainer) -> dict[str, Any]:
    state = trainer.state_dict()
    return {
        "model": {k: v.clone() for k, v in state["model"].items()},
        "optimizer": _clone(state["optimizer"]),
        "scalars": {k: state[k] for k in ("epoch", "epoch_step", "step", "samples_seen")},
        "shuffle": trainer.generator.get_state().clone(),
        "rng": torch.get_rng_state().clone(),
        "lr": trainer.lr,
    }


def _clone(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.clone()
    if isinstance(value, dict):
        return {k: _clone(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clone(v) for v in value]
    return value


def same(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.shape == b.shape and bool(torch.equal(a, b))
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


@pytest.mark.parametrize("optimizer", ["adam", "momentum"])
def test_the_finder_leaves_the_paused_run_exactly_as_it_was(optimizer: str) -> None:
    plain, plain_events = None, Recorder()
    found_events = Recorder()
    try:
        plain, plain_worker = paused_after(5, plain_events, optimizer)
        tested, tested_worker = paused_after(5, found_events, optimizer)
        before = snapshot(tested)
        assert same(before, snapshot(plain))  # the two runs are the same run so far

        mark = len(found_events.events)
        tested.find_lr(60)
        done = found_events.wait_for(lambda e: isinstance(e, LrFound) and e.done, mark)
        progress = [e for e in found_events.events[mark:] if isinstance(e, LrFound)]
        assert all(not e.done for e in progress[:-1]) and progress[-1] is done
        assert done.step == 5 and done.steps == 60 and done.stop in ("end", "exploded")
        assert len(done.curve) >= 10 and done.suggested_lr is not None and done.rule
        assert [lr for lr, _ in done.curve] == sorted(lr for lr, _ in done.curve)
        assert all(math.isfinite(loss) for _, loss in done.curve)
        assert tested.state == "paused" and tested.step == 5

        after = snapshot(tested)
        for part in before:
            assert same(after[part], before[part]), f"the finder changed the run's {part}"

        # and the next step trains exactly as the run that never tested would have
        losses = []
        for trainer, events in ((plain, plain_events), (tested, found_events)):
            mark = len(events.events)
            trainer.step_once()
            losses.append(events.wait_for(lambda e: isinstance(e, StepProgress), mark).loss)
        assert losses[0] == losses[1]
        assert same(snapshot(plain)["model"], snapshot(tested)["model"])
        assert same(snapshot(plain)["optimizer"], snapshot(tested)["optimizer"])
    finally:
        for trainer, worker in ((plain, plain_worker), (tested, tested_worker)):
            trainer.stop()
            worker.join(TIMEOUT)


def test_the_finder_is_refused_unless_paused_and_ends_early_when_resumed(monkeypatch: pytest.MonkeyPatch) -> None:
    from tuitrain.training import engine

    monkeypatch.setattr(engine, "FIND_LR_INTERVAL", 0.0)  # a progress event at every step
    events = Recorder()
    trainer, worker = paused_after(1, events)

    def resume_at_first_progress(event: Event) -> None:  # in the training thread, while the test runs
        if isinstance(event, LrFound) and not event.done and trainer.state == "paused":
            trainer.resume()

    trainer.consumers.append(resume_at_first_progress)
    try:
        mark = len(events.events)
        trainer.find_lr(1_000)
        done = events.wait_for(lambda e: isinstance(e, LrFound) and e.done, mark)
        assert done.stop == "stopped" and 0 < done.taken < 10  # ended early; its curve so far still came
        assert len(done.curve) == done.taken and done.suggested_lr is None
        events.wait_for(lambda e: isinstance(e, StepProgress), mark)  # and the run trains on
        trainer.consumers.remove(resume_at_first_progress)
        mark = len(events.events)
        trainer.send(FindLr(5))  # while running (refused), or too few steps once paused: refused either way
        trainer.pause()
        refused = events.wait_for(lambda e: isinstance(e, LrFound), mark)
        assert refused.done and refused.stop == "refused" and refused.curve == [] and refused.message
    finally:
        trainer.stop()
        worker.join(TIMEOUT)
    mark = len(events.events)
    trainer.find_lr()  # after the end: answered at once
    ended = events.wait_for(lambda e: isinstance(e, LrFound), mark)
    assert ended.stop == "refused" and "has ended" in ended.message


def test_lr_found_reads_back_from_its_json_line() -> None:
    event = LrFound(12, [(1e-7, 1.1), (1e-6, 1.05)], 2, 100, 3.2e-3, "steepest", "end", "a note")
    line = json.loads(json.dumps(event_to_dict(event)))
    assert line["event"] == "lr_found" and line["curve"] == [[1e-7, 1.1], [1e-6, 1.05]]
    assert event_from_dict(line) == event
    assert event_from_dict({**line, "curve": [[1e-7, "x"]]}) is None
    assert event_from_dict({**line, "done": 1}) is None
    assert isinstance(event_from_dict(event_to_dict(RunEnded("completed", 1, 2, None, 1.0, 1.0))), RunEnded)


@pytest.mark.slow  # a real training process
def test_the_finder_answers_through_the_child_process(tmp_path: Any) -> None:
    from tuitrain.runs.remote import RemoteTrainer

    control = RemoteTrainer(config("momentum"), str(tmp_path))
    events = Recorder()
    worker = threading.Thread(target=control.run, args=(events,), daemon=True)
    worker.start()
    try:
        events.wait_for(lambda e: isinstance(e, StepProgress))
        control.pause()
        events.wait_for(lambda e: isinstance(e, StateChanged) and e.state == "paused")
        mark = len(events.events)
        control.find_lr(50)
        done = events.wait_for(lambda e: isinstance(e, LrFound) and e.done, mark)
        assert done.stop in ("end", "exploded") and done.suggested_lr is not None and len(done.curve) >= 10
        assert control.state == "paused"
        control.set_lr(done.suggested_lr)
        events.wait_for(lambda e: isinstance(e, StateChanged) and e.lr == done.suggested_lr, mark)
    finally:
        control.stop()
        worker.join(TIMEOUT)
        control.close()
    assert isinstance(events.events[-1], RunEnded)


async def test_f_on_a_paused_run_picks_a_learning_rate_on_its_curve() -> None:
    app, source, factory = live_app("rings", epochs=100_000)
    notes: list[str] = []
    async with app.run_test(size=(120, 40)) as pilot:
        dash = app.screen
        app.notify = lambda message, **kw: notes.append(message)  # type: ignore[method-assign]
        await until(pilot, lambda: dash.history.state == "running", what="running")
        await pilot.press("f")  # while running: why not
        await pilot.pause()
        assert notes[-1] == "pause first (space): the finder starts from the paused weights"
        assert app.screen is dash

        await pilot.press("space")
        await until(pilot, lambda: dash.history.state == "paused", what="paused")
        trainer = factory.trainer
        step, weights = trainer.step, {k: v.clone() for k, v in trainer.model.state_dict().items()}
        await pilot.press("f")
        await until(pilot, lambda: isinstance(app.screen, LrFinder), what="the finder")
        finder = app.screen
        await until(pilot, lambda: finder.finished, TIMEOUT, what="the curve")
        found = finder.found
        assert found is not None and found.suggested_lr is not None and len(found.curve) >= 10
        start = nearest(found.curve, found.suggested_lr)
        assert finder.cursor == start  # the cursor starts at the suggestion
        await pilot.press("right", "right")
        await pilot.pause()
        lr, loss = found.curve[min(start + 2, len(found.curve) - 1)]
        assert finder.chosen_lr() == lr
        assert f"lr {lr:.3g}  loss {loss:.4g}" in screen_text(app)  # what is under the cursor
        await pilot.press("enter")
        await until(pilot, lambda: app.screen is dash, what="the finder closed")
        await until(pilot, lambda: trainer.lr == lr, what="the chosen lr set on the run")
        assert dash.history.state == "paused" and trainer.step == step  # the test trained a copy
        assert all(torch.equal(v, weights[k]) for k, v in trainer.model.state_dict().items())

        await pilot.press("f", "escape")  # cancelled at once: the run stays paused and steerable
        await until(pilot, lambda: app.screen is dash, what="cancelled")
        await pilot.press("n")
        await until(pilot, lambda: trainer.step == step + 1, what="a single step after the cancel")
        assert trainer.lr == lr
        source.controls.stop()
        await until(pilot, lambda: dash.history.ended, what="the run saved")
    metrics = (Path(source.controls.run_dir) / "metrics.jsonl").read_text()
    assert '"set_lr"' in metrics or '"lr"' in metrics  # the run's own record of the chosen lr
    assert '"lr_found"' not in metrics  # the finder's curve is for the viewer: the run did not change
