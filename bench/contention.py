"""Measures training speed on a shared machine: quiet vs beside one competing CPU-bound process.

Each round runs `tuitrain run CASE --json` quiet, then again beside a competitor (a Python busy
loop, or another `tuitrain run` under the same policy), for each policy; rounds interleave the
policies and the table reports medians. Policies:

- `default`: tuitrain's own (the thread governor, tuitrain/training/threads.py);
- `torch`: what torch does alone (libgomp's long spin, all threads, no governor);
- any `NAME=ENV=VALUE[,ENV=VALUE]` / `NAME=--threads=N` given on the command line.

    .venv/bin/python bench/contention.py --cases rings,mlp --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

CASES = {
    "rings": ["rings", "--epochs", "100"],
    "mlp": ["mlp", "--dataset", "fashion-mnist", "--epochs", "1"],
}
POLICIES: dict[str, tuple[dict[str, str], list[str]]] = {
    "default": ({}, []),
    "torch": ({"GOMP_SPINCOUNT": "300000"}, ["--threads", str(len(os.sched_getaffinity(0)))]),
}
BUSY_LOOP = [sys.executable, "-c", "while True: pass"]


def tuitrain(args: list[str], env: dict[str, str], out: Path) -> list[str]:
    return [sys.executable, "-m", "tuitrain", "run", *args, "--json", "--out", str(out)]


def samples_per_s(args: list[str], env: dict[str, str], out: Path) -> float:
    done = subprocess.run(tuitrain(args, env, out), env=env, capture_output=True, text=True, check=True)
    ends = [json.loads(line) for line in done.stdout.splitlines() if '"event": "end"' in line]
    return float(ends[-1]["samples_per_s"])


def measure(case: str, policy: str, competitor: str | None, out: Path) -> float:
    extra_env, extra_args = POLICIES[policy]
    env = {**os.environ, **extra_env}
    args = [*CASES[case], *extra_args]
    if competitor is None:
        return samples_per_s(args, env, out)
    rival_cmd = (
        BUSY_LOOP
        if competitor == "busy"
        else tuitrain([*CASES["rings"][:1], "--epochs", "1000000", *extra_args], env, out)
    )
    rival = subprocess.Popen(rival_cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(3 if competitor == "tuitrain" else 0.5)  # let it start training (torch import, data)
        return samples_per_s(args, env, out)
    finally:
        rival.terminate()
        rival.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", default="rings,mlp")
    parser.add_argument("--policies", default="default,torch")
    parser.add_argument("--competitors", default="busy,tuitrain")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--policy", action="append", default=[], help="NAME=ENV=VALUE,... or NAME=--threads=N")
    parser.add_argument("--out", default="bench/results/contention.json")
    opts = parser.parse_args()
    for spec in opts.policy:
        name, _, rest = spec.partition("=")
        env, args = {}, []
        for item in rest.split(","):
            key, _, value = item.partition("=")
            if key.startswith("--"):
                args += [key, value]
            else:
                env[key] = value
        POLICIES[name] = (env, args)
    cases, policies = opts.cases.split(","), opts.policies.split(",")
    competitors = [None, *(c for c in opts.competitors.split(",") if c in ("busy", "tuitrain"))]
    results: dict[str, list[float]] = {}
    scratch = Path(os.environ.get("TMPDIR", "/tmp")) / f"contention-{os.getpid()}"
    for round_ in range(opts.rounds):
        for case in cases:
            for policy in policies:
                for competitor in competitors:
                    value = measure(case, policy, competitor, scratch)
                    results.setdefault(f"{case}|{policy}|{competitor or 'quiet'}", []).append(value)
                    print(
                        f"round {round_ + 1} {case:6} {policy:10} {competitor or 'quiet':9} {value:12,.0f}", flush=True
                    )
    base = {case: statistics.median(results[f"{case}|torch|quiet"]) for case in cases if "torch" in policies}
    lines = ["| case | policy | competitor | samples/s (median) | vs torch quiet |", "|---|---|---|---|---|"]
    for key, values in results.items():
        case, policy, competitor = key.split("|")
        ratio = f"{statistics.median(values) / base[case]:.2f}" if case in base else ""
        lines.append(f"| {case} | {policy} | {competitor} | {statistics.median(values):,.0f} | {ratio} |")
    print("\n".join(lines))
    Path(opts.out).parent.mkdir(parents=True, exist_ok=True)
    Path(opts.out).write_text(json.dumps({"results": results, "table": lines}, indent=1))


if __name__ == "__main__":
    main()
