"""Measured effects of changes proposed in docs/performance.md, side by side with the code.

    .venv/bin/python bench/experiments.py cpu      # CPU per poll, 20 Hue sensors (~2.5 min)
    .venv/bin/python bench/experiments.py flash    # flash writes per day (~2.5 min)
    .venv/bin/python bench/experiments.py rss      # RSS with/without the Amazon collector
    .venv/bin/python bench/experiments.py httpx    # AsyncClient vs Client in a thread

Every variant of one round runs at the same time as the others (same machine, same noise),
each with its own simulators; a figure is the median over the rounds. Variants are
bench/_patched.py patches (code paths switched off or changed in-process) or, in ``flash``,
where status.json lives (on tmpfs as under the systemd unit, or in data/). In ``cpu`` the
baseline is the current code and each ``old-*`` variant puts back what a change removed, so
its difference to the baseline is what that change saved.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _measure as m
from _daemon import BENCH, PYTHON

MB = 1024 * 1024


def patched(*names: str) -> list[str] | None:
    return [PYTHON, str(BENCH / "_patched.py"), ",".join(names)] if names else None


def run_rounds(jobs: dict, rounds: int, parallel: int = 8) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {name: [] for name in jobs}
    for n in range(rounds):
        print(
            f"round {n + 1}/{rounds}: {len(jobs)} variants, {parallel} at a time ...",
            file=sys.stderr,
        )
        with cf.ThreadPoolExecutor(min(parallel, len(jobs))) as pool:
            futures = {}
            for name, fn in jobs.items():
                futures[name] = pool.submit(fn)
                time.sleep(0.3)  # staggered starts: 8 daemons importing at once would stall polls
            for name, future in futures.items():
                out[name].append(future.result())
    return out


def cpu(rounds: int, sensors: int) -> None:
    variants = {
        "baseline": (),
        "old-retry": ("old-retry",),
        "old-parse": ("old-parse",),
        "old-status-fsync": ("old-status-fsync",),
        "old-status-indent": ("old-status-indent",),
        "all old (before)": (
            "old-retry",
            "old-parse",
            "old-status-fsync",
            "old-status-indent",
        ),
        "status-every-10": ("status-every-10",),
    }
    jobs = {
        name: (
            lambda p=p, name=name: m.polls(
                sensors, 0, 10, 40, floor=name == "baseline", command=patched(*p)
            )
        )
        for name, p in variants.items()
    }
    results = run_rounds(jobs, rounds)
    base = statistics.median(r["cpu_per_poll"] for r in results["baseline"])
    floor = statistics.median(r["floor_cpu_per_poll"] for r in results["baseline"])
    print(
        f"\nCPU per poll, {sensors} Hue sensors, 1 s interval, median of {rounds} rounds"
        f" (floor {floor * 1000:.2f} ms)"
    )
    for name, runs in results.items():
        value = statistics.median(r["cpu_per_poll"] for r in runs)
        switches = statistics.median(r["switches_per_poll"] for r in runs)
        print(
            f"  {name:<18} {value * 1000:6.2f} ms  ({(value - base) * 1000:+.2f} ms,"
            f" {value / floor:.1f} x floor, {switches:.0f} context switches per poll)"
        )


def flash(rounds: int, seconds: float) -> None:
    variants = {"status.json in data/": False, "status.json on tmpfs (systemd unit)": True}
    jobs = {}
    for commit in (0, 60, 300, 900):
        for name, runtime_dir in variants.items():
            jobs[f"{name} @ {commit}"] = lambda r=runtime_dir, commit=commit: m.flash(
                20, 1, commit, seconds, 3, runtime_dir=r
            )
    results = run_rounds(jobs, rounds)
    print(f"\nflash writes per day, 20 Hue sensors + 1 AQM, 3-day-old database, median of {rounds}")
    for name, runs in results.items():
        value = statistics.median(r["bytes_per_day"] for r in runs)
        merges = statistics.median(r["merges_per_day"] * r["merge_bytes"] for r in runs)
        print(f"  {name:<44} {value / MB:7.1f} MB/day (moves {merges / MB:.1f})")


def rss(rounds: int) -> None:
    jobs = {
        "hue only (20 sensors)": lambda: m.polls(20, 0, 5, 20, floor=False),
        "hue + amazon (20 sensors + 1 AQM)": lambda: m.polls(20, 1, 5, 20, floor=False),
        "hue only (150 sensors)": lambda: m.polls(150, 0, 5, 20, floor=False),
        "hue + amazon (150 sensors + 10 AQM)": lambda: m.polls(150, 10, 5, 20, floor=False),
    }
    results = run_rounds(jobs, rounds)
    print(f"\nRSS after 25 polls, median of {rounds}")
    for name, runs in results.items():
        value = statistics.median(r["rss_kb"] for r in runs)
        print(f"  {name:<36} {value / 1024:6.1f} MB")


def httpx_modes(rounds: int) -> None:
    import json
    import subprocess

    results: dict[str, list[dict]] = {"async": [], "sync": []}
    for _ in range(rounds):
        for mode in results:
            out = subprocess.run(
                [PYTHON, str(BENCH / "_httpx_probe.py"), mode],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            results[mode].append(json.loads(out))
    print(f"\nhttpx client paths, median of {rounds} (loopback server in the same process)")
    for mode, runs in results.items():
        rss = statistics.median(r["rss_growth_kb"] for r in runs)
        cpu = statistics.median(r["cpu_per_request"] for r in runs)
        label = "AsyncClient" if mode == "async" else "Client in asyncio.to_thread"
        print(f"  {label:<28} RSS +{rss / 1024:.1f} MB   {cpu * 1000:.2f} ms CPU per request")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=["cpu", "flash", "rss", "httpx"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sensors", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=60)
    args = parser.parse_args()
    if args.what == "cpu":
        cpu(args.rounds, args.sensors)
    elif args.what == "flash":
        flash(args.rounds, args.seconds)
    elif args.what == "httpx":
        httpx_modes(args.rounds)
    else:
        rss(args.rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
