"""Measures what recording weight/gradient histories costs: `tuitrain run CASE --json` with and without them.

Rounds alternate the order (on, off, then off, on, ...) so a shared machine's drifting load falls on
both alike; the table reports each side's median samples/s and their ratio.

    .venv/bin/python bench/histories.py --cases mlp,lenet --rounds 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

CASES = {
    "mlp": ["mlp", "--dataset", "fashion-mnist", "--epochs", "1"],
    "lenet": ["lenet", "--dataset", "fashion-mnist", "--epochs", "1"],
    "rings": ["rings", "--epochs", "100"],
}
ROOT = Path(__file__).resolve().parent.parent


def samples_per_s(args: list[str], out: str) -> tuple[float, int]:
    """Training samples/s of one headless run, and how many records its histories.jsonl holds."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "tuitrain", "run", *args, "--json", "--out", out],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    run_dir = Path(events[0]["run_dir"])
    history = run_dir / "histories.jsonl"
    records = len(history.read_bytes().splitlines()) if history.exists() else 0
    return float(events[-1]["samples_per_s"]), records


def alternating_epochs(args: list[str], rounds: int) -> tuple[list[float], list[float], float]:
    """One process, 2 x rounds epochs, recording on in every other one (on, off, off, on, ...): no
    start-up or data loading in the comparison, and the machine's load drifts over both sides alike.
    Also the share of the recording epochs' training time that the records themselves took (timed
    around each, so a busy machine's noise hardly touches it)."""
    import time

    sys.path.insert(0, str(ROOT))
    from tuitrain.config import resolve_config
    from tuitrain.events import EpochEnded, Event
    from tuitrain.training.engine import Trainer

    preset, rest = args[0], args[1:]
    overrides = {rest[i].lstrip("-").replace("-", "_"): rest[i + 1] for i in range(0, len(rest), 2)}
    overrides["epochs"] = str(2 * rounds)
    config = resolve_config(preset, **{k: int(v) if v.isdigit() else v for k, v in overrides.items()})
    trainer = Trainer(config)
    sides = [side for r in range(rounds) for side in ((True, False) if r % 2 == 0 else (False, True))]
    on: list[float] = []
    off: list[float] = []

    def toggle(event: Event) -> None:
        if isinstance(event, EpochEnded):
            (on if trainer.recorder.enabled else off).append(event.samples_per_s)
            if event.epoch < len(sides):
                trainer.recorder.enabled = sides[event.epoch]

    spent, on_seconds = [0.0], [0.0]
    record, before_step = trainer.recorder.record, trainer.recorder.before_step

    def timed(function: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                spent[0] += time.perf_counter() - start

        return call

    trainer.recorder.record, trainer.recorder.before_step = timed(record), timed(before_step)  # type: ignore[method-assign]

    def seconds(event: Event) -> None:
        if isinstance(event, EpochEnded) and trainer.recorder.enabled:
            on_seconds[0] += event.seconds
        toggle(event)

    trainer.recorder.enabled = sides[0]
    trainer.run(seconds)
    return on, off, spent[0] / max(on_seconds[0], 1e-9)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="mlp", help=f"comma-separated, of {', '.join(CASES)}")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--epochs", action="store_true", help="one process, recording on in alternate epochs")
    options = parser.parse_args()
    if options.epochs:
        for case in options.cases.split(","):
            on_epochs, off_epochs, share = alternating_epochs(CASES[case], options.rounds)
            on, off = statistics.median(on_epochs), statistics.median(off_epochs)
            print(
                f"{case}: alternate epochs, histories on {on:,.0f} samples/s, off {off:,.0f} samples/s, "
                f"ratio {on / off:.3f} (median of {options.rounds} epochs each); recording took {100 * share:.2f}% "
                "of the recording epochs' training time"
            )
        return
    with tempfile.TemporaryDirectory() as out:
        for case in options.cases.split(","):
            results: dict[str, list[float]] = {"on": [], "off": []}
            records: list[int] = []
            for r in range(options.rounds):
                for side in ("on", "off") if r % 2 == 0 else ("off", "on"):
                    extra = [] if side == "on" else ["--no-histories"]
                    speed, count = samples_per_s(CASES[case] + extra, out)
                    results[side].append(speed)
                    if side == "on":
                        records.append(count)
                    print(f"{case} round {r + 1} {side:3} {speed:12,.0f} samples/s", file=sys.stderr)
            on, off = statistics.median(results["on"]), statistics.median(results["off"])
            print(
                f"{case}: histories on {on:,.0f} samples/s, off {off:,.0f} samples/s, ratio {on / off:.3f} "
                f"(median of {options.rounds} interleaved rounds; {statistics.median(records):.0f} records a run)"
            )


if __name__ == "__main__":
    main()
