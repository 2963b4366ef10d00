"""Provides the headless consumers of engine events: JSON lines, plain log lines, a rich live bar."""

from __future__ import annotations

import json
import os
import queue
import sys
import threading
import time
from collections.abc import Callable
from typing import IO, Any

from tuitrain.errors import escape
from tuitrain.events import EpochEnded, Event, Metrics, Recovery, RunEnded, RunStarted, StepProgress, event_to_dict
from tuitrain.fmt import fmt_age, fmt_metrics, fmt_score, plural
from tuitrain.runs.compare import RunRecord, align
from tuitrain.training.postmortem import describe_diagnosis

JSON_EVENTS = ("start", "epoch", "recovery", "end")


def describe_start(e: RunStarted) -> str:
    """One line; names and paths have their control characters escaped, so none reaches the terminal."""
    return (
        f"{escape(e.preset)}: {e.parameters:,} parameters on {e.device}; {e.train_samples:,} train / "
        f"{e.valid_samples:,} valid / {e.test_samples:,} test ({escape(e.data_source)}); "
        f"{plural(e.epochs, 'epoch')} x {plural(e.steps_per_epoch, 'step')}"
    )


def describe_end(e: RunEnded) -> str:
    head = f"{e.status}: {fmt_metrics(e.test).replace('loss', 'test loss', 1)}" if e.test else e.status
    tail = f"  ({e.train_seconds:.2f}s training, {e.samples_per_s:,.0f} samples/s)"
    post_mortem = describe_diagnosis(e.diagnosis)  # a diverged run's: where it started, what grew, what next
    return (
        head
        + tail
        + (f"\n{escape(e.message)}" if e.message else "")
        + (f"\n{escape(post_mortem)}" if post_mortem else "")
    )


def describe_recovery(e: Recovery) -> str:
    return (
        f"diverged at step {e.diverged_step:,} (lr {e.lr:g}): back to the checkpoint at step {e.step:,} "
        f"(epoch {e.epoch}) with lr {e.new_lr:g} [recovery {e.attempt}]"
    )


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

    def __init__(self, stream: IO[str] | None = None, write: Callable[[str], None] | None = None):
        self.stream = stream or sys.stdout
        self.write = write or self.write_line
        self.epochs = 0
        self.accuracy = True
        self.recovered = False  # a Recovery was printed: the run's next start is a rollback, not a new run

    def write_line(self, text: str) -> None:
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
            if self.recovered:  # the recovery line said where it goes back to: no second header
                self.recovered = False
                return
            self.write(describe_start(event))
            if event.run_dir:
                self.write(f"run directory: {escape(event.run_dir)}")
            self.write(self.header())
        elif isinstance(event, EpochEnded):
            self.write(self.row(event))
        elif isinstance(event, Recovery):
            self.recovered = True
            self.write(describe_recovery(event))
        elif isinstance(event, RunEnded):
            self.write(describe_end(event))


class RecoverableEnd:
    """Passes events on, except a diverged end that `--on-diverge recover` rolls back from: the
    recovery line that follows says it (one divergence, one message)."""

    def __init__(self, printer: Callable[[Event], None]):
        self.printer = printer

    def __call__(self, event: Event) -> None:
        if not (isinstance(event, RunEnded) and event.status == "diverged"):
            self.printer(event)


def same_file(a: Any, b: Any) -> bool:
    """Whether two streams write to the same place (`2>&1`, one terminal): a line for both is shown twice."""
    try:
        sa, sb = os.fstat(a.fileno()), os.fstat(b.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


class RichProgress:
    """Live bar on a terminal (epoch, step, loss, accuracy, samples/s, ETA); epoch rows scroll above it,
    at most about one a second so thousand-epoch runs stay readable."""

    ROW_INTERVAL = 1.0  # seconds between printed epoch rows (the last epoch is always printed)

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        self.console = Console()
        self.progress = Progress(
            TextColumn("[bold]{task.fields[label]}"),
            BarColumn(bar_width=None),
            TextColumn("{task.percentage:>3.0f}%"),
            TextColumn("{task.fields[stats]}"),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
            expand=True,
        )
        self.task: Any = None
        self.plain = PlainPrinter(write=self.write)  # same formatting, written through the live console
        self.last_row = 0.0

    def write(self, text: str) -> None:
        self.console.print(text, highlight=False, markup=False, overflow="ellipsis", no_wrap=True)

    def __call__(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            self.plain(event)
            done = event.start_epoch * event.steps_per_epoch
            if self.task is not None:  # a recovery starts over from a checkpoint: one bar, not two
                self.progress.remove_task(self.task)
            self.progress.start()
            self.task = self.progress.add_task(
                "train",
                total=event.epochs * event.steps_per_epoch,
                completed=done,
                label=f"epoch {event.start_epoch + 1}/{event.epochs}",
                stats="",
            )
        elif isinstance(event, StepProgress) and self.task is not None:
            acc = f" acc {event.accuracy:.2%}" if event.accuracy is not None else ""
            self.progress.update(
                self.task,
                completed=event.step,
                label=f"epoch {event.epoch}/{self.plain.epochs}",
                stats=f"loss {event.loss:.4g}{acc}  {event.samples_per_s:,.0f} samples/s",
            )
        elif isinstance(event, EpochEnded):
            now = time.monotonic()
            if now - self.last_row >= self.ROW_INTERVAL or event.epoch == self.plain.epochs:
                self.last_row = now
                self.plain(event)
            if self.task is not None:
                self.progress.update(self.task, completed=event.step, label=f"epoch {event.epoch}/{self.plain.epochs}")
        elif isinstance(event, Recovery):
            self.plain(event)
        elif isinstance(event, RunEnded):
            self.progress.stop()
            # wrapped, not cut at the terminal's width: a diverged run's post-mortem is a paragraph
            self.console.print(describe_end(event), highlight=False, markup=False)


def make_printer(json_mode: bool, stream: IO[str] | None = None) -> Callable[[Event], None]:
    """JSON lines, a live bar on a terminal, or plain lines; nothing at all when stdout is closed."""
    out = stream or sys.stdout
    if out is None:  # started with stdout closed (`>&-`)
        return lambda event: None
    if json_mode:
        return JsonPrinter(out)
    try:
        terminal = out.isatty()
    except (OSError, ValueError):
        terminal = False
    return RichProgress() if terminal and stream is None else PlainPrinter(out)


class OutputGuard:
    """Wraps a printer so output that cannot be written (a closed SSH session, a full log disk,
    a closed stdout) never ends training: the first failure warns once on stderr, then printing stops."""

    def __init__(self, printer: Callable[[Event], None], warn: Callable[[str], None] | None = None):
        self.printer: Callable[[Event], None] | None = printer
        self.warn = warn or stderr_line

    def __call__(self, event: Event) -> None:
        if self.printer is None:
            return
        try:
            self.printer(event)
        except (OSError, ValueError, AttributeError) as exc:  # EIO/EPIPE/ENOSPC, closed file, no stream
            self.printer = None
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
            self.warn(f"Warning: cannot write progress output ({reason}); training and its run directory go on")


class BackgroundPrinter:
    """Prints from a thread of its own, in order: training (and its signal handling) never waits on a
    slow or blocked terminal or pipe. When the queue is full, step events are dropped first."""

    CAPACITY = 10_000  # events waiting to be printed

    def __init__(self, printer: Callable[[Event], None]):
        self.printer = printer
        self.queue: queue.Queue[Event | None] = queue.Queue(self.CAPACITY)
        self.dropped = 0
        self.thread = threading.Thread(target=self._print, daemon=True, name="tuitrain-printer")
        self.thread.start()

    def __call__(self, event: Event) -> None:
        try:
            self.queue.put_nowait(event)
        except queue.Full:
            self.dropped += 1

    def _print(self) -> None:
        while (event := self.queue.get()) is not None:
            self.printer(event)

    def close(self, timeout: float = 5.0) -> None:
        """Let what is queued be printed, waiting at most `timeout` seconds for a blocked output."""
        try:
            self.queue.put(None, timeout=timeout)
        except queue.Full:
            return
        self.thread.join(timeout)


def stderr_line(text: str) -> None:
    """One line on stderr, best effort (stderr may be closed or full too)."""
    try:
        print(text, file=sys.stderr, flush=True)
    except (OSError, ValueError, AttributeError):
        pass


def stdout_line(text: str = "") -> None:
    print(text, flush=True)


# ----------------------------------------------------------------------------- runs, eval


def runs_table(records: list[RunRecord], now: float | None = None) -> list[str]:
    """`tuitrain runs`: one aligned line per run under a header."""
    now = time.time() if now is None else now
    table = [
        ("RUN", "PRESET", "STATUS", "EPOCHS", "OPTIMIZER", "LR", "BATCH", "BEST VALID", "LAST VALID", "TEST", "AGE")
    ]
    for r in records:
        epochs = f"{r.epoch if r.epoch is not None else '?'}/{r.epochs if r.epochs is not None else '?'}"
        table.append(
            (
                escape(r.name),
                escape(r.preset),
                escape(r.status),
                epochs,
                escape(r.optimizer),
                f"{r.lr:g}" if r.lr is not None else "?",
                str(r.batch_size) if r.batch_size is not None else "?",
                fmt_score(r.best_valid),
                fmt_score(r.last_valid),
                fmt_score(r.test),
                fmt_age(now - r.updated_at),
            )
        )
    return align(table)


def eval_lines(
    name: str, which: str, epoch: int, epoch_step: int, step: int, valid: Metrics, test: Metrics
) -> list[str]:
    where = f"epoch {epoch}" + (f" (+{epoch_step} steps)" if epoch_step else "")
    return [
        f"{name}, {which} checkpoint at {where}, step {step}",
        f"valid {fmt_metrics(valid)}",
        f"test  {fmt_metrics(test)}",
    ]
