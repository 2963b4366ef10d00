"""Damaged files answered in one line or a marked row: run directories (summary.json, metrics.jsonl,
unreadable folders) and checkpoints of the wrong types or of another optimizer (issue 11)."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest
import torch
from conftest import run_cli

from tuitrain.checks import summary_problem
from tuitrain.config import resolve_config
from tuitrain.events import EpochEnded, RunEnded, RunStarted, StepProgress, event_from_dict, metrics_from_dict
from tuitrain.runs.start import new_run
from tuitrain.store import run_dir as runs
from tuitrain.store.run_dir import RunDirError, list_runs, read_events, read_summary
from tuitrain.training.engine import Trainer

ROOT = os.geteuid() == 0


def tuitrain(*args):
    """`tuitrain ARGS` in this process: what is tested is its exit code and one-line error, not the process."""
    return run_cli(*args)


def assert_one_error(result, code, *words):
    """Exit `code`, exactly one stderr line `Error: ...` holding `words`, no traceback, nothing raw."""
    assert result.returncode == code, (result.returncode, result.stdout[-2000:], result.stderr[-2000:])
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr[-2000:]
    assert "Traceback" not in result.stderr and all(c.isprintable() for c in lines[0])
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


def small(optimizer="adam", hidden=None, epochs=2):
    """Rings with 1200 points, 9 steps an epoch: a run takes well under a second."""
    config = resolve_config("rings", epochs=epochs, device="cpu", batch_size=100, optimizer=optimizer)
    config.data.samples = 1200
    if hidden is not None:
        config.model.hidden = hidden
    return config


def make_run(out: Path, config) -> Path:
    trainer, writer = new_run(config, out)
    trainer.run()
    return writer.run_dir


@pytest.fixture(scope="module")
def done_run(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("done") / "out", small())


def copy_run(src: Path, dst: Path) -> Path:
    dst.mkdir(parents=True)
    for p in src.iterdir():
        (dst / p.name).write_bytes(p.read_bytes())
    return dst


# ----------------------------------------------------------------------------- 1. resume --lr


@pytest.mark.parametrize("lr", ["nan", "inf", "-inf"])
def test_resume_refuses_a_non_finite_learning_rate(done_run, tmp_path, lr):
    d = copy_run(done_run, tmp_path / "r")
    before = (d / "summary.json").read_text()
    assert_one_error(tuitrain("run", "--resume", str(d), "--epochs", "3", "--lr", lr), 2, "--lr", "finite")
    assert (d / "summary.json").read_text() == before and runs.load_run_config(d).train.lr == 0.01


# ----------------------------------------------------------------------------- 7. events read back

GOOD_EPOCH = {
    "event": "epoch",
    "epoch": 1,
    "step": 9,
    "train": {"loss": 1.0, "accuracy": 0.5},
    "valid": {"loss": 1.1, "accuracy": 0.4},
    "lr": 0.01,
    "seconds": 0.1,
    "samples_per_s": 900.0,
    "total_seconds": 0.1,
}


@pytest.mark.parametrize(
    "line",
    [
        {"event": "epoch", "epoch": "x", "train": 5},
        {**GOOD_EPOCH, "epoch": "1"},
        {**GOOD_EPOCH, "epoch": True},
        {**GOOD_EPOCH, "epoch": 1.0},
        {**GOOD_EPOCH, "step": -1},
        {**GOOD_EPOCH, "step": 10**30},
        {**GOOD_EPOCH, "train": 5},
        {**GOOD_EPOCH, "train": {"loss": "low"}},
        {**GOOD_EPOCH, "valid": {"loss": 1.0, "accuracy": [1]}},
        {**GOOD_EPOCH, "lr": "0.01"},
        {**GOOD_EPOCH, "seconds": False},
        {
            "event": "step",
            "epoch": 1,
            "step": 1,
            "epoch_step": 1,
            "loss": {"a": 1},
            "accuracy": None,
            "lr": 0.1,
            "samples_per_s": 1.0,
            "seconds": 1.0,
        },
        {"event": "state", "state": 1, "lr": 0.1},
        {
            "event": "end",
            "status": "completed",
            "epoch": 1,
            "step": 1,
            "test": "good",
            "train_seconds": 1.0,
            "samples_per_s": 1.0,
        },
        {
            "event": "start",
            "preset": "p",
            "config": {"train": {"lr": "fast"}},
            "device": "cpu",
            "task": "classes",
            "train_samples": 1,
            "valid_samples": 1,
            "test_samples": 1,
            "steps_per_epoch": 1,
            "epochs": 1,
            "start_epoch": 0,
            "parameters": 1,
            "data_source": "x",
        },
        {
            "event": "start",
            "preset": "p",
            "config": {"train": [1]},
            "device": "cpu",
            "task": "classes",
            "train_samples": 1,
            "valid_samples": 1,
            "test_samples": 1,
            "steps_per_epoch": 1,
            "epochs": 1,
            "start_epoch": 0,
            "parameters": 1,
            "data_source": "x",
        },
        {"event": ["epoch"]},
        {"event": "epoch"},  # fields missing
        ["not", "an", "object"],
    ],
)
def test_lines_with_wrong_types_are_skipped(line):
    assert event_from_dict(line) is None


def test_well_typed_lines_become_events_with_the_right_types():
    epoch = event_from_dict({**GOOD_EPOCH, "lr": 1, "train": {"loss": None}})  # null: NaN written as null
    assert isinstance(epoch, EpochEnded) and isinstance(epoch.lr, float) and epoch.train.loss != epoch.train.loss
    step = event_from_dict(
        {
            "event": "step",
            "epoch": 1,
            "step": 1,
            "epoch_step": 1,
            "loss": None,
            "accuracy": None,
            "lr": 0.1,
            "samples_per_s": 1.0,
            "seconds": 1.0,
        }
    )
    assert isinstance(step, StepProgress) and step.accuracy is None
    end = event_from_dict(
        {
            "event": "end",
            "status": "diverged",
            "epoch": 1,
            "step": 1,
            "test": None,
            "train_seconds": 1.0,
            "samples_per_s": None,
        }
    )
    assert isinstance(end, RunEnded) and end.test is None
    assert metrics_from_dict({"loss": "x"}) is None and metrics_from_dict({"loss": 1}).loss == 1.0


def test_a_damaged_metrics_file_reads_back_as_well_typed_events(done_run, tmp_path, caplog):
    d = copy_run(done_run, tmp_path / "r")
    with open(d / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"event": "epoch", "epoch": "x", "train": 5}) + "\n")
        f.write("[" * 100_000 + "]" * 100_000 + "\n")  # json.loads: RecursionError
        f.write('{"event": "epoch", "lr": NaN}\n')
    with caplog.at_level(logging.WARNING, logger="tuitrain.store.run_dir"):
        lines, _ = read_events(d / "metrics.jsonl")
    assert "nested too deeply" in caplog.text
    events = [event_from_dict(line) for line in lines]
    good = [e for e in events if e is not None]
    assert isinstance(good[0], RunStarted) and isinstance(good[-1], RunEnded)
    assert len(events) - len(good) == 2  # the two typed-wrong objects


def test_metrics_file_that_is_a_folder_is_a_clear_error(tmp_path):
    (tmp_path / "metrics.jsonl").mkdir()
    with pytest.raises(RunDirError, match="cannot read '.*metrics.jsonl'") as info:
        read_events(tmp_path / "metrics.jsonl")
    assert info.value.exit_code == 2


# ----------------------------------------------------------------------------- 7. damaged run directories

SUMMARY_DAMAGE = {  # name -> (how summary.json is damaged, what the problem says)
    "epoch string": (lambda s: {**s, "epoch": "x"}, "epoch must be a whole number"),
    "status number": (lambda s: {**s, "status": 3}, "status must be a string"),
    "status null": (lambda s: {**s, "status": None}, "status must be a string"),
    "updated_at NaN": (lambda s: {**s, "updated_at": float("nan")}, "updated_at must be a finite number"),
    "train_seconds Infinity": (lambda s: {**s, "train_seconds": float("inf")}, "train_seconds must be a finite"),
    "best accuracy string": (lambda s: {**s, "best": {"epoch": 1, "valid": {"accuracy": "x"}}}, "best must be"),
    "test loss string": (lambda s: {**s, "test": {"loss": "x"}}, "test must be metrics"),
    "pid string": (lambda s: {**s, "status": "running", "pid": "123"}, "pid must be a whole number"),
    "not JSON": ("{", "not valid JSON"),
    "a JSON list": ("[1, 2]", "not a JSON object"),
    "nested too deeply": ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    "not UTF-8": (b"\xff\xfe{}", "not UTF-8"),
}


def damage_summary(d: Path, name: str) -> None:
    how, _ = SUMMARY_DAMAGE[name]
    path = d / "summary.json"
    if callable(how):
        path.write_text(json.dumps(how(json.loads(path.read_text()))))  # NaN/Infinity as Python writes them
    elif isinstance(how, bytes):
        path.write_bytes(how)
    else:
        path.write_text(how)


@pytest.mark.parametrize("name", SUMMARY_DAMAGE)
def test_a_damaged_summary_is_listed_as_damaged(done_run, tmp_path, name):
    out = tmp_path / "out"
    copy_run(done_run, out / "20200101-000000-good")
    d = copy_run(done_run, out / "20200101-000001-bad")
    damage_summary(d, name)
    good, bad = list_runs(out)
    assert good["status"] == "completed" and good["problem"] is None and good["epoch"] == 2
    assert bad["status"] == "damaged" and SUMMARY_DAMAGE[name][1] in bad["problem"]
    assert bad["preset"] == "rings"  # from config.toml instead
    assert bad["epoch"] is None and isinstance(bad["updated_at"], float)
    assert read_summary(d) == {}  # what a resume reads: nothing rather than wrong types


@pytest.mark.parametrize(
    "name, problem",
    [
        ("summary.json", "summary.json: is a directory, not a file"),
        ("metrics.jsonl", "metrics.jsonl: is a directory, not a file"),
        ("config.toml", "config.toml: is a directory, not a file"),
    ],
)
def test_a_folder_where_a_file_belongs_is_listed_as_unreadable(done_run, tmp_path, name, problem):
    d = copy_run(done_run, tmp_path / "out" / "20200101-000000-x")
    (d / name).unlink()
    (d / name).mkdir()
    (row,) = list_runs(tmp_path / "out")
    assert row["status"] == "unreadable" and row["problem"] == problem


@pytest.mark.skipif(ROOT, reason="root reads folders whatever their permissions")
def test_a_folder_without_permissions_is_listed_as_unreadable(done_run, tmp_path):
    d = copy_run(done_run, tmp_path / "out" / "20200101-000000-x")
    d.chmod(0)
    try:
        (row,) = list_runs(tmp_path / "out")
        assert row["status"] == "unreadable" and "Permission denied" in row["problem"]
        result = tuitrain("runs", "--out", str(tmp_path / "out"))
        assert result.returncode == 0 and "unreadable" in result.stdout
    finally:
        d.chmod(0o755)


@pytest.mark.skipif(ROOT, reason="root reads folders whatever their permissions")
def test_an_unreadable_out_folder_is_one_line(tmp_path):
    (tmp_path / "out").mkdir(mode=0)
    try:
        assert_one_error(tuitrain("runs", "--out", str(tmp_path / "out")), 2, "cannot list the runs", "Permission")
    finally:
        (tmp_path / "out").chmod(0o755)


@pytest.fixture(scope="module")
def damaged_out(done_run, tmp_path_factory):
    """One --out folder holding a good run and one run per kind of damage."""
    out = tmp_path_factory.mktemp("damaged") / "out"
    copy_run(done_run, out / "20200101-000000-good")
    for i, name in enumerate(SUMMARY_DAMAGE, start=1):
        damage_summary(copy_run(done_run, out / f"20200101-{i:06d}-damaged"), name)
    d = copy_run(done_run, out / "20200102-000000-unreadable")
    (d / "summary.json").unlink()
    (d / "summary.json").mkdir()
    return out


def test_runs_lists_every_run_despite_damaged_ones(damaged_out):
    result = tuitrain("runs", "--out", str(damaged_out))
    assert result.returncode == 0 and result.stderr == "", result.stderr
    rows = {line.split()[0]: line for line in result.stdout.splitlines()[1:]}
    assert "completed" in rows["20200101-000000-good"] and "2/2" in rows["20200101-000000-good"]
    damaged = [line for name, line in rows.items() if name.endswith("-damaged")]
    assert len(damaged) == len(SUMMARY_DAMAGE) and all(" damaged " in line for line in damaged)
    assert " unreadable " in rows["20200102-000000-unreadable"]


def test_runs_json_is_strict_json_with_the_problem(damaged_out):
    result = tuitrain("runs", "--out", str(damaged_out), "--json")
    assert result.returncode == 0 and result.stderr == "", result.stderr

    def no_constants(name):
        raise ValueError(f"{name} is not JSON")

    rows = [json.loads(line, parse_constant=no_constants) for line in result.stdout.splitlines()]
    statuses = [row["status"] for row in rows]
    assert statuses.count("damaged") == len(SUMMARY_DAMAGE) and statuses.count("unreadable") == 1
    assert rows[0]["status"] == "completed" and rows[0]["problem"] is None
    assert all(row["problem"] for row in rows[1:])


def test_runs_table_escapes_control_characters(done_run, tmp_path):
    d = copy_run(done_run, tmp_path / "out" / "20200101-000000-\x1b]0;pwned\x07")
    summary = json.loads((d / "summary.json").read_text())
    (d / "summary.json").write_text(json.dumps({**summary, "preset": "p\x1b[2J", "status": "done\nx"}))
    result = tuitrain("runs", "--out", str(tmp_path / "out"))
    assert result.returncode == 0 and "\x1b" not in result.stdout and "\x07" not in result.stdout
    assert "p\\x1b[2J" in result.stdout and "done\\nx" in result.stdout and len(result.stdout.splitlines()) == 2


def test_resume_ignores_a_damaged_summary(done_run, tmp_path):
    d = copy_run(done_run, tmp_path / "r")
    summary = json.loads((d / "summary.json").read_text())
    (d / "summary.json").write_text(
        json.dumps({**summary, "started_at": "yesterday", "best": {"epoch": 1, "valid": {"loss": "x"}}})
    )
    result = tuitrain("run", "--resume", str(d), "--epochs", "3", "--json")
    assert result.returncode == 0, result.stderr
    rewritten = json.loads((d / "summary.json").read_text())
    assert rewritten["status"] == "completed" and summary_problem(rewritten) is None
    assert isinstance(rewritten["started_at"], float)


def test_a_deeply_nested_run_config_is_one_line(done_run, tmp_path):
    d = copy_run(done_run, tmp_path / "r")
    (d / "config.toml").write_text("name = " + "[" * 5000 + "]" * 5000 + "\n")
    assert_one_error(tuitrain("eval", str(d)), 2, "config.toml", "nested too deeply")


# ----------------------------------------------------------------------------- 8. checkpoints


def other_optimizer_state():
    """The optimizer state of an SGD-with-momentum run of the same network."""
    trainer = Trainer(small("momentum", epochs=1))
    trainer.run()
    return trainer.optimizer.state_dict()


def set_first(state, key, value):
    state[key][next(iter(state[key]))] = value


CHECKPOINT_DAMAGE = {  # name -> (change to the checkpoint dict, words of the message)
    "epoch string": (lambda s: s.update(epoch="x"), ["damaged checkpoint", 'epoch must be a whole number, not "x"']),
    "epoch bool": (lambda s: s.update(epoch=True), ["epoch must be a whole number"]),
    "epoch negative": (lambda s: s.update(epoch=-1), ["epoch must be a whole number"]),
    "step float": (lambda s: s.update(step=9.0), ["step must be a whole number"]),
    "train_seconds string": (lambda s: s.update(train_seconds="1"), ["train_seconds must be a number of seconds"]),
    "samples_seen missing": (lambda s: s.pop("samples_seen"), ["checkpoint lacks samples_seen"]),
    "version string": (lambda s: s.update(version="1"), ["version must be a whole number"]),
    "shuffle_rng float": (
        lambda s: s.update(shuffle_rng=s["shuffle_rng"].float()),
        ["shuffle_rng must be a uint8 tensor"],
    ),
    "shuffle_rng list": (lambda s: s.update(shuffle_rng=[1, 2, 3]), ["shuffle_rng must be a uint8 tensor"]),
    "shuffle_rng 2-D": (
        lambda s: s.update(shuffle_rng=s["shuffle_rng"].reshape(2, -1)),
        ["shuffle_rng must be a uint8 tensor"],
    ),
    "shuffle_rng of another device": (
        lambda s: s.update(shuffle_rng=torch.zeros(16, dtype=torch.uint8)),
        ["shuffle state is for another device"],
    ),
    "torch_rng wrong size": (lambda s: s.update(torch_rng=torch.zeros(3, dtype=torch.uint8)), ["torch_rng must be"]),
    "model value not a tensor": (lambda s: set_first(s, "model", "weights"), ["model must be a state dict of tensors"]),
    "model wrong shape": (
        lambda s: set_first(s, "model", torch.zeros(7, 2)),
        ["does not fit this network", "has shape [7, 2] in the checkpoint"],
    ),
    "model missing tensor": (
        lambda s: s["model"].pop(next(iter(s["model"]))),
        ["does not fit this network", "missing"],
    ),
    "optimizer not a dict": (lambda s: s.update(optimizer=[1]), ["optimizer must be an optimizer state dict"]),
    "optimizer lr string": (
        lambda s: s["optimizer"]["param_groups"][0].update(lr="fast"),
        ["optimizer must be an optimizer state dict"],
    ),
    "SGD-momentum state in an adam run": (
        lambda s: s.update(optimizer=other_optimizer_state()),
        ["optimizer state is not adam state", "betas"],
    ),
    "config names another optimizer": (
        lambda s: s["config"]["train"].update(optimizer="sgd"),
        ["holds sgd optimizer state", "trains with adam"],
    ),
    "adam state of another shape": (
        lambda s: s["optimizer"]["state"][0].update(exp_avg=torch.zeros(3)),
        ["optimizer state does not fit this network", "exp_avg is [3] torch.float32"],
    ),
    "adam state of another dtype": (
        lambda s: s["optimizer"]["state"][0].update(exp_avg_sq=torch.zeros(100, 2, dtype=torch.float64)),
        ["optimizer state does not fit", "exp_avg_sq is [100, 2] torch.float64"],
    ),
    "adam state lacking exp_avg_sq": (
        lambda s: s["optimizer"]["state"][0].pop("exp_avg_sq"),
        ["optimizer state is not adam state", "exp_avg_sq"],
    ),
    "config train a list": (lambda s: s["config"].update(train=[1]), ["config must be a configuration"]),
    "config epochs string": (lambda s: s["config"]["train"].update(epochs="9"), ["config must be a configuration"]),
    "best with a string loss": (lambda s: s.update(best={"epoch": 1, "valid": {"loss": "x"}}), ["best must be"]),
}


@pytest.mark.parametrize("name", CHECKPOINT_DAMAGE)
def test_a_damaged_checkpoint_is_refused_in_one_line(done_run, tmp_path, name):
    d = copy_run(done_run, tmp_path / "r")
    state = torch.load(d / "last.pt", weights_only=True)
    change, words = CHECKPOINT_DAMAGE[name]
    change(state)
    torch.save(state, d / "last.pt")
    result = tuitrain("run", "--resume", str(d), "--epochs", "3")
    assert_one_error(result, 2, "last.pt", *words)
    assert json.loads((d / "summary.json").read_text())["epoch"] == 2  # nothing was trained or written


def test_a_damaged_best_checkpoint_is_refused_by_eval(done_run, tmp_path):
    d = copy_run(done_run, tmp_path / "r")
    state = torch.load(d / "best.pt", weights_only=True)
    state["optimizer"]["state"][0]["exp_avg"] = torch.zeros(5)
    torch.save(state, d / "best.pt")
    assert_one_error(tuitrain("eval", str(d)), 2, "best.pt", "exp_avg is [5]")


class Evil:
    def __reduce__(self):
        return (os.system, (f"touch {os.environ['EVIL_MARK']}",))


def test_an_unsafe_checkpoint_is_one_line_without_torch_warnings(done_run, tmp_path, monkeypatch):
    d = copy_run(done_run, tmp_path / "r")
    mark = tmp_path / "pwned"
    monkeypatch.setenv("EVIL_MARK", str(mark))
    torch.save({"format": "tuitrain-checkpoint", "model": Evil()}, d / "last.pt")
    result = tuitrain("run", "--resume", str(d), "--epochs", "3")
    assert_one_error(result, 2, "last.pt", "Python objects", "refused")
    assert "Warning" not in result.stderr and "weights_only" not in result.stderr and not mark.exists()
