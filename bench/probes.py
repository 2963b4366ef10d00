"""Small drivers the benchmark runs in their own processes; each prints one JSON object on stdout.

python bench/probes.py rss --epochs 100         # VmRSS at each EpochEnded of a `rings` run
python bench/probes.py dashboard RESULT.json [--until-first-chart] PRESET [tuitrain train options]
                                                # `tuitrain train`'s dashboard; run it in a terminal (pty)
"""

from __future__ import annotations

import json
import resource
import sys
import time
from typing import Any


def vm_rss_kib() -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def rss(argv: list[str]) -> None:
    """Run the `rings` preset through the Trainer, sampling resident memory after every epoch."""
    from tuitrain.config import resolve_config
    from tuitrain.events import EpochEnded
    from tuitrain.training.engine import Trainer

    epochs = int(argv[argv.index("--epochs") + 1]) if "--epochs" in argv else 100
    samples: dict[int, int] = {}

    def consumer(event: object) -> None:
        if isinstance(event, EpochEnded):
            samples[event.epoch] = vm_rss_kib()

    config = resolve_config("rings", epochs=epochs)
    ended = Trainer(config, [consumer]).run()
    first = samples.get(2, samples.get(1, 0))
    print(
        json.dumps(
            {
                "status": ended.status,
                "epochs": epochs,
                "rss_kib_epoch2": first,
                "rss_kib_last": samples.get(epochs, 0),
                "rss_kib_by_epoch": samples,
                "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                "samples_per_s": ended.samples_per_s,
            }
        )
    )


def dashboard(argv: list[str]) -> None:
    """`tuitrain train PRESET ...` (its config resolution and `open_train`), quitting at the run's end.

    Runs inside a terminal (the parent gives it a pty and reads the screen updates); writes
    {samples_per_s, first_chart_time, ...} to RESULT.json, since stdout is the terminal.
    """
    from tuitrain.runs.remote import start_warm

    start_warm()  # as `tuitrain train` does (launch.open_train) before textual loads; the hooks below need it
    import click

    from tuitrain import cli
    from tuitrain.events import RunEnded, StepProgress
    from tuitrain.tui.screens.dashboard import Dashboard

    result_path, argv = argv[0], argv[1:]
    until_first_chart = argv[:1] == ["--until-first-chart"]
    until_first_line = argv[:1] == ["--until-first-line"]
    argv = argv[1:] if until_first_chart or until_first_line else argv
    seen: dict[str, object] = {}
    draw_charts, show_end = Dashboard.draw_charts, Dashboard.show_end

    def consumer(event: object) -> None:  # the app's worker thread, before the dashboard's own sink
        if isinstance(event, StepProgress):
            if "first_step_time" not in seen:
                seen.update(first_step_time=time.time(), app_cpu_at_first_step=time.process_time())
        elif isinstance(event, RunEnded):
            seen["receiver_cpu_s"] = time.thread_time()  # this thread: the one reading the pipe
            if "first_step_time" in seen:  # the app's own CPU while the child trained: what it costs
                cpu = time.process_time() - float(seen["app_cpu_at_first_step"])  # type: ignore[arg-type]
                seen["app_cpu_share"] = cpu / max(time.time() - float(seen["first_step_time"]), 1e-9)  # type: ignore[arg-type]
            seen.update(
                status=event.status,
                samples_per_s=event.samples_per_s,
                train_seconds=event.train_seconds,
                test=event.test and event.test.loss,
            )

    def drawing(self: Dashboard) -> None:
        draw_charts(self)
        if "first_step_time" in seen and "samples_per_s" not in seen:
            seen["chart_draws"] = int(seen.get("chart_draws", 0)) + 1  # type: ignore[call-overload]
        if "first_step_time" in seen and self.history.step > 0:
            if "first_chart_time" not in seen:
                seen["first_chart_time"] = time.time()  # the first chart holding a step point
                if until_first_chart:
                    self.shutdown()
        if "first_step_time" in seen and len(self.history.train_loss) >= 2 and "first_line_time" not in seen:
            seen["first_line_time"] = time.time()  # two loss points: the first visible line
            if until_first_line:
                self.shutdown()

    def ending(self: Dashboard, event: object) -> None:
        seen["main_cpu_s"] = time.thread_time()
        seen["pacer"] = [self.pacer.interval, self.pacer.quiet_share, self.pacer.draw_cost, self.pacer.budget]
        show_end(self, event)
        self.draw_charts()
        self.app.call_later(self.app.exit)

    Dashboard.draw_charts, Dashboard.show_end = drawing, ending  # type: ignore[method-assign]

    from tuitrain.tui.source import LiveRun

    follow = LiveRun.follow

    def following(self: LiveRun, sink: Any) -> None:  # sees what the app receives
        def both(event: Any) -> None:
            consumer(event)
            sink(event)

        follow(self, both)

    LiveRun.follow = following  # type: ignore[method-assign]

    @click.command()
    @click.argument("preset")
    @cli.training_options
    @click.option("--out", default="runs")
    def command(preset: str, out: str, **overrides: object) -> None:
        from tuitrain.config import resolve_config
        from tuitrain.tui import launch

        launch.open_train(resolve_config(preset, **overrides), out)  # what `tuitrain train` runs

    command.main(argv, standalone_mode=False)
    with open(result_path, "w") as handle:
        json.dump(seen, handle)


if __name__ == "__main__":
    {"rss": rss, "dashboard": dashboard}[sys.argv[1]](sys.argv[2:])
