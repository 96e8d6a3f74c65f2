"""Helpers shared by the reliability suite (tests/test_reliability_*.py) and bench/reliability.py.

The invariant every scenario ends with, process measurements (RSS, threads, open files) read
from /proc, the knobs that make a run short (CI) or long (the published figures), and the
figures file the runner turns into the table in docs/reliability.md.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Setup

# Metrics stored only when they change, with the poll time as ts: not in a simulator's served log.
ON_CHANGE_METRICS = ("battery", "reachable")

_FAKETIME_CANDIDATES = (
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/arm-linux-gnueabihf/faketime/libfaketime.so.1",
    "/usr/lib/faketime/libfaketime.so.1",
)
FAKETIME_LIB: Path | None = next((Path(p) for p in _FAKETIME_CANDIDATES if Path(p).is_file()), None)


# --------------------------------------------------------------------------- knobs


def soak_seconds(default: float) -> float:
    """Length of a compressed long run: short in CI, HOMEPOLL_SOAK_SECONDS for the figures."""
    return float(os.environ.get("HOMEPOLL_SOAK_SECONDS") or default)


def count_knob(name: str, default: int) -> int:
    """A repetition count (kills, hostile polls) with a CI default and an env override."""
    return int(os.environ.get(name) or default)


def record_figures(scenario: str, **figures: Any) -> None:
    """Append one scenario's figures to $HOMEPOLL_RELIABILITY_REPORT (JSON lines), if set."""
    target = os.environ.get("HOMEPOLL_RELIABILITY_REPORT")
    if not target:
        return
    entry = {"scenario": scenario, "at": time.time(), **figures}
    with open(target, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(entry, sort_keys=True, default=str) + "\n")


# --------------------------------------------------------------------------- invariant


def served_map(*sims: Any) -> dict[tuple[str, str, str, int], float]:
    return {
        (s.source, s.device_id, s.metric, s.ts): s.value
        for sim in sims
        for s in sim.served.snapshot()
    }


def stored_rows(setup: Setup, db: Path | None = None) -> list[tuple[str, str, str, int, float]]:
    """Stored measurements (not the on-change battery/reachable rows)."""
    path = db or setup.db
    if not path.exists():
        return []
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        return conn.execute(
            "SELECT source, device_id, metric, ts, value FROM readings_view WHERE metric NOT IN "
            f"({', '.join('?' * len(ON_CHANGE_METRICS))})",
            ON_CHANGE_METRICS,
        ).fetchall()
    finally:
        conn.close()


def assert_every_served_stored_once(
    setup: Setup, *sims: Any, excused: Iterable[tuple[str, str, str, int]] = ()
) -> dict[str, int]:
    """Every measurement served in a successful answer is stored exactly once, nothing else is.

    ``excused`` lists served measurements a scenario may legitimately miss (a poll in flight
    when the daemon was killed); returns the counts for the figures table.
    """
    served = served_map(*sims)
    assert served, "the simulators served nothing"
    rows = stored_rows(setup)
    stored = {(s, d, m, ts): v for s, d, m, ts, v in rows}
    duplicated = len(rows) - len(stored)
    assert duplicated == 0, "a measurement was stored twice"
    unexpected = set(stored) - set(served)
    assert not unexpected, f"stored but never served: {sorted(unexpected)[:5]}"
    missing = set(served) - set(stored)
    excused_set = set(excused)
    lost = missing - excused_set
    if lost:
        first = min(k[3] for k in lost)
        nearby = setup.query(
            "SELECT collector, started_at, duration_ms, outcome, attempts, readings, error"
            " FROM polls WHERE started_at BETWEEN ? AND ? ORDER BY started_at",
            first - 3000,
            first + 3000,
        )
        raise AssertionError(
            f"{len(lost)} served measurement(s) not stored: {sorted(lost)[:3]}; "
            f"polls around the first: {nearby}"
        )
    for key in set(served) & set(stored):
        assert stored[key] == pytest.approx(served[key], rel=1e-3, abs=0.01), key
    return {
        "served": len(served),
        "stored": len(stored),
        "lost": len(lost),
        "redone_or_excused": len(missing & excused_set),
        "duplicated": duplicated,
    }


def secrets_of(*sims: Any) -> list[str]:
    """The Hue key and every Amazon cookie value the simulators accept."""
    out: list[str] = []
    for sim in sims:
        if hasattr(sim, "valid_cookies"):
            out.extend(sim.valid_cookies.values())
        elif getattr(sim, "key", None):
            out.append(sim.key)
    return out


def assert_no_secrets(setup: Setup, secrets: Iterable[str], **texts: str) -> None:
    """No secret in the log files, status.json, the alert files, the polls table or ``texts``."""
    found = dict(texts)
    for path in setup.data.rglob("*"):
        if path.is_file() and (
            path.name.startswith(("homepoll.log", "status.json", "ALERT_"))
            or (path.suffix in (".txt", ".json") and "cookies" not in path.name)
        ):
            found[path.name] = path.read_text(errors="replace")
    found["polls.error"] = repr(setup.query("SELECT error FROM polls"))
    for secret in secrets:
        assert len(secret) >= 6
        for where, text in found.items():
            assert secret not in text, f"a secret leaked into {where}"


def integrity(path: Path) -> str:
    conn = sqlite3.connect(path, timeout=5)
    try:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        conn.close()


def assert_integrity_ok(path: Path) -> None:
    assert integrity(path) == "ok"


def alert_files(setup: Setup) -> set[str]:
    return {p.name for p in setup.data.glob("ALERT_*.txt")}


def status_json(setup: Setup) -> dict[str, Any]:
    try:
        return json.loads((setup.data / "status.json").read_text())
    except (OSError, ValueError):
        return {}


def collector_state(setup: Setup, name: str) -> dict[str, Any]:
    collectors = status_json(setup).get("collectors") or {}
    return collectors.get(name) or {}


def poll_count(setup: Setup) -> int:
    rows = setup.query("SELECT count(*) FROM polls")
    return rows[0][0] if rows else 0


# --------------------------------------------------------------------------- process figures


def proc_stats(pid: int | None = None) -> dict[str, float]:
    """RSS (MiB), threads and open file descriptors of a process, from /proc."""
    base = Path(f"/proc/{pid or 'self'}")
    rss_kb = threads = 0
    for line in (base / "status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss_kb = int(line.split()[1])
        elif line.startswith("Threads:"):
            threads = int(line.split()[1])
    fds = len(os.listdir(base / "fd"))
    return {"rss_mib": round(rss_kb / 1024, 1), "threads": threads, "fds": fds}


def open_fd_targets(pid: int | None = None) -> list[str]:
    base = Path(f"/proc/{pid or 'self'}/fd")
    out = []
    for fd in os.listdir(base):
        with contextlib.suppress(OSError):
            out.append(os.readlink(base / fd))
    return sorted(out)
