"""Acceptance 2: every stored reading reaches an events subscriber, in order per series, with
no gap, across a stopped broker, a SIGKILLed broker and a SIGKILLed daemon mid-backlog.

``commit_interval: 1``: events follow storage commits, and at the shipped 300 s nothing
would be committed (so nothing queued) during a test-length outage; the pump under test is
the same at any cadence. test_mqtt_broker covers the shipped defaults otherwise.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from pathlib import Path

from homepoll.model import Reading, SensorKey
from homepoll.mqtt import outbox
from homepoll.mqtt.state import TopicBook
from homepoll.storage import Storage
from tests.conftest import Setup, wait_for
from tests.mqtt_support import Broker, Subscriber, needs_mosquitto
from tests.test_mqtt_broker import mqtt_setup

pytestmark = needs_mosquitto

BACKLOG_SERIES = 10
BACKLOG_PER_SERIES = 600


def _prefill(db: Path) -> int:
    """A stored backlog, as a long outage leaves it (written through the real Storage)."""
    storage = Storage(db, commit_interval=0)
    storage.open()
    conn = outbox.connect(db)
    outbox.start_capture(conn)
    base = int(time.time() * 1000) - 86_400_000
    for step in range(BACKLOG_PER_SERIES):
        batch = [
            Reading(
                "hue",
                f"backlog-{i}",
                f"Backlog {i}",
                "temperature",
                "degC",
                base + step * 60_000,
                20.0 + step / 100,
            )
            for i in range(BACKLOG_SERIES)
        ]
        storage.write(batch, base + step * 60_000, None)
    conn.close()
    storage.close()
    return BACKLOG_SERIES * BACKLOG_PER_SERIES


def _expected(setup: Setup) -> dict[str, list[int]]:
    """Events topic -> the stored readings' ts, in the order they were stored."""
    book = TopicBook("homepoll")
    for source, device_id, name, metric, _unit in setup.query(
        "SELECT source, device_id, name, metric, unit FROM sensors ORDER BY id"
    ):
        book.events_topic(SensorKey(source, device_id, metric), name)  # same slug order
    out: dict[str, list[int]] = defaultdict(list)
    rows = setup.query(
        "SELECT s.source, s.device_id, s.name, s.metric, v.ts FROM readings_view v"
        " JOIN sensors s USING (source, device_id, metric) ORDER BY v.ts"
    )
    for source, device_id, name, metric, ts in rows:
        out[book.events_topic(SensorKey(source, device_id, metric), name)].append(ts)
    return out


def _pending(setup: Setup) -> dict[str, set[int]]:
    """Events still in the outbox (after the cursor): queued for the next start, not lost."""
    book = TopicBook("homepoll")
    out: dict[str, set[int]] = defaultdict(set)
    for source, device_id, name, metric, ts in setup.query(
        "SELECT s.source, s.device_id, s.name, s.metric, o.ts FROM mqtt_outbox o"
        " JOIN sensors s ON s.id = o.sensor_id"
        " WHERE o.seq > (SELECT coalesce(max(seq), 0) FROM mqtt_cursor)"
    ):
        out[book.events_topic(SensorKey(source, device_id, metric), name)].add(ts)
    assert sum(map(len, out.values())) < 200, "more than the final flush left queued"
    return out


def _received(sub: Subscriber) -> dict[str, list[int]]:
    out: dict[str, list[int]] = defaultdict(list)
    for message in sub.snapshot():
        out[message.topic].append(json.loads(message.payload)["ts"])
    return out


def _mqtt_status(setup: Setup) -> dict:
    try:
        return json.loads((setup.data / "status.json").read_text()).get("mqtt") or {}
    except (OSError, ValueError):
        return {}


def _unique_count(sub: Subscriber) -> int:
    return len({(m.topic, m.payload) for m in sub.snapshot()})


def test_every_stored_reading_arrives_in_order_across_outages_and_kills(
    hue_sim, aqm_sim, setup_factory, daemons, tmp_path: Path
) -> None:
    broker = Broker(tmp_path / "broker").start()
    setup = setup_factory(hue=hue_sim, aqm=aqm_sim)
    mqtt_setup(setup, broker, events=True)
    setup.write(storage={"commit_interval": 1})
    backlog = _prefill(setup.db)
    try:
        with Subscriber(broker, "homepoll/+/+/events", client_id="events-watcher") as sub:
            daemon = daemons(setup)
            wait_for(lambda: _unique_count(sub) >= backlog // 4, timeout=30, every=0.01)
            daemon.kill()  # SIGKILL in the middle of the backlog
            daemon = daemons(setup)
            wait_for(lambda: _unique_count(sub) >= backlog // 2, timeout=30, every=0.01)
            broker.kill()  # SIGKILL the broker mid-backlog too
            broker.start()
            wait_for(sub.subscribed.is_set, timeout=10)
            wait_for(lambda: _unique_count(sub) >= backlog, timeout=60)
            broker.stop()  # a stretch of polls with the broker away: the backlog grows
            wait_for(lambda: _mqtt_status(setup).get("connected") is False, timeout=10)
            low = _mqtt_status(setup)["backlog"] or 0
            wait_for(lambda: (_mqtt_status(setup).get("backlog") or 0) > low + 5, timeout=10)
            time.sleep(2)
            broker.start()
            wait_for(sub.subscribed.is_set, timeout=10)
            wait_for(
                lambda: _mqtt_status(setup).get("connected") and not _mqtt_status(setup)["backlog"],
                timeout=30,
            )
            assert daemon.stop() == 0  # the final flush's events get 2 s to drain
            time.sleep(0.5)
        expected = _expected(setup)
        received = _received(sub)
        pending = _pending(setup)
    finally:
        broker.kill()
    assert sum(len(v) for v in expected.values()) > backlog + 50  # live readings too
    duplicates = 0
    for topic, stored in expected.items():
        got = received.get(topic, [])
        first_seen: list[int] = []
        seen: set[int] = set()
        for ts in got:
            if ts not in seen:
                seen.add(ts)
                first_seen.append(ts)
        duplicates += len(got) - len(first_seen)
        missing = set(stored) - seen - pending.get(topic, set())  # still queued is not lost
        assert not missing, (
            f"{topic}: {len(missing)} stored readings never arrived: {sorted(missing)[:3]}..,"
            f" received {got[-5:]}, outbox {setup.query('SELECT * FROM mqtt_cursor')}"
            f" {setup.query('SELECT count(*), min(seq), max(seq) FROM mqtt_outbox')}"
        )
        assert seen <= set(stored), f"{topic}: an event for a reading that is not stored"
        assert first_seen == sorted(first_seen), f"{topic}: out of order"
    assert set(received) <= set(expected)
    print(f"events: {sum(map(len, expected.values()))} stored, duplicates {duplicates}")
    log = setup.log_text()
    assert "connected again to the MQTT broker" in log
