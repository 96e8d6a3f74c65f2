"""Compressed long runs: a soak with random faults and reloads, and log rotation under load.

``HOMEPOLL_SOAK_SECONDS`` sets the soak's length (CI default 5 s; the published figures use
an hour or more). Both simulators fail a share of requests with random kinds (fixed seeds),
including auth failures that raise and clear alerts; the daemon gets SIGHUP every few seconds.
Its RSS, thread count and open files are sampled after warm-up and at the end and must stay
flat; the invariant must hold at the end.
"""

from __future__ import annotations

import json
import random
import signal
import time

import pytest

from homepoll.simulator import aqm_api
from homepoll.simulator.aqm_api import AqmApiSimulator
from homepoll.simulator.hue_bridge import HueBridgeSimulator
from tests.conftest import wait_for
from tests.reliability_support import (
    alert_files,
    assert_every_served_stored_once,
    assert_integrity_ok,
    assert_no_secrets,
    collector_state,
    proc_stats,
    record_figures,
    secrets_of,
    soak_seconds,
)

HUE_RANDOM = ("error_901", "http_503", "rate_limit", "reset", "garbage", "empty", "unauthorized")
AQM_RANDOM = (*aqm_api.RANDOM_KINDS, "unauthenticated")  # plus auth: alerts raised and cleared


@pytest.mark.soak
def test_soak_with_random_faults_and_reloads_stays_flat(setup_factory, daemons) -> None:
    duration = soak_seconds(5.0)
    rng = random.Random(7)
    with (
        HueBridgeSimulator(update_period=1.0, devices=4) as hue,
        AqmApiSimulator(update_period=1.0, monitors=2, fahrenheit_monitors=1) as aqm,
    ):
        setup = setup_factory(hue=hue, aqm=aqm)
        setup.write(
            log={"level": "INFO", "max_bytes": 2_000_000, "backups": 2},
            backoff={"failure_threshold": 4, "max_interval": 4},
        )
        hue.faults.set_random(seed=11, rate=0.25, kinds=HUE_RANDOM)
        aqm.faults.set_random(seed=12, rate=0.25, kinds=AQM_RANDOM)
        daemon = daemons(setup)
        wait_for(lambda: setup.row_count() > 0)
        pid = daemon.proc.pid
        started = time.monotonic()
        warm_at = started + min(max(duration * 0.25, 2.0), 300.0)
        warm: dict | None = None
        samples = []
        reloads = 0
        next_reload = started + 1.5
        while time.monotonic() - started < duration:
            now = time.monotonic()
            if warm is None and now >= warm_at:
                warm = proc_stats(pid)
            if now >= next_reload:
                # Every other reload changes the log level: handlers are re-installed.
                level = "DEBUG" if reloads % 2 == 0 else "INFO"
                setup.write(log={"level": level})
                daemon.signal(signal.SIGHUP)
                reloads += 1
                next_reload = now + rng.uniform(2.0, 4.0)
            if len(samples) < 1000 and int(now - started) > len(samples) * 10:
                samples.append(proc_stats(pid))
            time.sleep(0.2)
            assert daemon.alive()
        end = proc_stats(pid)

        hue.faults.clear()
        aqm.faults.clear()
        for name in ("hue", "amazon_aqm"):
            wait_for(lambda n=name: collector_state(setup, n).get("state") == "ok", timeout=15)
        wait_for(lambda: not alert_files(setup), timeout=10)
        assert daemon.stop() == 0
        assert_no_secrets(setup, secrets_of(hue, aqm), stderr=daemon.stderr())
        assert_integrity_ok(setup.db)
        counts = assert_every_served_stored_once(setup, hue, aqm)
        injected = {f"hue.{k}": v for k, v in hue.faults.injected.items()}
        injected.update({f"aqm.{k}": v for k, v in aqm.faults.injected.items()})

    assert warm is not None
    assert end["rss_mib"] <= warm["rss_mib"] + 15, (warm, end)
    assert end["threads"] <= max(warm["threads"], 8) + 2, (warm, end)
    assert end["fds"] <= warm["fds"] + 4, (warm, end)
    log = setup.log_text()
    assert "Traceback" not in log
    assert log.count("reload: configuration from") == reloads
    polls = dict(setup.query("SELECT outcome, count(*) FROM polls GROUP BY outcome"))
    record_figures(
        f"soak ({duration:g} s, random faults on both sources, SIGHUP every 2-4 s)",
        duration_s=duration,
        polls=sum(polls.values()),
        outcomes=polls,
        faults=injected,
        reloads=reloads,
        start=warm,
        end=end,
        samples=len(samples),
        **counts,
    )


def test_log_rotation_with_json_keeps_backups_and_loses_or_splits_no_line(
    hue_sim, aqm_sim, setup_factory, daemons
) -> None:
    setup = setup_factory(hue=hue_sim, aqm=aqm_sim)
    setup.write(log={"level": "DEBUG", "format": "json", "max_bytes": 1024, "backups": 3})
    hue_sim.faults.set_random(seed=3, rate=0.8, kinds=("error_901", "reset", "garbage"))
    aqm_sim.faults.set_random(seed=4, rate=0.8, kinds=("http_503", "reset"))
    daemon = daemons(setup)
    log = setup.data / "homepoll.log"
    files = [log, *(log.with_name(f"homepoll.log.{n}") for n in (1, 2, 3))]
    wait_for(lambda: files[3].exists(), timeout=15)
    setup.write(log={"level": "DEBUG", "format": "json", "max_bytes": 1025, "backups": 3})
    daemon.signal(signal.SIGHUP)  # re-installs the handlers mid-rotation
    wait_for(lambda: "configuration from" in daemon.stderr(), timeout=5)
    mark = len(daemon.stderr())
    wait_for(lambda: len(daemon.stderr()) > mark + 3 * 1025, timeout=15)  # rotated again
    assert daemon.stop() == 0
    assert not log.with_name("homepoll.log.4").exists()

    stream = [line for line in daemon.stderr().splitlines() if line.strip()]
    for line in stream:
        json.loads(line)  # every stderr line is one JSON object too
    kept: list[str] = []
    for path in reversed(files):  # oldest first
        text = path.read_text(encoding="utf-8")
        assert text.endswith("\n"), f"{path.name} ends in the middle of a line"
        assert path.stat().st_size <= 1025 + max(len(x) for x in text.splitlines()) + 1
        kept.extend(text.splitlines())
    for line in kept:
        entry = json.loads(line)
        assert {"ts", "level", "logger", "message"} <= set(entry)
    # The files hold an unbroken tail of everything logged: nothing lost, nothing split.
    assert len(kept) > 10
    start = len(stream) - len(kept)
    assert start >= 0 and stream[start:] == kept
    record_figures(
        "log rotation (json, 1 KB files, 3 backups, SIGHUP mid-run)",
        lines_logged=len(stream),
        lines_kept=len(kept),
        lost_in_kept_span=0,
        split_lines=0,
    )
