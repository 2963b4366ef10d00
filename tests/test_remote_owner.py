"""The child-process RunControl's owners: its threads, the warm process, a crash's traceback, a live control."""

from __future__ import annotations

import ast
import dataclasses
import os
import threading
import time
from pathlib import Path

import pytest
from helpers import EventWaiter as Events

from tuitrain.config import load_preset, resolve_config
from tuitrain.errors import TuitrainError
from tuitrain.events import HistoryRecord, RunEnded, StateChanged, StepProgress
from tuitrain.runs import remote
from tuitrain.runs.remote import RemoteTrainer, WarmChild

TINY = str(Path(__file__).parent / "data" / "tiny_rings.toml")
TIMEOUT = 60.0


def test_every_thread_of_the_module_is_named_tuitrain():
    tree = ast.parse(Path(remote.__file__).read_text())
    threads = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "Thread"
    ]
    assert len(threads) >= 2
    for call in threads:
        names = [k.value for k in call.keywords if k.arg == "name"]
        assert names, f"a thread without a name at line {call.lineno}"
        text = names[0].value if isinstance(names[0], ast.Constant) else names[0].values[0].value  # an f-string
        assert text.startswith("tuitrain-"), f"line {call.lineno}: {text!r}"


@pytest.mark.slow  # a real process
def test_a_child_failing_writes_its_traceback_to_the_runs_crash_log(tmp_path):
    config = load_preset(TINY)
    broken = dataclasses.replace(config, train=dataclasses.replace(config.train, lr="fast"))  # a TypeError inside
    run_dir = tmp_path / "run"
    control = RemoteTrainer(broken, str(tmp_path), run_dir=str(run_dir))
    try:
        with pytest.raises(TuitrainError) as failed:
            control.run()
    finally:
        control.close()
    message = str(failed.value)
    assert message.startswith("TypeError: ") and str(run_dir / "crash.log") in message and "\n" not in message
    log = (run_dir / "crash.log").read_text()
    assert "Traceback (most recent call last)" in log and "TypeError" in log and "build_optimizer" in log
    assert control.join(TIMEOUT)


@pytest.mark.slow  # a real process
def test_histories_switch_off_and_on_in_the_child(tmp_path):
    config = resolve_config("rings", epochs=100_000)
    config.data.samples = 2_000
    events = Events()
    control = RemoteTrainer(config, str(tmp_path))
    assert control.histories  # the configuration's default
    worker = threading.Thread(target=control.run, args=(events,), daemon=True)
    worker.start()
    records = lambda start: [e for e in events.events[start:] if isinstance(e, HistoryRecord)]  # noqa: E731
    try:
        events.wait_for(lambda e: isinstance(e, HistoryRecord) and e.step > 0)
        control.pause()
        mark = len(events.events)
        events.wait_for(lambda e: isinstance(e, StateChanged) and e.state == "paused", mark)
        control.set_histories(not control.histories)  # what the app's key does
        assert control.histories is False  # mirrored at once
        mark = len(events.events)
        control.resume()
        off_at = events.wait_for(lambda e: isinstance(e, StepProgress), mark).step
        events.wait_for(lambda e: isinstance(e, StepProgress) and e.step > off_at + 500, mark)
        time.sleep(1.0)
        control.pause()
        events.wait_for(lambda e: isinstance(e, StateChanged) and e.state == "paused", mark)
        assert records(mark) == [], "the child recorded while switched off"
        control.set_histories(not control.histories)
        assert control.histories is True
        mark = len(events.events)
        control.resume()
        events.wait_for(lambda e: isinstance(e, HistoryRecord), mark)
    finally:
        control.stop()
        worker.join(TIMEOUT)
        control.close()
    assert isinstance(events.events[-1], RunEnded)
    assert control.join(TIMEOUT)
    assert [t.name for t in control._threads] == ["tuitrain-drain"] and not control._threads[0].is_alive()


def test_the_warm_child_is_owned_and_closed():
    warm = WarmChild()
    warm.start()
    process, conn = warm.take()  # the one started, not another
    conn.close()
    warm.start()
    waiting = warm._child[0]
    assert waiting.is_alive() and waiting is not process
    warm.close(timeout=TIMEOUT)
    assert not waiting.is_alive() and warm._child is None
    warm.close()  # nothing waiting: nothing to do
    process.join(TIMEOUT)


def test_a_silent_child_that_works_is_busy_not_hung():
    """The "not answering" notice is for a child that neither answers nor uses CPU (issue 27: it showed
    during a heavy start, while the child loaded data holding its heartbeat back)."""
    import subprocess
    import time
    from types import SimpleNamespace

    from tuitrain.runs.remote import RemoteTrainer
    from tuitrain.training.vitals import cpu_seconds_of

    assert cpu_seconds_of(2**22 + 7) is None  # no such process
    busy = SimpleNamespace(process=SimpleNamespace(pid=os.getpid()), _cpu_seen=None, last_heard=0.0)
    first = RemoteTrainer._working_since(busy, time.monotonic())
    end = time.process_time() + 0.2
    while time.process_time() < end:  # this process works...
        pass
    assert RemoteTrainer._working_since(busy, time.monotonic()) > first  # ...so it counts as busy now

    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        idle = SimpleNamespace(process=SimpleNamespace(pid=sleeper.pid), _cpu_seen=None, last_heard=0.0)
        first = RemoteTrainer._working_since(idle, time.monotonic())
        time.sleep(0.3)
        assert RemoteTrainer._working_since(idle, time.monotonic()) == first  # no CPU since the first look
    finally:
        sleeper.kill()
        sleeper.wait()
