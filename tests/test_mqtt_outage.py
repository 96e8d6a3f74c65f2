"""Acceptance 2 at the SHIPPED defaults: every measurement the simulators served reaches an
events subscriber, in order per series, with no gap, across a stopped broker, a SIGKILLed
daemon with readings waiting for their commit, and a broker SIGKILLed mid-backlog.

The daemon runs with the config's own ``commit_interval`` (300 s): its first poll is
committed at once, later readings wait in memory and the spool (storage/spool.py) until a
SIGHUP, a SIGTERM or the next start after a SIGKILL commits them, and the outbox trigger
queues them for MQTT in that commit. A stored backlog of 6,000 readings (what a long outage
leaves) makes the drain long enough to kill the broker in the middle of it.

And a broker gone longer than ``storage.retention_days``: the daemon's prune drops only the
events older than that (one WARNING with the count), and the rest still goes out.
"""

from __future__ import annotations

import json
import re
import signal
import time
from collections import defaultdict
from pathlib import Path

import pytest

from homepoll.model import Reading, SensorKey
from homepoll.mqtt import outbox
from homepoll.mqtt.events import BATCH
from homepoll.mqtt.state import TopicBook
from homepoll.storage import Storage
from tests.conftest import Setup, shipped_defaults, wait_for
from tests.mqtt_support import Broker, Subscriber, needs_mosquitto
from tests.reliability_support import (
    ON_CHANGE_METRICS,
    served_map,
    stored_rows,
)
from tests.test_mqtt_broker import mqtt_setup
from tests.test_reliability_durability import in_flight_at_kills

pytestmark = needs_mosquitto

BACKLOG_SERIES = 10
BACKLOG_PER_SERIES = 600
Key = tuple[str, str, str]  # (source, device_id, metric)


def _prefill(db: Path) -> dict[Key, list[int]]:
    """A stored backlog, as a long outage leaves it (written through the real Storage, with
    the outbox trigger the daemon left in the file); returns its ts per series."""
    storage = Storage(db, commit_interval=0)
    storage.open()
    conn = outbox.connect(db)
    outbox.start_capture(conn)
    base = int(time.time() * 1000) - 86_400_000
    written: dict[Key, list[int]] = defaultdict(list)
    for step in range(BACKLOG_PER_SERIES):
        ts = base + step * 60_000
        batch = [
            Reading("hue", f"backlog-{i}", f"Backlog {i}", "temperature", "degC", ts, step / 100)
            for i in range(BACKLOG_SERIES)
        ]
        storage.write(batch, ts, None)
        for reading in batch:
            written[("hue", reading.device_id, "temperature")].append(ts)
    conn.close()
    storage.close()
    return written


def _topics(setup: Setup) -> dict[Key, str]:
    """Series -> events topic, slugged in the daemon's order (first stored, first named)."""
    book = TopicBook("homepoll")
    return {
        (source, device_id, metric): book.events_topic(SensorKey(source, device_id, metric), name)
        for source, device_id, name, metric in setup.query(
            "SELECT source, device_id, name, metric FROM sensors ORDER BY id"
        )
    }


def _received(sub: Subscriber) -> dict[str, list[tuple[int, float]]]:
    out: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for message in sub.snapshot():
        body = message.json()
        out[message.topic].append((body["ts"], body["value"]))
    return out


def _mqtt_status(setup: Setup) -> dict:
    try:
        return json.loads((setup.data / "status.json").read_text()).get("mqtt") or {}
    except (OSError, ValueError):
        return {}


def _unique_count(sub: Subscriber, part: str = "") -> int:
    return len({(m.topic, m.payload) for m in sub.snapshot() if part in m.topic})


def _polls(sim, count: int) -> None:
    """Wait until ``count`` more requests reached the simulator (one per poll)."""
    seen = len(sim.faults.arrivals)
    wait_for(lambda: len(sim.faults.arrivals) >= seen + count, timeout=15)


def _settled(sub: Subscriber) -> None:
    """Wait until no message arrived for half a second (the final drain's last ones)."""
    last = [-1]

    def quiet() -> bool:
        count = len(sub.snapshot())
        done = count == last[0]
        last[0] = count
        return done

    wait_for(quiet, timeout=10, every=0.5)


def _outbox_left(setup: Setup) -> int:
    rows = setup.query(
        "SELECT coalesce(max(seq), 0) - coalesce((SELECT seq FROM mqtt_cursor), 0) FROM mqtt_outbox"
    )
    return rows[0][0] if rows else 0


def test_every_served_measurement_is_published_in_order_across_outages_and_kills(
    hue_sim, aqm_sim, setup_factory, daemons, tmp_path: Path
) -> None:
    broker = Broker(tmp_path / "broker", persistence=True).start()
    setup = shipped_defaults(setup_factory(hue=hue_sim, aqm=aqm_sim))
    mqtt_setup(setup, broker, events=True)
    try:
        with Subscriber(broker, "homepoll/+/+/events", client_id="events-watcher") as sub:
            daemon = daemons(setup)
            wait_for(lambda: _unique_count(sub), timeout=20)  # the first poll: committed at once
            broker.stop()  # a stretch of polls with the broker away
            wait_for(lambda: _mqtt_status(setup).get("connected") is False, timeout=10)
            _polls(hue_sim, 2)
            daemon.signal(signal.SIGHUP)  # commits what waited: queued in the outbox with it
            wait_for(lambda: (_mqtt_status(setup).get("backlog") or 0) > 0, timeout=10)
            _polls(hue_sim, 2)  # these wait in memory and the spool
            killed = [time.time()]
            daemon.kill()  # SIGKILL while a backlog waits, part of it not even committed
            backlog = _prefill(setup.db)
            total = sum(map(len, backlog.values()))
            broker.start()
            daemon = daemons(setup)  # replays the spool: committed and queued for MQTT
            wait_for(lambda: _unique_count(sub, "/backlog") >= total // 3, timeout=30, every=0.01)
            broker.kill()  # SIGKILL the broker in the middle of the drain
            assert _unique_count(sub, "/backlog") < total, "the drain ended before the kill"
            broker.start()
            wait_for(
                lambda: _mqtt_status(setup).get("connected") and not _mqtt_status(setup)["backlog"],
                timeout=30,
            )
            daemon.signal(signal.SIGHUP)
            _polls(hue_sim, 2)
            assert daemon.stop() == 0  # commits the rest; its events get 2 s to drain
            _settled(sub)
            left = _outbox_left(setup)
        received = _received(sub)
    finally:
        broker.kill()
    log = setup.log_text()
    assert "connected again to the MQTT broker" in log
    recovered = re.search(r"did not stop cleanly.*recovered (\d+) readings", log)
    assert recovered and int(recovered[1]) > 0, "the SIGKILL left nothing in the spool"
    assert left == 0, f"{left} events still queued after the final stop's drain"

    stored_keys = {(s, d, m, ts) for s, d, m, ts, _ in stored_rows(setup)}
    served = served_map(hue_sim, aqm_sim)
    excused = in_flight_at_kills(
        [k for k in served if k not in stored_keys], killed, {"hue": hue_sim, "amazon_aqm": aqm_sim}
    )
    expected: dict[str, dict[int, float | None]] = defaultdict(dict)
    topics = _topics(setup)
    for (source, device_id, metric, ts), value in served.items():
        if (source, device_id, metric, ts) not in excused:
            expected[topics[(source, device_id, metric)]][ts] = value
    for key, stamps in backlog.items():
        expected[topics[key]].update(dict.fromkeys(stamps))
    on_change = {topics[k] for k in topics if k[2] in ON_CHANGE_METRICS}

    duplicates = 0
    for topic, events in received.items():
        stamps = [ts for ts, _ in events]
        first_seen = list(dict.fromkeys(stamps))
        duplicates += len(stamps) - len(first_seen)
        assert first_seen == sorted(first_seen), f"{topic}: out of order"
        if topic not in on_change:
            extra = set(first_seen) - set(expected[topic])
            assert not extra, f"{topic}: events for readings never served: {sorted(extra)[:3]}"
    for topic, want in expected.items():
        got = {ts: value for ts, value in received.get(topic, [])}
        missing = sorted(set(want) - set(got))
        assert not missing, f"{topic}: {len(missing)} served, never published: {missing[:3]}"
        for ts, value in want.items():
            if value is not None:
                assert got[ts] == pytest.approx(value, rel=1e-3, abs=0.01), (topic, ts)
    print(
        f"events: {len(served)} served ({len(excused)} in flight at the SIGKILL),"
        f" {total} backlog, all published; duplicates {duplicates}"
    )
    # Only the batches in flight at the broker's stop and kill may be repeated.
    assert duplicates <= 2 * BATCH


def test_a_broker_gone_longer_than_the_retention_loses_only_older_events(
    hue_sim, setup_factory, daemons, tmp_path: Path
) -> None:
    broker = Broker(tmp_path / "broker", persistence=True).start()
    setup = shipped_defaults(setup_factory(hue=hue_sim))
    mqtt_setup(setup, broker, events=True)
    setup.write(storage={"retention_days": 30})
    now = int(time.time() * 1000)
    # days ago -> within retention (the newest half a day old: the prune's clock check)
    days_ago = {45: False, 40: False, 31: False, 20: True, 0.5: True}
    storage = Storage(setup.db, commit_interval=0)
    storage.open()
    outbox.start_capture(outbox.connect(setup.db))
    for days in days_ago:  # queued while the broker was away, one commit each, in time order
        ts = now - int(days * 86_400_000)
        storage.write([Reading("hue", "seed-1", "Seed", "temperature", "degC", ts, 1.0)], ts, None)
    storage.close()
    try:
        with Subscriber(broker, "homepoll/seed/+/events", client_id="events-watcher") as sub:
            broker.stop()  # keeps the watcher's session for when it is back
            daemon = daemons(setup, HOMEPOLL_TEST_PRUNE_EVERY="1")
            wait_for(lambda: "were never published" in setup.log_text(), timeout=15)
            broker.start()
            kept = sorted(now - int(d * 86_400_000) for d, keep in days_ago.items() if keep)
            wait_for(lambda: _unique_count(sub) >= len(kept), timeout=15)
            assert daemon.stop() == 0
            _settled(sub)
        received = [ts for ts, _ in _received(sub)["homepoll/seed/temperature/events"]]
    finally:
        broker.kill()
    assert sorted(set(received)) == kept  # all within retention, in order; nothing older
    warnings = [line for line in setup.log_text().splitlines() if "never published" in line]
    assert len(warnings) == 1 and "WARNING" in warnings[0]
    assert " 3 readings older than storage.retention_days" in warnings[0]
