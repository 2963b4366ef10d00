"""Provides the CLI entry points that open the app: setup screen, training dashboard, run watcher."""

from __future__ import annotations

from typing import Any


def open_setup(preset: str | None = None) -> None:
    from tuitrain.tui.app import make_app

    make_app(preset=preset).run()


def open_train(config: Any, out_dir: str = "runs") -> None:
    """Make the run directory first (an unwritable --out fails here, like `run`), then open the
    dashboard; training starts in a child process and its errors show in the app."""
    from tuitrain.runs import create_run_dir
    from tuitrain.tui.app import make_app
    from tuitrain.tui.source import LiveRun

    run_dir = create_run_dir(out_dir, config.name)
    source = LiveRun(config, out_dir=out_dir, run_dir=str(run_dir))
    app = make_app(source)
    try:
        app.run()
    finally:
        source.close()
    controls = source.controls
    print(f"run directory: {controls.run_dir if controls is not None and controls.run_dir else run_dir}")


def open_watch(run_dir: str) -> None:
    """Follow a run directory written by `tuitrain run` (charts live; look-inside from last.pt)."""
    from tuitrain.tui.app import make_app
    from tuitrain.tui.source import WatchedRun

    make_app(WatchedRun(run_dir)).run()
