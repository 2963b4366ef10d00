"""Smoke test of an installed tuitrain, run by the Python of the environment it is installed in.

    PYTHON .ci/smoke.py

1. A short headless run: `tuitrain run rings --epochs 2 --json` exits 0 and its last event is
   an `end` event with status `completed`.
2. The app under a pseudo-terminal (100x30, TERM=xterm-256color): `tuitrain train rings` shows its
   dashboard; `q` asks to quit while the run trains, `y` answers; the process exits 0 and the run
   directory holds a checkpoint.

Uses the `tuitrain` script beside this Python (`sys.executable`), from a temporary working
directory, so it tests the installed package, not the checkout. Exits 0 when both pass, 1 otherwise.
`.ci/newer_python.py` runs it on the newest Python of the machine; the repository's own
`.venv/bin/python .ci/smoke.py` runs it on the suite's Python.
"""

import contextlib
import fcntl
import json
import os
import re
import select
import signal
import struct
import subprocess
import sys
import tempfile
import termios
import time
from pathlib import Path

COLS, ROWS = 100, 30
HEADLESS_LIMIT = 180  # seconds: torch's first import on a cold disk is the slow part
SCREEN_LIMIT = 120  # for the dashboard to show
QUIT_LIMIT = 90  # from `y` to the process gone (it saves a checkpoint first)
ANSI = re.compile(rb"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)|P[^\x1b]*\x1b\\|[@-Z\\-_])")


def tuitrain_command() -> list[str]:
    script = Path(sys.executable).parent / "tuitrain"
    return [str(script)] if script.exists() else [sys.executable, "-m", "tuitrain"]


def versions(cwd: str) -> str:
    code = "import sys, tuitrain, torch, textual; print(sys.version.split()[0], tuitrain.__file__, torch.__version__)"
    out = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=HEADLESS_LIMIT)
    if out.returncode != 0:
        raise SystemExit(f"smoke: cannot import tuitrain with {sys.executable}:\n{out.stderr[-3000:]}")
    python, where, torch = out.stdout.split()
    return f"Python {python}, torch {torch}, tuitrain from {where}"


def headless(work: Path) -> str | None:
    """Returns None when the run passes, else what went wrong."""
    command = [*tuitrain_command(), "run", "rings", "--epochs", "2", "--out", str(work / "headless"), "--json"]
    try:
        out = subprocess.run(
            command, cwd=work, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=HEADLESS_LIMIT
        )
    except subprocess.TimeoutExpired:
        return f"`{' '.join(command[1:])}` still running after {HEADLESS_LIMIT} s"
    events = []
    for line in out.stdout.splitlines():
        with contextlib.suppress(ValueError):
            events.append(json.loads(line))
    end = events[-1] if events else {}
    if out.returncode != 0 or end.get("event") != "end" or end.get("status") != "completed":
        return (
            f"`{' '.join(command[1:])}` exited {out.returncode}, last event {end or 'none'}\n"
            f"stdout:\n{out.stdout[-2000:]}\nstderr:\n{out.stderr[-2000:]}"
        )
    return None


class Terminal:
    """A process on the slave side of a pseudo-terminal; everything it draws collects in `screen`."""

    def __init__(self, command: list[str], cwd: Path) -> None:
        self.master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLS, 0, 0))
        env = {key: value for key, value in os.environ.items() if key not in ("COLUMNS", "LINES", "NO_COLOR")}
        env["TERM"] = "xterm-256color"

        def controlling_terminal() -> None:  # in the child, after setsid: the pty becomes its terminal
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        self.process = subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            start_new_session=True,
            preexec_fn=controlling_terminal,
        )
        os.close(slave)
        self.raw = b""

    @property
    def screen(self) -> str:
        """What it wrote, escape sequences removed (text runs stay whole, positions are lost)."""
        return ANSI.sub(b"", self.raw).decode("utf-8", "replace")

    def read(self, seconds: float) -> None:
        """Reads for up to `seconds` (it blocks in its writes if nobody reads), less once it has exited."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([self.master], [], [], min(left, 0.2))
            if ready:
                try:
                    chunk = os.read(self.master, 65536)
                except OSError:  # EIO: the slave side is closed, the process has gone
                    chunk = b""
                if not chunk:
                    if self.process.poll() is not None:
                        return
                    time.sleep(0.05)
                self.raw += chunk
            elif self.process.poll() is not None:
                return

    def wait_for(self, text: str, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while text not in self.screen:
            if self.process.poll() is not None or time.monotonic() > deadline:
                return text in self.screen
            self.read(0.5)
        return True

    def send(self, keys: str) -> None:
        os.write(self.master, keys.encode())

    def exited(self, seconds: float) -> int | None:
        deadline = time.monotonic() + seconds
        while self.process.poll() is None and time.monotonic() < deadline:
            self.read(0.5)
        self.read(0.2)
        return self.process.poll()

    def kill(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        os.close(self.master)

    def tail(self) -> str:
        lines = [line.rstrip() for line in re.split(r"[\r\n]+", self.screen) if line.strip()]
        return "\n".join(lines[-25:])


def app(work: Path) -> str | None:
    """Returns None when the app opens its dashboard and quits cleanly, else what went wrong and its screen."""
    out = work / "app"
    # more epochs than the smoke test lasts: `q` meets a training run and asks first
    terminal = Terminal([*tuitrain_command(), "train", "rings", "--epochs", "100000", "--out", str(out)], work)
    try:
        problem = quit_app(terminal, out)
    finally:
        terminal.kill()
    return None if problem is None else f"{problem}\n-- the last lines it drew (escapes removed) --\n{terminal.tail()}"


def quit_app(terminal: Terminal, out: Path) -> str | None:
    if not terminal.wait_for("Charts", SCREEN_LIMIT):
        return f"no dashboard (no 'Charts' tab) within {SCREEN_LIMIT} s; exit {terminal.process.poll()}"
    terminal.read(2)  # a few epochs, and the app idle enough for a key
    for _ in range(3):  # a key read before the app listens is lost: press again
        terminal.send("q")
        if terminal.wait_for("quit?", 10):  # "Training is still running. Save a checkpoint and quit?"
            break
    else:
        return f"`q` (pressed 3 times) did not ask to quit within 30 s; exit {terminal.process.poll()}"
    terminal.send("y")
    code = terminal.exited(QUIT_LIMIT)
    if code is None:
        return f"still running {QUIT_LIMIT} s after `q`, `y`"
    if code != 0:
        return f"the app exited {code} after `q`, `y`"
    if not list(out.glob("*/last.pt")):
        return f"the app quit but left no last.pt under {out}: {sorted(str(p) for p in out.glob('*/*'))}"
    return None


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="tuitrain-smoke-") as tmp:
        work = Path(tmp)
        print(f"smoke: {versions(tmp)}", flush=True)
        failures = 0
        for name, check in (("headless run", headless), ("app under a pseudo-terminal", app)):
            started = time.monotonic()
            problem = check(work)
            seconds = time.monotonic() - started
            if problem is None:
                print(f"smoke: {name}: passed ({seconds:.1f} s)", flush=True)
            else:
                failures += 1
                print(f"smoke: {name}: FAILED ({seconds:.1f} s): {problem}", flush=True)
        return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
