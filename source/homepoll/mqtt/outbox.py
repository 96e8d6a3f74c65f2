"""The events outbox: which stored readings the broker has not acknowledged yet.

A trigger copies every row that lands in ``readings_recent`` (every new reading goes there
first) into ``mqtt_outbox``, in the same transaction as the reading itself, so a reading is
stored and queued for MQTT together or not at all. ``seq`` is the database's own order.
``mqtt_cursor`` holds the last ``seq`` the broker acknowledged; it moves only after the
acknowledgement, and rows behind it are deleted except the newest, which keeps SQLite from
handing out a ``seq`` below the cursor again. The trigger exists only while
``mqtt.events`` is on, so with events off a reading costs nothing extra.

Retention (``drop_older``, run by storage's prune): events of readings older than
``storage.retention_days`` that the broker never acknowledged are dropped by moving the
cursor past them, so a broker gone for months does not grow the outbox without bound and
``seq`` keeps having no holes after the cursor.

No MQTT library here: the daemon calls ``drop_capture`` with MQTT off. The tables are created by the
storage schema (migration 4).
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from homepoll.storage.schema import transaction

log = logging.getLogger("homepoll.mqtt")

TRIGGER = "mqtt_outbox_capture"
_CREATE_TRIGGER = f"""CREATE TRIGGER IF NOT EXISTS {TRIGGER} AFTER INSERT ON readings_recent
BEGIN
  INSERT INTO mqtt_outbox (sensor_id, ts, value) VALUES (new.sensor_id, new.ts, new.value);
END"""
_BATCH_SQL = (
    "SELECT o.seq, o.ts, o.value, s.source, s.device_id, s.name, s.metric, s.unit"
    " FROM mqtt_outbox o JOIN sensors s ON s.id = o.sensor_id"
    # the stored cursor too: the prune may have moved it past old events (drop_older)
    " WHERE o.seq > max(?, coalesce((SELECT seq FROM mqtt_cursor WHERE id = 1), 0))"
    " ORDER BY o.seq LIMIT ?"
)


@dataclass(frozen=True, slots=True)
class Event:
    seq: int
    ts: int
    value: float
    source: str
    device_id: str
    name: str
    metric: str
    unit: str


def connect(path: Path) -> sqlite3.Connection:
    """A connection of the events pump's own (WAL: reads never block the writer)."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10.0)
    conn.execute("PRAGMA busy_timeout = 10000")
    # As the writer: WAL + NORMAL survives a crash of the process; a power cut may roll the
    # cursor back a little, which repeats events and never skips one.
    conn.execute("PRAGMA synchronous = NORMAL")
    return conn


def start_capture(conn: sqlite3.Connection) -> None:
    """Add the trigger that fills the outbox (the tables come with schema version 4)."""
    conn.execute(_CREATE_TRIGGER)


def drop_capture(path: Path) -> None:
    """With events off: stop queueing readings (one look at the schema when nothing to do)."""
    path = Path(path)
    if not path.is_file():
        return
    conn = sqlite3.connect(path, isolation_level=None, timeout=10.0)
    try:
        found = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'trigger' AND name = ?", (TRIGGER,)
        ).fetchone()
        if found:
            conn.execute(f"DROP TRIGGER IF EXISTS {TRIGGER}")
    finally:
        conn.close()


def cursor(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT seq FROM mqtt_cursor WHERE id = 1").fetchone()
    return int(row[0]) if row else 0


def backlog(conn: sqlite3.Connection) -> int:
    """Readings stored but not yet acknowledged (seq has no holes: see the module doc)."""
    newest = conn.execute("SELECT max(seq) FROM mqtt_outbox").fetchone()[0]
    return max(0, int(newest or 0) - cursor(conn))


def read_batch(conn: sqlite3.Connection, after: int, limit: int) -> list[Event]:
    return [Event(*row) for row in conn.execute(_BATCH_SQL, (after, limit))]


def acknowledge(conn: sqlite3.Connection, seq: int) -> None:
    """The broker has every event up to ``seq``: move the cursor, drop what is behind it."""
    with transaction(conn):
        _move_cursor(conn, seq)
        conn.execute("DELETE FROM mqtt_outbox WHERE seq < ?", (seq,))


def _move_cursor(conn: sqlite3.Connection, seq: int) -> None:
    """Forward only: a late, older acknowledgement never moves it back."""
    conn.execute(
        "INSERT INTO mqtt_cursor (id, seq) VALUES (1, ?)"
        " ON CONFLICT (id) DO UPDATE SET seq = max(seq, excluded.seq)",
        (seq,),
    )


def drop_older(conn: sqlite3.Connection, cutoff_ms: int, batch: int = 10_000) -> int:
    """Retention: drop the unacknowledged events at the head of the outbox whose reading is
    older than ``cutoff_ms`` (unix ms); return how many were never published (one WARNING).

    The cursor moves to just before the first unacknowledged event still within retention
    (or to the newest event when none is), so nothing within retention is skipped and the
    newest row stays as the guard against ``seq`` reuse. The outbox is in database order,
    which is time order but for a reading stored late (a spool replayed days after): such an
    old event behind a newer one stays and is published; there are few of them.
    Rows behind the cursor are deleted ``batch`` at a time (short write locks).
    """
    with transaction(conn):
        after = cursor(conn)
        newest = conn.execute("SELECT max(seq) FROM mqtt_outbox").fetchone()[0]
        kept = conn.execute(
            "SELECT seq FROM mqtt_outbox WHERE seq > ? AND ts >= ? ORDER BY seq LIMIT 1",
            (after, cutoff_ms),
        ).fetchone()
        upto = kept[0] - 1 if kept else int(newest or 0)
        dropped = max(0, upto - after)
        if dropped:
            _move_cursor(conn, upto)
    while True:
        with transaction(conn):
            deleted = conn.execute(
                "DELETE FROM mqtt_outbox WHERE seq IN (SELECT seq FROM mqtt_outbox WHERE seq <"
                " (SELECT seq FROM mqtt_cursor WHERE id = 1) ORDER BY seq LIMIT ?)",
                (batch,),
            ).rowcount
        if deleted < batch:
            break
    if dropped:
        log.warning(
            "MQTT events: %d readings older than storage.retention_days were never published"
            " (the broker was away longer than that); they were dropped from the outbox and"
            " are no longer in the database either",
            dropped,
        )
    return dropped
