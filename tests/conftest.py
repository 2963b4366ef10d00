"""Shared fixtures: isolated XDG folders and tiny IDX data sets written by the tests."""

from __future__ import annotations

import gzip
import struct
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
TINY = str(Path(__file__).parent / "data" / "tiny_rings.toml")  # rings, small and quick


def train_tiny(folder: Path, epochs: int = 2) -> Path:
    """A finished run of the tiny rings preset under `folder`; returns its run directory."""
    from tuitrain.config import apply_overrides, load_preset
    from tuitrain.runs import start as session

    trainer, writer = session.new_run(apply_overrides(load_preset(TINY), epochs=epochs), folder)
    trainer.run()
    writer.close()
    return Path(writer.run_dir)


@dataclass
class CliResult:
    code: int
    out: str
    err: str

    # the names of subprocess.CompletedProcess, so a test can swap a process for `run_cli`
    @property
    def returncode(self) -> int:
        return self.code

    @property
    def stdout(self) -> str:
        return self.out

    @property
    def stderr(self) -> str:
        return self.err


def run_cli(*args: str) -> CliResult:
    """`tuitrain ARGS` in this process, through the console entry point (its one-line errors and
    exit codes): for tests where the process boundary itself is not what is tested.

    An exception that escapes `main` fails the test (a process would print a traceback), and the
    warnings a fresh interpreter would print on stderr are written to `err`, as it would: pytest
    would otherwise record them out of sight, and a test of "one line, nothing else" would go blind."""
    from click.testing import CliRunner

    from tuitrain.cli import main

    runner = CliRunner()
    code = 0
    with runner.isolation() as (out, err, _), warnings.catch_warnings(record=True) as caught:
        interpreter_default_warnings()
        argv, sys.argv = sys.argv, ["tuitrain", *map(str, args)]
        try:
            main()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        finally:
            sys.argv = argv
        for w in caught:
            sys.stderr.write(warnings.formatwarning(w.message, w.category, w.filename, w.lineno))
        sys.stdout.flush()
        sys.stderr.flush()
        return CliResult(code, out.getvalue().decode(errors="replace"), err.getvalue().decode(errors="replace"))


def interpreter_default_warnings() -> None:
    """The warning filters of a fresh `python` (no -W, no PYTHONWARNINGS), each shown once per place."""
    warnings.resetwarnings()
    warnings.simplefilter("default")
    for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
        warnings.simplefilter("ignore", category)


@pytest.fixture(autouse=True)
def isolated_xdg(tmp_path_factory, monkeypatch):
    """No test reads or writes the user's real config, cache or state, or leaves ./runs in the checkout."""
    home = tmp_path_factory.mktemp("xdg")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "config"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / "cache"))
    monkeypatch.setenv("XDG_STATE_HOME", str(home / "state"))  # remembered UI choices, crash logs
    monkeypatch.chdir(home)
    return home


def write_idx(path: Path, data: bytes, dims: list[int], compress: bool) -> None:
    header = bytes([0, 0, 0x08, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims)
    opener = gzip.open if compress else open
    with opener(path, "wb") as handle:
        handle.write(header + data)


def make_idx_set(folder: Path, train: int = 120, test: int = 40, compress: bool = True) -> Path:
    """A learnable MNIST-shaped set: the label is drawn as a bright band at row 2*label."""
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if compress else ""
    for prefix, n in (("train", train), ("t10k", test)):
        labels = bytes(i % 10 for i in range(n))
        images = bytearray(n * 28 * 28)
        for i, label in enumerate(labels):
            row = 2 * label + 4
            images[i * 784 + row * 28 : i * 784 + row * 28 + 28] = bytes([255]) * 28
        write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", bytes(images), [n, 28, 28], compress)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", labels, [n], compress)
    return folder


@pytest.fixture
def idx_dir(tmp_path):
    return make_idx_set(tmp_path / "digits")


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist each worker trains with one torch thread: two workers on two cores would
    otherwise run four spinning threads, and every in-process run waits for the other worker's."""
    import os

    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch

        torch.set_num_threads(1)
