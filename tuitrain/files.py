"""Provides careful file access: reading only regular files, and writing an output where `-o` points.

A run directory or preset folder may hold a FIFO, socket or device where a file belongs (by
mistake or malice): opening one for reading would block forever or read a device, so readers
open without blocking and refuse anything that is not a regular file. An output path may be a
symlink (written atomically at its target), a device or FIFO (written through, never replaced),
or `-` (standard output); a regular file is replaced atomically, never left half-written.
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from tuitrain.errors import UsageError, quote

STDOUT = "-"
TMP_MARK = ".tmp-"  # temporary files are ".<name>.tmp-<pid>" beside their target
CHUNK = 1 << 20


class NotRegularFile(OSError):
    """A path that exists but is not a regular file (a FIFO, socket, device or directory)."""


def kind_of(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def open_regular(path: str | os.PathLike[str]) -> BinaryIO:
    """`open(path, "rb")` that never blocks: a FIFO, socket, device or directory raises NotRegularFile
    (FileNotFoundError and other OSErrors as usual)."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(path, flags)
    except IsADirectoryError:
        raise NotRegularFile(21, "is a directory, not a file", str(path)) from None
    except OSError as exc:
        if exc.errno == 6:  # ENXIO: a socket, or a FIFO nobody writes (opened without blocking)
            raise NotRegularFile(exc.errno, "is a socket or FIFO, not a file", str(path)) from None
        raise
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegularFile(22, f"is {kind_of(mode)}, not a file", str(path))
        if flags & getattr(os, "O_NONBLOCK", 0):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular(path: str | os.PathLike[str]) -> bytes:
    with open_regular(path) as f:
        return f.read()


def read_regular_text(path: str | os.PathLike[str]) -> str:
    return read_regular(path).decode("utf-8")


def is_regular(path: str | os.PathLike[str]) -> bool:
    """Whether `path` is a regular file (following symlinks), without opening it."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


# ----------------------------------------------------------------------------- temporaries


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def temporary_for(target: Path) -> Path:
    return target.with_name(f".{target.name}{TMP_MARK}{os.getpid()}")


def remove_stale_temporaries(folder: Path, name: str = "*") -> list[Path]:
    """Remove temporaries (`.<name>.tmp-<pid>`) whose writing process is gone; a live process's
    half-written file is never touched. Returns what was removed."""
    removed: list[Path] = []
    try:
        candidates = list(folder.glob(f".{name}{TMP_MARK}*"))
    except OSError:
        return removed
    for tmp in candidates:
        pid_text = tmp.name.rsplit(TMP_MARK, 1)[-1]
        if pid_text.isdigit() and pid_alive(int(pid_text)) and int(pid_text) != os.getpid():
            continue
        try:
            if tmp.is_dir() and not tmp.is_symlink():
                shutil.rmtree(tmp)
            else:
                tmp.unlink()
            removed.append(tmp)
        except OSError:
            pass
    return removed


# ----------------------------------------------------------------------------- outputs


@contextmanager
def folder_beside(out: Path, *stale: str) -> Iterator[Path]:
    """An empty `.<name>.tmp-<pid>` folder beside `out` to build a folder export in, removed afterwards
    (whatever was not moved into place). Temporaries of gone processes named `out`'s name, or `stale`
    names, are cleaned first."""
    out.parent.mkdir(parents=True, exist_ok=True)
    for name in (out.name, *stale):
        remove_stale_temporaries(out.parent, name)
    build = temporary_for(out)
    build.mkdir()
    try:
        yield build
    finally:
        shutil.rmtree(build, ignore_errors=True)


def resolve_output(target: str | os.PathLike[str]) -> Path:
    """Where writing `target` lands: a symlink (or a chain) followed to its final path."""
    path = Path(target).expanduser()
    return Path(os.path.realpath(path)) if path.is_symlink() else path


def _copy_through(source: Path, sink: BinaryIO) -> None:
    with open(source, "rb") as f:
        while chunk := f.read(CHUNK):
            sink.write(chunk)
    sink.flush()


@contextmanager
def _scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="tuitrain-export-") as folder:
        yield Path(folder) / "output"


def write_output(target: str | os.PathLike[str], produce: Callable[[Path], object], *, text: bool = True) -> str:
    """Run `produce(path)` (it writes a whole file at `path`) so the result lands at `target`:
    `-` on standard output, a device or FIFO written through, anything else atomically (a symlink
    at its target). Returns where it went, for the user. `text=False` (binary formats) refuses a
    terminal on standard output."""
    if str(target) == STDOUT:
        if not text and sys.stdout.isatty():
            raise UsageError("refusing to write a binary file to the terminal: redirect it or name a file")
        with _scratch() as scratch:
            produce(scratch)
            sys.stdout.flush()
            _copy_through(scratch, sys.stdout.buffer)
        return "standard output"
    out = resolve_output(target)
    try:
        mode = os.stat(out).st_mode
    except FileNotFoundError:
        mode = None
    except OSError as exc:
        raise UsageError(f"cannot write {quote(target)}: {exc.strerror or exc}") from None
    if mode is not None and stat.S_ISDIR(mode):
        raise UsageError(f"cannot write {quote(target)}: it is a directory (name a file)")
    if mode is not None and not stat.S_ISREG(mode):
        with _scratch() as scratch:  # a device or FIFO: written through, never renamed over
            produce(scratch)
            fd = os.open(out, os.O_WRONLY | getattr(os, "O_NOCTTY", 0))
            with os.fdopen(fd, "wb") as sink:
                _copy_through(scratch, sink)
        return str(target)
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out.parent, out.name)
    tmp = temporary_for(out)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)  # the umask's mode, as any new file
        mode = os.fstat(fd).st_mode & 0o777
        os.close(fd)
        produce(tmp)
        os.chmod(tmp, mode)  # a library that replaced the file may have made it 0600
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return str(target)
