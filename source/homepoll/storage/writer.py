"""The daemon's single writer: a bounded queue, batched commits, and the move of recent rows.

Written for a Raspberry Pi SD card: one transaction per flush (never per reading), WAL with
synchronous=NORMAL, and a bounded in-memory queue so a failing disk never loses readings
silently (each drop is counted and the first of an episode logged). With a spool
(spool.py), what waits for the next commit also survives the death of the process.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from homepoll.config import StorageSettings
from homepoll.model import Reading
from homepoll.storage import prune as _prune
from homepoll.storage.connection import DatabaseFile, is_corrupt, needs_reconnect
from homepoll.storage.queue import PendingQueue
from homepoll.storage.rows import Batch, NewestValues, PollRecord, SensorIds, insert_batch
from homepoll.storage.schema import ROW_COLUMNS, SchemaTooNewError, count_recent, transaction
from homepoll.storage.spool import Recovered, Spool

log = logging.getLogger("homepoll.storage")

MERGE_INTERVAL = 12 * 3600.0
"""Seconds between moves of ``readings_recent`` into ``readings`` (see ``schema._migrate_v3``).

A move rewrites three or four pages per sensor (B-tree balancing touches the neighbours),
whether it carries one row per sensor or a hundred: about 0.5 MB for 20 Hue sensors and a
monitor. Twice a day that is 1 MB/day, against about 2 MB a day for 4 moves; queries cost
the same either way (MERGE_ROWS bounds readings_recent), and nothing is less durable:
both tables are committed alike."""
MERGE_ROWS = 5000
"""...or sooner once ``readings_recent`` holds this many rows: queries of the newest values
scan it (it is keyed by time), so its size is bounded (about 1.5 ms more for "latest of
every sensor" at this size; docs/performance.md)."""

_MERGE_SQL = (
    f"INSERT OR IGNORE INTO readings ({ROW_COLUMNS})"
    f" SELECT {ROW_COLUMNS} FROM readings_recent ORDER BY sensor_id, ts"
)


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


class _Episode:
    """A problem that recurs until it ends: WARNING when it starts, DEBUG while it lasts, INFO
    when it ends, so a retry every flush or every prune does not flood the log."""

    def __init__(self) -> None:
        self.active = False

    def started(self, message: str, *args: object) -> None:
        log.log(logging.DEBUG if self.active else logging.WARNING, message, *args)
        self.active = True

    def ended(self, message: str) -> None:
        if self.active:
            log.info(message)
            self.active = False


class Storage:
    """The daemon's single writer. Not thread-safe: call it from one thread at a time."""

    def __init__(
        self,
        path: Path,
        *,
        commit_interval: float = StorageSettings.commit_interval,
        queue_limit: int = 50_000,
        clock: Callable[[], float] = time.monotonic,
        busy_timeout: float = 5.0,
        merge_interval: float = MERGE_INTERVAL,
        merge_rows: int = MERGE_ROWS,
        spool: Spool | None = None,
        commit_first: bool = False,
        guard_clock: bool = False,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._db = DatabaseFile(path, busy_timeout=busy_timeout, on_connect=self._on_connect)
        self._commit_interval = commit_interval
        self._merge_interval = merge_interval
        self._merge_rows = max(1, merge_rows)
        self._clock = clock
        self._data_version: int | None = None
        self._closed = False
        self._queue = PendingQueue(queue_limit)
        self._last_error: str | None = None
        self._last_commit = clock()
        self._last_merge = clock()
        self._merge_failing = _Episode()
        self._recent_rows = 0  # rows in readings_recent, as of the last commit
        self._spool = spool
        self._spooled = True  # every pending batch is also in the spool
        self._commit_first = commit_first  # the first write commits at once
        self._wall = wall
        self.recovered = Recovered()
        self.stored_by: dict[str, int] = {}  # new rows committed since start, per collector
        self._guard_clock = guard_clock  # prune only by a plausible wall clock (ClockGuard)
        self._guard: _prune.ClockGuard | None = None
        self._prune_refused = _Episode()  # pruning refused by the ClockGuard
        # Only ever hold committed state (see rows.insert_batch).
        self._sensors: SensorIds = {}
        self._newest: NewestValues = {}

    # ----------------------------------------------------------------- properties

    @property
    def path(self) -> Path:
        return self._db.path

    @property
    def queued(self) -> int:
        """Readings waiting in memory for a successful commit."""
        return self._queue.readings

    @property
    def dropped(self) -> int:
        """Readings lost to queue overflow since start (each one also logged)."""
        return self._queue.dropped

    @property
    def last_error(self) -> str | None:
        """The current write problem, None once writes succeed again."""
        return self._last_error

    @property
    def spool_path(self) -> Path | None:
        return None if self._spool is None else self._spool.path

    def next_commit(self) -> float | None:
        """Wall time (unix s) of the next commit of the waiting readings; None if none wait."""
        if not self._queue:
            return None
        due = self._last_commit + self._commit_interval - self._clock()
        return self._wall() + max(0.0, due)

    # ----------------------------------------------------------------- open / close

    def open(self) -> None:
        """Connect and migrate (a corrupt file is moved aside and replaced by a fresh one),
        then write what the previous run left in the spool."""
        self._closed = False
        self._db.open()
        conn = self._db.conn
        assert conn is not None
        if self._guard_clock:
            self._guard = _prune.ClockGuard(_prune.newest_polled_ms(conn), mono=self._clock)
        if self._spool is None:
            return
        self.recovered = self._spool.recover()
        if not self.recovered.batches:
            return
        # Killed between a commit and emptying the spool: those poll rows are stored already
        # (their readings are kept out by the primary keys).
        done = set(
            conn.execute(
                "SELECT collector, started_at FROM polls ORDER BY rowid DESC LIMIT ?",
                (len(self.recovered.batches) + 100,),
            )
        )
        for batch in self.recovered.batches:
            if batch.poll is not None and (batch.poll.collector, batch.poll.started_at) in done:
                batch.poll = None
            self._queue.add(batch)
        self.flush()

    def close(self) -> int:
        """Flush what is pending; return how many readings are neither in the database nor
        in a file beside it (logged with where they are, if anywhere)."""
        if self._closed:
            return 0
        at_risk = 0
        if self._queue:
            result = self.flush()
            if result.queued and self._spool is not None:
                at_risk = self._spool.keep_for_next_start(
                    self._queue.batches, str(result.error), spooled=self._spooled
                )
            elif result.queued:
                log.error("stopping: %d readings not written (%s)", result.queued, result.error)
                at_risk = result.queued
        if self._spool is not None and not self._queue:
            self._spool.remove()
        self._db.disconnect()
        self._closed = True
        return at_risk

    def _on_connect(self, conn: sqlite3.Connection) -> None:
        """A (new) file: forget what was cached about the previous one."""
        self._data_version = conn.execute("PRAGMA data_version").fetchone()[0]
        self._recent_rows = count_recent(conn)
        self._sensors.clear()
        self._newest.clear()

    # ----------------------------------------------------------------- write

    def write(
        self, readings: list[Reading], polled_at: int, poll: PollRecord | None
    ) -> WriteResult:
        """Queue one poll's readings (and its poll row); commit now or when the interval is due.

        Everything pending is retried first, in one transaction with the new readings.
        """
        if self._closed:
            raise RuntimeError("storage is closed")
        batch = Batch(polled_at, poll, list(readings))
        self._queue.add(batch)
        if self._spool is not None and not self._spool.append(batch):
            self._spooled = False
        due = (
            self._commit_first
            or self._commit_interval <= 0
            or self._clock() - self._last_commit >= self._commit_interval
            or self._queue.full()
        )
        if due:
            return self.flush()
        return self._result(0)

    def flush(self) -> WriteResult:
        """Write everything pending now, in one transaction."""
        if self._closed:
            raise RuntimeError("storage is closed")
        if not self._queue:
            return self._result(0)
        written = self._queue.readings
        try:
            stored = self._flush_once()
        except sqlite3.Error as exc:
            if not is_corrupt(exc):
                return self._failed(exc)
            try:
                self._db.quarantine(exc)
                self._db.connect()
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
        conn = self._db.conn
        if conn is None or self._closed:
            return 0
        try:
            with transaction(conn):
                moved = count_recent(conn)
                conn.execute(_MERGE_SQL)
                conn.execute("DELETE FROM readings_recent")
        except sqlite3.Error as exc:
            # Once per episode, as write failures are: at the row limit it is retried per flush.
            self._merge_failing.started(
                "moving recent readings into the readings table failed (%s); they stay in"
                " readings_recent and the move is tried again later",
                exc,
            )
            return 0
        self._merge_failing.ended("moving recent readings into the readings table works again")
        self._recent_rows = 0
        log.debug("moved %d recent readings into the readings table", moved)
        return moved

    def _flush_once(self) -> int:
        conn = self._db.current()
        sensors = dict(self._sensors)
        newest = dict(self._newest)
        with transaction(conn):
            version = conn.execute("PRAGMA data_version").fetchone()[0]
            recent_rows = self._recent_rows
            if version != self._data_version:
                # Another process (`homepoll once`) committed: our caches may be stale.
                sensors.clear()
                newest.clear()
                recent_rows = count_recent(conn)
            stored_by = dict(self.stored_by)
            stored = 0
            for batch in self._queue.batches:
                new = insert_batch(conn, batch, sensors, newest)
                stored += new
                who = batch.poll.collector if batch.poll is not None else ""
                stored_by[who] = stored_by.get(who, 0) + new
        if self._spool is not None:
            self._spool.clear()
            self._spooled = True
        if self._guard is not None:
            for batch in self._queue.batches:
                self._guard.stored(batch.polled_at)
        self.stored_by = stored_by
        self._commit_first = False
        self._data_version = version
        self._sensors = sensors
        self._newest = newest
        self._recent_rows = recent_rows + stored
        self._queue.committed()
        return stored

    def _succeeded(self, stored: int, written: int) -> WriteResult:
        self._last_commit = self._clock()
        if self._last_error is not None:
            log.info(
                "database writes work again: wrote %d queued readings (%d new rows)",
                written,
                stored,
            )
            self._last_error = None
        return self._result(stored)

    def _failed(self, exc: BaseException) -> WriteResult:
        message = str(exc).strip() or type(exc).__name__
        if self._last_error is None:
            log.error(
                "database write failed (%s): keeping %d readings queued and retrying on the"
                " next write",
                message,
                self._queue.readings,
            )
        else:
            log.debug("database write still failing: %s", message)
        self._last_error = message
        if needs_reconnect(exc):
            self._db.disconnect()
        dropped = self._queue.dropped
        self._queue.trim()
        if self._spool is not None and self._queue.dropped > dropped:
            self._spool.compact(self._queue.batches)
        return self._result(0)

    def _result(self, stored: int) -> WriteResult:
        return WriteResult(stored, self._queue.readings, self._queue.dropped, self._last_error)

    # ----------------------------------------------------------------- prune

    def prune(self, retention_days: float, now_ms: int) -> int:
        """Delete readings and poll rows older than the horizon; return readings deleted."""
        if retention_days <= 0 or self._closed:
            return 0
        problem = self._guard.problem(now_ms) if self._guard is not None else None
        if problem:
            self._prune_refused.started(
                "not pruning readings older than %g days: %s", retention_days, problem
            )
            return 0
        self._prune_refused.ended("the wall clock is plausible again: pruning resumes")
        cutoff = now_ms - int(retention_days * 86_400_000)
        deleted = 0
        try:
            conn = self._db.current()
            for n in _prune.delete_older(conn, cutoff):
                deleted += n
            self._recent_rows = count_recent(conn)
        except (sqlite3.Error, OSError) as exc:
            log.error("pruning old readings failed after %d rows: %s", deleted, exc)
        finally:
            # The newest row of an on_change sensor may have gone: look it up again.
            self._newest.clear()
        if deleted:
            log.info("pruned %d readings older than %g days", deleted, retention_days)
        return deleted
