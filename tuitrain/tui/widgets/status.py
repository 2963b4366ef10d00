"""Provides the run status line (one or two lines): state, preset, device, progress, lr, speed, ETA, memory."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widgets import Static

from tuitrain.fmt import fmt_duration
from tuitrain.training.vitals import Vitals
from tuitrain.tui.series import RunHistory
from tuitrain.tui.widgets.render import fit_phrases

STATE_STYLES = {
    "starting": "dim",
    "running": "bold green",
    "paused": "bold yellow",
    "completed": "bold cyan",
    "stopped": "bold magenta",
    "interrupted": "bold magenta",
    "aborted": "bold magenta",
    "diverged": "bold red",
    "failed": "bold red",
    "crashed": "bold red",
}


def fmt_vitals(vitals: Vitals | None) -> str:
    """The training process's resident memory and CPU (and GPU memory on CUDA)."""
    if vitals is None or not vitals.rss_bytes:
        return "-"
    text = f"{vitals.rss_bytes / 2**20:,.0f} MiB  cpu {vitals.cpu_percent:.0f}%"
    if vitals.cuda_bytes is not None:
        text += f"  gpu {vitals.cuda_bytes / 2**20:,.0f} MiB"
    return text


def progress(h: RunHistory) -> Text:
    """Epochs completed (the count the end banner uses), plus the steps into the epoch in progress."""
    text = Text("epochs ", "dim").append(f"{h.epochs_done}/{h.epochs}" if h.epochs else "-")
    extra = h.steps_into_epoch
    if extra and h.epochs_done < h.epochs:
        text.append(f" +{extra:,} step" + ("" if extra == 1 else "s"), "dim")
    if h.lost_to > h.epochs_done:  # crashed: counted to its last checkpoint, as `tuitrain runs` counts it
        first = h.epochs_done + 1
        text.append(f" ({first}-{h.lost_to} lost)" if h.lost_to > first else f" ({first} lost)", "red")
    return text


def eta_text(h: RunHistory) -> Text:
    seconds = h.eta_seconds()
    if seconds is not None:
        return Text("ETA ", "dim").append(fmt_duration(seconds))
    return Text("ETA …", "dim") if h.state == "running" else Text("")


# kept free from the start for what a run adds: its device, epochs and steps, the process's vitals
# (~32 columns) and numbers that grow
GROWTH_ROOM = Text(" " * 64)


class StatusLine(Static):
    """Shows the run's state; `show_speed=False` hides timing-dependent fields (for snapshots).

    At most two lines, broken only between fields; when even two are too narrow the least
    important fields (memory, then ETA, then speed) are left out rather than cut in half."""

    def __init__(self, *args: Any, show_speed: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.show_speed = show_speed
        self.history: RunHistory | None = None
        self.vitals: Vitals | None = None
        self.read_only = False  # a watched run: say so
        self._shown: Text | None = None
        self._least = 0  # lines: the height stays at least this at this width (see show)
        self._width = 0

    def show_vitals(self, vitals: Vitals | None) -> None:
        if vitals != self.vitals:
            self.vitals = vitals
            if self.history is not None:
                self.show(self.history)

    def phrases(self, h: RunHistory) -> list[Text]:
        state = Text(f" {h.state.upper()} ", STATE_STYLES.get(h.state, "bold"))
        if self.read_only:
            state.append(" watching, read-only", "dim")
        where = Text(h.preset or "-", "bold").append(f" {h.device}" if h.device else "")
        if (h.config or {}).get("train", {}).get("precision") == "bf16":
            where.append(" bf16")
        step = Text("step ", "dim").append(f"{h.step:,}/{h.total_steps:,}" if h.total_steps else f"{h.step:,}")
        lr = Text("lr ", "dim").append(f"{h.lr:.4g}", "bold")
        out = [state, where, progress(h), step, lr]
        if self.vitals is not None and self.vitals.silent_seconds >= 5:
            out.append(Text(f"not answering for {self.vitals.silent_seconds:.0f} s", "bold red"))
        if self.show_speed:
            out += [Text(f"{h.samples_per_s:,.0f}").append(" samples/s", "dim"), eta_text(h)]
            if self.vitals is not None and self.vitals.rss_bytes:
                out.append(Text("train process ", "dim").append(fmt_vitals(self.vitals)))
        return out

    def show(self, h: RunHistory) -> None:
        self.history = h
        width = self.content_size.width or 80
        if width != self._width:  # the height fits the new width
            self._width, self._least = width, 0
        phrases = self.phrases(h)
        text = fit_phrases(phrases, width, max_lines=2)
        lines = text.plain.count("\n") + 1
        if self.show_speed:
            lines = max(lines, fit_phrases([*phrases, GROWTH_ROOM], width, max_lines=2).plain.count("\n") + 1)
        # A new layout (every widget placed again, the whole screen drawn: ~50 ms on a small machine,
        # as long as a chart) only when the height changes, so the height is kept from the start of
        # a run to its end, and changes only with the terminal's width.
        lines = self._least = max(lines, self._least)
        text.append("\n" * (lines - 1 - text.plain.count("\n")))
        if text == self._shown:
            return
        shown = self._shown.plain.count("\n") + 1 if self._shown is not None else 0
        self.update(text, layout=lines != shown)
        self._shown = text

    def on_resize(self) -> None:
        if self.history is not None:
            self.show(self.history)
