"""The cadence seen from outside: when requests reach the bridge while it fails and recovers.

DESIGN's step 6 (slow down after ``failure_threshold`` failed polls, at most to
``max_interval``, back to ``interval`` on the first success), measured at the simulator:
the only thing that counts is when the daemon's requests arrive there.
"""

from __future__ import annotations

import threading
import time

from homepoll.simulator.hue_bridge import HueBridgeSimulator
from tests.conftest import wait_for

TOLERANCE = 0.6  # seconds of wake-up noise on a loaded machine; a broken slowdown is off by >= 1


class RequestClock:
    """Samples the simulator's request counter every 5 ms and notes when each request came."""

    def __init__(self, sim: HueBridgeSimulator) -> None:
        self.sim = sim
        self.times: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RequestClock:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        seen = self.sim.served.requests
        while not self._stop.wait(0.005):
            count = self.sim.served.requests
            self.times.extend([time.monotonic()] * (count - seen))
            seen = count

    def gaps(self) -> list[float]:
        return [round(b - a, 2) for a, b in zip(self.times, self.times[1:], strict=False)]


def test_gaps_between_requests_grow_while_failing_and_return_on_first_success(
    setup_factory, daemons
) -> None:
    with HueBridgeSimulator() as sim:
        setup = setup_factory(hue=sim)
        # One request per poll, so requests are polls; threshold 2 and max_interval 3 make the
        # slowdown visible within seconds: 1 s, 1 s, then 2 s, then 3 s (4 s capped to 3).
        setup.write(
            retry={"max_attempts": 1},
            backoff={"failure_threshold": 2, "max_interval": 3},
        )
        sim.faults.set_sticky("error_901")  # the bridge's own "internal error": transient
        with RequestClock(sim) as clock:
            daemon = daemons(setup)
            wait_for(lambda: len(clock.times) >= 4, timeout=15)
            sim.faults.set_sticky(None)  # the bridge is back during the 3 s wait
            wait_for(lambda: len(clock.times) >= 6, timeout=10)
            assert daemon.stop() == 0
        gaps = clock.gaps()
    # requests 1-4 fail (failures 1, 2, 3, 4); the 5th (3 s later) succeeds; the 6th is 1 s on
    expected = [1, 2, 3, 3, 1]
    assert len(gaps) >= len(expected), gaps
    for gap, want in zip(gaps, expected, strict=False):
        assert abs(gap - want) <= TOLERANCE, (gaps, expected)
    assert sim.served.successes >= 2
