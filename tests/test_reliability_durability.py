"""Durability at the SHIPPED defaults: nothing fetched is lost, whatever kills the daemon.

Every daemon here runs with the config's own ``commit_interval`` (300 s): the test configs
leave the key out. Readings between commits live in the spool (storage/spool.py) on the
runtime folder, so SIGKILL, SIGABRT (the watchdog), a restart loop or a stop the database
refuses cannot take them; pruning refuses a clock 40 days ahead; ``status``, ``readings`` and
the systemd STATUS line count what waits for the next commit.

``HOMEPOLL_DURABILITY_KILLS`` (default 20 SIGKILL + 5 SIGABRT) and
``HOMEPOLL_RESTART_LOOP_SECONDS`` (default 12 s, kills every 1-2 s; 180 s with kills every
20-40 s for the published figures) set the run lengths.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import threading
import time
import urllib.request
from datetime import datetime
from pathlib import Path

import pytest

from homepoll.simulator.aqm_api import AqmApiSimulator
from homepoll.simulator.hue_bridge import HueBridgeSimulator
from tests.conftest import Setup, shipped_defaults, wait_for
from tests.reliability_support import (
    FAKETIME_LIB,
    assert_every_served_stored_once,
    count_knob,
    faketime_env,
    integrity,
    record_figures,
    served_map,
    set_faketime_offset,
    stored_rows,
)

PERIOD = 1.0  # the simulators' update period: values change every poll (interval 1 s)
IN_FLIGHT = 0.5  # a request this close before a kill may belong to a poll the kill cut short


def _wall_arrivals(sim) -> list[float]:
    """Wall times of the requests a simulator answered without a fault."""
    offset = time.time() - time.monotonic()
    return [t + offset for t, kind in list(sim.faults.arrivals) if kind == "ok"]


def in_flight_at_kills(served_keys, kills: list[float], sims: dict[str, object]) -> list[tuple]:
    """Served measurements that only requests cut short by a kill can have fetched.

    A measurement is current from its ts for one update period; it is excused only when every
    request during that time reached the simulator at most IN_FLIGHT seconds before a kill,
    i.e. no completed poll ever carried it.
    """
    arrivals = {source: _wall_arrivals(sim) for source, sim in sims.items()}
    excused = []
    for key in served_keys:
        start = key[3] / 1000
        during = [t for t in arrivals[key[0]] if start - 0.05 <= t < start + PERIOD + 0.05]
        if during and all(any(0 <= k - t <= IN_FLIGHT for k in kills) for t in during):
            excused.append(key)
    return excused


def _kill_and_check(setup: Setup, daemons, signum: int, rng: random.Random, hue) -> float:
    daemon = daemons(setup)
    arrivals = len(hue.faults.arrivals)
    wait_for(lambda: len(hue.faults.arrivals) > arrivals, timeout=10)
    time.sleep(rng.uniform(0.0, 1.2))
    killed_at = time.time()
    daemon.signal(signum)
    daemon.proc.wait(timeout=10)
    daemon.kill()
    return killed_at


def _missing_keys(setup: Setup, *sims) -> list[tuple]:
    stored = {(s, d, m, ts) for s, d, m, ts, _ in stored_rows(setup)}
    return [k for k in served_map(*sims) if k not in stored]


def _finish_cleanly(setup: Setup, daemons, hue) -> str:
    daemon = daemons(setup)
    arrivals = len(hue.faults.arrivals)
    wait_for(lambda: len(hue.faults.arrivals) > arrivals + 1, timeout=10)
    assert daemon.stop() == 0
    return daemon.stderr()


def test_sigkill_and_sigabrt_at_random_moments_lose_nothing_at_the_defaults(
    setup_factory, daemons
) -> None:
    kills = count_knob("HOMEPOLL_DURABILITY_KILLS", 20)
    aborts = max(1, kills // 4)
    rng = random.Random(20261130)
    signals = [signal.SIGKILL] * kills + [signal.SIGABRT] * aborts
    rng.shuffle(signals)
    with (
        HueBridgeSimulator(update_period=PERIOD, devices=8) as hue,
        AqmApiSimulator(update_period=PERIOD, monitors=2) as aqm,
    ):
        setup = shipped_defaults(setup_factory(hue=hue, aqm=aqm))
        setup.write(log={"level": "INFO"})
        killed = [_kill_and_check(setup, daemons, signum, rng, hue) for signum in signals]
        stderr = _finish_cleanly(setup, daemons, hue)
        excused = in_flight_at_kills(
            _missing_keys(setup, hue, aqm), killed, {"hue": hue, "amazon_aqm": aqm}
        )
        counts = assert_every_served_stored_once(setup, hue, aqm, excused=excused)
    assert integrity(setup.db) == "ok"
    log = setup.log_text()
    # Each restart says what it found: one WARNING per unclean exit, with the recovered count.
    warnings = [line for line in log.splitlines() if "did not stop cleanly" in line]
    assert len(warnings) == len(signals), warnings[:3]
    assert sum("recovered" in line for line in warnings) >= len(signals) // 2
    assert "Traceback" not in stderr
    record_figures(
        f"SIGKILL x{kills} + SIGABRT x{aborts} at random moments, shipped defaults"
        " (commit_interval 300)",
        polls=len(setup.query("SELECT 1 FROM polls")),
        kills_survived=len(signals),
        faults={"sigkill": kills, "sigabrt": aborts},
        **counts,
    )


def test_restart_loop_at_the_defaults_stores_every_served_measurement(
    hue_sim, setup_factory, daemons
) -> None:
    seconds = float(os.environ.get("HOMEPOLL_RESTART_LOOP_SECONDS") or 12)
    low, high = (20.0, 40.0) if seconds >= 120 else (1.0, 2.0)
    rng = random.Random(7)
    setup = shipped_defaults(setup_factory(hue=hue_sim))
    setup.write(log={"level": "INFO"})
    end = time.monotonic() + seconds
    killed = []
    while time.monotonic() < end:
        daemon = daemons(setup)
        time.sleep(rng.uniform(low, high))
        killed.append(time.time())
        daemon.kill()
    _finish_cleanly(setup, daemons, hue_sim)
    excused = in_flight_at_kills(_missing_keys(setup, hue_sim), killed, {"hue": hue_sim})
    counts = assert_every_served_stored_once(setup, hue_sim, excused=excused)
    # Without the spool only each run's first poll would be stored (commit_interval 300).
    assert counts["stored"] > 2 * len(killed)
    record_figures(
        f"restart loop (kill every {low:g}-{high:g} s for {seconds:g} s), shipped defaults",
        polls=len(setup.query("SELECT 1 FROM polls")),
        kills_survived=len(killed),
        faults={"sigkill": len(killed)},
        **counts,
    )


def _hold_write_lock(db: Path, seconds: float, held: threading.Event) -> None:
    conn = sqlite3.connect(db, timeout=5, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        held.set()
        time.sleep(seconds)
        conn.execute("ROLLBACK")
    finally:
        conn.close()


def test_sigterm_while_another_process_holds_the_write_lock_loses_nothing(
    hue_sim, setup_factory, daemons
) -> None:
    setup = shipped_defaults(setup_factory(hue=hue_sim))
    daemon = daemons(setup)
    wait_for(lambda: setup.row_count() > 0)  # the first poll is committed at once
    wait_for(lambda: json.loads((setup.data / "status.json").read_text())["storage"]["queued"])
    held = threading.Event()
    # Longer than the daemon's whole stop (busy timeout 5 s): its final commit must fail.
    holder = threading.Thread(target=_hold_write_lock, args=(setup.db, 9.0, held))
    holder.start()
    held.wait(5)
    code = daemon.stop(timeout=20)
    holder.join()
    log = setup.log_text()
    assert code != 0 or "kept in" in log, log[-2000:]
    assert "stopped cleanly" not in log.split("stopping (signal received)")[-1]
    if code == 0:
        # Nothing was claimed: the readings went beside the database, the next start writes them.
        assert Path(f"{setup.db}.pending").exists()
        daemon = daemons(setup)
        wait_for(lambda: not Path(f"{setup.db}.pending").exists(), timeout=10)
        assert daemon.stop() == 0
        assert "recovered" in setup.log_text().split("stopped;")[-1]
    counts = assert_every_served_stored_once(setup, hue_sim)
    assert integrity(setup.db) == "ok"
    record_figures(
        "SIGTERM while another process holds the write lock (9 s), shipped defaults",
        polls=len(setup.query("SELECT 1 FROM polls")),
        faults={"locked_at_sigterm": 1},
        **counts,
    )


def test_status_and_readings_show_what_waits_for_the_commit_and_stopped_after(
    hue_sim, setup_factory, daemons
) -> None:
    setup = shipped_defaults(setup_factory(hue=hue_sim))
    daemon = daemons(setup)
    wait_for(lambda: setup.row_count() > 0)
    in_db = setup.row_count()

    def waiting() -> dict:
        result = setup.cli("status", "--json")
        storage = json.loads(result.stdout)["status"]["storage"]
        return storage if storage.get("queued") else {}

    storage = wait_for(waiting)
    assert storage["stored"] > 0 and storage["next_commit"]
    text = setup.cli("status").stdout
    assert f"{storage['stored']} stored since start" in text or "stored since start" in text
    assert "waiting for the next commit at " in text

    def readings() -> list[dict]:
        rows = json.loads(setup.cli("readings", "--since", "5m", "--format", "json").stdout)
        # A poll in the same update period as the committed one waits with nothing new.
        return rows if len(rows) > setup.row_count() else []

    shown = wait_for(readings, timeout=15)  # the waiting readings are shown too
    assert setup.row_count() == in_db  # ... and none of them is committed yet
    served = served_map(hue_sim)
    keys = {(r["source"], r["device_id"], r["metric"], _ms(r["time"])) for r in shown}
    assert {k for k in keys if k[2] not in ("battery", "reachable")} <= set(served)
    assert len(keys) == len(shown)  # nothing twice
    with urllib.request.urlopen(f"{setup.web_url}api/readings?since=5m", timeout=10) as answer:
        api = json.loads(answer.read())
    assert len(api) >= len(shown) > in_db  # the web API shows the waiting readings too
    assert daemon.stop() == 0
    after = json.loads(setup.cli("status", "--json").stdout)
    assert after["status"]["state"] == "stopped" and after["status"]["stopped_at"]
    assert after["status"]["storage"]["queued"] == 0
    assert all(c.get("next_poll") is None for c in after["status"]["collectors"].values())
    assert "stopped cleanly" in after["problems"][0]
    counts = assert_every_served_stored_once(setup, hue_sim)
    record_figures(
        "status during a run at the defaults (waiting readings shown), then SIGTERM",
        polls=len(setup.query("SELECT 1 FROM polls")),
        waiting_shown=len(shown) - in_db,
        **counts,
    )


def _ms(iso: str) -> int:
    return round(datetime.fromisoformat(iso).timestamp() * 1000)


def test_once_after_a_stop_keeps_the_daemons_history(hue_sim, setup_factory, daemons) -> None:
    setup = shipped_defaults(setup_factory(hue=hue_sim))
    daemon = daemons(setup)
    wait_for(lambda: setup.row_count() > 0)
    assert daemon.stop() == 0
    before = json.loads((setup.data / "status.json").read_text())
    assert setup.cli("once").returncode == 0
    after = json.loads((setup.data / "status.json").read_text())
    assert after["state"] == "stopped" and after["pid"] == before["pid"]
    assert after["collectors"] == before["collectors"]  # last success is not reset to never
    assert after["last_once"]["collectors"]["hue"]["state"] == "ok"
    text = setup.cli("status").stdout
    assert "stopped cleanly" in text and "not alive" not in text
    assert "last `homepoll once`" in text and "hue ok" in text


def test_once_where_no_daemon_ran_does_not_read_like_a_crash(hue_sim, setup_factory) -> None:
    setup = shipped_defaults(setup_factory(hue=hue_sim))
    assert setup.cli("once").returncode == 0
    text = setup.cli("status").stdout
    assert "not alive" not in text and "no daemon has run" in text
    assert "hue ok" in text


def _seed(db: Path, rows: list[tuple[int, float]]) -> None:
    from homepoll.model import Reading
    from homepoll.storage import Storage

    storage = Storage(db)
    storage.open()
    for ts, value in rows:
        storage.write(
            [Reading("hue", "seed-1", "Seed", "temperature", "degC", ts, value)], ts, None
        )
    storage.close()


@pytest.mark.skipif(
    FAKETIME_LIB is None, reason="libfaketime is not installed (apt-get install faketime)"
)
def test_a_clock_40_days_ahead_prunes_nothing_and_pruning_resumes_when_sane(
    hue_sim, setup_factory, daemons
) -> None:
    setup = shipped_defaults(setup_factory(hue=hue_sim))
    setup.write(storage={"retention_days": 30})
    now_ms = int(time.time() * 1000)
    old = [(now_ms - 35 * 86_400_000 + i, 1.0) for i in range(3)]
    recent = [(now_ms - 43_200_000 + i, 2.0) for i in range(3)]
    _seed(setup.db, old + recent)
    seeded = len(old) + len(recent)
    offset_file = setup.root / "faketime.txt"
    offset_file.write_text("+40d\n")
    daemon = daemons(setup, **faketime_env(offset_file), HOMEPOLL_TEST_PRUNE_EVERY="1")
    wait_for(lambda: "not pruning" in setup.log_text() or "pruned" in setup.log_text(), timeout=15)
    time.sleep(1.5)  # more prune runs at the wrong clock
    seed_left = setup.query("SELECT count(*) FROM readings_view WHERE device_id = 'seed-1'")
    assert seed_left == [(seeded,)], "a clock 40 days ahead deleted readings"
    warning = next(line for line in setup.log_text().splitlines() if "not pruning" in line)
    assert "WARNING" in warning and "days past the newest stored reading" in warning
    refusals = [x for x in setup.log_text().splitlines() if "WARNING" in x and "not pruning" in x]
    assert len(refusals) == 1  # once per episode, not at every prune run

    set_faketime_offset(offset_file, "+0")
    wait_for(lambda: "pruned" in setup.log_text(), timeout=15)
    left = setup.query("SELECT ts FROM readings_view WHERE device_id = 'seed-1' ORDER BY ts")
    assert [ts for (ts,) in left] == [ts for ts, _ in recent]  # only the really old ones went
    assert daemon.stop() == 0
    assert "resumes" in setup.log_text() or "pruning works" in setup.log_text()
    record_figures(
        "wall clock 40 days ahead, retention_days 30 (libfaketime), then sane again",
        faults={"clock_forward_40d": 1},
        seeded=seeded,
        deleted_at_wrong_clock=0,
        deleted_when_sane=len(old),
    )
