"""Provides the screen as a picture: the app's current screen saved as SVG, named by time and panel."""

from __future__ import annotations

import time
from pathlib import Path

from textual.app import App

from tuitrain.files import write_output


def screenshot_name(panel: str, now: float | None = None) -> str:
    """`screen-20261206-031502-charts.svg`: sorts by time; the panel says what it shows."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in panel) or "screen"
    return f"screen-{stamp}-{safe}.svg"


def save_screen(app: App[object], folder: str | Path, panel: str) -> Path:
    """Write what `app` shows now into `folder` (atomically: a viewer never opens half a file).
    Two saves in the same second get `-2`, `-3`, ... rather than one replacing the other."""
    svg = app.export_screenshot(title=f"tuitrain - {panel}")
    folder = Path(folder).expanduser()
    name = screenshot_name(panel)
    target = folder / name
    count = 1
    while target.exists():
        count += 1
        target = folder / name.replace(".svg", f"-{count}.svg")
    write_output(target, lambda path: path.write_text(svg, encoding="utf-8"))
    return target
