"""Provides races: every combination of comma-listed settings, trained from the same start, then ranked.

`tuitrain run rings --optimizer sgd,adam --lr 0.01,0.1` plans four runs (same seed, so the same
data and the same initial weights), makes their run directories at once (status "queued" until
each starts), trains them one after another in this process (sharing the loaded data) or
`--parallel N` at a time in child processes that split the CPUs between them, and ranks them.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuitrain import compare
from tuitrain.config import Config, resolve_config
from tuitrain.errors import UsageError, escape
from tuitrain.events import Event, RunEnded, event_from_dict, event_to_dict
from tuitrain.headless import (
    JSON_EVENTS,
    BackgroundPrinter,
    OutputGuard,
    PlainPrinter,
    RichProgress,
    stderr_line,
    stdout_line,
)
from tuitrain.runs import CONFIG, DEFAULT_OUT, create_run_dir

SWEEPABLE = (
    "optimizer",
    "lr",
    "batch_size",
    "epochs",
    "seed",
    "activation",
    "precision",
)  # options that take comma lists
SUFFIX = {
    "optimizer": "",
    "lr": "lr",
    "batch_size": "bs",
    "epochs": "e",
    "seed": "seed",
    "activation": "",
    "precision": "",
}
LABEL = {
    "optimizer": "",
    "lr": "lr=",
    "batch_size": "batch=",
    "epochs": "epochs=",
    "seed": "seed=",
    "activation": "",
    "precision": "",
}


@dataclass
class Entry:
    """One run of a race: its settings, its folder, and the name its output lines carry."""

    label: str  # "adam lr=0.1"
    config: Config
    run_dir: Path

    @property
    def name(self) -> str:
        return self.run_dir.name


def is_race(overrides: dict[str, Any]) -> bool:
    return any(isinstance(v, tuple) and len(v) > 1 for v in overrides.values())


def combinations(overrides: dict[str, Any]) -> list[dict[str, Any]]:
    """Every combination of the listed values (in SWEEPABLE order), each with the single-valued overrides."""
    listed = [k for k in SWEEPABLE if isinstance(overrides.get(k), tuple)]
    fixed = {k: v for k, v in overrides.items() if k not in listed}
    values = [overrides[k] for k in listed]
    return [{**fixed, **dict(zip(listed, combo))} for combo in itertools.product(*values)]


def _fmt(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def plan(preset: str, overrides: dict[str, Any], out: str | os.PathLike[str] | None) -> list[Entry]:
    """Check every combination's configuration, then make its run directory (config.toml only: queued)."""
    listed = [k for k in SWEEPABLE if isinstance(overrides.get(k), tuple)]
    combos = combinations(overrides)
    configs = [resolve_config(preset, **combo) for combo in combos]  # all checked before any folder is made
    entries = []
    for combo, config in zip(combos, configs):
        suffix = "-".join(f"{SUFFIX[k]}{_fmt(combo[k])}" for k in listed)
        label = " ".join(f"{LABEL[k]}{_fmt(combo[k])}" for k in listed)
        run_dir = create_run_dir(out or DEFAULT_OUT, f"{config.name}-{suffix}")
        (run_dir / CONFIG).write_text(config.to_toml(), encoding="utf-8")
        entries.append(Entry(label, config, run_dir))
    return entries


def prefixed(printer: Callable[[str], None], label: str) -> Callable[[str], None]:
    return lambda text: printer("\n".join(f"[{escape(label)}] {line}" for line in text.split("\n")))


class TaggedJson:
    """`--json` for a race: every event line carries `"run": <run directory name>`."""

    def __init__(self, run: str, lock: threading.Lock):
        self.run, self.lock = run, lock

    def __call__(self, event: Event) -> None:
        if event.event in JSON_EVENTS:
            with self.lock:
                stdout_line(json.dumps({**event_to_dict(event), "run": self.run}))


def make_printer(entry: Entry, json_mode: bool, lock: threading.Lock, live_bar: bool) -> Callable[[Event], None]:
    if json_mode:
        return TaggedJson(entry.name, lock)
    if live_bar:
        bar = RichProgress()
        bar.plain.write = prefixed(bar.write, entry.label)
        return bar

    def locked(text: str) -> None:
        with lock:
            stdout_line(text)

    return PlainPrinter(write=prefixed(locked, entry.label))


# ----------------------------------------------------------------------------- running


class Race:
    """Trains a planned race and reports it; `run()` returns the exit code."""

    def __init__(self, entries: list[Entry], json_mode: bool, parallel: int = 1, threads: int | None = None):
        self.entries, self.json_mode = entries, json_mode
        self.parallel = max(1, min(parallel, len(entries)))
        self.threads = threads
        self.lock = threading.Lock()
        self.statuses: dict[str, str] = {}
        self.signum: int | None = None

    def run(self) -> int:
        if self.json_mode:
            runs = [{"run": e.name, "label": e.label, "run_dir": str(e.run_dir)} for e in self.entries]
            stdout_line(json.dumps({"event": "race", "runs": runs, "parallel": self.parallel}))
        else:
            how = "one at a time" if self.parallel == 1 else f"{self.parallel} at a time"
            stdout_line(f"race: {len(self.entries)} runs, {how}: " + ", ".join(escape(e.label) for e in self.entries))
        try:
            if self.parallel == 1:
                self._sequential()
            else:
                self._parallel()
        finally:
            self._remove_unstarted()
        self._report()
        return self.exit_code()

    def _sequential(self) -> None:
        from tuitrain import session
        from tuitrain.signals import GracefulStop

        shared: dict[str, Any] = {}  # the loaded data set, by what it depends on
        terminal = not self.json_mode and sys.stdout is not None and sys.stdout.isatty()
        for entry in self.entries:
            if self.signum is not None:
                break
            key = repr((entry.config.data, entry.config.train.seed, entry.config.train.device))
            trainer, writer = session.new_run(
                entry.config, run_dir=entry.run_dir, data=shared.get(key), warn=warner(entry.label)
            )
            shared = {key: trainer.data}
            printer = BackgroundPrinter(OutputGuard(make_printer(entry, self.json_mode, self.lock, terminal)))
            trainer.consumers.append(printer)
            stopper = GracefulStop(trainer, notice=warner(entry.label)).install()
            try:
                ended: RunEnded = trainer.run()
            except (SystemExit, KeyboardInterrupt):
                writer.abort("stopped at once by a second signal")
                raise
            finally:
                stopper.uninstall()
                writer.close()
                printer.close()
            self.statuses[entry.name] = "failed" if writer.errors and ended.status != "diverged" else ended.status
            if stopper.signum is not None:
                self.signum = stopper.signum

    def _parallel(self) -> None:
        from tuitrain.threads import usable_cpus

        threads = self.threads or max(1, usable_cpus() // self.parallel)  # no oversubscribed cores
        waiting = list(self.entries)
        running: dict[str, subprocess.Popen[bytes]] = {}
        readers: list[threading.Thread] = []
        finished = threading.Condition()

        def forward(signum: int, frame: Any = None) -> None:
            self.signum = signum
            waiting.clear()  # nothing new starts
            for child in list(running.values()):
                child.send_signal(signum)  # the first one stops a child gently, a second at once

        previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            while waiting or running:
                while waiting and len(running) < self.parallel:
                    entry = waiting.pop(0)
                    child = self._spawn(entry, threads)
                    running[entry.name] = child
                    for stream, handle in (("out", child.stdout), ("err", child.stderr)):
                        reader = threading.Thread(
                            target=self._relay, args=(entry, stream, handle, finished), daemon=True
                        )
                        reader.start()
                        readers.append(reader)
                with finished:
                    finished.wait(0.2)
                for name, child in list(running.items()):
                    code = child.poll()
                    if code is not None:
                        del running[name]
                        self.statuses.setdefault(name, "interrupted" if code >= 128 else "failed")
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            for reader in readers:
                reader.join(5)

    def _spawn(self, entry: Entry, threads: int) -> subprocess.Popen[bytes]:
        command = [sys.executable, "-m", "tuitrain", "run", str(entry.run_dir / CONFIG)]
        command += ["--run-dir", str(entry.run_dir), "--json", "--threads", str(threads)]
        # a session of its own: a Ctrl-C on the terminal reaches the children once, through forward()
        return subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, start_new_session=True
        )

    def _relay(self, entry: Entry, stream: str, handle: Any, finished: threading.Condition) -> None:
        """A child's lines, tagged (JSON) or prefixed with its label (plain); its end event sets its status."""
        printer = make_printer(entry, self.json_mode, self.lock, live_bar=False)
        for raw in handle:
            text = raw.decode("utf-8", "replace").rstrip("\n")
            if stream == "err":
                stderr_line(f"[{escape(entry.label)}] {escape(text)}")
                continue
            try:
                event = event_from_dict(json.loads(text))
            except ValueError:
                event = None
            if event is None:
                continue
            if isinstance(event, RunEnded):
                self.statuses[entry.name] = event.status
            printer(event)
        with finished:
            finished.notify_all()

    def _remove_unstarted(self) -> None:
        """A race stopped early leaves no empty folders for the runs it never began."""
        for entry in self.entries:
            if {p.name for p in entry.run_dir.iterdir()} <= {CONFIG}:
                shutil.rmtree(entry.run_dir, ignore_errors=True)

    def _report(self) -> None:
        records = compare.load_run_records([e.run_dir for e in self.entries if e.run_dir.is_dir()])
        if self.json_mode:
            stdout_line(json.dumps({**compare.comparison(records), "event": "ranking"}))
            return
        stdout_line()
        stdout_line("ranking:")
        for line in compare.ranking_table(records):
            stdout_line(line)

    def exit_code(self) -> int:
        statuses = set(self.statuses.values())
        if self.signum is not None:
            return 128 + self.signum
        if statuses & {"failed", "crashed"} or len(self.statuses) < len(self.entries):
            return 1
        return 3 if "diverged" in statuses else 0


def warner(label: str) -> Callable[[str], None]:
    """A run's warnings on stderr, named: `[adam lr=0.1] Warning: ...`."""
    return lambda message: stderr_line(f"[{escape(label)}] Warning: {message}")


def planned(run_dirs: list[str]) -> list[Entry]:
    """The entries of a race planned earlier (its queued run directories), labelled by what differs."""
    from tuitrain.runs import check_run_dir, load_run_config

    paths = [check_run_dir(d) for d in run_dirs]
    records = compare.load_run_records(paths)
    return [Entry(label, load_run_config(p), p) for p, label in zip(paths, compare.labels(records))]


def run_race(preset: str, overrides: dict[str, Any], out: str | None, json_mode: bool, parallel: int = 1) -> int:
    """`tuitrain run PRESET --optimizer a,b --lr x,y [--parallel N]`."""
    if parallel < 1:
        raise UsageError("--parallel must be at least 1")
    entries = plan(preset, overrides, out)
    return Race(entries, json_mode, parallel, overrides.get("threads")).run()
