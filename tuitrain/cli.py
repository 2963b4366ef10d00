"""Provides the `tuitrain` command line; torch and textual are imported only inside commands."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import click.shell_completion

from tuitrain import config as cfgmod
from tuitrain.errors import TuitrainError


def complete_preset(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
    """Preset names (built-in and user), or TOML files where the word names no preset. Fast: no torch."""
    item = click.shell_completion.CompletionItem
    names = [item(name) for name in cfgmod.preset_paths() if name.startswith(incomplete)]
    return [*path_fallback(incomplete, "file", found=bool(names)), *names]


def path_fallback(incomplete: str, kind: str, found: bool) -> list[Any]:
    """The shell's own file (or folder) completion, only where no name matches the word (`./my.toml`,
    `~/runs/x`): click's bash script drops every name listed with a file/dir item, zsh and fish keep them."""
    return [] if found else [click.shell_completion.CompletionItem(incomplete, type=kind)]


def complete_run_dir(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
    """Run directories (folders holding a summary.json) under --out or ./runs, or under the folder typed."""
    typed = Path(incomplete)
    parent = typed.parent if incomplete and not incomplete.endswith("/") else typed
    roots = [parent] if incomplete else [Path(ctx.params.get("out") or "runs")]
    found = []
    for root in roots:
        try:
            found += sorted(str(d) for d in root.iterdir() if (d / "summary.json").is_file())
        except OSError:
            continue
    item = click.shell_completion.CompletionItem
    runs = [item(d) for d in found if d.startswith(incomplete)]
    return [*path_fallback(incomplete, "dir", found=bool(runs)), *runs]


class CommaList(click.ParamType):  # type: ignore[type-arg]
    """One value, or several separated by commas (a race): `--lr 0.01,0.1` -> (0.01, 0.1)."""

    def __init__(self, inner: click.ParamType) -> None:  # type: ignore[type-arg]
        self.inner = inner
        self.name = f"{inner.name}[,...]"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str):
            return value
        items = [item.strip() for item in value.split(",")]
        if any(not item for item in items):
            self.fail(f"{value!r} has an empty item (write values separated by commas: 0.01,0.1)", param, ctx)
        values = tuple(dict.fromkeys(self.inner.convert(item, param, ctx) for item in items))  # repeats once
        return values[0] if len(values) == 1 else values

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str | None:
        choices = getattr(self.inner, "choices", None)
        return f"[{'|'.join(choices)}][,...]" if choices else f"{self.inner.name.upper()}[,...]"

    def shell_complete(self, ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
        head, _, last = incomplete.rpartition(",")
        found = self.inner.shell_complete(ctx, param, last)
        return [click.shell_completion.CompletionItem(f"{head},{c.value}" if head else c.value) for c in found]


def branch_options(what: str) -> Callable[[Any], Any]:
    """`--branch RUN_DIR` (what it does: `what`) and `--checkpoint last|best`, as `run` and `lr-find` take them."""

    def add(func: Any) -> Any:
        func = click.option(
            "--checkpoint",
            "which",
            type=click.Choice(["last", "best"]),
            default="last",
            show_default=True,
            help="--branch: which checkpoint of RUN_DIR to start from.",
        )(func)
        return click.option(
            "--branch",
            type=click.Path(file_okay=False),
            metavar="RUN_DIR",
            shell_complete=complete_run_dir,
            help=what,
        )(func)

    return add


def training_options(func: Any) -> Any:
    """The overrides shared by `run`, `train` and `show`; the ones taking comma lists make a race."""
    options = [
        click.option("--epochs", type=CommaList(click.INT), help="Passes over the training split."),
        click.option("--lr", type=CommaList(click.FLOAT), help="Learning rate (per step)."),
        click.option("--optimizer", type=CommaList(click.Choice(cfgmod.OPTIMIZERS)), help="Optimizer."),
        click.option("--batch-size", type=CommaList(click.INT), help="Samples per optimizer step."),
        click.option(
            "--activation",
            type=CommaList(click.Choice(cfgmod.ACTIVATIONS)),
            help="Hidden-layer activation (mlp, lenet).",
        ),
        click.option("--device", type=click.Choice(cfgmod.DEVICES), help="auto picks CUDA when a GPU is visible."),
        click.option("--seed", type=CommaList(click.INT), help="Seed for data, initial weights and shuffling."),
        click.option("--dataset", type=click.Choice(cfgmod.DATASETS), help="Train on another data set."),
        click.option("--data-dir", type=click.Path(file_okay=False), help="Folder holding MNIST-type IDX files."),
        click.option(
            "--data",
            "data_path",
            type=click.Path(dir_okay=False),
            help="Train on your own CSV file: x1,x2,label (classes) or x,y (regression).",
        ),
        click.option(
            "--threads",
            type=int,
            help="torch CPU threads (default 0: the usable CPUs, fewer while other processes keep them busy).",
        ),
        click.option(
            "--precision",
            type=CommaList(click.Choice(cfgmod.PRECISIONS)),
            help="fp32 (default) or bf16: matmuls and convolutions in bfloat16 where the CPU or GPU has it.",
        ),
        click.option(
            "--histories/--no-histories",
            default=None,
            help="Record weight and gradient histograms into RUN_DIR/histories.jsonl (default: on).",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


class StdoutGone(Exception):
    """Standard output's reader left before the command finished (`tuitrain runs --json | head -1`)."""


seeds_option = click.option(
    "--seeds",
    type=click.IntRange(min=1),
    metavar="N",
    help="Train every configuration with seeds 0..N-1 (short for --seed 0,1,...,N-1): a race ranked by seed groups.",
)


def apply_seeds(seeds: int | None, overrides: dict[str, Any]) -> None:
    """--seeds N becomes --seed 0,...,N-1 (one seed: a single run)."""
    if seeds is None:
        return
    if overrides.get("seed") is not None:
        raise click.UsageError("--seeds N is short for --seed 0,...,N-1: give one or the other")
    overrides["seed"] = tuple(range(seeds)) if seeds > 1 else 0


def stdout_reader_gone() -> bool:
    """Whether standard output is a pipe or socket that nobody reads any more (poll says POLLERR/POLLHUP)."""
    import select

    try:
        poller = select.poll()
        poller.register(1, select.POLLOUT)
        return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))
    except (OSError, ValueError, AttributeError):
        return False


class TuitrainGroup(click.Group):
    """The command group; a command whose standard output's reader left early ends quietly (see main)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            if not stdout_reader_gone():  # another pipe broke: not the reader's choice, an error
                raise
            raise StdoutGone() from None


@click.group(cls=TuitrainGroup, invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="tuitrain")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Train small neural networks in the terminal and watch them learn.

    With no command, opens the interactive app: pick a preset network, an optimizer
    and a data set, then train it while live charts, the parameter table and the
    prediction viewer update.

    \b
    Examples:
      tuitrain                       interactive setup screen
      tuitrain list                  the presets
      tuitrain run rings             train headless, progress on the terminal
      tuitrain run mlp --dataset fashion-mnist --epochs 1 --json
      tuitrain run --data examples/moons.csv   your own CSV (x1,x2,label or x,y)
      tuitrain export RUN_DIR --format onnx   for other tools (csv, tensorboard, safetensors, png)
      tuitrain serve                 the app in a web browser
    """
    if ctx.invoked_subcommand is None:
        from tuitrain.tui.launch import open_setup

        open_setup()


@cli.command("list")
def list_presets() -> None:
    """List presets (built-in and user) with a one-line description."""
    presets = cfgmod.preset_paths()
    width = max((len(n) for n in presets), default=0)
    for name, path in presets.items():
        click.echo(f"{name:<{width}}  {cfgmod.preset_description(path)}")
    click.echo(f"\nUser presets go in {cfgmod.user_preset_dir()}/NAME.toml", err=True)


@cli.command()
@click.argument("preset", shell_complete=complete_preset)
@training_options
def show(preset: str, **overrides: Any) -> None:
    """Print PRESET's resolved configuration (with any overrides) as TOML."""
    listed = [k for k, v in overrides.items() if isinstance(v, tuple)]
    if listed:
        raise click.UsageError(f"--{listed[0].replace('_', '-')}: show takes one value (lists are for run and train)")
    click.echo(cfgmod.resolve_config(preset, **overrides).to_toml(), nl=False)


@cli.command()
@click.argument("preset", required=False, shell_complete=complete_preset)
@training_options
@click.option("--json", "json_mode", is_flag=True, help="One JSON object per line on stdout (start, epoch, end).")
@click.option("--out", type=click.Path(file_okay=False), help="Folder for run directories (default ./runs).")
@click.option(
    "--on-diverge",
    type=click.Choice(["stop", "recover"]),
    default="stop",
    show_default=True,
    help="recover: on a NaN/Inf loss, go back to the last good checkpoint at half the learning rate (at most 3 times).",
)
@click.option(
    "--resume",
    type=click.Path(file_okay=False),
    metavar="RUN_DIR",
    shell_complete=complete_run_dir,
    help="Continue a stopped run in its own directory (with --epochs N to train further).",
)
@click.option(
    "--tensorboard",
    is_flag=True,
    help="Also write TensorBoard events live into RUN_DIR/tensorboard (the tensorboard extra).",
)
@click.option(
    "--nproc",
    type=click.IntRange(min=1),
    help="Train with N processes (DistributedDataParallel under torchrun; the batch is split between them).",
)
@branch_options("Start a new run from RUN_DIR's checkpoint, exactly where it was (with --lr, --epochs, --optimizer).")
@click.option(
    "--parallel",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="A race (comma lists): train this many of its runs at once, in child processes sharing the CPUs.",
)
@seeds_option
@click.option("--run-dir", "run_dir", type=click.Path(file_okay=False), hidden=True)  # a race's child: its folder
def run(
    preset: str | None,
    json_mode: bool,
    out: str | None,
    on_diverge: str,
    resume: str | None,
    nproc: int | None,
    tensorboard: bool,
    branch: str | None,
    which: str,
    parallel: int,
    seeds: int | None,
    run_dir: str | None,
    **overrides: Any,
) -> None:
    """Train PRESET headless: a live bar on a terminal, plain lines in a log, or JSON lines.

    PRESET is a preset name (see `tuitrain list`) or a path to a TOML file. Each run writes
    OUT/<YYYYmmdd-HHMMSS>-<preset>/ (config, metrics.jsonl, last/best checkpoints, summary).
    Ctrl-C, SIGTERM or SIGHUP stop at the next step and save; `--resume RUN_DIR` continues.

    \b
    A race: comma lists in --optimizer, --lr, --batch-size, --epochs, --seed
    or --activation train every combination from the same start (same seed:
    same data, same initial weights), each in its own run directory, ranked:
      tuitrain run rings --optimizer sgd,momentum,adam --lr 0.01,0.1
    --seeds N (--seed 0,...,N-1) repeats each with N seeds: the ranking is of
    seed groups (mean, std, min, max), and differences within noise are tied.
    A branch continues a run from its checkpoint in a new run directory:
      tuitrain run --branch runs/RUN --checkpoint best --lr 0.001 --epochs 40

    Exit codes: 0 completed, 1 failure, 2 bad input, 3 diverged, 130/143/129 interrupted
    by SIGINT/SIGTERM/SIGHUP.
    """
    from tuitrain.headless.race import is_race

    apply_seeds(seeds, overrides)
    if run_dir is not None:  # a race's child: it stops when the race's process dies
        from tuitrain.runs.signals import follow_parent

        follow_parent()
    if isinstance(overrides.get("threads"), int) and overrides["threads"] > 0:
        from tuitrain.training.threads import cap_threads

        ranked = os.environ.get("WORLD_SIZE", "1") != "1"  # one of torchrun's processes: the launcher said it
        overrides["threads"] = cap_threads(
            overrides["threads"], None if ranked else lambda message: click.echo(f"Warning: {message}", err=True)
        )
    if is_race(overrides):
        if resume or branch or nproc or tensorboard or on_diverge != "stop" or run_dir:
            raise click.UsageError(
                "a race (comma lists) trains new runs: without --resume, --branch, --nproc, --tensorboard, --on-diverge"
            )
        if preset is None and not overrides.get("data_path"):
            raise click.UsageError("missing PRESET (or --data FILE.csv)")
        from tuitrain.headless.race import run_race

        sys.exit(run_race(preset or "csv", overrides, out, json_mode, parallel))
    if parallel != 1:
        raise click.UsageError("--parallel is for a race: give comma lists, e.g. --optimizer sgd,adam")
    if branch is not None:
        if preset is not None or resume is not None or nproc:
            raise click.UsageError("--branch RUN_DIR starts from that run: without PRESET, --resume or --nproc")
        from tuitrain.headless.commands import branch_command

        sys.exit(branch_command(branch, which, out, json_mode, overrides, tensorboard))
    if nproc is not None and nproc > 1:
        from tuitrain.runs.distributed import check_launch, relaunch

        check_launch(nproc, preset, resume, overrides, out=out, on_diverge=on_diverge, tensorboard=tensorboard)
        sys.exit(relaunch(nproc, without_option(sys.argv[1:], "--nproc")))
    from tuitrain.headless.commands import run_command

    code = run_command(preset, resume, out, json_mode, overrides, on_diverge, tensorboard, run_dir)
    from tuitrain.runs.distributed import this_rank

    if this_rank() is not None:  # one of torchrun's processes: everything is written and closed
        from tuitrain.runs.distributed import leave

        leave(code)
    sys.exit(code)


@cli.command("runs")
@click.option(
    "--out", default="runs", show_default=True, type=click.Path(file_okay=False), help="Folder holding run directories."
)
@click.option("--json", "json_mode", is_flag=True, help="One JSON object per run.")
@click.option("--open", "interactive", is_flag=True, help="Open the runs screen: sort, filter, compare, branch.")
def list_runs(out: str, json_mode: bool, interactive: bool) -> None:
    """List runs: preset, status, epochs, optimizer, learning rate, best/last validation, test, age.

    With --open (on a terminal), the interactive runs screen: space selects runs, c compares
    them (overlaid curves, what differs), b branches one, / filters, s sorts.
    """
    if interactive:
        if json_mode:
            raise click.UsageError("--open and --json do not go together")
        if not sys.stdout.isatty() or not sys.stdin.isatty():
            raise click.UsageError("--open needs a terminal (without it, the table is printed)")
        from tuitrain.tui.launch import open_runs

        open_runs(out)
        return
    from tuitrain.headless.commands import runs_command

    sys.exit(runs_command(out, json_mode))


@cli.command("run-planned", hidden=True)
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(file_okay=False))
def run_planned(run_dirs: tuple[str, ...]) -> None:
    """Train a race planned by `tuitrain train` with comma lists (the app follows it)."""
    from tuitrain.headless.race import Race, planned

    sys.exit(Race(planned(list(run_dirs)), json_mode=False).run())


@cli.command("compare")
@click.argument(
    "run_dirs",
    nargs=-1,
    required=True,
    metavar="RUN_DIR...",
    type=click.Path(file_okay=False),
    shell_complete=complete_run_dir,
)
@click.option("--json", "json_mode", is_flag=True, help="One JSON object: the runs best first and what differs.")
def compare_runs(run_dirs: tuple[str, ...], json_mode: bool) -> None:
    """Rank runs (test metrics, else best validation) and show the settings that differ between them.

    \b
    Examples:
      tuitrain compare runs/*
      tuitrain compare runs/20261201-101500-rings-sgd runs/20261201-101502-rings-adam --json
    """
    from tuitrain.headless.commands import compare_command

    sys.exit(compare_command(list(run_dirs), json_mode))


@cli.command("eval")
@click.argument("run_dir", type=click.Path(file_okay=False), shell_complete=complete_run_dir)
@click.option("--checkpoint", "which", type=click.Choice(["best", "last"]), default="best", show_default=True)
@click.option("--json", "json_mode", is_flag=True, help="One JSON object on stdout.")
def eval_run(run_dir: str, which: str, json_mode: bool) -> None:
    """Report a run's test (and validation) metrics from its best or last checkpoint."""
    from tuitrain.headless.commands import eval_command

    sys.exit(eval_command(run_dir, which, json_mode))


@cli.command("lr-find")
@click.argument("preset", required=False, shell_complete=complete_preset)
@training_options
@click.option("--json", "json_mode", is_flag=True, help="One JSON object per line; the last is the lr_find result.")
@click.option("--out", type=click.Path(file_okay=False), help="Folder for the test's directory (default ./runs).")
@branch_options(
    "Test from RUN_DIR's checkpoint (weights and optimizer state) instead of fresh weights; RUN_DIR is only read."
)
@click.option(
    "--steps", "ramp_steps", type=click.IntRange(10, 10_000), default=100, show_default=True, help="Steps of the ramp."
)
@click.option("--start-lr", type=float, default=1e-7, show_default=True, help="The ramp's first learning rate.")
@click.option("--end-lr", type=float, default=10.0, show_default=True, help="The ramp's last learning rate.")
def lr_find(
    preset: str | None,
    json_mode: bool,
    out: str | None,
    branch: str | None,
    which: str,
    ramp_steps: int,
    start_lr: float,
    end_lr: float,
    **overrides: Any,
) -> None:
    """Find a learning rate: the LR range test (Smith 2017; fastai's lr_find) on PRESET or a run's checkpoint.

    Trains --steps steps while the learning rate grows exponentially from --start-lr to --end-lr
    (stopping once the smoothed loss passes 4x its best), prints the loss-vs-lr curve and suggests
    the rate where the smoothed loss falls fastest, cross-checked with the minimum-loss rate / 10.
    The test gets its own folder, OUT/<YYYYmmdd-HHMMSS>-<preset>-lr-find/ (lr_find.json, lr_find.csv).

    \b
    Examples:
      tuitrain lr-find rings
      tuitrain lr-find mlp --dataset fashion-mnist --json
      tuitrain lr-find --branch runs/20261201-101500-rings --checkpoint best
    """
    from tuitrain.headless.lr_find import lr_find_command
    from tuitrain.training.lr_find import RangeSettings

    if isinstance(overrides.get("threads"), int) and overrides["threads"] > 0:
        from tuitrain.training.threads import cap_threads

        overrides["threads"] = cap_threads(overrides["threads"], lambda m: click.echo(f"Warning: {m}", err=True))
    settings = RangeSettings(start_lr=start_lr, end_lr=end_lr, steps=ramp_steps)
    sys.exit(lr_find_command(preset, branch, which, out, json_mode, overrides, settings))


@cli.command()
@click.argument("preset", required=False, shell_complete=complete_preset)
@training_options
@click.option("--tensorboard", is_flag=True, help="Also write TensorBoard events live into RUN_DIR/tensorboard.")
@click.option(
    "--out", default="runs", show_default=True, type=click.Path(file_okay=False), help="Folder for the run directory."
)
@seeds_option
def train(preset: str | None, out: str, tensorboard: bool, seeds: int | None, **overrides: Any) -> None:
    """Train PRESET in the live dashboard (charts, parameters, predictions; ? lists the keys).

    Takes the same overrides as `run`; bad input fails here with exit code 2. The run is saved
    to OUT/<YYYYmmdd-HHMMSS>-<preset>/ like a headless one (`s` or `q` save a checkpoint).

    Comma lists (`--optimizer sgd,adam --lr 0.01,0.1`) race every combination: they train one
    after another in the background while the comparison screen follows all of them live;
    --seeds N repeats each with seeds 0..N-1, drawn as one band per seed group.
    """
    apply_seeds(seeds, overrides)
    config = check_train(preset, tensorboard, overrides)
    if config is None:  # comma lists: train them all headless, follow them in the comparison screen
        from tuitrain.tui.launch import open_race

        open_race(preset or "csv", overrides, out)
        return
    from tuitrain.tui.launch import open_train

    open_train(config, out, tensorboard)


def check_train(preset: str | None, tensorboard: bool, overrides: dict[str, Any]) -> cfgmod.Config | None:
    """Everything `train` checks before the app opens (and `serve -- train` before serving): the
    run's configuration, or None for a race (each of its runs checked)."""
    if preset is None and not overrides.get("data_path"):
        raise click.UsageError("missing PRESET (or --data FILE.csv)")
    from tuitrain.headless.race import combinations, is_race
    from tuitrain.tui.launch import check_startable

    race = is_race(overrides)
    if race and tensorboard:
        raise click.UsageError("--tensorboard trains one run; a race (comma lists) goes without it")
    configs = [cfgmod.resolve_config(preset or "csv", **combo) for combo in combinations(overrides)]
    if tensorboard:
        from tuitrain.exports.formats import require_extra

        require_extra("tensorboard")
    for config in configs:
        check_startable(config)
    return None if race else configs[0]


@cli.command()
@click.argument(
    "run_dirs",
    nargs=-1,
    required=True,
    metavar="RUN_DIR...",
    type=click.Path(file_okay=False),
    shell_complete=complete_run_dir,
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "tensorboard", "safetensors", "onnx", "png"]),
    required=True,
    help="csv: metrics per epoch (--steps: per recorded step; --confusion: the confusion matrix); "
    "tensorboard: event files (scalars, weight and gradient histograms, HParams); "
    "safetensors: the weights; onnx: the network; png: pictures of what each unit learned and the "
    "decision regions, with an index.html (a folder).",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(allow_dash=True),
    help="File (folder for tensorboard), - for standard output; default inside the run (several runs: "
    "./epochs.csv, ./tensorboard). A symlink is written at its target, a device or FIFO written through.",
)
@click.option(
    "--checkpoint",
    "which",
    type=click.Choice(["best", "last"]),
    help="The checkpoint for safetensors, onnx and --confusion [default: best; --confusion: last, the "
    "network the run's test metrics are of].",
)
@click.option("--steps", is_flag=True, help="csv: one row per recorded step instead of per epoch.")
@click.option(
    "--groups",
    is_flag=True,
    help="csv: the runs as seed groups (runs differing only by seed): one row per group and epoch, "
    "with n and each metric's mean, std, min and max.",
)
@click.option(
    "--confusion",
    is_flag=True,
    help="csv: one classification run's confusion matrix over the test split: a row per true class, a "
    "column per predicted class, then per_class_accuracy.",
)
@click.option(
    "--sample",
    type=click.IntRange(min=0),
    metavar="N",
    help="png, image runs: the test sample (index into the test split) stepped through the network [default: 0].",
)
def export(
    run_dirs: tuple[str, ...],
    fmt: str,
    output: str | None,
    which: str | None,
    steps: bool,
    groups: bool,
    confusion: bool,
    sample: int | None,
) -> None:
    """Export runs for other tools: metrics as CSV or TensorBoard events, weights as safetensors, the network as ONNX.

    TensorBoard gets the scalars, the recorded weight and gradient histories as histograms
    (weights/<tensor>, gradients/<tensor>) and an HParams entry: several runs (a race) become one
    TensorBoard run each, in folders named as theirs, showing the settings that differ between them
    and their test and best validation metrics; one run shows its main settings.

    \b
    Examples:
      tuitrain export runs/20261123-153135-rings --format csv
      tuitrain export runs/* --format csv -o all.csv          one file, a `run` column
      tuitrain export runs/* --format csv --groups -o g.csv   seed groups: mean, std, min, max per epoch
      tuitrain export RUN_DIR --format csv --confusion -o -   the test confusion matrix, class names as headers
      tuitrain export RUN_DIR --format tensorboard && tensorboard --logdir RUN_DIR/tensorboard
      tuitrain export runs/*-rings-* --format tensorboard -o tb && tensorboard --logdir tb   a race in HParams
      tuitrain export RUN_DIR --format onnx --checkpoint last -o net.onnx
      tuitrain export RUN_DIR --format png -o slides/   unit maps, curves, feature maps + index.html

    tensorboard, safetensors and onnx need extras: pip install 'tuitrain[tensorboard,safetensors,onnx]'.
    """
    from tuitrain.exports.formats import export as run_export

    note = functools.partial(click.echo, err=True)
    seed_groups = None
    hparams = None
    if groups:
        from tuitrain.runs import compare

        found = compare.grouped(compare.load_run_records(run_dirs))
        seed_groups = [
            (label, [r.run_dir for r in g]) for label, g in zip(compare.group_labels(found), found, strict=True)
        ]
    elif fmt == "tensorboard":
        from tuitrain.runs import compare

        hparams = compare.tensorboard_hparams(run_dirs)
    for line in run_export(
        list(run_dirs),
        fmt,
        output,
        which,
        steps,
        note=note,
        groups=seed_groups,
        confusion=confusion,
        hparams=hparams,
        sample=sample,
    ):
        if output != "-":  # standard output carries the export itself
            click.echo(line)


@cli.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (others: see the warning).")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535), help="Port to listen on.")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def serve(ctx: click.Context, host: str, port: int, args: tuple[str, ...]) -> None:
    """Serve the app to a web browser (textual-serve): open http://HOST:PORT.

    \b
    Examples:
      tuitrain serve                                   the setup screen
      tuitrain serve -- train rings --epochs 500       straight to a training dashboard
      tuitrain serve --port 8080 -- watch runs/20261123-153135-rings
      ssh -L 8000:localhost:8000 server                then open http://localhost:8000 here

    Each browser tab gets its own app (and its own run). Needs the serve extra:
    pip install 'tuitrain[serve]'.
    """
    from tuitrain.serve import serve as serve_app

    def check(app_args: list[str]) -> None:
        check_app_args(ctx, app_args)

    serve_app(host, port, list(args), warn=lambda message: click.echo(f"Warning: {message}", err=True), check=check)


def check_app_args(ctx: click.Context, args: list[str]) -> None:
    """`serve -- train …` or `serve -- watch RUN_DIR`: that command's options parsed and its settings
    checked as it would check them, without opening the app."""
    command = cli.get_command(ctx, args[0]) if args else None
    if command is None:
        return
    with command.make_context(args[0], args[1:], parent=ctx.find_root()) as sub:
        params = dict(sub.params)
    if command is train:
        preset, tensorboard = params.pop("preset"), params.pop("tensorboard")
        params.pop("out")
        apply_seeds(params.pop("seeds"), params)
        check_train(preset, tensorboard, params)
    elif command is watch:
        from tuitrain.store.run_dir import check_run_dir

        check_run_dir(params["run_dir"])


@cli.command()
@click.argument("run_dir", type=click.Path(file_okay=False), shell_complete=complete_run_dir)
def watch(run_dir: str) -> None:
    """Follow RUN_DIR (made by `run`) in the dashboard: live charts, parameters from its last checkpoint."""
    from tuitrain.store.run_dir import check_run_dir
    from tuitrain.tui.launch import open_watch

    open_watch(str(check_run_dir(run_dir)))


@cli.command("health")
@click.argument("run_dir", type=click.Path(file_okay=False), shell_complete=complete_run_dir)
@click.option("--step", type=click.IntRange(min=0), help="The board at this step (the newest record at or before it).")
@click.option("--json", "json_mode", is_flag=True, help="One JSON object: the layers worst first.")
def health(run_dir: str, step: int | None, json_mode: bool) -> None:
    """Layer health board of RUN_DIR: per layer, gradients, update/weight ratio, dead or saturated units, verdict.

    \b
    Examples:
      tuitrain health runs/20261201-101500-rings
      tuitrain health runs/20261201-101500-rings --step 500 --json
    """
    from tuitrain.headless.health import health_command

    sys.exit(health_command(run_dir, step, json_mode))


def without_option(argv: list[str], name: str) -> list[str]:
    """`argv` less `name VALUE` / `name=VALUE`."""
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == name:
            skip = True
        elif not arg.startswith(name + "="):
            kept.append(arg)
    return kept


def guard_standard_streams() -> None:
    """Started with stdin, stdout or stderr closed (`>&-`): /dev/null takes the descriptor, so no file
    opened later becomes descriptor 1 (or 0, 2) by chance; a warning when it is stdout."""
    import os

    closed = []
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            closed.append(fd)
    for fd in closed:  # lowest first: open() returns the lowest free descriptor, this one
        null = os.open(os.devnull, os.O_RDWR)
        if null != fd:
            os.dup2(null, fd)
            os.close(null)
    for fd, name, mode in ((0, "stdin", "r"), (1, "stdout", "w"), (2, "stderr", "w")):
        if fd in closed and getattr(sys, name) is None:
            setattr(sys, name, open(fd, mode, closefd=False, encoding="utf-8", errors="backslashreplace"))
    if 1 in closed and 2 not in closed:
        click.echo("Warning: standard output is closed: what tuitrain prints there is discarded", err=True)


def silence_stdout() -> None:
    """Standard output's reader left: what is still buffered goes to /dev/null, not into an error at exit."""
    import os

    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1)
        os.close(null)
    except OSError:
        pass


def main() -> None:
    """Console entry point: one-line errors and meaningful exit codes, never a traceback for bad input."""
    guard_standard_streams()
    try:
        cli.main(standalone_mode=False, prog_name="tuitrain")
    except StdoutGone:  # `| head -1` read what it wanted: not an error
        silence_stdout()
        sys.exit(0)
    except click.exceptions.NoArgsIsHelpError as exc:
        click.echo(exc.ctx.get_help() if exc.ctx else str(exc))
        sys.exit(2)
    except click.UsageError as exc:
        hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx else ""
        click.echo(f"Error: {exc.format_message()}{hint}", err=True)
        sys.exit(2)
    except click.ClickException as exc:
        click.echo(f"Error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        sys.exit(130)
    except TuitrainError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
