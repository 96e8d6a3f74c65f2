"""The architecture's own floor: AsyncIOScheduler + one GET on a kept ``httpx.AsyncClient`` on
the event loop (DESIGN.md: network calls are asyncio httpx) + SQLite executemany in a writer
thread, nothing else. What homepoll's design costs per poll before any of homepoll's code
(retry policy, status.json, alerts) runs. (Before issue 12 the design fetched with http.client
in a worker thread; the runs before 2026-11-30 session 2 measured that floor.)

``python bench/_archfloor.py --hue HOST:PORT --key KEY --db FILE [--warmup 5] [--rounds 40]``
prints one JSON line: CPU per poll (schedstat of all threads; /proc/self/stat as a check).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC

import httpx
from _floor import hue_rows
from _proc import cpu_seconds, schedstat_ns
from apscheduler.schedulers.asyncio import AsyncIOScheduler


async def main_async(args: argparse.Namespace) -> dict:
    loop = asyncio.get_running_loop()
    writer = ThreadPoolExecutor(1)
    db = sqlite3.connect(args.db, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = NORMAL")
    ids: dict = {}

    def sensor_id(source: str, device: str, metric: str) -> int:
        return ids.setdefault((source, device, metric), len(ids) + 1)

    client = httpx.AsyncClient(base_url=f"http://{args.hue}", timeout=10)

    async def fetch() -> dict:
        return json.loads((await client.get(f"/api/{args.key}/sensors")).content)

    def store(rows: list) -> None:
        db.execute("BEGIN")
        db.executemany("INSERT OR IGNORE INTO readings VALUES (?, ?, ?, ?)", rows)
        db.execute("COMMIT")

    done = asyncio.Event()
    count = {"n": 0}
    marks: dict = {}
    pid = os.getpid()

    async def job() -> None:
        answer = await fetch()
        rows = hue_rows(answer, sensor_id, int(loop.time() * 1000))
        await loop.run_in_executor(writer, store, rows)
        count["n"] += 1
        if count["n"] == args.warmup:
            marks["before"] = (schedstat_ns(pid), cpu_seconds(pid))
        if count["n"] == args.warmup + args.rounds:
            marks["after"] = (schedstat_ns(pid), cpu_seconds(pid))
            done.set()

    scheduler = AsyncIOScheduler(event_loop=loop, timezone=UTC)
    scheduler.add_job(job, "interval", seconds=1, max_instances=1, coalesce=True)
    scheduler.start()
    await done.wait()
    scheduler.shutdown(wait=False)
    await client.aclose()
    writer.shutdown()
    b, a = marks["before"], marks["after"]
    return {
        "cpu_per_poll": (a[0] - b[0]) / 1e9 / args.rounds,
        "cpu_per_poll_stat": (a[1] - b[1]) / args.rounds,
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hue", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--db", required=True)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main_async(args))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
