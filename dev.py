"""Provides the quickstart commands: `python3 dev.py start`, `python3 dev.py test` and `python3 dev.py lint`.

Both create ./.venv on first use and install tuitrain into it through constraints.txt,
which pins the torch/torchvision pair known to work. Extra arguments are passed on
(`python3 dev.py start run rings`, `python3 dev.py test -k engine`).

`python3 dev.py test` runs every test, one worker per core, and lists the 15 slowest;
`python3 dev.py test -m "not slow"` skips those that start real processes (signals, kill -9, import
hygiene, child processes, DDP, the browser): the quick loop while editing. `-n 0` runs the tests in
one process (for --pdb or -s).
"""

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")


def ensure_installed(extra: str) -> None:
    """(Re)install when pyproject.toml, constraints.txt or the extra changed since last time."""
    digest = hashlib.sha256(
        (ROOT / "pyproject.toml").read_bytes() + (ROOT / "constraints.txt").read_bytes() + extra.encode()
    ).hexdigest()
    stamp = VENV / f".installed-{extra or 'app'}"
    if stamp.exists() and stamp.read_text() == digest:
        return
    if not (BIN / "python").exists():
        print("creating .venv ...", flush=True)
        venv.create(VENV, with_pip=True)
    target = f".[{extra}]" if extra else "."
    print(f"installing tuitrain{f'[{extra}]' if extra else ''} into .venv (first time: about a minute) ...", flush=True)
    subprocess.run(
        [
            str(BIN / "python"),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-c",
            str(ROOT / "constraints.txt"),
            "-e",
            target,
        ],
        cwd=ROOT,
        check=True,
    )
    stamp.write_text(digest)


def lint(args: list[str]) -> int:
    """ruff (lint and format check), mypy (strict on the UI-free core), import-linter contracts."""
    checks = [
        ("ruff check", [str(BIN / "ruff"), "check", "tuitrain", "tests", "bench", "dev.py", *args]),
        ("ruff format", [str(BIN / "ruff"), "format", "--check", "tuitrain", "tests", "bench", "dev.py"]),
        ("mypy", [str(BIN / "mypy")]),
        ("import-linter", [str(BIN / "lint-imports"), "--no-cache"]),
    ]
    failed = []
    for name, command in checks:
        print(f"== {name}", flush=True)
        if subprocess.call(command, cwd=ROOT) != 0:
            failed.append(name)
    print("lint: " + (f"FAILED: {', '.join(failed)}" if failed else "all checks passed"), flush=True)
    return 1 if failed else 0


def main() -> int:
    command, args = (sys.argv[1], sys.argv[2:]) if len(sys.argv) > 1 else ("start", [])
    if command == "start":
        ensure_installed("")
        return subprocess.call([str(BIN / "tuitrain"), *args])
    if command == "test":
        ensure_installed("test")
        # one worker per core (pytest-xdist), each file's tests kept together in one worker (its module
        # fixtures made once), and the 15 slowest tests listed at the end; a later -n or --durations
        # wins (`-n 0`: all in this process, for pdb or -s)
        parallel = ["-n", "auto", "--dist", "loadfile"]
        return subprocess.call([str(BIN / "python"), "-m", "pytest", *parallel, "--durations=15", *args], cwd=ROOT)
    if command == "lint":
        ensure_installed("lint")
        return lint(args)
    print(__doc__.strip(), file=sys.stderr)
    return 2


if __name__ == "__main__":
    try:
        sys.exit(main())
    except subprocess.CalledProcessError as exc:
        sys.exit(f"Error: install failed (exit {exc.returncode}); see pip's output above")
    except KeyboardInterrupt:
        sys.exit(130)
