"""Tests for the thread policy: CPUs from affinity and cgroup quota, and the governor."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import run_cli

from tuitrain.training.threads import ThreadGovernor, cgroup_cpu_limit, usable_cpus


def test_cgroup_v2_quota(tmp_path: Path) -> None:
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert cgroup_cpu_limit(tmp_path) == 1.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cgroup_cpu_limit(tmp_path) is None


def test_cgroup_v1_quota_and_none(tmp_path: Path) -> None:
    assert cgroup_cpu_limit(tmp_path) is None  # no files: no limit
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("50000\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_cpu_limit(tmp_path) == 0.5
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert cgroup_cpu_limit(tmp_path) is None


def test_usable_cpus_capped_by_quota_rounded_up(tmp_path: Path) -> None:
    affinity = len(os.sched_getaffinity(0))
    assert usable_cpus(tmp_path) == affinity
    (tmp_path / "cpu.max").write_text("50000 100000\n")  # half a CPU still gets one thread
    assert usable_cpus(tmp_path) == 1


class FakeMachine:
    """A clock, the machine's busy CPU-seconds and this process's own, advanced by hand."""

    def __init__(self) -> None:
        self.now, self.busy, self.own = 0.0, 0.0, 0.0
        self.set_calls: list[int] = []

    def run(self, seconds: float, own_cores: float, other_cores: float) -> None:
        self.now += seconds
        self.own += own_cores * seconds
        self.busy += (own_cores + other_cores) * seconds

    def governor(self, requested: int = 0, cpus: int = 4) -> ThreadGovernor:
        return ThreadGovernor(
            requested,
            cpus,
            set_threads=self.set_calls.append,
            busy_seconds=lambda: self.busy,
            own_seconds=lambda: self.own,
            clock=lambda: self.now,
        )


def test_governor_trains_on_the_cores_others_leave(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("torch.get_num_threads", lambda: 4)
    machine = FakeMachine()
    gov = machine.governor(cpus=4)
    machine.run(0.5, own_cores=1, other_cores=0)  # loading data on a quiet machine
    assert gov.apply() == 4
    machine.run(1.0, own_cores=4, other_cores=1)  # one busy process appears: its own spinning never counts
    gov.tick()
    assert gov.threads == 3 and gov.others == pytest.approx(1.0)
    machine.run(1.0, own_cores=3, other_cores=2.9)
    gov.tick()
    assert gov.threads == 1
    machine.run(0.1, own_cores=1, other_cores=0)  # too soon to look again
    gov.tick()
    assert gov.threads == 1
    machine.run(1.0, own_cores=1, other_cores=0.2)  # the others left; light background load is ignored
    gov.tick()
    assert gov.threads == 4
    assert machine.set_calls == [4, 3, 1, 4]


def test_governor_starts_low_when_the_machine_was_busy_while_loading(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("torch.get_num_threads", lambda: 2)
    machine = FakeMachine()
    gov = machine.governor(cpus=2)
    machine.run(0.3, own_cores=0.5, other_cores=1.0)
    assert gov.apply() == 1


def test_requested_threads_are_fixed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("torch.get_num_threads", lambda: 2)
    machine = FakeMachine()
    gov = machine.governor(requested=3, cpus=2)
    assert gov.apply() == 3
    machine.run(1.0, own_cores=2, other_cores=2)
    gov.tick()
    assert machine.set_calls == [3]


def test_threads_option_reaches_the_start_event_and_is_checked(tmp_path: Path) -> None:
    import torch

    tool = ["run", "rings", "--epochs", "1", "--out", str(tmp_path), "--json"]
    threads = torch.get_num_threads()
    try:
        done = run_cli(*tool, "--threads", "1")
    finally:
        torch.set_num_threads(threads)  # in this process: the tests after it keep their threads
    assert done.returncode == 0, done.stderr
    start = json.loads(done.stdout.splitlines()[0])
    assert start["threads"] == 1 and start["config"]["train"]["threads"] == 1
    bad = run_cli(*tool, "--threads", "-2")
    assert bad.returncode == 2
    assert bad.stderr.strip() == "Error: --threads: -2 is out of range (must be >= 0)"
