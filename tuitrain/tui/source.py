"""Provides the dashboard's event sources: a live Trainer, or a run directory being watched."""

from __future__ import annotations

from typing import Any, Callable

from tuitrain.config import Config

Sink = Callable[[Any], None]


class LiveSource:
    """Drives a Trainer: `run(sink)` blocks in a worker thread; the controls work from any thread."""

    live = True

    def __init__(self, config: Config, trainer: Any = None):
        self.config = config
        self.trainer = trainer

    @property
    def title(self) -> str:
        return self.config.name

    def run(self, sink: Sink, restart: bool = False) -> Any:
        from tuitrain.engine import Trainer

        if self.trainer is None or restart or self.trainer.state != "idle":
            data = self.trainer.data if self.trainer is not None else None
            self.trainer = Trainer(self.config, [sink], data=data)
        else:
            self.trainer.consumers.append(sink)
        return self.trainer.run()

    # control, safe from the UI thread
    def _call(self, name: str, *args: Any) -> None:
        if self.trainer is not None:
            getattr(self.trainer, name)(*args)

    def pause(self) -> None:
        self._call("pause")

    def resume(self) -> None:
        self._call("resume")

    def stop(self) -> None:
        self._call("stop")

    def step_once(self) -> None:
        self._call("step_once")

    def set_lr(self, lr: float) -> None:
        self._call("set_lr", lr)

    @property
    def lr(self) -> float | None:
        return None if self.trainer is None else self.trainer.lr

    def request_inspection(self) -> None:
        self._call("request_inspection")

    def running(self) -> bool:
        return self.trainer is not None and self.trainer.state in ("running", "paused")

    def inspect_now(self) -> Any:
        """For a run that is not stepping (finished or stopped): inspect directly."""
        return None if self.trainer is None else self.trainer.inspect()

    @property
    def model(self) -> Any:
        return None if self.trainer is None else self.trainer.model
