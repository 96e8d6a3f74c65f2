"""homepoll's performance benchmark: the figures of docs/performance.md, next to their floor.

    .venv/bin/python bench/run.py            # full run (about 10-15 minutes)
    .venv/bin/python bench/run.py --quick    # CI smoke mode: every path, tiny sizes, < 60 s

Prints a table (figure | homepoll | floor | budget | verdict) and a scaling table, and
writes everything, raw runs included, to bench/results/latest.json. Standard library plus
homepoll's own dependencies only. Only loopback addresses are ever contacted: the Hue
bridge and the Alexa endpoint are homepoll's simulators, in their own processes so their
CPU never counts as the daemon's.

--quick checks that every measurement works; it never judges the numbers (exit 0).
--check (full runs) exits 1 when a budget line is missed.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _flash
import _measure as m
import _mqtt
import _storage
import _web
from _report import build_table, flash_key, render, scale_table

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class Plan:
    quick: bool
    runs: int
    sizes: tuple[int, ...]  # Hue sensors for the scale curve
    warmup: int  # polls before a CPU window
    measured: int  # polls in a CPU window
    long_polls: int  # polls (both collectors together) of the long RSS run; 0 = skip
    idle_interval: float
    flash_seconds: float
    flash_history_days: float  # age of the database a flash run starts from
    storage: tuple[tuple[int, int], ...]  # (sensors, readings)
    budget_db: tuple[int, int]  # the database the query budget lines are judged on
    write_polls: int


FULL = Plan(
    quick=False,
    runs=3,
    sizes=(20, 150, 1000),
    warmup=5,
    measured=30,
    long_polls=1000,
    idle_interval=60,
    flash_seconds=60,
    flash_history_days=3,
    storage=(
        (20, 1_000_000),
        (150, 1_000_000),
        (1000, 1_000_000),
        (150, 10_000_000),
        (1000, 10_000_000),
    ),
    budget_db=(150, 10_000_000),
    write_polls=200,
)
QUICK = Plan(
    quick=True,
    runs=1,
    sizes=(20,),
    warmup=2,
    measured=3,
    long_polls=0,
    idle_interval=5,
    flash_seconds=6,
    flash_history_days=1,
    storage=((20, 20_000), (150, 60_000)),
    budget_db=(150, 60_000),
    write_polls=10,
)

WATCHDOG_USEC = 60_000_000  # systemd/homepoll.service: WatchdogSec=60


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def repeat(fn, runs: int, *args) -> list[dict]:
    return [fn(*args) for _ in range(runs)]


# --------------------------------------------------------------------------- phases


def phase_startup(plan: Plan) -> dict:
    """Figure 4, alone on the machine: start-up is wall time and sensitive to load."""
    log("start-up (exec -> READY=1, exec -> first stored reading) ...")
    m.startup(20, 1)  # throwaway: byte-compiles and warms the page cache
    out: dict = {"floor": repeat(m.floor_imports, plan.runs)}
    out["design_floor"] = repeat(m.floor_imports, plan.runs, m.DESIGN_FLOOR_IMPORTS)
    for sensors in plan.sizes:
        out[str(sensors)] = repeat(m.startup, plan.runs, sensors, 1)
    return out


def phase_polls(plan: Plan) -> dict:
    """Figures 1 and 2 (and their scale). Scenarios run one after the other (CPU time per
    poll is sensitive to other work on 2 cores), each daemon next to its floor loops, which
    poll the same simulators in the same seconds."""
    scenarios = [(s, 0) for s in plan.sizes] + [(150, 10)]
    out: dict = {f"{s}+{mon}": [] for s, mon in scenarios}
    for rep in range(plan.runs):
        for s, mon in scenarios:
            log(f"CPU per poll and RSS, run {rep + 1}/{plan.runs}: {s} sensors + {mon} AQM ...")
            out[f"{s}+{mon}"].append(m.polls(s, mon, plan.warmup, plan.measured))
    return out


def side_by_side(jobs: dict, parallel: int = 8) -> dict:
    """Run independent scenarios at once, starts staggered (imports would stall the polls)."""
    with cf.ThreadPoolExecutor(min(parallel, len(jobs))) as pool:
        futures = {}
        for key, fn in jobs.items():
            futures[key] = pool.submit(fn)
            time.sleep(0.3)
        return {key: future.result() for key, future in futures.items()}


def phase_flash(plan: Plan) -> dict:
    """Figure 5: flash runs only count bytes, so the configurations run side by side."""
    # (sensors, monitors, commit_interval, as under the systemd unit: status.json on tmpfs)
    configs = [(20, 1, 0, True), (20, 1, 60, True), (20, 1, 300, True), (20, 1, 300, False)]
    if not plan.quick:
        configs += [(20, 1, 900, True), (150, 10, 0, True), (150, 10, 300, True)]
        configs += [(1000, 10, 0, True), (1000, 10, 300, True)]
    out: dict = {flash_key(s, mon, c, unit): [] for s, mon, c, unit in configs}
    for rep in range(plan.runs):
        log(f"flash writes, run {rep + 1}/{plan.runs} ({len(configs)} configurations) ...")
        jobs = {
            flash_key(s, mon, c, unit): (
                lambda s=s, mon=mon, c=c, unit=unit: _flash.flash(
                    s, mon, c, plan.flash_seconds, plan.flash_history_days, runtime_dir=unit
                )
            )
            for s, mon, c, unit in configs
        }
        for key, value in side_by_side(jobs).items():
            out[key].append(value)
    return out


def phase_idle(plan: Plan) -> dict:
    """Figure 3: all idle daemons at once (they are idle), runs x sizes."""
    log(f"idle cost over one {plan.idle_interval:g} s cycle ...")
    jobs = {
        (s, rep): (lambda s=s: m.idle(s, plan.idle_interval, WATCHDOG_USEC))
        for s in plan.sizes
        for rep in range(plan.runs)
    }
    out: dict = {str(s): [] for s in plan.sizes}
    for (s, _), value in side_by_side(jobs, parallel=len(jobs)).items():
        out[str(s)].append(value)
    return out


def phase_storage(plan: Plan) -> dict:
    log("storage: bytes per reading, insert rate, query times ...")
    cache = RESULTS / "cache"
    out: dict = {"databases": {}, "write": {}}
    for sensors, readings in plan.storage:
        path, meta = _storage.cached_db(
            cache, sensors, readings, vacuum_floor=readings <= 1_000_000, log=log
        )
        figures = _storage.query_figures(
            path, runs=max(5, plan.runs), week_runs=plan.runs if readings <= 1_000_000 else 1
        )
        out["databases"][f"{sensors}s/{readings}r"] = {**meta, "queries": figures}
        log(
            f"  {sensors} sensors, {readings:,} readings: {meta['bytes'] / meta['readings']:.1f}"
            f" B/reading, latest {figures['latest']['seconds'] * 1000:.2f} ms"
        )
    for sensors in plan.sizes:
        out["write"][str(sensors)] = _storage.write_rate(sensors, plan.write_polls)
    return out


def phase_web(plan: Plan) -> dict:
    """Issue 14: the dashboard on a year of readings (1 y and 24 h views), RSS web on vs off."""
    log("web face: dashboard on a year of 5-minute readings, RSS on vs off ...")
    db = _web.year_db(RESULTS / "cache", series=2 if plan.quick else 20, log=log)
    return {
        "dashboard": _web.dashboard(db, max(3, plan.runs * 3)),
        "rss": _web.rss_on_off(plan.warmup + plan.measured, 2 if plan.quick else 20),
    }


def web_lines(web: dict) -> list[str]:
    rows = [
        f"  {key:>4} view: {v['seconds'] * 1000:7.1f} ms, {v['bytes'] / 1000:6.1f} kB"
        f" (bare SQL over the same rows {v['floor_seconds'] * 1000:.1f} ms)"
        for key, v in web["dashboard"].items()
    ]
    rss = web["rss"]
    rows.append(
        f"  RSS side by side after {rss['polls']} polls: web off {rss['off_kb'] / 1024:.1f} MB,"
        f" web on {rss['on_kb'] / 1024:.1f} MB, on after serving pages"
        f" {rss['on_serving_kb'] / 1024:.1f} MB"
    )
    return ["Web face (one page's work; budgets 1 y <= 300 ms and 200 kB, 24 h <= 100 ms):", *rows]


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="CI smoke mode: tiny sizes, < 60 s")
    parser.add_argument("--check", action="store_true", help="exit 1 when a budget is missed")
    parser.add_argument("--runs", type=int, help="repetitions per figure (median)")
    parser.add_argument("--out", type=Path, default=RESULTS / "latest.json")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    if args.runs:
        plan = Plan(**{**plan.__dict__, "runs": args.runs})
    m.STRICT = not plan.quick
    started = time.monotonic()
    results: dict = {
        "when": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "mode": "quick" if plan.quick else "full",
        "python": m.python_info(),
        "plan": plan.__dict__,
    }
    results["startup"] = phase_startup(plan)

    stop_long = threading.Event()
    long_pool = cf.ThreadPoolExecutor(1)
    long_future = None
    if plan.long_polls:
        log(f"long RSS run in the background: {plan.long_polls} polls of both collectors ...")
        long_future = long_pool.submit(m.long_rss, 150, 10, plan.long_polls, stop_long)

    results["polls"] = phase_polls(plan)
    results["flash"] = phase_flash(plan)
    with cf.ThreadPoolExecutor(1) as pool:
        idle_future = pool.submit(phase_idle, plan)
        results["storage"] = phase_storage(plan)
        results["idle"] = idle_future.result()
    results["web"] = phase_web(plan)
    if long_future is not None:
        if not long_future.done():
            log("waiting for the long RSS run to reach its poll count ...")
        results["long_rss"] = long_future.result()
    long_pool.shutdown()
    results["mqtt"] = _mqtt.phase(plan.quick, log)  # issue 15: MQTT off/on, backlog drain
    results["elapsed_s"] = time.monotonic() - started

    rows, judged = build_table(plan, results)
    results["table"] = rows
    results["scale"] = scale_table(plan, results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, default=str))

    print(render([["figure", "homepoll", "floor", "budget", "verdict"], *rows]))
    print()
    print(render(results["scale"]))
    print()
    print("\n".join(web_lines(results["web"])))
    print()
    print(render(_mqtt.table(results["mqtt"])))
    print()
    missed = [name for name, ok in judged if not ok]
    print(f"{results['mode']} run, {results['elapsed_s']:.0f} s; results in {args.out}")
    if missed and not plan.quick:
        print(f"{len(missed)} budget line(s) missed")
    return 1 if (args.check and missed and not plan.quick) else 0


if __name__ == "__main__":
    sys.exit(main())
