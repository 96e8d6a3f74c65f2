"""Figure 6: bytes per reading, insert rate and query times on big databases.

Databases are created by homepoll's own ``Storage.open()`` (so the schema, WAL and pragmas
are the daemon's), then filled with ``executemany`` in time order, the order the daemon
writes in: every sensor's newest reading lands at the end of its own primary-key range, so
page splits leave pages as full as they are on a real Pi. Generated files are cached under
bench/results/cache/ keyed by size, so a rerun skips the minutes of generation.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import random
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from homepoll.model import Reading
from homepoll.storage import MERGE_ROWS, PollRecord, Storage, latest_readings, query_readings

CACHE_VERSION = 2  # 2: the newest MERGE_ROWS - 1 rows wait in readings_recent
CADENCE_MS = 300_000  # one stored reading per sensor every 5 min: a Hue sensor's own rate
START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
METRICS = ("temperature", "light_level", "presence")
DAY_MS = 86_400_000


def _remove_db(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{path}{suffix}")


def _value(rng: random.Random, metric_index: int) -> float:
    if metric_index == 0:
        return round(18 + rng.random() * 6, 2)
    if metric_index == 1:
        return round(rng.random() * 400, 2)
    return float(rng.random() < 0.3)


def _rows(sensors: int, readings: int) -> Iterator[tuple[int, int, float, int]]:
    rng = random.Random(7)
    per_sensor = readings // sensors
    for k in range(per_sensor):
        base = START_MS + k * CADENCE_MS
        for s in range(sensors):
            ts = base + (s * 997) % CADENCE_MS  # sensors report at their own moments
            yield (s + 1, ts, _value(rng, s % 3), ts + 1500)


def _sensor_rows(sensors: int) -> list[tuple]:
    return [
        (
            i + 1,
            "hue",
            f"00:17:88:01:00:{i // 3:05d}",
            f"Bench device {i // 3:04d}",
            METRICS[i % 3],
            "x",
        )
        for i in range(sensors)
    ]


def _size(path: Path) -> int:
    return sum(
        os.stat(f"{path}{suffix}").st_size
        for suffix in ("", "-wal")
        if os.path.exists(f"{path}{suffix}")
    )


def generate(path: Path, sensors: int, readings: int, *, vacuum_floor: bool) -> dict:
    """A database of ``readings`` rows over ``sensors`` sensors; returns its meta data."""
    _remove_db(path)
    storage = Storage(path)
    storage.open()  # homepoll's schema, migrations and pragmas
    storage.close()
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = OFF")  # generation only: no need to survive a crash
        conn.executemany(
            "INSERT INTO sensors (id, source, device_id, name, metric, unit) VALUES (?,?,?,?,?,?)",
            _sensor_rows(sensors),
        )
        rows = _rows(sensors, readings)
        # The newest rows go to readings_recent, as just before the daemon moves them: the
        # read functions then pay for the biggest readings_recent they can meet.
        total = readings // sensors * sensors
        recent = min(MERGE_ROWS - 1, total)
        older = itertools.islice(rows, total - recent)
        count = 0
        started = time.perf_counter()
        insert_time = 0.0
        while True:
            chunk = list(itertools.islice(older, 100_000))
            if not chunk:
                break
            t0 = time.perf_counter()
            conn.execute("BEGIN")
            conn.executemany(
                "INSERT INTO readings (sensor_id, ts, value, polled_at) VALUES (?, ?, ?, ?)", chunk
            )
            conn.execute("COMMIT")
            insert_time += time.perf_counter() - t0
            count += len(chunk)
        conn.execute("BEGIN")
        count += conn.executemany(
            "INSERT INTO readings_recent (sensor_id, ts, value, polled_at) VALUES (?, ?, ?, ?)",
            list(rows),
        ).rowcount
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        elapsed = time.perf_counter() - started
        meta = {
            "version": CACHE_VERSION,
            "sensors": sensors,
            "readings": count,
            "generate_seconds": round(elapsed, 2),
            "executemany_rate": count / insert_time if insert_time else None,
            "bytes": _size(path),
        }
        if vacuum_floor:
            packed = Path(f"{path}.vacuum")
            _remove_db(packed)
            conn.execute("VACUUM INTO ?", (str(packed),))
            meta["vacuum_bytes"] = os.stat(packed).st_size
            _remove_db(packed)
    finally:
        conn.close()
    return meta


def cached_db(
    cache: Path, sensors: int, readings: int, *, vacuum_floor: bool, log
) -> tuple[Path, dict]:
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / f"readings-{sensors}s-{readings}r.db"
    meta_path = path.with_suffix(".json")
    with contextlib.suppress(OSError, ValueError):
        meta = json.loads(meta_path.read_text())
        if (
            meta.get("version") == CACHE_VERSION
            and path.exists()
            and (not vacuum_floor or "vacuum_bytes" in meta)
        ):
            return path, meta
    log(f"  generating {readings:,} readings over {sensors} sensors into {path.name} ...")
    meta = generate(path, sensors, readings, vacuum_floor=vacuum_floor)
    meta_path.write_text(json.dumps(meta, indent=2))
    return path, meta


def _timed(fn: Callable[[], object], runs: int) -> tuple[float, int, list[float]]:
    times = []
    size = 0
    for _ in range(runs):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
        size = len(result)  # type: ignore[arg-type]
    return statistics.median(times), size, times


def _floor_query(path: Path, sql: str, args: tuple) -> Callable[[], list]:
    uri = path.absolute().as_uri() + "?mode=ro"

    def run() -> list:
        conn = sqlite3.connect(uri, uri=True)
        try:
            return conn.execute(sql, args).fetchall()
        finally:
            conn.close()

    return run


def query_figures(path: Path, runs: int, week_runs: int) -> dict:
    """Query times with homepoll.storage's read functions, next to raw sqlite3 (the floor)."""
    with sqlite3.connect(path.absolute().as_uri() + "?mode=ro", uri=True) as conn:
        newest = conn.execute(
            "SELECT max(ts) FROM (SELECT max((SELECT ts FROM readings WHERE sensor_id = s.id"
            " ORDER BY ts DESC LIMIT 1)) AS ts FROM sensors s"
            " UNION ALL SELECT max(ts) FROM readings_recent)"
        ).fetchone()[0]
        device, metric, sid = conn.execute(
            "SELECT device_id, metric, id FROM sensors WHERE id = 1"
        ).fetchone()
    conn.close()
    day_since, week_since = newest - DAY_MS, newest - 7 * DAY_MS
    out: dict = {}
    cases = {
        "latest": (
            lambda: latest_readings(path),
            _floor_query(
                path,
                "SELECT s.id, r.ts, r.value FROM sensors s CROSS JOIN readings r"
                " ON r.sensor_id = s.id AND r.ts = (SELECT max(ts) FROM readings"
                " WHERE sensor_id = s.id)",
                (),
            ),
            runs,
        ),
        "one_day": (
            lambda: query_readings(path, day_since, sensor=device, metric=metric),
            _floor_query(
                path,
                "SELECT ts, value FROM readings WHERE sensor_id = ? AND ts >= ?",
                (sid, day_since),
            ),
            runs,
        ),
        "week": (
            lambda: query_readings(path, week_since),
            _floor_query(
                path,
                "SELECT r.sensor_id, r.ts, r.value FROM sensors s CROSS JOIN readings r"
                " ON r.sensor_id = s.id WHERE r.ts >= ?",
                (week_since,),
            ),
            week_runs,
        ),
    }
    for name, (ours, floor, n) in cases.items():
        ours()  # warm the page cache: the daemon's own file is normally cached too
        median, rows, times = _timed(ours, n)
        floor_median, floor_rows, _ = _timed(floor, n)
        out[name] = {
            "seconds": median,
            "runs": times,
            "rows": rows,
            "floor_seconds": floor_median,
            "floor_rows": floor_rows,
        }
    return out


def write_rate(sensors: int, polls: int) -> dict:
    """Readings per second through homepoll's Storage.write (one poll per transaction, as the
    daemon does at commit_interval 0), next to executemany of the same rows in one go."""
    with tempfile.TemporaryDirectory(prefix="hpbench-store-") as tmp:
        path = Path(tmp) / "readings.db"
        # commit_interval 0: Storage's default (300, the shipped one) would only queue in RAM
        storage = Storage(path, commit_interval=0)
        storage.open()
        metas = _sensor_rows(sensors)
        batches = []
        for k in range(polls):
            ts = START_MS + k * 60_000
            batches.append(
                [
                    Reading("hue", m[2], m[3], m[4], "x", ts + i, float(i % 50))
                    for i, m in enumerate(metas)
                ]
            )
        t0 = time.perf_counter()
        for k, batch in enumerate(batches):
            storage.write(batch, START_MS + k * 60_000, PollRecord("hue", 0, 1, 1, "ok"))
        ours = time.perf_counter() - t0
        storage.close()

        floor_path = Path(tmp) / "floor.db"
        Storage(floor_path).open()
        conn = sqlite3.connect(floor_path, isolation_level=None)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.executemany(
            "INSERT INTO sensors (id, source, device_id, name, metric, unit) VALUES (?,?,?,?,?,?)",
            metas,
        )
        rows = [
            (i + 1, START_MS + k * 60_000 + i, float(i % 50), 0)
            for k in range(polls)
            for i in range(sensors)
        ]
        t0 = time.perf_counter()
        for k in range(polls):
            conn.execute("BEGIN")
            conn.executemany(
                "INSERT OR IGNORE INTO readings (sensor_id, ts, value, polled_at)"
                " VALUES (?, ?, ?, ?)",
                rows[k * sensors : (k + 1) * sensors],
            )
            conn.execute("COMMIT")
        floor = time.perf_counter() - t0
        conn.close()
    total = sensors * polls
    return {"readings": total, "rate": total / ours, "floor_rate": total / floor}


HUE_METRICS = (("presence", "bool"), ("light_level", "lux"), ("temperature", "degC"))
AQM_METRICS = (
    ("temperature", "degC"),
    ("humidity", "%"),
    ("voc", "index"),
    ("pm25", "ug/m3"),
    ("pm10", "ug/m3"),
    ("co", "ppm"),
    ("iaq", "index"),
)


def seed_history(
    path: Path,
    hue_devices: int,
    monitors: list[str],
    days: float,
) -> int:
    """Give a flash run a mature database: ``days`` of 5-minute history for every sensor the
    simulators serve (same source, device id and metric, so the daemon appends to them).

    On an empty file every sensor's rows share a few B-tree pages; after a day or more each
    sensor has leaf pages of its own, and a commit touching n sensors rewrites n pages. A
    flash figure measured on an empty file would flatter homepoll.
    """
    keys = [
        ("hue", f"00:17:88:01:00:00:{n >> 8:02x}:{n & 0xFF:02x}", metric, unit)
        for n in range(1, hue_devices + 1)
        for metric, unit in HUE_METRICS
    ] + [
        ("amazon_aqm", endpoint, metric, unit)
        for endpoint in monitors
        for metric, unit in AQM_METRICS
    ]
    storage = Storage(path)
    storage.open()
    storage.close()
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = OFF")
        conn.executemany(
            "INSERT INTO sensors (id, source, device_id, name, metric, unit) VALUES (?,?,?,?,?,?)",
            [
                (i + 1, src, dev, dev, metric, unit)
                for i, (src, dev, metric, unit) in enumerate(keys)
            ],
        )
        rng = random.Random(3)
        end = int(time.time() * 1000) - 3_600_000
        steps = int(days * DAY_MS / CADENCE_MS)
        start = end - steps * CADENCE_MS
        rows = (
            (i + 1, start + k * CADENCE_MS + i, _value(rng, i % 3), start + k * CADENCE_MS + 1500)
            for k in range(steps)
            for i in range(len(keys))
        )
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO readings VALUES (?, ?, ?, ?)", rows)
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    return steps * len(keys)
