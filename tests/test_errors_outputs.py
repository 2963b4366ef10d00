"""Where `-o` points (issue 26): a symlink is written at its target, a device or FIFO written through and
never replaced, `-` is standard output; TensorBoard exports swap in whole; no temporaries are left."""

from __future__ import annotations

import csv
import io
import json
import os
import socket
import stat
import threading
from pathlib import Path

import pytest
from conftest import run_cli, train_tiny

from tuitrain.exports import formats as exporters
from tuitrain.files import TMP_MARK


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_tiny(tmp_path_factory.mktemp("out"), epochs=3)


def epochs_csv(text: str) -> list[int]:
    return [int(row["epoch"]) for row in csv.DictReader(io.StringIO(text))]


def make_null_device(path: Path) -> Path:
    """A character device like /dev/null (major 1, minor 3), made inside the test's own folder."""
    try:
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("mknod needs root")
    return path


def test_csv_through_a_symlink_lands_at_its_target(run: Path, tmp_path: Path) -> None:
    (tmp_path / "link.csv").symlink_to("target.csv")  # dangling until the export
    done = run_cli("export", run, "--format", "csv", "-o", tmp_path / "link.csv")
    assert done.code == 0, done.err
    assert (tmp_path / "link.csv").is_symlink()
    assert epochs_csv((tmp_path / "target.csv").read_text()) == [1, 2, 3]


@pytest.mark.parametrize("fmt", ["csv", "safetensors", "onnx"])
def test_a_character_device_is_written_through_never_replaced(run: Path, tmp_path: Path, fmt: str) -> None:
    device = make_null_device(tmp_path / "null")
    done = run_cli("export", run, "--format", fmt, "-o", device)
    assert done.code == 0, done.err
    assert stat.S_ISCHR(os.lstat(device).st_mode), "the device was replaced by a regular file"
    assert not [p for p in tmp_path.iterdir() if TMP_MARK in p.name]


def test_a_fifo_is_written_through(run: Path, tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()))
    reader.start()
    done = run_cli("export", run, "--format", "csv", "-o", fifo)
    reader.join(timeout=30)
    assert done.code == 0, done.err
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert epochs_csv(received[0].decode()) == [1, 2, 3]


def test_dash_is_standard_output(run: Path) -> None:
    done = run_cli("export", run, "--format", "csv", "-o", "-")
    assert done.code == 0, done.err
    assert epochs_csv(done.out) == [1, 2, 3]  # the CSV alone: no "wrote ..." line mixed in
    assert not (Path.cwd() / "-").exists()
    binary = run_cli("export", run, "--format", "safetensors", "-o", "-")
    assert binary.code == 0, binary.err
    header_size = int.from_bytes(binary.out.encode("latin-1", errors="replace")[:8], "little")
    assert header_size > 0
    folder = run_cli("export", run, "--format", "tensorboard", "-o", "-")
    assert folder.code == 2 and "writes a folder" in folder.err


def test_a_directory_is_not_a_file_target(run: Path, tmp_path: Path) -> None:
    done = run_cli("export", run, "--format", "csv", "-o", tmp_path)
    assert done.code == 2 and "is a directory" in done.err
    assert done.err.count("\n") == 1


def test_exported_files_get_the_usual_mode(run: Path, tmp_path: Path) -> None:
    os.umask(old := os.umask(0o022))
    try:
        for fmt in ("safetensors", "onnx", "csv"):
            out = tmp_path / f"model.{fmt}"
            assert run_cli("export", run, "--format", fmt, "-o", out).code == 0
            assert stat.S_IMODE(out.stat().st_mode) == 0o644, fmt
    finally:
        os.umask(old)


def test_temporaries_of_an_interrupted_export_are_cleaned_and_a_failure_leaves_none(
    run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "e.csv"
    stale = tmp_path / f".e.csv{TMP_MARK}999999999"  # a killed export's (no such pid)
    stale.write_text("half")
    assert run_cli("export", run, "--format", "csv", "-o", out).code == 0
    assert not stale.exists()

    def broken(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(exporters, "write_rows", broken)
    done = run_cli("export", run, "--format", "csv", "-o", out)
    assert done.code == 2 and "No space left" in done.err
    assert epochs_csv(out.read_text()) == [1, 2, 3]  # the previous export is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.csv"]


def tensorboard_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("events.out.tfevents.*"))


def test_tensorboard_reexport_replaces_and_a_failing_one_keeps_the_old(
    run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("tensorboard")
    out = tmp_path / "tb"
    assert run_cli("export", run, "--format", "tensorboard", "-o", out).code == 0
    first = tensorboard_files(out)
    assert len(first) == 1
    assert run_cli("export", run, "--format", "tensorboard", "-o", out).code == 0
    second = tensorboard_files(out)
    assert len(second) == 1 and second != first  # replaced, not doubled

    def broken(*args: object) -> object:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(exporters, "epoch_rows", broken)
    done = run_cli("export", run, "--format", "tensorboard", "-o", out)
    assert done.code == 2, done.err
    assert tensorboard_files(out) == second
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tb"]  # no half-built folder beside it


def test_exporting_into_a_run_that_trains_leaves_its_files_alone(run: Path, tmp_path: Path) -> None:
    """The run's lock is held by a live process (this one): an export into it is refused and its live
    TensorBoard file stays; -o elsewhere still works."""
    pytest.importorskip("tensorboard")
    live = tmp_path / "live"
    (live / "tensorboard").mkdir(parents=True)
    for name in ("config.toml", "metrics.jsonl", "last.pt", "best.pt"):
        (live / name).write_bytes((run / name).read_bytes())
    (live / "tensorboard" / "events.out.tfevents.1.host.1.0").write_bytes(b"live")
    (live / ".lock").write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))
    for fmt in ("tensorboard", "csv"):
        done = run_cli("export", live, "--format", fmt)
        assert done.code == 2 and "in use by" in done.err and "-o" in done.err, done.err
    assert tensorboard_files(live / "tensorboard") == ["events.out.tfevents.1.host.1.0"]
    assert not (live / "epochs.csv").exists()
    assert run_cli("export", live, "--format", "csv", "-o", tmp_path / "elsewhere.csv").code == 0


def test_export_falls_back_to_last_when_there_is_no_best(run: Path, tmp_path: Path) -> None:
    pytest.importorskip("safetensors")
    copy = tmp_path / "nobest"
    copy.mkdir()
    for name in ("config.toml", "metrics.jsonl", "last.pt"):
        (copy / name).write_bytes((run / name).read_bytes())
    done = run_cli("export", copy, "--format", "safetensors")
    assert done.code == 0, done.err
    assert "no best.pt" in done.err and (copy / "model-last.safetensors").is_file()


def test_csv_export_streams_a_long_metrics_file(tmp_path: Path, run: Path) -> None:
    """Rows come from the file line by line: a resume's redone epochs are dropped as in memory."""
    from tuitrain.exports.csv_rows import epoch_rows
    from tuitrain.store.run_dir import epoch_history, read_events

    copy = tmp_path / "long"
    copy.mkdir()
    (copy / "config.toml").write_bytes((run / "config.toml").read_bytes())
    lines = [{"event": "start", "start_epoch": 0}]
    lines += [{"event": "epoch", "epoch": e, "step": e} for e in range(1, 2001)]
    lines += [{"event": "start", "start_epoch": 1500}]  # a resume from epoch 1500 redoes the rest
    lines += [{"event": "epoch", "epoch": e, "step": e, "lr": 0.5} for e in range(1501, 1601)]
    (copy / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines) + '{"event": "ep')
    rows = list(epoch_rows(copy))
    expected = epoch_history(read_events(copy / "metrics.jsonl")[0])
    assert [r["epoch"] for r in rows] == [e["epoch"] for e in expected] == list(range(1, 1601))
    assert rows[-1]["lr"] == 0.5 and rows[1499]["lr"] is None


@pytest.mark.slow  # the peak memory of a process of its own
def test_csv_export_of_a_long_run_stays_in_bounded_memory(run: Path, tmp_path: Path) -> None:
    """A 50 MB metrics.jsonl (half a million step lines) exports in a process whose peak memory stays
    far below what holding the file's events would take (about 1 GB)."""
    import subprocess
    import sys

    long = tmp_path / "long"
    long.mkdir()
    (long / "config.toml").write_bytes((run / "config.toml").read_bytes())
    line = '{"event": "step", "epoch": %d, "step": %d, "loss": 0.123456789, "accuracy": 0.5, "lr": 0.01}\n'
    with open(long / "metrics.jsonl", "w") as f:
        f.write('{"event": "start", "start_epoch": 0}\n')
        for block in range(500):
            f.write("".join(line % (1 + step // 1000, step) for step in range(block * 1000, block * 1000 + 1000)))
    assert (long / "metrics.jsonl").stat().st_size > 45e6
    out = tmp_path / "steps.csv"
    peak = tmp_path / "peak"
    # the process's own high-water mark (VmHWM starts afresh at exec; ru_maxrss would count the suite's)
    report = (
        "import sys; from tuitrain.cli import main\n"
        "peak = sys.argv.pop(1)\n"
        "try:\n    main()\nfinally:\n"
        "    status = open('/proc/self/status').read()\n"
        "    open(peak, 'w').write(status.split('VmHWM:')[1].split()[0])\n"
    )
    args = ["export", str(long), "--format", "csv", "--steps", "-o", str(out)]
    subprocess.run([sys.executable, "-c", report, str(peak), *args], check=False, timeout=300)
    if not peak.exists():
        pytest.skip("no /proc/self/status here")
    peak_mb = int(peak.read_text()) / 1024
    with open(out) as f:
        assert sum(1 for _ in f) == 500_001
    assert peak_mb < 300, f"peak memory {peak_mb:.0f} MB"


def test_weights_export_without_the_data_file(tmp_path: Path) -> None:
    """A CSV run whose file moved still exports its network (sizes from the checkpoint)."""
    pytest.importorskip("safetensors")
    pytest.importorskip("onnxruntime")
    data = tmp_path / "mine.csv"
    data.write_text("x1,x2,label\n" + "".join(f"{i / 50:.2f},{(i * 7 % 50) / 50:.2f},{i % 3}\n" for i in range(60)))
    done = run_cli("run", "csv", "--data", data, "--epochs", "2", "--out", tmp_path / "runs", "--json")
    assert done.code == 0, done.err
    run = Path(json.loads(done.out.splitlines()[0])["run_dir"])
    data.rename(tmp_path / "moved.csv")
    for fmt in ("safetensors", "onnx"):
        exported = run_cli("export", run, "--format", fmt)
        assert exported.code == 0, (fmt, exported.err)
    from safetensors.torch import load_file

    weights = load_file(run / "model-best.safetensors")
    assert weights["layers.1.weight"].shape[1] == 2 and weights["layers.5.weight"].shape[0] == 3
