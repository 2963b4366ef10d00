"""Provides training on several processes with DistributedDataParallel (gloo on CPU, NCCL on CUDA).

Started by `torchrun --nproc-per-node N -m tuitrain run …` (or `tuitrain run … --nproc N`, which
runs exactly that). Every rank loads the same data and builds the same network from the same seed;
each step's global batch (the shuffle every rank draws alike) is split between the ranks, DDP
averages their gradients, so the run follows the one-process run at the same global batch. Rank 0
alone writes the run directory and prints; the ranks exchange their metrics (and any stop request)
every REPORT_EVERY steps and at the end of each epoch.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Any

import torch

from tuitrain.errors import UsageError
from tuitrain.training.engine import Trainer

REPORT_EVERY = 16  # steps between the ranks' exchanges of metrics and stop requests


@dataclass(frozen=True)
class Rank:
    rank: int
    world_size: int
    local_rank: int


def this_rank() -> Rank | None:
    """This process's place in a torchrun job (None when it trains alone)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return None
    return Rank(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", os.environ["RANK"])))


def init(rank: Rank, device: str) -> None:
    """Join the process group: NCCL when training on CUDA, gloo otherwise."""
    import torch.distributed as dist

    cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if cuda:
        torch.cuda.set_device(rank.local_rank)  # each rank its own GPU; `auto` then resolves to it
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")


def attach(trainer: Trainer, rank: Rank) -> None:
    """Make `trainer` one rank of the job: its share of each batch, DDP gradients, shared metrics."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    batch = trainer.config.train.batch_size
    if batch < rank.world_size:
        raise UsageError(f"--batch-size {batch} is smaller than --nproc {rank.world_size}: each process needs a sample")
    trainer.world_size = rank.world_size
    trainer.report_every = REPORT_EVERY
    trainer.recorder.enabled &= rank.rank == 0  # rank 0 alone keeps the run directory (DDP averages the gradients)
    cuda = trainer.device.type == "cuda"
    trainer.train_model = DistributedDataParallel(trainer.model, device_ids=[rank.local_rank] if cuda else None)

    def shard(idx: torch.Tensor, step: int) -> torch.Tensor:
        return idx[rank.rank :: rank.world_size]  # contiguous-free split: sizes differ by at most one

    def reduce_epoch(sums: torch.Tensor) -> torch.Tensor:
        dist.all_reduce(sums)
        return sums

    def exchange_window(loss: torch.Tensor, correct: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        wanted = 1.0 if trainer.stop_wanted else 0.0
        sums = torch.stack([loss, correct, loss.new_tensor(float(n)), loss.new_tensor(wanted)])
        dist.all_reduce(sums)
        if sums[3].item() > 0:  # some rank was asked to stop: all stop before the next step
            trainer.stop_now(trainer.stop_wanted or "interrupted")
        return sums[0], sums[1], int(sums[2].item())

    trainer.shard = shard
    trainer.reduce_epoch = reduce_epoch
    trainer.exchange_window = exchange_window


def finish() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        try:
            dist.barrier()  # leave together: a rank tearing down its group early aborts (gloo)
        except RuntimeError:  # another rank has gone (a failure, a second Ctrl-C)
            pass
        dist.destroy_process_group()


def leave(code: int) -> None:
    """End a rank once its files are written: flush, then exit without running C++ teardown, where a
    gloo rank was seen to abort now and then ("terminate called without an active exception")."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def check_launch(
    nproc: int,
    preset: str | None,
    resume: str | None,
    overrides: dict[str, Any],
    *,
    out: str | None = None,
    on_diverge: str = "stop",
    tensorboard: bool = False,
) -> None:
    """Refuse, in one line and before torchrun starts, what each of its N processes would refuse
    (each with its own error, then torchrun's report of the failed job: some 40 lines).

    `nproc`: at least 1, and at most the usable CPUs when training on the CPU, the GPUs on CUDA
    (a process per GPU; more processes than cores only wait for each other).
    """
    from tuitrain.config import apply_overrides, resolve_config
    from tuitrain.store.run_dir import CHECKPOINTS, check_run_dir, load_run_config
    from tuitrain.training.step import resolve_device
    from tuitrain.training.threads import usable_cpus

    if nproc < 1:
        raise UsageError(f"--nproc must be at least 1, not {nproc}")
    if on_diverge == "recover":
        raise UsageError("--on-diverge recover trains one process; with several, resume with a lower --lr")
    if resume is not None:
        from tuitrain.runs import start as session
        from tuitrain.store import checkpoints

        session.check_resume_options(preset, overrides, out)

        changes = {k: overrides.get(k) for k in session.RESUME_OPTIONS}
        config = apply_overrides(load_run_config(resume), **changes)
        session.check_resume(resume, overrides.get("epochs"))
        trained_by = checkpoints.load(check_run_dir(resume) / CHECKPOINTS["last"]).get("world_size", 1)
        if trained_by != nproc:
            raise UsageError(
                f"this run was trained by {trained_by} process(es); resume it with the same number "
                f"({'--nproc ' + str(trained_by) if trained_by > 1 else 'no --nproc'}), not {nproc}"
            )
    else:
        if preset is None and not overrides.get("data_path"):
            raise UsageError("missing PRESET (or --resume RUN_DIR, or --data FILE.csv)")
        config = resolve_config(preset or "csv", **overrides)
    if tensorboard:
        from tuitrain.exports.formats import require_extra

        require_extra("tensorboard")
    device = resolve_device(config.train.device)  # --device cuda without CUDA: refused here
    if device.type == "cuda":
        limit, what = torch.cuda.device_count(), "GPU(s)"
    else:
        limit, what = usable_cpus(), "usable CPU(s)"
    if nproc > limit:
        raise UsageError(f"--nproc {nproc} is more than the {limit} {what} here: at most --nproc {limit}")
    batch = config.train.batch_size
    if batch < nproc:
        raise UsageError(f"--batch-size {batch} is smaller than --nproc {nproc}: each process needs a sample")


def relaunch(nproc: int, argv: list[str]) -> int:
    """`tuitrain run … --nproc N`: the same command under torchrun with N processes; its exit code.

    Check the run first (check_launch): torchrun's processes would each report a bad one.
    """
    import subprocess

    if nproc < 1:
        raise UsageError(f"--nproc must be at least 1, not {nproc}")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"]
    return subprocess.call([*command, "-m", "tuitrain", *argv])
