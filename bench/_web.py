"""The web face's figures (issue 14): dashboard time and size on a year of data, RSS on vs off.

- Dashboard: a database with one year of 5-minute readings for 20 series (generated straight
  into the file with homepoll's own schema, cached under bench/results/cache/), then the
  work one page request does in the web's worker thread (latest values, the bucketed series,
  the HTML) timed per view, and the bytes the browser receives. The floor is the bare SQL a
  page cannot do without: one PK-range read of the same rows, no bucketing, no HTML.
- RSS: two daemons side by side against the same simulators, the web face off and on, after
  the same polls; the "on" one then serves dashboards and scrapes, and is sampled again.
"""

from __future__ import annotations

import contextlib
import random
import socket
import sqlite3
import statistics
import time
import urllib.request
from pathlib import Path

import _proc
from _daemon import Daemon, Simulators

YEAR_MS = 365 * 86_400_000
CADENCE_MS = 300_000
METRICS = (
    ("temperature", "degC"),
    ("humidity", "%"),
    ("light_level", "lux"),
    ("presence", "bool"),
    ("battery", "%"),
)


def year_db(cache: Path, series: int = 20, log=print) -> Path:
    """One year of 5-minute readings for ``series`` sensors, ending now (cached per day)."""
    from homepoll.storage import Storage

    today = int(time.time() // 86400)
    path = cache / f"web-year-{series}s-{today}.db"
    if path.exists():
        return path
    cache.mkdir(parents=True, exist_ok=True)
    for old in cache.glob(f"web-year-{series}s-*.db*"):
        old.unlink()
    log(f"  generating a year of 5-minute readings for {series} series ...")
    partial = path.with_suffix(".partial")
    storage = Storage(partial)
    storage.open()
    storage.close()
    end = int(time.time() * 1000)
    start = end - YEAR_MS
    rng = random.Random(14)
    with contextlib.closing(sqlite3.connect(partial)) as conn, conn:
        for index in range(series):
            metric, unit = METRICS[index % len(METRICS)]
            conn.execute(
                "INSERT INTO sensors VALUES (?, 'hue', ?, ?, ?, ?)",
                (
                    index + 1,
                    f"00:17:88:01:00:00:00:{index // 5:02x}",
                    f"Room {index // 5}",
                    metric,
                    unit,
                ),
            )

        def rows():
            for k in range(YEAR_MS // CADENCE_MS):
                for index in range(series):
                    ts = start + k * CADENCE_MS + index * 997
                    value = float(rng.random() < 0.2) if index % 5 == 3 else 20 + rng.random()
                    yield (index + 1, ts, value, ts)

        conn.executemany("INSERT INTO readings VALUES (?, ?, ?, ?)", rows())
    partial.rename(path)
    return path


def dashboard(path: Path, runs: int) -> dict:
    """Per view: median seconds for one page's work, its bytes, and the bare-SQL floor."""
    from homepoll import __version__
    from homepoll.web.app import _dashboard_html
    from homepoll.web.queries import RANGES

    state = {"collectors": [], "version": __version__, "started_at": None}
    out = {}
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        for key, view in RANGES.items():
            html = _dashboard_html(path, path.parent, view, state)  # warm the page cache
            times, floors = [], []
            for _ in range(runs):
                started = time.perf_counter()
                html = _dashboard_html(path, path.parent, view, state)
                times.append(time.perf_counter() - started)
                since = int(time.time() * 1000) - view.span_ms
                started = time.perf_counter()
                conn.execute(
                    "SELECT s.id, count(*) FROM sensors s CROSS JOIN readings r"
                    " ON r.sensor_id = s.id AND r.ts >= ? GROUP BY s.id",
                    (since,),
                ).fetchall()
                floors.append(time.perf_counter() - started)
            out[key] = {
                "seconds": statistics.median(times),
                "bytes": len(html.encode()),
                "points": html.count(","),
                "floor_seconds": statistics.median(floors),
            }
    return out


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _fetch(url: str) -> int:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=30) as answer:
        return len(answer.read())


def rss_on_off(polls: int, requests: int) -> dict:
    """RSS (kB) of the web face off and on, side by side, after the same number of polls."""
    with Simulators(7, 0) as sims:
        port = _free_port()
        off = Daemon(sims, hue_interval=1)
        on = Daemon(sims, hue_interval=1, web=f"127.0.0.1:{port}")
        try:
            for daemon in (off, on):
                daemon.wait_ready()
            for daemon in (off, on):
                daemon.wait_polls("hue", polls, polls * 2 + 30)
            result = {
                "off_kb": _proc.memory_kb(off.pid)[0],
                "on_kb": _proc.memory_kb(on.pid)[0],
            }
            served = 0
            for _ in range(requests):
                for path in ("", "?range=1y", "metrics", "api/latest"):
                    served += _fetch(f"http://127.0.0.1:{port}/{path}")
            result["on_serving_kb"] = _proc.memory_kb(on.pid)[0]
            result["off_after_kb"] = _proc.memory_kb(off.pid)[0]
            result["served_bytes"] = served
            result["polls"] = polls
        finally:
            off.stop()
            on.stop()
    return result
