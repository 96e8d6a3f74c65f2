"""SQLite storage: open/migrate, buffered writes that survive a full or locked disk, prune, read.

Written for a Raspberry Pi SD card: one transaction per flush (never per reading), WAL with
synchronous=NORMAL, and a bounded in-memory queue so a failing disk never loses readings
silently. ``Storage`` is used from one dedicated writer thread; the read-side functions open
the file read-only so the CLI never creates or write-locks the daemon's database.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from homepoll.model import Reading, SensorKey

log = logging.getLogger("homepoll.storage")

SCHEMA_VERSION = 1
PRUNE_BATCH = 10_000
# Above this size an exact COUNT(*) of readings would read most of the file (seconds on an SD
# card), so database_summary() leaves the count out.
_COUNT_LIMIT_BYTES = 64 * 1024 * 1024
_SIDE_FILES = ("-wal", "-shm")
# Primary result codes (the low byte of sqlite_errorcode) meaning "this file is not a sane db".
_SQLITE_CORRUPT = 11
_SQLITE_NOTADB = 26
# Failures after which the next attempt starts on a fresh connection (read-only, I/O, cantopen).
_RECONNECT_CODES = frozenset({8, 10, 14})


# --------------------------------------------------------------------------- schema


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
      (dropped again in v2: measured, it cost more SD-card writes than it saved time).
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

    Measured (bench/experiments.py flash): about 9 MB/day of SD-card writes at default
    intervals. ``recent_polls`` walks the rowid backwards instead (rows arrive in time order),
    and prune scans polls (a few thousand rows a day) once every few hours.
    """
    conn.execute("DROP INDEX IF EXISTS polls_collector_started")


_ROW_COLUMNS = "sensor_id, ts, value, polled_at"


def _migrate_v3(conn: sqlite3.Connection) -> None:
    """New readings land in ``readings_recent`` first; ``readings_view`` shows both tables.

    ``readings`` is keyed (sensor_id, ts), so every commit rewrote one page per sensor with a
    new reading, twice (WAL, then checkpoint): about 20 MB/day of SD-card writes for 20 Hue
    sensors and one monitor. ``readings_recent`` is keyed (ts, sensor_id): new readings are
    the newest, so a commit appends to its last page or two. ``Storage`` moves its rows into
    ``readings`` in one sorted bulk transaction twice a day or every ``MERGE_ROWS`` rows
    (``MERGE_INTERVAL``), which touches each sensor's pages once per move instead of once
    per commit. A row is in exactly one of the two tables, so the view is a plain UNION ALL.
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
          FROM (SELECT {_ROW_COLUMNS} FROM readings
                UNION ALL SELECT {_ROW_COLUMNS} FROM readings_recent) r
          JOIN sensors s ON s.id = r.sensor_id"""
    )


# MIGRATIONS[i] brings a database from user_version i to i + 1. Append, never edit.
MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_migrate_v1, _migrate_v2, _migrate_v3]

MERGE_INTERVAL = 12 * 3600.0
"""Seconds between moves of ``readings_recent`` into ``readings`` (see ``_migrate_v3``).

A move rewrites three or four pages per sensor (B-tree balancing touches the neighbours),
whether it carries one row per sensor or a hundred: about 0.5 MB for 20 Hue sensors and a
monitor. Twice a day that is 1 MB/day, against about 2 MB a day for 4 moves; queries cost
the same either way (MERGE_ROWS bounds readings_recent), and nothing is less durable:
both tables are committed alike."""
MERGE_ROWS = 5000
"""...or sooner once ``readings_recent`` holds this many rows: queries of the newest values
scan it (it is keyed by time), so its size is bounded (about 1.5 ms more for "latest of
every sensor" at this size; bench/run.py)."""

PAGE_SIZE = 1024
"""Bytes per page of a NEW database (SQLite's default is 4096).

The primary key (sensor_id, ts) keeps each sensor's newest rows in a page of their own, so a
commit rewrites one page per sensor that has a new reading (in the WAL, then again at the
checkpoint). Smaller pages cut those writes by about 40 % at the same bytes per reading
(bench/experiments.py flash); a one-day query of one sensor stays under 3 ms at 10 M rows.
Existing files keep their page size (changing it needs a VACUUM)."""


CACHE_KIB = 256
"""SQLite page cache of the writer connection (SQLite's default is 2,000 KiB).

A poll touches the newest page of each sensor plus a few interior pages, a few dozen KiB;
the default cache only fills up with history the writer never needs again. Measured
(bench/_rss_levers.py, 3-day-old database): 1.5 MB less resident memory, and no growth."""


class SchemaTooNewError(RuntimeError):
    """The file was written by a newer homepoll; refusing beats corrupting it."""


@contextlib.contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
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


def _migrate(conn: sqlite3.Connection) -> None:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > len(MIGRATIONS):
        raise SchemaTooNewError(
            f"database schema version {version} is newer than this homepoll ({len(MIGRATIONS)})"
        )
    for target in range(version + 1, len(MIGRATIONS) + 1):
        with _transaction(conn):
            MIGRATIONS[target - 1](conn)
            conn.execute(f"PRAGMA user_version = {target}")
        log.info("database schema migrated to version %d", target)


def _is_corrupt(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None and code & 0xFF in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
        return True
    text = str(exc).lower()
    return "file is not a database" in text or "malformed" in text


# --------------------------------------------------------------------------- write side

# A reading goes into readings_recent unless readings already has it (merged earlier); the
# primary key of readings_recent ignores a repeat of a row it holds itself.
_INSERT_SQL = (
    f"INSERT OR IGNORE INTO readings_recent ({_ROW_COLUMNS}) SELECT ?1, ?2, ?3, ?4"
    " WHERE NOT EXISTS (SELECT 1 FROM readings WHERE sensor_id = ?1 AND ts = ?2)"
)
# The newest stored row of one sensor, wherever it is.
_NEWEST_SQL = (
    "SELECT ts, value FROM (SELECT ts, value FROM readings WHERE sensor_id = ?1"
    " ORDER BY ts DESC LIMIT 1) UNION ALL SELECT ts, value FROM (SELECT ts, value"
    " FROM readings_recent WHERE sensor_id = ?1 ORDER BY ts DESC LIMIT 1)"
    " ORDER BY ts DESC LIMIT 1"
)
_MERGE_SQL = (
    f"INSERT OR IGNORE INTO readings ({_ROW_COLUMNS})"
    f" SELECT {_ROW_COLUMNS} FROM readings_recent ORDER BY sensor_id, ts"
)


def _count_recent(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT count(*) FROM readings_recent").fetchone()[0])


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
class WriteResult:
    """What a write()/flush() did: ``stored`` new rows now; the rest is the state after it.

    ``queued`` readings waiting for the next successful commit, ``dropped`` total readings lost
    to queue overflow since start, ``error`` the current write problem (None when healthy).
    """

    stored: int
    queued: int
    dropped: int
    error: str | None


@dataclass
class _Batch:
    """Readings of one write() kept together so their poll row can count what they stored."""

    polled_at: int
    poll: PollRecord | None
    readings: list[Reading] = field(default_factory=list)


class Storage:
    """The daemon's single writer. Not thread-safe: call it from one thread at a time."""

    def __init__(
        self,
        path: Path,
        *,
        commit_interval: float = 0,
        queue_limit: int = 50_000,
        clock: Callable[[], float] = time.monotonic,
        busy_timeout: float = 5.0,
        merge_interval: float = MERGE_INTERVAL,
        merge_rows: int = MERGE_ROWS,
    ) -> None:
        self._path = Path(path)
        self._commit_interval = commit_interval
        self._merge_interval = merge_interval
        self._merge_rows = max(1, merge_rows)
        self._queue_limit = max(1, queue_limit)
        self._clock = clock
        self._busy_timeout_ms = int(busy_timeout * 1000)
        self._conn: sqlite3.Connection | None = None
        self._identity: tuple[int, int] | None = None  # (st_dev, st_ino) of the open file
        self._data_version: int | None = None
        self._closed = False
        self._pending: list[_Batch] = []
        self._queued = 0
        self._dropped = 0
        self._last_error: str | None = None
        self._overflowing = False
        self._episode_dropped = 0
        self._last_commit = clock()
        self._last_merge = clock()
        self._merge_failing = False
        self._recent_rows = 0  # rows in readings_recent, as of the last commit
        # SensorKey -> (id, name, unit) and SensorKey -> (ts, value) of the newest stored row
        # (None = the sensor has no rows). Only ever hold committed state.
        self._sensors: dict[SensorKey, tuple[int, str, str]] = {}
        self._last: dict[SensorKey, tuple[int, float] | None] = {}

    # ----------------------------------------------------------------- properties

    @property
    def path(self) -> Path:
        return self._path

    @property
    def queued(self) -> int:
        """Readings waiting in memory for a successful commit."""
        return self._queued

    @property
    def dropped(self) -> int:
        """Readings lost to queue overflow since start (each one also logged)."""
        return self._dropped

    @property
    def last_error(self) -> str | None:
        """The current write problem, None once writes succeed again."""
        return self._last_error

    # ----------------------------------------------------------------- open / close

    def open(self) -> None:
        """Connect and migrate; a corrupt file is moved aside and replaced by a fresh one."""
        self._closed = False
        if self._conn is not None:
            return
        try:
            self._connect()
        except sqlite3.DatabaseError as exc:
            if not _is_corrupt(exc):
                raise
            self._connect()  # _connect() has moved the corrupt file aside

    def close(self) -> None:
        """Flush what is pending (best effort: a failure is logged with what stays unwritten)."""
        if self._closed:
            return
        if self._pending:
            result = self.flush()
            if result.queued:
                log.error("closing with %d readings not written: %s", result.queued, result.error)
        self._disconnect()
        self._closed = True

    def _connect(self) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False, timeout=0)
        try:
            conn.execute(f"PRAGMA busy_timeout = {self._busy_timeout_ms}")
            conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")  # no-op unless the file is new
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                log.warning("database journal mode is %s, not wal", mode)
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
            conn.execute("PRAGMA foreign_keys = ON")
            _migrate(conn)
            self._data_version = conn.execute("PRAGMA data_version").fetchone()[0]
            self._recent_rows = _count_recent(conn)
            st = os.stat(self._path)
        except sqlite3.Error as exc:
            if _is_corrupt(exc):
                # Before close(): closing would delete the -wal we want to keep with the db.
                self._move_aside(exc)
            conn.close()
            raise
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        self._identity = (st.st_dev, st.st_ino)
        self._sensors.clear()
        self._last.clear()

    def _disconnect(self) -> None:
        conn, self._conn = self._conn, None
        self._identity = None
        if conn is not None:
            try:
                conn.close()
            except sqlite3.Error as exc:  # pragma: no cover - close rarely fails
                log.warning("closing the database failed: %s", exc)

    def _quarantine(self, exc: sqlite3.Error) -> None:
        """Move the open, corrupt db aside (renamed while open, so its -wal survives), close."""
        self._move_aside(exc)
        self._disconnect()

    def _move_aside(self, exc: sqlite3.Error) -> None:
        """Rename a corrupt db and its -wal/-shm to readings.db.corrupt-<UTC stamp>[-wal]."""
        if not self._path.exists():
            return  # already moved
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        target = self._path.with_name(f"{self._path.name}.corrupt-{stamp}")
        n = 1
        while target.exists():
            n += 1
            target = self._path.with_name(f"{self._path.name}.corrupt-{stamp}-{n}")
        for suffix in ("", *_SIDE_FILES):
            src = Path(f"{self._path}{suffix}")
            if src.exists():
                os.replace(src, f"{target}{suffix}")
        log.critical(
            "database %s is corrupt (%s): moved it to %s and starting a fresh one",
            self._path,
            exc,
            target.name,
        )

    def _check_file(self) -> None:
        """Reopen when the file was deleted or replaced under the open connection."""
        if self._conn is None:
            self._connect()
            return
        try:
            st = os.stat(self._path)
            same = (st.st_dev, st.st_ino) == self._identity
        except FileNotFoundError:
            same = False
        if same:
            return
        log.warning("database file %s was deleted or replaced: opening it afresh", self._path)
        self._disconnect()
        # The -wal/-shm next to the path belong to the file that is gone: replayed into the
        # new file they would resurrect (or corrupt) the old pages.
        for suffix in _SIDE_FILES:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(f"{self._path}{suffix}")
        self._connect()

    # ----------------------------------------------------------------- write

    def write(
        self, readings: list[Reading], polled_at: int, poll: PollRecord | None
    ) -> WriteResult:
        """Queue one poll's readings (and its poll row); commit now or when the interval is due.

        Everything pending is retried first, in one transaction with the new readings.
        """
        if self._closed:
            raise RuntimeError("storage is closed")
        self._pending.append(_Batch(polled_at, poll, list(readings)))
        self._queued += len(readings)
        due = (
            self._commit_interval <= 0
            or self._clock() - self._last_commit >= self._commit_interval
            or self._queued >= self._queue_limit
        )
        if due:
            return self.flush()
        return self._result(0)

    def flush(self) -> WriteResult:
        """Write everything pending now, in one transaction."""
        if self._closed:
            raise RuntimeError("storage is closed")
        if not self._pending:
            return self._result(0)
        written = self._queued
        try:
            stored = self._flush_once()
        except sqlite3.Error as exc:
            if not _is_corrupt(exc):
                return self._failed(exc)
            try:
                self._quarantine(exc)
                self._connect()
                stored = self._flush_once()
            except (sqlite3.Error, OSError) as exc2:
                return self._failed(exc2)
        except (OSError, SchemaTooNewError) as exc:  # mkdir/stat/rename; a swapped-in newer db
            return self._failed(exc)
        result = self._succeeded(stored, written)
        if self._recent_rows >= self._merge_rows or (
            self._recent_rows and self._clock() - self._last_merge >= self._merge_interval
        ):
            self.merge_recent()
        return result

    def merge_recent(self) -> int:
        """Move readings_recent into readings in one transaction; return the rows moved.

        A failure is logged and changes nothing: the rows stay in readings_recent (still
        visible to every query) and the next due flush tries again.
        """
        self._last_merge = self._clock()
        conn = self._conn
        if conn is None or self._closed:
            return 0
        try:
            with _transaction(conn):
                moved = _count_recent(conn)
                conn.execute(_MERGE_SQL)
                conn.execute("DELETE FROM readings_recent")
        except sqlite3.Error as exc:
            # Once per episode, as write failures are: at the row limit it is retried per flush.
            log.log(
                logging.DEBUG if self._merge_failing else logging.WARNING,
                "moving recent readings into the readings table failed (%s); they stay in"
                " readings_recent and the move is tried again later",
                exc,
            )
            self._merge_failing = True
            return 0
        if self._merge_failing:
            log.info("moving recent readings into the readings table works again")
            self._merge_failing = False
        self._recent_rows = 0
        log.debug("moved %d recent readings into the readings table", moved)
        return moved

    def _flush_once(self) -> int:
        self._check_file()
        conn = self._conn
        assert conn is not None
        sensors = dict(self._sensors)
        last = dict(self._last)
        with _transaction(conn):
            version = conn.execute("PRAGMA data_version").fetchone()[0]
            recent_rows = self._recent_rows
            if version != self._data_version:
                # Another process (`homepoll once`) committed: our caches may be stale.
                sensors.clear()
                last.clear()
                recent_rows = _count_recent(conn)
            stored = 0
            for batch in self._pending:
                new = self._insert_batch(conn, batch, sensors, last)
                stored += new
                if batch.poll is not None:
                    p = batch.poll
                    conn.execute(
                        "INSERT INTO polls (collector, started_at, duration_ms, attempts, outcome,"
                        " readings, error) VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (
                            p.collector,
                            p.started_at,
                            p.duration_ms,
                            p.attempts,
                            p.outcome,
                            new,
                            p.error,
                        ),
                    )
        self._data_version = version
        self._sensors = sensors
        self._last = last
        self._recent_rows = recent_rows + stored
        self._pending.clear()
        self._queued = 0
        return stored

    def _insert_batch(
        self,
        conn: sqlite3.Connection,
        batch: _Batch,
        sensors: dict[SensorKey, tuple[int, str, str]],
        last: dict[SensorKey, tuple[int, float] | None],
    ) -> int:
        """Insert one poll's readings inside the open transaction; return the new rows.

        Readings with a source timestamp go in with one executemany (the primary keys make a
        re-read a no-op); on-change ones are compared with the newest stored value one by one.
        """
        polled_at = batch.polled_at
        rows = []
        new = 0
        for r in batch.readings:
            key = r.key
            if r.on_change:
                new += self._insert_on_change(conn, r, key, polled_at, sensors, last)
            else:
                rows.append((self._sensor_id(conn, r, key, sensors), r.ts, r.value, polled_at))
        if rows:
            new += conn.executemany(_INSERT_SQL, rows).rowcount
        return new

    def _insert_on_change(
        self,
        conn: sqlite3.Connection,
        r: Reading,
        key: SensorKey,
        polled_at: int,
        sensors: dict[SensorKey, tuple[int, str, str]],
        last: dict[SensorKey, tuple[int, float] | None],
    ) -> int:
        """Store an on-change reading unless it equals the newest stored value; 1 if stored."""
        sensor_id = self._sensor_id(conn, r, key, sensors)
        if key not in last:
            row = conn.execute(_NEWEST_SQL, (sensor_id,)).fetchone()
            last[key] = (row[0], row[1]) if row else None
        newest = last[key]
        if newest is not None and newest[1] == r.value:
            return 0
        if conn.execute(_INSERT_SQL, (sensor_id, r.ts, r.value, polled_at)).rowcount != 1:
            return 0
        # Compared with the value stored last even when its ts is older: after the wall clock
        # stepped back, comparing with the "newest" (future) row would store every poll.
        last[key] = (r.ts, r.value)
        return 1

    @staticmethod
    def _sensor_id(
        conn: sqlite3.Connection,
        r: Reading,
        key: SensorKey,
        sensors: dict[SensorKey, tuple[int, str, str]],
    ) -> int:
        cached = sensors.get(key)
        if cached is not None and cached[1] == r.name and cached[2] == r.unit:
            return cached[0]
        row = conn.execute(
            "SELECT id, name, unit FROM sensors WHERE source = ? AND device_id = ? AND metric = ?",
            (r.source, r.device_id, r.metric),
        ).fetchone()
        if row is None:
            cur = conn.execute(
                "INSERT INTO sensors (source, device_id, name, metric, unit)"
                " VALUES (?, ?, ?, ?, ?)",
                (r.source, r.device_id, r.name, r.metric, r.unit),
            )
            sensor_id = int(cur.lastrowid or 0)
        else:
            sensor_id = row[0]
            if (row[1], row[2]) != (r.name, r.unit):
                conn.execute(
                    "UPDATE sensors SET name = ?, unit = ? WHERE id = ?",
                    (r.name, r.unit, sensor_id),
                )
        sensors[key] = (sensor_id, r.name, r.unit)
        return sensor_id

    def _succeeded(self, stored: int, written: int) -> WriteResult:
        self._last_commit = self._clock()
        if self._last_error is not None:
            log.info(
                "database writes work again: wrote %d queued readings (%d new rows)",
                written,
                stored,
            )
            self._last_error = None
        if self._overflowing:
            log.info(
                "write queue drained; %d readings were dropped while it was full",
                self._episode_dropped,
            )
            self._overflowing = False
            self._episode_dropped = 0
        return self._result(stored)

    def _failed(self, exc: BaseException) -> WriteResult:
        message = str(exc).strip() or type(exc).__name__
        if self._last_error is None:
            log.error(
                "database write failed (%s): keeping %d readings queued and retrying on the"
                " next write",
                message,
                self._queued,
            )
        else:
            log.debug("database write still failing: %s", message)
        self._last_error = message
        code = getattr(exc, "sqlite_errorcode", None)
        if not isinstance(exc, sqlite3.Error) or (
            code is not None and code & 0xFF in _RECONNECT_CODES
        ):
            # After an I/O-level failure start the next attempt on a fresh connection.
            self._disconnect()
        self._trim()
        return self._result(0)

    def _trim(self) -> None:
        """Bound the queue: drop the oldest readings (counted, logged) beyond queue_limit."""
        excess = max(0, self._queued - self._queue_limit)
        left = excess
        for batch in self._pending:
            if left <= 0:
                break
            cut = min(left, len(batch.readings))
            del batch.readings[:cut]
            left -= cut
        # Poll rows are tiny but still bounded: keep the newest queue_limit of them.
        extra_batches = len(self._pending) - self._queue_limit
        if extra_batches > 0:
            excess += sum(len(b.readings) for b in self._pending[:extra_batches])
            del self._pending[:extra_batches]
        if excess <= 0:
            return
        self._queued -= excess
        self._dropped += excess
        self._episode_dropped += excess
        if not self._overflowing:
            self._overflowing = True
            log.error(
                "write queue is over its limit of %d readings: dropped the %d oldest"
                " (further drops are counted, not logged one by one)",
                self._queue_limit,
                excess,
            )
        else:
            log.debug("write queue full: dropped %d more readings", excess)

    def _result(self, stored: int) -> WriteResult:
        return WriteResult(stored, self._queued, self._dropped, self._last_error)

    # ----------------------------------------------------------------- prune

    def prune(self, retention_days: float, now_ms: int) -> int:
        """Delete readings and poll rows older than the horizon; return readings deleted.

        Deletes by primary-key range, per sensor, in small transactions so the writer never
        holds the lock (or grows the WAL) for long on a big database.
        """
        if retention_days <= 0 or self._closed:
            return 0
        cutoff = now_ms - int(retention_days * 86_400_000)
        deleted = 0
        try:
            self._check_file()
            conn = self._conn
            assert conn is not None
            sensor_ids = [row[0] for row in conn.execute("SELECT id FROM sensors")]
            for sensor_id in sensor_ids:
                while True:
                    n = self._delete_batch(
                        conn,
                        "DELETE FROM readings WHERE sensor_id = ?1 AND ts IN (SELECT ts FROM"
                        " readings WHERE sensor_id = ?1 AND ts < ?2 ORDER BY ts LIMIT ?3)",
                        (sensor_id, cutoff, PRUNE_BATCH),
                    )
                    deleted += n
                    if n < PRUNE_BATCH:
                        break
            # readings_recent holds the newest readings: this matters only after the clock
            # stepped back, or with a retention shorter than MERGE_INTERVAL.
            n = self._delete_batch(conn, "DELETE FROM readings_recent WHERE ts < ?1", (cutoff,))
            deleted += n
            self._recent_rows = max(0, self._recent_rows - n)
            # polls rows arrive in time order: the oldest are the first rowids, no index needed.
            while (
                self._delete_batch(
                    conn,
                    "DELETE FROM polls WHERE rowid IN (SELECT rowid FROM polls WHERE"
                    " started_at < ?1 ORDER BY rowid LIMIT ?2)",
                    (cutoff, PRUNE_BATCH),
                )
                >= PRUNE_BATCH
            ):
                pass
        except (sqlite3.Error, OSError) as exc:
            log.error("pruning old readings failed after %d rows: %s", deleted, exc)
        finally:
            # The newest row of an on_change sensor may have gone: look it up again.
            self._last.clear()
        if deleted:
            log.info("pruned %d readings older than %g days", deleted, retention_days)
        return deleted

    @staticmethod
    def _delete_batch(conn: sqlite3.Connection, sql: str, params: tuple[Any, ...]) -> int:
        with _transaction(conn):
            return int(conn.execute(sql, params).rowcount)


# --------------------------------------------------------------------------- read side

_COLUMNS = "r.ts, s.source, s.device_id, s.name, s.metric, s.unit, r.value, r.polled_at"
# Same rows and columns as readings_view, in two parts. In the first, "sensors s CROSS JOIN
# readings r" pins the sensors table as the outer loop, so every readings lookup is a
# primary-key seek (the view's own join order makes SQLite scan all of readings). The second
# reads readings_recent, which is small and keyed by time.
_FROM_READINGS = "sensors s CROSS JOIN readings r ON r.sensor_id = s.id"
_FROM_RECENT = "readings_recent r JOIN sensors s ON s.id = r.sensor_id"
_LATEST_SQL = (
    f"SELECT s.id AS sensor_id, {_COLUMNS} FROM {_FROM_READINGS} AND r.ts = (SELECT ts FROM"
    " readings WHERE sensor_id = s.id ORDER BY ts DESC LIMIT 1)"
)
_LATEST_RECENT_SQL = (
    f"SELECT r.sensor_id, {_COLUMNS} FROM (SELECT sensor_id, max(ts) AS ts FROM readings_recent"
    f" GROUP BY sensor_id) m CROSS JOIN {_FROM_RECENT} AND r.ts = m.ts AND r.sensor_id ="
    " m.sensor_id"
)


@contextlib.contextmanager
def _read_only(path: Path) -> Iterator[sqlite3.Connection | None]:
    """A read-only connection, or None when there is no database (yet)."""
    path = Path(path)
    if not path.is_file():
        yield None
        return
    uri = path.absolute().as_uri() + "?mode=ro"
    conn = sqlite3.connect(uri, uri=True, timeout=5.0)
    try:
        conn.row_factory = sqlite3.Row
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version < 1:
            yield None  # created but never migrated: nothing stored
            return
        if version < 3:
            # Written by an older homepoll that the daemon has not migrated yet: an empty
            # stand-in (in the connection's own temp schema) keeps every query valid.
            conn.execute(f"CREATE TEMP TABLE readings_recent ({_ROW_COLUMNS})")
        yield conn
    finally:
        conn.close()


def _readings_sql(
    since_ms: int, sensor: str | None, metric: str | None, limit: int | None
) -> tuple[str, list[Any]]:
    chosen: list[str] = []  # conditions on the sensors table
    chosen_params: list[Any] = []
    if sensor:
        escaped = sensor.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        chosen.append("(s.name LIKE ? ESCAPE '\\' OR s.device_id = ?)")
        chosen_params += [f"%{escaped}%", sensor]
    if metric:
        chosen.append("s.metric = ?")
        chosen_params.append(metric)
    old = " AND ".join(["r.ts >= ?", *chosen])
    recent = "r.ts >= ?"
    if chosen:
        # Decided once per sensor, not once per row of readings_recent (a LIKE per row
        # costs milliseconds over its 5,000 rows).
        recent += f" AND r.sensor_id IN (SELECT s.id FROM sensors s WHERE {' AND '.join(chosen)})"
    sql = (
        f"SELECT {_COLUMNS} FROM {_FROM_READINGS} WHERE {old}"
        f" UNION ALL SELECT {_COLUMNS} FROM {_FROM_RECENT} WHERE {recent}"
    )
    params = [since_ms, *chosen_params, since_ms, *chosen_params]
    if limit is not None:
        sql = f"SELECT * FROM ({sql}) ORDER BY ts DESC, name, metric LIMIT ?"
        params.append(max(0, limit))
    return f"SELECT * FROM ({sql}) ORDER BY ts, name, metric", params


def query_readings(
    path: Path,
    since_ms: int,
    sensor: str | None = None,
    metric: str | None = None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """Readings with ts >= since_ms, oldest first, as readings_view rows.

    ``sensor`` matches a name substring (case-insensitive) or an exact device_id; ``limit``
    keeps the newest that many rows (still returned oldest first).
    """
    with _read_only(path) as conn:
        if conn is None:
            return []
        sql, args = _readings_sql(since_ms, sensor, metric, limit)
        return [dict(row) for row in conn.execute(sql, args)]


def latest_readings(path: Path) -> list[dict[str, Any]]:
    """The newest reading of every sensor, by name and metric.

    One primary-key seek per sensor in readings, one pass over the small readings_recent;
    the newer of the two wins (readings can hold the newer one after the clock stepped back).
    """
    with _read_only(path) as conn:
        if conn is None:
            return []
        conn.row_factory = None  # plain tuples: only the winners become dicts
        newest: dict[int, tuple] = {}  # sensor id -> (sensor_id, ts, ...)
        for sql in (_LATEST_SQL, _LATEST_RECENT_SQL):
            cursor = conn.execute(sql)
            for row in cursor:
                known = newest.get(row[0])
                if known is None or row[1] > known[1]:
                    newest[row[0]] = row
        names = [column[0] for column in cursor.description][1:]
        found = [dict(zip(names, row[1:], strict=True)) for row in newest.values()]
        return sorted(found, key=lambda r: (r["name"], r["metric"]))


def recent_polls(path: Path, collector: str, limit: int = 20) -> list[dict[str, Any]]:
    """The newest ``limit`` poll rows of one collector, newest first."""
    with _read_only(path) as conn:
        if conn is None:
            return []
        sql = (
            "SELECT collector, started_at, duration_ms, attempts, outcome, readings, error"
            " FROM polls WHERE collector = ? ORDER BY rowid DESC LIMIT ?"
        )
        return [dict(row) for row in conn.execute(sql, (collector, max(0, limit)))]


def database_summary(path: Path) -> dict[str, Any]:
    """Size and freshness of the database for `homepoll status`; never raises for the db.

    ``readings`` is an exact count only while the file is small (else None: counting would
    read the whole file); ``error`` is set when the file cannot be read.
    """
    path = Path(path)
    summary: dict[str, Any] = {
        "path": str(path),
        "exists": path.is_file(),
        "size_bytes": 0,
        "schema_version": None,
        "sensors": 0,
        "readings": None,
        "newest_ts": None,
        "polls": 0,
        "error": None,
    }
    if not summary["exists"]:
        return summary
    for suffix in ("", "-wal"):
        with contextlib.suppress(OSError):
            summary["size_bytes"] += os.stat(f"{path}{suffix}").st_size
    try:
        with _read_only(path) as conn:
            if conn is None:
                summary["schema_version"] = 0
                return summary
            summary["schema_version"] = conn.execute("PRAGMA user_version").fetchone()[0]
            summary["sensors"] = conn.execute("SELECT count(*) FROM sensors").fetchone()[0]
            summary["newest_ts"] = conn.execute(
                "SELECT max(ts) FROM (SELECT (SELECT ts FROM readings WHERE sensor_id = s.id"
                " ORDER BY ts DESC LIMIT 1) AS ts FROM sensors s"
                " UNION ALL SELECT max(ts) FROM readings_recent)"
            ).fetchone()[0]
            summary["polls"] = conn.execute("SELECT count(*) FROM polls").fetchone()[0]
            if summary["size_bytes"] <= _COUNT_LIMIT_BYTES:
                summary["readings"] = conn.execute(
                    "SELECT (SELECT count(*) FROM readings) + (SELECT count(*) FROM"
                    " readings_recent)"
                ).fetchone()[0]
    except sqlite3.Error as exc:
        summary["error"] = str(exc)
    return summary
