"""RSS levers for ``homepoll run``: allocator settings, SQLite cache, thread stacks, gc.

    .venv/bin/python bench/_rss_levers.py --seconds 240 --rounds 2 --json /tmp/levers.json
    .venv/bin/python bench/_rss_levers.py --only baseline,old-sqlite-cache --seconds 120 --rounds 1
    .venv/bin/python bench/_rss_levers.py --report /tmp/levers.json --seconds 240
    .venv/bin/python bench/_rss_levers.py --smaps 60       # one baseline: where the RSS is

Every variant is a real daemon (150 Hue sensors + 10 AQM, both polled every second) with
its own simulators, started through bench/_patched.py (in-process patches, standard
library imports only) under ``env`` (glibc tunables), so the baseline runs through the same
launcher. The baseline is the code as shipped (SQLite cache 256 KiB, and the unit's
MALLOC_ARENA_MAX=2, which bench/_daemon.py applies); ``old-*`` variants put back what a
change removed. Variants of one round run side by side, at most --parallel at a time (12 variants
at 6: two waves per round, about 9 minutes per round at 240 s). VmRSS is sampled every 5 s;
at the end /proc/<pid>/smaps is split into: the brk heap (glibc main arena), other glibc
arenas (64 MiB-aligned anonymous mappings followed by their PROT_NONE reserve: the writer
thread's SQLite page cache lives there), thread stacks (anonymous mappings behind a guard
page), other anonymous memory (pymalloc arenas, large mmap'ed blocks) and files.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _measure as m
import _proc
import _storage
from _daemon import BENCH, PYTHON, Daemon, Simulators

SENSORS, MONITORS = 150, 10
HISTORY_DAYS = 3
ARENA_ALIGN = 64 * 1024 * 1024  # glibc HEAP_MAX_SIZE on 64-bit: non-main arenas are aligned to it
TUNED = {"MALLOC_TRIM_THRESHOLD_": "131072", "MALLOC_MMAP_THRESHOLD_": "131072"}

# name: (environment, bench/_patched.py PATCHES, seeded history); an empty value unsets
VARIANTS: dict[str, tuple[dict[str, str], tuple[str, ...], bool]] = {
    "baseline": ({}, (), False),
    "old-arenas (glibc default)": ({"MALLOC_ARENA_MAX": ""}, (), False),
    "arena-1": ({"MALLOC_ARENA_MAX": "1"}, (), False),
    "arena-2+thresholds": (TUNED, (), False),
    "old-sqlite-cache": ({}, ("old-sqlite-cache",), False),
    "stack-256k": ({}, ("stack-256k",), False),
    "gc-freeze": ({}, ("gc-freeze",), False),
    "malloc-trim": ({}, ("malloc-trim",), False),
    f"baseline, {HISTORY_DAYS}-day db": ({}, (), True),
    f"old-sqlite-cache, {HISTORY_DAYS}-day db": ({}, ("old-sqlite-cache",), True),
}


def command(env: dict[str, str], patches: tuple[str, ...]) -> list[str]:
    prefix = ["env"]
    for key, value in env.items():
        prefix += ["-u", key] if value == "" else [f"{key}={value}"]
    return [*prefix, PYTHON, str(BENCH / "_patched.py"), ",".join(patches)]


# --------------------------------------------------------------------------- smaps


def smaps_parts(pid: int) -> dict[str, int]:
    """Rss (kB) of /proc/<pid>/smaps by kind of mapping; see the module docstring."""
    maps: list[dict] = []
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        head = line.split()
        if "-" in head[0] and not head[0].endswith(":"):
            start, end = (int(x, 16) for x in head[0].split("-"))
            maps.append(
                {"start": start, "end": end, "perms": head[1], "path": " ".join(head[5:]), "rss": 0}
            )
        elif head[0] == "Rss:":
            maps[-1]["rss"] = int(head[1])
    parts: dict[str, int] = {}
    for i, mp in enumerate(maps):
        path, anon = mp["path"], not mp["path"]
        before = maps[i - 1] if i else None
        after = maps[i + 1] if i + 1 < len(maps) else None
        if path == "[heap]":
            kind = "heap (main arena)"
        elif path == "[stack]":
            kind = "main stack"
        elif path.startswith("["):
            kind = "other"
        elif not anon:
            kind = "files: " + ("-shm" if path.endswith("-shm") else "code and data")
        elif mp["perms"].startswith("---"):
            kind = "reserved"
        elif (
            mp["start"] % ARENA_ALIGN == 0
            and after is not None
            and after["start"] == mp["end"]
            and after["perms"].startswith("---")
        ):
            kind = "glibc arenas"
        elif before is not None and before["end"] == mp["start"] and before["perms"] == "---p":
            kind = "thread stacks"
        else:
            kind = "other anon (pymalloc, mmap'ed blocks)"
        parts[kind] = parts.get(kind, 0) + mp["rss"]
    return parts


# --------------------------------------------------------------------------- one daemon


def run_one(name: str, seconds: float) -> dict:
    env, patches, seeded = VARIANTS[name]
    with Simulators(m.devices_for(SENSORS), MONITORS) as sims:
        seed = None
        if seeded:

            def seed(db: Path) -> None:
                _storage.seed_history(
                    db, m.devices_for(SENSORS), sims.info["monitors"], HISTORY_DAYS
                )

        cmd = command(env, patches)
        daemon = Daemon(sims, hue_interval=1, aqm_interval=1, seed=seed, command=cmd)
        try:
            daemon.wait_ready()
            daemon.wait_polls("hue", 2, 30)
            daemon.wait_polls("amazon_aqm", 2, 30)
            o0, t0 = daemon.outcomes(), time.monotonic()
            trace = []
            while True:
                elapsed = time.monotonic() - t0
                polls = daemon.polls("hue") + daemon.polls("amazon_aqm")
                trace.append((round(elapsed, 1), polls, _proc.memory_kb(daemon.pid)[0]))
                if elapsed >= seconds:
                    break
                time.sleep(min(5.0, seconds - elapsed))
            rss, hwm = _proc.memory_kb(daemon.pid)
            parts = smaps_parts(daemon.pid)
            threads = len(list(Path(f"/proc/{daemon.pid}/task").iterdir()))
            db_kb = sum(p.stat().st_size for p in daemon.data.glob("readings.db*")) // 1024
            m._check_ok(daemon, o0)
        finally:
            daemon.stop()
    return {
        "rss_kb": rss,
        "hwm_kb": hwm,
        "trace": trace,
        "parts": parts,
        "threads": threads,
        "db_kb": db_kb,
    }


def rss_at(trace: list, seconds: float) -> int:
    """RSS of the first sample at or after ``seconds`` into the window."""
    return next((rss for t, _, rss in trace if t >= seconds), trace[-1][2])


# --------------------------------------------------------------------------- report


def report(results: dict[str, list[dict]], seconds: float) -> None:
    med = statistics.median
    seeded = f", {HISTORY_DAYS}-day db"
    bases = {
        kind: med(r["rss_kb"] for r in results[f"baseline{kind}"])
        for kind in ("", seeded)
        if f"baseline{kind}" in results
    }
    rounds = max(len(v) for v in results.values())
    print(
        f"\nVmRSS, {SENSORS} Hue sensors + {MONITORS} AQM, both every 1 s, median of {rounds}"
        f" round(s); window {seconds:g} s after the 2nd poll (MB)"
    )
    print(
        f"  {'variant':<28} {'60 s':>6} {'mid':>6} {'end':>6} {'vs base':>8}"
        f" {'last 1/3':>9} {'HWM':>6} {'polls':>6} {'thr':>4} {'db MB':>6}"
    )
    for name, runs in results.items():
        end = med(r["rss_kb"] for r in runs)
        early = med(rss_at(r["trace"], 60) for r in runs)
        mid = med(rss_at(r["trace"], seconds / 2) for r in runs)
        late = med(r["rss_kb"] - rss_at(r["trace"], seconds * 2 / 3) for r in runs)
        base = bases.get(seeded if name.endswith(seeded) else "")
        delta = f"{(end - base) / 1024:+8.2f}" if base is not None else " " * 8
        print(
            f"  {name:<28} {early / 1024:6.2f} {mid / 1024:6.2f} {end / 1024:6.2f} {delta}"
            f" {late / 1024:+9.2f} {med(r['hwm_kb'] for r in runs) / 1024:6.2f}"
            f" {med(r['trace'][-1][1] for r in runs):6.0f} {med(r['threads'] for r in runs):4.0f}"
            f" {med(r['db_kb'] for r in runs) / 1024:6.2f}"
        )
    kinds = sorted({k for runs in results.values() for r in runs for k in r["parts"]})
    print("\nwhere the RSS is at the end (smaps Rss, MB, median)")
    print(f"  {'variant':<28} " + " ".join(f"{k[:12]:>12}" for k in kinds))  # names cut
    for name, runs in results.items():
        values = [med(r["parts"].get(k, 0) for r in runs) / 1024 for k in kinds]
        print(f"  {name:<28} " + " ".join(f"{v:12.2f}" for v in values))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=300)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--parallel", type=int, default=6)
    parser.add_argument("--only", help="comma-separated variant names: " + ", ".join(VARIANTS))
    parser.add_argument("--smaps", type=float, metavar="SECONDS", help="one baseline, smaps")
    parser.add_argument("--json", type=Path, help="also write every run's figures here")
    parser.add_argument("--report", type=Path, help="only print the tables of a --json file")
    args = parser.parse_args()
    if args.report:
        report(json.loads(args.report.read_text()), args.seconds)
        return 0
    if args.smaps:
        r = run_one("baseline", args.smaps)
        print(json.dumps({k: v for k, v in r.items() if k != "trace"}, indent=2))
        return 0
    names = [n.strip() for n in args.only.split(",")] if args.only else list(VARIANTS)
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variant(s) {unknown}; known: {', '.join(VARIANTS)}")
    results: dict[str, list[dict]] = {n: [] for n in names}
    for n in range(args.rounds):
        print(f"round {n + 1}/{args.rounds}: {len(names)} variants", file=sys.stderr)
        with cf.ThreadPoolExecutor(args.parallel) as pool:
            futures = {}
            for name in names:
                futures[name] = pool.submit(run_one, name, args.seconds)
                time.sleep(0.5)  # staggered starts
            for name, future in futures.items():
                results[name].append(future.result())
        if args.json:
            args.json.write_text(json.dumps(results))
    report(results, args.seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
