"""Provides MNIST-type IDX files without torch: where they are, their checked bytes, and reading them early.

Decompressing Fashion-MNIST takes a quarter of a second, and zlib lets go of the GIL while it
works, so `prefetch` reads the files in a thread while the process imports torch.
"""

from __future__ import annotations

import math
import os
import threading
import zlib
from pathlib import Path

from tuitrain.config import DataConfig
from tuitrain.data.memory import available_memory, fmt_bytes
from tuitrain.errors import UsageError, quote

DEBIAN_FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
# torchvision class names double as the cache folder names it downloads into
TORCHVISION_NAMES = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}
IDX_TYPES = {
    0x08: "unsigned bytes",
    0x09: "signed bytes",
    0x0B: "16-bit integers",
    0x0C: "32-bit integers",
    0x0D: "32-bit floats",
    0x0E: "64-bit floats",
}
BYTES_PER_VALUE = 12  # an IDX byte once read: the file's bytes, a uint8 tensor, float32 and its split copy

Contents = tuple[list[int], bytes]  # the stated shape and the values


def cache_dir() -> Path:
    cache_home = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache_home) / "tuitrain" / "data"


def _idx_dir_candidates(dataset: str, data_dir: str) -> list[Path]:
    if data_dir:
        root = Path(data_dir).expanduser()
        return [root, root / TORCHVISION_NAMES[dataset] / "raw"]
    dirs = [cache_dir() / TORCHVISION_NAMES[dataset] / "raw"]
    if dataset == "fashion-mnist":
        dirs.append(DEBIAN_FASHION_DIR)
    return dirs


def _find_file(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def find_idx_files(dataset: str, data_dir: str = "") -> dict[str, Path] | None:
    """The four IDX files of the first folder that holds all of them, or None."""
    for folder in _idx_dir_candidates(dataset, data_dir):
        files = {key: _find_file(folder, stem) for key, stem in IDX_FILES.items()}
        if all(files.values()):
            return files  # type: ignore[return-value]
    return None


def data_status(dataset: str, data_dir: str = "") -> str:
    """'ready' (on disk, generated or a file of one's own) or 'download' (fetched on first use, needs internet)."""
    if dataset not in TORCHVISION_NAMES or find_idx_files(dataset, data_dir):
        return "ready"
    return "download"


class _Gunzip:
    """A gzip file's contents in few, large zlib calls, which let go of the GIL throughout: gzip.GzipFile
    works in 128 KiB pieces and takes the GIL back after each, slowing a thread that imports torch."""

    FIRST = 1 << 20  # bytes decompressed by the first read at least: a damaged stream fails at once, as in gzip

    def __init__(self, path: Path):
        self._rest = path.read_bytes()
        self._zlib = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        self._ready = b""

    def __enter__(self) -> _Gunzip:
        return self

    def __exit__(self, *_: object) -> None:
        self._rest = self._ready = b""

    def read(self, n: int) -> bytes:
        pieces, have = [self._ready], len(self._ready)
        want = max(n, self.FIRST)
        while have < want:
            piece = self._zlib.decompress(self._rest, want - have)
            self._rest = self._zlib.unconsumed_tail
            pieces.append(piece)
            have += len(piece)
            if self._zlib.eof and self._zlib.unused_data:  # a second gzip member follows, as gzip.open reads it
                self._rest, self._zlib = self._zlib.unused_data, zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
            elif not piece:
                break
        ready = b"".join(pieces)
        self._ready = ready[n:]
        return ready[:n]


def _read_now(path: Path) -> Contents:
    """Reads no more than the header promises, so a huge or endless (gzip bomb) file costs nothing."""
    name = quote(path)
    opener = _Gunzip if path.suffix == ".gz" else lambda path: open(path, "rb")
    try:
        with opener(path) as handle:
            head = handle.read(4)
            if len(head) < 4 or head[0] != 0 or head[1] != 0:
                raise UsageError(f"{name} is not an IDX file (no IDX magic number at its start)")
            if head[2] != 0x08:
                kind = IDX_TYPES.get(head[2], f"values of unknown type 0x{head[2]:02x}")
                raise UsageError(f"{name} is not an IDX file of unsigned bytes: it holds {kind}")
            ndim = head[3]
            header = handle.read(4 * ndim)
            if len(header) < 4 * ndim:
                raise UsageError(f"{name} is truncated: its header ends before its {ndim} dimensions")
            dims = [int.from_bytes(header[4 * i : 4 * i + 4], "big") for i in range(ndim)]
            size = math.prod(dims)
            available = available_memory()
            if available is not None and size * BYTES_PER_VALUE > available:
                raise UsageError(
                    f"{name} declares shape {dims}: about {fmt_bytes(size * BYTES_PER_VALUE)} once "
                    f"loaded, but this machine has {fmt_bytes(available)} available"
                )
            raw = handle.read(size + 1)
    except (OSError, EOFError, zlib.error) as exc:  # unreadable, a damaged gzip stream, a cut-off gzip file
        raise UsageError(f"cannot read {name}: {exc}") from None
    if len(raw) < size:
        raise UsageError(f"{name} is truncated: expected {size} values for shape {dims}, found {len(raw)}")
    if len(raw) > size:
        raise UsageError(f"{name} holds more data than its shape {dims} (a damaged header?)")
    return dims, raw


class _Reading(threading.Thread):
    """One file read ahead of its use; `result()` gives what `read` would have, error included."""

    def __init__(self, path: Path):
        super().__init__(daemon=True, name=f"tuitrain-read-{path.name}")
        self.path = path
        self.stamp = _stamp(path)
        self._contents: Contents | None = None
        self._error: BaseException | None = None

    def run(self) -> None:
        try:
            self._contents = _read_now(self.path)
        except BaseException as exc:  # handed to the reader, in its thread
            self._error = exc

    def result(self) -> Contents:
        self.join()
        if self._error is not None:
            raise self._error
        assert self._contents is not None
        return self._contents


_ahead: dict[Path, _Reading] = {}
_ahead_lock = threading.Lock()


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_size, stat.st_mtime_ns


def prefetch(data: DataConfig) -> None:
    """Start reading the data set's IDX files, if it has any on disk (a thread each)."""
    if data.dataset not in TORCHVISION_NAMES:
        return
    try:
        files = find_idx_files(data.dataset, data.data_dir)
    except OSError:
        return
    for path in (files or {}).values():
        with _ahead_lock:
            if path in _ahead:
                continue
            _ahead[path] = reading = _Reading(path)
        reading.start()


def read(path: Path) -> Contents:
    """The shape an IDX file of unsigned bytes states, and its values, checked against each other.

    Taken from `prefetch` when it read this file, unchanged since.
    """
    with _ahead_lock:
        reading = _ahead.pop(path, None)
    if reading is not None and reading.stamp == _stamp(path):
        return reading.result()
    return _read_now(path)
