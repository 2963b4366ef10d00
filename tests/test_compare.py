"""Races, branches and comparisons: the real `tuitrain` process and the core they stand on."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import run_cli
from helpers import default_signals

from tuitrain.config import resolve_config
from tuitrain.errors import UsageError
from tuitrain.runs import compare
from tuitrain.runs import start as session
from tuitrain.runs.compare import RunRecord
from tuitrain.store import run_dir as runs
from tuitrain.training.threads import usable_cpus

DATA = Path(__file__).parent / "data"
TINY = str(DATA / "tiny_rings.toml")


def tuitrain(*args: str):
    """`tuitrain ARGS` in this process: a sequential race trains its runs in the process it is given."""
    return run_cli(*args)


@pytest.fixture(scope="module")
def race(tmp_path_factory):
    """The issue's acceptance race: rings, 20 epochs, sgd and adam at two learning rates."""
    out = tmp_path_factory.mktemp("race") / "D"
    args = ["run", "rings", "--epochs", "20", "--optimizer", "sgd,adam", "--lr", "0.01,0.1", "--out", str(out)]
    result = tuitrain(*args, "--json")
    return out, result, [json.loads(line) for line in result.stdout.splitlines()]


def test_a_race_leaves_every_combination_completed_and_ranked(race):
    out, result, lines = race
    assert result.returncode == 0, result.stderr
    dirs = sorted(p for p in out.iterdir())
    assert len(dirs) == 4
    summaries = {d.name: json.loads((d / "summary.json").read_text()) for d in dirs}
    assert {s["status"] for s in summaries.values()} == {"completed"}
    configs = {d.name: runs.load_run_config(d).train for d in dirs}
    assert {(c.optimizer, c.lr, c.seed) for c in configs.values()} == {
        ("sgd", 0.01, 0),
        ("sgd", 0.1, 0),
        ("adam", 0.01, 0),
        ("adam", 0.1, 0),
    }
    assert lines[0]["event"] == "race" and len(lines[0]["runs"]) == 4
    tagged = lines[1:-1]
    assert {line["run"] for line in tagged} == set(summaries)  # every event says whose it is
    assert [line["event"] for line in tagged].count("end") == 4
    ranking = lines[-1]
    assert ranking["event"] == "ranking" and [r["rank"] for r in ranking["runs"]] == [1, 2, 3, 4]
    accuracies = [r["test"]["accuracy"] for r in ranking["runs"]]
    assert accuracies == sorted(accuracies, reverse=True)
    assert ranking["runs"][0]["optimizer"] == "adam" and ranking["runs"][0]["test"]["accuracy"] > 0.95
    assert set(ranking["differs"]) == {"train.optimizer", "train.lr"}


def test_compare_agrees_with_the_summaries(race):
    out, _, lines = race
    result = tuitrain("compare", *sorted(str(p) for p in out.iterdir()), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    for row in report["runs"]:
        summary = json.loads((Path(row["run_dir"]) / "summary.json").read_text())
        assert row["test"] == summary["test"] and row["best"] == summary["best"]
    assert [r["name"] for r in report["runs"]] == [r["name"] for r in lines[-1]["runs"]]
    table = tuitrain("compare", *(str(p) for p in out.iterdir()))
    first = table.stdout.splitlines()[1]
    assert first.startswith("1  ") and report["runs"][0]["name"] in first and report["runs"][0]["label"] in first
    assert "train.optimizer" in table.stdout and "train.lr" in table.stdout and "train.seed" not in table.stdout


@pytest.mark.slow  # a parallel race trains in child processes
def test_a_parallel_race_splits_the_cores_and_gets_the_same_numbers(race, tmp_path):
    out, _, lines = race
    result = tuitrain("run", "rings", "--epochs", "20", "--optimizer", "sgd,adam", "--lr", "0.01,0.1", "--parallel",
                      "2", "--out", str(tmp_path), "--json")  # fmt: skip
    assert result.returncode == 0, result.stderr
    parallel = [json.loads(line) for line in result.stdout.splitlines()]
    starts = [line for line in parallel if line["event"] == "start"]
    assert {s["threads"] for s in starts} == {max(1, usable_cpus() // 2)}  # no core is oversubscribed
    ends = {r["label"]: r["test"] for r in parallel[-1]["runs"]}
    serial = {r["label"]: r["test"] for r in lines[-1]["runs"]}
    assert ends.keys() == serial.keys()
    for label, test in ends.items():  # same seed, same data: the same result, to the rounding that
        # one thread instead of two changes (Intel CPUs sum in another order; AMD's gave the same bits)
        assert test["loss"] == pytest.approx(serial[label]["loss"], rel=1e-4), label
        assert test["accuracy"] == pytest.approx(serial[label]["accuracy"], abs=0.0015), label  # one sample


def test_plain_race_lines_are_prefixed_by_the_run(tmp_path):
    result = tuitrain("run", TINY, "--lr", "0.05,0.2", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    body = [line for line in result.stdout.splitlines() if line.startswith("[")]
    assert {line.split("]")[0] + "]" for line in body} == {"[lr=0.05]", "[lr=0.2]"}
    assert "ranking:" in result.stdout and "\x1b" not in result.stdout


@pytest.mark.slow  # SIGINT to the real process
def test_an_interrupted_race_stops_and_leaves_no_empty_folders(tmp_path):
    args = [sys.executable, "-m", "tuitrain", "run", TINY, "--epochs", "100000", "--lr", "0.05,0.1,0.2"]
    child = subprocess.Popen(  # SIGINT as a terminal gives it, even when CI runs us with it ignored
        [*args, "--out", str(tmp_path), "--json"], stdout=subprocess.PIPE, text=True, preexec_fn=default_signals
    )
    try:
        for line in child.stdout:
            if json.loads(line)["event"] == "epoch":  # the first run is training
                child.send_signal(signal.SIGINT)
                break
        rest, _ = child.communicate(timeout=60)
    finally:
        child.kill()
    assert child.returncode == 130
    assert [p.name.rsplit("-", 1)[-1] for p in tmp_path.iterdir()] == ["lr0.05"]  # the other two never began
    assert json.loads((next(tmp_path.iterdir()) / "summary.json").read_text())["status"] == "interrupted"
    assert json.loads(rest.splitlines()[-1])["event"] == "ranking"


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", TINY, "--lr", "0.1,", "--out", "x"], "has an empty item"),
        (["run", TINY, "--lr", "0.1,abc"], "'abc' is not a valid float"),
        (["run", TINY, "--optimizer", "sgd,nope"], "'nope' is not one of"),
        (["run", TINY, "--parallel", "2"], "--parallel is for a race"),
        (["run", TINY, "--lr", "0.1,0.2", "--nproc", "2"], "a race (comma lists) trains new runs"),
        (["show", "rings", "--lr", "0.1,0.2"], "show takes one value"),
        (["run", TINY, "--lr", "0.1,200"], "--lr: 200.0 is out of range"),
        (["compare", "nowhere"], "nowhere: no such run directory"),
        (["run", "--branch", "nowhere"], "nowhere: no such run directory"),
    ],
)
def test_bad_race_and_compare_input_is_one_line_and_exit_2(args, message, tmp_path):
    result = tuitrain(*args)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not list(tmp_path.iterdir())  # nothing was made for a race that could not start


# ----------------------------------------------------------------------------- branches (in-process)


def small(epochs, optimizer="adam"):
    config = resolve_config("rings", epochs=epochs, device="cpu", batch_size=100, optimizer=optimizer)
    config.data.samples = 1200
    return config


def params(trainer):
    return [p.detach().clone() for p in trainer.model.parameters()]


@pytest.mark.parametrize("optimizer", ["momentum", "adam"])  # optimizer state continues too
def test_a_branch_from_epoch_3_is_bit_identical_to_the_straight_run(tmp_path, optimizer):
    straight, _ = session.new_run(small(6, optimizer), tmp_path / "a")
    end6 = straight.run()
    parent, parent_writer = session.new_run(small(3, optimizer), tmp_path / "b")
    parent.run()
    branch, writer = session.branch_run(parent_writer.run_dir, "last", epochs=6)
    end = branch.run()
    assert writer.run_dir.parent == parent_writer.run_dir.parent and writer.run_dir != parent_writer.run_dir
    assert end.status == "completed" and end.test == end6.test and end.step == end6.step
    assert all(torch.equal(a, b) for a, b in zip(params(branch), params(straight), strict=True))
    summary = json.loads((writer.run_dir / "summary.json").read_text())
    assert summary["parent"] == {"run_dir": str(parent_writer.run_dir), "checkpoint": "last", "epoch": 3, "step": 27}
    events, _ = runs.read_events(writer.run_dir / "metrics.jsonl")
    straight_events, _ = runs.read_events(straight.run_dir and Path(straight.run_dir) / "metrics.jsonl")
    history = runs.epoch_history(events)
    assert [e["epoch"] for e in history] == [1, 2, 3, 4, 5, 6]  # its curves continue the parent's
    assert [e["valid"] for e in history] == [e["valid"] for e in runs.epoch_history(straight_events)]
    assert summary["best"] == json.loads((Path(straight.run_dir) / "summary.json").read_text())["best"]
    from tuitrain.store.histories import read_histories

    steps = [r.step for r in read_histories(writer.run_dir / "histories.jsonl")]
    assert (
        steps[0] == 0 and 27 in steps and steps[-1] == 54 and steps == sorted(set(steps))
    )  # the parent's, then its own
    record = compare.load_run_records([writer.run_dir])[0]
    assert (
        record.parent["epoch"] == 3 and "branch@3" in compare.labels([record, *compare.load_records(tmp_path / "a")])[0]
    )


def test_a_branch_changes_the_rate_or_the_optimizer_and_resumes(tmp_path):
    parent, parent_writer = session.new_run(small(3, "sgd"), tmp_path)
    parent.run()
    best = json.loads((parent_writer.run_dir / "summary.json").read_text())["best"]
    faster, writer = session.branch_run(parent_writer.run_dir, "best", lr=0.5, epochs=5)
    assert faster.lr == 0.5 and (faster.epoch, faster.step) == (best["epoch"], best["step"])
    assert faster.run().status == "completed"
    assert runs.load_run_config(writer.run_dir).train.lr == 0.5
    assert json.loads((writer.run_dir / "summary.json").read_text())["parent"]["checkpoint"] == "best"
    adam, adam_writer = session.branch_run(parent_writer.run_dir, optimizer="adam", epochs=5)
    assert adam.config.train.optimizer == "adam" and adam.step == 27
    adam.stop("interrupted")
    adam.run()
    resumed, _ = session.resume_run(adam_writer.run_dir)  # a branch is a run like any other
    assert resumed.run().status == "completed" and resumed.epoch == 5
    assert json.loads((adam_writer.run_dir / "summary.json").read_text())["parent"]["epoch"] == 3


def test_a_branch_refuses_what_it_cannot_do(tmp_path):
    parent, writer = session.new_run(small(3), tmp_path)
    parent.run()
    with pytest.raises(UsageError, match="pass --epochs N"):
        session.branch_run(writer.run_dir)
    with pytest.raises(UsageError, match="not --batch-size"):
        session.branch_run(writer.run_dir, batch_size=10, epochs=6)
    (writer.run_dir / "best.pt").unlink()
    with pytest.raises(UsageError, match="no best.pt to branch from; try --checkpoint last"):
        session.branch_run(writer.run_dir, "best", epochs=6)
    assert len(list(tmp_path.iterdir())) == 1  # refused before any folder was made


# ----------------------------------------------------------------------------- known answers


def record(name, status="completed", test=None, best=None, **config):
    flat = {"name": "rings", "train.optimizer": "sgd", "train.lr": 0.01, "train.seed": 0, "train.threads": 2}
    flat.update({k.replace("__", "."): v for k, v in config.items()})
    best_entry = {"epoch": 1, "step": 1, "valid": best} if best else None
    return RunRecord(name, name, "rings", status, 1, 1, best_entry, None, test, 0.0, flat)


def test_differing_keys_labels_and_ranking_known_answers():
    a = record("a", test={"loss": 0.3, "accuracy": 0.9}, train__optimizer="adam", train__lr=0.001, train__threads=1)
    b = record("b", test={"loss": 0.2, "accuracy": 0.9}, train__lr=0.01)
    c = record("c", test={"loss": 0.1, "accuracy": 0.95}, status="diverged", train__lr=0.1)
    d = record("d", best={"loss": 0.5, "accuracy": 0.6}, train__lr=0.01, train__seed=1, status="interrupted")
    e = record("e", status="crashed")
    assert compare.differing_keys([a, b, c, d, e]) == ["train.optimizer", "train.lr", "train.seed"]  # not threads
    assert compare.labels([a, b]) == ["adam lr=0.001", "sgd lr=0.01"]
    assert compare.labels([b, b]) == ["b", "b"]  # nothing differs: the run's own name
    ranked = [r.name for r in compare.ranked([e, d, c, b, a])]
    assert ranked == ["b", "a", "d", "c", "e"]  # equal accuracy: lower loss first; failed, then unmeasured, last
    assert compare.headline(d) == ("valid", d.best_valid)


def test_settings_leave_out_what_a_run_does_not_use():
    # found comparing rings with lenet in the app: "hidden 100x100 | 64" and "samples 15000 | 0" as differences
    lenet = compare.settings(resolve_config("lenet", dataset="fashion-mnist"))
    rings = compare.settings(resolve_config("rings"))
    assert "model.hidden" not in lenet and "data.samples" not in lenet and "data.test_fraction" not in lenet
    assert "train.momentum" not in lenet  # Adam has no momentum setting
    assert rings["model.hidden"] == (100, 100) and rings["data.samples"] == 15000
    assert compare.settings(resolve_config("rings", optimizer="momentum"))["train.momentum"] == 0.9
    neuron = compare.settings(resolve_config("neuron"))
    assert "model.activation" not in neuron and neuron["data.samples"] == 2000  # blobs' default point count
    a = compare.RunRecord("a", "a", "rings", "completed", 1, 1, None, None, None, 0.0, rings)
    b = compare.RunRecord("b", "b", "lenet", "completed", 1, 1, None, None, None, 0.0, lenet)
    assert "hidden=" not in compare.labels([a, b])[1] and "hidden=100x100" in compare.labels([a, b])[0]


def test_step_history_drops_steps_a_resume_redoes():
    events = [
        {"event": "start", "start_epoch": 0, "steps_per_epoch": 10},
        *({"event": "step", "step": s} for s in (5, 10, 15)),
        {"event": "start", "start_epoch": 1, "steps_per_epoch": 10},
        {"event": "step", "step": 12},
    ]
    assert [s["step"] for s in compare.step_history(events)] == [5, 10, 12]


def test_runs_lists_a_queued_race_run(tmp_path):
    from tuitrain.headless.race import plan

    entries = plan(TINY, {"lr": (0.1, 0.2)}, tmp_path)
    assert [r["status"] for r in runs.list_runs(tmp_path)] == ["queued", "queued"]
    assert [e.label for e in entries] == ["lr=0.1", "lr=0.2"]
    assert entries[0].name.endswith("-tiny_rings-lr0.1") and entries[1].name.endswith("-tiny_rings-lr0.2")
