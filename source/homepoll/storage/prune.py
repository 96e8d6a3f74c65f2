"""Deleting readings and poll rows older than the retention horizon, a little at a time."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from typing import Any

from homepoll.storage.schema import transaction

PRUNE_BATCH = 10_000
"""Rows per delete transaction: the writer never holds the lock (or grows the WAL) for long,
so a poll that arrives during a big prune waits milliseconds, not seconds."""


def delete_older(conn: sqlite3.Connection, cutoff_ms: int) -> Iterator[int]:
    """Delete readings and poll rows with a time before ``cutoff_ms``; yield readings deleted
    per transaction, so a caller knows how far it got when an SQLite error (which propagates)
    stops it.

    Deletes by primary-key range, per sensor, in small transactions.
    """
    sensor_ids = [row[0] for row in conn.execute("SELECT id FROM sensors")]
    for sensor_id in sensor_ids:
        while True:
            n = _delete_batch(
                conn,
                "DELETE FROM readings WHERE sensor_id = ?1 AND ts IN (SELECT ts FROM"
                " readings WHERE sensor_id = ?1 AND ts < ?2 ORDER BY ts LIMIT ?3)",
                (sensor_id, cutoff_ms, PRUNE_BATCH),
            )
            yield n
            if n < PRUNE_BATCH:
                break
    # readings_recent holds the newest readings: this matters only after the clock stepped
    # back, or with a retention shorter than the writer's MERGE_INTERVAL.
    yield _delete_batch(conn, "DELETE FROM readings_recent WHERE ts < ?1", (cutoff_ms,))
    # polls rows arrive in time order: the oldest are the first rowids, no index needed.
    while (
        _delete_batch(
            conn,
            "DELETE FROM polls WHERE rowid IN (SELECT rowid FROM polls WHERE"
            " started_at < ?1 ORDER BY rowid LIMIT ?2)",
            (cutoff_ms, PRUNE_BATCH),
        )
        >= PRUNE_BATCH
    ):
        pass


def _delete_batch(conn: sqlite3.Connection, sql: str, params: tuple[Any, ...]) -> int:
    with transaction(conn):
        return int(conn.execute(sql, params).rowcount)
