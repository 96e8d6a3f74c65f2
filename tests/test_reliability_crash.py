"""Crash consistency: SIGKILL the daemon at random moments during heavy writing, again and again.

Both simulators serve many devices whose values change every second, so nearly every poll
commits a transaction of a hundred-odd rows. Each round starts ``homepoll run``, lets it write,
snapshots what is committed, kills it with SIGKILL at a random moment (fixed seed) and checks
the database: it opens, ``integrity_check`` is ok, and everything committed before the kill is
still there. Midway the Hue key is rejected for a while, so an alert is raised, survives kills
and is cleared. At the end every measurement served in a successful answer is stored exactly
once, except those whose only polls were in flight at a kill and that changed before the
restarted daemon could read them again.

``HOMEPOLL_CRASH_KILLS`` sets the number of kills (CI default 5; 50 for the figures).
"""

from __future__ import annotations

import random
import signal
import sqlite3
import sys
import time

from homepoll.simulator.aqm_api import AqmApiSimulator
from homepoll.simulator.hue_bridge import HueBridgeSimulator
from tests.conftest import wait_for
from tests.reliability_support import (
    assert_every_served_stored_once,
    assert_no_secrets,
    count_knob,
    integrity,
    poll_count,
    record_figures,
    secrets_of,
    served_map,
)

HUE_ALERT = "ALERT_HUE_AUTH_NEEDED.txt"
PERIOD = 1.0  # simulators' update period (s)


def _committed(db) -> set[tuple]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        return set(
            conn.execute(
                "SELECT sensor_id, ts, value FROM readings UNION ALL"
                " SELECT sensor_id, ts, value FROM readings_recent"
            )
        )
    finally:
        conn.close()


def _first_failure(path) -> str:
    return path.read_text().split("First failure:")[1].split()[0]


def test_sigkill_at_random_moments_loses_nothing_committed(setup_factory, daemons) -> None:
    kills = count_knob("HOMEPOLL_CRASH_KILLS", 5)
    rng = random.Random(20261122)
    with (
        HueBridgeSimulator(update_period=PERIOD, devices=30) as hue,
        AqmApiSimulator(update_period=PERIOD, monitors=6) as aqm,
    ):
        setup = setup_factory(hue=hue, aqm=aqm)
        events = setup.root / "alert-events.txt"
        setup.write(
            log={"level": "INFO"},
            alerts={
                "command": [
                    sys.executable,
                    "-c",
                    "import os, sys; open(sys.argv[1], 'a').write("
                    "os.environ['HOMEPOLL_ALERT_EVENT'] + ' ' + "
                    "os.environ['HOMEPOLL_ALERT_COLLECTOR'] + '\\n')",
                    str(events),
                ]
            },
        )
        alert = setup.data / HUE_ALERT
        downtimes: list[tuple[float, float]] = []  # (kill, first request after restart), wall s
        alert_since: str | None = None
        integrity_checks = 0
        for round_no in range(kills):
            if round_no == kills // 3:
                hue.faults.set_sticky("unauthorized")
            if round_no == (2 * kills) // 3:
                hue.faults.set_sticky(None)
            polls_before = poll_count(setup)
            daemon = daemons(setup)
            arrivals = len(hue.faults.arrivals)
            wait_for(lambda n=arrivals: len(hue.faults.arrivals) > n, timeout=10)
            if downtimes:
                downtimes[-1] = (downtimes[-1][0], time.time())
            wait_for(lambda n=polls_before: poll_count(setup) > n, timeout=10)
            time.sleep(rng.uniform(0.0, 1.5))
            snapshot = _committed(setup.db)
            daemon.kill()
            downtimes.append((time.time(), float("inf")))

            assert integrity(setup.db) == "ok", f"round {round_no}"
            integrity_checks += 1
            missing = snapshot - _committed(setup.db)
            assert not missing, f"round {round_no}: {len(missing)} committed rows lost"
            if alert.exists():
                since = _first_failure(alert)
                assert alert_since in (None, since), "a restart raised the alert anew"
                alert_since = since

        # A last, clean run: it must catch up and clear whatever is still open.
        daemon = daemons(setup)
        arrivals = len(hue.faults.arrivals)
        wait_for(lambda: len(hue.faults.arrivals) > arrivals, timeout=10)
        downtimes[-1] = (downtimes[-1][0], time.time())
        wait_for(lambda: not alert.exists(), timeout=10)
        polls_before = poll_count(setup)
        wait_for(lambda: poll_count(setup) >= polls_before + 4, timeout=10)
        daemon.signal(signal.SIGTERM)
        assert daemon.proc.wait(timeout=10) == 0
        daemon.stop()

        assert integrity(setup.db) == "ok"
        served = served_map(hue, aqm)
        assert_no_secrets(setup, secrets_of(hue, aqm), stderr=daemon.stderr())

    # Served but never stored is excused only for a measurement that was current at a kill
    # and had changed before the restarted daemon's first request.
    def in_flight_at_a_kill(key: tuple) -> bool:
        start = key[3] / 1000
        return any(
            start <= kill + 0.05 and start + PERIOD <= back + 0.05 for kill, back in downtimes
        )

    stored_keys = {
        (s, d, m, ts)
        for s, d, m, ts in setup.query(
            "SELECT source, device_id, metric, ts FROM readings_view "
            "WHERE metric NOT IN ('battery', 'reachable')"
        )
    }
    excused = [k for k in served if k not in stored_keys and in_flight_at_a_kill(k)]
    counts = assert_every_served_stored_once(setup, hue, aqm, excused=excused)
    lines = events.read_text().split() if events.exists() else []
    events_seen = list(zip(lines[::2], lines[1::2], strict=True))
    # A simulated battery may sit under alerts.battery_low: raised once at most, kills or not.
    assert events_seen.count(("raise", "battery")) <= 1, lines
    raised = [c for e, c in events_seen if e == "raise" and c != "battery"]
    cleared = [c for e, c in events_seen if e == "clear" and c != "battery"]
    assert raised == ["hue"], lines
    assert cleared == ["hue"], lines
    assert setup.log_text().count("CRITICAL homepoll.alerts: ALERT hue") == 1
    record_figures(
        "crash consistency (SIGKILL during heavy writing)",
        polls=len(setup.query("SELECT 1 FROM polls")),
        kills_survived=kills,
        integrity_checks_ok=integrity_checks,
        faults={"sigkill": kills, "hue.unauthorized(sticky)": 1},
        alerts_raised=len(raised),
        alerts_cleared=len(cleared),
        served_total=len(served),
        **counts,
    )
