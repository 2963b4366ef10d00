"""Provides ProcessVitals: this process's resident memory, CPU use and GPU memory, sampled cheaply."""

from __future__ import annotations

import os
import resource
import sys
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Vitals:
    """How the process that trains a run is doing, as the app shows it."""

    rss_bytes: int  # resident memory of the training process
    cpu_percent: float  # its CPU use since the previous sample (100 = one core busy)
    cuda_bytes: int | None = None  # GPU memory held by torch, when it uses CUDA
    silent_seconds: float = 0.0  # since the training process last answered


def resident_bytes() -> int:
    """Current resident set size (peak size where /proc is missing)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


def cuda_bytes() -> int | None:
    """Device memory held by torch's allocator, when this process has used CUDA."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_initialized():
        return None
    return int(torch.cuda.memory_reserved())


def cpu_seconds_of(pid: int) -> float | None:
    """CPU time another process has used so far (None where /proc cannot say)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()  # the name in parentheses may hold spaces
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime
    except (OSError, ValueError, IndexError):
        return None


class ProcessVitals:
    """`sample()` → this process's Vitals, CPU % measured since the previous sample."""

    def __init__(self) -> None:
        self._cpu = self._cpu_seconds()
        self._wall = time.monotonic()

    @staticmethod
    def _cpu_seconds() -> float:
        t = os.times()
        return t.user + t.system

    def sample(self) -> Vitals:
        cpu, wall = self._cpu_seconds(), time.monotonic()
        percent = 100.0 * (cpu - self._cpu) / max(wall - self._wall, 1e-6)
        self._cpu, self._wall = cpu, wall
        return Vitals(resident_bytes(), percent, cuda_bytes())
