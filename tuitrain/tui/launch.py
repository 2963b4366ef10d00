"""Provides the CLI entry points that open the app: setup screen, training dashboard, run watcher."""

from __future__ import annotations

from typing import Any


def open_setup(preset: str | None = None) -> None:
    from tuitrain.tui.app import make_app

    make_app(preset=preset).run()


def open_train(config: Any, out_dir: str = "runs") -> None:
    """Build the Trainer and its run directory first (bad data or --out fail here, like `run`), then open
    the dashboard."""
    from tuitrain.engine import Trainer
    from tuitrain.runs import RunWriter
    from tuitrain.tui.app import make_app
    from tuitrain.tui.source import LiveSource

    trainer = Trainer(config)
    writer = RunWriter(trainer, out_dir)
    make_app(LiveSource(config, trainer, out_dir, writer)).run()
    print(f"run directory: {writer.run_dir}")


def open_watch(run_dir: str) -> None:
    """Follow a run directory written by `tuitrain run` (charts live; look-inside from last.pt)."""
    from tuitrain.tui.app import make_app
    from tuitrain.tui.source import WatchSource

    make_app(WatchSource(run_dir)).run()
