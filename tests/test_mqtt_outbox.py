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
