"""The learning-rate range test (`tuitrain lr-find`): its known answer on a quadratic, the smoothing and
the rules, the command's JSON and plain output, a test from a run's checkpoint that leaves the run alone,
and bad input as one line."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import pytest
import torch
from conftest import TINY, run_cli, train_tiny
from torch import nn

from tuitrain.training.lr_find import (
    MINIMUM_RULE,
    STEEPEST_RULE,
    RangeSettings,
    range_test,
    smooth,
    suggest,
)


def linear_regression(seed: int, spread: float, d: int = 10, n: int = 500) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Inputs with per-feature scales spread over `spread`x, noisy linear targets, and 1/L: L is the
    largest eigenvalue of the mean squared error's Hessian 2/n X^T X, and 1/L gradient descent's best
    safe step (2/L diverges)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g) * torch.logspace(0, math.log10(spread), d) * (seed + 1)
    y = x @ torch.randn(d, 1, generator=g) + 0.1 * torch.randn(n, 1, generator=g)
    hessian = 2 / n * x.T @ x
    return x, y, 1 / torch.linalg.eigvalsh(hessian).max().item()


@pytest.mark.parametrize(("seed", "spread"), [(0, 3.0), (1, 10.0), (2, 1.0), (3, 3.0)])
def test_suggests_the_best_rate_of_a_quadratic(seed: int, spread: float) -> None:
    x, y, best = linear_regression(seed, spread)
    torch.manual_seed(seed)
    model = nn.Linear(x.shape[1], 1, bias=False)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    result = range_test(model, optimizer, nn.MSELoss(), x, y, batch_size=len(x))  # full batch: gradient descent
    s = result.suggestion
    assert s.rule == STEEPEST_RULE and s.lr == s.steepest_lr
    assert s.lr is not None and best / 3 <= s.lr <= 3 * best, (s.lr, best)
    assert s.min_rule_lr is not None and best / 3 <= s.min_rule_lr <= 3 * best  # the cross-check agrees
    assert s.agree
    assert result.stop == "exploded" and len(result.lrs) < 100  # past 2/L the loss grows without bound
    assert result.lrs[0] == pytest.approx(1e-7) and result.lrs[1] / result.lrs[0] == pytest.approx(10 ** (8 / 99))


def test_smoothing_is_bias_corrected() -> None:
    assert smooth([2.0] * 5) == pytest.approx([2.0] * 5)  # no pull towards 0 at the start
    beta = 0.5
    assert smooth([1.0, 3.0], beta) == pytest.approx([1.0, (0.5 * 0.5 + 0.5 * 3.0) / (1 - 0.5**2)])


def test_rules_on_a_known_curve() -> None:
    lrs = [10 ** (-7 + 8 * i / 99) for i in range(100)]
    # a drop of 1 centred at 1e-3 (steepest there), lowest at 1e-1, rising after
    losses = [2 - 1 / (1 + math.exp(-3 * (math.log10(lr) + 3))) + max(0.0, math.log10(lr) + 1) ** 2 for lr in lrs]
    s = suggest(lrs, losses)
    assert s.rule == STEEPEST_RULE and s.lr == pytest.approx(1e-3, rel=0.1)
    assert s.min_loss_lr == pytest.approx(1e-1, rel=0.25) and s.min_rule_lr == pytest.approx(1e-2, rel=0.25)
    rising = suggest(lrs, [1 + lr for lr in lrs])  # never falls: the minimum's rule, with a note
    assert rising.rule == MINIMUM_RULE and rising.steepest_lr is None
    assert rising.lr == pytest.approx(rising.min_loss_lr / 10) and any("--start-lr" in n for n in rising.notes)
    falling = suggest(lrs, [1 - math.log10(lr) / 10 for lr in lrs])
    assert any("--end-lr" in n for n in falling.notes)
    # flat but for one noisy dip at 1e-6 (the steepest slope), then a gentle fall to a minimum at 1e-1:
    # the rules disagree, and minimum / 10 wins
    noisy = [1.0 - (0.05 if abs(math.log10(lr) + 6) < 0.05 else 0.0) for lr in lrs]
    noisy = [
        n - 0.05 * min(max(math.log10(lr) + 3, 0.0), 2.0) + max(0.0, math.log10(lr) + 1)
        for n, lr in zip(noisy, lrs, strict=True)
    ]
    flat = suggest(lrs, noisy)
    assert flat.steepest_lr == pytest.approx(1e-6, rel=0.3) and flat.min_loss_lr == pytest.approx(0.1, rel=0.25)
    assert flat.agree is False and flat.rule == MINIMUM_RULE and flat.lr == pytest.approx(flat.min_loss_lr / 10)
    assert any("more than 10x" in n for n in flat.notes)


def test_bad_ramp_is_refused() -> None:
    from tuitrain.errors import UsageError

    for bad in (RangeSettings(start_lr=0), RangeSettings(start_lr=1, end_lr=0.1), RangeSettings(steps=3)):
        with pytest.raises(UsageError):
            bad.check()


def test_json_ends_with_the_result(tmp_path: Path) -> None:
    result = run_cli("lr-find", TINY, "--out", str(tmp_path), "--steps", "40", "--json")
    assert result.code == 0, result.err
    lines = [json.loads(line) for line in result.out.splitlines()]
    assert lines[0]["event"] == "lr_find_start" and lines[-1]["event"] == "lr_find"
    found = lines[-1]
    assert math.isfinite(found["suggested_lr"]) and 1e-7 <= found["suggested_lr"] <= 10
    assert found["rule"] in (STEEPEST_RULE, MINIMUM_RULE) and found["parent"] is None
    curve = found["curve"]
    assert 3 <= len(curve) <= 40 and all(len(p) == 2 for p in curve)
    assert [p[0] for p in curve] == sorted(p[0] for p in curve)
    (folder,) = tmp_path.iterdir()
    assert folder.name.endswith("-tiny_rings-lr-find") and found["run_dir"] == str(folder)
    assert sorted(p.name for p in folder.iterdir()) == ["lr_find.csv", "lr_find.json", "lr_find.toml"]
    saved = json.loads((folder / "lr_find.json").read_text())
    assert saved["suggested_lr"] == found["suggested_lr"] and saved["curve"] == curve
    rows = (folder / "lr_find.csv").read_text().splitlines()
    assert rows[0] == "step,lr,loss,smoothed_loss" and len(rows) == len(curve) + 1
    assert run_cli("runs", "--out", str(tmp_path)).err.startswith("no runs")  # not a training run


def test_plain_lines_off_a_terminal(tmp_path: Path) -> None:
    result = run_cli("lr-find", TINY, "--out", str(tmp_path), "--steps", "30", "--seed", "2")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[0] == "lr loss"
    rows = [line.split() for line in lines[1:] if line and line[0].isdigit()]
    assert len(rows) >= 3 and all(len(r) == 2 and float(r[0]) > 0 for r in rows)
    assert any(line.startswith("suggested lr: ") for line in lines)
    assert any("minimum smoothed loss at lr" in line and "/ 10 =" in line for line in lines)
    assert "\x1b" not in result.out


def test_plot_on_a_terminal() -> None:
    from tuitrain.headless.lr_find import plot

    x, y, _ = linear_regression(0, 3.0)
    model = nn.Linear(10, 1, bias=False)
    result = range_test(model, torch.optim.SGD(model.parameters(), lr=0.0), nn.MSELoss(), x, y, batch_size=500)
    text = plot(result, width=80)
    assert "1e-07" in text and "0.001" in text and "lr" in text


def tree(folder: Path) -> dict[str, tuple[int, int, str]]:
    """Every file under `folder`: size, mtime (ns) and content hash."""
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_branch_reads_the_run_and_writes_nothing_into_it(tmp_path: Path) -> None:
    parent = train_tiny(tmp_path / "runs", epochs=2)
    before = tree(parent)
    fresh = run_cli("lr-find", TINY, "--out", str(tmp_path / "fresh"), "--steps", "20", "--json")
    result = run_cli("lr-find", "--branch", str(parent), "--checkpoint", "best", "--steps", "20", "--json")
    assert result.code == 0, result.err
    assert tree(parent) == before
    found = json.loads(result.out.splitlines()[-1])
    assert found["parent"]["run_dir"] == str(parent) and found["parent"]["checkpoint"] == "best"
    assert found["parent"]["epoch"] == 2
    folder = Path(found["run_dir"])
    assert folder.parent == parent.parent and folder.name.endswith("-lr-find")  # beside it, like a branch
    # from the trained weights: the first loss is the trained network's, far below fresh weights'
    first_trained, first_fresh = found["raw_losses"][0], json.loads(fresh.out.splitlines()[-1])["raw_losses"][0]
    assert first_trained < 0.7 * first_fresh
    elsewhere = run_cli("lr-find", "--branch", str(parent), "--steps", "10", "--out", str(tmp_path / "other"))
    assert elsewhere.code in (0, 1) and tree(parent) == before
    assert [p.name.endswith("-lr-find") for p in (tmp_path / "other").iterdir()] == [True]


def one_line_error(result, message: str) -> None:
    assert result.code == 2, (result.code, result.out, result.err)
    assert result.err.startswith("Error: ") and message in result.err and len(result.err.splitlines()) == 1
    assert "Traceback" not in result.err


def test_bad_input_is_one_line(tmp_path: Path) -> None:
    out = str(tmp_path / "out")
    one_line_error(run_cli("lr-find", "no-such-preset", "--out", out), "no-such-preset")
    one_line_error(run_cli("lr-find", "--branch", str(tmp_path / "missing"), "--out", out), "no such run directory")
    one_line_error(run_cli("lr-find", TINY, "--lr", "0.1", "--out", out), "--lr does not apply")
    one_line_error(run_cli("lr-find", TINY, "--start-lr", "1", "--end-lr", "0.1", "--out", out), "--end-lr")
    one_line_error(run_cli("lr-find", TINY, "--optimizer", "sgd,adam", "--out", out), "one value")
    one_line_error(run_cli("lr-find", "--out", out), "missing PRESET")
    one_line_error(run_cli("lr-find", TINY, "--steps", "5", "--out", out), "--steps")
    parent = train_tiny(tmp_path / "runs", epochs=1)
    one_line_error(run_cli("lr-find", "--branch", str(parent), "--epochs", "5"), "--epochs")
    one_line_error(run_cli("lr-find", TINY, "--branch", str(parent)), "not both")
    assert not Path(out).exists() or not any(Path(out).iterdir())  # no folder left behind
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == [parent.name]


def test_a_stop_request_ends_the_test_with_its_curve_so_far() -> None:
    x, y, _ = linear_regression(0, 3.0)
    model = nn.Linear(10, 1, bias=False)
    seen: list[int] = []
    result = range_test(
        model,
        torch.optim.SGD(model.parameters(), lr=0.0),
        nn.MSELoss(),
        x,
        y,
        batch_size=50,
        progress=lambda step, lr, loss, smoothed: seen.append(step),
        stop=lambda: len(seen) >= 7,
    )
    assert result.stop == "stopped" and len(result.lrs) == 7 and seen == list(range(1, 8))
