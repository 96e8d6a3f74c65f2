"""The spool and the prune clock guard on real files, with injected clocks (no daemon)."""

from __future__ import annotations

import logging
import os
import sqlite3
from pathlib import Path

import pytest

from homepoll.model import Reading
from homepoll.storage import PollRecord, Storage, query_readings
from homepoll.storage import spool as spool_module
from homepoll.storage.prune import DAY_MS, ClockGuard
from homepoll.storage.spool import Spool, spool_folder, spool_path

T0 = 1_763_000_000_000


class Mono:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def temp(ts: int, value: float) -> Reading:
    return Reading("hue", "dev-1", "Hall", "temperature", "degC", ts, value)


def make(db: Path, clock=None, **options) -> Storage:
    spool = Spool(db.parent / "run" / "spool.jsonl", db)
    spool.path.parent.mkdir(parents=True, exist_ok=True)
    storage = Storage(db, commit_interval=300, clock=clock or Mono(), spool=spool, **options)
    storage.open()
    return storage


def count(db: Path, sql: str) -> int:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql).fetchone()[0]
    finally:
        conn.close()


def test_a_killed_writer_leaves_its_readings_in_the_spool_and_the_next_open_stores_them(
    tmp_path: Path,
) -> None:
    db = tmp_path / "readings.db"
    first = make(db, commit_first=True)
    for i in range(5):
        first.write([temp(T0 + i * 1000, 20 + i)], T0 + i, PollRecord("hue", T0 + i, 5, 1, "ok"))
    assert count(db, "SELECT count(*) FROM readings_view") == 1  # only the first, at once
    assert first.queued == 4 and first.next_commit() is not None
    # SIGKILL: nothing more happens; a new process opens the same database and spool.
    second = make(db)
    assert second.recovered.readings == 4 and len(second.recovered.batches) == 4
    assert count(db, "SELECT count(*) FROM readings_view") == 5
    assert count(db, "SELECT count(*) FROM polls") == 5
    assert second.queued == 0
    second.close()
    assert not (tmp_path / "run" / "spool.jsonl").exists()  # a clean close leaves no spool


def test_replay_after_a_kill_between_commit_and_emptying_the_spool_adds_no_poll_twice(
    tmp_path: Path,
) -> None:
    db = tmp_path / "readings.db"
    storage = make(db)
    storage.write([temp(T0, 20)], T0, PollRecord("hue", T0, 5, 1, "ok"))
    saved = storage.spool_path.read_bytes()
    storage.flush()
    storage.spool_path.write_bytes(saved + b'{"t": 1, "r": [[')  # + a line cut by the kill
    again = make(db)
    assert again.recovered.damaged_lines == 1
    assert count(db, "SELECT count(*) FROM polls") == 1
    assert count(db, "SELECT count(*) FROM readings_view") == 1


def test_a_stop_the_database_refuses_keeps_readings_beside_it(tmp_path: Path) -> None:
    db = tmp_path / "readings.db"
    storage = make(db, busy_timeout=0.05)
    storage.write([temp(T0, 20), temp(T0 + 1, 21)], T0, None)
    locker = sqlite3.connect(db, isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")
    assert storage.close() == 0  # nothing lost: kept beside the database
    locker.execute("ROLLBACK")
    locker.close()
    assert Path(f"{db}.pending").stat().st_mode & 0o777 == 0o600
    again = make(db)
    assert again.recovered.readings == 2
    assert not Path(f"{db}.pending").exists()
    assert len(query_readings(db, 0)) == 2


def test_a_stop_with_nowhere_to_keep_them_counts_the_readings_lost(tmp_path: Path) -> None:
    db = tmp_path / "readings.db"
    storage = make(db, busy_timeout=0.05)
    Path(f"{db}.pending").mkdir()  # the pending file cannot be written
    storage.spool_path.mkdir()  # nor the spool
    storage.write([temp(T0, 20)], T0, None)
    locker = sqlite3.connect(db, isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")
    try:
        assert storage.close() == 1
    finally:
        locker.execute("ROLLBACK")
        locker.close()


def test_spool_folder_prefers_runtime_directories_that_are_private(tmp_path: Path) -> None:
    db = tmp_path / "data" / "readings.db"
    assert spool_folder(db, {"RUNTIME_DIRECTORY": "/run/homepoll:/x"}) == Path("/run/homepoll")
    xdg = tmp_path / "xdg"
    xdg.mkdir()
    assert spool_folder(db, {"XDG_RUNTIME_DIR": str(xdg)}) == xdg / "homepoll"
    assert (xdg / "homepoll").stat().st_mode & 0o777 == 0o700
    # Somebody else's (here: a symlink planted in its place) is never used.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    planted = tmp_path / "xdg2"
    planted.mkdir()
    (planted / "homepoll").symlink_to(elsewhere)
    assert spool_folder(db, {"XDG_RUNTIME_DIR": str(planted)}) != planted / "homepoll"
    one, two = spool_path(db, {}), spool_path(tmp_path / "other" / "readings.db", {})
    assert one != two and one.name.startswith("readings.db-spool-")


def test_clock_guard_refuses_a_clock_far_ahead_or_behind_and_accepts_it_once_sane() -> None:
    mono = Mono()
    guard = ClockGuard(T0, mono=mono)
    assert guard.problem(T0 + 3_600_000) is None
    assert "40.0 days past" in guard.problem(T0 + 40 * DAY_MS + 1)
    assert "before the newest stored reading" in guard.problem(T0 - 1)
    guard.stored(T0 + 40 * DAY_MS)  # stored while the clock was wrong: not the new reference
    mono.now += 600
    assert guard.problem(T0 + 600_000) is None
    mono.now += 2 * 86_400
    assert guard.problem(T0 + 2 * DAY_MS) is None  # two days of uptime: two days later is fine


def test_prune_at_a_clock_40_days_ahead_deletes_nothing_then_resumes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="homepoll.storage")
    db = tmp_path / "readings.db"
    mono = Mono()
    storage = make(db, clock=mono, guard_clock=True, commit_first=True)
    rows = [temp(T0 - d * DAY_MS, d) for d in (35, 20, 1)]
    storage.write(rows, T0, PollRecord("hue", T0, 5, 1, "ok"))
    assert storage.prune(30, T0 + 40 * DAY_MS) == 0
    assert storage.prune(30, T0 + 40 * DAY_MS) == 0
    assert len(query_readings(db, 0)) == 3
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "not pruning" in warnings[0].getMessage()
    mono.now += 60
    assert storage.prune(30, T0 + 60_000) == 1  # the 35-day-old one, by a sane clock
    assert any("pruning resumes" in r.getMessage() for r in caplog.records)
    storage.close()


def test_spool_lines_are_private(tmp_path: Path) -> None:
    db = tmp_path / "readings.db"
    storage = make(db)
    storage.write([temp(T0, 20)], T0, None)
    assert os.stat(storage.spool_path).st_mode & 0o777 == 0o600
    storage.close()


def test_the_spool_stays_bounded_like_the_queue_while_commits_fail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(spool_module, "COMPACT_FLOOR", 32 * 1024)
    db = tmp_path / "readings.db"
    storage = make(db, busy_timeout=0.001, queue_limit=500)
    locker = sqlite3.connect(db, isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")
    try:
        for i in range(60):  # 6,000 readings through a queue of 500
            storage.write([temp(T0 + i * 100 + k, k) for k in range(100)], T0, None)
            storage.flush()  # the commit fails: the queue drops its oldest
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    assert storage.queued == 500 and storage.dropped == 5500
    assert storage.spool_path.stat().st_size < 160 * 1024  # not 6,000 readings' worth
    assert storage.flush().stored == 500
    again = make(db)  # a kill now: nothing replayed twice, nothing kept is lost
    assert len(query_readings(db, 0)) == 500
    again.close()
