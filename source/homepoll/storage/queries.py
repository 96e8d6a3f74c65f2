"""What the CLI and the web page read: readings, latest values, polls and a summary.

Every function opens the file read-only and closes it again, so a reader never creates,
migrates or write-locks the daemon's database, and works while the daemon is down.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from homepoll.storage.schema import ROW_COLUMNS

# Above this size an exact COUNT(*) of readings would read most of the file (seconds on an SD
# card), so database_summary() leaves the count out.
_COUNT_LIMIT_BYTES = 64 * 1024 * 1024
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
def read_only(path: Path) -> Iterator[sqlite3.Connection | None]:
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
            conn.execute(f"CREATE TEMP TABLE readings_recent ({ROW_COLUMNS})")
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
    waiting: Path | None = None,
) -> list[dict[str, Any]]:
    """Readings with ts >= since_ms, oldest first, as readings_view rows.

    ``sensor`` matches a name substring (case-insensitive) or an exact device_id; ``limit``
    keeps the newest that many rows (still returned oldest first). ``waiting`` is the
    daemon's spool: its readings, not committed yet, are included (see waiting.py).
    """
    rows: list[dict[str, Any]] = []
    with read_only(path) as conn:
        if conn is not None:
            sql, args = _readings_sql(since_ms, sensor, metric, limit)
            rows = [dict(row) for row in conn.execute(sql, args)]
    if waiting is None:
        return rows
    from homepoll.storage.waiting import merge_waiting

    return merge_waiting(rows, waiting, since_ms, sensor, metric, limit)


def latest_readings(path: Path) -> list[dict[str, Any]]:
    """The newest reading of every sensor, by name and metric.

    One primary-key seek per sensor in readings, one pass over the small readings_recent;
    the newer of the two wins (readings can hold the newer one after the clock stepped back).
    """
    with read_only(path) as conn:
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


def known_sensors(path: Path) -> list[tuple[str, str, str]]:
    """(name, device_id, metric) of every stored series, by name: what a filter can match."""
    with read_only(path) as conn:
        if conn is None:
            return []
        return [
            tuple(row)
            for row in conn.execute(
                "SELECT name, device_id, metric FROM sensors ORDER BY name, metric"
            )
        ]


def recent_polls(path: Path, collector: str, limit: int = 20) -> list[dict[str, Any]]:
    """The newest ``limit`` poll rows of one collector, newest first."""
    with read_only(path) as conn:
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
        with read_only(path) as conn:
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
