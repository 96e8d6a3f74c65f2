"""The dashboard's reads: one point per time bucket per series, computed in SQLite.

A year of 5-minute readings is ~105,000 rows per series; the browser gets one averaged point
per bucket (about 300 per series whatever the range). The average is taken per bucket by a
correlated primary-key range seek ((sensor_id, ts) is the key of ``readings``), which is
about five times faster than a GROUP BY over the whole range, because SQLite needs no sort
(docs/performance.md, "dashboard" figures). Everything here runs in a worker thread on a read-only
connection.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS


@dataclass(frozen=True)
class Range:
    """One chart view: how far back it reaches and how wide one bucket is."""

    key: str
    label: str
    span_ms: int
    bucket_ms: int


RANGES = {
    r.key: r
    for r in (
        Range("24h", "24 h", DAY_MS, 5 * MINUTE_MS),
        Range("7d", "7 days", 7 * DAY_MS, 30 * MINUTE_MS),
        Range("30d", "30 days", 30 * DAY_MS, 2 * HOUR_MS),
        Range("1y", "1 year", 365 * DAY_MS, DAY_MS),
    )
}
DEFAULT_RANGE = "24h"
STEADY_METRICS = frozenset({"battery"})


@dataclass
class Series:
    """One sensor's points in a view: (bucket start ms, value) oldest first."""

    sensor_id: int
    source: str
    device_id: str
    name: str
    metric: str
    unit: str
    points: list[tuple[int, float]] = field(default_factory=list)

    @property
    def steady(self) -> bool:
        """Stored only when it changes (battery): the value holds between readings."""
        return self.metric in STEADY_METRICS


# Per bucket: the average of the readings in it (readings' key is (sensor_id, ts): a range
# seek per bucket, no sort). For yes/no quantities (presence, stored only when they change)
# the bucket's largest and last value, so a state can be carried into buckets without a reading.
_BUCKETS = (
    "WITH RECURSIVE b(t) AS (SELECT :start UNION ALL SELECT t + :step FROM b"
    " WHERE t + :step < :end)"
)
_IN_BUCKET = "FROM readings WHERE sensor_id = :sid AND ts >= b.t AND ts < b.t + :step"
_AVG_SQL = f"{_BUCKETS} SELECT b.t, (SELECT avg(value) {_IN_BUCKET}) FROM b"
_STATE_SQL = (
    f"{_BUCKETS} SELECT b.t, (SELECT max(value) {_IN_BUCKET}),"
    f" (SELECT value {_IN_BUCKET} ORDER BY ts DESC LIMIT 1) FROM b"
)
_STATE_BEFORE_SQL = (
    "SELECT value FROM readings WHERE sensor_id = :sid AND ts < :start ORDER BY ts DESC LIMIT 1"
)
# readings_recent holds only the newest few thousand rows, keyed by time: read them as they are.
_RECENT_SQL = "SELECT sensor_id, ts, value FROM readings_recent WHERE ts >= :start ORDER BY ts"
_SENSORS_SQL = "SELECT id, source, device_id, name, metric, unit FROM sensors ORDER BY name, id"


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[sqlite3.Connection | None]:
    """The storage module's read-only connection (None when there is no database yet)."""
    from homepoll.storage import read_only as storage_read_only

    with storage_read_only(path) as conn:
        if conn is not None:
            conn.row_factory = None
        yield conn


def is_yes_no(unit: str) -> bool:
    return unit == "bool"


def chart_series(path: Path, view: Range, now_ms: int, spool: Path | None = None) -> list[Series]:
    """Every sensor's bucketed points over ``view`` ending at ``now_ms`` (empty ones left out).

    ``spool``: the daemon's readings waiting for the next commit, drawn as if stored.
    """
    step = view.bucket_ms
    start = (now_ms - view.span_ms) // step * step
    params = {"start": start, "step": step, "end": now_ms}
    with read_only(path) as conn:
        if conn is None:
            return []
        sensors = [Series(*row) for row in conn.execute(_SENSORS_SQL)]
        recent: dict[int, dict[int, list[float]]] = {}  # sensor -> bucket -> values in order

        def add(sid: int, ts: int, value: float) -> None:
            bucket = start + (ts - start) // step * step
            recent.setdefault(sid, {}).setdefault(bucket, []).append(value)

        for sid, ts, value in conn.execute(_RECENT_SQL, params):
            add(sid, ts, value)
        if spool is not None:
            _add_waiting(sensors, spool, start, add)
        for series in sensors:
            own = {**params, "sid": series.sensor_id}
            extra = recent.get(series.sensor_id, {})
            if is_yes_no(series.unit):
                before = conn.execute(_STATE_BEFORE_SQL, own).fetchone()
                rows = conn.execute(_STATE_SQL, own).fetchall()
                series.points = _states(rows, extra, before[0] if before else 0.0)
            else:
                series.points = _averages(conn.execute(_AVG_SQL, own).fetchall(), extra)
                if series.steady:
                    before = conn.execute(_STATE_BEFORE_SQL, own).fetchone()
                    series.points = _held(
                        series.points, before[0] if before else None, start, now_ms
                    )
    return [s for s in sensors if _worth_drawing(s)]


def _held(
    points: list[tuple[int, float]], before: float | None, start: int, now_ms: int
) -> list[tuple[int, float]]:
    """A value that holds until it changes: from the view's start (if known) up to now."""
    if before is not None and (not points or points[0][0] > start):
        points = [(start, before), *points]
    if points:
        points.append((now_ms, points[-1][1]))
    return points


def _add_waiting(sensors: list[Series], spool: Path, start: int, add) -> None:
    """Readings of the spool into the per-bucket values (a new sensor gets a series too)."""
    from homepoll.storage.waiting import merge_waiting

    known = {(s.source, s.device_id, s.metric): s.sensor_id for s in sensors}
    for row in merge_waiting([], spool, start, None, None, None):
        key = (row["source"], row["device_id"], row["metric"])
        if key not in known:
            known[key] = -len(known) - 1  # not in the sensors table yet: no stored points
            sensors.append(Series(known[key], *key[:2], row["name"], row["metric"], row["unit"]))
        add(known[key], row["ts"], row["value"])


def _worth_drawing(series: Series) -> bool:
    """Has points; a yes/no series also said yes at least once (an empty band says nothing)."""
    if is_yes_no(series.unit):
        return any(value for _, value in series.points)
    return bool(series.points)


def _averages(
    rows: list[tuple[int, float | None]], recent: dict[int, list[float]]
) -> list[tuple[int, float]]:
    """Bucket averages; a bucket split between the two tables averages the two halves."""
    points = []
    for t, value in rows:
        extra = recent.get(t)
        if extra:
            tail = sum(extra) / len(extra)
            value = tail if value is None else (value + tail) / 2
        if value is not None:
            points.append((t, value))
    return points


def _states(
    rows: list[tuple[int, float | None, float | None]],
    recent: dict[int, list[float]],
    state: float,
) -> list[tuple[int, float]]:
    """1.0 for a bucket that said yes at any moment (the state carried in included), else 0.0."""
    points = []
    for t, top, last in rows:
        values = [v for v in (top, last) if v is not None] + recent.get(t, [])
        seen_yes = any(v > 0 for v in values)
        points.append((t, 1.0 if seen_yes or state > 0 else 0.0))
        if recent.get(t):
            state = recent[t][-1]
        elif last is not None:
            state = last
    return points
