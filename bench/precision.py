"""Measures `--precision bf16` against float32: samples/s, test accuracy, and each against its own matmul peak.

Each run is `tuitrain run PRESET --dataset fashion-mnist --json` in its own process; the two
precisions alternate round by round (this VM's speed drifts), and the table gives medians.

    .venv/bin/python bench/precision.py                        # mlp-64, mlp-256, lenet-256; 2 rounds
    .venv/bin/python bench/precision.py --cases mlp-256 --rounds 3 --epochs 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CASES = {"mlp-64": ("mlp", 64), "mlp-256": ("mlp", 256), "mlp-1024": ("mlp", 1024), "lenet-256": ("lenet", 256)}
PRECISIONS = ("fp32", "bf16")


def run(preset: str, batch: int, epochs: int, precision: str, out: Path) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "tuitrain", "run", preset, "--dataset", "fashion-mnist", "--batch-size", str(batch)]
    cmd += ["--epochs", str(epochs), "--precision", precision, "--json", "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=HERE.parent, timeout=1800)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)}: exit {proc.returncode}: {proc.stderr.strip()[-300:]}")
    end = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"samples_per_s": end["samples_per_s"], "accuracy": end["test"]["accuracy"], "loss": end["test"]["loss"]}


def peaks() -> dict[str, float]:
    code = (
        "import json, sys; sys.path.insert(0, 'bench'); from roofline import matmul_peak_gflops as p;"
        "print(json.dumps({'fp32': p(dtype='float32'), 'bf16': p(dtype='bfloat16')}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=HERE.parent, check=True)
    return json.loads(out.stdout)


def flops(case: str) -> float:
    preset, batch = CASES[case]
    code = (
        f"import sys; sys.path.insert(0, 'bench'); from roofline import flops_per_sample as f;"
        f"print(f({preset!r}, {batch}, 'fashion-mnist'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=HERE.parent, check=True)
    return float(out.stdout)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="mlp-64,mlp-256,lenet-256", help=f"from {','.join(CASES)}")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--out", default=str(HERE / "results" / "precision.json"))
    args = parser.parse_args(argv)
    cases = args.cases.split(",")
    peak = peaks()
    results: dict[str, dict[str, list[dict[str, Any]]]] = {c: {p: [] for p in PRECISIONS} for c in cases}
    with tempfile.TemporaryDirectory() as work:
        for _ in range(args.rounds):
            for case in cases:
                for precision in PRECISIONS:
                    preset, batch = CASES[case]
                    results[case][precision].append(run(preset, batch, args.epochs, precision, Path(work)))
    rows = [
        "| case | epochs | fp32 samples/s | bf16 samples/s | bf16/fp32 | fp32 test acc | bf16 test acc "
        "| fp32 % of fp32 peak | bf16 % of bf16 peak | bf16 % of fp32 peak |",
        "|" + "---|" * 10,
    ]
    for case in cases:
        per = flops(case)
        med = {p: statistics.median(r["samples_per_s"] for r in results[case][p]) for p in PRECISIONS}
        acc = {p: statistics.median(r["accuracy"] for r in results[case][p]) for p in PRECISIONS}
        gflops = {p: med[p] * per / 1e9 for p in PRECISIONS}
        rows.append(
            f"| {case} | {args.epochs} | {med['fp32']:,.0f} | {med['bf16']:,.0f} | {med['bf16'] / med['fp32']:.2f} "
            f"| {100 * acc['fp32']:.2f}% | {100 * acc['bf16']:.2f}% | {100 * gflops['fp32'] / peak['fp32']:.0f} "
            f"| {100 * gflops['bf16'] / peak['bf16']:.0f} | {100 * gflops['bf16'] / peak['fp32']:.0f} |"
        )
        results[case]["flops_per_sample"] = per  # type: ignore[assignment]
    table = "\n".join(rows)
    note = (
        f"\nMatmul peaks measured in the same run (2048-square): float32 {peak['fp32']:.1f} GFLOP/s, "
        f"bfloat16 {peak['bf16']:.1f} GFLOP/s. Median of {args.rounds} round(s), precisions alternating."
    )
    print(table + note)
    Path(args.out).write_text(json.dumps({"peaks": peak, "epochs": args.epochs, "results": results}, indent=1))
    Path(args.out).with_suffix(".md").write_text(table + note + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
