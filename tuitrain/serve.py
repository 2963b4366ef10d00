"""Provides `tuitrain serve`: the same app in a web browser, through textual-serve (one app per connection)."""

from __future__ import annotations

import importlib.util
import shlex
import sys
from collections.abc import Callable

from tuitrain.errors import UsageError

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def app_command(args: list[str]) -> str:
    """The shell command textual-serve runs for each browser: this Python, this tuitrain, ARGS."""
    return shlex.join([sys.executable, "-m", "tuitrain", *args])


def check_args(args: list[str]) -> None:
    """Only the app's own commands make sense in a browser."""
    if args and args[0] not in ("train", "watch"):
        raise UsageError(
            f"serve runs the app: give nothing (the setup screen), `train PRESET …` or `watch RUN_DIR`, not '{args[0]}'"
        )


def serve(host: str, port: int, args: list[str], warn: Callable[[str], None]) -> None:
    """Serve until Ctrl-C; a warning first when others on the network can reach it."""
    if importlib.util.find_spec("textual_serve") is None:
        raise UsageError("serve needs textual-serve (the serve extra): pip install 'tuitrain[serve]'")
    check_args(args)
    from textual_serve.server import Server

    if host not in LOCAL_HOSTS:
        warn(
            f"serving on {host}: anyone who can reach port {port} gets the app and controls training "
            "(there is no login); use --host 127.0.0.1 and an SSH tunnel to keep it to yourself"
        )
    Server(app_command(args), host=host, port=port, title="tuitrain").serve()
