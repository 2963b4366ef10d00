"""Provides the run status line (one or two lines): state, preset, device, progress, lr, speed, ETA, memory."""

from __future__ import annotations

import os
import resource

from rich.text import Text
from textual.widgets import Static

from tuitrain.tui.history import RunHistory
from tuitrain.tui.widgets.render import fit_phrases

STATE_STYLES = {"starting": "dim", "running": "bold green", "paused": "bold yellow", "completed": "bold cyan",
                "stopped": "bold magenta", "interrupted": "bold magenta", "aborted": "bold magenta",
                "diverged": "bold red", "failed": "bold red"}


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


def progress(h: RunHistory) -> Text:
    """Epochs completed (the count the end banner uses), plus the steps into the epoch in progress."""
    text = Text("epochs ", "dim").append(f"{h.epochs_done}/{h.epochs}" if h.epochs else "-")
    extra = h.steps_into_epoch
    if extra and h.epochs_done < h.epochs:
        text.append(f" +{extra:,} step" + ("" if extra == 1 else "s"), "dim")
    return text


def eta_text(h: RunHistory) -> Text:
    seconds = h.eta_seconds()
    if seconds is not None:
        return Text("ETA ", "dim").append(fmt_duration(seconds))
    return Text("ETA …", "dim") if h.state == "running" else Text("")


class StatusLine(Static):
    """Shows the run's state; `show_speed=False` hides timing-dependent fields (for snapshots).

    At most two lines, broken only between fields; when even two are too narrow the least
    important fields (memory, then ETA, then speed) are left out rather than cut in half."""

    def __init__(self, *args, show_speed: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        self.show_speed = show_speed
        self.history: RunHistory | None = None

    def phrases(self, h: RunHistory) -> list[Text]:
        state = Text(f" {h.state.upper()} ", STATE_STYLES.get(h.state, "bold"))
        where = Text(h.preset or "-", "bold").append(f" {h.device}" if h.device else "")
        step = Text("step ", "dim").append(f"{h.step:,}/{h.total_steps:,}" if h.total_steps else f"{h.step:,}")
        lr = Text("lr ", "dim").append(f"{h.lr:.4g}", "bold")
        out = [state, where, progress(h), step, lr]
        if self.show_speed:
            out += [Text(f"{h.samples_per_s:,.0f}").append(" samples/s", "dim"), eta_text(h),
                    Text("mem ", "dim").append(memory_in_use(h.device))]
        return out

    def show(self, h: RunHistory) -> None:
        self.history = h
        width = self.content_size.width or 80
        self.update(fit_phrases(self.phrases(h), width, max_lines=2))

    def on_resize(self) -> None:
        if self.history is not None:
            self.show(self.history)
