"""The benchmark keeps working: a tiny run of bench/bench.py and the report it writes (no timing asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench" / "bench.py"


def load_bench():
    import importlib.util

    spec = importlib.util.spec_from_file_location("tuitrain_bench", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_script(script: str, *args: str) -> None:
    """Run bench/SCRIPT as a user would; it must exit 0 (its stderr's tail is the failure message)."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), *args], capture_output=True, text=True, timeout=300, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stderr[-2000:]


@pytest.mark.slow  # runs a benchmark script in its own process
def test_quick_benchmark_writes_json_and_markdown(tmp_path: Path) -> None:
    out = tmp_path / "latest.json"
    run_script(
        "bench.py",
        "--quick",
        "--cases",
        "mlp-64,rings",
        "--variants",
        "acd",
        "--no-extras",
        "--out",
        str(out),
    )
    report = json.loads(out.read_text())
    assert report["quick"] is True and report["synthetic"] is True and "synthetic" in report["data"]
    assert {"cpu", "cores", "torch"} <= set(report["machine"])
    assert list(report["cases"]) == ["mlp-64", "rings"]
    for name, case in report["cases"].items():
        assert set(case["variants"]) == {"a", "c", "d"}
        for variant in case["variants"].values():
            assert "error" not in variant, variant
            assert variant["samples_per_s"] > 0 and variant["wall_s"] > 0
            assert len(variant["runs"]) == 1 and variant["used_runs"] == 1
            assert 0 <= variant["runs"][0]["others_cpu_share"] <= 1 and isinstance(variant["noisy"], bool)
        assert case["ratios"]["c/a"] > 0 and case["ratios"]["wall c/a"] > 0
        assert case["ratios"]["c/b"] is None and case["ratios"]["d/c"] > 0
        assert set(case["paired"]) == {"c/a", "d/c"}  # None where the one run was disturbed
        # same data, network, initial weights, optimizer and shuffle: the bare loop and tuitrain agree
        a, c = case["variants"]["a"], case["variants"]["c"]
        assert a["test_loss"] == pytest.approx(c["test_loss"], rel=1e-3), name
    # the dashboards ran with --out in a temporary folder: the user's app must not remember it
    assert not (Path(os.environ["XDG_STATE_HOME"]) / "tuitrain" / "state.json").exists()
    text = out.with_suffix(".md").read_text()
    assert "| case | epochs |" in text and "| mlp-64 | 1 |" in text and "| rings | 3 |" in text
    assert "synthetic" in text


def test_markdown_lists_ratios_extras_and_gaps() -> None:
    bench = load_bench()
    cell = {"samples_per_s": 1000.0, "wall_s": 10.0, "runs": []}
    report = {
        "machine": {
            "cpu": "CPU",
            "cores": 2,
            "memory_gib": 4,
            "os": "Linux",
            "python": "3.11",
            "torch": "2",
            "torch_threads": 2,
            "torchvision": "0",
        },
        "data": "synthetic",
        "seed": 0,
        "repeats": 1,
        "cases": {
            "mlp-64": {
                "epochs": 1,
                "variants": {
                    "a": cell,
                    "b": {**cell, "samples_per_s": 250.0},
                    "c": {**cell, "wall_s": 11.0},
                    "d": {"error": "no TUI"},
                },
                "ratios": {"c/a": 1.0, "c/b": 4.0, "d/c": None, "wall c/a": 1.1},
            }
        },
        "not_measured": {"mlp-64/d": {"error": "no TUI"}},
        "extras": {
            "startup": {
                "tuitrain_help": {"median_s": 0.1, "runs_s": [0.1]},
                "import_torch": {"median_s": 1.0, "runs_s": [1.0]},
                "ratio": 0.1,
            },
            "first_step": {"to_first_step_s": 3.0, "to_start_event_s": 2.5},
            "rss": {"epochs": 100, "rss_kib_epoch2": 1024, "rss_kib_last": 1024, "growth": 0.0, "peak_rss_kib": 2048},
        },
    }
    text = bench.markdown(report)
    row = "| mlp-64 | 1 | 1,000 | 250 | 1,000 | - | 10.00 | 10.00 | 11.00 | - | 1.00 | 4.00 | - | - | - | 1.10 |"
    assert row in text
    report["cases"]["mlp-64"]["paired"] = {"c/a": {"median": 0.97}, "d/c": None}
    assert "| 1.00 | 4.00 | - | 0.97 | - | 1.10 |" in bench.markdown(report)
    report["cases"]["mlp-64"]["variants"]["a"]["noisy"] = True
    assert "| mlp-64 | 1 | 1,000* | 250 |" in bench.markdown(report)
    assert "mlp-64/d: no TUI" in text
    assert "0.10x" in text and "3.00 s" in text and "+0.0%" in text


def test_paired_ratio_divides_within_rounds_and_skips_disturbed_runs() -> None:
    bench = load_bench()

    def run(round_, rate, **extra):
        return {"round": round_, "samples_per_s": rate, "wall_s": 1.0, **extra}

    # the machine got twice as fast after round 0: the medians of each variant alone give c/a = 0.72
    runs = {
        "a": [run(0, 100.0), run(1, 200.0), run(2, 200.0)],
        "c": [run(0, 96.0), run(1, 1.0, disturbed=True), run(1, 190.0), run(2, 0.0, error="crashed"), run(3, 5.0)],
    }
    paired = bench.paired_ratio(runs, "c", "a")
    assert paired == {"median": pytest.approx(0.955), "min": 0.95, "max": 0.96, "rounds": 2}
    assert bench.paired_ratio(runs, "d", "c") is None


@pytest.mark.slow  # runs a benchmark script in its own process
def test_overhead_pairs_tuitrain_epochs_with_bare_epochs(tmp_path: Path) -> None:
    out = tmp_path / "overhead.json"
    run_script("overhead.py", "--cases", "rings", "--rounds", "2", "--out", str(out))
    [result] = json.loads(out.read_text())["results"]
    assert result["case"] == "rings" and result["rounds"] == 2 and result["epochs_per_round"] == 10
    assert result["tuitrain_epoch_s"] > 0 and result["bare_epoch_s"] > 0 and result["min"] <= result["c/a"]
    assert "| rings |" in out.with_suffix(".md").read_text()


def load_dashboard_cost():
    import importlib.util

    sys.path.insert(0, str(ROOT / "bench"))  # it imports bench.py as `bench`, as when run as a script
    try:
        spec = importlib.util.spec_from_file_location("tuitrain_dashboard_cost", ROOT / "bench" / "dashboard_cost.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(ROOT / "bench"))
    return module


def test_dashboard_cost_divides_each_drawing_window_by_its_stopped_neighbour() -> None:
    cost = load_dashboard_cost()
    # step lines: (time seen, cumulative samples, training seconds); 100 samples/s, then 50 from t=10
    steps = [(float(t), 100.0 * t, float(t)) for t in range(11)] + [
        (10.0 + t, 1000 + 50.0 * t, 10.0 + t) for t in range(1, 6)
    ]
    assert cost.window_speed(steps, 0.5, 4.5) == {"samples_per_s": 100.0, "wall_samples_per_s": 100.0}
    assert cost.window_speed(steps, 11.5, 14.5) == {"samples_per_s": 50.0, "wall_samples_per_s": 50.0}
    assert cost.window_speed(steps, 4.2, 4.9) is None  # fewer than two lines: no speed

    def window(pair, drawing, speed, share):
        return {
            "pair": pair,
            "drawing": drawing,
            "app_cpu_share": share,
            "samples_per_s": speed,
            "wall_samples_per_s": speed,
        }

    # the machine halves its speed after pair 0: pairing keeps d/c at 0.95 and 0.9, whatever the drift
    windows = [
        window(0, True, 95, 0.03),
        window(0, False, 100, 0.0),
        window(1, False, 50, 0.0),
        window(1, True, 45, 0.05),
    ]
    windows.append({"pair": 2, "drawing": True, "app_cpu_share": 0.04})  # a window without a speed: left out
    result = cost.summarize(windows)
    assert result["d_over_c"] == pytest.approx(0.925) and result["d_over_c_range"] == [pytest.approx(0.9), 0.95]
    assert result["pairs"] == 2 and result["app_cpu_share"] == pytest.approx(0.04)
    assert result["stopped_app_cpu_share"] == 0.0


@pytest.mark.slow  # runs a benchmark script in its own process
def test_dashboard_cost_stops_the_app_and_keeps_the_training_going(tmp_path: Path) -> None:
    run_script(
        "dashboard_cost.py",
        "--cases",
        "rings",
        "--pairs",
        "1",
        "--window",
        "2",
        "--warmup",
        "0.5",
        "--settle",
        "0.5",
        "--synthetic",
        "--out",
        str(tmp_path),
    )
    result = json.loads((tmp_path / "dashboard-cost.json").read_text())["cases"]["rings"]
    assert "error" not in result, result
    assert result["pairs"] == 1 and result["d_over_c"] > 0
    stopped = [w for w in result["windows"] if not w["drawing"]]
    assert stopped[0]["samples_per_s"] > 0  # the training went on while the app was stopped ...
    assert result["stopped_app_cpu_share"] < 0.005 < result["app_cpu_share"]  # ... and the app really was
    assert "| rings |" in (tmp_path / "dashboard-cost.md").read_text()
