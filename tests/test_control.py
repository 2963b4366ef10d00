"""The run-control seam: both implementations obey the same commands; a silent child is noticed."""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import get_args

import pytest

from tuitrain.config import resolve_config
from tuitrain.errors import TuitrainError
from tuitrain.events import RunEnded, StateChanged, StepProgress
from tuitrain.runs.remote import RemoteTrainer, off_the_main_thread
from tuitrain.training.control import (
    Close,
    ControlCommand,
    FindLr,
    Inspect,
    LoopCommand,
    Pause,
    Requested,
    RequestInspection,
    Resume,
    RunControl,
    SetHistories,
    SetLr,
    StepOnce,
    Stop,
)
from tuitrain.training.engine import Trainer

TIMEOUT = 30.0


def wait_for(condition, what: str, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def long_rings():
    config = resolve_config("rings", epochs=100_000)
    config.data.samples = 2_000
    return config


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda c, d: Trainer(c), id="in-process"),
        pytest.param(lambda c, d: RemoteTrainer(c, str(d)), id="child-process", marks=pytest.mark.slow),
    ],
)
def test_commands_steer_both_implementations(tmp_path, make):
    control = make(long_rings(), tmp_path)
    assert isinstance(control, RunControl)
    events = []
    worker = threading.Thread(target=control.run, args=(events.append,), daemon=True)
    worker.start()
    wait_for(lambda: any(isinstance(e, StepProgress) for e in events), "steps")
    control.send(Pause())
    wait_for(lambda: control.state == "paused", "paused")
    control.send(SetLr(0.125))
    wait_for(lambda: any(isinstance(e, StateChanged) and e.lr == 0.125 for e in events), "lr applied")
    assert control.lr == 0.125
    wait_for(lambda: (vitals := control.vitals()) is not None and vitals.rss_bytes > 0, "vitals")
    control.send(Stop("interrupted"))
    worker.join(TIMEOUT)
    assert isinstance(events[-1], RunEnded) and events[-1].status == "interrupted"
    assert control.state == "finished"
    control.close()


def test_commands_are_data_not_method_names():
    with pytest.raises(AssertionError):  # typing.assert_never: mypy refuses it before it runs
        Trainer(long_rings()).send("pause")  # type: ignore[arg-type]


# one of each loop command: a new member of LoopCommand without an example here fails the test below
EXAMPLES = {
    Pause: Pause(),
    Resume: Resume(),
    Stop: Stop("interrupted"),
    StepOnce: StepOnce(),
    SetLr: SetLr(0.5),
    RequestInspection: RequestInspection(),
    SetHistories: SetHistories(False),
    FindLr: FindLr(30),
}


def test_every_loop_command_is_carried_out_by_the_loop():
    """LoopControl.apply has a case for every member of the LoopCommand union (mypy checks the match;
    this checks that each case asks the loop to look at it), and only those reach it."""
    assert set(EXAMPLES) == set(get_args(LoopCommand))
    assert set(get_args(ControlCommand)) == set(get_args(LoopCommand)) | {Inspect, Close}
    trainer = Trainer(long_rings())
    trainer.state = "running"  # requests wait for a step boundary: each one wakes the loop
    for kind, command in EXAMPLES.items():
        trainer._attention = False
        trainer.apply(command)
        assert trainer._attention, f"{kind.__name__} did not reach the loop"


def test_the_named_controls_are_loop_commands():
    sent = []

    class Recording(Trainer):
        def send(self, command):
            sent.append(command)

    control = Recording(long_rings())
    control.pause(), control.resume(), control.stop("completed"), control.step_once()
    control.set_lr(2), control.request_inspection(), control.set_histories(False)
    control.find_lr(30), control.cancel_find_lr()
    assert sent == [
        Pause(),
        Resume(),
        Stop("completed"),
        StepOnce(),
        SetLr(2.0),
        RequestInspection(),
        SetHistories(False),
        FindLr(30),
        FindLr(cancel=True),
    ]


def test_the_mirror_of_a_child_follows_what_it_was_sent():
    requested = Requested.of(0.1, True)
    assert requested.after(SetLr(0.2)).lr == 0.2 and requested.after(Pause()) == requested
    assert not requested.after(SetHistories(False)).histories
    assert requested.after(SetHistories(False)).after(SetHistories(True)).histories
    off = Requested.of(0.1, False)  # --no-histories: nothing to turn on
    assert not off.after(SetHistories(True)).histories
    started = requested.started({"train": {"histories": False}})  # the run's real configuration said off
    assert not started.histories and not started.after(SetHistories(True)).histories


@pytest.mark.slow  # a real process
def test_a_child_that_stops_answering_is_noticed(tmp_path):
    control = RemoteTrainer(long_rings(), str(tmp_path))
    events, errors = [], []

    def follow() -> None:
        try:
            control.run(events.append)
        except TuitrainError as exc:
            errors.append(str(exc))

    worker = threading.Thread(target=follow, daemon=True)
    worker.start()
    try:
        wait_for(lambda: any(isinstance(e, StepProgress) for e in events), "steps")
        os.kill(control.process.pid, signal.SIGSTOP)  # hung: alive, but says nothing
        wait_for(lambda: control.vitals() is not None and control.vitals().silent_seconds > 3, "silence noticed")
        os.kill(control.process.pid, signal.SIGCONT)
        wait_for(lambda: control.vitals().silent_seconds < 2, "heard again")
        control.process.kill()  # dead: the reader reports it instead of waiting forever
        worker.join(TIMEOUT)
        assert not worker.is_alive() and "ended unexpectedly" in errors[0]
    finally:
        os.kill(control.process.pid, signal.SIGCONT) if control.process.is_alive() else None
        control.process.kill()


def test_the_childs_signal_handler_never_waits_for_a_lock():
    """A SIGTERM that came while the child's main thread woke from `done.wait()` (holding the event's
    lock) ran a handler that set the same event: the child hung for good, and with it the app's exit
    (one in ~25 dashboard runs of the bench). The handler now leaves the work to a thread."""
    done = threading.Event()
    handler = off_the_main_thread(done.set)
    with done._cond:  # what Event.wait holds as it wakes up
        caller = threading.Thread(target=handler, args=(signal.SIGTERM, None), daemon=True)
        caller.start()
        caller.join(2.0)
        assert not caller.is_alive(), "the handler waited for the event's lock"
        assert not done.is_set()
    assert done.wait(TIMEOUT)  # and the work is done once the lock is free
