"""Provides the one-line run status: preset, device, progress, speed, ETA, lr, state, memory."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from tuitrain.fmt import fmt_duration
from tuitrain.tui.history import RunHistory
from tuitrain.vitals import Vitals

STATE_STYLES = {"running": "bold green", "paused": "bold yellow", "completed": "bold cyan", "interrupted": "bold magenta",
                "stopped": "bold magenta", "diverged": "bold red", "failed": "bold red", "starting": "dim"}


def fmt_vitals(vitals: Vitals | None) -> str:
    """The training process's resident memory and CPU (and GPU memory on CUDA)."""
    if vitals is None or not vitals.rss_bytes:
        return "-"
    text = f"{vitals.rss_bytes / 2**20:,.0f} MiB  cpu {vitals.cpu_percent:.0f}%"
    if vitals.cuda_bytes is not None:
        text += f"  gpu {vitals.cuda_bytes / 2**20:,.0f} MiB"
    return text


class StatusLine(Static):
    """Shows the run's state; `show_speed=False` hides timing-dependent fields (for snapshots)."""

    def __init__(self, *args, show_speed: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        self.show_speed = show_speed
        self.vitals: Vitals | None = None

    def show_vitals(self, vitals: Vitals | None) -> None:
        if vitals != self.vitals:
            self.vitals = vitals
            if getattr(self, "history", None) is not None:
                self.show(self.history)

    def show(self, h: RunHistory) -> None:
        self.history = h
        state = h.state
        head = Text(no_wrap=True, overflow="ellipsis")
        head.append(f" {state.upper()} ", STATE_STYLES.get(state, "bold"))
        head.append(f" {h.preset or '-'}", "bold").append(f" {h.device or '-'}")
        head.append("  epoch ", "dim").append(f"{h.epoch}/{h.epochs}" if h.epochs else "-")
        head.append("  step ", "dim").append(f"{h.step:,}/{h.total_steps:,}" if h.total_steps else f"{h.step:,}")
        head.append("  lr ", "dim").append(f"{h.lr:.4g}", "bold")
        if not self.show_speed:
            self.update(head)
            return
        tail = Text(no_wrap=True, overflow="ellipsis")
        tail.append(f"{h.samples_per_s:,.0f}").append(" samples/s", "dim")
        tail.append("  ETA ", "dim").append(fmt_duration(h.eta_seconds()))
        tail.append("  train process ", "dim").append(fmt_vitals(self.vitals))
        if self.vitals is not None and self.vitals.silent_seconds >= 5:
            tail.append(f"  not answering for {self.vitals.silent_seconds:.0f} s", "bold red")
        width = self.content_size.width or 80
        if head.cell_len + 2 + tail.cell_len <= width:
            self.update(head + Text("  ") + tail)
        else:  # narrow terminal: speed, ETA and memory on a second line
            self.update(head + Text("\n ") + tail)

    def on_resize(self) -> None:
        if getattr(self, "history", None) is not None:
            self.show(self.history)
