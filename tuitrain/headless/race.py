"""Provides races: every combination of comma-listed settings, trained from the same start, then ranked.

`tuitrain run rings --optimizer sgd,adam --lr 0.01,0.1` plans four runs (same seed, so the same
data and the same initial weights), makes each run directory when that run starts (the app's race,
`tuitrain train` with comma lists, makes them at once: status "queued" until each starts), trains
them one after another in this process (sharing the loaded data) or `--parallel N` at a time (at
most the usable CPUs) in child processes that split the CPUs between them, and ranks them.

SIGINT, SIGTERM or SIGHUP stop a race: the runs in progress stop at their next step and save
(resumable), the runs not begun are never made (a folder made for a run that had not begun
training is removed), and the ranking of what ran is printed. A child left behind by a killed
race stops too (and saves): its stdin is a pipe from the race, and its end of file stops it.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from tuitrain.config import Config, resolve_config
from tuitrain.errors import UsageError, escape
from tuitrain.events import Event, RunEnded, event_from_dict, event_to_dict
from tuitrain.headless.printers import (
    JSON_EVENTS,
    BackgroundPrinter,
    OutputGuard,
    PlainPrinter,
    RichProgress,
    stderr_line,
    stdout_line,
)
from tuitrain.runs import compare
from tuitrain.runs.signals import PARENT_ENV, STOP_SIGNALS
from tuitrain.store.run_dir import CONFIG, DEFAULT_OUT, METRICS, SUMMARY, RunDirError, _slug, create_run_dir
from tuitrain.training.threads import usable_cpus

# Every combination is a whole training run: 256 tiny ones already take hours on a laptop, the
# ranking and the comparison screen stop being readable long before, and a slip such as
# `--seed 0,1,...,9999` or several long lists multiplied together must be refused up front
# instead of planning thousands of runs (an interrupted race once left 5,622 queued folders).
MAX_COMBINATIONS = 256

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
    """One run of a race: its settings, its folder, and the name its output lines carry.

    `made`: the folder exists already (planned at once, or made by `start`), and is this race's;
    otherwise `run_dir` is only where it will be made when the run starts.
    """

    label: str  # "adam lr=0.1"
    config: Config
    run_dir: Path
    made: bool = True
    base: str = ""  # the name create_run_dir is given when the planned folder was taken meanwhile
    stamp: float = field(default_factory=time.time)

    @property
    def name(self) -> str:
        return self.run_dir.name

    def start(self) -> bool:
        """Make the folder of a run about to start (config.toml: queued until it trains).

        False when a folder made at planning is gone (deleted while the race went on): skip it.
        """
        if self.made:
            return (self.run_dir / CONFIG).is_file()
        try:
            self.run_dir.parent.mkdir(parents=True, exist_ok=True)
            self.run_dir.mkdir()  # atomic: the planned name, unless another process took it meanwhile
        except FileExistsError:
            self.run_dir = create_run_dir(self.run_dir.parent, self.base, now=self.stamp)
        except OSError as exc:
            raise RunDirError(
                f"cannot create a run directory in --out {self.run_dir.parent}: {exc.strerror or exc}"
            ) from None
        self.made = True
        try:
            (self.run_dir / CONFIG).write_text(self.config.to_toml(), encoding="utf-8")
        except OSError as exc:
            shutil.rmtree(self.run_dir, ignore_errors=True)
            raise RunDirError(f"cannot write in run directory {self.run_dir}: {exc.strerror or exc}") from None
        return True

    def untrained(self) -> bool:
        """This race's folder, and no run ever began in it (no summary, no metrics line)."""
        if not self.made or not self.run_dir.is_dir():
            return False
        if (self.run_dir / SUMMARY).exists():
            return False
        try:
            return (self.run_dir / METRICS).stat().st_size == 0
        except FileNotFoundError:
            return True
        except OSError:
            return False


def is_race(overrides: dict[str, Any]) -> bool:
    return any(isinstance(v, tuple) and len(v) > 1 for v in overrides.values())


def combinations(overrides: dict[str, Any]) -> list[dict[str, Any]]:
    """Every combination of the listed values (in SWEEPABLE order), each with the single-valued overrides.

    More than MAX_COMBINATIONS is bad input, refused before any is made.
    """
    listed = [k for k in SWEEPABLE if isinstance(overrides.get(k), tuple)]
    fixed = {k: v for k, v in overrides.items() if k not in listed}
    values = [overrides[k] for k in listed]
    count = math.prod(len(v) for v in values)
    if count > MAX_COMBINATIONS:
        sizes = " x ".join(f"{len(v)} --{k.replace('_', '-')}" for k, v in zip(listed, values, strict=True))
        raise UsageError(
            f"a race of {count} runs ({sizes}) is more than the {MAX_COMBINATIONS} one race may train: "
            "shorten the comma lists, or run several races"
        )
    return [{**fixed, **dict(zip(listed, combo, strict=True))} for combo in itertools.product(*values)]


def _fmt(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def plan(
    preset: str, overrides: dict[str, Any], out: str | os.PathLike[str] | None, *, make: bool = True
) -> list[Entry]:
    """Check every combination's configuration, then name its run directory.

    `make`: make every folder now (config.toml only: queued), for a follower that watches them from
    the start (the app); else each is made when its run starts (`Entry.start`), so a race stopped
    early leaves nothing for the runs it never began.
    """
    listed = [k for k in SWEEPABLE if isinstance(overrides.get(k), tuple)]
    combos = combinations(overrides)
    configs = [resolve_config(preset, **combo) for combo in combos]  # all checked before any folder is made
    root = Path(out or DEFAULT_OUT).expanduser()
    now = time.time()
    stamp = datetime.fromtimestamp(now).strftime("%Y%m%d-%H%M%S")
    taken: set[str] = set()
    entries = []
    for combo, config in zip(combos, configs, strict=True):
        suffix = "-".join(f"{SUFFIX[k]}{_fmt(combo[k])}" for k in listed)
        label = " ".join(f"{LABEL[k]}{_fmt(combo[k])}" for k in listed)
        base = f"{config.name}-{suffix}"
        if make:
            run_dir = create_run_dir(root, base)
            (run_dir / CONFIG).write_text(config.to_toml(), encoding="utf-8")
            entries.append(Entry(label, config, run_dir, True, base, now))
            continue
        name = f"{stamp}-{_slug(base)}"  # as create_run_dir names it: -2, -3, ... when taken
        n = 1
        while (candidate := name if n == 1 else f"{name}-{n}") in taken or (root / candidate).exists():
            n += 1
        taken.add(candidate)
        entries.append(Entry(label, config, root / candidate, False, base, now))
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
    """Trains a planned race and reports it; `run()` returns the exit code.

    `parallel` is capped at the usable CPUs (and the number of runs): the value used is
    `self.parallel`, which the `race` JSON line reports.
    """

    def __init__(self, entries: list[Entry], json_mode: bool, parallel: int = 1, threads: int | None = None):
        self.entries, self.json_mode = entries, json_mode
        self.parallel = max(1, min(parallel, len(entries), usable_cpus()))
        self.threads = threads
        self.lock = threading.Lock()
        self.statuses: dict[str, str] = {}
        self.signum: int | None = None  # the first stop signal
        self.signals = 0  # stop signals so far: a second leaves at once, a third kills the children
        self.sent: set[int] = set()  # signals this race sent its children
        self.waiting: list[Entry] = []
        self.running: dict[str, tuple[Entry, subprocess.Popen[bytes]]] = {}
        self.previous: dict[int, Any] = {}

    def run(self) -> int:
        self._install()
        try:
            self._announce()
            try:
                if self.signum is None:
                    if self.parallel == 1:
                        self._sequential()
                    else:
                        self._parallel()
            finally:
                self._remove_unstarted()
            self._report()
            return self.exit_code()
        finally:
            self._uninstall()

    # ------------------------------------------------------------------------- stop signals

    def _install(self) -> None:
        """The race's own handler for SIGINT/SIGTERM/SIGHUP, from the first line to the ranking.

        While a run trains in this process its GracefulStop stands in front of it; between runs (and
        around children) this one records the signal, so nothing new starts and the ranking prints.
        """
        if threading.current_thread() is not threading.main_thread():
            return
        for name in STOP_SIGNALS:
            sig = getattr(signal, name, None)
            # an ignored signal stays ignored: `nohup` (SIGHUP) and `cmd &` in scripts (SIGINT)
            if sig is not None and signal.getsignal(sig) is not signal.SIG_IGN:
                self.previous[sig] = signal.signal(sig, self._handle)

    def _uninstall(self) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        self.previous.clear()

    def _handle(self, signum: int, frame: Any = None) -> None:
        self.signals += 1
        first = self.signum is None
        if first:
            self.signum = signum
            self.waiting.clear()  # nothing new starts
        children = list(self.running.values())
        if not children:
            if not first:
                raise SystemExit(128 + signum)  # a second signal between runs: at once
            if signum != getattr(signal, "SIGHUP", None):  # SIGHUP: no terminal to tell
                notice(f"{signal.Signals(signum).name}: stopping the race (again to quit at once)")
            return
        for _, child in children:  # the first stops a child gently, a second at once, a third kills it
            self._send(child, signal.SIGKILL if self.signals > 2 else signum)

    def _send(self, child: subprocess.Popen[bytes], signum: int) -> None:
        self.sent.add(signum)
        try:
            child.send_signal(signum)
        except (ProcessLookupError, OSError):  # it has just ended
            pass

    # ------------------------------------------------------------------------- running

    def _announce(self) -> None:
        if self.json_mode:
            runs = [{"run": e.name, "label": e.label, "run_dir": str(e.run_dir)} for e in self.entries]
            stdout_line(json.dumps({"event": "race", "runs": runs, "parallel": self.parallel}))
        else:
            how = "one at a time" if self.parallel == 1 else f"{self.parallel} at a time"
            stdout_line(f"race: {len(self.entries)} runs, {how}: " + ", ".join(escape(e.label) for e in self.entries))

    def _start(self, entry: Entry) -> bool:
        """Make the folder of a run about to start; False (with a warning) when its queued folder is gone."""
        if entry.start():
            return True
        stderr_line(f"[{escape(entry.label)}] Warning: {escape(entry.run_dir)} was deleted while queued; skipped")
        self.statuses[entry.name] = "skipped"
        return False

    def _sequential(self) -> None:
        from tuitrain.runs import start as session
        from tuitrain.runs.signals import GracefulStop

        shared: dict[str, Any] = {}  # the loaded data set, by what it depends on
        terminal = not self.json_mode and sys.stdout is not None and sys.stdout.isatty()
        for entry in self.entries:
            if self.signum is not None:
                break
            if not self._start(entry):
                continue
            key = repr((entry.config.data, entry.config.train.seed, entry.config.train.device))
            trainer, writer = session.new_run(
                entry.config, run_dir=entry.run_dir, data=shared.get(key), warn=warner(entry.label)
            )
            shared = {key: trainer.data}
            stopper = GracefulStop(trainer, notice=warner(entry.label)).install()
            if self.signum is not None:  # stopped while it was set up: it never began (its folder goes)
                stopper.uninstall()
                writer.close()
                break
            printer = BackgroundPrinter(OutputGuard(make_printer(entry, self.json_mode, self.lock, terminal)))
            trainer.consumers.append(printer)
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
            if stopper.signum is not None and self.signum is None:
                self.signum = stopper.signum

    def _parallel(self) -> None:
        threads = self.threads or max(1, usable_cpus() // self.parallel)  # no oversubscribed cores
        self.waiting = list(self.entries)
        readers: dict[str, list[threading.Thread]] = {}
        finished = threading.Condition()
        try:
            self._schedule(threads, readers, finished)
        except BaseException:  # e.g. the next run's folder could not be made: the others stop and save
            for _, child in self.running.values():
                self._send(child, signal.SIGTERM)
            for _, child in self.running.values():
                try:
                    child.wait(60)
                except subprocess.TimeoutExpired:
                    child.kill()
            raise

    def _schedule(
        self, threads: int, readers: dict[str, list[threading.Thread]], finished: threading.Condition
    ) -> None:
        """Keep `parallel` children training until none is left to start and all have ended."""
        while self.waiting or self.running:
            while len(self.running) < self.parallel and self.signum is None:
                try:
                    entry = self.waiting.pop(0)
                except IndexError:  # all started, or a signal emptied the queue
                    break
                if not self._start(entry) or self.signum is not None:
                    continue  # a folder made as the signal came is removed at the end: it never began
                child = self._spawn(entry, threads)
                self.running[entry.name] = (entry, child)
                if self.signum is not None:  # the signal came while it was starting
                    self._send(child, self.signum)
                readers[entry.name] = []
                for stream, handle in (("out", child.stdout), ("err", child.stderr)):
                    reader = threading.Thread(target=self._relay, args=(entry, stream, handle, finished), daemon=True)
                    reader.start()
                    readers[entry.name].append(reader)
            with finished:
                finished.wait(0.2)
            for name, (entry, child) in list(self.running.items()):
                code = child.poll()
                if code is not None:
                    del self.running[name]
                    if child.stdin is not None:
                        child.stdin.close()
                    for reader in readers.pop(name, []):
                        reader.join(5)  # its last lines (the end event) first
                    self._child_ended(entry, code)

    def _child_ended(self, entry: Entry, code: int) -> None:
        """A child's status when it printed no end event; one line when a signal not ours killed it."""
        if entry.name in self.statuses:
            return
        if code < 0:
            sig = -code
            if self.signum is not None and sig in self.sent:  # stopped by this race before it began
                self.statuses[entry.name] = "interrupted"
                return
            try:
                name = signal.Signals(sig).name
            except ValueError:
                name = f"signal {sig}"
            stderr_line(f"[{escape(entry.label)}] Error: run {escape(entry.name)} was killed by {name}")
            self.statuses[entry.name] = "crashed"
            return
        self.statuses[entry.name] = "interrupted" if code >= 128 and self.signum is not None else "failed"

    def _spawn(self, entry: Entry, threads: int) -> subprocess.Popen[bytes]:
        command = [sys.executable, "-m", "tuitrain", "run", str(entry.run_dir / CONFIG)]
        command += ["--run-dir", str(entry.run_dir), "--json", "--threads", str(threads)]
        # its stdin: a pipe this process never writes to; its end of file (this process died, even
        # by SIGKILL) stops the child (tuitrain.runs.signals.follow_parent)
        env = {**os.environ, PARENT_ENV: str(os.getpid())}
        # a session of its own: a Ctrl-C on the terminal reaches the children once, through _handle()
        return subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.PIPE,
            start_new_session=True,
            env=env,
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
        """A race stopped early leaves no folders for the runs that never began (only this race's own)."""
        for entry in self.entries:
            if entry.untrained():
                shutil.rmtree(entry.run_dir, ignore_errors=True)

    def _report(self) -> None:
        records = compare.load_run_records([e.run_dir for e in self.entries if e.made and e.run_dir.is_dir()])
        try:
            if self.json_mode:
                stdout_line(json.dumps({**compare.comparison(records), "event": "ranking"}))
                return
            stdout_line()
            stdout_line("ranking:")
            for line in compare.ranking_table(records):
                stdout_line(line)
            if len(records) > 1:
                stdout_line()
                for line in compare.group_table(records):
                    stdout_line(line)
        except OSError:  # the terminal is gone (SIGHUP): the runs are saved all the same
            pass

    def exit_code(self) -> int:
        statuses = set(self.statuses.values())
        if self.signum is not None:
            return 128 + self.signum
        if statuses & {"failed", "crashed"} or len(self.statuses) < len(self.entries):
            return 1
        return 3 if "diverged" in statuses else 0


def notice(message: str) -> None:
    """The race's own notes on stderr; safe in a signal handler (stderr busy, closed or gone)."""
    try:
        stderr_line(f"Warning: {message}")
    except RuntimeError:  # a reentrant write: the handler interrupted a print to stderr
        pass


def warner(label: str) -> Callable[[str], None]:
    """A run's warnings on stderr, named: `[adam lr=0.1] Warning: ...`."""
    return lambda message: stderr_line(f"[{escape(label)}] Warning: {message}")


def planned(run_dirs: list[str]) -> list[Entry]:
    """The entries of a race planned earlier (its queued run directories), labelled by what differs."""
    from tuitrain.store.run_dir import check_run_dir, load_run_config

    paths = [check_run_dir(d) for d in run_dirs]
    records = compare.load_run_records(paths)
    return [Entry(label, load_run_config(p), p) for p, label in zip(paths, compare.labels(records), strict=True)]


def run_race(preset: str, overrides: dict[str, Any], out: str | None, json_mode: bool, parallel: int = 1) -> int:
    """`tuitrain run PRESET --optimizer a,b --lr x,y [--parallel N]`."""
    if parallel < 1:
        raise UsageError("--parallel must be at least 1")
    entries = plan(preset, overrides, out, make=False)  # each folder is made when its run starts
    cpus = usable_cpus()
    if min(parallel, len(entries)) > cpus:
        stderr_line(f"Warning: --parallel {parallel} is more than the {cpus} usable CPUs: {cpus} runs at a time")
    return Race(entries, json_mode, parallel, overrides.get("threads")).run()
