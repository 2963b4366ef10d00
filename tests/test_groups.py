"""Seed groups: runs differing only by seed ranked as groups (n, mean, std, min, max), Welch's t-test
deciding which neighbours are tied, `run --seeds N`, and the per-group CSV export."""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from pathlib import Path

import pytest
from conftest import TINY, run_cli

from tuitrain.runs import compare
from tuitrain.runs.compare import make_groups, noise_verdict, t_two_sided_p, welch_t

# ----------------------------------------------------------------------------- the t-test, known answers


@pytest.mark.parametrize(
    "t, df, p",
    [  # two-sided critical values of Student's t at 5% and 1% (any table, e.g. NIST/SEMATECH e-Handbook of
        # Statistical Methods, 1.3.6.7.2 "Critical values of the Student's t distribution")
        (12.706, 1, 0.05),
        (4.303, 2, 0.05),
        (2.776, 4, 0.05),
        (2.571, 5, 0.05),
        (2.228, 10, 0.05),
        (2.086, 20, 0.05),
        (63.657, 1, 0.01),
        (4.604, 4, 0.01),
        (3.169, 10, 0.01),
        (1.960, 1e7, 0.05),  # the normal limit
    ],
)
def test_the_t_distribution_matches_the_critical_value_table(t, df, p):
    assert t_two_sided_p(t, df) == pytest.approx(p, rel=2e-3)
    assert t_two_sided_p(-t, df) == t_two_sided_p(t, df)


@pytest.mark.parametrize("t", [0.0, 0.3, 1.0, 2.5, 7.0, 40.0])
def test_the_t_distribution_matches_its_closed_forms(t):
    # df 1 is the Cauchy distribution: P(|T| >= t) = 1 - 2 atan(t) / pi
    assert t_two_sided_p(t, 1) == pytest.approx(1 - 2 * math.atan(t) / math.pi, rel=1e-12, abs=1e-15)
    # df 2: P(|T| >= t) = 1 - t / sqrt(2 + t^2)
    assert t_two_sided_p(t, 2) == pytest.approx(1 - t / math.sqrt(2 + t * t), rel=1e-12, abs=1e-15)
    # df 4: P(|T| >= t) = 1 - u (3 - u^2) / 2 with u = t / sqrt(4 + t^2)
    u = t / math.sqrt(4 + t * t)
    assert t_two_sided_p(t, 4) == pytest.approx(1 - u * (3 - u * u) / 2, rel=1e-12, abs=1e-15)


def test_welch_by_hand():
    # a = 1, 2, 3 and b = 4, 5, 6: means 2 and 5, variances 1 and 1, so se = sqrt(1/3 + 1/3),
    # t = -3 / sqrt(2/3) = -3.674235, df = (2/3)^2 / ((1/3)^2/2 * 2) = 4; P(|T4| >= 3.674235) = 0.021312
    t, df = welch_t([1, 2, 3], [4, 5, 6])
    assert t == pytest.approx(-3 / math.sqrt(2 / 3)) and df == pytest.approx(4.0)
    assert t_two_sided_p(t, df) == pytest.approx(0.021312, abs=1e-6)
    # unequal variances and sizes: a = 1, 2, 3, 4 (var 5/3), b = 10, 20, 30 (var 100)
    # sa = 5/12, sb = 100/3; t = (2.5 - 20) / sqrt(5/12 + 100/3) = -3.011; df = (sa + sb)^2 / (sa^2/3 + sb^2/2)
    sa, sb = 5 / 12, 100 / 3
    t, df = welch_t([1, 2, 3, 4], [10, 20, 30])
    assert t == pytest.approx(-17.5 / math.sqrt(sa + sb)) and df == pytest.approx(
        (sa + sb) ** 2 / (sa**2 / 3 + sb**2 / 2)
    )
    assert 2.0 < df < 2.1  # Welch's df: near the smaller sample's n - 1, not the pooled 5
    assert 0.05 < t_two_sided_p(t, df) < 0.1  # df 2.05: the 5% critical value is about 4.2 > 3.01


def test_the_verdict_rules():
    assert noise_verdict([0.90, 0.91, 0.92], [0.90, 0.91, 0.925])["tied"]
    clear = noise_verdict([0.98, 0.985, 0.99], [0.58, 0.59, 0.60])
    assert clear["rule"] == "welch" and not clear["tied"] and clear["p"] < 1e-4
    one = noise_verdict([0.9], [0.85, 0.95])
    assert one == {"rule": "range", "p": None, "tied": True}
    assert not noise_verdict([0.9], [0.8, 0.85])["tied"]
    same = noise_verdict([0.5, 0.5], [0.5, 0.5])
    assert same["tied"] and same["p"] == 1.0
    assert not noise_verdict([0.6, 0.6], [0.5, 0.5])["tied"]


# ----------------------------------------------------------------------------- groups of records


def record(name, optimizer, seed, accuracy, status="completed", lr=0.01):
    config = {"name": "rings", "train.optimizer": optimizer, "train.lr": lr, "train.seed": seed}
    test = None if accuracy is None else {"loss": 1 - accuracy, "accuracy": accuracy}
    return compare.RunRecord(name, name, "rings", status, 30, 30, None, None, test, 0.0, config)


def test_groups_gather_seeds_and_carry_their_statistics():
    records = [record(f"sgd{s}", "sgd", s, a) for s, a in enumerate((0.58, 0.59, 0.61))]
    records += [record(f"adam{s}", "adam", s, a) for s, a in enumerate((0.97, 0.98, 0.99))]
    records += [record("adam3", "adam", 3, None, status="diverged")]
    groups = make_groups(records)
    assert [g.label for g in groups] == ["adam", "sgd"] and [g.rank for g in groups] == [1, 2]
    adam, sgd = groups
    assert adam.n == 3 and adam.mean == pytest.approx(0.98) and adam.std == pytest.approx(0.01)
    assert (adam.low, adam.high) == (0.97, 0.99) and len(adam.records) == 4
    assert adam.failure_note() == "1 of 4 runs diverged, left out of the numbers"
    assert sgd.std == pytest.approx(statistics.stdev([0.58, 0.59, 0.61]))
    assert sgd.verdict is not None and sgd.verdict["rule"] == "welch" and not sgd.tied
    lines = compare.group_table(records)
    assert "adam ranks above sgd, beyond seed noise" in "\n".join(lines)
    assert any(line.split()[:3] == ["1", "adam", "3"] for line in lines), lines


def test_tied_groups_share_a_rank_and_say_so():
    records = [record(f"sgd{s}", "sgd", s, a) for s, a in enumerate((0.90, 0.92, 0.94))]
    records += [record(f"adam{s}", "adam", s, a) for s, a in enumerate((0.91, 0.93, 0.95))]
    records += [record("n1", "nesterov", 0, 0.5)]
    groups = make_groups(records)
    assert [(g.label, g.rank, g.tied) for g in groups] == [("adam", 1, True), ("sgd", 1, True), ("nesterov", 3, False)]
    text = "\n".join(compare.group_table(records))
    assert "adam and sgd cannot be told apart with 3 seeds" in text
    assert [line.split()[:2] for line in text.splitlines() if line.startswith("=")] == [["=1", "adam"], ["=1", "sgd"]]
    assert "sgd ranks above nesterov with 3 seeds and 1 seed (their min-max ranges do not overlap" in text
    report = compare.comparison(records)
    assert [(g["label"], g["rank"], g["n"]) for g in report["groups"]] == [
        ("adam", 1, 3),
        ("sgd", 1, 3),
        ("nesterov", 3, 1),
    ]


def test_single_runs_are_groups_of_one():
    records = [record("a", "sgd", 0, 0.8, lr=0.1), record("b", "sgd", 0, 0.7, lr=0.01)]
    groups = compare.comparison(records)["groups"]
    assert [(g["label"], g["n"], g["std"], g["rank"]) for g in groups] == [
        ("lr=0.1", 1, None, 1),
        ("lr=0.01", 1, None, 2),
    ]
    assert groups[1]["verdict"] == {"rule": "range", "p": None, "tied": False}


# ----------------------------------------------------------------------------- the command line


def test_seeds_with_seed_is_a_one_line_error():
    result = run_cli("run", TINY, "--seeds", "3", "--seed", "1")
    assert result.code == 2
    assert result.err.strip().splitlines() == [
        "Error: --seeds N is short for --seed 0,...,N-1: give one or the other (see 'tuitrain run --help')"
    ]


def test_train_takes_seeds_too_and_checks_it_before_the_app_opens():
    result = run_cli("train", TINY, "--seeds", "2", "--seed", "1")
    assert result.code == 2
    assert result.err.strip().splitlines() == [
        "Error: --seeds N is short for --seed 0,...,N-1: give one or the other (see 'tuitrain train --help')"
    ]
    served = run_cli("serve", "--", "train", TINY, "--seeds", "2", "--seed", "1")
    assert served.code == 2 and "--seeds N is short for" in served.err


def test_train_seeds_n_is_a_race_of_seeds_0_to_n_minus_1(monkeypatch):
    opened = {}
    monkeypatch.setattr("tuitrain.tui.launch.open_race", lambda preset, overrides, out: opened.update(overrides))
    result = run_cli("train", TINY, "--seeds", "3", "--optimizer", "sgd,adam")
    assert result.code == 0, result.err
    assert opened["seed"] == (0, 1, 2) and opened["optimizer"] == ("sgd", "adam")


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    """`--seeds 3` over two optimizers of the tiny preset (a race in this process, one at a time)."""
    out = tmp_path_factory.mktemp("seeds")
    result = run_cli("run", TINY, "--epochs", "2", "--optimizer", "sgd,adam", "--seeds", "3", "--out", out, "--json")
    assert result.code == 0, result.err
    return out, [json.loads(line) for line in result.out.splitlines()]


def test_seeds_n_races_seeds_0_to_n_minus_1_and_ranks_groups(seeded):
    out, lines = seeded
    ranking = lines[-1]
    assert ranking["event"] == "ranking" and len(ranking["runs"]) == 6
    assert sorted(run["label"] for run in lines[0]["runs"]) == sorted(
        f"{o} seed={s}" for o in ("sgd", "adam") for s in range(3)
    )
    assert sorted(g["label"] for g in ranking["groups"]) == ["adam", "sgd"]
    assert all(g["n"] == 3 and len(g["runs"]) == 3 for g in ranking["groups"])
    table = run_cli("compare", *sorted(out.iterdir()))
    assert table.code == 0 and "groups ranked on mean test accuracy" in table.out


def test_the_group_csv_export_reads_back(seeded, tmp_path):
    out, _ = seeded
    target = tmp_path / "groups.csv"
    result = run_cli("export", *sorted(out.iterdir()), "--format", "csv", "--groups", "-o", target)
    assert result.code == 0, result.err
    rows = list(csv.DictReader(target.open()))
    assert sorted((r["group"], r["epoch"], r["n"]) for r in rows) == [
        (g, str(e), "3") for g in ("adam", "sgd") for e in (1, 2)
    ]
    for row in rows:  # each row agrees with the three runs' own epochs.csv rows
        runs = [d for d in out.iterdir() if f"-{row['group']}-seed" in d.name]
        values = []
        for run in runs:
            (mine,) = [r for r in csv.DictReader(open_epochs(run)) if r["epoch"] == row["epoch"]]
            values.append(float(mine["valid_accuracy"]))
        assert float(row["valid_accuracy_mean"]) == pytest.approx(statistics.mean(values))
        assert float(row["valid_accuracy_std"]) == pytest.approx(statistics.stdev(values))
        assert float(row["valid_accuracy_min"]) == min(values) and float(row["valid_accuracy_max"]) == max(values)
    bad = run_cli("export", *sorted(out.iterdir())[:1], "--format", "onnx", "--groups")
    assert bad.code == 2 and "--groups is for --format csv" in bad.err


def open_epochs(run: Path) -> io.StringIO:
    result = run_cli("export", run, "--format", "csv", "-o", "-")
    assert result.code == 0, result.err
    return io.StringIO(result.out)


# ----------------------------------------------------------------------------- the acceptance races (rings, 30 epochs)


def race(tmp_path, *args):
    result = run_cli("run", "rings", "--epochs", "30", *args, "--out", tmp_path, "--json")
    assert result.code == 0, result.err
    return json.loads(result.out.splitlines()[-1])


@pytest.mark.slow  # six runs of 30 epochs: about 10 s
def test_two_optimizers_three_seeds_make_two_groups_whose_numbers_match_the_summaries(tmp_path):
    ranking = race(tmp_path, "--optimizer", "sgd,adam", "--seed", "0,1,2")
    assert [g["n"] for g in ranking["groups"]] == [3, 3]
    for group in ranking["groups"]:
        accuracies = [json.loads((Path(d) / "summary.json").read_text())["test"]["accuracy"] for d in group["runs"]]
        assert group["mean"] == pytest.approx(statistics.mean(accuracies))
        assert group["std"] == pytest.approx(statistics.stdev(accuracies))
        assert (group["min"], group["max"]) == (min(accuracies), max(accuracies))
    adam, sgd = ranking["groups"]  # a clear difference: ranked, not tied
    assert adam["label"] == "adam" and sgd["label"] == "sgd"
    assert (adam["rank"], sgd["rank"]) == (1, 2) and not sgd["tied"]
    assert sgd["verdict"]["rule"] == "welch" and sgd["verdict"]["p"] < 0.05


@pytest.mark.slow  # six runs of 30 epochs: about 10 s
def test_the_same_configuration_under_two_labels_is_tied(tmp_path):
    ranking = race(tmp_path, "--optimizer", "sgd", "--lr", "0.01,0.0100001", "--seed", "0,1,2")
    first, second = ranking["groups"]
    assert {first["label"], second["label"]} == {"lr=0.01", "lr=0.0100001"}
    assert first["rank"] == second["rank"] == 1 and first["tied"] and second["tied"]
    assert second["verdict"]["rule"] == "welch" and second["verdict"]["p"] >= 0.05
    table = run_cli("compare", *sorted(tmp_path.iterdir()))
    assert "cannot be told apart with 3 seeds" in table.out
