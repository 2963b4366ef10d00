"""Provides LoopControl: what other threads ask of a training loop, read by the loop at step boundaries."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import assert_never

import torch

from tuitrain.events import EndStatus, Event, Inspection, StateChanged, TrainerState
from tuitrain.training.control import (
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


class LoopControl(RunControlBase):
    """The control half of `engine.Trainer`: pause, resume, stop, single steps, the learning rate,
    inspections and history recording, requested from any thread as `LoopCommand`s (`apply`). The loop
    reads one flag a step (`_attention`) and calls `_handle_controls` when it is set; a pause blocks
    there, on a condition, not in a spin."""

    optimizer: torch.optim.Optimizer
    recorder: Recorder
    state: TrainerState
    world_size: int  # ranks stop together (tuitrain.runs.distributed), at an agreed step

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._attention = False  # one cheap read per step tells the loop to look at the flags below
        self._paused = False
        self._stop_status: EndStatus | None = None
        self._lr_request: float | None = None
        self._single_steps = 0
        self._inspect_requested = False
        self._histories_request: bool | None = None
        self.stop_wanted: EndStatus | None = None  # a rank's stop request, until the ranks agree on it

    def _emit(self, event: Event) -> None:
        raise NotImplementedError

    def inspect(self, before: dict[str, torch.Tensor] | None = None) -> Inspection:
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
                    self._inspect_requested = True
            case SetHistories(enabled):  # from the next step boundary; at once before the run starts
                if self.state == "idle":
                    self.recorder.switch(enabled)
                else:
                    with self._signalling():
                        self._histories_request = enabled
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
                if self._inspect_requested:
                    self._inspect_requested = False
                    self._emit(self.inspect())
                    continue
                self._lock.wait()
