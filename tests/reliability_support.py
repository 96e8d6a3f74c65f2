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

from tests.conftest import (  # re-exported: the invariant lives with the shared fixtures
    ON_CHANGE_METRICS as ON_CHANGE_METRICS,
)
from tests.conftest import (
    Setup,
)
from tests.conftest import (
    assert_every_served_stored_once as assert_every_served_stored_once,
)
from tests.conftest import (
    served_map as served_map,
)
from tests.conftest import (
    stored_rows as stored_rows,
)

_FAKETIME_CANDIDATES = (
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/arm-linux-gnueabihf/faketime/libfaketime.so.1",
    "/usr/lib/faketime/libfaketime.so.1",
)
FAKETIME_LIB: Path | None = next((Path(p) for p in _FAKETIME_CANDIDATES if Path(p).is_file()), None)


def faketime_env(offset_file: Path) -> dict[str, str]:
    """Environment that moves only a process's wall clock, by the offset in ``offset_file``."""
    assert FAKETIME_LIB is not None
    return {
        "LD_PRELOAD": str(FAKETIME_LIB),
        "FAKETIME_TIMESTAMP_FILE": str(offset_file),
        # Re-read the offset at most once a second. FAKETIME_NO_CACHE made every clock call
        # read the file: polls took 0.6 s instead of 5 ms and sometimes missed their deadline.
        "FAKETIME_CACHE_DURATION": "1",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
    }


def set_faketime_offset(path: Path, offset: str) -> None:
    """Atomically: libfaketime re-reads the file and must never see it half-written."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(offset + "\n")
    tmp.replace(path)


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
