"""The run-control seam: both implementations obey the same commands; a silent child is noticed."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from tuitrain.config import resolve_config
from tuitrain.errors import TuitrainError
from tuitrain.events import RunEnded, StateChanged, StepProgress
from tuitrain.runs.remote import RemoteTrainer, off_the_main_thread
from tuitrain.training.control import Pause, RunControl, SetLr, Stop, apply
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
    "make", [lambda c, d: Trainer(c), lambda c, d: RemoteTrainer(c, str(d))], ids=["in-process", "child-process"]
)
def test_commands_steer_both_implementations(tmp_path, make):
    control = make(long_rings(), tmp_path)
    assert isinstance(control, RunControl)
    events = []
    worker = threading.Thread(target=control.run, args=(events.append,), daemon=True)
    worker.start()
    wait_for(lambda: any(isinstance(e, StepProgress) for e in events), "steps")
    apply(control, Pause())
    wait_for(lambda: control.state == "paused", "paused")
    apply(control, SetLr(0.125))
    wait_for(lambda: any(isinstance(e, StateChanged) and e.lr == 0.125 for e in events), "lr applied")
    assert control.lr == 0.125
    wait_for(lambda: (vitals := control.vitals()) is not None and vitals.rss_bytes > 0, "vitals")
    apply(control, Stop("interrupted"))
    worker.join(TIMEOUT)
    assert isinstance(events[-1], RunEnded) and events[-1].status == "interrupted"
    assert control.state == "finished"
    control.close()


def test_commands_are_data_not_method_names():
    with pytest.raises(TypeError):
        apply(Trainer(long_rings()), "pause")  # type: ignore[arg-type]


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
