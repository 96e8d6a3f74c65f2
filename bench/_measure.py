"""Figures 1-5: one function per scenario, each with its own simulators and ``homepoll run``.

Every function returns plain numbers (seconds, bytes, counts) for bench/run.py to reduce to
medians and print. A scenario whose daemon reports a failed poll raises: a figure measured
on a failing daemon would be about retries, not about the work.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import _proc
from _daemon import BENCH, PYTHON, Daemon, Simulators

FLOOR_IMPORTS = "import httpx, tenacity, apscheduler, yaml, sqlite3"
# What DESIGN.md's architecture loads before any homepoll code: the asyncio scheduler and
# an httpx.AsyncClient (its TLS context holds the CA bundle).
DESIGN_FLOOR_IMPORTS = (
    "import asyncio, apscheduler.schedulers.asyncio, httpx, tenacity, yaml, sqlite3;"
    " client = httpx.AsyncClient()"
)
STRICT = True
"""Full runs refuse figures measured while polls failed; --quick (CI) only warns, because a
loaded CI machine may time out a poll and the smoke test is about the paths, not numbers."""


def devices_for(sensors: int) -> int:
    """Hue lists 3 sensor resources (presence, light level, temperature) per motion sensor."""
    return max(1, math.ceil(sensors / 3))


def _check_ok(daemon: Daemon, before: dict | None = None) -> dict:
    """Outcomes of the polls since ``before`` (a daemon.outcomes() taken at the window's start)."""
    outcomes = daemon.outcomes()
    before = before or {}
    bad = {
        name: o
        for name, o in outcomes.items()
        if any(n > before.get(name, {}).get(kind, 0) for kind, n in o.items() if kind != "ok")
    }
    if bad:
        message = f"polls failed during the measurement: {bad}; {daemon.log_tail()}"
        if STRICT:
            raise RuntimeError(message)
        print(f"warning: {message[:300]}", file=sys.stderr)
    return outcomes


# --------------------------------------------------------------------------- floor: imports


def floor_imports(imports: str = FLOOR_IMPORTS) -> dict:
    """A bare python that imports the same dependencies: RSS and seconds from exec to done."""
    code = f"{imports}; import sys; print('ready', flush=True); sys.stdin.read()"
    started = time.monotonic()
    proc = subprocess.Popen(
        [PYTHON, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdin is not None
    proc.stdout.readline()
    ready = time.monotonic() - started
    rss, hwm = _proc.memory_kb(proc.pid)
    proc.stdin.close()
    proc.wait()
    proc.stdout.close()
    return {"rss_kb": rss, "hwm_kb": hwm, "ready_s": ready}


# --------------------------------------------------------------------------- figure 4


def startup(sensors: int, monitors: int) -> dict:
    """exec -> READY=1, and exec -> first stored reading, with both collectors enabled."""
    with Simulators(devices_for(sensors), monitors) as sims:
        daemon = Daemon(sims, hue_interval=60, aqm_interval=300 if monitors else None)
        try:
            ready = daemon.wait_ready(timeout=30)
            first = daemon.wait_for(lambda: daemon.stored() > 0, 30, step=0.002)
            return {"ready_s": ready, "first_reading_s": first - daemon.started}
        finally:
            daemon.stop()


# --------------------------------------------------------------------------- figures 1, 2


def polls(
    sensors: int,
    monitors: int,
    warmup: int,
    measured: int,
    floor: bool = True,
    command: list[str] | None = None,
) -> dict:
    """CPU per poll (every collector at interval 1 s) and RSS, with the floor in the same run.

    CPU is the sum of /proc/<pid>/task/*/schedstat run time (user+sys, in ns) between two
    moments with no poll in flight; /proc/<pid>/stat utime+stime (10 ms ticks) is kept as
    a cross-check. With monitors, one poll = one Hue poll plus one Amazon poll.
    """
    with (
        Simulators(devices_for(sensors), monitors) as sims,
        tempfile.TemporaryDirectory(prefix="hpbench-floor-") as tmp,
    ):
        floor_proc = None
        if floor:
            from homepoll.cookies import save_cookie_file
            from homepoll.storage import Storage

            db = Path(tmp) / "floor.db"
            Storage(db).open()  # same schema and pragmas as the daemon's file
            cmd = [
                PYTHON,
                str(BENCH / "_floor.py"),
                f"--hue={sims.info['hue']}",
                f"--key={sims.info['hue_key']}",
                f"--db={db}",
                f"--warmup={warmup}",
                f"--rounds={measured}",
            ]
            if monitors:
                save_cookie_file(Path(tmp) / "cookies.json", sims.info["cookies"])
                cmd += [
                    f"--aqm-url={sims.info['aqm_url']}",
                    f"--cookies={Path(tmp) / 'cookies.json'}",
                ]
            floor_proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
            arch_proc = None
            if not monitors:
                Storage(Path(tmp) / "arch.db").open()
                arch_proc = subprocess.Popen(
                    [
                        PYTHON,
                        str(BENCH / "_archfloor.py"),
                        f"--hue={sims.info['hue']}",
                        f"--key={sims.info['hue_key']}",
                        f"--db={Path(tmp) / 'arch.db'}",
                        f"--warmup={warmup}",
                        f"--rounds={measured}",
                    ],
                    stdout=subprocess.PIPE,
                    text=True,
                )
        daemon = Daemon(sims, hue_interval=1, aqm_interval=1 if monitors else None, command=command)
        try:
            daemon.wait_ready()
            daemon.wait_polls("hue", warmup, warmup * 2 + 30)
            if monitors:
                daemon.wait_polls("amazon_aqm", warmup, 30)
            time.sleep(0.1)  # just after a poll: nothing in flight
            before, p0 = daemon.sample(), daemon.polls("hue")
            a0, o0 = daemon.polls("amazon_aqm"), daemon.outcomes()
            trace = [(0, before.rss_kb)]
            while daemon.polls("hue") < p0 + measured:
                daemon.wait_polls("hue", min(p0 + measured, daemon.polls("hue") + 5), 60)
                trace.append((daemon.polls("hue") - p0, _proc.memory_kb(daemon.pid)[0]))
            if monitors:
                daemon.wait_polls("amazon_aqm", a0 + measured, 10)
            time.sleep(0.1)
            after, n = daemon.sample(), daemon.polls("hue") - p0
            outcomes = _check_ok(daemon, o0)
            stored = daemon.stored()
        finally:
            daemon.stop()
        result = {
            "sensors": sensors,
            "monitors": monitors,
            "polls": n,
            "cpu_per_poll": (after.cpu_ns - before.cpu_ns) / 1e9 / n,
            "cpu_per_poll_stat": (after.cpu - before.cpu) / n,
            "switches_per_poll": (after.switches - before.switches) / n,
            "rss_kb": after.rss_kb,
            "hwm_kb": after.hwm_kb,
            "rss_trace": trace,
            "stored": stored,
            "outcomes": outcomes,
        }
        if floor_proc is not None:
            out, _ = floor_proc.communicate(timeout=120)
            if floor_proc.returncode != 0:
                raise RuntimeError(f"the floor loop failed ({floor_proc.returncode})")
            floor_result = json.loads(out.strip().splitlines()[-1])
            result["floor_cpu_per_poll"] = floor_result["cpu_ns_per_poll"] / 1e9
            result["floor_cpu_per_poll_stat"] = floor_result["cpu_per_poll"]
            if arch_proc is not None:
                out, _ = arch_proc.communicate(timeout=120)
                if arch_proc.returncode == 0:
                    result["arch_cpu_per_poll"] = json.loads(out.strip().splitlines()[-1])[
                        "cpu_per_poll"
                    ]
        return result


def long_rss(sensors: int, monitors: int, total_polls: int, stop: threading.Event) -> dict:
    """RSS over a long run (both collectors every second) until ``total_polls`` polls."""
    with Simulators(devices_for(sensors), monitors) as sims:
        daemon = Daemon(sims, hue_interval=1, aqm_interval=1)
        try:
            daemon.wait_ready()
            daemon.wait_polls("hue", 2, 30)
            o0 = daemon.outcomes()
            trace = []
            done = 0
            while done < total_polls and not stop.is_set():
                time.sleep(5)
                done = daemon.polls("hue") + daemon.polls("amazon_aqm")
                rss, hwm = _proc.memory_kb(daemon.pid)
                trace.append((done, rss, hwm))
            outcomes = _check_ok(daemon, o0)
        finally:
            daemon.stop()
    return {
        "polls": done,
        "trace": trace,
        "rss_kb": trace[-1][1],
        "hwm_kb": trace[-1][2],
        "outcomes": outcomes,
    }


# --------------------------------------------------------------------------- figure 3


def idle(sensors: int, interval: float, watchdog_usec: int) -> dict:
    """CPU and wake-ups over one poll cycle at ``interval`` (Hue; Amazon at 300 s).

    The window runs from just after the first poll to just after the second, so it holds
    exactly one poll plus whatever else wakes the daemon (the watchdog). A second window,
    between the polls, shows the daemon truly idle. Both are scaled to 60 s.
    """
    with Simulators(devices_for(sensors), 1) as sims:
        daemon = Daemon(
            sims,
            hue_interval=interval,
            aqm_interval=max(300, interval),
            watchdog_usec=watchdog_usec,
        )
        try:
            daemon.wait_ready()
            daemon.wait_polls("hue", 1, 30)
            daemon.wait_polls("amazon_aqm", 1, 30)
            time.sleep(0.2)
            t0, s0, o0 = time.monotonic(), daemon.sample(), daemon.outcomes()
            next_poll = daemon.status()["collectors"]["hue"]["next_poll"]
            from homepoll.timefmt import parse_iso

            due = parse_iso(next_poll)
            quiet_until = time.monotonic() + (due.timestamp() - time.time()) - 0.5 if due else None
            quiet = None
            if quiet_until is not None and quiet_until - t0 > 1:
                time.sleep(max(0.0, quiet_until - time.monotonic()))
                quiet = (time.monotonic(), daemon.sample())
            daemon.wait_polls("hue", 2, interval + 30)
            time.sleep(0.2)
            t1, s1 = time.monotonic(), daemon.sample()
            _check_ok(daemon, o0)
        finally:
            daemon.stop()
    scale = 60.0 / (t1 - t0)
    out = {
        "window_s": t1 - t0,
        "cpu_per_min": (s1.cpu_ns - s0.cpu_ns) / 1e9 * scale,
        "cpu_per_min_stat": (s1.cpu - s0.cpu) * scale,
        "wakeups_per_min": (s1.switches - s0.switches) * scale,
    }
    if quiet is not None:
        qt, qs = quiet
        qscale = 60.0 / (qt - t0)
        out["quiet_window_s"] = qt - t0
        out["quiet_cpu_per_min"] = (qs.cpu_ns - s0.cpu_ns) / 1e9 * qscale
        out["quiet_wakeups_per_min"] = (qs.switches - s0.switches) * qscale
    return out


def python_info() -> str:
    return f"{sys.version.split()[0]} on {os.uname().machine}, {os.cpu_count()} cores"
