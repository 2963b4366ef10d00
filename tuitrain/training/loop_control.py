"""Provides LoopControl: what other threads ask of a training loop, read by the loop at step boundaries."""

from __future__ import annotations

import threading
from typing import Any

import torch

from tuitrain.events import EndStatus, Event, Inspection, StateChanged, TrainerState


class LoopControl:
    """The control half of `engine.Trainer`: pause, resume, stop, single steps, the learning rate and
    inspections, requested from any thread. The loop reads one flag a step (`_attention`) and calls
    `_handle_controls` when it is set; a pause blocks there, on a condition, not in a spin."""

    optimizer: torch.optim.Optimizer
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
        self.stop_wanted: EndStatus | None = None  # a rank's stop request, until the ranks agree on it

    def _emit(self, event: Event) -> None:
        raise NotImplementedError

    def inspect(self, before: dict[str, torch.Tensor] | None = None) -> Inspection:
        raise NotImplementedError

    # ------------------------------------------------------------------ any thread
    def _signal(self, **changes: Any) -> None:
        with self._lock:
            for key, value in changes.items():
                setattr(self, key, value)
            self._attention = True
            self._lock.notify_all()

    def pause(self) -> None:
        self._signal(_paused=True)

    def resume(self) -> None:
        self._signal(_paused=False)

    def stop(self, status: EndStatus = "interrupted") -> None:
        if self.world_size > 1:  # every rank must stop at the same step: agreed at the next report
            self.stop_wanted = status
        else:
            self.stop_now(status)

    def stop_now(self, status: EndStatus = "interrupted") -> None:
        self._signal(_stop_status=status)

    def set_lr(self, lr: float) -> None:
        """Takes effect at the next step boundary; at once before the run starts."""
        if self.state == "idle":
            self._apply_lr(float(lr))
        else:
            self._signal(_lr_request=float(lr))

    def _apply_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def step_once(self) -> None:
        """While paused: run exactly one more optimizer step, then stay paused."""
        with self._lock:
            self._single_steps += 1
            self._attention = True
            self._lock.notify_all()

    def request_inspection(self) -> None:
        """Ask for an Inspection event at the next step boundary (also served while paused)."""
        self._signal(_inspect_requested=True)

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    # ------------------------------------------------------------------ the loop's side
    def _handle_controls(self) -> bool:
        """Apply pending requests; block while paused. False means stop now."""
        with self._lock:
            while True:
                if self._lr_request is not None:
                    self._apply_lr(self._lr_request)
                    self._lr_request = None
                    self._emit(StateChanged("paused" if self._paused else "running", self.lr))
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
