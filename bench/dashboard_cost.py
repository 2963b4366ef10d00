"""Measures what the dashboard costs the training, in one run: the app drawing, then the app stopped.

A dashboard (`tuitrain train`, in a 120x40 pseudo-terminal) trains for a while; this script then
stops the app's process (SIGSTOP) and lets it go on (SIGCONT) in alternating windows of a few
seconds, the pair's order alternating too. The training process never stops: in the stopped
windows it trains exactly as it does headless, with nobody drawing. Its step lines in
metrics.jsonl (cumulative samples and training seconds, written as they happen) give the training
speed in each window, so d/c is the ratio of two windows seconds apart, in the same process, on
the same weights: the VM's drift from minute to minute, which swamps d/c between separate runs,
falls on both halves alike. Each window begins a second after its signal (`--settle`): a woken
app first catches up on the seconds it missed (a backlog of events, a redraw), work a dashboard
that is never stopped does not have. The app's CPU share of a core is read from /proc for the
drawing windows.

    .venv/bin/python bench/dashboard_cost.py                         # all cases, 6 pairs of 4 s windows
    .venv/bin/python bench/dashboard_cost.py --cases mlp-256,rings --pairs 4 --window 3
    .venv/bin/python bench/dashboard_cost.py --cases lenet-64,rings --panel units    # with the Units panel open

`--panel` presses that panel's key once the run trains: the drawing windows then include what the
panel asks of the training process (its inspections), the stopped ones do not (nobody asks).

Writes bench/results/dashboard-cost.json and dashboard-cost.md (dashboard-cost-PANEL.* with --panel).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import bench

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
POLL_S = 0.02  # how often metrics.jsonl is read: a step line's time here is at most this late


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process `pid` so far."""
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


class MetricsTail:
    """The step lines of a run's metrics.jsonl as they are written: (time seen, samples, training s)."""

    def __init__(self, runs: Path):
        self.runs, self.handle, self.partial = runs, None, b""
        self.steps: list[tuple[float, float, float]] = []

    def poll(self) -> None:
        if self.handle is None:
            found = sorted(self.runs.glob("*/metrics.jsonl"))
            if not found:
                return
            self.handle = open(found[0], "rb")
        chunk = self.handle.read()
        if not chunk:
            return
        lines = (self.partial + chunk).split(b"\n")
        self.partial = lines.pop()
        seen = time.monotonic()
        for line in lines:
            event = json.loads(line)
            if event.get("event") == "step":
                self.steps.append((seen, event["samples_per_s"] * event["seconds"], event["seconds"]))


def group_alive(pgid: int) -> bool:
    """Whether a process of group `pgid` still runs (zombies, waiting to be reaped, do not count)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def window_speed(steps: list[tuple[float, float, float]], start: float, end: float) -> dict[str, float] | None:
    """Samples per training second (and per wall second) between the first and last step line of a window."""
    inside = [s for s in steps if start <= s[0] <= end]
    if len(inside) < 2 or inside[-1][2] <= inside[0][2]:
        return None
    (t0, n0, s0), (t1, n1, s1) = inside[0], inside[-1]
    return {"samples_per_s": (n1 - n0) / (s1 - s0), "wall_samples_per_s": (n1 - n0) / (t1 - t0)}


def drain(master: int) -> None:
    """Read (and drop) what the app draws, so it never blocks on a full terminal."""
    while True:
        try:
            if not os.read(master, 1 << 16):
                return
        except OSError:
            return


PANEL_KEYS = {"charts": b"1", "params": b"2", "predictions": b"3", "units": b"4"}


def measure(
    case: str,
    data: dict[str, Any],
    work: Path,
    pairs: int,
    window: float,
    warmup: float,
    settle: float,
    panel: str = "charts",
) -> dict[str, Any]:
    model, preset, batch, _, _ = bench.CASES[case]
    images = [] if model == "rings" else ["--dataset", "fashion-mnist", "--data-dir", data["idx_dir"]]
    runs = work / f"runs-{case}"
    cmd = [*bench.tuitrain_cmd(), "train", preset, *images, "--batch-size", str(batch), "--epochs", "100000"]
    cmd += ["--seed", "0", "--out", str(runs)]
    app, master = bench.start_in_terminal(cmd)
    threading.Thread(target=drain, args=(master,), daemon=True).start()
    tail, windows = MetricsTail(runs), []
    try:
        deadline = time.monotonic() + 180
        while not tail.steps:
            if time.monotonic() > deadline or app.poll() is not None:
                return {"error": f"no step line within 180 s (app exit {app.poll()})"}
            time.sleep(POLL_S)
            tail.poll()
        os.write(master, PANEL_KEYS[panel])
        until = time.monotonic() + warmup
        while time.monotonic() < until:
            time.sleep(POLL_S)
            tail.poll()
        for pair in range(pairs):
            for drawing in (True, False) if pair % 2 == 0 else (False, True):
                os.kill(app.pid, signal.SIGCONT if drawing else signal.SIGSTOP)
                until = time.monotonic() + settle  # a woken app first catches up on what it missed
                while time.monotonic() < until:
                    time.sleep(POLL_S)
                    tail.poll()
                start, cpu = time.monotonic(), cpu_seconds(app.pid)
                while time.monotonic() < start + window:
                    time.sleep(POLL_S)
                    tail.poll()
                end = time.monotonic()
                share = (cpu_seconds(app.pid) - cpu) / (end - start)
                windows.append(
                    {
                        "pair": pair,
                        "drawing": drawing,
                        "app_cpu_share": share,
                        **(window_speed(tail.steps, start, end) or {}),
                    }
                )
    finally:
        os.kill(app.pid, signal.SIGCONT)
        os.killpg(app.pid, signal.SIGTERM)
        try:
            app.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(app.pid, signal.SIGKILL)
            app.wait()
        # the training process saves its checkpoint after the app has gone: wait for it, so that
        # the work folder is not removed while it writes there
        deadline = time.monotonic() + 30
        while group_alive(app.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if group_alive(app.pid):
            os.killpg(app.pid, signal.SIGKILL)
        os.close(master)
    return summarize(windows)


def summarize(windows: list[dict[str, Any]]) -> dict[str, Any]:
    """d/c of each pair (drawing over stopped), median and range; the app's share while it drew."""
    ratios: dict[str, list[float]] = {"samples_per_s": [], "wall_samples_per_s": []}
    for pair in sorted({w["pair"] for w in windows}):
        both = {w["drawing"]: w for w in windows if w["pair"] == pair}
        for key, values in ratios.items():
            if key in both.get(True, {}) and key in both.get(False, {}):
                values.append(both[True][key] / both[False][key])
    if not ratios["samples_per_s"]:
        return {"error": "no window held two step lines", "windows": windows}
    shares = [w["app_cpu_share"] for w in windows if w["drawing"]]
    return {
        "d_over_c": statistics.median(ratios["samples_per_s"]),
        "d_over_c_range": [min(ratios["samples_per_s"]), max(ratios["samples_per_s"])],
        "wall_d_over_c": statistics.median(ratios["wall_samples_per_s"]) if ratios["wall_samples_per_s"] else None,
        "pairs": len(ratios["samples_per_s"]),
        "app_cpu_share": statistics.median(shares),
        "stopped_app_cpu_share": max(w["app_cpu_share"] for w in windows if not w["drawing"]),
        "windows": windows,
    }


def markdown(report: dict[str, Any]) -> str:
    rows = [
        "| case | d/c (paired, median) | range | wall d/c | pairs | app's share of a core, drawing |",
        "|---|---|---|---|---|---|",
    ]
    for case, r in report["cases"].items():
        if "error" in r:
            rows.append(f"| {case} | {r['error']} | | | | |")
            continue
        low, high = r["d_over_c_range"]
        wall = f"{r['wall_d_over_c']:.3f}" if r["wall_d_over_c"] is not None else "-"
        rows.append(
            f"| {case} | {r['d_over_c']:.3f} | {low:.2f}-{high:.2f} | {wall} | {r['pairs']} | "
            f"{r['app_cpu_share'] * 100:.1f}% |"
        )
    m = report["machine"]
    head = (
        f"Machine: {m['cpu']}, {m['cores']} cores; torch {m['torch']} ({m['torch_threads']} threads). "
        f"Data: {report['data']}. {report['pairs']} pairs of {report['window_s']:g} s windows per case, "
        f"after {report['warmup_s']:g} s of training; each window began {report.get('settle_s', 0):g} s after "
        "the app was stopped or woken (its catch-up left out)."
    )
    return head + "\n\n" + "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", default=",".join(bench.CASES), help="comma-separated, from: " + ", ".join(bench.CASES))
    p.add_argument("--pairs", type=int, default=6, help="drawing/stopped window pairs per case (default 6)")
    p.add_argument("--window", type=float, default=4.0, help="seconds per window (default 4)")
    p.add_argument("--warmup", type=float, default=3.0, help="seconds of training before the first window")
    p.add_argument(
        "--settle", type=float, default=1.0, help="seconds after each stop or start before its window (default 1)"
    )
    p.add_argument("--synthetic", action="store_true", help="synthetic images even if Fashion-MNIST is installed")
    p.add_argument("--out", default=str(bench.HERE / "results"), help="folder for dashboard-cost.json/.md")
    p.add_argument("--panel", choices=sorted(PANEL_KEYS), default="charts", help="the panel shown (default charts)")
    args = p.parse_args(argv)
    cases = [c for c in args.cases.split(",") if c]
    unknown = [c for c in cases if c not in bench.CASES]
    if unknown:
        p.error(f"unknown case(s): {', '.join(unknown)}")
    with tempfile.TemporaryDirectory(prefix="tuitrain-dashcost-") as tmp:
        work = Path(tmp)
        bench.isolate_state(work)
        synthetic = args.synthetic or not bench.DEBIAN_FASHION_DIR.exists()
        data = bench.prepare_data(work, synthetic, 6000, 1000, 0)
        report: dict[str, Any] = {
            "machine": bench.machine(),
            "data": data["source"],
            "pairs": args.pairs,
            "window_s": args.window,
            "warmup_s": args.warmup,
            "settle_s": args.settle,
            "panel": args.panel,
            "cases": {},
        }
        for case in cases:
            report["cases"][case] = result = measure(
                case, data, work, args.pairs, args.window, args.warmup, args.settle, args.panel
            )
            print(case, {k: v for k, v in result.items() if k != "windows"}, flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = "dashboard-cost" if args.panel == "charts" else f"dashboard-cost-{args.panel}"
    (out / f"{name}.json").write_text(json.dumps(report, indent=1) + "\n")
    (out / f"{name}.md").write_text(markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
