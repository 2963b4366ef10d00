"""Provides `tuitrain serve`: the same app in a web browser, through textual-serve (one app per connection)."""

from __future__ import annotations

import errno
import importlib.util
import shlex
import socket
import sys
from collections.abc import Callable

from tuitrain.errors import UsageError, quote

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


def check_listen(host: str, port: int) -> None:
    """Refuse, in one line, an address the server could not listen on: a host that is not an address
    of this machine or a known name, a port in use or not allowed. Checked by binding it as the server
    will (asyncio's create_server: SO_REUSEADDR, IPv6 sockets IPv6-only), then letting it go."""
    if not host.strip():  # asyncio would listen on every interface: say so explicitly instead
        raise UsageError("--host is empty: give an address (127.0.0.1: this machine only; 0.0.0.0: every interface)")
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (OSError, UnicodeError) as exc:  # socket.gaierror; a name too long for IDNA
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise UsageError(f"--host {quote(host)}: not an address or a host name known here ({reason})") from None
    for family, kind, proto, _, address in addresses:
        try:
            sock = socket.socket(family, kind, proto)
        except OSError:  # a family this machine lacks (no IPv6): the server skips it too
            continue
        with sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind(address)
            except OSError as exc:
                raise listen_error(host, port, exc) from None


def listen_error(host: str, port: int, exc: OSError) -> UsageError:
    if exc.errno == errno.EADDRINUSE:
        return UsageError(f"port {port} is in use on {host} (another server?): choose another with --port")
    return UsageError(f"cannot listen on {host} port {port}: {exc.strerror or exc}")


def serve(
    host: str,
    port: int,
    args: list[str],
    warn: Callable[[str], None],
    check: Callable[[list[str]], None] | None = None,
) -> None:
    """Serve until Ctrl-C; a warning first when others on the network can reach it.

    `check(args)` refuses what the app would refuse (`train nosuchpreset`, `watch /missing`) before
    anything is served: every browser tab would otherwise open an app that stops at once."""
    if importlib.util.find_spec("textual_serve") is None:
        raise UsageError("serve needs textual-serve (the serve extra): pip install 'tuitrain[serve]'")
    check_args(args)
    if check is not None:
        check(args)
    check_listen(host, port)
    from textual_serve.server import Server

    if host not in LOCAL_HOSTS:
        warn(
            f"serving on {host}: anyone who can reach port {port} gets the app and controls training "
            "(there is no login); use --host 127.0.0.1 and an SSH tunnel to keep it to yourself"
        )
    try:
        Server(app_command(args), host=host, port=port, title="tuitrain").serve()
    except OSError as exc:  # taken between the check and the server's own bind
        if exc.errno in (errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES):
            raise listen_error(host, port, exc) from None
        raise
