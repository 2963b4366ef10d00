"""Measures what tuitrain's training loop costs over a bare loop, epoch against epoch in one process.

A real headless run (`session.new_run`: its run directory, metrics, checkpoints, histories, a JSON
printer on a thread of its own) trains; after each of its epochs, a consumer trains one epoch of the
bare loop (bench/bare_loop.py's step) on a copy of the same network, with the same optimizer. The
two alternate every few seconds in the same process, so the drift of a noisy VM's speed (on our
2-core VMs: the same process ran 0.5x to 1.2x its median from minute to minute) falls on both alike,
which whole processes run one after the other cannot promise. The ratio is c/a without the start-up.

    .venv/bin/python bench/overhead.py --cases mlp-64,rings --rounds 8
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

from bare_loop import train_epoch  # noqa: E402

from tuitrain.config import resolve_config  # noqa: E402
from tuitrain.events import EpochEnded, Event  # noqa: E402
from tuitrain.headless.printers import BackgroundPrinter, JsonPrinter  # noqa: E402
from tuitrain.runs import start as session  # noqa: E402
from tuitrain.training.step import build_optimizer  # noqa: E402

FASHION = Path("/usr/share/datasets/fashion-mnist")
# name: (preset, batch size); rings trains 10 epochs per round (an epoch is ~15 ms)
CASES = {
    "mlp-64": ("mlp", 64),
    "mlp-256": ("mlp", 256),
    "mlp-1024": ("mlp", 1024),
    "lenet-64": ("lenet", 64),
    "lenet-256": ("lenet", 256),
    "rings": ("rings", 1000),
}
RINGS_EPOCHS_PER_ROUND = 10


class BareEpochs:
    """The consumer: after every `every`-th tuitrain epoch, the same number of bare epochs, timed."""

    def __init__(self, trainer: Any, every: int):
        self.trainer, self.every = trainer, every
        tc = trainer.config.train
        self.model = copy.deepcopy(trainer.model)
        self.optimizer = build_optimizer(tc.optimizer, self.model.parameters(), tc.lr, tc.momentum, tc.weight_decay)
        self.shuffle = torch.Generator(device=trainer.device).manual_seed(tc.seed + 1)
        self.bare_s: list[float] = []
        self.tuitrain_s: list[float] = []
        self._pending = 0.0

    def __call__(self, event: Event) -> None:
        if not isinstance(event, EpochEnded):
            return
        self._pending += event.seconds  # tuitrain's own training time of the epoch (no validation)
        if event.epoch % self.every:
            return
        self.tuitrain_s.append(self._pending)
        self._pending = 0.0
        self.bare_s.append(sum(self.bare_epoch() for _ in range(self.every)))

    def bare_epoch(self) -> float:
        """bench/bare_loop.py's epoch, timed."""
        data, bs = self.trainer.data.train, self.trainer.config.train.batch_size
        start = time.perf_counter()
        train_epoch(self.model, self.optimizer, self.trainer.loss_fn, data.x, data.y, bs, self.shuffle)
        return time.perf_counter() - start


def measure(case: str, rounds: int, out_dir: Path) -> dict[str, Any]:
    preset, batch = CASES[case]
    every = RINGS_EPOCHS_PER_ROUND if preset == "rings" else 1
    images = {} if preset == "rings" else {"dataset": "fashion-mnist", "data_dir": str(FASHION)}
    config = resolve_config(preset, batch_size=batch, epochs=(rounds + 1) * every, seed=0, **images)
    trainer, writer = session.new_run(config, out_dir)
    bare = BareEpochs(trainer, every)
    printer = BackgroundPrinter(JsonPrinter(io.StringIO()))  # what `--json` does, minus the terminal
    trainer.consumers += [printer, bare]
    try:
        trainer.run()
    finally:
        writer.close()
        printer.close()
    pairs = list(zip(bare.tuitrain_s, bare.bare_s, strict=True))[1:]  # the first round warms both up
    ratios = [b / t for t, b in pairs]  # time ratio = c/a speed ratio
    return {
        "case": case,
        "rounds": len(pairs),
        "epochs_per_round": every,
        "tuitrain_epoch_s": statistics.median(t for t, _ in pairs) / every,
        "bare_epoch_s": statistics.median(b for _, b in pairs) / every,
        "c/a": statistics.median(ratios),
        "min": min(ratios),
        "max": max(ratios),
        "threads": torch.get_num_threads(),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, from {','.join(CASES)}")
    p.add_argument("--rounds", type=int, default=8, help="paired rounds per case after one warm-up round")
    p.add_argument("--out", default=str(HERE / "results" / "overhead.json"), help="JSON path; .md written beside it")
    args = p.parse_args(argv)
    cases = [c for c in args.cases.split(",") if c]
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        p.error(f"unknown case {unknown[0]!r}; choose from {', '.join(CASES)}")
    if any(CASES[c][0] != "rings" for c in cases) and not FASHION.is_dir():
        p.error(f"the image cases need Fashion-MNIST in {FASHION} (apt-get install dataset-fashion-mnist)")
    results = []
    with tempfile.TemporaryDirectory(prefix="tuitrain-overhead-") as tmp:
        for case in cases:
            result = measure(case, args.rounds, Path(tmp))
            results.append(result)
            print(
                f"{case:<10} tuitrain {result['tuitrain_epoch_s'] * 1e3:8.1f} ms/epoch, bare "
                f"{result['bare_epoch_s'] * 1e3:8.1f} ms/epoch: c/a {result['c/a']:.3f} "
                f"({result['min']:.2f}-{result['max']:.2f}, {result['rounds']} rounds)",
                file=sys.stderr,
                flush=True,
            )
    lines = [
        "| case | tuitrain ms/epoch | bare ms/epoch | c/a (paired, median) | range | rounds |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['case']} | {r['tuitrain_epoch_s'] * 1e3:.1f} | {r['bare_epoch_s'] * 1e3:.1f} | {r['c/a']:.3f} "
            f"| {r['min']:.2f}-{r['max']:.2f} | {r['rounds']} |"
        )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "results": results}, indent=1) + "\n")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
