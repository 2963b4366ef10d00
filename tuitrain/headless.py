"""Provides the headless consumers of engine events: JSON lines, plain log lines, a rich live bar."""

from __future__ import annotations

import json
import sys
import time
from typing import IO, Any

from tuitrain.errors import escape
from tuitrain.events import EpochEnded, Event, Metrics, RunEnded, RunStarted, StepProgress, event_to_dict

JSON_EVENTS = ("start", "epoch", "end")


def fmt_metrics(m: Metrics | None) -> str:
    if m is None:
        return "loss      -"
    text = f"loss {m.loss:9.4g}"
    return text + (f"  acc {m.accuracy:7.2%}" if m.accuracy is not None else "")


def fmt_duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def describe_start(e: RunStarted) -> str:
    """One line; names and paths have their control characters escaped, so none reaches the terminal."""
    return (f"{escape(e.preset)}: {e.parameters:,} parameters on {e.device}; {e.train_samples:,} train / "
            f"{e.valid_samples:,} valid / {e.test_samples:,} test ({escape(e.data_source)}); "
            f"{e.epochs} epochs x {e.steps_per_epoch} steps")


def describe_end(e: RunEnded) -> str:
    head = f"{e.status}: {fmt_metrics(e.test).replace('loss', 'test loss', 1)}" if e.test else e.status
    tail = f"  ({e.train_seconds:.2f}s training, {e.samples_per_s:,.0f} samples/s)"
    return head + tail + (f"\n{escape(e.message)}" if e.message else "")


class JsonPrinter:
    """One JSON object per line: start, epoch and end events (step events are for files and UIs)."""

    def __init__(self, stream: IO[str] | None = None):
        self.stream = stream or sys.stdout

    def __call__(self, event: Event) -> None:
        if event.event in JSON_EVENTS:
            self.stream.write(json.dumps(event_to_dict(event)) + "\n")
            self.stream.flush()


class PlainPrinter:
    """Fixed-width columns, one row per epoch, no control characters: fit for nohup and log files."""

    def __init__(self, stream: IO[str] | None = None):
        self.stream = stream or sys.stdout
        self.epochs = 0
        self.accuracy = True

    def write(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()

    def header(self) -> str:
        acc = "  train_acc" if self.accuracy else ""
        vacc = "  valid_acc" if self.accuracy else ""
        width = max(5, 2 * len(str(self.epochs)) + 1)
        return f"{'epoch':>{width}}  train_loss{acc}  valid_loss{vacc}  seconds  samples/s"

    def row(self, e: EpochEnded) -> str:
        width = max(5, 2 * len(str(self.epochs)) + 1)
        text = f"{f'{e.epoch}/{self.epochs}':>{width}}  {e.train.loss:10.4g}"
        if self.accuracy:
            text += f"  {e.train.accuracy:9.2%}"
        text += f"  {e.valid.loss:10.4g}"
        if self.accuracy:
            text += f"  {e.valid.accuracy:9.2%}"
        return text + f"  {e.seconds:7.2f}  {e.samples_per_s:9,.0f}"

    def __call__(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            self.epochs, self.accuracy = event.epochs, event.task != "regression"
            self.write(describe_start(event))
            if event.run_dir:
                self.write(f"run directory: {escape(event.run_dir)}")
            self.write(self.header())
        elif isinstance(event, EpochEnded):
            self.write(self.row(event))
        elif isinstance(event, RunEnded):
            self.write(describe_end(event))


class RichProgress:
    """Live bar on a terminal (epoch, step, loss, accuracy, samples/s, ETA); epoch rows scroll above it,
    at most about one a second so thousand-epoch runs stay readable."""

    ROW_INTERVAL = 1.0  # seconds between printed epoch rows (the last epoch is always printed)

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        self.console = Console()
        self.progress = Progress(
            TextColumn("[bold]{task.fields[label]}"), BarColumn(bar_width=None), TextColumn("{task.percentage:>3.0f}%"),
            TextColumn("{task.fields[stats]}"), TimeRemainingColumn(), console=self.console, transient=True,
            expand=True)
        self.task: Any = None
        self.start: RunStarted | None = None
        self.plain = PlainPrinter()
        self.plain.write = self.write  # same formatting, written through the live console
        self.last_row = 0.0

    def write(self, text: str) -> None:
        self.console.print(text, highlight=False, markup=False, overflow="ellipsis", no_wrap=True)

    def __call__(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            self.start = event
            self.plain(event)
            done = event.start_epoch * event.steps_per_epoch
            self.progress.start()
            self.task = self.progress.add_task("train", total=event.epochs * event.steps_per_epoch,
                                               completed=done, label=f"epoch {event.start_epoch + 1}/{event.epochs}",
                                               stats="")
        elif isinstance(event, StepProgress) and self.task is not None:
            acc = f" acc {event.accuracy:.2%}" if event.accuracy is not None else ""
            self.progress.update(self.task, completed=event.step, label=f"epoch {event.epoch}/{self.start.epochs}",
                                 stats=f"loss {event.loss:.4g}{acc}  {event.samples_per_s:,.0f} samples/s")
        elif isinstance(event, EpochEnded):
            now = time.monotonic()
            if now - self.last_row >= self.ROW_INTERVAL or event.epoch == self.plain.epochs:
                self.last_row = now
                self.plain(event)
            if self.task is not None:
                self.progress.update(self.task, completed=event.step, label=f"epoch {event.epoch}/{self.start.epochs}")
        elif isinstance(event, RunEnded):
            self.progress.stop()
            self.plain(event)


def make_printer(json_mode: bool, stream: IO[str] | None = None) -> Any:
    if json_mode:
        return JsonPrinter(stream)
    if (stream or sys.stdout).isatty():
        return RichProgress()
    return PlainPrinter(stream)
