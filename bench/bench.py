"""Benchmark: tuitrain against a hand-written PyTorch loop and the tutorial loop, on the same work.

For each case (network, batch size, epochs) it runs, each in its own process, with the same seed:
  a  bench/bare_loop.py      hand-written loop over preloaded tensors (randperm, loss kept on the device)
  b  bench/tutorial_loop.py  torchvision dataset + ToTensor + DataLoader, loss.item() every step
  c  tuitrain run ... --json the real CLI, headless (writes its run directory to a temp folder)
  d  tuitrain train ...      the live dashboard, when tuitrain/tui can be started (else "not measured")
and records training samples/s (as each reports it) and whole-process wall time (measured here).
It also measures `tuitrain --help` against `python -c "import torch"`, the time from launching
`tuitrain run` to its first step event, and resident memory over a 100-epoch `rings` run.

    python bench/bench.py                        # everything, 2 repeats, Fashion-MNIST when installed
    python bench/bench.py --quick                # tiny synthetic data, 1 repeat: checks it all works
    python bench/bench.py --cases mlp-64,rings --variants a,c --repeats 3
    python bench/bench.py --merge bench/results/run-1.json bench/results/run-2.json  # pool earlier runs

Writes bench/results/latest.json (raw numbers) and bench/results/latest.md (the tables).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DEBIAN_FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
IDX_STEMS = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]

# name: (model, preset, batch size, epochs, epochs in --quick)
CASES: dict[str, tuple[str, str, int, int, int]] = {
    "mlp-64": ("mlp", "mlp", 64, 1, 1),
    "mlp-256": ("mlp", "mlp", 256, 1, 1),
    "mlp-1024": ("mlp", "mlp", 1024, 1, 1),
    "lenet-64": ("lenet", "lenet", 64, 1, 1),
    "lenet-256": ("lenet", "lenet", 256, 1, 1),
    "rings": ("rings", "rings", 1000, 100, 3),
}
DISTURBED = 0.10  # a run during which other processes used more than this share of the CPUs is re-run
VARIANTS = {
    "a": "bare PyTorch loop",
    "b": "tutorial loop (DataLoader)",
    "c": "tuitrain run (headless)",
    "d": "tuitrain with live dashboard",
}


# ----------------------------------------------------------------------------- data


def write_idx(path: Path, data: bytes, dims: list[int], compress: bool) -> None:
    header = bytes([0, 0, 8, len(dims)]) + b"".join(d.to_bytes(4, "big") for d in dims)
    (gzip.open if compress else open)(path, "wb").write(header + data)


def isolate_state(work: Path) -> None:
    """The dashboards started from here remember their `--out` (a temporary folder) as the app's
    output folder: keep that in `work`, not in the user's $XDG_STATE_HOME."""
    os.environ["XDG_STATE_HOME"] = str(work / "state")


def prepare_data(work: Path, synthetic: bool, n_train: int, n_test: int, seed: int) -> dict[str, Any]:
    """IDX files for a/c (gzipped, as the Debian package ships them) and a torchvision root for b."""
    tv_raw = work / "tv" / "FashionMNIST" / "raw"
    tv_raw.mkdir(parents=True)
    if not synthetic:
        for stem in IDX_STEMS:
            with gzip.open(DEBIAN_FASHION_DIR / f"{stem}.gz", "rb") as src, open(tv_raw / stem, "wb") as dst:
                shutil.copyfileobj(src, dst)  # what torchvision leaves after its download + extract
        return {
            "idx_dir": str(DEBIAN_FASHION_DIR),
            "tv_root": str(work / "tv"),
            "source": f"Fashion-MNIST ({DEBIAN_FASHION_DIR}, 60,000 train / 10,000 test)",
        }
    import random

    rng = random.Random(seed)
    idx_dir = work / "idx"
    idx_dir.mkdir()
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.randbytes(n * 28 * 28)
        labels = bytes(rng.randrange(10) for _ in range(n))
        for folder, compress in ((idx_dir, True), (tv_raw, False)):
            suffix = ".gz" if compress else ""
            write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", images, [n, 28, 28], compress)
            write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", labels, [n], compress)
    return {
        "idx_dir": str(idx_dir),
        "tv_root": str(work / "tv"),
        "source": f"synthetic uint8 images, {n_train:,} train / {n_test:,} test, 28x28, 10 classes",
    }


# ----------------------------------------------------------------------------- processes


def tuitrain_cmd() -> list[str]:
    script = Path(sys.executable).parent / "tuitrain"
    return [str(script)] if script.exists() else [sys.executable, "-m", "tuitrain"]


def timed(cmd: list[str], timeout: float) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=HERE.parent)
    return time.perf_counter() - start, proc


def last_json(stdout: str, event: str | None = None) -> dict[str, Any]:
    for line in reversed(stdout.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            data = json.loads(line)
            if event is None or data.get("event") == event:
                return data
    raise ValueError("no JSON result on stdout")


def engine_uses_fused_adam() -> bool:
    """Whether tuitrain builds Adam fused; the bare loop then does the same (same optimizer)."""
    code = (
        "import torch; from tuitrain.training.step import build_optimizer;"
        "o = build_optimizer('adam', torch.nn.Linear(2, 2).parameters(), 1e-3, 0.9, 0.0);"
        "print(bool(o.defaults.get('fused')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=HERE.parent)
    return out.stdout.strip() == "True"


def case_command(
    variant: str, case: str, epochs: int, data: dict[str, Any], seed: int, work: Path, fused: bool
) -> list[str] | None:
    model, preset, batch, _, _ = CASES[case]
    common = ["--batch-size", str(batch), "--epochs", str(epochs), "--seed", str(seed)]
    if variant == "a":
        cmd = [sys.executable, str(HERE / "bare_loop.py"), "--model", model, *common, "--data-dir", data["idx_dir"]]
        return cmd + (["--fused"] if fused and model != "rings" else [])
    if variant == "b":
        return [sys.executable, str(HERE / "tutorial_loop.py"), "--model", model, *common, "--root", data["tv_root"]]
    if variant == "c":
        images = [] if model == "rings" else ["--dataset", "fashion-mnist", "--data-dir", data["idx_dir"]]
        return [*tuitrain_cmd(), "run", preset, *images, *common, "--json", "--out", str(work / "runs")]
    return None


def tui_status() -> str:
    """'' when the dashboard can be benchmarked, else why not."""
    try:
        import importlib.util

        if importlib.util.find_spec("tuitrain.tui.app") and importlib.util.find_spec("tuitrain.tui.screens.dashboard"):
            return ""
    except ImportError:
        pass
    return "not measured: tuitrain/tui has no dashboard app to start with a config in this build"


def start_in_terminal(cmd: list[str], cols: int = 120, rows: int = 40) -> tuple[subprocess.Popen[bytes], int]:
    """Start `cmd` in its own session on a new pseudo-terminal of cols x rows; (process, the terminal's fd)."""
    import fcntl
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": str(cols), "LINES": str(rows)}
    proc = subprocess.Popen(
        cmd, stdin=slave, stdout=slave, stderr=slave, env=env, cwd=HERE.parent, start_new_session=True
    )
    os.close(slave)
    return proc, master


def run_in_terminal(cmd: list[str], timeout: float, cols: int = 120, rows: int = 40) -> tuple[float, int, int]:
    """Run `cmd` on a pseudo-terminal of cols x rows, reading everything it draws; (wall s, exit code, bytes)."""
    import select

    start = time.perf_counter()
    proc, master = start_in_terminal(cmd, cols, rows)
    received = 0
    try:
        while True:
            if time.perf_counter() - start > timeout:
                proc.kill()
                break
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(master, 1 << 16)
                except OSError:  # EIO: the terminal's other side is closed
                    break
                if not chunk:
                    break
                received += len(chunk)
            elif proc.poll() is not None:
                break
        proc.wait()
    finally:
        os.close(master)
    return time.perf_counter() - start, proc.returncode, received


def run_dashboard(
    case: str, epochs: int, data: dict[str, Any], seed: int, work: Path, timeout: float
) -> dict[str, Any]:
    why = tui_status()
    if why:
        return {"error": why}
    model, preset, batch, _, _ = CASES[case]
    result_file = work / f"dashboard-{case}-{time.monotonic_ns()}.json"
    images = [] if model == "rings" else ["--dataset", "fashion-mnist", "--data-dir", data["idx_dir"]]
    cmd = [
        sys.executable,
        str(HERE / "probes.py"),
        "dashboard",
        str(result_file),
        preset,
        *images,
        "--batch-size",
        str(batch),
        "--epochs",
        str(epochs),
        "--seed",
        str(seed),
        "--out",
        str(work / "runs"),
    ]
    launched = time.time()
    wall, code, drawn = run_in_terminal(cmd, timeout)
    if code != 0 or not result_file.exists():
        return {"error": f"dashboard exit {code}", "wall_s": wall}
    out = json.loads(result_file.read_text())
    if "samples_per_s" not in out:
        return {"error": f"dashboard ended without a RunEnded event: {out}", "wall_s": wall}
    return {
        "wall_s": wall,
        "samples_per_s": out["samples_per_s"],
        "test_loss": out.get("test"),
        "terminal_bytes": drawn,
        "first_chart_s": out["first_chart_time"] - launched if "first_chart_time" in out else None,
        "app_cpu_share": out.get("app_cpu_share"),  # the app's own CPU while the child trained, of one core
        "chart_draws": out.get("chart_draws"),
    }


def run_case(
    variant: str, case: str, epochs: int, data: dict[str, Any], seed: int, work: Path, fused: bool, timeout: float
) -> dict[str, Any]:
    if variant == "d":
        return run_dashboard(case, epochs, data, seed, work, timeout)
    cmd = case_command(variant, case, epochs, data, seed, work, fused)
    assert cmd is not None
    wall, proc = timed(cmd, timeout)
    if proc.returncode != 0:
        return {"error": f"exit {proc.returncode}: {proc.stderr.strip()[-400:]}", "wall_s": wall}
    out = last_json(proc.stdout, "end" if variant == "c" else None)
    result = {"wall_s": wall, "samples_per_s": out["samples_per_s"]}
    test = out.get("test") or {}
    result["test_loss"] = out.get("test_loss", test.get("loss"))
    result["test_accuracy"] = out.get("test_accuracy", test.get("accuracy"))
    return result


def cpu_busy(interval: float = 0.5) -> float:
    """Share of all cores busy over `interval` seconds (other people's work, when we are idle)."""

    def sample() -> tuple[int, int]:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
        idle = fields[3] + fields[4]
        return sum(fields), idle

    try:
        total0, idle0 = sample()
        time.sleep(interval)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return 0.0
    return 1 - (idle1 - idle0) / max(total1 - total0, 1)


def cpu_counters() -> tuple[float, float]:
    """(CPU seconds all cores spent busy since boot, CPU seconds used by this process and its children)."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
        busy = (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        busy = 0.0
    ours = sum(
        getattr(resource.getrusage(who), f)
        for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
        for f in ("ru_utime", "ru_stime")
    )
    return busy, ours


def others_share(before: tuple[float, float], after: tuple[float, float], wall: float) -> float:
    """Share of the machine other processes used while a case ran (0 = undisturbed, 1 = all cores)."""
    others = (after[0] - before[0]) - (after[1] - before[1])
    return max(0.0, others) / max(wall * (os.cpu_count() or 1), 1e-9)


def wait_for_quiet(limit_s: float, threshold: float = 0.15) -> float:
    """Wait (up to limit_s) until the machine is mostly idle; returns the last busy share seen."""
    deadline = time.monotonic() + limit_s
    busy = cpu_busy()
    while busy > threshold and time.monotonic() < deadline:
        busy = cpu_busy(1.0)
    return busy


# ----------------------------------------------------------------------------- extra measurements


def median_time(cmd: list[str], repeats: int) -> dict[str, Any]:
    times = []
    for _ in range(repeats):
        wall, proc = timed(cmd, 120)
        if proc.returncode != 0:
            return {"error": f"exit {proc.returncode}: {proc.stderr.strip()[-300:]}"}
        times.append(wall)
    return {"median_s": statistics.median(times), "runs_s": times}


def startup(repeats: int) -> dict[str, Any]:
    helps = median_time([*tuitrain_cmd(), "--help"], repeats)
    torch_import = median_time([sys.executable, "-c", "import torch"], repeats)
    result = {"tuitrain_help": helps, "import_torch": torch_import}
    if "median_s" in helps and "median_s" in torch_import:
        result["ratio"] = helps["median_s"] / torch_import["median_s"]
    return result


def first_step(data: dict[str, Any], seed: int, work: Path, timeout: float = 120) -> dict[str, Any]:
    """Launch `tuitrain run mlp --dataset fashion-mnist --json`; time to its first step event.

    The step event is read from the run directory's metrics.jsonl (the first one is written at once);
    `--json` on stdout carries only start/epoch/end lines. The run is then stopped with SIGTERM.
    """
    out = work / "first-step"
    cmd = [
        *tuitrain_cmd(),
        "run",
        "mlp",
        "--dataset",
        "fashion-mnist",
        "--data-dir",
        data["idx_dir"],
        "--epochs",
        "1",
        "--seed",
        str(seed),
        "--json",
        "--out",
        str(out),
    ]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=HERE.parent)
    seen: dict[str, float] = {}
    try:
        while "step" not in seen and time.perf_counter() - start < timeout and proc.poll() is None:
            for metrics in out.glob("*/metrics.jsonl"):
                text = metrics.read_text()
                if '"event": "start"' in text:
                    seen.setdefault("start", time.perf_counter() - start)
                if '"event": "step"' in text:
                    seen["step"] = time.perf_counter() - start
            time.sleep(0.005)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if "step" not in seen:
        return {
            "error": f"no step event (exit {proc.returncode}): {(proc.stderr.read() if proc.stderr else '')[-300:]}"
        }
    return {
        "what": "time from launching `tuitrain run mlp --dataset fashion-mnist --json` to its first step "
        "event in metrics.jsonl (the TUI's first chart point is not measured)",
        "to_start_event_s": seen.get("start"),
        "to_first_step_s": seen["step"],
    }


def first_line(work: Path, preset: str = "rings", timeout: float = 300) -> dict[str, Any]:
    """Launch `tuitrain train PRESET` in a terminal; time to the first visible loss line (two points drawn)."""
    why = tui_status()
    if why:
        return {"error": why}
    result_file = work / "first-line.json"
    result_file.unlink(missing_ok=True)
    cmd = [sys.executable, str(HERE / "probes.py"), "dashboard", str(result_file), "--until-first-line", preset]
    launched = time.time()
    _, code, _ = run_in_terminal(cmd + ["--out", str(work / "runs")], timeout)
    out = json.loads(result_file.read_text()) if result_file.exists() else {}
    if "first_line_time" not in out:
        return {"error": f"no chart line drawn (exit {code})"}
    return {"to_first_line_s": out["first_line_time"] - launched, "to_first_step_s": out["first_step_time"] - launched}


def first_chart(data: dict[str, Any], seed: int, work: Path, timeout: float = 300) -> dict[str, Any]:
    """Launch the dashboard on `mlp --dataset fashion-mnist` in a terminal; time to its first chart point."""
    why = tui_status()
    if why:
        return {"error": why}
    result_file = work / "first-chart.json"
    cmd = [
        sys.executable,
        str(HERE / "probes.py"),
        "dashboard",
        str(result_file),
        "--until-first-chart",
        "mlp",
        "--dataset",
        "fashion-mnist",
        "--data-dir",
        data["idx_dir"],
        "--epochs",
        "1",
        "--seed",
        str(seed),
        "--out",
        str(work / "runs"),
    ]
    launched = time.time()
    wall, code, _ = run_in_terminal(cmd, timeout)
    out = json.loads(result_file.read_text()) if result_file.exists() else {}
    if "first_chart_time" not in out:
        return {"error": f"no chart point drawn (exit {code})"}
    return {
        "what": "time from launching the `tuitrain train mlp --dataset fashion-mnist` dashboard (in a "
        "120x40 pty) to its first drawn chart point",
        "to_first_chart_s": out["first_chart_time"] - launched,
        "to_first_step_event_s": out["first_step_time"] - launched,
    }


def roofline(cases: list[str]) -> dict[str, Any]:
    """This machine's matmul peak and each case's training FLOPs per sample (bench/roofline.py)."""
    specs = []
    for case in cases:
        _, preset, batch, _, _ = CASES[case]
        specs.append(f"{case}={preset}:{batch}" + (":fashion-mnist" if preset in ("mlp", "lenet") else ""))
    wall, proc = timed([sys.executable, str(HERE / "roofline.py"), *specs], 300)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip()[-300:]}
    return json.loads(proc.stdout)


def rss(epochs: int) -> dict[str, Any]:
    wall, proc = timed([sys.executable, str(HERE / "probes.py"), "rss", "--epochs", str(epochs)], 900)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip()[-300:]}
    out = last_json(proc.stdout)
    out["growth"] = out["rss_kib_last"] / max(out["rss_kib_epoch2"], 1) - 1
    out["wall_s"] = wall
    return out


# ----------------------------------------------------------------------------- report


def machine() -> dict[str, Any]:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        mem_gib = None
    versions = subprocess.run(
        [
            sys.executable,
            "-c",
            "import torch, torchvision; print(torch.__version__, torchvision.__version__, torch.get_num_threads())",
        ],
        capture_output=True,
        text=True,
    ).stdout.split()
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_gib, 1) if mem_gib else None,
        "os": platform.platform(),
        "python": platform.python_version(),
        "torch": versions[0] if versions else None,
        "torchvision": versions[1] if len(versions) > 1 else None,
        "torch_threads": int(versions[2]) if len(versions) > 2 else None,
    }


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median of the undisturbed runs (of all runs, flagged noisy, when every one was disturbed)."""
    ok = [r for r in runs if "error" not in r]
    if not ok:
        return {"error": runs[-1]["error"] if runs else "not run", "runs": runs}
    clean = [r for r in ok if not r.get("disturbed")]
    noisy = not clean
    ok = clean or ok
    return {
        "noisy": noisy,
        "used_runs": len(ok),
        "best_samples_per_s": max(r["samples_per_s"] for r in ok),
        "best_wall_s": min(r["wall_s"] for r in ok),
        "samples_per_s": statistics.median(r["samples_per_s"] for r in ok),
        "wall_s": statistics.median(r["wall_s"] for r in ok),
        "test_loss": ok[-1].get("test_loss"),
        "test_accuracy": ok[-1].get("test_accuracy"),
        "runs": runs,
    }


def ratio(num: dict[str, Any] | None, den: dict[str, Any] | None, key: str, invert: bool = False) -> float | None:
    if not num or not den or key not in num or key not in den:
        return None
    return den[key] / num[key] if invert else num[key] / den[key]


def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def runs_per_cell(report: dict[str, Any]) -> str:
    counts = {
        cell.get("used_runs", report["repeats"])
        for row in report["cases"].values()
        for cell in row["variants"].values()
        if "error" not in cell
    }
    if not counts:
        return str(report["repeats"])
    return str(min(counts)) if len(counts) == 1 else f"{min(counts)}-{max(counts)}"


def markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB; {m['os']}; Python {m['python']}, "
        f"torch {m['torch']} (CPU, {m['torch_threads']} threads), torchvision {m['torchvision']}.",
        f"Data: {report['data']}. Seed {report['seed']}; median of {runs_per_cell(report)} undisturbed run(s) "
        "per cell.",
        "",
        "| case | epochs | a bare samples/s | b tutorial samples/s | c tuitrain samples/s | d dashboard samples/s "
        "| a wall s | b wall s | c wall s | d wall s | c/a | c/b | d/c | c/a paired | d/c paired | wall c/a "
        "| c GFLOP/s | c % of peak | matmuls alone % of peak |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    roof = report.get("roofline", {})
    peak = roof.get("peak_gflops")
    for case, row in report["cases"].items():
        v = row["variants"]
        cells = [case, str(row["epochs"])]
        mark = {k: "*" if v.get(k, {}).get("noisy") else "" for k in "abcd"}
        cells += [fmt(v.get(k, {}).get("samples_per_s"), ",.0f") + mark[k] for k in "abcd"]
        cells += [fmt(v.get(k, {}).get("wall_s"), ".2f") + mark[k] for k in "abcd"]
        cells += [fmt(row["ratios"].get(k), ".2f") for k in ("c/a", "c/b", "d/c")]
        cells += [fmt((row.get("paired", {}).get(k) or {}).get("median"), ".2f") for k in ("c/a", "d/c")]
        cells.append(fmt(row["ratios"].get("wall c/a"), ".2f"))
        flops, c_rate = roof.get("flops_per_sample", {}).get(case), v.get("c", {}).get("samples_per_s")
        achieved = flops * c_rate / 1e9 if flops and c_rate else None
        cells += [fmt(achieved, ".1f"), fmt(100 * achieved / peak if achieved and peak else None, ".0f")]
        ceiling = roof.get("ceiling_gflops", {}).get(case)
        cells.append(fmt(100 * ceiling / peak if ceiling and peak else None, ".0f"))
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "samples/s: training samples per second of training time, as each loop reports it. "
        "wall: the whole process (start-up, imports, data loading, training, evaluation). "
        "c/a, c/b, d/c: ratios of those medians; paired: the ratio within each round (the two runs "
        "seconds apart, so the machine's drift cancels), median over rounds; wall c/a: c's wall time over "
        "a's (lower is better). "
        f"Runs during which other processes used over {DISTURBED:.0%} of the CPUs were re-run and left "
        "out; * marks a cell where every run was disturbed.",
    ]
    if peak:
        lines.append(
            f"c GFLOP/s: c's samples/s x the forward+backward matmul/conv FLOPs of a training sample (torch's "
            f"FlopCounterMode); % of peak: against a {roof.get('peak_size', 2048)}-square float32 matmul on this "
            f"machine, {peak:.1f} GFLOP/s, measured in the same benchmark run (bench/roofline.py); matmuls "
            "alone: the step's own matmuls and convolutions replayed by themselves with the same shapes, the "
            "most the step could reach if nothing else cost time."
        )
    notes = [f"- {k}: {v['error']}" for k, v in report.get("not_measured", {}).items()]
    if notes:
        lines += ["", "Not measured:", *notes]
    extras = report.get("extras", {})
    if extras:
        lines += ["", "| measurement | result |", "|---|---|"]
        s = extras.get("startup", {})
        if "ratio" in s:
            lines.append(
                f'| `tuitrain --help` vs `python -c "import torch"` (median of {len(s["tuitrain_help"]["runs_s"])}) '
                f"| {s['tuitrain_help']['median_s']:.3f} s vs {s['import_torch']['median_s']:.3f} s "
                f"= {s['ratio']:.2f}x |"
            )
        f = extras.get("first_step", {})
        if "to_first_step_s" in f:
            lines.append(
                f"| launch of `tuitrain run mlp --dataset fashion-mnist --json` to first step event "
                f"| {f['to_first_step_s']:.2f} s (start event at {f['to_start_event_s']:.2f} s) |"
            )
        f = extras.get("first_chart", {})
        if "to_first_chart_s" in f:
            lines.append(
                f"| launch of the `tuitrain train mlp --dataset fashion-mnist` dashboard to its first "
                f"chart point | {f['to_first_chart_s']:.2f} s (first step event at "
                f"{f['to_first_step_event_s']:.2f} s) |"
            )
        r = extras.get("rss", {})
        if "rss_kib_last" in r:
            lines.append(
                f"| RSS of a {r['epochs']}-epoch `rings` run: after epoch 2 vs after epoch {r['epochs']} "
                f"| {r['rss_kib_epoch2'] / 1024:.1f} MiB vs {r['rss_kib_last'] / 1024:.1f} MiB "
                f"({r['growth']:+.1%}); peak {r['peak_rss_kib'] / 1024:.1f} MiB |"
            )
        for name, value in extras.items():
            if isinstance(value, dict) and "error" in value:
                lines.append(f"| {name} | error: {value['error']} |")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- main


def summarize_cases(report: dict[str, Any], raw: dict[str, Any], quick: bool) -> None:
    report["not_measured"] = {}
    for case in raw:
        v = {k: summarize(runs) for k, runs in raw[case].items()}
        for k, s in v.items():
            if "error" in s:
                report["not_measured"][f"{case}/{k}"] = {"error": s["error"]}
        ok = {k: s for k, s in v.items() if "error" not in s}
        report["cases"][case] = {
            "model": CASES[case][0],
            "batch_size": CASES[case][2],
            "epochs": CASES[case][4 if quick else 3],
            "variants": v,
            "ratios": {
                "c/a": ratio(ok.get("c"), ok.get("a"), "samples_per_s"),
                "c/b": ratio(ok.get("c"), ok.get("b"), "samples_per_s"),
                "d/c": ratio(ok.get("d"), ok.get("c"), "samples_per_s"),
                "wall c/a": ratio(ok.get("c"), ok.get("a"), "wall_s"),
            },
            "paired": {pair: paired_ratio(raw[case], *pair.split("/")) for pair in ("c/a", "d/c")},
        }


def paired_ratio(runs: dict[str, list[dict[str, Any]]], num: str, den: str) -> dict[str, Any] | None:
    """The ratio within each round (runs seconds apart), then the median over rounds: the machine's
    slow drift cancels out of each pair, which medians of each variant alone do not manage on a noisy VM."""

    def by_round(variant: str) -> dict[Any, float]:
        kept = [r for r in runs.get(variant, []) if "error" not in r and not r.get("disturbed") and "round" in r]
        return {r["round"]: r["samples_per_s"] for r in kept}  # a retried round keeps its last clean run

    top, bottom = by_round(num), by_round(den)
    ratios = [top[r] / bottom[r] for r in top.keys() & bottom.keys()]
    if not ratios:
        return None
    return {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios), "rounds": len(ratios)}


def write_report(report: dict[str, Any], out: Path) -> str:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    text = markdown(report)
    out.with_suffix(".md").write_text(text)
    return text


def merge(paths: list[str], out: Path) -> int:
    """One report from several result files: every run of every cell pooled; extras from the last file."""
    reports = [json.loads(Path(path).read_text()) for path in paths]
    report = dict(reports[-1])
    raw: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for i, r in enumerate(reports):
        if (r["data"], r["seed"], r["quick"]) != (report["data"], report["seed"], report["quick"]):
            raise SystemExit(f"cannot merge: {paths[0]} and {paths[-1]} measured different data or seeds")
        for case, row in r["cases"].items():
            for variant, cell in row["variants"].items():
                runs = [
                    {**run, "round": f"{i}:{run['round']}"} if "round" in run else run for run in cell.get("runs", [])
                ]
                raw.setdefault(case, {}).setdefault(variant, []).extend(runs)  # rounds pair within their file
    report["repeats"] = sum(r["repeats"] for r in reports)
    report["merged_from"] = paths
    summarize_cases(report, raw, report["quick"])
    print(write_report(report, out))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny synthetic data, few epochs, 1 repeat")
    p.add_argument("--synthetic", action="store_true", help="synthetic images even when Fashion-MNIST is installed")
    p.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, from {','.join(CASES)}")
    p.add_argument("--variants", default="abcd", help="letters from abcd")
    p.add_argument("--repeats", type=int, help="runs per cell (default 2, 1 with --quick)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-extras", action="store_true", help="skip the start-up, first-step and memory probes")
    p.add_argument("--rss-epochs", type=int, help="epochs of the rings memory probe (default 100, 3 with --quick)")
    p.add_argument("--out", default=str(HERE / "results" / "latest.json"), help="JSON path; .md written beside it")
    p.add_argument("--timeout", type=float, default=900, help="seconds per process")
    p.add_argument(
        "--retries", type=int, help="extra runs of a cell when other processes disturbed it (default 2, 0 with --quick)"
    )
    p.add_argument(
        "--quiet-wait",
        type=float,
        help="before each run, wait up to this many seconds for other "
        "processes to leave the CPUs idle (default 90, 0 with --quick)",
    )
    p.add_argument(
        "--merge",
        nargs="+",
        metavar="JSON",
        help="no runs: pool the runs of earlier result files (same data and seed) into one report at --out",
    )
    args = p.parse_args(argv)
    if args.merge:
        return merge(args.merge, Path(args.out))

    cases = [c for c in args.cases.split(",") if c]
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        p.error(f"unknown case(s) {', '.join(unknown)}; choose from {', '.join(CASES)}")
    variants = [v for v in "abcd" if v in args.variants]
    repeats = args.repeats or (1 if args.quick else 2)
    synthetic = args.quick or args.synthetic or not all((DEBIAN_FASHION_DIR / f"{s}.gz").is_file() for s in IDX_STEMS)
    n_train, n_test = (1200, 200) if args.quick else (60000, 10000)
    retries = args.retries if args.retries is not None else (0 if args.quick else 2)
    quiet_wait = args.quiet_wait if args.quiet_wait is not None else (0 if args.quick else 90)

    with tempfile.TemporaryDirectory(prefix="tuitrain-bench-") as tmp:
        work = Path(tmp)
        isolate_state(work)
        data = prepare_data(work, synthetic, n_train, n_test, args.seed)
        fused = engine_uses_fused_adam()
        report: dict[str, Any] = {
            "version": 1,
            "quick": args.quick,
            "seed": args.seed,
            "repeats": repeats,
            "data": data["source"],
            "synthetic": synthetic,
            "machine": machine(),
            "variants": {k: VARIANTS[k] for k in variants},
            "adam_fused": fused,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "cases": {},
            "not_measured": {},
        }
        raw: dict[str, dict[str, list[dict[str, Any]]]] = {c: {v: [] for v in variants} for c in cases}
        if not args.no_extras:
            print("extras: start-up, first step, first chart, memory", file=sys.stderr, flush=True)
            report["extras"] = {
                "startup": startup(3 if args.quick else 7),
                "first_step": first_step(data, args.seed, work),
                "first_chart": first_chart(data, args.seed, work),
                "rss": rss(args.rss_epochs or (3 if args.quick else 100)),
            }
        report["roofline"] = roofline(cases)
        out = Path(args.out)
        write_report(report, out)  # also after every run: a stopped benchmark keeps what it measured
        for r in range(repeats):  # interleaved, so drift in machine load spreads over every cell
            for case in cases:
                epochs = CASES[case][4 if args.quick else 3]
                for v in variants if r % 2 == 0 else variants[::-1]:  # no variant always runs first
                    for _attempt in range(1 + retries):
                        busy = wait_for_quiet(quiet_wait) if quiet_wait > 0 else None
                        before, start = cpu_counters(), time.perf_counter()
                        res = run_case(v, case, epochs, data, args.seed, work, fused, args.timeout)
                        res["others_cpu_share"] = others_share(before, cpu_counters(), time.perf_counter() - start)
                        res["disturbed"] = res["others_cpu_share"] > DISTURBED
                        res["cpu_busy_before"] = busy
                        res["round"] = r
                        raw[case][v].append(res)
                        shown = res.get("error") or f"{res['samples_per_s']:,.0f} samples/s, wall {res['wall_s']:.2f} s"
                        print(
                            f"[{r + 1}/{repeats}] {case:<10} {v}: {shown}  (others used "
                            f"{res['others_cpu_share']:.0%} of the CPUs)",
                            file=sys.stderr,
                            flush=True,
                        )
                        summarize_cases(report, raw, args.quick)
                        write_report(report, out)
                        if "error" in res or not res["disturbed"]:
                            break
        report["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        summarize_cases(report, raw, args.quick)

    print(write_report(report, out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
