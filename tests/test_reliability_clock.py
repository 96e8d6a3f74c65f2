"""Wall-clock jumps: the daemon's wall clock steps back and forward by hours while it runs.

A Pi has no real-time clock: it boots with the time it had at shutdown and steps when NTP
syncs, and an admin may set the date by hand. APScheduler 3 schedules by the wall clock, so
without care a backward step stalls polling until the clock catches up and a forward step
could fire a burst of "missed" runs. The end-to-end test moves only the daemon's wall clock
with libfaketime (its monotonic clock stays true, as on a real system); the unit test below
drives the same detection with an injected monotonic clock, so it also runs where
libfaketime is not installed.
"""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest

from homepoll.daemon import ClockWatch, Daemon
from tests.conftest import wait_for
from tests.reliability_support import (
    FAKETIME_LIB,
    assert_every_served_stored_once,
    assert_integrity_ok,
    assert_no_secrets,
    faketime_env,
    record_figures,
    secrets_of,
    set_faketime_offset,
)


def _arrivals_between(sim, start: float, end: float) -> list[float]:
    return [t for t, _ in list(sim.faults.arrivals) if start <= t < end]


@pytest.mark.skipif(
    FAKETIME_LIB is None,
    reason="libfaketime is not installed (apt-get install faketime); the injected-clock unit "
    "test below still covers the jump handling",
)
def test_wall_clock_jumps_back_and_forward_by_hours_without_stall_or_storm(
    hue_sim, setup_factory, daemons
) -> None:
    setup = setup_factory(hue=hue_sim)
    offset_file = setup.root / "faketime.txt"
    offset_file.write_text("+0\n")
    daemon = daemons(setup, **faketime_env(offset_file))
    wait_for(lambda: setup.row_count() > 0)

    # Back by three hours: polling must go on at its cadence, not wait three hours.
    set_faketime_offset(offset_file, "-3h")
    back = time.monotonic()
    wait_for(lambda: "wall clock jumped back" in setup.log_text(), timeout=5)
    time.sleep(3.0)
    after_back = _arrivals_between(hue_sim, back, time.monotonic())
    assert len(after_back) >= 2, "polling stalled after the wall clock went back"

    # Forward by six hours (to +3 h): no storm of catch-up polls, no missed runs.
    set_faketime_offset(offset_file, "+3h")
    forward = time.monotonic()
    wait_for(lambda: "wall clock jumped forward" in setup.log_text(), timeout=5)
    time.sleep(3.0)
    after_forward = _arrivals_between(hue_sim, forward, time.monotonic())
    assert 2 <= len(after_forward) <= 5, after_forward
    gaps = [b - a for a, b in itertools.pairwise(after_forward)]
    assert min(gaps) >= 0.7, gaps  # interval 1 s: nothing fired in a burst

    assert daemon.alive()
    assert daemon.stop() == 0
    log = setup.log_text()
    assert "missed its run time" not in log
    assert "Traceback" not in log
    assert_integrity_ok(setup.db)
    # Measurement times come from the bridge, whatever the daemon's clock said.
    counts = assert_every_served_stored_once(setup, hue_sim)
    assert_no_secrets(setup, secrets_of(hue_sim), stderr=daemon.stderr())
    durations = [d for (d,) in setup.query("SELECT duration_ms FROM polls")]
    # Durations come from the monotonic clock: never negative, never hours long.
    assert durations and min(durations) >= 0 and max(durations) < 5000
    # polled_at follows the daemon's (jumped) wall clock: some rows 3 h in the past/future.
    polled = [p / 1000 for (p,) in setup.query("SELECT DISTINCT polled_at FROM readings_view")]
    now = time.time()
    assert any(p < now - 2.5 * 3600 for p in polled)
    assert any(p > now + 2.5 * 3600 for p in polled)
    record_figures(
        "clock jumps (libfaketime, -3 h then +6 h)",
        polls=len(durations),
        faults={"clock_back_3h": 1, "clock_forward_6h": 1},
        **counts,
        polls_in_3s_after_back=len(after_back),
        polls_in_3s_after_forward=len(after_forward),
    )


class _Steps:
    """A monotonic clock that a test can step: wall - monotonic changes like a wall-clock step."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.offset


def test_clock_watch_reports_steps_and_ignores_drift() -> None:
    wall = [1_000_000.0]
    mono = [50.0]
    watch = ClockWatch(wall=lambda: wall[0], mono=lambda: mono[0])
    wall[0] += 10
    mono[0] += 10.0004  # 40 ppm of drift: not a jump
    assert watch.check() == 0.0
    wall[0] -= 3 * 3600 - 5
    mono[0] += 5
    assert watch.check() == pytest.approx(-3 * 3600)
    assert watch.check() == 0.0  # reported once
    wall[0] += 7200 + 1
    mono[0] += 1
    assert watch.check() == pytest.approx(7200)


def test_daemon_shifts_its_schedule_by_a_wall_clock_step(setup_factory, hue_sim) -> None:
    """In-process, with the real scheduler: a step of the clock moves every job with it."""
    from homepoll.config import load_config

    setup = setup_factory(hue=hue_sim)
    setup.write(collectors={"hue": {"interval": 60}})
    config = load_config(setup.config_path)
    steps = _Steps()

    async def scenario() -> tuple[float, float, float]:
        daemon = Daemon(config)
        daemon._clock_watch = ClockWatch(mono=steps)
        task = asyncio.create_task(daemon.run())
        await asyncio.sleep(0.5)
        job = daemon._scheduler.get_job("hue")
        first = job.next_run_time.timestamp()
        # wall - monotonic grows by 3 h: to the daemon the wall clock went forward 3 h.
        steps.offset -= 3 * 3600
        daemon._absorb_clock_jump()
        shifted = daemon._scheduler.get_job("hue").next_run_time.timestamp()
        steps.offset += 2 * 3600  # and now back 2 h
        daemon._scheduler.wakeup()  # the scheduler's own wake-up notices it
        await asyncio.sleep(0.2)
        back = daemon._scheduler.get_job("hue").next_run_time.timestamp()
        daemon.request_stop()
        await asyncio.wait_for(task, 10)
        return first, shifted, back

    first, shifted, back = asyncio.run(scenario())
    assert shifted - first == pytest.approx(3 * 3600, abs=1)
    assert back - first == pytest.approx(3600, abs=1)
    from homepoll.logs import remove_handlers

    remove_handlers()


def test_on_change_values_after_a_step_back_are_stored_once_per_change(tmp_path) -> None:
    """Battery and reachability carry the poll time: after the clock stepped back, a changed
    value is compared with the value stored last, not with the (future) newest row."""
    from homepoll.model import Reading
    from homepoll.storage import Storage

    storage = Storage(tmp_path / "readings.db", commit_interval=0)
    storage.open()
    now = 1_790_000_000_000

    def battery(ts: int, value: float) -> int:
        reading = Reading("hue", "dev", "Hall", "battery", "%", ts, value, on_change=True)
        return storage.write([reading], ts, None).stored

    assert battery(now + 3 * 3_600_000, 90) == 1  # stored while the clock was 3 h ahead
    assert battery(now, 89) == 1  # the clock is fixed: a new value, stored
    assert [battery(now + n * 1000, 89) for n in range(1, 4)] == [0, 0, 0]  # unchanged
    assert battery(now + 5000, 88) == 1
    storage.close()
