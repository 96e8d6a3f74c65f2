"""The writer's one connection: pragmas, migration, and what to do when the file goes bad.

A Pi's SD card and its users do things to a database file that a server's disk never sees: it
turns corrupt after a power cut, is deleted or replaced by hand while the daemon runs, or stops
being writable. This module notices each of those and gets the writer a sane file again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from homepoll.storage.schema import PAGE_SIZE, migrate

log = logging.getLogger("homepoll.storage")

SIDE_FILES = ("-wal", "-shm")
# Primary result codes (the low byte of sqlite_errorcode) meaning "this file is not a sane db".
_CORRUPT_CODES = frozenset({sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB})
# Failures after which the next attempt starts on a fresh connection: the open handle may
# point at a file that was remounted read-only, hit an I/O error or can no longer be opened.
_RECONNECT_CODES = frozenset(
    {sqlite3.SQLITE_READONLY, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_CANTOPEN}
)

CACHE_KIB = 256
"""SQLite page cache of the writer connection (SQLite's default is 2,000 KiB).

A poll touches the newest page of each sensor plus a few interior pages, a few dozen KiB;
the default cache only fills up with history the writer never needs again, which showed as
1.5 MB more resident memory on a 3-day-old database (docs/performance.md)."""


def _primary_code(exc: BaseException) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)
    return None if code is None else code & 0xFF


def is_corrupt(exc: sqlite3.Error) -> bool:
    """True when the error means the file itself is damaged (not locked, full or read-only)."""
    if _primary_code(exc) in _CORRUPT_CODES:
        return True
    text = str(exc).lower()
    return "file is not a database" in text or "malformed" in text


def needs_reconnect(exc: BaseException) -> bool:
    """True when the next attempt should not reuse the connection that just failed."""
    return not isinstance(exc, sqlite3.Error) or _primary_code(exc) in _RECONNECT_CODES


class DatabaseFile:
    """Opens ``path`` for writing and keeps the connection pointed at the file at ``path``.

    ``on_connect`` runs inside every (re)connect, after migration: the writer resets what it
    cached about the previous connection's file there.
    """

    def __init__(
        self,
        path: Path,
        *,
        busy_timeout: float,
        on_connect: Callable[[sqlite3.Connection], None] = lambda conn: None,
    ) -> None:
        self.path = Path(path)
        self._busy_timeout_ms = int(busy_timeout * 1000)
        self._on_connect = on_connect
        self.conn: sqlite3.Connection | None = None
        self._identity: tuple[int, int] | None = None  # (st_dev, st_ino) of the open file

    def open(self) -> None:
        """Connect and migrate; a corrupt file is moved aside and replaced by a fresh one."""
        if self.conn is not None:
            return
        try:
            self.connect()
        except sqlite3.DatabaseError as exc:
            if not is_corrupt(exc):
                raise
            self.connect()  # connect() has moved the corrupt file aside

    def connect(self) -> sqlite3.Connection:
        """A new connection with homepoll's pragmas on the file at ``path``, migrated."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=0)
        try:
            conn.execute(f"PRAGMA busy_timeout = {self._busy_timeout_ms}")
            conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")  # no-op unless the file is new
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                log.warning("database journal mode is %s, not wal", mode)
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
            conn.execute("PRAGMA foreign_keys = ON")
            migrate(conn)
            self._on_connect(conn)
            st = os.stat(self.path)
        except sqlite3.Error as exc:
            if is_corrupt(exc):
                # Before close(): closing would delete the -wal we want to keep with the db.
                self._move_aside(exc)
            conn.close()
            raise
        except BaseException:
            conn.close()
            raise
        self.conn = conn
        self._identity = (st.st_dev, st.st_ino)
        return conn

    def disconnect(self) -> None:
        conn, self.conn = self.conn, None
        self._identity = None
        if conn is not None:
            try:
                conn.close()
            except sqlite3.Error as exc:  # pragma: no cover - close rarely fails
                log.warning("closing the database failed: %s", exc)

    def quarantine(self, exc: sqlite3.Error) -> None:
        """Move the open, corrupt db aside (renamed while open, so its -wal survives), close."""
        self._move_aside(exc)
        self.disconnect()

    def current(self) -> sqlite3.Connection:
        """The connection, reopened first when the file was deleted or replaced under it."""
        if self.conn is None:
            return self.connect()
        try:
            st = os.stat(self.path)
            same = (st.st_dev, st.st_ino) == self._identity
        except FileNotFoundError:
            same = False
        if same:
            return self.conn
        log.warning("database file %s was deleted or replaced: opening it afresh", self.path)
        self.disconnect()
        # The -wal/-shm next to the path belong to the file that is gone: replayed into the
        # new file they would resurrect (or corrupt) the old pages.
        for suffix in SIDE_FILES:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(f"{self.path}{suffix}")
        return self.connect()

    def _move_aside(self, exc: sqlite3.Error) -> None:
        """Rename a corrupt db and its -wal/-shm to readings.db.corrupt-<UTC stamp>[-wal]."""
        if not self.path.exists():
            return  # already moved
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        n = 1
        while target.exists():
            n += 1
            target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}-{n}")
        for suffix in ("", *SIDE_FILES):
            src = Path(f"{self.path}{suffix}")
            if src.exists():
                os.replace(src, f"{target}{suffix}")
        log.critical(
            "database %s is corrupt (%s): moved it to %s and starting a fresh one",
            self.path,
            exc,
            target.name,
        )
