"""CPU of each step of one poll, measured alone (per-thread CPU time, no profiler overhead).

``python bench/_breakdown.py [--sensors 20] [--monitors 0] [--n 200]``

Each step of homepoll's poll path runs ``n`` times in this process and is timed with
time.thread_time (the simulators run in their own process), next to the floor's way of
doing the same step. What the steps do not add up to, compared with CPU per poll measured
on the real daemon, is the cost of scheduling: APScheduler, asyncio, thread hand-offs.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import http.client
import json
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _daemon import Simulators
from _floor import hue_rows
from _measure import devices_for


def per_call(fn, n: int) -> float:
    """Median per-thread CPU seconds of ``fn()`` over n calls."""
    times = []
    for _ in range(n):
        t0 = time.thread_time()
        fn()
        times.append(time.thread_time() - t0)
    return statistics.median(times)


def per_call_async(make, n: int) -> float:
    async def main() -> float:
        times = []
        for _ in range(n):
            t0 = time.thread_time()
            await make()
            times.append(time.thread_time() - t0)
        return statistics.median(times)

    return asyncio.run(main())


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sensors", type=int, default=20)
    parser.add_argument("--n", type=int, default=200)
    args = parser.parse_args()
    n = args.n
    from homepoll.collectors.hue import _HueBridge, parse_sensors
    from homepoll.config import RetrySettings
    from homepoll.notify import notify
    from homepoll.retry import RetryPolicy
    from homepoll.status_file import StatusFile
    from homepoll.storage import PollRecord, Storage

    rows: list[tuple[str, float, float | None]] = []
    with (
        Simulators(devices_for(args.sensors), 0, update_period=3600) as sims,
        tempfile.TemporaryDirectory(prefix="hpbench-bd-") as tmp,
    ):
        host, key = sims.info["hue"], sims.info["hue_key"]

        def ours_fetch():
            return _HueBridge(host, key, 10.0).get_sensor()

        def floor_fetch():
            conn = http.client.HTTPConnection(host, timeout=10)
            conn.request("GET", f"/api/{key}/sensors")
            body = conn.getresponse().read()
            conn.close()
            return json.loads(body)

        rows.append(
            (
                "fetch + json (phue in homepoll's _HueBridge)",
                per_call(ours_fetch, n),
                per_call(floor_fetch, n),
            )
        )
        answer = floor_fetch()
        now = int(time.time() * 1000)
        known: dict = {}

        def ids(source: str, device: str, metric: str) -> int:
            return known.setdefault((source, device, metric), len(known) + 1)

        rows.append(
            (
                "parse_sensors -> Readings",
                per_call(lambda: parse_sensors(answer, now_ms=now), n),
                per_call(lambda: hue_rows(answer, ids, now), n),
            )
        )

        readings = parse_sensors(answer, now_ms=now).readings
        storage = Storage(Path(tmp) / "r.db")
        storage.open()
        storage.write(readings, now, PollRecord("hue", now, 1, 1, "ok"))
        step = [0]

        def ours_write_new():
            step[0] += 1
            batch = [
                r if r.on_change else dataclasses.replace(r, ts=r.ts + step[0]) for r in readings
            ]
            storage.write(batch, now, PollRecord("hue", now, 1, 1, "ok"))

        def ours_write_same():
            storage.write(readings, now, PollRecord("hue", now, 1, 1, "ok"))

        import sqlite3

        fdb = Path(tmp) / "f.db"
        Storage(fdb).open()
        conn = sqlite3.connect(fdb, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.executemany(
            "INSERT INTO sensors (id, source, device_id, name, metric, unit)"
            " VALUES (?, 'hue', ?, '', ?, '')",
            [(i + 1, r.device_id, r.metric) for i, r in enumerate(readings)],
        )
        fstep = [0]

        def floor_write():
            fstep[0] += 1
            conn.execute("BEGIN")
            conn.executemany(
                "INSERT OR IGNORE INTO readings VALUES (?, ?, ?, ?)",
                [(i + 1, r.ts + fstep[0], r.value, now) for i, r in enumerate(readings)],
            )
            conn.execute("COMMIT")

        rows.append(
            (
                "Storage.write, values new (1 txn)",
                per_call(ours_write_new, n),
                per_call(floor_write, n),
            )
        )
        rows.append(("Storage.write, values unchanged (1 txn)", per_call(ours_write_same, n), None))
        storage.close()
        conn.close()

        status = StatusFile(Path(tmp) / "status.json", pid=1)
        for name in ("hue", "amazon_aqm"):
            status.update_collector(
                name,
                state="ok",
                last_success="2026-11-22T07:01:12Z",
                last_attempt="2026-11-22T07:01:12Z",
                last_error=None,
                consecutive_failures=0,
                next_poll="2026-11-22T07:02:12Z",
                readings_stored=1234,
                interval=60.0,
                polls=100,
                outcomes={"ok": 100},
                alert_open=False,
            )
        rows.append(
            (
                "status.json write (one-line json, temporary file, rename)",
                per_call(status.write, n),
                None,
            )
        )

        sock_path = Path(tmp) / "n.sock"
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        listener.bind(str(sock_path))
        import os

        os.environ["NOTIFY_SOCKET"] = str(sock_path)

        def do_notify():
            notify("STATUS=hue ok, amazon_aqm ok; 1234 readings stored since start")
            listener.recv(4096)

        rows.append(("sd_notify STATUS (new socket per message)", per_call(do_notify, n), None))
        listener.close()

        policy = RetryPolicy("hue", RetrySettings())

        async def noop(timeout: float) -> int:
            return 1

        rows.append(
            (
                "RetryPolicy.run around a no-op attempt (tenacity)",
                per_call_async(lambda: policy.run(noop, time.monotonic() + 60), n),
                per_call_async(lambda: noop(1.0), n),
            )
        )
        rows.append(
            (
                "one asyncio.to_thread hop (no work)",
                per_call_async(lambda: asyncio.to_thread(lambda: None), n),
                None,
            )
        )

    width = max(len(r[0]) for r in rows)
    print(f"{'step (' + str(args.sensors) + ' sensors)':<{width}}  homepoll      floor")
    for name, ours, floor in rows:
        f = f"{floor * 1000:8.3f} ms" if floor is not None else "         —"
        print(f"{name:<{width}}  {ours * 1000:8.3f} ms {f}")
    print(
        "(the to_thread hop counts only this thread's side; the worker thread's wake-up and"
        " the loop's self-pipe wake-up come on top)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
