"""Run directories, checkpoints, exact resume, faults, and the runs/eval commands (in-process)."""

from __future__ import annotations

import errno
import json
import logging
import os
import signal

import pytest
import torch
from click.testing import CliRunner
from helpers import params, resume, small, train

from tuitrain.cli import cli
from tuitrain.errors import UsageError
from tuitrain.events import StepProgress
from tuitrain.runs.signals import GracefulStop
from tuitrain.runs.start import trainer_from_run
from tuitrain.store import checkpoints
from tuitrain.store import run_dir as runs
from tuitrain.store.checkpoints import CheckpointError
from tuitrain.store.run_dir import read_events
from tuitrain.store.writer import RunWriter
from tuitrain.training import engine
from tuitrain.training.engine import Trainer

# ----------------------------------------------------------------------------- layout and exactness


def test_run_directory_layout(tmp_path):
    trainer, writer, rec, ended = train(tmp_path, small(3))
    d = writer.run_dir
    assert d.parent == tmp_path / "out" and d.name.endswith("-rings")
    assert {p.name for p in d.iterdir()} == {
        "config.toml",
        "metrics.jsonl",
        "histories.jsonl",
        "last.pt",
        "best.pt",
        "summary.json",
    }
    assert rec.events[0].run_dir == str(d)  # printers after the writer see the folder
    events, offset = read_events(d / "metrics.jsonl")
    assert offset == (d / "metrics.jsonl").stat().st_size
    assert [e["event"] for e in events if e["event"] != "step"] == ["start", "epoch", "epoch", "epoch", "end"]
    assert events[0]["run_dir"] == str(d)
    summary = json.loads((d / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["epoch"] == 3 and summary["test"] == ended.test.to_dict()
    assert summary["best"]["epoch"] in (1, 2, 3)
    assert runs.load_run_config(d).to_dict() == trainer.config.to_dict()


def test_two_runs_in_the_same_second_do_not_collide(tmp_path):
    a = runs.create_run_dir(tmp_path, "rings", now=1_700_000_000)
    b = runs.create_run_dir(tmp_path, "rings", now=1_700_000_000)
    c = runs.create_run_dir(tmp_path, "my net/x", now=1_700_000_000)
    assert a != b and b.name == a.name + "-2" and a.is_dir() and b.is_dir()
    assert "/" not in c.name and c.parent == tmp_path


@pytest.mark.parametrize("optimizer", ["sgd", "nesterov", "adam"])  # optimizer state travels too
def test_resume_3_then_6_is_bit_identical_to_6_straight(tmp_path, optimizer):
    straight, _, rec6, end6 = train(tmp_path / "a", small(6, optimizer=optimizer))
    _, writer, _, end3 = train(tmp_path / "b", small(3, optimizer=optimizer))
    assert end3.status == "completed" and end3.epoch == 3
    resumed, rec, end = resume(writer.run_dir, epochs=6)
    assert end.status == "completed" and end.epoch == 6 and end.step == end6.step
    assert end.test == end6.test  # exact float equality
    assert [(e.train, e.valid) for e in rec.epochs()] == [(e.train, e.valid) for e in rec6.epochs()[3:]]
    assert all(torch.equal(a, b) for a, b in zip(params(resumed), params(straight), strict=True))
    events, _ = read_events(writer.run_dir / "metrics.jsonl")
    assert [e["event"] for e in events].count("start") == 2
    history = runs.epoch_history(events)
    assert [e["epoch"] for e in history] == [1, 2, 3, 4, 5, 6]
    assert [e["valid"] for e in history] == [e.valid.to_dict() for e in rec6.epochs()]
    assert "epochs = 6" in (writer.run_dir / "config.toml").read_text()


@pytest.mark.parametrize("stop_at", [13, 18])  # mid-epoch 2; and the end of epoch 2 (stop seen at epoch 3's start)
def test_stop_mid_epoch_then_resume_is_exact(tmp_path, monkeypatch, stop_at):
    monkeypatch.setattr(engine, "PROGRESS_INTERVAL", 0.0)  # a step event after every step
    straight, _, _, end5 = train(tmp_path / "a", small(5))
    trainer = Trainer(small(5))
    writer = RunWriter(trainer, tmp_path / "b")

    def stopper(event):
        if isinstance(event, StepProgress) and event.step == stop_at:
            trainer.stop("interrupted")

    trainer.consumers = [writer, stopper]
    ended = trainer.run()
    assert ended.status == "interrupted" and ended.step == stop_at
    state = checkpoints.load(writer.run_dir / "last.pt")
    assert state["step"] == stop_at and state["epoch_step"] == stop_at - 9 * state["epoch"]
    assert json.loads((writer.run_dir / "summary.json").read_text())["status"] == "interrupted"
    resumed, _, end = resume(writer.run_dir)
    assert end.status == "completed" and end.epoch == 5 and end.step == end5.step
    assert end.test == end5.test
    assert all(torch.equal(a, b) for a, b in zip(params(resumed), params(straight), strict=True))


def test_best_checkpoint_holds_the_best_validation_epoch(tmp_path):
    _, writer, rec, _ = train(tmp_path, small(4))
    best = max(rec.epochs(), key=lambda e: (e.valid.accuracy, -e.valid.loss))
    t = trainer_from_run(writer.run_dir, "best")
    assert t.epoch == best.epoch
    assert t.evaluate(t.data.valid) == best.valid


# ----------------------------------------------------------------------------- checkpoint faults


@pytest.fixture(scope="module")
def done_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("done")
    _, writer, _, ended = train(tmp, small(2))
    return writer.run_dir, ended


def copy_run(src, dst):
    dst.mkdir(parents=True)
    for p in src.iterdir():
        (dst / p.name).write_bytes(p.read_bytes())
    return dst


def test_missing_checkpoint(done_run, tmp_path):
    d = copy_run(done_run[0], tmp_path / "r")
    (d / "last.pt").unlink()
    with pytest.raises(CheckpointError, match="no checkpoint at") as info:
        trainer_from_run(d)
    assert info.value.exit_code == 2


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_truncated_or_corrupt_checkpoint(done_run, tmp_path, damage):
    d = copy_run(done_run[0], tmp_path / "r")
    data = (d / "last.pt").read_bytes()
    (d / "last.pt").write_bytes({"truncated": data[: len(data) // 2], "garbage": os.urandom(500), "empty": b""}[damage])
    with pytest.raises(CheckpointError) as info:
        trainer_from_run(d)
    assert info.value.exit_code == 2 and "\n" not in str(info.value)


def test_checkpoint_of_another_network(done_run, tmp_path):
    _, other, _, _ = train(tmp_path, small(1, hidden=[7]))
    d = copy_run(done_run[0], tmp_path / "r")
    (d / "last.pt").write_bytes((other.run_dir / "last.pt").read_bytes())
    with pytest.raises(CheckpointError, match="does not fit") as info:
        trainer_from_run(d)
    assert info.value.exit_code == 2 and "\n" not in str(info.value)


class Evil:
    def __reduce__(self):
        return (os.system, (f"touch {os.environ['EVIL_MARK']}",))


def test_checkpoint_cannot_run_code(tmp_path, monkeypatch):
    mark = tmp_path / "pwned"
    monkeypatch.setenv("EVIL_MARK", str(mark))
    torch.save({"format": checkpoints.FORMAT, "model": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError):
        checkpoints.load(tmp_path / "evil.pt")
    assert not mark.exists()


def test_full_disk_while_checkpointing_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    trainer = Trainer(small(4))
    messages = []
    writer = RunWriter(trainer, tmp_path, warn=messages.append)
    trainer.consumers = [writer]
    trainer.config.train.epochs = 2
    trainer.run()  # completes 2 epochs, writes last.pt
    writer.close()
    before = (writer.run_dir / "last.pt").read_bytes()

    def half_then_enospc(fd, data):
        os.write(fd, bytes(data[: len(data) // 2]))
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    trainer.config.train.epochs = 4
    writer2 = RunWriter(trainer, run_dir=writer.run_dir, resume=True, warn=messages.append)
    trainer.consumers = [writer2]
    monkeypatch.setattr(checkpoints, "_write_all", half_then_enospc)  # the disk fills up
    ended = trainer.run()  # training goes on; every save fails
    # the run trained, but what it trained is not on disk: failed, in the end event as in summary.json
    assert ended.status == "failed" and ended.epoch == 4 and "final checkpoint" in ended.message
    assert (writer.run_dir / "last.pt").read_bytes() == before
    assert checkpoints.load(writer.run_dir / "last.pt")["epoch"] == 2
    assert not [p for p in writer.run_dir.iterdir() if checkpoints.TMP_MARK in p.name]
    assert writer2.errors and "No space left on device" in writer2.errors[0]
    assert any("previous file is intact" in m for m in messages)


def test_atomic_write_failure_leaves_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "f.json"
    checkpoints.atomic_write(target, "old")
    monkeypatch.setattr(
        checkpoints, "_write_all", lambda fd, data: (_ for _ in ()).throw(OSError(errno.ENOSPC, "full"))
    )
    with pytest.raises(OSError):
        checkpoints.atomic_write(target, "new")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["f.json"]


# ----------------------------------------------------------------------------- metrics file


def test_read_events_skips_broken_lines_and_waits_for_a_half_written_one(tmp_path, caplog):
    path = tmp_path / "metrics.jsonl"
    path.write_bytes(b'{"event": "start"}\n{not json\n[1, 2]\n\n{"event": "epoch", "epoch": 1}\n{"event": "ep')
    with caplog.at_level(logging.WARNING, logger="tuitrain.store.run_dir"):
        events, offset = read_events(path)
    assert [e["event"] for e in events] == ["start", "epoch"]
    assert len([r for r in caplog.records if "broken line" in r.getMessage()]) == 2
    assert path.read_bytes()[offset:] == b'{"event": "ep'
    with open(path, "ab") as f:
        f.write(b'och", "epoch": 2}\n')
    more, offset2 = read_events(path, offset)
    assert more == [{"event": "epoch", "epoch": 2}] and offset2 == path.stat().st_size
    assert read_events(path, offset2) == ([], offset2)
    assert read_events(tmp_path / "missing.jsonl") == ([], 0)


def test_resume_cuts_a_half_written_metrics_line(done_run, tmp_path):
    d = copy_run(done_run[0], tmp_path / "r")
    with open(d / "metrics.jsonl", "ab") as f:
        f.write(b'{"event": "step", "epo')  # killed mid-write
    _, _, end = resume(d, epochs=3)
    events, offset = read_events(d / "metrics.jsonl")
    assert offset == (d / "metrics.jsonl").stat().st_size and events[-1]["event"] == "end"
    assert [e["epoch"] for e in runs.epoch_history(events)] == [1, 2, 3]


# ----------------------------------------------------------------------------- CLI (in-process)


def test_unwritable_out(tmp_path):
    (tmp_path / "file").write_text("x")
    result = CliRunner().invoke(cli, ["run", "rings", "--epochs", "1", "--out", str(tmp_path / "file" / "runs")])
    assert isinstance(result.exception, UsageError) and "cannot create a run directory" in str(result.exception)


def test_resume_on_a_directory_that_is_not_a_run(tmp_path):
    result = CliRunner().invoke(cli, ["run", "--resume", str(tmp_path)])
    assert isinstance(result.exception, UsageError) and "not a run directory" in str(result.exception)
    result = CliRunner().invoke(cli, ["run", "--resume", str(tmp_path / "nope")])
    assert isinstance(result.exception, UsageError) and "no such run directory" in str(result.exception)


def test_run_needs_preset_or_resume(done_run):
    result = CliRunner().invoke(cli, ["run"])
    assert isinstance(result.exception, UsageError) and "PRESET" in str(result.exception)
    for args in (
        ["rings", "--resume", str(done_run[0])],
        ["--resume", str(done_run[0]), "--batch-size", "1"],
        ["--resume", str(done_run[0])],
    ):  # done_run completed its 2 epochs already
        result = CliRunner().invoke(cli, ["run", *args])
        assert isinstance(result.exception, UsageError), args


def test_runs_and_eval_commands(done_run):
    run_dir, ended = done_run
    result = CliRunner().invoke(cli, ["runs", "--out", str(run_dir.parent)])
    assert result.exit_code == 0, result.output
    header, row = result.output.splitlines()[:2]
    assert "BEST VALID" in header and run_dir.name in row and "completed" in row and "2/2" in row
    result = CliRunner().invoke(cli, ["eval", str(run_dir), "--checkpoint", "last", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["test"] == ended.test.to_dict() and report["epoch"] == 2
    result = CliRunner().invoke(cli, ["eval", str(run_dir)])
    assert result.exit_code == 0 and "test" in result.output and "best checkpoint" in result.output


def test_runs_marks_a_killed_run_as_crashed(done_run, tmp_path):
    d = copy_run(done_run[0], tmp_path / "out" / "20200101-000000-rings")
    summary = json.loads((d / "summary.json").read_text())
    summary.update(status="running", pid=2**22 + 12345)  # no such process
    (d / "summary.json").write_text(json.dumps(summary))
    assert runs.list_runs(tmp_path / "out")[0]["status"] == "crashed"


def test_second_signal_exits_at_once():
    class Fake:
        stopped = None
        state = "running"

        def stop(self, status):
            self.stopped = status

    fake = Fake()
    stop = GracefulStop(fake, notice=lambda m: None)
    stop.handle(signal.SIGTERM)
    assert fake.stopped == "interrupted" and stop.exit_code == 143
    with pytest.raises(SystemExit) as info:
        stop.handle(signal.SIGINT)
    assert info.value.code == 130


def test_abort_marks_the_summary_and_keeps_the_checkpoint(done_run, tmp_path):
    d = copy_run(done_run[0], tmp_path / "r")
    trainer = trainer_from_run(d, epochs=5)
    writer = RunWriter(trainer, run_dir=d, resume=True)
    trainer.consumers = [writer]
    before = (d / "last.pt").read_bytes()
    writer.abort("stopped at once by a second SIGINT")
    summary = json.loads((d / "summary.json").read_text())
    assert summary["status"] == "aborted" and "epoch 2" in summary["message"] and summary["epoch"] == 2
    assert (d / "last.pt").read_bytes() == before
    _, _, end = resume(d)
    assert end.status == "completed" and end.epoch == 5


def test_full_disk_at_the_start_is_an_error(done_run, tmp_path, monkeypatch):
    d = copy_run(done_run[0], tmp_path / "r")
    trainer = trainer_from_run(d, epochs=3)
    monkeypatch.setattr(
        checkpoints,
        "_write_all",
        lambda fd, data: (_ for _ in ()).throw(OSError(errno.ENOSPC, "No space left on device")),
    )
    with pytest.raises(runs.RunDirError, match="No space left") as info:
        RunWriter(trainer, run_dir=d, resume=True)
    assert info.value.exit_code == 2
    assert runs.load_run_config(d).train.epochs == 2  # the old config is intact


def test_resume_with_a_lower_learning_rate(done_run, tmp_path):
    d = copy_run(done_run[0], tmp_path / "r")
    result = CliRunner().invoke(cli, ["run", "--resume", str(d), "--epochs", "3", "--lr", "0.001", "--json"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.output.splitlines()]
    assert lines[0]["config"]["train"]["lr"] == 0.001 and lines[1]["lr"] == 0.001
    assert runs.load_run_config(d).train.lr == 0.001


def test_ignored_signals_stay_ignored():
    old = signal.signal(signal.SIGHUP, signal.SIG_IGN)  # as under nohup
    try:
        stop = GracefulStop(object()).install()
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
        assert signal.getsignal(signal.SIGTERM) == stop.handle
        stop.uninstall()
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    finally:
        signal.signal(signal.SIGHUP, old)
