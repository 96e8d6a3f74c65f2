"""The real daemon (``homepoll run`` as a subprocess) against the loopback Hue simulator.

Each test drives the simulator's faults and sends real signals, then checks the SQLite file,
status.json, the alert file and the log that a user would look at.
"""

from __future__ import annotations

import itertools
import json
import resource
import signal
import socket
import sqlite3
import time
from pathlib import Path

import pytest

from homepoll.simulator.hue_bridge import HueBridgeSimulator
from tests.conftest import (
    Setup,
    assert_every_served_stored_once,
    free_port,
    shipped_defaults,
    wait_for,
)

ALERT = "ALERT_HUE_AUTH_NEEDED.txt"


def status_of(setup: Setup) -> dict:
    return json.loads((setup.data / "status.json").read_text())


def hue_state(setup: Setup) -> dict:
    try:
        return status_of(setup)["collectors"]["hue"]
    except (FileNotFoundError, KeyError, json.JSONDecodeError):
        return {}


def test_daemon_survives_faults_and_stores_every_served_measurement_once(
    hue_sim, setup_factory, daemons
) -> None:
    setup = setup_factory(hue=hue_sim)
    hue_sim.faults.apply_script(
        "http_503*2 ok rate_limit(retry_after=2) ok*2 slow(seconds=3) reset garbage empty ok*2 "
        "error_901 ok",
        "hue",
    )
    daemon = daemons(setup)
    wait_for(lambda: hue_sim.faults.pending() == 0, timeout=30)
    served_before = len(hue_sim.served.snapshot())
    wait_for(lambda: len(hue_sim.served.snapshot()) > served_before, timeout=10)
    assert daemon.alive()
    assert daemon.stop() == 0

    assert_every_served_stored_once(setup, hue_sim)
    # Retry-After: 2 was honoured: the request after the 429 came at least 2 s later.
    arrivals = list(hue_sim.faults.arrivals)
    index = next(i for i, (_, kind) in enumerate(arrivals) if kind == "rate_limit")
    assert arrivals[index + 1][0] - arrivals[index][0] >= 2.0
    outcomes = dict(setup.query("SELECT outcome, count(*) FROM polls GROUP BY outcome"))
    assert outcomes.get("ok", 0) >= 5
    assert {"rate_limited", "timeout", "transient"} <= set(outcomes)
    log = setup.log_text()
    assert "Traceback" not in log
    assert "throttled" in log


@pytest.mark.parametrize("storage", ["commit_interval 0", "shipped defaults"])
def test_auth_failure_raises_alert_that_survives_restart_and_clears_on_new_key(
    storage, hue_sim, setup_factory, daemons
) -> None:
    setup = setup_factory(hue=hue_sim)
    if storage == "shipped defaults":
        shipped_defaults(setup)
    alert = setup.data / ALERT
    daemon = daemons(setup)
    wait_for(lambda: setup.row_count() > 0)
    hue_sim.revoke_key()

    wait_for(alert.exists, timeout=10)
    text = alert.read_text()
    for field in ("First failure:", "Failed polls:", "Last error:", "unauthorized", "hue-pair"):
        assert field in text
    assert daemon.alive()
    result = setup.cli("status")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "auth_failed" in result.stdout

    # A restart during the outage neither clears nor duplicates the alert.
    wait_for(lambda: hue_state(setup).get("consecutive_failures", 0) >= 2)
    assert daemon.stop() == 0
    count_before = int(alert.read_text().split("Failed polls:")[1].split()[0])
    daemon = daemons(setup)
    wait_for(lambda: hue_state(setup).get("consecutive_failures", 0) >= 1 and daemon.alive())
    wait_for(lambda: int(alert.read_text().split("Failed polls:")[1].split()[0]) > count_before)
    assert alert.read_text().split("First failure:")[1].split()[0] in text
    assert setup.log_text().count("CRITICAL") == 1

    # The user pairs again: a new key file, picked up on SIGHUP, clears the alert.
    hue_sim.set_key("homepoll-new-key-fedcba9876543210")
    setup.write_hue_key("homepoll-new-key-fedcba9876543210")
    daemon.signal(signal.SIGHUP)
    wait_for(lambda: not alert.exists(), timeout=10)
    wait_for(lambda: hue_state(setup).get("state") == "ok")
    result = setup.cli("status")
    assert result.returncode == 0, result.stdout + result.stderr
    assert daemon.stop() == 0


def test_bridge_down_at_start_then_slowdown_then_recovery(setup_factory, daemons) -> None:
    port = free_port()
    setup = setup_factory()
    setup.write_hue_key("homepoll-sim-key-0123456789abcdef")
    setup.write(collectors={"hue": {"enabled": True, "bridge": f"127.0.0.1:{port}"}})
    daemon = daemons(setup)

    wait_for(lambda: hue_state(setup).get("state") == "failing", timeout=10)
    # threshold 3, interval 1, max_interval 4: after 3 failed polls the cadence slows down.
    slowed = wait_for(
        lambda: hue_state(setup) if hue_state(setup).get("interval", 1) > 1 else None, timeout=15
    )
    assert slowed["consecutive_failures"] >= 3
    assert daemon.alive()

    with HueBridgeSimulator(port=port, update_period=1.0) as sim:
        up = time.monotonic()
        wait_for(lambda: setup.row_count() > 0, timeout=10)
        assert time.monotonic() - up <= 4 + 1.5  # within one (slowed) interval
        wait_for(lambda: hue_state(setup).get("interval") == 1, timeout=5)
        assert hue_state(setup)["state"] == "ok"
        assert daemon.stop() == 0
        assert_every_served_stored_once(setup, sim)


def test_sigterm_during_slow_poll_finishes_it_and_exits_cleanly(
    hue_sim, setup_factory, daemons
) -> None:
    setup = setup_factory(hue=hue_sim)
    setup.write(
        retry={"attempt_timeout": 8, "max_attempts": 1},
        collectors={"hue": {"interval": 30}},
    )
    hue_sim.faults.queue("slow", seconds=3)
    daemon = daemons(setup)
    wait_for(lambda: len(hue_sim.faults.arrivals) >= 1)
    time.sleep(0.3)
    sent = time.monotonic()
    daemon.signal(signal.SIGTERM)
    assert daemon.proc.wait(timeout=10) == 0
    assert time.monotonic() - sent < 10
    conn = sqlite3.connect(setup.db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        conn.close()
    assert_every_served_stored_once(setup, hue_sim)  # the in-flight poll was finished, not lost


def test_sigterm_cancels_a_poll_that_cannot_finish_in_time(hue_sim, setup_factory, daemons) -> None:
    setup = setup_factory(hue=hue_sim)
    setup.write(
        retry={"attempt_timeout": 25, "max_attempts": 1},
        collectors={"hue": {"interval": 30}},
    )
    hue_sim.faults.queue("slow", seconds=20)
    daemon = daemons(setup)
    wait_for(lambda: len(hue_sim.faults.arrivals) >= 1)
    sent = time.monotonic()
    daemon.signal(signal.SIGTERM)
    assert daemon.proc.wait(timeout=10) == 0
    assert time.monotonic() - sent < 10
    assert "cancelled at shutdown" in setup.log_text()


def test_sighup_with_invalid_config_keeps_old_and_valid_change_takes_effect(
    hue_sim, setup_factory, daemons
) -> None:
    setup = setup_factory(hue=hue_sim)
    daemon = daemons(setup)
    wait_for(lambda: setup.row_count() > 0)
    good = setup.config_path.read_text()

    setup.config_path.write_text(
        good.replace("max_attempts: 3", 'max_attempts: "three"') + "colectors: {}\n"
    )
    daemon.signal(signal.SIGHUP)
    wait_for(lambda: "keeping the running configuration" in setup.log_text())
    log = setup.log_text()
    assert "retry.max_attempts: must be an integer >= 1" in log
    assert "colectors" in log
    polls = len(setup.query("SELECT 1 FROM polls"))
    wait_for(lambda: len(setup.query("SELECT 1 FROM polls")) >= polls + 2)  # still polling
    assert daemon.alive()

    setup.config_path.write_text(good)
    setup.write(collectors={"hue": {"interval": 2.5}})
    daemon.signal(signal.SIGHUP)
    wait_for(lambda: "now every 2.5 s" in setup.log_text())
    mark = len(hue_sim.faults.arrivals)
    wait_for(lambda: len(hue_sim.faults.arrivals) >= mark + 3, timeout=12)
    times = [t for t, _ in list(hue_sim.faults.arrivals)[mark:]]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(gap >= 2.3 for gap in gaps), gaps
    assert daemon.stop() == 0


def _receive_all(sock: socket.socket) -> list[str]:
    messages = []
    while True:
        try:
            messages.append(sock.recv(4096).decode())
        except BlockingIOError:
            return messages


def _drain_for(sock: socket.socket, seconds: float) -> list[str]:
    """Read notifications for ``seconds``, promptly as systemd does (the queue holds only ~10)."""
    messages: list[str] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        messages.extend(_receive_all(sock))
        time.sleep(0.02)
    return messages


def test_sd_notify_ready_watchdog_stopping_in_order(hue_sim, setup_factory, daemons) -> None:
    setup = setup_factory(hue=hue_sim)
    path = setup.root / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.setblocking(False)
        daemon = daemons(setup, NOTIFY_SOCKET=str(path), WATCHDOG_USEC="400000")
        messages: list[str] = []
        wait_for(
            lambda: messages.extend(_receive_all(sock)) or any("READY=1" in m for m in messages)
        )
        ready_at = time.monotonic()
        messages.extend(_drain_for(sock, 2.0))
        daemon.signal(signal.SIGTERM)
        while daemon.alive():
            messages.extend(_drain_for(sock, 0.05))
        assert daemon.stop() == 0
        stopped_at = time.monotonic()
        messages.extend(_receive_all(sock))

    kinds = [m.split("=")[0] for m in messages if not m.startswith("STATUS=")]
    assert kinds[0] == "READY"
    assert kinds[-1] == "STOPPING"
    pings = kinds.count("WATCHDOG")
    expected = (stopped_at - ready_at) / 0.2
    assert 0.6 * expected <= pings <= 1.3 * expected + 2, (pings, expected)
    assert any(m.startswith("STATUS=hue ok") for m in messages)


def test_frozen_event_loop_stops_watchdog_pings(hue_sim, setup_factory, daemons) -> None:
    setup = setup_factory(hue=hue_sim)
    path = setup.root / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.setblocking(False)
        daemons(
            setup,
            NOTIFY_SOCKET=str(path),
            WATCHDOG_USEC="200000",
            HOMEPOLL_TEST_FREEZE_LOOP_AFTER="0.5",
        )
        messages: list[str] = []
        wait_for(
            lambda: messages.extend(_receive_all(sock)) or any("READY=1" in m for m in messages)
        )
        wait_for(
            lambda: (
                messages.extend(_receive_all(sock)) or "freezing the event loop" in setup.log_text()
            ),
            timeout=5,
        )
        messages.extend(_drain_for(sock, 0.3))
        before = messages.count("WATCHDOG=1")
        after = before + _drain_for(sock, 1.0).count("WATCHDOG=1")  # ten ping intervals
    assert before >= 2
    assert after == before


def test_disk_full_keeps_readings_queued_and_writes_them_later(
    hue_sim, setup_factory, daemons
) -> None:
    setup = setup_factory(hue=hue_sim)
    setup.write(log={"level": "INFO"})
    daemon = daemons(setup)
    wait_for(lambda: setup.row_count() > 0)
    # Every write past 4 KiB now fails with EFBIG, as on a full disk (Python ignores SIGXFSZ).
    resource.prlimit(daemon.proc.pid, resource.RLIMIT_FSIZE, (4096, resource.RLIM_INFINITY))
    served_at_limit = len(hue_sim.served.snapshot())
    wait_for(lambda: len(hue_sim.served.snapshot()) >= served_at_limit + 6, timeout=15)
    assert daemon.alive()
    resource.prlimit(
        daemon.proc.pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY)
    )
    wait_for(
        lambda: (
            hue_state(setup).get("state") == "ok" and not status_of(setup)["storage"].get("queued")
        )
    )
    assert daemon.stop() == 0
    assert_every_served_stored_once(setup, hue_sim)
    assert "full" in daemon.stderr() + setup.log_text()


def test_secrets_never_leak_after_faults_at_debug(hue_sim, setup_factory, daemons) -> None:
    key = hue_sim.key
    setup = setup_factory(hue=hue_sim)
    hue_sim.faults.apply_script(
        "http_503 slow(seconds=2) reset garbage redirect_https unauthorized", "hue"
    )
    daemon = daemons(setup)
    wait_for(lambda: hue_sim.faults.pending() == 0, timeout=20)
    hue_sim.revoke_key()
    wait_for((setup.data / ALERT).exists)
    outputs = {
        "status --json": setup.cli("status", "--json").stdout,
        "once": (lambda r: r.stdout + r.stderr)(setup.cli("once")),
        "check-config": setup.cli("check-config").stdout,
    }
    assert daemon.stop() == 0
    outputs["stderr"] = daemon.stderr()
    for path in setup.data.iterdir():
        if path.name not in ("hue_username", "readings.db", "readings.db-wal", "readings.db-shm"):
            outputs[path.name] = path.read_text(errors="replace")
    outputs["polls.error"] = repr(setup.query("SELECT error FROM polls"))
    assert "DEBUG" in outputs["homepoll.log"]
    for name, text in outputs.items():
        assert key not in text, f"the Hue key leaked into {name}"
    assert "***" in outputs["check-config"]


def test_status_says_not_running_after_stop(hue_sim, setup_factory, daemons) -> None:
    setup = setup_factory(hue=hue_sim)
    daemon = daemons(setup)
    wait_for(lambda: hue_state(setup).get("state") == "ok")
    assert setup.cli("status").returncode == 0
    assert hue_state(setup).get("throttled_by") is None  # never throttled, so named by none
    assert daemon.stop() == 0
    result = setup.cli("status")
    assert result.returncode == 2
    assert "not running" in result.stdout


@pytest.fixture
def frozen_hue() -> HueBridgeSimulator:
    now = 1_790_000_000.0
    with HueBridgeSimulator(update_period=1.0, clock=lambda: now) as sim:
        yield sim


def test_once_stores_every_metric_with_units_and_rerun_adds_nothing(
    frozen_hue, setup_factory
) -> None:
    setup = setup_factory(hue=frozen_hue)
    first = setup.cli("once")
    assert first.returncode == 0, first.stderr
    units = dict(setup.query("SELECT metric, unit FROM sensors WHERE source = 'hue'"))
    assert units == {
        "temperature": "degC",
        "light_level": "lux",
        "presence": "bool",
        "battery": "%",
        "reachable": "bool",
    }
    assert_every_served_stored_once(setup, frozen_hue)
    raw, _ = frozen_hue.sensors_json()
    temps = sorted(
        s["state"]["temperature"] / 100 for s in raw.values() if s["type"] == "ZLLTemperature"
    )
    stored = sorted(
        v for (v,) in setup.query("SELECT value FROM readings_view WHERE metric='temperature'")
    )
    assert stored == temps
    # every battery device: the motion sensors and the dimmer switch
    batteries = sorted(
        s["config"]["battery"] for s in raw.values() if s["type"] in ("ZLLPresence", "ZLLSwitch")
    )
    assert (
        sorted(v for (v,) in setup.query("SELECT value FROM readings_view WHERE metric='battery'"))
        == batteries
    )
    # Names a person recognises: the motion sensor's name on all of its device's readings.
    names = {n for (n,) in setup.query("SELECT DISTINCT name FROM sensors")}
    device_names = {s["name"] for s in raw.values() if s["type"] in ("ZLLPresence", "ZLLSwitch")}
    assert names == device_names
    rows = setup.row_count()
    polls = len(setup.query("SELECT 1 FROM polls"))

    second = setup.cli("once")
    assert second.returncode == 0, second.stderr
    assert "(0 new)" in second.stdout
    assert setup.row_count() == rows
    assert len(setup.query("SELECT 1 FROM polls")) == polls + 1


def test_once_reports_failure_with_exit_1_and_raises_alert(frozen_hue, setup_factory) -> None:
    setup = setup_factory(hue=frozen_hue)
    frozen_hue.revoke_key()
    result = setup.cli("once")
    assert result.returncode == 1
    assert "FAILED (auth)" in result.stdout
    assert (setup.data / ALERT).exists()
    frozen_hue.set_key(setup.data.joinpath("hue_username").read_text().strip())
    assert setup.cli("once").returncode == 0
    assert not (setup.data / ALERT).exists()


def test_once_dry_run_writes_nothing(frozen_hue, setup_factory) -> None:
    setup = setup_factory(hue=frozen_hue)
    result = setup.cli("once", "--dry-run")
    assert result.returncode == 0
    assert "temperature" in result.stdout
    assert not setup.db.exists()
    assert not Path(setup.data / "status.json").exists()


def test_a_second_daemon_on_the_same_data_folder_refuses_to_start(
    hue_sim, setup_factory, daemons
) -> None:
    setup = setup_factory(hue=hue_sim)
    first = daemons(setup)
    wait_for(lambda: hue_state(setup).get("state") == "ok")
    second = daemons(setup)
    assert second.proc.wait(timeout=10) == 1
    assert f"pid {first.proc.pid}" in second.stderr()
    assert first.alive()
    first.proc.kill()  # a crash releases the lock: a restart works at once
    first.proc.wait()
    third = daemons(setup)
    wait_for(lambda: status_of(setup).get("pid") == third.proc.pid)
    assert third.stop() == 0


def test_status_says_retrying_while_a_poll_waits_between_attempts(
    hue_sim, setup_factory, daemons
) -> None:
    setup = setup_factory(hue=hue_sim)
    setup.write(
        retry={"initial_delay": 1.5, "max_delay": 2, "max_attempts": 2},
        collectors={"hue": {"interval": 4}},
    )
    daemon = daemons(setup)
    wait_for(lambda: hue_state(setup).get("state") == "ok")
    hue_sim.faults.queue("error_901")
    retrying = wait_for(
        lambda: hue_state(setup) if hue_state(setup).get("state") == "retrying" else None, timeout=8
    )
    assert "901" in retrying["last_error"]
    wait_for(lambda: hue_state(setup).get("state") == "ok", timeout=8)
    assert daemon.stop() == 0


def test_status_file_lives_in_the_runtime_directory_behind_a_symlink(
    hue_sim, setup_factory, daemons
) -> None:
    setup = setup_factory(hue=hue_sim)
    runtime = setup.root / "run"
    runtime.mkdir()
    daemon = daemons(setup, RUNTIME_DIRECTORY=str(runtime))
    wait_for(lambda: hue_state(setup).get("state") == "ok")
    public = setup.data / "status.json"
    assert public.is_symlink()
    assert public.resolve() == runtime / "status.json"
    assert setup.cli("status").returncode == 0
    assert setup.cli("once").returncode == 0  # writes through the link, does not replace it
    assert public.is_symlink()
    assert daemon.stop() == 0
    runtime.joinpath("status.json").unlink()  # tmpfs is emptied when the service stops
    assert setup.cli("status").returncode == 2
