"""Provides the pace of chart redraws: as often as the app's own measured CPU use allows while a run trains.

On a machine whose cores all train (2 cores, 2 torch threads), every millisecond the app draws is
one a training thread waits for at its next barrier, so the dashboard cost up to 20% of the
training speed (`bench/bench.py`, d/c). The pacer measures what the app really spends (all its
threads: drawing, the compositor, reading events) and spaces the charts to keep that under a
budget; with a core to spare, drawing costs the training nothing and the charts keep their pace.
"""

from __future__ import annotations

import time
from collections.abc import Callable

FASTEST = 0.3  # seconds between chart redraws at least
SLOWEST = 2.0  # ... and at most, however costly they are
APP_BUDGET = 0.03  # share of one core the app may use while a run trains on every core (d/c ~ 1 - this)
SPARE_BUDGET = 0.5  # ... and when the training leaves a core free
ASSUMED_DRAW_COST = 0.02  # CPU seconds a redraw costs until one is measured (both charts, 2-core VM)
STATUS_INTERVAL = 0.5  # seconds between status line updates while a run trains on every core
FLUSH_INTERVAL = 0.2  # seconds between folding buffered events into the view (STATUS_INTERVAL on every core)
FIRST_POINTS = 3  # a run's first progress points are drawn as they arrive: its first line shows at once


class RedrawPacer:
    """`due(now)` says when to redraw, `drawn(now)` notes it; `account(now, training)`, called at every
    flush, learns what a redraw costs and what the app spends without one, and sets the interval
    so that the two together stay within the budget."""

    def __init__(
        self, cpu: Callable[[], float] = time.process_time, budget: float = APP_BUDGET, fastest: float = FASTEST
    ):
        self._cpu = cpu
        self.budget = budget
        self.fastest = fastest
        self.interval = fastest
        self.draw_cost = 0.0  # CPU seconds a redraw costs (the flush period it falls in, less the quiet share)
        self.quiet_share = 0.0  # the app's CPU share in flush periods without a redraw
        self._last_draw = self._last_status = float("-inf")
        self._mark: tuple[float, float] | None = None
        self._drew = False

    def set_cores(self, training_threads: int, usable_cpus: int) -> None:
        """The run's torch threads against the CPUs the app may use: is there a core to spare?"""
        self.budget = SPARE_BUDGET if usable_cpus > training_threads else APP_BUDGET

    @property
    def flush_interval(self) -> float:
        """Seconds between the dashboard's flushes: each one wakes the app, and on a machine whose cores
        all train, a wake-up is time a training thread waits for."""
        return FLUSH_INTERVAL if self.budget > APP_BUDGET else STATUS_INTERVAL

    def status_due(self, now: float) -> bool:
        """Whether the status line's numbers may change now (every flush, unless every core trains)."""
        if self.budget > APP_BUDGET or now - self._last_status >= 0.9 * STATUS_INTERVAL:  # timers run a bit early
            self._last_status = now
            return True
        return False

    def due(self, now: float) -> bool:
        return now - self._last_draw >= self.interval

    def drawn(self, now: float) -> None:
        self._last_draw = now
        self._drew = True

    def account(self, now: float, training: bool) -> None:
        cpu = self._cpu()
        mark, self._mark = self._mark, (now, cpu)
        drew, self._drew = self._drew, False
        if not training:  # paused or ended: nothing to slow down, draw at once when asked
            self.interval = self.fastest
            return
        if mark is None or now <= mark[0]:
            return
        elapsed, used = now - mark[0], max(0.0, cpu - mark[1])
        if drew:
            cost = max(0.0, used - self.quiet_share * elapsed)
            self.draw_cost = cost if not self.draw_cost else 0.5 * (self.draw_cost + cost)
        else:
            share = used / elapsed
            self.quiet_share = share if not self.quiet_share else 0.8 * self.quiet_share + 0.2 * share
        room = max(self.budget - self.quiet_share, self.budget / 4)  # the app's other work comes first
        cost = self.draw_cost or ASSUMED_DRAW_COST
        self.interval = min(SLOWEST, max(self.fastest, cost / room))
