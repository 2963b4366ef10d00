"""Provides the CLI entry points that open the app: setup screen, training dashboard, run watcher."""

from __future__ import annotations

import functools
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuitrain.config import Config

if TYPE_CHECKING:
    from tuitrain.tui.app import TuitrainApp


def run_app(app: TuitrainApp) -> None:
    """Run the app; an internal error ends with one line on stderr and exit 1, never a traceback."""
    app.run()
    for source in app.saving:  # a crash stopped these runs: let them write their checkpoints
        source.wait(15)
        source.close()
    if app.crash:
        print(app.crash, file=sys.stderr)
        sys.exit(1)
    if app.return_code:
        sys.exit(app.return_code)


def check_startable(config: Config) -> None:
    """What the training child would refuse, checked before the app opens (or `serve` serves), so bad
    settings stop with one line and exit 2 instead of an error inside the app: the device and the
    precision (torch is imported only for --device cuda or --precision bf16), the data set's files
    (downloaded now when missing, as `run` does) and the memory the run needs."""
    from tuitrain.config import IMAGE_SETS
    from tuitrain.data import idx
    from tuitrain.data.memory import check_fits

    device = None
    if config.train.device == "cuda" or config.train.precision == "bf16":
        from tuitrain.training.step import check_precision, resolve_device

        device = resolve_device(config.train.device)
        check_precision(config.train.precision, device)
    data = config.data
    if data.dataset in IMAGE_SETS and idx.find_idx_files(data.dataset, data.data_dir) is None:
        from tuitrain.data.sets import ensure_available

        ensure_available(data)  # a --data-dir without the files, or offline: DataUnavailable
    check_fits(config, device)


def open_setup(preset: str | None = None) -> None:
    from tuitrain.runs.remote import start_warm

    start_warm()  # imports torch while the user picks: Start trains at once
    from tuitrain.tui.app import make_app

    run_app(make_app(preset=preset))


def open_train(config: Config, out_dir: str = "runs", tensorboard: bool = False) -> None:
    """Make the run directory first (an unwritable --out fails here, like `run`), then open the
    dashboard; training starts in a child process and its errors show in the app."""
    from tuitrain.runs.remote import start_warm

    start_warm()  # the training process imports torch while the app builds its screens
    from tuitrain.store.run_dir import create_run_dir
    from tuitrain.tui.app import make_app
    from tuitrain.tui.source import LiveRun, child_process

    run_dir = create_run_dir(out_dir, config.name)
    from tuitrain.tui import state as ui_state

    ui_state.remember(out=out_dir)  # the setup screen's runs go there next time
    factory = functools.partial(child_process, tensorboard=tensorboard)
    source = LiveRun(config, out_dir=out_dir, run_dir=str(run_dir), factory=factory)
    try:
        run_app(make_app(source))
    finally:
        source.close()
        controls = source.controls
        print(f"run directory: {controls.run_dir if controls is not None and controls.run_dir else run_dir}")


def open_watch(run_dir: str) -> None:
    """Follow a run directory written by `tuitrain run` (charts live; look-inside from last.pt)."""
    from tuitrain.tui.app import make_app
    from tuitrain.tui.source import WatchedRun

    run_app(make_app(WatchedRun(run_dir)))


def open_runs(out_dir: str) -> None:
    """`tuitrain runs --open`: the runs screen (sort, filter, compare, branch, watch)."""
    from tuitrain.tui.app import make_app

    run_app(make_app(runs_out=out_dir))


def open_race(preset: str, overrides: dict[str, Any], out_dir: str) -> None:
    """`tuitrain train` with comma lists: the race trains headless in a child process (its output in
    OUT/race-<stamp>.log) while the comparison screen follows every run of it live."""
    import subprocess
    import time

    from tuitrain.headless.race import plan
    from tuitrain.tui.app import make_app

    entries = plan(preset, overrides, out_dir)  # checked and made here: bad input fails before the app
    log_path = Path(out_dir) / f"race-{time.strftime('%Y%m%d-%H%M%S')}.log"
    command = [sys.executable, "-m", "tuitrain", "run-planned", *(str(e.run_dir) for e in entries)]
    with open(log_path, "ab") as log:
        child = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
    try:
        run_app(make_app(compare_dirs=[str(e.run_dir) for e in entries]))
    finally:
        if child.poll() is None:
            child.send_signal(signal.SIGINT)  # leaving the app stops the race; each run saves, resumable
            try:
                child.wait(30)
            except subprocess.TimeoutExpired:
                child.kill()
        print(f"race log: {log_path}")
        started = [e for e in entries if e.run_dir.is_dir()]
        for entry in started:
            print(f"run directory: {entry.run_dir}")
        if len(started) < len(entries):
            print(f"race stopped: {len(entries) - len(started)} of {len(entries)} runs never started")
