"""Storage against real SQLite files: schema, dedup, on_change, batching, outages, recovery."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from homepoll.model import Reading
from homepoll.storage import (
    MIGRATIONS,
    PAGE_SIZE,
    PollRecord,
    SchemaTooNewError,
    Storage,
    database_summary,
    latest_readings,
    query_readings,
    recent_polls,
)
from homepoll.storage import prune as prune_module
from homepoll.storage import queries as queries_module

T0 = 1_763_000_000_000  # unix ms
DAY = 86_400_000


def temp(ts: int, value: float, device: str = "00:17:88:01:02:00:aa:01-02-0402", name="Hall"):
    return Reading("hue", device, name, "temperature", "degC", ts, value)


def battery(ts: int, value: float, device: str = "00:17:88:01:02:00:aa:01-02-0402"):
    return Reading("hue", device, "Hall", "battery", "%", ts, value, on_change=True)


def poll(started_at: int = T0, collector: str = "hue", outcome: str = "ok") -> PollRecord:
    return PollRecord(collector, started_at, 120, 1, outcome)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "data" / "readings.db"


@pytest.fixture
def make(db: Path) -> Iterator:
    """Build opened Storage objects on ``db``; all closed at the end of the test."""
    made: list[Storage] = []

    def _make(**kwargs) -> Storage:
        kwargs.setdefault("commit_interval", 0)  # these tests read the file after each write
        s = Storage(kwargs.pop("path", db), **kwargs)
        s.open()
        made.append(s)
        return s

    yield _make
    for s in made:
        s.close()


def rows(path: Path, sql: str, *args) -> list[tuple]:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return conn.execute(sql, args).fetchall()


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Another connection holding the write lock, as a second writer process would."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN EXCLUSIVE")
        yield
        conn.execute("ROLLBACK")
    finally:
        conn.close()


def errors(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == level]


# --------------------------------------------------------------------------- schema


def test_schema_version_wal_and_indexes(make, db: Path) -> None:
    make()
    assert db.parent.is_dir()
    assert rows(db, "PRAGMA user_version") == [(len(MIGRATIONS),)]
    assert rows(db, "PRAGMA page_size") == [(PAGE_SIZE,)]
    assert rows(db, "PRAGMA journal_mode") == [("wal",)]
    objects = dict(rows(db, "SELECT name, type FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'"))
    assert objects == {
        "sensors": "table",
        "readings": "table",
        "readings_recent": "table",
        "polls": "table",
        "readings_view": "view",
        "mqtt_outbox": "table",  # empty unless mqtt.events (homepoll/mqtt/outbox.py)
        "mqtt_cursor": "table",
    }
    cols = {t: [r[1] for r in rows(db, f"PRAGMA table_info({t})")] for t in objects}
    assert cols["readings"] == ["sensor_id", "ts", "value", "polled_at"]
    assert cols["sensors"] == ["id", "source", "device_id", "name", "metric", "unit"]
    assert cols["polls"] == [
        *("collector", "started_at", "duration_ms", "attempts", "outcome", "readings", "error")
    ]
    assert cols["readings_view"] == [
        *("ts", "source", "device_id", "name", "metric", "unit", "value", "polled_at")
    ]
    (sql,) = rows(db, "SELECT sql FROM sqlite_master WHERE name = 'readings'")[0]
    assert "WITHOUT ROWID" in sql and "PRIMARY KEY (sensor_id, ts)" in sql
    assert cols["readings_recent"] == cols["readings"]
    (sql,) = rows(db, "SELECT sql FROM sqlite_master WHERE name = 'readings_recent'")[0]
    assert "WITHOUT ROWID" in sql and "PRIMARY KEY (ts, sensor_id)" in sql


def test_reopen_keeps_data_and_refuses_newer_schema(make, db: Path) -> None:
    s = make()
    s.write([temp(T0, 20.5)], T0, poll())
    s.close()
    make()  # second open: no re-migration, data intact
    assert len(query_readings(db, 0)) == 1
    with contextlib.closing(sqlite3.connect(db)) as conn:
        conn.execute("PRAGMA user_version = 7")
        conn.commit()
    with pytest.raises(SchemaTooNewError):
        Storage(db).open()


# --------------------------------------------------------------------------- write / query


def test_write_then_query_and_filters(make, db: Path) -> None:
    s = make()
    kitchen = "00:17:88:01:02:00:bb:01-02-0402"
    result = s.write(
        [temp(T0, 20.5), temp(T0 + 60_000, 20.7), temp(T0, 19.0, kitchen, "Kitchen_Motion")],
        T0 + 61_000,
        poll(),
    )
    assert (result.stored, result.queued, result.dropped, result.error) == (3, 0, 0, None)
    got = query_readings(db, 0)
    assert [(r["ts"], r["name"], r["value"]) for r in got] == [
        (T0, "Hall", 20.5),
        (T0, "Kitchen_Motion", 19.0),
        (T0 + 60_000, "Hall", 20.7),
    ]
    assert got[0] == {
        "ts": T0,
        "source": "hue",
        "device_id": "00:17:88:01:02:00:aa:01-02-0402",
        "name": "Hall",
        "metric": "temperature",
        "unit": "degC",
        "value": 20.5,
        "polled_at": T0 + 61_000,
    }
    assert [r["value"] for r in query_readings(db, T0 + 1)] == [20.7]
    assert [r["value"] for r in query_readings(db, 0, sensor="HALL")] == [20.5, 20.7]
    assert [r["value"] for r in query_readings(db, 0, sensor=kitchen)] == [19.0]
    assert query_readings(db, 0, sensor="n_m") == query_readings(db, 0, sensor="kitchen")
    assert query_readings(db, 0, sensor="%") == []  # LIKE wildcards are taken literally
    assert query_readings(db, 0, metric="humidity") == []
    assert [r["value"] for r in query_readings(db, 0, limit=1)] == [20.7]  # the newest
    assert [r["ts"] for r in query_readings(db, 0, limit=2)] == [T0, T0 + 60_000]
    polls = recent_polls(db, "hue", 5)
    assert [(p["outcome"], p["readings"]) for p in polls] == [("ok", 3)]


def test_failed_poll_without_readings_is_recorded(make, db: Path) -> None:
    s = make()
    s.write([], T0, PollRecord("amazon_aqm", T0, 3000, 4, "transient", "HTTP 503"))
    s.write([], T0 + 1, PollRecord("amazon_aqm", T0 + 300_000, 90, 1, "auth", "HTTP 401"))
    assert [(p["outcome"], p["error"], p["readings"]) for p in recent_polls(db, "amazon_aqm")] == [
        ("auth", "HTTP 401", 0),
        ("transient", "HTTP 503", 0),
    ]
    assert recent_polls(db, "hue") == []


def test_duplicate_ts_is_ignored(make, db: Path) -> None:
    s = make()
    batch = [temp(T0, 20.5), temp(T0 + 60_000, 20.7)]
    assert s.write(batch, T0 + 61_000, poll(T0)).stored == 2
    assert s.write(batch, T0 + 65_000, poll(T0 + 5000)).stored == 0
    assert s.write([*batch, temp(T0 + 120_000, 21.0)], T0, poll(T0 + 10_000)).stored == 1
    assert rows(db, "SELECT readings FROM polls ORDER BY started_at") == [(2,), (0,), (1,)]
    assert rows(db, "SELECT count(*) FROM readings_view") == [(3,)]
    # the first stored polled_at is kept: a re-read does not rewrite the row
    assert rows(db, "SELECT polled_at FROM readings_view WHERE ts = ?", T0) == [(T0 + 61_000,)]


def test_sensor_rename_updates_the_one_sensor_row(make, db: Path) -> None:
    s = make()
    s.write([temp(T0, 20.5)], T0, poll())
    s.write([temp(T0 + 1, 20.6, name="Hallway")], T0, poll())
    assert rows(db, "SELECT name FROM sensors") == [("Hallway",)]
    assert {r["name"] for r in query_readings(db, 0)} == {"Hallway"}


def test_on_change_stored_only_when_value_changes(make, db: Path) -> None:
    s = make()
    assert s.write([battery(T0, 80)], T0, poll()).stored == 1
    assert s.write([battery(T0 + 60_000, 80)], T0, poll()).stored == 0
    assert s.write([battery(T0 + 120_000, 79)], T0, poll()).stored == 1
    s.close()
    # a fresh process (`homepoll once`) must look the last value up in the file
    s2 = make()
    assert s2.write([battery(T0 + 180_000, 79)], T0, poll()).stored == 0
    assert s2.write([battery(T0 + 240_000, 80)], T0, poll()).stored == 1
    assert [(r["ts"], r["value"]) for r in query_readings(db, 0, metric="battery")] == [
        (T0, 80),
        (T0 + 120_000, 79),
        (T0 + 240_000, 80),
    ]
    assert rows(db, "SELECT readings FROM polls") == [(1,), (0,), (1,), (0,), (1,)]


def test_on_change_notices_writes_by_another_process(make, db: Path) -> None:
    daemon, once = make(), make()
    daemon.write([battery(T0, 80)], T0, poll())
    once.write([battery(T0 + 1000, 79)], T0, poll())
    # the daemon's cached 80 is stale: the newest stored value is 79, so 80 is a change
    assert daemon.write([battery(T0 + 2000, 80)], T0, poll()).stored == 1
    assert [r["value"] for r in query_readings(db, 0)] == [80, 79, 80]


def test_on_change_within_one_batch(make, db: Path) -> None:
    clock = FakeClock()
    s = make(commit_interval=60, clock=clock)
    for i, v in enumerate([80, 80, 79, 79, 80]):
        s.write([battery(T0 + i * 1000, v)], T0, poll())
    assert s.flush().stored == 3
    assert rows(db, "SELECT readings FROM polls") == [(1,), (0,), (1,), (0,), (1,)]


# --------------------------------------------------------------------------- batching


def test_commit_interval_batches_with_injected_clock(make, db: Path) -> None:
    clock = FakeClock()
    s = make(commit_interval=10, clock=clock)
    r = s.write([temp(T0, 20.0)], T0, poll(T0))
    assert (r.stored, r.queued) == (0, 1)
    clock.now += 9.9
    assert s.write([temp(T0 + 1, 20.1)], T0, poll(T0 + 1)).stored == 0
    assert query_readings(db, 0) == [] and s.queued == 2
    clock.now += 0.1
    r = s.write([temp(T0 + 2, 20.2)], T0, poll(T0 + 2))
    assert (r.stored, r.queued) == (3, 0)
    assert len(query_readings(db, 0)) == 3
    assert rows(db, "SELECT readings FROM polls ORDER BY started_at") == [(1,), (1,), (1,)]
    # the interval restarts at the commit
    clock.now += 5
    assert s.write([temp(T0 + 3, 20.3)], T0, poll(T0 + 3)).stored == 0
    assert s.flush().stored == 1
    assert s.queued == 0 and len(query_readings(db, 0)) == 4


def test_close_flushes_and_write_after_close_fails(make, db: Path) -> None:
    s = make(commit_interval=3600, clock=FakeClock())
    s.write([temp(T0, 20.0)], T0, poll())
    assert query_readings(db, 0) == []
    s.close()
    assert len(query_readings(db, 0)) == 1
    with pytest.raises(RuntimeError):
        s.write([temp(T0 + 1, 20.0)], T0, poll())


def test_full_queue_forces_a_commit_before_the_interval(make, db: Path) -> None:
    s = make(commit_interval=3600, queue_limit=3, clock=FakeClock())
    assert s.write([temp(T0, 1), temp(T0 + 1, 2)], T0, poll()).stored == 0
    assert s.write([temp(T0 + 2, 3)], T0, poll()).stored == 3
    assert s.dropped == 0


# --------------------------------------------------------------------------- outages


def test_locked_database_keeps_readings_queued_then_writes_them_once(
    make, db: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="homepoll.storage")
    s = make(busy_timeout=0.05)
    with locked(db):
        r1 = s.write([temp(T0, 20.0), battery(T0, 80)], T0, poll(T0))
        r2 = s.write([temp(T0 + 60_000, 20.1), battery(T0 + 60_000, 80)], T0, poll(T0 + 60_000))
    assert r1.stored == 0 and r1.queued == 2 and "locked" in (r1.error or "")
    assert (r2.stored, r2.queued, r2.dropped) == (0, 4, 0)
    assert s.queued == 4 and s.last_error == r2.error
    assert len(errors(caplog, logging.ERROR)) == 1  # once per outage, not per write
    r3 = s.write([temp(T0 + 120_000, 20.2)], T0, poll(T0 + 120_000))
    assert (r3.stored, r3.queued, r3.error) == (4, 0, None)  # battery 80 twice -> one row
    assert s.last_error is None
    assert any("work again" in m and "5 queued" in m for m in errors(caplog, logging.INFO))
    assert rows(db, "SELECT count(*) FROM readings_view") == [(4,)]
    assert rows(db, "SELECT started_at, readings FROM polls ORDER BY started_at") == [
        (T0, 2),
        (T0 + 60_000, 1),
        (T0 + 120_000, 1),
    ]


def test_disk_full_keeps_readings_queued_then_writes_them_once(make, db: Path) -> None:
    s = make()
    s.write([temp(T0, 20.0)], T0, poll())
    # Make SQLite itself report SQLITE_FULL: cap the file at its current size on the
    # daemon's own connection (the limit is per connection, so nothing else can set it).
    conn = s._db.conn
    assert conn is not None
    (pages,) = conn.execute("PRAGMA page_count").fetchone()
    conn.execute(f"PRAGMA max_page_count = {pages}")
    many = [temp(T0 + i, float(i), device=f"dev-{i % 50}") for i in range(1, 2001)]
    r = s.write(many, T0, poll(T0 + 1))
    assert (r.stored, r.queued) == (0, 2000)
    assert r.error == "database or disk is full"
    assert s.write([], T0, poll(T0 + 2)).queued == 2000  # retried, still full
    conn.execute("PRAGMA max_page_count = 1073741823")
    r = s.write([temp(T0 + 5000, 1.0)], T0, poll(T0 + 3))
    assert (r.stored, r.queued, r.error) == (2001, 0, None)
    assert rows(db, "SELECT count(*) FROM readings_view") == [(2002,)]
    assert rows(db, "SELECT readings FROM polls ORDER BY started_at") == [(1,), (2000,), (0,), (1,)]


def test_queue_overflow_drops_oldest_counts_and_logs_once(
    make, db: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="homepoll.storage")
    s = make(queue_limit=5, busy_timeout=0.02)
    with locked(db):
        s.write([temp(T0 + i, i) for i in range(3)], T0, poll(T0))
        r = s.write([temp(T0 + i, i) for i in range(3, 6)], T0, poll(T0 + 1))
        assert (r.queued, r.dropped) == (5, 1)
        r = s.write([temp(T0 + i, i) for i in range(6, 9)], T0, poll(T0 + 2))
        assert (r.queued, r.dropped) == (5, 4)
    overflow = [m for m in errors(caplog, logging.ERROR) if "dropped" in m]
    assert len(overflow) == 1 and "1 oldest" in overflow[0]
    r = s.write([], T0, poll(T0 + 3))
    assert (r.stored, r.queued, r.dropped, r.error) == (5, 0, 4, None)
    assert s.dropped == 4
    assert [r["value"] for r in query_readings(db, 0)] == [4, 5, 6, 7, 8]  # the newest kept
    assert any("4 readings were dropped" in m for m in errors(caplog, logging.INFO))


def test_corrupt_file_at_open_is_moved_aside(
    make, db: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db.parent.mkdir(parents=True)
    garbage = b"this is not sqlite at all\x00\xff" * 200
    db.write_bytes(garbage)
    Path(f"{db}-wal").write_bytes(b"stale wal")
    s = make()
    moved = sorted(p.name for p in db.parent.iterdir() if ".corrupt-" in p.name)
    assert re.fullmatch(r"readings\.db\.corrupt-\d{8}T\d{6}Z", moved[0]), moved
    assert (db.parent / moved[0]).read_bytes() == garbage
    # its journal goes with it (SQLite would delete a -wal left behind)
    assert (db.parent / f"{moved[0]}-wal").read_bytes() == b"stale wal"
    assert any(r.levelno == logging.CRITICAL for r in caplog.records)
    assert s.write([temp(T0, 20.0)], T0, poll()).stored == 1
    assert len(query_readings(db, 0)) == 1
    assert rows(db, "PRAGMA integrity_check") == [("ok",)]


def test_corrupt_file_found_during_write_keeps_pending_readings(make, db: Path) -> None:
    s = make()
    s.write([temp(T0, 20.0)], T0, poll())
    junk = db.with_name("junk")
    junk.write_bytes(b"\x13" * 8192)
    os.replace(junk, db)  # the file is swapped for garbage under the running daemon
    r = s.write([temp(T0 + 1, 21.0), temp(T0 + 2, 22.0)], T0, poll())
    assert (r.stored, r.queued, r.error) == (2, 0, None)
    assert [x["value"] for x in query_readings(db, 0)] == [21.0, 22.0]
    assert len([p for p in db.parent.iterdir() if ".corrupt-" in p.name]) == 1


def test_database_deleted_while_open_is_recreated(
    make, db: Path, caplog: pytest.LogCaptureFixture
) -> None:
    s = make()
    s.write([temp(T0, 20.0), battery(T0, 80)], T0, poll())
    db.unlink()
    r = s.write([temp(T0 + 1, 21.0), battery(T0 + 1, 80)], T0, poll())
    assert r.error is None and db.is_file()
    # battery 80 is stored again: the cache belonged to the deleted file
    assert [(x["metric"], x["value"]) for x in query_readings(db, 0)] == [
        ("battery", 80),
        ("temperature", 21.0),
    ]
    assert rows(db, "PRAGMA integrity_check") == [("ok",)]
    assert any("deleted" in m for m in errors(caplog, logging.WARNING))


# --------------------------------------------------------------------------- prune


def test_prune_deletes_old_readings_and_polls_in_batches(
    make, db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(prune_module, "PRUNE_BATCH", 3)
    s = make()
    now = T0 + 10 * DAY
    old = [temp(T0 + i, i) for i in range(7)] + [temp(T0 + i, i, device="b") for i in range(5)]
    s.write([*old, battery(T0, 80)], T0, poll(T0))
    s.write([temp(now - DAY // 2, 30.0)], now, poll(now - 1000))
    assert s.prune(0, now) == 0
    assert s.prune(2, now) == 13
    assert [x["value"] for x in query_readings(db, 0)] == [30.0]
    assert rows(db, "SELECT started_at FROM polls") == [(now - 1000,)]
    # battery's only row was pruned: an unchanged 80 must be stored again
    assert s.write([battery(now, 80)], now, poll(now)).stored == 1


# --------------------------------------------------------------------------- read side


def test_read_helpers_on_missing_file_create_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "readings.db"
    assert query_readings(missing, 0) == []
    assert latest_readings(missing) == []
    assert recent_polls(missing, "hue", 5) == []
    summary = database_summary(missing)
    assert summary["exists"] is False and summary["size_bytes"] == 0
    assert not missing.parent.exists()


def test_database_summary(make, db: Path) -> None:
    s = make()
    s.write([temp(T0, 1.0), temp(T0 + 5, 2.0, device="b")], T0, poll())
    s.write([battery(T0 + 3, 80)], T0, poll())
    summary = database_summary(db)
    assert summary["exists"] is True and summary["error"] is None
    assert summary["size_bytes"] >= db.stat().st_size > 0
    assert (summary["sensors"], summary["readings"], summary["polls"]) == (3, 3, 2)
    assert summary["newest_ts"] == T0 + 5 and summary["schema_version"] == len(MIGRATIONS)


def test_database_summary_reports_unreadable_file(tmp_path: Path) -> None:
    bad = tmp_path / "readings.db"
    bad.write_bytes(b"garbage" * 1000)
    summary = database_summary(bad)
    assert summary["exists"] is True and "not a database" in summary["error"]


def test_latest_readings_per_sensor_without_scanning(make, db: Path) -> None:
    s = make()
    batch = []
    for i in range(30):
        batch += [temp(T0 + i * 1000, i, device="a", name="A")]
        batch += [temp(T0 + i * 2000, 100 + i, device="b", name="B")]
    batch += [battery(T0 + 5, 80, device="a"), temp(T0, 7.0, device="c", name="C")]
    s.write(batch, T0, poll())
    got = [(r["device_id"], r["metric"], r["ts"], r["value"]) for r in latest_readings(db)]
    assert sorted(got) == [
        ("a", "battery", T0 + 5, 80),
        ("a", "temperature", T0 + 29_000, 29),
        ("b", "temperature", T0 + 58_000, 129),
        ("c", "temperature", T0, 7.0),
    ]
    # The read queries must seek the primary key per sensor, never scan all readings.
    with contextlib.closing(sqlite3.connect(db)) as conn:
        queries = [
            (queries_module._LATEST_SQL, []),
            queries_module._readings_sql(T0, None, None, None),
            queries_module._readings_sql(T0, "a", "temperature", 10),
        ]
        for sql, args in queries:
            plan = [r[3] for r in conn.execute(f"EXPLAIN QUERY PLAN {sql}", args)]
            assert not [p for p in plan if re.match(r"SCAN (r|readings)\b", p)], plan
            assert any("SEARCH r USING PRIMARY KEY (sensor_id=?" in p for p in plan), plan


def test_a_version_1_database_migrates_and_keeps_its_rows(tmp_path: Path) -> None:
    db = tmp_path / "readings.db"
    conn = sqlite3.connect(db)
    MIGRATIONS[0](conn)
    conn.execute("PRAGMA user_version = 1")
    conn.execute("INSERT INTO polls VALUES ('hue', 1, 1, 1, 'ok', 0, NULL)")
    conn.commit()
    conn.close()
    s = Storage(db, commit_interval=0)
    s.open()
    s.close()
    assert rows(db, "PRAGMA user_version") == [(len(MIGRATIONS),)]
    indexes = rows(db, "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'polls'")
    assert indexes == []
    assert len(recent_polls(db, "hue")) == 1


# --------------------------------------------------------------------------- readings_recent


def table_counts(db: Path) -> tuple[int, int]:
    """(rows in readings, rows in readings_recent)."""
    (counts,) = rows(
        db, "SELECT (SELECT count(*) FROM readings), (SELECT count(*) FROM readings_recent)"
    )
    return counts


def test_new_rows_wait_in_readings_recent_until_the_row_limit_moves_them(make, db: Path) -> None:
    s = make(merge_rows=5)
    s.write([temp(T0 + i, i) for i in range(3)], T0, poll(T0))
    assert table_counts(db) == (0, 3)
    assert len(query_readings(db, 0)) == 3  # queries see readings_recent
    s.write([temp(T0 + i, i) for i in range(3, 6)], T0, poll(T0 + 1))
    assert table_counts(db) == (6, 0)  # 6 >= 5: moved in one go
    # A re-read of a moved row is still a no-op, and counts as nothing stored.
    r = s.write([temp(T0 + 2, 2), temp(T0 + 6, 6)], T0, poll(T0 + 2))
    assert r.stored == 1 and table_counts(db) == (6, 1)
    assert rows(db, "SELECT readings FROM polls ORDER BY started_at") == [(3,), (3,), (1,)]
    values = [row["value"] for row in query_readings(db, 0)]
    assert values == [0, 1, 2, 3, 4, 5, 6]


def test_readings_recent_moves_after_the_merge_interval(make, db: Path) -> None:
    clock = FakeClock()
    s = make(clock=clock, merge_interval=3600)
    s.write([temp(T0, 1.0)], T0, poll(T0))
    clock.now += 3599
    s.write([temp(T0 + 1, 2.0)], T0, poll(T0 + 1))
    assert table_counts(db) == (0, 2)
    clock.now += 1
    s.write([temp(T0 + 2, 3.0)], T0, poll(T0 + 2))
    assert table_counts(db) == (3, 0)
    clock.now += 7200
    s.write([temp(T0 + 2, 3.0)], T0, poll(T0 + 3))  # nothing new: nothing to move
    assert table_counts(db) == (3, 0)


def test_on_change_compares_with_the_newest_row_in_either_table(make, db: Path) -> None:
    s = make(merge_rows=2)
    s.write([battery(T0, 80), battery(T0 + 1, 70)], T0, poll())
    assert table_counts(db) == (2, 0)
    s.close()
    s = make(merge_rows=100)  # a fresh process: the newest value comes from readings
    assert s.write([battery(T0 + 2, 70)], T0, poll(T0 + 2)).stored == 0
    assert s.write([battery(T0 + 3, 60)], T0, poll(T0 + 3)).stored == 1
    s.close()
    s = make(merge_rows=100)  # ... and now from readings_recent
    assert s.write([battery(T0 + 4, 60)], T0, poll(T0 + 4)).stored == 0
    assert [r["value"] for r in query_readings(db, 0)] == [80, 70, 60]


def test_latest_and_summary_take_the_newer_row_of_the_two_tables(make, db: Path) -> None:
    s = make(merge_rows=2)
    s.write([temp(T0 + 10, 1.0, device="a"), temp(T0 + 20, 2.0, device="b")], T0, poll())
    s.close()
    s = make(merge_rows=100)
    s.write([temp(T0 + 30, 3.0, device="a")], T0, poll(T0 + 1))
    # after a clock step back, readings_recent can hold an older row than readings
    s.write([temp(T0 + 5, 0.5, device="b"), temp(T0 + 1, 9.0, device="c")], T0, poll(T0 + 2))
    assert table_counts(db) == (2, 3)
    got = {r["device_id"]: (r["ts"], r["value"]) for r in latest_readings(db)}
    assert got == {"a": (T0 + 30, 3.0), "b": (T0 + 20, 2.0), "c": (T0 + 1, 9.0)}
    summary = database_summary(db)
    assert (summary["readings"], summary["newest_ts"]) == (5, T0 + 30)
    newest = query_readings(db, 0, limit=2)
    assert [(r["device_id"], r["ts"]) for r in newest] == [("b", T0 + 20), ("a", T0 + 30)]


def test_a_failed_move_keeps_the_rows_where_they_are(
    make, db: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="homepoll.storage")
    s = make(merge_rows=3)
    s.write([temp(T0, 0.0)], T0, poll())
    # Any failure inside the move: here a trigger refusing every insert into readings.
    with contextlib.closing(sqlite3.connect(db)) as conn:
        conn.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON readings BEGIN SELECT RAISE(ABORT, 'no'); END"
        )
        conn.commit()
    r = s.write([temp(T0 + i, i) for i in range(1, 60)], T0, poll(T0 + 1))
    assert (r.stored, r.error) == (59, None)  # the commit itself went through
    assert table_counts(db) == (0, 60)
    assert any("stay in readings_recent" in m for m in errors(caplog, logging.WARNING))
    s.write([temp(T0 + 60, 60.0)], T0, poll(T0 + 1))  # tried again (row limit), fails again
    assert table_counts(db) == (0, 61)
    assert len(errors(caplog, logging.WARNING)) == 1  # logged once per episode
    with contextlib.closing(sqlite3.connect(db)) as conn:
        conn.execute("DROP TRIGGER refuse")
        conn.commit()
    s.write([temp(T0 + 500, 1.0)], T0, poll(T0 + 2))
    assert table_counts(db) == (62, 0)
    assert len(query_readings(db, 0)) == 62
    assert any("works again" in m for m in errors(caplog, logging.INFO))


def test_prune_also_clears_old_rows_from_readings_recent(make, db: Path) -> None:
    s = make(merge_rows=3)
    s.write([temp(T0 - 10 * DAY, 1.0), temp(T0 - 9 * DAY, 2.0), temp(T0, 3.0)], T0, poll())
    s.write([temp(T0 - 8 * DAY, 4.0), temp(T0 + 1, 5.0)], T0, poll(T0 + 1))
    assert table_counts(db) == (3, 2)
    assert s.prune(7, T0) == 3
    assert [r["value"] for r in query_readings(db, 0)] == [3.0, 5.0]


def test_a_version_2_database_is_readable_before_and_after_its_migration(tmp_path: Path) -> None:
    db = tmp_path / "readings.db"
    conn = sqlite3.connect(db)
    for migrate in MIGRATIONS[:2]:
        migrate(conn)
    conn.execute("PRAGMA user_version = 2")
    conn.execute("INSERT INTO sensors VALUES (1, 'hue', 'a', 'Hall', 'temperature', 'degC')")
    conn.execute("INSERT INTO readings VALUES (1, ?, 20.5, ?)", (T0, T0))
    conn.commit()
    conn.close()
    before = (query_readings(db, 0), latest_readings(db), database_summary(db)["readings"])
    assert [r["value"] for r in before[0]] == [20.5] and len(before[1]) == 1 and before[2] == 1
    assert rows(db, "PRAGMA user_version") == [(2,)]  # the read side changed nothing
    s = Storage(db, commit_interval=0)
    s.open()
    s.write([temp(T0 + 1, 21.0, device="a")], T0, poll())
    s.close()
    assert rows(db, "PRAGMA user_version") == [(len(MIGRATIONS),)]
    assert [r["value"] for r in query_readings(db, 0)] == [20.5, 21.0]
