"""Provides RunControl, the one typed seam between a training run and whatever steers it.

`engine.Trainer` (in this process) and `remote.RemoteTrainer` (in a child process) both
implement it; the app, the headless runner and the tests drive runs only through it. Every live
control is a `LoopCommand` dataclass below, handed to `RunControl.send`: in this process to the
loop's `LoopControl.apply`, across the process boundary down a pipe, never as method names.

Adding a live control: its dataclass here, a member of `LoopCommand`, a named method on `RunControlBase`
(and, for a value the steering side reads back, a field of `Requested`); its case in
`LoopControl.apply` (tuitrain.training.loop_control). mypy fails until every `match` has it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from typing import Any, Protocol, TypeAlias, runtime_checkable

from tuitrain.events import Consumer, EndStatus, Inspection, RunEnded, TrainerState
from tuitrain.training.vitals import Vitals

# ----------------------------------------------------------------------------- commands


@dataclass(frozen=True)
class Pause:
    pass


@dataclass(frozen=True)
class Resume:
    pass


@dataclass(frozen=True)
class Stop:
    status: EndStatus = "interrupted"


@dataclass(frozen=True)
class StepOnce:
    pass


@dataclass(frozen=True)
class SetLr:
    lr: float


@dataclass(frozen=True)
class RequestInspection:
    """An Inspection event at the next step boundary: parameters and predictions, or with `units` the
    Units panel's look instead (tuitrain.training.units; `sample`: the test image it steps through)."""

    units: bool = False
    sample: int = 0


@dataclass(frozen=True)
class SetHistories:
    """Record weight and gradient histories (tuitrain.training.recorder) or not, from the next step on."""

    enabled: bool


@dataclass(frozen=True)
class FindLr:
    """While paused: the LR range test (tuitrain.training.lr_find) from the run's current state, on a copy of
    its network and optimizer, answered with LrFound events (the run itself is left exactly as it was).
    `cancel`: end a test in progress (or one asked for and not yet started) early."""

    steps: int = 100  # tuitrain.training.lr_find.STEPS (not imported: this module stays free of torch)
    cancel: bool = False


@dataclass(frozen=True)
class Inspect:
    """Answered with one Inspection event from the finished run's network (`units`, `sample`: as
    RequestInspection's)."""

    units: bool = False
    sample: int = 0


@dataclass(frozen=True)
class Close:
    """The app is done with the child: it may exit once its run has been saved."""


LoopCommand: TypeAlias = Pause | Resume | Stop | StepOnce | SetLr | RequestInspection | SetHistories | FindLr
"""What the training loop carries out (`LoopControl.apply`); a child process forwards these unread."""

ControlCommand: TypeAlias = LoopCommand | Inspect | Close
"""Everything that goes down the pipe to a training process (Inspect and Close are served by the process)."""


# ----------------------------------------------------------------------------- the seam


@runtime_checkable
class RunControl(Protocol):
    """Steers one run. `run` blocks; every other call is safe from any thread."""

    @property
    def lr(self) -> float:
        """The learning rate in effect (or just requested)."""
        ...

    @property
    def histories(self) -> bool:
        """Whether weight and gradient histories are recorded (in effect or just requested)."""
        ...

    @property
    def state(self) -> TrainerState: ...

    @property
    def run_dir(self) -> str | None:
        """The run directory this run writes, when it keeps one."""
        ...

    def run(self, consumer: Consumer | None = None) -> RunEnded:
        """Train to the end, handing every event to `consumer` (besides the run's own consumers)."""
        ...

    def send(self, command: LoopCommand) -> None:
        """Hand a command to the training loop; it takes effect at the next step boundary."""
        ...

    def pause(self) -> None: ...

    def resume(self) -> None: ...

    def stop(self, status: EndStatus = "interrupted") -> None:
        """End at the next step boundary, saving what the run's consumers save."""
        ...

    def step_once(self) -> None:
        """While paused: exactly one more optimizer step."""
        ...

    def set_lr(self, lr: float) -> None: ...

    def request_inspection(self, units: bool = False, sample: int = 0) -> None:
        """Ask for an Inspection event at the next step boundary (served while paused too): parameters and
        predictions, or with `units` what each unit learned (for images: test sample `sample` stepped through)."""
        ...

    def set_histories(self, enabled: bool) -> None:
        """Record weight and gradient histories from the next step on, or stop recording them."""
        ...

    def find_lr(self, steps: int = 100) -> None:
        """While paused: the LR range test from the run's current state, on a copy (LrFound events answer)."""
        ...

    def cancel_find_lr(self) -> None:
        """End the LR range test in progress early (its curve so far still comes, as a last LrFound)."""
        ...

    def inspect(self, *, units: bool = False, sample: int = 0) -> Inspection | None:
        """Parameters and predictions now (with `units`: what each unit learned instead), for a run that is
        not stepping (None if it cannot say)."""
        ...

    def close(self) -> None:
        """Release what the run holds (a child process) once it has ended; it saves first if not."""
        ...

    def vitals(self) -> Vitals | None:
        """Memory and CPU of the process that trains, and how long since it last answered."""
        ...


class RunControlBase(ABC):
    """The named controls of a RunControl, each one command through `send`: written once, here, for
    every implementation (an implementation writes `send` only)."""

    @abstractmethod
    def send(self, command: LoopCommand) -> None: ...

    def pause(self) -> None:
        self.send(Pause())

    def resume(self) -> None:
        self.send(Resume())

    def stop(self, status: EndStatus = "interrupted") -> None:
        """End at the next step boundary, saving what the run's consumers save."""
        self.send(Stop(status))

    def step_once(self) -> None:
        """While paused: exactly one more optimizer step."""
        self.send(StepOnce())

    def set_lr(self, lr: float) -> None:
        """Takes effect at the next step boundary; at once before the run starts."""
        self.send(SetLr(float(lr)))

    def request_inspection(self, units: bool = False, sample: int = 0) -> None:
        """Ask for an Inspection event at the next step boundary (also served while paused); with `units`,
        what each unit learned instead of parameters and predictions (images: test sample `sample`)."""
        self.send(RequestInspection(bool(units), int(sample)))

    def set_histories(self, enabled: bool) -> None:
        """Record weight and gradient histories, or not, from the next step on (before the run: at once)."""
        self.send(SetHistories(bool(enabled)))

    def find_lr(self, steps: int = 100) -> None:
        """While paused: the LR range test from the run's current state, on a copy of its network and
        optimizer; LrFound events bring the curve as it grows and the suggestion. The run is left as it was."""
        self.send(FindLr(int(steps)))

    def cancel_find_lr(self) -> None:
        """End the LR range test in progress early (a last LrFound still brings its curve so far)."""
        self.send(FindLr(cancel=True))


@dataclass(frozen=True)
class Requested:
    """The readable controls as the steering side last asked for them, for a RunControl that cannot
    read the loop's own state (a child process's): what a second key press builds on."""

    lr: float
    histories: bool
    histories_available: bool = True  # the run's configuration recorded them (no --no-histories)

    @classmethod
    def of(cls, lr: float, histories: bool) -> Requested:
        """At the start: the configured learning rate, and whether the configuration records histories."""
        return cls(lr, histories, histories)

    def after(self, command: LoopCommand) -> Requested:
        """What is in effect once the loop has carried out `command`."""
        match command:
            case SetLr(lr):
                return replace(self, lr=float(lr))
            case SetHistories(enabled):
                return replace(self, histories=enabled and self.histories_available)
            case _:
                return self

    def started(self, config: dict[str, Any]) -> Requested:
        """Once the run has started with `config` (RunStarted.config, the one the run really uses)."""
        available = bool(config.get("train", {}).get("histories", True))
        return replace(self, histories=self.histories and available, histories_available=available)
