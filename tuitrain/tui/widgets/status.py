"""Provides the one-line run status: preset, device, progress, speed, ETA, lr, state, memory."""

from __future__ import annotations

import os
import resource

from rich.text import Text
from textual.widgets import Static

from tuitrain.tui.history import RunHistory

STATE_STYLES = {"running": "bold green", "paused": "bold yellow", "completed": "bold cyan", "interrupted": "bold magenta",
                "stopped": "bold magenta", "diverged": "bold red", "failed": "bold red", "starting": "dim"}


def memory_in_use(device: str = "cpu") -> str:
    """Resident memory of this process (plus CUDA memory allocated by torch, when on a GPU)."""
    try:
        with open("/proc/self/statm") as handle:
            rss = int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    text = f"{rss / 2**20:,.0f} MiB"
    if device.startswith("cuda"):
        try:
            import torch

            text += f" + GPU {torch.cuda.memory_allocated() / 2**20:,.0f} MiB"
        except Exception:  # noqa: BLE001 - memory display must never break the UI
            pass
    return text


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(max(0, seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class StatusLine(Static):
    """Shows the run's state; `show_speed=False` hides timing-dependent fields (for snapshots)."""

    def __init__(self, *args, show_speed: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        self.show_speed = show_speed

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
        tail.append("  mem ", "dim").append(memory_in_use(h.device))
        width = self.content_size.width or 80
        if head.cell_len + 2 + tail.cell_len <= width:
            self.update(head + Text("  ") + tail)
        else:  # narrow terminal: speed, ETA and memory on a second line
            self.update(head + Text("\n ") + tail)

    def on_resize(self) -> None:
        if getattr(self, "history", None) is not None:
            self.show(self.history)
