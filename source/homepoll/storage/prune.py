"""Retention: delete what is older than the horizon, in small steps, and only by a sane clock."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from typing import Any

from homepoll.storage.schema import transaction
from homepoll.timefmt import iso_utc

PRUNE_BATCH = 10_000
"""Rows per delete transaction: the writer never holds the lock (or grows the WAL) for long,
so a poll that arrives during a big prune waits milliseconds, not seconds."""


def delete_older(conn: sqlite3.Connection, cutoff_ms: int) -> Iterator[int]:
    """Delete readings and poll rows with a time before ``cutoff_ms``, and the MQTT events of
    such readings never published; yield readings deleted per transaction, so a caller knows
    how far it got when an SQLite error (which propagates) stops it.

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
    if conn.execute("SELECT 1 FROM mqtt_outbox LIMIT 1").fetchone():  # mqtt.events (v4)
        from homepoll.mqtt.outbox import drop_older  # plain SQL, no MQTT library

        drop_older(conn, cutoff_ms, PRUNE_BATCH)


def newest_polled_ms(conn: sqlite3.Connection) -> int | None:
    """The newest polled_at (or poll start) stored: the newest row per sensor in readings
    (one primary-key seek each), all of the small readings_recent, the last polls rows."""
    row = conn.execute(
        "SELECT max(p) FROM (SELECT max(polled_at) AS p FROM readings_recent"
        " UNION ALL SELECT (SELECT polled_at FROM readings WHERE sensor_id = s.id"
        " ORDER BY ts DESC LIMIT 1) FROM sensors s"
        " UNION ALL SELECT max(started_at) FROM (SELECT started_at FROM polls"
        " ORDER BY rowid DESC LIMIT 1000))"
    ).fetchone()
    return None if row is None or row[0] is None else int(row[0])


def _delete_batch(conn: sqlite3.Connection, sql: str, params: tuple[Any, ...]) -> int:
    with transaction(conn):
        return int(conn.execute(sql, params).rowcount)


DAY_MS = 86_400_000


class ClockGuard:
    """Says when the wall clock cannot be trusted to decide what is old enough to delete.

    A Raspberry Pi has no clock chip: it boots with the time saved at shutdown and steps when
    NTP answers, and a wrong date set by hand is one command away. Pruning by such a clock
    would delete a whole database ("older than 30 days" at a clock 40 days ahead). The guard
    refuses while the clock is before the newest stored reading (it is behind, or was ahead
    when that reading was stored), or more than ``slack_ms`` after that reading plus the time
    this process has run by the monotonic clock, which no clock step moves.

    Readings stored while the clock was implausibly far ahead do not move the reference, so
    pruning resumes as soon as the clock is sane again.
    """

    def __init__(
        self,
        newest_ms: int | None,
        *,
        mono: Callable[[], float] = time.monotonic,
        slack_ms: int = DAY_MS,
    ) -> None:
        self._anchor_ms = newest_ms  # newest polled_at when the process started
        self._anchor_mono = mono()
        self._newest_ms = newest_ms
        self._mono = mono
        self._slack_ms = slack_ms

    def _limit_ms(self) -> int | None:
        if self._anchor_ms is None:
            return None
        return self._anchor_ms + int((self._mono() - self._anchor_mono) * 1000) + self._slack_ms

    def stored(self, polled_at_ms: int) -> None:
        """Note a reading just committed; one from a clock far ahead is not taken as the new
        reference (the first one ever stored is, as there is nothing to compare it with)."""
        if self._anchor_ms is None:
            self._anchor_ms = polled_at_ms
            self._anchor_mono = self._mono()
        limit = self._limit_ms()
        if limit is not None and polled_at_ms > limit:
            return
        if self._newest_ms is None or polled_at_ms > self._newest_ms:
            self._newest_ms = polled_at_ms

    def problem(self, now_ms: int) -> str | None:
        """Why pruning at wall time ``now_ms`` would be unsafe, or None when it is safe."""
        if self._newest_ms is not None and now_ms < self._newest_ms:
            return (
                f"the wall clock ({_iso(now_ms)}) is before the newest stored reading (polled at"
                f" {_iso(self._newest_ms)}): it is behind now or was ahead then; pruning waits"
                " until the clock passes that time"
            )
        limit = self._limit_ms()
        if limit is not None and now_ms > limit:
            ahead = (now_ms - limit + self._slack_ms) / DAY_MS
            return (
                f"the wall clock ({_iso(now_ms)}) is {ahead:.1f} days past the newest stored"
                " reading plus this run's uptime: it may be wrong (no clock chip, no NTP yet);"
                " if it is right (the machine was off that long), pruning resumes after the"
                " next restart"
            )
        return None


def _iso(ms: int) -> str:
    return iso_utc(ms / 1000)
