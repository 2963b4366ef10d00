"""A seeded, time-bounded fuzz of the dashboard in a real terminal (tmux).

A random sequence of every documented dashboard key (plus the keys that answer its dialogs),
interleaved with terminal resizes, in two colour modes. Afterwards the app must still answer
keys, quit with exit code 0 and leave no traceback or crash log.

Replay or widen: TUITRAIN_FUZZ_SEEDS=7,8,9 TUITRAIN_FUZZ_KEYS=300 pytest tests/test_fuzz.py
(the seed is in the test id and in every failure message; the keys sent, with their times, are in
keys.txt; TUITRAIN_FUZZ_TEXTUAL_LOG=1 adds Textual's log of every message, TUITRAIN_FUZZ_KEEP=1 keeps
the tmux session of a failure to look at).
"""

from __future__ import annotations

import os
import random
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tuitrain.tui.screens.dashboard import Dashboard

ROOT = Path(__file__).resolve().parents[1]
SEEDS = [int(s) for s in os.environ.get("TUITRAIN_FUZZ_SEEDS", "20261").split(",")]
KEYS = int(os.environ.get("TUITRAIN_FUZZ_KEYS", "150"))
RESIZES = max(1, KEYS // 10)
COLOUR_MODES = {
    "256": {"TERM": "tmux-256color"},
    "no-color": {"TERM": "tmux-256color", "NO_COLOR": "1"},
}
if os.environ.get("TUITRAIN_FUZZ_TERM"):  # by hand, e.g. TUITRAIN_FUZZ_TERM=xterm for 16 colours
    COLOUR_MODES = {os.environ["TUITRAIN_FUZZ_TERM"]: {"TERM": os.environ["TUITRAIN_FUZZ_TERM"]}}
ANSI = re.compile(r"\x1b(\[[0-9;?<>]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)|[()][0-9A-Za-z]|[=>78MDEc])")
QUITTING = {"q", "ctrl+q", "ctrl+c", "N"}  # these end the app (N leaves the dashboard): never sent at random

# The help's key names (Textual's format_key) → tmux send-keys arguments; one character goes literally (-l).
TMUX_KEYS = {
    "space": "Space",
    "tab": "Tab",
    "shift+tab": "BTab",
    "enter": "Enter",
    "esc": "Escape",
    "escape": "Escape",
    "⌫": "BSpace",
    "backspace": "BSpace",
    "ctrl+p": "C-p",
    "pgup": "PPage",
    "pgdn": "NPage",
    "up": "Up",
    "down": "Down",
    "left": "Left",
    "right": "Right",
    "↑": "Up",
    "↓": "Down",
    "←": "Left",
    "→": "Right",
    "home": "Home",
    "end": "End",
}
EXTRA = ["escape", "up", "down", "left", "right", "pgup", "pgdn", "=", "y", "n", "backspace"]


def documented_keys() -> list[str]:
    """Every key of the dashboard's help (the README table), as the help names them."""
    keys = []
    for label, _ in Dashboard.key_rows():
        for key in label.replace(" / ", ", ").split(", "):
            parts = key.split()  # "↑ ↓ ← →": several one-glyph keys in one row
            keys += parts if all(len(p) == 1 for p in parts) else [key.strip()]
    return keys


def fuzz_keys() -> list[str]:
    keys = [k for k in documented_keys() if k not in QUITTING] + EXTRA
    return sorted(set(keys), key=keys.index)


def tmux_args(key: str) -> list[str]:
    if key in TMUX_KEYS:
        return [TMUX_KEYS[key]]
    assert len(key) == 1, f"no tmux name for key {key!r}"
    return ["-l", key]


def test_every_documented_key_is_fuzzed():
    keys = fuzz_keys()
    assert not QUITTING & set(keys)
    for key in documented_keys():
        assert key in QUITTING or key in keys
        assert key in QUITTING or tmux_args(key)
    for key in (
        "tab",
        "shift+tab",
        "1",
        "2",
        "3",
        "enter",
        "esc",
        ",",
        ".",
        "m",
        "?",
        "ctrl+p",
        "l",
        "[",
        "]",
        "+",
        "-",
        "space",
        "n",
        "s",
        "r",
        "R",
        "up",
        "pgup",
        "pgdn",
        "g",
        "←",
        "home",
        "end",
    ):
        assert key in keys, key


def parameters_shown(screen: str) -> bool:
    """The parameter table's header, or a tensor's drill-down (the table's place), is on the screen."""
    return bool(re.search(r"shape +count +mean", screen) or re.search(r"shape \(.*values", screen))


class Terminal:
    """One tmux session on a private server (its own socket file), so no other tmux is touched."""

    def __init__(self, name: str, width: int = 120, height: int = 40):
        self.socket = str(Path(tempfile.gettempdir()) / name)  # short: a socket path has ~100 bytes at most
        self.session = name
        self.size = (width, height)

    def tmux(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["tmux", "-S", self.socket, "-f", "/dev/null", *args],
            capture_output=True,
            text=True,
            check=check,
            timeout=10,
        )

    def start(self, command: str) -> None:
        width, height = self.size
        self.tmux(
            "new-session",
            "-d",
            "-s",
            self.session,
            "-x",
            str(width),
            "-y",
            str(height),
            command,
            ";",
            "set-option",
            "-t",
            self.session,
            "remain-on-exit",
            "on",
        )

    def send(self, *args: str) -> None:
        self.tmux("send-keys", "-t", self.session, *args)

    def resize(self, width: int, height: int) -> None:
        self.tmux("resize-window", "-t", self.session, "-x", str(width), "-y", str(height))
        self.size = (width, height)

    def pane(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", self.session, check=False).stdout

    def close(self) -> None:
        self.tmux("kill-server", check=False)
        Path(self.socket).unlink(missing_ok=True)


def run_fuzz(tmp_path: Path, seed: int, colour_env: dict[str, str], keys: int = KEYS) -> None:
    """`keys` random keys with about a tenth as many resizes, then: alive? answers? quits cleanly?"""
    rng = random.Random(seed)
    marker, err, log = tmp_path / "exit", tmp_path / "err.txt", tmp_path / "keys.txt"
    out, state = tmp_path / "out", tmp_path / "state"
    env = {
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH", "")])),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "XDG_STATE_HOME": str(state),
        **colour_env,
    }
    if os.environ.get("TUITRAIN_FUZZ_TEXTUAL_LOG"):  # every key, message and action, to replay a failure
        env["TEXTUAL_LOG"] = str(tmp_path / "textual.log")
    settings = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
    unset = " ".join(f"-u {k}" for k in ("COLORTERM", "NO_COLOR", "FORCE_COLOR", "TEXTUAL") if k not in env)
    # Textual draws on stderr (its driver writes to sys.__stderr__), so stderr cannot simply go to a
    # file: tee keeps a copy (the UI's bytes and whatever else is written there) and passes it on.
    script = tmp_path / "run.sh"
    script.write_text(
        f"cd {shlex.quote(str(tmp_path))} || exit\n"
        f"env {unset} {settings} {shlex.quote(sys.executable)} -m tuitrain train rings "
        f"--epochs 100000 --out {shlex.quote(str(out))} 2> >(tee {shlex.quote(str(err))} >&2)\n"
        f"echo $? > {shlex.quote(str(marker))}\n"
    )
    term = Terminal(f"fuzz-{os.getpid()}-{seed}-{len(colour_env)}")
    sent: list[tuple[float, str]] = []  # (time, key or <what else happened>): keys.txt and failure messages
    quitting = False

    def note(what: str) -> None:
        sent.append((time.time(), what))

    def crash_logs() -> list[Path]:
        return sorted(out.rglob("crash.log")) + sorted(state.rglob("crash-*.log"))

    def stderr_traceback() -> str:
        text = ANSI.sub("", err.read_text(errors="replace")) if err.exists() else ""
        return text[text.find("Traceback") :][:4000] if "Traceback" in text else ""

    def fail(why: str) -> None:
        crashes = "".join(f"\n{path}:\n{path.read_text()[-4000:]}" for path in crash_logs())
        traceback = stderr_traceback()
        last = " ".join(what for _, what in sent[-30:])
        raise AssertionError(
            f"fuzz seed {seed} ({colour_env}): {why}\nlast keys: {last}\nall keys: {log}\n"
            f"stderr (with the UI): {err}\nscreen:\n{term.pane()}{crashes}"
            + (f"\ntraceback on stderr:\n{traceback}" if traceback else "")
        )

    def wait_for(condition, what: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if marker.exists() and not quitting:
                fail(f"the app ended (exit code {marker.read_text().strip()}) while waiting for {what}")
            if time.monotonic() > deadline:
                fail(f"timed out waiting for {what}")
            time.sleep(0.1)

    def press(key: str) -> None:
        note(key)
        term.send(*tmux_args(key))

    pool = fuzz_keys()
    resize_at = set(rng.sample(range(keys), RESIZES))
    term.start(f"bash {shlex.quote(str(script))}")
    try:
        wait_for(lambda: "RUNNING" in term.pane(), "the dashboard")
        for i in range(keys):
            if i in resize_at:
                width, height = rng.randint(40, 200), rng.randint(12, 50)
                note(f"<{width}x{height}>")
                term.resize(width, height)
            key = rng.choice(pool)
            press(key)
            if key == "ctrl+p":  # the palette: mostly just close it; sometimes run a command from it
                time.sleep(rng.uniform(0.1, 0.3))
                if rng.random() < 0.3:
                    query = rng.choice(
                        [
                            "0.05",
                            "lr 1e3",
                            "log",
                            "smooth",
                            "panel",
                            "tensor",
                            "step",
                            "stop",
                            "restart",
                            "recover",
                            "keys",
                        ]
                    )
                    note(f"<type {query!r}>")
                    term.send("-l", query)
                    time.sleep(0.2)
                    press(rng.choice(["enter", "down", "escape"]))
                    time.sleep(0.05)
                press("escape")
            time.sleep(rng.uniform(0.03, 0.06))
            if i % 25 == 24 and marker.exists():
                fail("the app ended during the random phase")

        # Still alive and answering: close whatever is open, then switch panels and see them change.
        term.resize(120, 40)
        for _ in range(3):
            press("escape")
            time.sleep(0.2)
        press("1")
        wait_for(lambda: not parameters_shown(term.pane()), "the charts panel after '1'")
        press("2")
        wait_for(lambda: parameters_shown(term.pane()), "the parameters panel after '2'")

        quitting = True
        press("q")
        wait_for(lambda: "quit?" in term.pane() or marker.exists(), "quit to ask or leave")
        if not marker.exists():
            press("y")
        wait_for(marker.exists, "the app to exit", timeout=40)
        code = marker.read_text().strip()
        if code != "0":
            fail(f"exit code {code}")
        if "Traceback" in term.pane():
            fail("a traceback on the screen")
        if stderr_traceback() or "internal error" in err.read_text(errors="replace"):
            fail("a traceback on stderr")
        if crash_logs():
            fail("a crash log was written")
    except BaseException:
        if os.environ.get("TUITRAIN_FUZZ_KEEP"):  # to look at it
            print(f"tmux session kept: tmux -S {term.socket} attach")
        else:
            term.close()
        raise
    else:
        term.close()
    finally:
        log.write_text("".join(f"{t:.3f} {what}\n" for t, what in sent))


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux not installed")
@pytest.mark.parametrize("mode", list(COLOUR_MODES))
@pytest.mark.parametrize("seed", SEEDS, ids=[f"seed{s}" for s in SEEDS])
def test_fuzz_dashboard_keys_and_resizes(tmp_path, seed, mode):
    run_fuzz(tmp_path, seed, COLOUR_MODES[mode])
