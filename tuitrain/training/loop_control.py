"""Provides LoopControl: what other threads ask of a training loop, read by the loop at step boundaries."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import assert_never

import torch

from tuitrain.events import EndStatus, Event, Inspection, LrFound, StateChanged, TrainerState
from tuitrain.training.control import (
    FindLr,
    LoopCommand,
    Pause,
    RequestInspection,
    Resume,
    RunControlBase,
    SetHistories,
    SetLr,
    StepOnce,
    Stop,
)
from tuitrain.training.recorder import Recorder

ENDED = "the run has ended: `tuitrain lr-find --branch RUN_DIR` tests from its checkpoint"


class LoopControl(RunControlBase):
    """The control half of `engine.Trainer`: pause, resume, stop, single steps, the learning rate,
    inspections, history recording and the LR range test from the paused state, requested from any
    thread as `LoopCommand`s (`apply`). The loop reads one flag a step (`_attention`) and calls
    `_handle_controls` when it is set; a pause blocks there, on a condition, not in a spin."""

    optimizer: torch.optim.Optimizer
    recorder: Recorder
    state: TrainerState
    step: int  # optimizer steps in all
    world_size: int  # ranks stop together (tuitrain.runs.distributed), at an agreed step

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._attention = False  # one cheap read per step tells the loop to look at the flags below
        self._paused = False
        self._stop_status: EndStatus | None = None
        self._lr_request: float | None = None
        self._single_steps = 0
        self._inspections: list[RequestInspection] = []  # asked for, each answered once (a repeat once)
        self._histories_request: bool | None = None
        self._find_lr_steps: int | None = None  # an LR range test asked for, served while paused
        self._find_lr_cancelled = False  # the test in progress (or asked for) is to end early
        self.stop_wanted: EndStatus | None = None  # a rank's stop request, until the ranks agree on it

    def _emit(self, event: Event) -> None:
        raise NotImplementedError

    def inspect(
        self, before: dict[str, torch.Tensor] | None = None, *, units: bool = False, sample: int = 0
    ) -> Inspection:
        raise NotImplementedError

    def find_lr_branch(self, steps: int) -> None:
        """The LR range test from the current state on copies, telling its LrFound events (the engine's)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ any thread
    @contextmanager
    def _signalling(self) -> Iterator[None]:
        """Change the flags inside, under the lock; then the loop looks at them at its next step boundary."""
        with self._lock:
            yield
            self._attention = True
            self._lock.notify_all()

    def apply(self, command: LoopCommand) -> None:
        """Carry out a loop command: the one place where one changes what the loop does."""
        match command:
            case Pause():
                with self._signalling():
                    self._paused = True
            case Resume():
                with self._signalling():
                    self._paused = False
            case Stop(status):
                if self.world_size > 1:  # every rank must stop at the same step: agreed at the next report
                    self.stop_wanted = status
                else:
                    self.stop_now(status)
            case StepOnce():  # while paused: run exactly one more optimizer step, then stay paused
                with self._signalling():
                    self._single_steps += 1
            case SetLr(lr):  # takes effect at the next step boundary; at once before the run starts
                if self.state == "idle":
                    self._apply_lr(float(lr))
                else:
                    with self._signalling():
                        self._lr_request = float(lr)
            case RequestInspection():  # an Inspection event at the next step boundary (also served while paused)
                with self._signalling():
                    if command not in self._inspections:  # two panels' asks are both answered, a repeat once
                        self._inspections.append(command)
            case SetHistories(enabled):  # from the next step boundary; at once before the run starts
                if self.state == "idle":
                    self.recorder.switch(enabled)
                else:
                    with self._signalling():
                        self._histories_request = enabled
            case FindLr(steps, cancel):  # served while paused, at the next step boundary; on a copy
                with self._signalling():
                    if cancel:
                        self._find_lr_cancelled = True
                    else:
                        self._find_lr_steps, self._find_lr_cancelled = steps, False
                    if self.state == "finished":  # no loop to serve it: answered now
                        self.refuse_find_lr(ENDED)
            case _:
                assert_never(command)

    def stop_now(self, status: EndStatus = "interrupted") -> None:
        with self._signalling():
            self._stop_status = status

    def _apply_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    @property
    def histories(self) -> bool:
        """Whether histories are recorded, or will be from the next step (never when the configuration
        turned them off: there is nothing to turn on)."""
        wanted = self._histories_request
        return self.recorder.enabled if wanted is None else wanted and self.recorder.available

    # ------------------------------------------------------------------ the loop's side
    @contextmanager
    def _unlocked(self) -> Iterator[None]:
        """Inside `_handle_controls`: let other threads' requests in meanwhile (a long task while paused)."""
        self._lock.release()
        try:
            yield
        finally:
            self._lock.acquire()

    def finding_lr_ends(self) -> bool:
        """Whether an LR range test in progress is to end now: cancelled, resumed or stopped meanwhile."""
        return self._find_lr_cancelled or not self._paused or self._stop_status is not None

    def take_inspections(self) -> list[RequestInspection]:
        """The inspections asked for since the last look, for the caller to answer."""
        with self._lock:  # a Condition's lock is reentrant: _handle_controls holds it already
            asked, self._inspections = self._inspections, []
        return asked

    def refuse_find_lr(self, why: str) -> None:
        """Answer an LR range test that was asked for and cannot run, so no one waits for it."""
        steps, self._find_lr_steps = self._find_lr_steps, None
        if steps is not None:
            self._emit(LrFound(self.step, [], 0, steps, stop="refused", message=why))

    def _handle_controls(self) -> bool:
        """Apply pending requests; block while paused. False means stop now."""
        with self._lock:
            while True:
                if self._lr_request is not None:
                    self._apply_lr(self._lr_request)
                    self._lr_request = None
                    self._emit(StateChanged("paused" if self._paused else "running", self.lr))
                if self._histories_request is not None:
                    self.recorder.switch(self._histories_request)
                    self._histories_request = None
                if self._stop_status is not None:
                    return False
                if not self._paused:
                    self.refuse_find_lr("the run was resumed before the test started: pause it, then ask again")
                    self._attention = False
                    if self.state == "paused":
                        self.state = "running"
                        self._emit(StateChanged("running", self.lr))
                    return True
                if self.state != "paused":
                    self.state = "paused"
                    self._emit(StateChanged("paused", self.lr))
                if self._single_steps > 0:
                    self._single_steps -= 1
                    return True  # _attention stays set: the step is reported, and the loop comes back here
                if self._inspections:
                    for request in self.take_inspections():
                        self._emit(self.inspect(units=request.units, sample=request.sample))
                    continue
                if self._find_lr_steps is not None:  # seconds of work: other requests may come meanwhile
                    steps, self._find_lr_steps = self._find_lr_steps, None
                    with self._unlocked():
                        self.find_lr_branch(steps)
                    self._find_lr_cancelled = False
                    continue
                self._lock.wait()
