"""Small drivers the benchmark runs in their own processes; each prints one JSON object on stdout.

    python bench/probes.py rss --epochs 100         # VmRSS at each EpochEnded of a `rings` run
    python bench/probes.py first-step PRESET [tuitrain run options]
                                                    # wall-clock time (time.time()) of the first step event
"""

from __future__ import annotations

import json
import resource
import sys
import time


def vm_rss_kib() -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def rss(argv: list[str]) -> None:
    """Run the `rings` preset through the Trainer, sampling resident memory after every epoch."""
    from tuitrain.cli import resolve_config
    from tuitrain.engine import Trainer
    from tuitrain.events import EpochEnded

    epochs = int(argv[argv.index("--epochs") + 1]) if "--epochs" in argv else 100
    samples: dict[int, int] = {}

    def consumer(event: object) -> None:
        if isinstance(event, EpochEnded):
            samples[event.epoch] = vm_rss_kib()

    config = resolve_config("rings", epochs=epochs)
    ended = Trainer(config, [consumer]).run()
    first = samples.get(2, samples.get(1, 0))
    print(json.dumps({"status": ended.status, "epochs": epochs, "rss_kib_epoch2": first,
                      "rss_kib_last": samples.get(epochs, 0), "rss_kib_by_epoch": samples,
                      "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                      "samples_per_s": ended.samples_per_s}))


def first_step(argv: list[str]) -> None:
    """The `tuitrain run` code path (options parsed by its CLI), stopped at the first step event.

    Prints the wall-clock time of the RunStarted and first StepProgress events, so the parent can
    subtract the moment it spawned this process (imports and data loading included).
    """
    import click

    from tuitrain import cli
    from tuitrain.events import RunStarted, StepProgress

    seen: dict[str, float] = {}
    holder: dict[str, object] = {}

    def consumer(event: object) -> None:
        if isinstance(event, RunStarted):
            seen.setdefault("start", time.time())
        elif isinstance(event, StepProgress) and "step" not in seen:
            seen["step"] = time.time()
            holder["trainer"].stop()  # type: ignore[attr-defined]

    @click.command()
    @click.argument("preset")
    @cli.training_options
    def command(preset: str, **overrides: object) -> None:
        from tuitrain.engine import Trainer

        trainer = Trainer(cli.resolve_config(preset, **overrides), [consumer])
        holder["trainer"] = trainer
        trainer.run()

    command.main(argv, standalone_mode=False)
    print(json.dumps({"start_time": seen.get("start"), "first_step_time": seen.get("step")}))


if __name__ == "__main__":
    {"rss": rss, "first-step": first_step}[sys.argv[1]](sys.argv[2:])
