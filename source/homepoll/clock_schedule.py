"""The schedule's view of the wall clock: notice its steps, let APScheduler absorb them."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from apscheduler.schedulers.asyncio import AsyncIOScheduler

log = logging.getLogger("homepoll.daemon")

CLOCK_JUMP_THRESHOLD = 2.0
"""Seconds the wall clock may move against the monotonic clock between two scheduler wake-ups
before it counts as a step (NTP slewing moves it by at most 0.5 ms per second)."""


def schedule_jitter(interval: float) -> float:
    """A little random delay per run so many homepolls never hit one bridge in lockstep."""
    return 0.0 if interval < 10 else min(interval * 0.02, 5.0)


class ClockWatch:
    """Notices steps of the wall clock (NTP sync after boot on a Pi, a date set by hand).

    APScheduler 3 keeps its schedule in wall-clock time while it sleeps on the event loop's
    monotonic timer, so after a step back every job looks hours away (polling would stall
    until the clock caught up) and after a step forward every job looks overdue. Comparing
    ``wall - monotonic`` between wake-ups measures the step so the daemon can move the schedule
    with it.
    """

    def __init__(
        self,
        *,
        wall: Callable[[], float] = time.time,
        mono: Callable[[], float] = time.monotonic,
        threshold: float = CLOCK_JUMP_THRESHOLD,
    ) -> None:
        self._wall = wall
        self._mono = mono
        self._threshold = threshold
        self._offset = wall() - mono()

    def check(self) -> float:
        """Seconds the wall clock stepped since the last check (0.0 for none or mere drift)."""
        offset = self._wall() - self._mono()
        step = offset - self._offset
        self._offset = offset  # drift below the threshold never adds up to a false step
        return step if abs(step) >= self._threshold else 0.0


class ClockAwareScheduler(AsyncIOScheduler):
    """AsyncIOScheduler that lets the daemon absorb a wall-clock step before each decision."""

    def __init__(self, *, before_processing: Callable[[], None], **options) -> None:
        self._before_processing = before_processing
        super().__init__(**options)

    def _process_jobs(self):  # APScheduler 3.x: the one place that compares jobs with "now"
        try:
            self._before_processing()
        except Exception:  # never let the check stop the scheduler
            log.exception("checking the wall clock failed")
        return super()._process_jobs()
