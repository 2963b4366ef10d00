"""Issue 26: settings checked before the app or the server starts, and the small ones of the CLI:
a 5,000-character preset name, a byte-order mark in a preset, standard output closed or read by
`head -1`, and a FIFO or socket among the user presets."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from conftest import run_cli

TIMEOUT = 60  # seconds; only reached when something is broken (a blocking read, a server that serves)
TUITRAIN = [sys.executable, "-m", "tuitrain"]
LONG = "a" * 5000

TINY = """name = "tiny"
description = "tiny blobs"
[model]
kind = "mlp"
hidden = [4]
[data]
dataset = "blobs"
samples = 200
[train]
epochs = 1
batch_size = 50
histories = false
"""


def cuda_visible() -> bool:
    import torch

    return torch.cuda.is_available()


def one_error_line(err: str) -> str:
    """The single line an error prints: `Error: …`, nothing else (no traceback)."""
    assert err.startswith("Error: ") and err.count("\n") == 1 and "Traceback" not in err, err[:2000]
    return err


@pytest.fixture
def no_app(monkeypatch):
    """The app must not open: opening it fails the test (and records what it was asked to open)."""
    opened: list[tuple[str, object]] = []

    def refuse(kind: str):
        def opener(*args, **kwargs):
            opened.append((kind, args))

        return opener

    monkeypatch.setattr("tuitrain.tui.launch.open_train", refuse("train"))
    monkeypatch.setattr("tuitrain.tui.launch.open_race", refuse("race"))
    monkeypatch.setattr("tuitrain.tui.launch.open_watch", refuse("watch"))
    return opened


# ----------------------------------------------------------------------------- train: checked before the app


@pytest.mark.skipif(cuda_visible(), reason="this machine has a CUDA GPU")
def test_train_on_cuda_without_a_gpu_stops_before_the_app(no_app, tmp_path):
    result = run_cli("train", "rings", "--device", "cuda", "--out", str(tmp_path / "out"))
    assert result.code == 2
    assert "--device cuda: no CUDA GPU is visible" in one_error_line(result.err)
    assert no_app == [] and not (tmp_path / "out").exists()  # no run directory made either


@pytest.mark.skipif(cuda_visible(), reason="this machine has a CUDA GPU")
def test_a_train_race_checks_its_runs_before_the_app(no_app, tmp_path):
    result = run_cli("train", "rings", "--lr", "0.1,0.2", "--device", "cuda", "--out", str(tmp_path / "out"))
    assert result.code == 2 and "no CUDA GPU" in one_error_line(result.err)
    assert no_app == [] and not (tmp_path / "out").exists()  # no queued folders


def test_train_with_a_data_folder_lacking_the_files_stops_before_the_app(no_app, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run_cli("train", "mlp", "--dataset", "mnist", "--data-dir", str(empty), "--out", str(tmp_path / "out"))
    assert result.code == 2 and "does not hold the mnist IDX files" in one_error_line(result.err)
    assert no_app == []


def test_train_of_a_network_too_big_for_memory_stops_before_the_app(no_app, tmp_path):
    preset = tmp_path / "huge.toml"
    preset.write_text(TINY.replace("hidden = [4]", f"hidden = {[100_000] * 40}"))
    result = run_cli("train", str(preset), "--out", str(tmp_path / "out"))
    assert result.code == 2 and "the network needs about" in one_error_line(result.err)
    assert no_app == []


def test_train_with_good_settings_opens_the_app(no_app, tmp_path):
    result = run_cli("train", "rings", "--epochs", "3", "--out", str(tmp_path / "out"))
    assert result.code == 0, result.err
    [(kind, args)] = no_app
    assert kind == "train" and args[0].name == "rings" and args[0].train.epochs == 3


@pytest.mark.slow  # import hygiene: a fresh interpreter is the point
def test_checking_plain_settings_leaves_torch_unimported():
    """The checks import torch only for --device cuda or --precision bf16: the app still opens at once."""
    code = (
        "import sys; from tuitrain.cli import check_train; "
        "check_train('rings', False, {'epochs': 3}); check_train('rings', False, {'lr': (0.1, 0.2)}); "
        "print('torch' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0 and done.stdout.split() == ["False"], done.stderr


# ----------------------------------------------------------------------------- serve: checked before serving

needs_serve = pytest.mark.skipif(importlib.util.find_spec("textual_serve") is None, reason="needs textual-serve")


@pytest.fixture
def no_serving(monkeypatch):
    """Serving fails the test unless it is expected; records the (host, port) served."""
    served: list[tuple[str, int]] = []

    def serve(self, debug: bool = False) -> None:
        served.append((self.host, self.port))

    monkeypatch.setattr("textual_serve.server.Server.serve", serve)
    return served


@needs_serve
@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["train", "nosuchpreset"], "unknown preset 'nosuchpreset'"),
        (["watch", "/missing"], "/missing: no such run directory"),
        (["train", "rings", "--epochs", "x"], "'x' is not a valid integer"),
        (["train", "rings", "--lr", "0.1,0.2", "--tensorboard"], "--tensorboard trains one run"),
        (["train", "mlp", "--dataset", "mnist", "--data-dir", "."], "does not hold the mnist IDX files"),
    ],
)
def test_serve_refuses_an_app_command_that_would_fail(no_serving, args, expected):
    result = run_cli("serve", "--port", "1", "--", *args)  # port 1: were it reached, it would fail too
    assert result.code == 2 and expected in one_error_line(result.err)
    assert no_serving == []


@needs_serve
@pytest.mark.skipif(cuda_visible(), reason="this machine has a CUDA GPU")
def test_serve_refuses_training_on_cuda_without_a_gpu(no_serving):
    result = run_cli("serve", "--", "train", "rings", "--device", "cuda")
    assert result.code == 2 and "no CUDA GPU" in one_error_line(result.err)
    assert no_serving == []


@needs_serve
def test_serve_with_good_app_settings_serves(no_serving, tmp_path):
    port = free_port()
    (tmp_path / "tiny.toml").write_text(TINY)
    result = run_cli("serve", "--port", str(port), "--", "train", str(tmp_path / "tiny.toml"), "--epochs", "2")
    assert result.code == 0, result.err
    assert no_serving == [("127.0.0.1", port)]


@needs_serve
@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("", "--host is empty"),
        ("nosuch.invalid", "--host 'nosuch.invalid': not an address or a host name known here"),
        ("192.0.2.1", "cannot listen on 192.0.2.1 port"),  # TEST-NET-1: never an address of this machine
    ],
)
def test_serve_refuses_a_host_it_cannot_listen_on(no_serving, host, expected):
    result = run_cli("serve", "--host", host, "--port", str(free_port()))
    assert result.code == 2 and expected in one_error_line(result.err)
    assert no_serving == []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@needs_serve
@pytest.mark.slow  # the real server starts (were it to serve, only a process could be stopped)
def test_serve_on_a_port_in_use_says_so_in_one_line():
    """The real server, in its own process: it stops with one line instead of a traceback after its logo."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        done = subprocess.run(
            [*TUITRAIN, "serve", "--port", str(port)], capture_output=True, text=True, timeout=TIMEOUT
        )
    assert done.returncode == 2
    assert f"port {port} is in use on 127.0.0.1" in one_error_line(done.stderr)
    assert done.stdout == ""  # nothing served, not even the banner


# ----------------------------------------------------------------------------- a 5,000-character preset name


@pytest.mark.parametrize("command", ["show", "run", "train"])
@pytest.mark.parametrize("name", [LONG, LONG + ".toml", "./" + LONG, "/tmp/" + LONG + ".toml"])
def test_a_preset_name_too_long_for_the_file_system_is_one_line(no_app, command, name):
    result = run_cli(command, name)
    assert result.code == 2
    line = one_error_line(result.err)
    assert len(line) < 1000  # the name is shortened in the message
    a_file = "/" in name or name.endswith(".toml")
    assert ("File name too long" if a_file else "unknown preset") in line


# ----------------------------------------------------------------------------- a byte-order mark in a preset


def test_a_preset_starting_with_a_byte_order_mark_reads_as_without_it(tmp_path):
    from tuitrain import config

    preset = tmp_path / "bom.toml"
    preset.write_bytes("\ufeff".encode() + TINY.encode())
    loaded = config.load_preset(str(preset))
    assert loaded.name == "tiny" and loaded.model.hidden == [4] and loaded.train.epochs == 1
    assert config.preset_description(preset) == "tiny blobs"
    result = run_cli("show", str(preset))
    assert result.code == 0 and result.out.startswith('name = "tiny"'), result.err


def test_a_user_preset_with_a_byte_order_mark_is_listed_with_its_description(isolated_xdg):
    folder = isolated_xdg / "config" / "tuitrain" / "presets"
    folder.mkdir(parents=True)
    (folder / "mine.toml").write_bytes(b"\xef\xbb\xbf" + TINY.encode())
    result = run_cli("list")
    assert result.code == 0
    assert any(line.split() == ["mine", "tiny", "blobs"] for line in result.out.splitlines()), result.out


# ----------------------------------------------------------------------------- a FIFO or socket among the presets


@pytest.fixture
def odd_presets(isolated_xdg):
    """The user presets folder with a FIFO and a socket where .toml files are expected, and one good preset."""
    folder = isolated_xdg / "config" / "tuitrain" / "presets"
    folder.mkdir(parents=True)
    os.mkfifo(folder / "pipe.toml")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(folder / "sock.toml"))
    (folder / "good.toml").write_text(TINY)
    yield folder
    listener.close()


def run_cli_beside_a_fifo(fifo: Path, *args: str, timeout: float = 10.0):
    """`run_cli(*args)`, with a watchdog: should the command block opening or reading `fifo`, a
    writer opens it after `timeout` seconds (the read ends at once) and the test fails instead of hanging."""
    blocked = threading.Event()

    def unblock() -> None:
        try:
            writer = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)  # fails (ENXIO) unless someone reads it
        except OSError:
            return
        blocked.set()
        os.close(writer)

    watchdog = threading.Timer(timeout, unblock)
    watchdog.start()
    try:
        result = run_cli(*args)
    finally:
        watchdog.cancel()
    assert not blocked.is_set(), f"`tuitrain {' '.join(args)}` blocked on the FIFO {fifo}"
    return result


def test_list_skips_reading_a_fifo_or_socket_among_the_user_presets(odd_presets):
    """A blocking read of the FIFO would hang it: a watchdog opens the FIFO's other end and fails the test."""
    done = run_cli_beside_a_fifo(odd_presets / "pipe.toml", "list")
    assert done.returncode == 0, done.stderr
    lines = {line.split()[0]: line for line in done.stdout.splitlines() if line.strip()}
    assert "(unreadable: is a FIFO" in lines["pipe"] or "(unreadable: is a socket or FIFO" in lines["pipe"]
    assert "(unreadable: is a socket or FIFO" in lines["sock"]
    assert lines["good"].split()[1:] == ["tiny", "blobs"]


@pytest.mark.parametrize("name", ["pipe", "sock"])
def test_using_a_fifo_or_socket_preset_is_one_line(odd_presets, name):
    done = run_cli_beside_a_fifo(odd_presets / "pipe.toml", "show", name)
    assert done.returncode == 2
    assert f"{name}.toml: cannot read: is a" in one_error_line(done.stderr)


def test_a_fifo_named_as_a_preset_file_is_refused_unread(tmp_path):
    os.mkfifo(tmp_path / "pipe.toml")
    result = run_cli("show", str(tmp_path / "pipe.toml"))
    assert result.code == 2 and "is a FIFO, not a file" in one_error_line(result.err)


# ----------------------------------------------------------------------------- stdout read by head -1, or closed


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """Two finished tiny runs (trained once for the module, in this process)."""
    folder = tmp_path_factory.mktemp("runs")
    (folder / "tiny.toml").write_text(TINY)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CONFIG_HOME", str(folder / "xdg"))
        patch.setenv("XDG_STATE_HOME", str(folder / "state"))
        for seed in ("1", "2"):
            done = run_cli("run", folder / "tiny.toml", "--out", folder / "out", "--seed", seed)
            assert done.code == 0, done.err
    runs = sorted((folder / "out").iterdir())
    assert len(runs) == 2
    return folder / "out"


def run_into_a_closed_pipe(args: list[str]) -> subprocess.CompletedProcess[str]:
    """`tuitrain ARGS` writing into a pipe whose reader has already gone: its first write fails (EPIPE)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run([*TUITRAIN, *args], stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=TIMEOUT)
    finally:
        os.close(write_end)


@pytest.mark.slow  # a real process writing into a pipe whose reader left (EPIPE)
@pytest.mark.parametrize("command", ["runs --json", "runs", "compare", "compare --json", "list", "show"])
def test_a_reader_that_left_ends_the_command_quietly(two_runs, command):
    args = command.split()
    if args[0] == "runs":
        args += ["--out", str(two_runs)]
    elif args[0] == "compare":
        args += [str(d) for d in sorted(two_runs.iterdir())]
    elif args[0] == "show":
        args.append("rings")
    done = run_into_a_closed_pipe(args)
    assert done.returncode == 0
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr and "Error" not in done.stderr
    if args[0] != "list":  # list's note on stderr is its own
        assert done.stderr == ""


@pytest.mark.slow  # a real pipeline: `tuitrain ... | head -1`
def test_runs_json_into_head_exits_zero(two_runs):
    if shutil.which("head") is None:
        pytest.skip("no head here")
    command = f"{' '.join(TUITRAIN)} runs --json --out {two_runs} | head -1; exit ${{PIPESTATUS[0]}}"
    done = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0 and done.stderr == ""
    assert json.loads(done.stdout)["name"] in {d.name for d in two_runs.iterdir()}


@pytest.mark.slow  # a real process started with descriptor 1 closed
@pytest.mark.parametrize("command", ["runs", "list", "compare", "show rings"])
def test_a_closed_stdout_gets_one_warning(two_runs, command):
    args = command.split()
    if args[0] == "runs":
        args += ["--out", str(two_runs)]
    elif args[0] == "compare":
        args += [str(d) for d in sorted(two_runs.iterdir())]
    done = subprocess.run(
        ["bash", "-c", 'exec "$@" >&-', "bash", *TUITRAIN, *args], capture_output=True, text=True, timeout=TIMEOUT
    )
    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stderr.splitlines() if line.startswith("Warning:")]
    assert warnings == ["Warning: standard output is closed: what tuitrain prints there is discarded"]
    assert "Traceback" not in done.stderr


@pytest.mark.slow  # a real process started with descriptor 1 closed
def test_with_stdout_closed_a_file_opened_later_never_becomes_stdout(tmp_path):
    """Descriptor 1 is held by /dev/null: a file the command opens cannot take it and get its output."""
    code = (
        "import os, sys; from tuitrain.cli import guard_standard_streams; guard_standard_streams(); "
        "f = open(sys.argv[1], 'w'); print('fd', f.fileno(), file=sys.stderr); print('to stdout')"
    )
    done = subprocess.run(
        ["bash", "-c", 'exec "$@" >&-', "bash", sys.executable, "-c", code, str(tmp_path / "file")],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert done.returncode == 0, done.stderr
    assert "fd 1\n" not in done.stderr and (tmp_path / "file").read_text() == ""
