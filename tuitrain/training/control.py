"""Provides RunControl, the one typed seam between a training run and whatever steers it.

`engine.Trainer` (in this process) and `remote.RemoteTrainer` (in a child process) both
implement it; the app, the headless runner and the tests drive runs only through it. Across
the process boundary the calls travel as the command dataclasses below, never as method names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from tuitrain.events import Consumer, EndStatus, Inspection, RunEnded, TrainerState
from tuitrain.training.vitals import Vitals


@runtime_checkable
class RunControl(Protocol):
    """Steers one run. `run` blocks; every other call is safe from any thread."""

    @property
    def lr(self) -> float:
        """The learning rate in effect (or just requested)."""
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

    def pause(self) -> None: ...

    def resume(self) -> None: ...

    def stop(self, status: EndStatus = "interrupted") -> None:
        """End at the next step boundary, saving what the run's consumers save."""
        ...

    def step_once(self) -> None:
        """While paused: exactly one more optimizer step."""
        ...

    def set_lr(self, lr: float) -> None: ...

    def request_inspection(self) -> None:
        """Ask for an Inspection event at the next step boundary (served while paused too)."""
        ...

    def inspect(self) -> Inspection | None:
        """Parameters and predictions now, for a run that is not stepping (None if it cannot say)."""
        ...

    def close(self) -> None:
        """Release what the run holds (a child process) once it has ended; it saves first if not."""
        ...

    def vitals(self) -> Vitals | None:
        """Memory and CPU of the process that trains, and how long since it last answered."""
        ...


# ----------------------------------------------------------------------------- pipe commands


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
    pass


@dataclass(frozen=True)
class Inspect:
    """Answered with one Inspection event from the finished run's network."""


@dataclass(frozen=True)
class Close:
    """The app is done with the child: it may exit once its run has been saved."""


Command = Pause | Resume | Stop | StepOnce | SetLr | RequestInspection | Inspect | Close


def apply(control: RunControl, command: Command) -> None:
    """Carry out a control command (Inspect and Close belong to the process that serves the run)."""
    if isinstance(command, Pause):
        control.pause()
    elif isinstance(command, Resume):
        control.resume()
    elif isinstance(command, Stop):
        control.stop(command.status)
    elif isinstance(command, StepOnce):
        control.step_once()
    elif isinstance(command, SetLr):
        control.set_lr(command.lr)
    elif isinstance(command, RequestInspection):
        control.request_inspection()
    else:
        raise TypeError(f"not a control command: {command!r}")
