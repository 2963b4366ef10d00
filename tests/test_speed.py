"""Issue 15's speed work: the app's light start, paced redraws, batched events and --precision bf16."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from conftest import run_cli
from helpers import params, resume, small, train

from tuitrain.config import apply_overrides
from tuitrain.errors import UsageError
from tuitrain.events import EpochEnded, Metrics, RunEnded, StateChanged, StepProgress
from tuitrain.runs import remote
from tuitrain.training.step import check_precision
from tuitrain.tui import pacing
from tuitrain.tui.pacing import RedrawPacer
from tuitrain.tui.widgets.charts import _every_nth

BF16 = torch.ops.mkldnn._is_mkldnn_bf16_supported()


@pytest.mark.slow  # a fresh interpreter: what it imports is the point
def test_the_app_starts_without_torch():
    """The training process imports torch; the app importing it too cost 1.3 s of CPU at the start."""
    code = (
        "import sys; import tuitrain.cli, tuitrain.tui.app, tuitrain.tui.launch, tuitrain.tui.screens.dashboard, "
        "tuitrain.tui.screens.setup, tuitrain.tui.screens.comparison; print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


class FakeCpu:
    def __init__(self) -> None:
        self.seconds = 0.0

    def __call__(self) -> float:
        return self.seconds


def test_pacer_spaces_redraws_by_their_measured_cost():
    cpu = FakeCpu()
    pacer = RedrawPacer(cpu, budget=0.04)
    now = 0.0
    pacer.account(now, training=True)
    for _ in range(10):  # quiet flush periods: 1% of a core
        now += 0.2
        cpu.seconds += 0.002
        pacer.account(now, training=True)
    assert pacer.quiet_share == pytest.approx(0.01)
    assert pacer.interval == pytest.approx(pacing.ASSUMED_DRAW_COST / 0.03)  # nothing drawn yet: assumed
    pacer.drawn(now)
    now += 0.2
    cpu.seconds += 0.002 + 0.045  # a redraw costing 45 ms on top
    pacer.account(now, training=True)
    assert pacer.draw_cost == pytest.approx(0.045)
    assert pacer.interval == pytest.approx(0.045 / (0.04 - 0.01))  # 1.5 s keeps the app at 4%
    assert not pacer.due(now + 1.0) and pacer.due(now + 1.6)
    pacer.drawn(now)
    now += 0.2
    cpu.seconds += 0.002 + 0.5  # a very costly one: capped
    pacer.account(now, training=True)
    assert pacer.interval == pacing.SLOWEST
    pacer.account(now + 0.2, training=False)  # paused or ended: draw when asked
    assert pacer.interval == pacing.FASTEST


def test_pacer_budget_follows_the_cores():
    pacer = RedrawPacer(FakeCpu())
    pacer.set_cores(training_threads=2, usable_cpus=2)
    assert pacer.budget == pacing.APP_BUDGET
    assert pacer.flush_interval == pacing.STATUS_INTERVAL  # every core trains: wake the app less
    pacer.set_cores(training_threads=2, usable_cpus=4)  # a core to spare: drawing costs the training nothing
    assert pacer.budget == pacing.SPARE_BUDGET
    assert pacer.flush_interval == pacing.FLUSH_INTERVAL
    now = 100.0
    pacer.set_cores(training_threads=2, usable_cpus=2)
    assert pacer.status_due(now) and not pacer.status_due(now + 0.2)
    assert pacer.status_due(now + 0.46)  # the next flush, a little early as timers are: still shown


def test_every_nth_keeps_the_ends():
    assert _every_nth(list(range(10)), 3) == [0, 4, 8, 9]
    assert _every_nth(list(range(9)), 3) == [0, 3, 6, 8]
    assert len(_every_nth(list(range(10_000)), 240)) <= 241


def test_batcher_holds_routine_events_and_sends_what_matters_at_once():
    sent: list[object] = []
    clock = [0.0]
    batcher = remote.Batcher(sent.append, clock=lambda: clock[0])
    step = StepProgress(1, 1, 1, 0.5, None, 0.1, 100.0, 0.1)
    epoch = EpochEnded(1, 9, Metrics(0.5), Metrics(0.6), 0.1, 0.2, 4500.0, 0.2)
    batcher(step)
    assert sent == [step]  # the first chart point: at once
    batcher(epoch)
    assert sent == [step, epoch]  # the first of its kind too
    clock[0] = remote.BATCH_SECONDS * 0.9
    batcher(step)
    batcher(epoch)
    assert len(sent) == 2  # held
    clock[0] = remote.BATCH_SECONDS
    batcher(step)
    assert sent[2:] == [remote.Batch((step, epoch, step))]
    batcher(epoch)
    batcher(StateChanged("paused", 0.1))  # urgent: sent at once, after what was held
    assert sent[-1] == remote.Batch((epoch, StateChanged("paused", 0.1)))
    batcher(step)
    batcher.flush()  # the heartbeat's
    assert sent[-1] == step
    batcher.flush()
    assert len(sent) == 5


@pytest.mark.slow  # the training child process
def test_a_live_run_through_the_child_arrives_whole_and_in_order(tmp_path):
    """The batched pipe gives the app every event the trainer made, in order (rings: ~100 epochs/s)."""
    config = small(30)
    trainer = remote.RemoteTrainer(config, out_dir=str(tmp_path))
    events: list[object] = []
    end = trainer.run(events.append)
    trainer.close()
    assert isinstance(end, RunEnded) and end.status == "completed"
    epochs = [e.epoch for e in events if isinstance(e, EpochEnded)]
    assert epochs == list(range(1, 31))
    steps = [e.step for e in events if isinstance(e, StepProgress)]
    assert steps == sorted(steps) and steps


# ----------------------------------------------------------------------------- --precision bf16


def test_precision_is_checked():
    result = run_cli("run", "rings", "--epochs", "1", "--precision", "fp16")
    assert result.returncode == 2 and "'fp16' is not one of 'fp32', 'bf16'" in result.stderr


def test_bf16_is_refused_where_the_cpu_lacks_it(monkeypatch):
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
    with pytest.raises(UsageError, match="no bfloat16 instructions"):
        check_precision("bf16", torch.device("cpu"))
    check_precision("fp32", torch.device("cpu"))  # float32 is always fine


@pytest.mark.skipif(not BF16, reason="this CPU has no bfloat16 instructions")
def test_bf16_trains_close_to_fp32_and_resumes_exactly(tmp_path):
    fp32_trainer, _, _, fp32 = train(tmp_path / "f", small(6))
    straight, _, _, end6 = train(tmp_path / "a", apply_overrides(small(6), precision="bf16"))
    assert end6.status == "completed"
    assert end6.test.loss != fp32.test.loss  # really in bfloat16 ...
    assert abs(end6.test.accuracy - fp32.test.accuracy) <= 0.03  # ... and as good
    assert all(p.dtype == torch.float32 for p in straight.model.parameters())  # the weights stay float32
    _, writer, _, end3 = train(tmp_path / "b", apply_overrides(small(3), precision="bf16"))
    resumed, _, end = resume(writer.run_dir, epochs=6)  # the precision comes back from the checkpoint
    assert resumed.config.train.precision == "bf16"
    assert end.test == end6.test
    assert all(torch.equal(a, b) for a, b in zip(params(resumed), params(straight), strict=True))


async def test_the_footer_stays_put_as_training_begins(monkeypatch):
    """A footer that changed at the run's start laid out the whole screen (~60 ms of a 2-core
    machine's CPU) just as training began; keys that wait say why instead (issue 15: d/c)."""
    from helpers import Spy, driving, fuzz_app, screen_text
    from helpers import until_running as until
    from textual.widgets import Footer

    spy = Spy()
    spy.gate.clear()  # the run waits at its start: STARTING on screen
    recomposed: list[str] = []
    original = Footer.recompose

    async def counting(self):
        recomposed.append(self.screen.history.state)
        return await original(self)

    monkeypatch.setattr(Footer, "recompose", counting)
    app = fuzz_app(spy)
    notes: list[str] = []
    async with driving(app, spy) as pilot:
        dash = app.screen
        app.notify = lambda message, **kw: notes.append(message)
        await until(pilot, lambda: spy.calls == 1, "the start")
        footer = screen_text(app).splitlines()[-1]
        assert dash.history.state == "starting" and "Pause" in footer and "Stop" in footer
        await pilot.press("space", "s", "r")
        await pilot.pause()
        assert notes == ["the run is still starting"] * 3
        before = len(recomposed)
        spy.gate.set()
        await until(pilot, lambda: dash.history.step > 0, "training")
        await pilot.pause(0.2)
        assert len(recomposed) == before  # nothing changed in the footer as the run started
        assert dash.history.state == "running"
        await pilot.press("space")
        await until(pilot, lambda: dash.history.state == "paused", "the pause")
        await until(pilot, lambda: len(recomposed) > before, "the footer to show Step")


@pytest.mark.parametrize("width", [100, 120, 200])
async def test_the_status_line_keeps_its_height_from_start_to_end(width):
    """Each change of the status line's height laid out the whole screen (~50 ms) during training:
    when the run's device, vitals and growing numbers arrived. The height is now kept for them."""
    from helpers import live_app

    from tuitrain.tui.widgets.status import StatusLine

    app, _, _ = live_app("rings", epochs=40)
    heights: list[tuple[str, int]] = []
    async with app.run_test(size=(width, 30)) as pilot:
        dash = app.screen
        status = dash.query_one(StatusLine)
        while not dash.history.ended:
            heights.append((dash.history.state, status.size.height))
            await pilot.pause(0.02)
        heights.append((dash.history.state, status.size.height))
    assert {h for state, h in heights if state != "starting"} == {1 if width == 200 else 2}, heights
    assert len({h for _, h in heights[1:]}) == 1, heights  # laid out once, at the start
