"""The events outbox on a real Storage and SQLite file: captured in the reading's own
transaction, in database order, the cursor only moving on acknowledgement."""

from __future__ import annotations

from pathlib import Path

from homepoll.model import Reading
from homepoll.mqtt import outbox
from homepoll.storage import Storage


def _reading(ts: int, value: float, device: str = "d1", metric: str = "temperature") -> Reading:
    return Reading("hue", device, "Hall", metric, "degC", ts, value)


def _storage(tmp_path: Path, busy_timeout: float = 5.0) -> Storage:
    storage = Storage(tmp_path / "readings.db", commit_interval=0, busy_timeout=busy_timeout)
    storage.open()
    return storage


def test_every_new_row_is_queued_once_in_database_order(tmp_path: Path) -> None:
    storage = _storage(tmp_path)
    conn = outbox.connect(storage.path)
    outbox.start_capture(conn)
    storage.write([_reading(1000, 20.0), _reading(2000, 21.0, device="d2")], 5000, None)
    storage.write([_reading(1000, 20.0), _reading(500, 19.0)], 6000, None)  # a repeat, an older
    events = outbox.read_batch(conn, 0, 100)
    assert [(e.device_id, e.ts, e.value) for e in events] == [
        ("d1", 1000, 20.0),
        ("d2", 2000, 21.0),
        ("d1", 500, 19.0),  # stored later, so published later, although measured earlier
    ]
    assert [e.seq for e in events] == [1, 2, 3]
    assert outbox.backlog(conn) == 3
    storage.close()


def test_cursor_moves_only_on_acknowledge_and_never_reuses_a_seq(tmp_path: Path) -> None:
    storage = _storage(tmp_path)
    conn = outbox.connect(storage.path)
    outbox.start_capture(conn)
    storage.write([_reading(t, float(t)) for t in range(1, 6)], 9000, None)
    batch = outbox.read_batch(conn, outbox.cursor(conn), 2)
    assert outbox.cursor(conn) == 0  # read, not acknowledged: nothing moves
    outbox.acknowledge(conn, batch[-1].seq)
    assert outbox.cursor(conn) == 2 and outbox.backlog(conn) == 3
    outbox.acknowledge(conn, 5)
    assert outbox.backlog(conn) == 0
    # everything acknowledged: the newest row stays, so new readings continue after it
    storage.write([_reading(10, 1.0)], 9500, None)
    fresh = outbox.read_batch(conn, outbox.cursor(conn), 10)
    assert [e.seq for e in fresh] == [6]
    assert conn.execute("SELECT count(*) FROM mqtt_outbox").fetchone()[0] == 2
    outbox.acknowledge(conn, 3)  # a late, older acknowledgement never moves it back
    assert outbox.cursor(conn) == 5
    storage.close()


def test_a_rolled_back_write_queues_nothing(tmp_path: Path) -> None:
    storage = _storage(tmp_path, busy_timeout=0)
    conn = outbox.connect(storage.path)
    outbox.start_capture(conn)
    conn.execute("BEGIN IMMEDIATE")  # another writer holds the lock: the write fails
    result = storage.write([_reading(1, 1.0)], 1000, None)
    assert result.error is not None
    conn.execute("ROLLBACK")
    assert outbox.read_batch(conn, 0, 10) == []
    storage.flush()  # now it lands, and is queued exactly once
    assert [e.ts for e in outbox.read_batch(conn, 0, 10)] == [1]
    storage.close()


def test_events_off_drops_the_trigger(tmp_path: Path) -> None:
    storage = _storage(tmp_path)
    conn = outbox.connect(storage.path)
    outbox.start_capture(conn)
    outbox.drop_capture(storage.path)
    storage.write([_reading(1, 1.0)], 1000, None)
    assert outbox.read_batch(conn, 0, 10) == []
    assert outbox.backlog(conn) == 0
    storage.close()


# --------------------------------------------------------------------------- retention

DAY = 86_400_000
NOW = 400 * DAY


def _queued(conn) -> list[int]:
    """The ts of every event still to publish, in outbox order."""
    return [e.ts for e in outbox.read_batch(conn, outbox.cursor(conn), 1_000_000)]


def test_prune_drops_only_unpublished_events_older_than_retention(tmp_path: Path, caplog) -> None:
    storage = _storage(tmp_path)
    conn = outbox.connect(storage.path)
    outbox.start_capture(conn)
    days_ago = [45, 40, 35, 31, 29, 10, 1]
    for n in days_ago:  # one commit each, in time order, as a long outage leaves them
        storage.write([_reading(NOW - n * DAY, float(n))], NOW - n * DAY, None)
    outbox.acknowledge(conn, 1)  # the 45-day-old one went out before the broker left
    assert storage.prune(30, NOW) == 4  # readings older than 30 days
    assert outbox.cursor(conn) == 4  # past the three unpublished old ones, no further
    assert _queued(conn) == [NOW - n * DAY for n in (29, 10, 1)]  # none within retention lost
    assert outbox.backlog(conn) == 3
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "3 readings older than" in warnings[0].getMessage()
    assert "never published" in warnings[0].getMessage()
    # the guard row at the cursor stays: a new reading continues after it, never below
    assert conn.execute("SELECT min(seq), count(*) FROM mqtt_outbox").fetchone() == (4, 4)
    storage.write([_reading(NOW, 0.5)], NOW, None)
    assert [e.seq for e in outbox.read_batch(conn, outbox.cursor(conn), 10)] == [5, 6, 7, 8]
    # a late old reading behind newer ones is published, not dropped (it is rare, and the
    # outbox is otherwise in time order)
    storage.write([_reading(NOW - 31 * DAY + 1, 7.0)], NOW, None)
    caplog.clear()
    storage.prune(30, NOW)
    assert _queued(conn)[-1] == NOW - 31 * DAY + 1 and not caplog.records
    storage.close()


def test_all_events_older_than_retention_dropped_and_seq_goes_on(tmp_path: Path) -> None:
    storage = _storage(tmp_path)
    conn = outbox.connect(storage.path)
    outbox.start_capture(conn)
    for n in range(3):
        storage.write([_reading(NOW - (40 - n) * DAY, 1.0)], NOW - (40 - n) * DAY, None)
    assert outbox.drop_older(conn, NOW - 30 * DAY, batch=1) == 3
    assert outbox.cursor(conn) == 3 and outbox.backlog(conn) == 0
    assert conn.execute("SELECT seq FROM mqtt_outbox").fetchall() == [(3,)]  # the guard
    storage.write([_reading(NOW, 2.0)], NOW, None)
    assert [(e.seq, e.ts) for e in outbox.read_batch(conn, outbox.cursor(conn), 10)] == [(4, NOW)]
    assert outbox.drop_older(conn, NOW - 30 * DAY) == 0  # nothing more to drop
    storage.close()


def test_months_without_a_broker_keep_the_outbox_to_the_retention(tmp_path: Path) -> None:
    storage = _storage(tmp_path)
    conn = outbox.connect(storage.path)
    outbox.start_capture(conn)
    hours = range(24)
    for day in range(120):  # four months, pruned daily (the daemon prunes every 6 h)
        now = NOW + day * DAY
        start = now - DAY
        storage.write(
            [_reading(start + h * 3_600_000, float(h), device=d) for h in hours for d in "ab"],
            now,
            None,
        )
        storage.prune(30, now)
        rows = conn.execute("SELECT count(*) FROM mqtt_outbox").fetchone()[0]
        assert rows <= 31 * 48 + 1  # bounded by the retention, whatever the outage
        within = conn.execute(
            "SELECT count(*) FROM readings_view WHERE ts >= ?", (now - 30 * DAY,)
        ).fetchone()[0]
        assert len(_queued(conn)) == within  # every reading within retention still queued
    storage.close()
