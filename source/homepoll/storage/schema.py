"""The database's shape: tables, the migrations that build them, and the transaction helper."""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from collections.abc import Callable, Iterator

log = logging.getLogger("homepoll.storage")

ROW_COLUMNS = "sensor_id, ts, value, polled_at"

PAGE_SIZE = 1024
"""Bytes per page of a NEW database (SQLite's default is 4096).

The primary key (sensor_id, ts) keeps each sensor's newest rows in a page of their own, so a
commit rewrites one page per sensor that has a new reading (in the WAL, then again at the
checkpoint). Smaller pages cut those writes by about 40 % at the same bytes per reading
(docs/performance.md); a one-day query of one sensor stays under 3 ms at 10 M rows.
Existing files keep their page size (changing it needs a VACUUM)."""


class SchemaTooNewError(RuntimeError):
    """The file was written by a newer homepoll; refusing beats corrupting it."""


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """BEGIN IMMEDIATE (the write lock up front, so no deadlock upgrade) ... COMMIT, or
    ROLLBACK on any exception, which is re-raised."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        raise


def _migrate_v1(conn: sqlite3.Connection) -> None:
    """The DESIGN.md schema, verbatim, plus indexes.

    Index decisions (every index is one more B-tree written per insert, i.e. more SD-card
    page writes on every poll):
    - readings: no extra index. The WITHOUT ROWID primary key (sensor_id, ts) already serves
      "one sensor, one day" (a range seek), "latest value of every sensor" (one seek per
      sensor), the on_change lookup and prune (range delete per sensor). "All sensors since T"
      is answered with the sensors table as the outer loop (a few dozen rows) and one PK range
      seek per sensor, which is as fast as a ts index would be, so a ts index would roughly
      double the write cost of every reading for nothing.
    - polls: (collector, started_at) for "recent polls of a collector" and per-collector prune
      (dropped again in v2: it cost more SD-card writes than it saved time).
    """
    # One execute() per statement: executescript() would COMMIT the migration's transaction.
    script = """
        CREATE TABLE IF NOT EXISTS sensors (
          id INTEGER PRIMARY KEY,
          source TEXT NOT NULL,
          device_id TEXT NOT NULL,
          name TEXT NOT NULL,
          metric TEXT NOT NULL,
          unit TEXT NOT NULL,
          UNIQUE (source, device_id, metric)
        );
        CREATE TABLE IF NOT EXISTS readings (
          sensor_id INTEGER NOT NULL REFERENCES sensors(id),
          ts INTEGER NOT NULL,
          value REAL NOT NULL,
          polled_at INTEGER NOT NULL,
          PRIMARY KEY (sensor_id, ts)
        ) WITHOUT ROWID;
        CREATE TABLE IF NOT EXISTS polls (
          collector TEXT NOT NULL,
          started_at INTEGER NOT NULL,
          duration_ms INTEGER NOT NULL,
          attempts INTEGER NOT NULL,
          outcome TEXT NOT NULL,
          readings INTEGER NOT NULL,
          error TEXT
        );
        CREATE VIEW IF NOT EXISTS readings_view AS
          SELECT r.ts, s.source, s.device_id, s.name, s.metric, s.unit, r.value, r.polled_at
          FROM readings r JOIN sensors s ON s.id = r.sensor_id;
        CREATE INDEX IF NOT EXISTS polls_collector_started ON polls (collector, started_at);
    """
    for statement in script.split(";"):
        if statement.strip():
            conn.execute(statement)


def _migrate_v2(conn: sqlite3.Connection) -> None:
    """Drop the polls index: one more page written on every commit, for queries that do without.

    It cost about 9 MB/day of SD-card writes at default intervals (docs/performance.md).
    ``recent_polls`` walks the rowid backwards instead (rows arrive in time order), and prune
    scans polls (a few thousand rows a day) once every few hours.
    """
    conn.execute("DROP INDEX IF EXISTS polls_collector_started")


def _migrate_v3(conn: sqlite3.Connection) -> None:
    """New readings land in ``readings_recent`` first; ``readings_view`` shows both tables.

    ``readings`` is keyed (sensor_id, ts), so every commit rewrote one page per sensor with a
    new reading, twice (WAL, then checkpoint): about 20 MB/day of SD-card writes for 20 Hue
    sensors and one monitor. ``readings_recent`` is keyed (ts, sensor_id): new readings are
    the newest, so a commit appends to its last page or two. The writer moves its rows into
    ``readings`` in one sorted bulk transaction now and then (``writer.MERGE_INTERVAL``),
    which touches each sensor's pages once per move instead of once per commit. A row is in
    exactly one of the two tables, so the view is a plain UNION ALL.
    """
    conn.execute(
        """CREATE TABLE IF NOT EXISTS readings_recent (
          sensor_id INTEGER NOT NULL REFERENCES sensors(id),
          ts INTEGER NOT NULL,
          value REAL NOT NULL,
          polled_at INTEGER NOT NULL,
          PRIMARY KEY (ts, sensor_id)
        ) WITHOUT ROWID"""
    )
    conn.execute("DROP VIEW IF EXISTS readings_view")
    conn.execute(
        f"""CREATE VIEW readings_view AS
          SELECT r.ts, s.source, s.device_id, s.name, s.metric, s.unit, r.value, r.polled_at
          FROM (SELECT {ROW_COLUMNS} FROM readings
                UNION ALL SELECT {ROW_COLUMNS} FROM readings_recent) r
          JOIN sensors s ON s.id = r.sensor_id"""
    )


def _migrate_v4(conn: sqlite3.Connection) -> None:
    """The MQTT events outbox and its cursor (homepoll/mqtt/outbox.py explains both).

    Empty and never written unless ``mqtt.events`` is on: only then does the MQTT side add
    the trigger that fills ``mqtt_outbox`` in the same transaction as each new reading.
    """
    conn.execute(
        """CREATE TABLE IF NOT EXISTS mqtt_outbox (
          seq INTEGER PRIMARY KEY,
          sensor_id INTEGER NOT NULL,
          ts INTEGER NOT NULL,
          value REAL NOT NULL
        )"""
    )
    conn.execute(
        """CREATE TABLE IF NOT EXISTS mqtt_cursor (
          id INTEGER PRIMARY KEY CHECK (id = 1),
          seq INTEGER NOT NULL
        )"""
    )


# MIGRATIONS[i] brings a database from user_version i to i + 1. Append, never edit.
MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [
    _migrate_v1,
    _migrate_v2,
    _migrate_v3,
    _migrate_v4,
]
SCHEMA_VERSION = len(MIGRATIONS)


def migrate(conn: sqlite3.Connection) -> None:
    """Bring the open database to SCHEMA_VERSION, one transaction per step."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > len(MIGRATIONS):
        raise SchemaTooNewError(
            f"database schema version {version} is newer than this homepoll ({len(MIGRATIONS)})"
        )
    for target in range(version + 1, len(MIGRATIONS) + 1):
        with transaction(conn):
            MIGRATIONS[target - 1](conn)
            conn.execute(f"PRAGMA user_version = {target}")
        log.info("database schema migrated to version %d", target)


def count_recent(conn: sqlite3.Connection) -> int:
    """Rows in readings_recent (small by design: the writer keeps it under MERGE_ROWS)."""
    return int(conn.execute("SELECT count(*) FROM readings_recent").fetchone()[0])
