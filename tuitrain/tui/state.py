"""Provides the app's remembered choices (last preset, smoothing, log scale, output folder) in $XDG_STATE_HOME."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

DEFAULTS: dict[str, Any] = {"preset": None, "smoothing_index": 2, "log_y": False, "out": "runs"}
TYPES = {"preset": str, "smoothing_index": int, "log_y": bool, "out": str}


def state_file() -> Path:
    """$XDG_STATE_HOME/tuitrain/state.json (default ~/.local/state/tuitrain/state.json)."""
    return Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "tuitrain" / "state.json"


def load() -> dict[str, Any]:
    """The remembered choices; the defaults for any that are missing, damaged or of the wrong type."""
    state = dict(DEFAULTS)
    try:
        saved = json.loads(state_file().read_text())
    except (OSError, ValueError):
        return state
    if isinstance(saved, dict):
        for key, kind in TYPES.items():
            if type(saved.get(key)) is kind:  # exactly: True is no smoothing index
                state[key] = saved[key]
    return state


def remember(**changes: Any) -> None:
    """Save `changes` over what was remembered; a state folder that cannot be written is ignored."""
    state = {**load(), **changes}
    path = state_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".state.", suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(state, f)
        os.replace(tmp, path)
    except OSError:
        pass
