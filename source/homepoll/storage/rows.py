"""One poll's readings and poll row as SQL rows, inserted inside the writer's open transaction."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field

from homepoll.model import Reading, SensorKey
from homepoll.storage.schema import ROW_COLUMNS

# A reading goes into readings_recent unless readings already has it (merged earlier); the
# primary key of readings_recent ignores a repeat of a row it holds itself.
_INSERT_SQL = (
    f"INSERT OR IGNORE INTO readings_recent ({ROW_COLUMNS}) SELECT ?1, ?2, ?3, ?4"
    " WHERE NOT EXISTS (SELECT 1 FROM readings WHERE sensor_id = ?1 AND ts = ?2)"
)
# The newest stored row of one sensor, wherever it is.
_NEWEST_SQL = (
    "SELECT ts, value FROM (SELECT ts, value FROM readings WHERE sensor_id = ?1"
    " ORDER BY ts DESC LIMIT 1) UNION ALL SELECT ts, value FROM (SELECT ts, value"
    " FROM readings_recent WHERE sensor_id = ?1 ORDER BY ts DESC LIMIT 1)"
    " ORDER BY ts DESC LIMIT 1"
)
_POLL_SQL = (
    "INSERT INTO polls (collector, started_at, duration_ms, attempts, outcome, readings, error)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)

# SensorKey -> (id, name, unit) of a known sensor.
SensorIds = dict[SensorKey, tuple[int, str, str]]
# SensorKey -> (ts, value) of its newest stored row, None when it has none (on_change only).
NewestValues = dict[SensorKey, tuple[int, float] | None]


@dataclass
class PollRecord:
    """One ``polls`` row; ``readings`` (new rows stored) is filled in by storage at flush."""

    collector: str
    started_at: int  # unix ms UTC
    duration_ms: int
    attempts: int
    outcome: str
    error: str | None = None


@dataclass
class Batch:
    """Readings of one write() kept together so their poll row can count what they stored."""

    polled_at: int
    poll: PollRecord | None
    readings: list[Reading] = field(default_factory=list)


def insert_batch(
    conn: sqlite3.Connection, batch: Batch, sensors: SensorIds, newest: NewestValues
) -> int:
    """Insert one poll's readings and its poll row; return the new reading rows.

    Readings with a source timestamp go in with one executemany (the primary keys make a
    re-read a no-op); on-change ones are compared with the newest stored value one by one.
    ``sensors`` and ``newest`` are updated as rows go in: pass copies, and keep them only
    once the transaction has committed.
    """
    polled_at = batch.polled_at
    rows = []
    new = 0
    for r in batch.readings:
        key = r.key
        if r.on_change:
            new += _insert_on_change(conn, r, key, polled_at, sensors, newest)
        else:
            rows.append((_sensor_id(conn, r, key, sensors), r.ts, r.value, polled_at))
    if rows:
        new += conn.executemany(_INSERT_SQL, rows).rowcount
    p = batch.poll
    if p is not None:
        conn.execute(
            _POLL_SQL,
            (p.collector, p.started_at, p.duration_ms, p.attempts, p.outcome, new, p.error),
        )
    return new


def _insert_on_change(
    conn: sqlite3.Connection,
    r: Reading,
    key: SensorKey,
    polled_at: int,
    sensors: SensorIds,
    newest: NewestValues,
) -> int:
    """Store an on-change reading unless it equals the newest stored value; 1 if stored."""
    sensor_id = _sensor_id(conn, r, key, sensors)
    if key not in newest:
        row = conn.execute(_NEWEST_SQL, (sensor_id,)).fetchone()
        newest[key] = (row[0], row[1]) if row else None
    known = newest[key]
    if known is not None and known[1] == r.value:
        return 0
    if conn.execute(_INSERT_SQL, (sensor_id, r.ts, r.value, polled_at)).rowcount != 1:
        return 0
    # Compared with the value stored last even when its ts is older: after the wall clock
    # stepped back, comparing with the "newest" (future) row would store every poll.
    newest[key] = (r.ts, r.value)
    return 1


def _sensor_id(conn: sqlite3.Connection, r: Reading, key: SensorKey, sensors: SensorIds) -> int:
    """The sensor's id, created on first sight; a renamed sensor or changed unit is updated."""
    cached = sensors.get(key)
    if cached is not None and cached[1] == r.name and cached[2] == r.unit:
        return cached[0]
    row = conn.execute(
        "SELECT id, name, unit FROM sensors WHERE source = ? AND device_id = ? AND metric = ?",
        (r.source, r.device_id, r.metric),
    ).fetchone()
    if row is None:
        cur = conn.execute(
            "INSERT INTO sensors (source, device_id, name, metric, unit) VALUES (?, ?, ?, ?, ?)",
            (r.source, r.device_id, r.name, r.metric, r.unit),
        )
        sensor_id = int(cur.lastrowid or 0)
    else:
        sensor_id = row[0]
        if (row[1], row[2]) != (r.name, r.unit):
            conn.execute(
                "UPDATE sensors SET name = ?, unit = ? WHERE id = ?", (r.name, r.unit, sensor_id)
            )
    sensors[key] = (sensor_id, r.name, r.unit)
    return sensor_id
