"""Measures start-up in rounds: `import torch`, `tuitrain run` to its first step, the dashboard to its first
point, and `tuitrain train rings` to its first visible loss line.

    .venv/bin/python bench/startup.py --rounds 5      # medians, and each round's three times

Uses bench.py's own probes (first_step, first_chart: a 120x40 pseudo-terminal), interleaved so
that drift in machine load spreads over all three.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="tuitrain-startup-") as tmp:
        work = Path(tmp)
        bench.isolate_state(work)
        synthetic = not all((bench.DEBIAN_FASHION_DIR / f"{s}.gz").is_file() for s in bench.IDX_STEMS)
        data = bench.prepare_data(work, synthetic, 60000, 10000, 0)
        torch_s, step_s, chart_s, line_s = [], [], [], []
        for r in range(args.rounds):
            torch_s.append(bench.median_time([sys.executable, "-c", "import torch"], 1)["median_s"])
            shutil.rmtree(work / "first-step", ignore_errors=True)
            step_s.append(bench.first_step(data, 0, work)["to_first_step_s"])
            chart_s.append(bench.first_chart(data, 0, work)["to_first_chart_s"])
            line_s.append(bench.first_line(work)["to_first_line_s"])
            print(f"round {r + 1}: import torch {torch_s[-1]:.2f} s, first step {step_s[-1]:.2f} s, "
                  f"first chart point {chart_s[-1]:.2f} s, rings' first line {line_s[-1]:.2f} s",
                  flush=True)  # fmt: skip
    imp, step, chart, line = (statistics.median(x) for x in (torch_s, step_s, chart_s, line_s))
    print(f"median: import torch {imp:.2f} s; first step {step:.2f} s = {step / imp:.2f}x; "
          f"first chart point {chart:.2f} s = {chart / imp:.2f}x; "
          f"train rings' first line {line:.2f} s = {line / imp:.2f}x")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
