"""Provides the thread policy: how many torch threads a training uses, and giving CPUs back when others need them.

Measured on a 2-core VM (`bench/contention.py`, README "Shared machines"): with torch's defaults
a second training on the same machine drops both to 5-12% of their quiet speed, because OpenMP's
idle threads spin for a core the other process needs. Shorter spinning (`GOMP_SPINCOUNT=1000`)
cost 15-25% of the quiet speed and passive waiting more than half on small batches; training on
the cores the rest of the machine leaves free costs nothing quiet and keeps 0.6-0.75 of it loaded
(one thread never spins).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from pathlib import Path

CHECK_SECONDS = 0.5  # how often the governor looks at the machine's load
BUSY_CORES = 0.6  # others using this much of a core count as one core taken


def cgroup_cpu_limit(root: str | os.PathLike[str] = "/sys/fs/cgroup") -> float | None:
    """CPUs allowed by this process's cgroup quota (v2 `cpu.max`, else v1 cfs), or None when unlimited."""
    base = Path(root)
    try:
        quota, period = (base / "cpu.max").read_text().split()[:2]
        if quota == "max":
            return None
        return int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota_us = int((base / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((base / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota_us / period_us if quota_us > 0 and period_us > 0 else None


def usable_cpus(root: str | os.PathLike[str] = "/sys/fs/cgroup") -> int:
    """CPUs this process may run on: its affinity, capped by the cgroup quota (rounded up)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    limit = cgroup_cpu_limit(root)
    if limit is not None:
        cpus = min(cpus, max(1, math.ceil(limit)))
    return max(1, cpus)


def cap_threads(requested: int, warn: Callable[[str], None] | None = None) -> int:
    """`--threads N` at most the usable CPUs: more threads than cores only wait for each other
    (and spin, slowing everything else on the machine). Says so through `warn` when it caps."""
    cpus = usable_cpus()
    if requested <= cpus:
        return requested
    if warn is not None:
        warn(f"--threads {requested} is more than the {cpus} usable CPU(s) here: using {cpus}")
    return cpus


def read_busy_seconds(path: str = "/proc/stat") -> float | None:
    """CPU-seconds the whole machine has spent busy since boot (None where /proc is missing)."""
    try:
        with open(path) as f:
            fields = f.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    ticks = [int(v) for v in fields[1:]]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
    busy = sum(ticks[:8]) - idle  # guest time is already inside user/nice
    return busy / os.sysconf("SC_CLK_TCK")


class ThreadGovernor:
    """Sets torch's thread count: `requested` when given, else the usable CPUs others leave free.

    `tick()` is cheap (a clock read) and is called by the training loop at its progress interval;
    once a second it compares the machine's busy time with this process's own CPU time, so its
    own (spinning) threads never count as load.
    """

    def __init__(
        self,
        requested: int = 0,
        cpus: int | None = None,
        *,
        set_threads: Callable[[int], None] | None = None,
        busy_seconds: Callable[[], float | None] = read_busy_seconds,
        own_seconds: Callable[[], float] = time.process_time,
        clock: Callable[[], float] = time.monotonic,
    ):
        import torch

        self.requested = requested
        self.ceiling = requested or min(torch.get_num_threads(), cpus or usable_cpus())
        self.threads = self.ceiling
        self._set = set_threads or torch.set_num_threads
        self._busy, self._own, self._clock = busy_seconds, own_seconds, clock
        self.others = 0.0  # cores the rest of the machine used over the last check
        # Made before the data loads: by the first step, the load while it loaded is known.
        self._last: tuple[float, float, float] | None = self._sample()

    def apply(self) -> int:
        """Set the starting thread count (at the start of a run) from the load so far; returns it."""
        self._check(min_seconds=0.05)
        self._set(self.threads)
        return self.threads

    def _sample(self) -> tuple[float, float, float] | None:
        busy = self._busy()
        return None if busy is None else (self._clock(), busy, self._own())

    def tick(self) -> None:
        """Adjust the thread count to the load, at most once per CHECK_SECONDS."""
        self._check(CHECK_SECONDS)

    def _check(self, min_seconds: float) -> bool:
        """Look at the load since the last look; True when the thread count was set."""
        if self.requested or self.ceiling <= 1 or self._last is None:
            return False
        if self._clock() - self._last[0] < min_seconds:
            return False
        now = self._sample()
        if now is None:
            return False
        elapsed = now[0] - self._last[0]
        self.others = max(0.0, ((now[1] - self._last[1]) - (now[2] - self._last[2])) / elapsed)
        self._last = now
        taken = math.floor(self.others + (1 - BUSY_CORES))
        wanted = max(1, min(self.ceiling, self.ceiling - taken))
        if wanted != self.threads:
            self.threads = wanted
            self._set(wanted)
        return True
