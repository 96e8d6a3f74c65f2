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
import statistics
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _measure as m
import _storage

from homepoll.config import StorageSettings

RESULTS = Path(__file__).resolve().parent / "results"
MB = 1024 * 1024


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


def med(runs: list[dict], key: str) -> float | None:
    values = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(values) if values else None


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


def flash_key(sensors: int, monitors: int, commit: float, systemd: bool = True) -> str:
    return f"{sensors}+{monitors}@{commit}" + ("" if systemd else "/data")


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
                lambda s=s, mon=mon, c=c, unit=unit: m.flash(
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


# --------------------------------------------------------------------------- table


def fmt(value: float | None, unit: str = "", digits: int = 2) -> str:
    if value is None:
        return "—"
    return f"{value:,.{digits}f}{unit}"


def verdict(ok: bool | None, quick: bool) -> str:
    if ok is None:
        return "—"
    if quick:
        return "(quick: not judged)"
    return "met" if ok else "MISSED"


def build_table(plan: Plan, r: dict) -> tuple[list[list[str]], list[tuple[str, bool]]]:
    rows: list[list[str]] = []
    judged: list[tuple[str, bool]] = []

    def add(figure, ours, floor, budget, ok):
        rows.append([figure, ours, floor, budget, verdict(ok, plan.quick)])
        if ok is not None:
            judged.append((figure, ok))

    floor_rss = med(r["startup"]["floor"], "rss_kb")
    if r.get("long_rss"):
        rss = r["long_rss"]["rss_kb"]
        label = f"RSS after {r['long_rss']['polls']} polls, both collectors (150 s + 10 AQM)"
    else:
        rss = med(r["polls"]["150+10"], "rss_kb")
        label = f"RSS after {plan.warmup + plan.measured} polls of both collectors (150 s + 10 AQM)"
    ok = rss <= 35 * 1024 and rss <= 1.2 * floor_rss
    add(
        label,
        fmt(rss / 1024, " MB", 1),
        fmt(floor_rss / 1024, " MB (imports only)", 1)
        + (
            f"; {fmt(med(r['startup']['design_floor'], 'rss_kb') / 1024, ' MB', 1)}"
            " (the design's imports and an AsyncClient)"
            if r["startup"].get("design_floor")
            else ""
        ),
        "≤ 35 MB and ≤ 1.2 x floor",
        ok,
    )
    rows[-1][1] += f" ({rss / floor_rss:.2f} x)"

    for key, label, budget in (
        ("20+0", "CPU per poll, 20 Hue sensors", True),
        ("150+10", "CPU per poll, 150 Hue sensors + 10 AQM", False),
    ):
        cpu = med(r["polls"][key], "cpu_per_poll")
        floor = med(r["polls"][key], "floor_cpu_per_poll")
        arch = med(r["polls"][key], "arch_cpu_per_poll")
        ratio = cpu / floor if floor else None
        ok = (cpu <= 0.003 and ratio is not None and ratio <= 2.0) if budget else None
        floor_text = fmt(floor * 1000, " ms (plain loop)") if floor else "—"
        if arch:
            floor_text += f"; {fmt(arch * 1000, ' ms')} (asyncio + APScheduler + 2 threads)"
        add(
            label,
            f"{fmt(cpu * 1000, ' ms')} ({fmt(ratio, ' x', 1)})",
            floor_text,
            "≤ 3 ms and ≤ 2 x floor" if budget else "—",
            ok,
        )

    idle = r["idle"][str(plan.sizes[0])]
    cpu = med(idle, "cpu_per_min")
    wake = med(idle, "wakeups_per_min")
    quiet = med(idle, "quiet_wakeups_per_min")
    add(
        f"idle CPU per 60 s at a {plan.idle_interval:g} s interval (incl. its poll)",
        fmt(cpu, " s", 4),
        "—",
        "≤ 0.05 s",
        cpu <= 0.05,
    )
    add(
        "idle wake-ups per 60 s (context switches, all threads)",
        f"{fmt(wake, '', 0)} ({fmt(quiet, '', 0)} between polls)",
        "—",
        "—",
        None,
    )

    s20 = r["startup"][str(plan.sizes[0])]
    ready = med(s20, "ready_s")
    add(
        "exec → READY=1",
        fmt(ready, " s", 3),
        fmt(med(r["startup"]["floor"], "ready_s"), " s (python + imports)", 3),
        "≤ 0.6 s",
        ready <= 0.6,
    )
    add(
        "exec → first stored reading (20 sensors)",
        fmt(med(s20, "first_reading_s"), " s", 3),
        "—",
        "—",
        None,
    )

    default_commit = StorageSettings().commit_interval
    for c in (0, 60, 300, 900):
        runs = r["flash"].get(flash_key(20, 1, c))
        if not runs:
            continue
        per_day = med(runs, "bytes_per_day")
        default = c == default_commit
        add(
            f"flash writes per day, 20 sensors + 1 AQM, commit_interval {c}"
            + (" (default)" if default else "")
            + ", as the systemd unit runs it",
            fmt(per_day / MB, " MB", 1)
            + f" (moves {med(runs, 'merges_per_day') * med(runs, 'merge_bytes') / MB:.1f})",
            "—",
            "≤ 10 MB" if default else "—",
            per_day <= 10 * MB if default else None,
        )
    runs = r["flash"].get(flash_key(20, 1, default_commit, False))
    if runs:
        add(
            f"flash writes per day, 20 sensors + 1 AQM, commit_interval {default_commit},"
            " without systemd (status.json in data/)",
            fmt(med(runs, "bytes_per_day") / MB, " MB", 1),
            "—",
            "—",
            None,
        )

    bs, br = plan.budget_db
    db = r["storage"]["databases"][f"{bs}s/{br}r"]
    per_reading = db["bytes"] / db["readings"]
    vac = [
        d
        for k, d in r["storage"]["databases"].items()
        if k.startswith(f"{bs}s/") and "vacuum_bytes" in d
    ]
    floor_b = vac[0]["vacuum_bytes"] / vac[0]["readings"] if vac else None
    add(
        f"bytes per stored reading ({br:,} readings, {bs} sensors)",
        fmt(per_reading, " B", 1),
        fmt(floor_b, " B (after VACUUM)", 1) if floor_b else "—",
        "≤ 32 B",
        per_reading <= 32,
    )
    w = r["storage"]["write"][str(plan.sizes[0])]
    add(
        f"insert rate, one transaction per poll of {plan.sizes[0]} readings",
        fmt(w["rate"], " /s", 0),
        fmt(w["floor_rate"], " /s (executemany)", 0),
        "—",
        None,
    )
    add(
        f"bulk insert rate (executemany, generating {br:,})",
        fmt(db.get("executemany_rate"), " /s", 0),
        "—",
        "—",
        None,
    )
    q = db["queries"]
    for key, label, budget in (
        ("latest", "latest value of every sensor", 0.005),
        ("one_day", "one sensor, one day", 0.005),
        ("week", "all sensors, one week", None),
    ):
        ours = q[key]["seconds"]
        add(
            f"{label} ({br:,} readings; {q[key]['rows']:,} rows)",
            fmt(ours * 1000, " ms"),
            fmt(q[key]["floor_seconds"] * 1000, " ms (raw sqlite3)"),
            f"≤ {budget * 1000:g} ms" if budget else "—",
            ours <= budget if budget else None,
        )
    return rows, judged


def scale_table(plan: Plan, r: dict) -> list[list[str]]:
    head = ["figure", *(f"{s} sensors" for s in plan.sizes)]
    rows = [head]

    def line(label, fn):
        cells = []
        for s in plan.sizes:
            try:
                cells.append(fn(s))
            except (KeyError, TypeError, ZeroDivisionError):
                cells.append("—")
        if any(c != "—" for c in cells):
            rows.append([label, *cells])

    line(
        "CPU per poll, Hue only",
        lambda s: fmt(med(r["polls"][f"{s}+0"], "cpu_per_poll") * 1000, " ms"),
    )
    line(
        "  floor (same requests, json, executemany)",
        lambda s: fmt(med(r["polls"][f"{s}+0"], "floor_cpu_per_poll") * 1000, " ms"),
    )
    line(
        "  floor with asyncio + APScheduler + 2 threads",
        lambda s: fmt(med(r["polls"][f"{s}+0"], "arch_cpu_per_poll") * 1000, " ms"),
    )
    line(
        "  ratio",
        lambda s: fmt(
            med(r["polls"][f"{s}+0"], "cpu_per_poll")
            / med(r["polls"][f"{s}+0"], "floor_cpu_per_poll"),
            " x",
            1,
        ),
    )
    line(
        "context switches per poll",
        lambda s: fmt(med(r["polls"][f"{s}+0"], "switches_per_poll"), "", 0),
    )
    line(
        f"RSS after {plan.warmup + plan.measured} polls, Hue only",
        lambda s: fmt(med(r["polls"][f"{s}+0"], "rss_kb") / 1024, " MB", 1),
    )
    line(
        "idle CPU per 60 s (incl. one poll)",
        lambda s: fmt(med(r["idle"][str(s)], "cpu_per_min"), " s", 4),
    )
    line("idle wake-ups per 60 s", lambda s: fmt(med(r["idle"][str(s)], "wakeups_per_min"), "", 0))
    line("exec → READY=1", lambda s: fmt(med(r["startup"][str(s)], "ready_s"), " s", 3))
    line(
        "exec → first stored reading",
        lambda s: fmt(med(r["startup"][str(s)], "first_reading_s"), " s", 3),
    )
    monitors = {20: 1, 150: 10, 1000: 10}
    for c in (0, 300):
        line(
            f"flash MB/day (+AQM), commit_interval {c}",
            lambda s, c=c: fmt(
                med(r["flash"][flash_key(s, monitors[s], c)], "bytes_per_day") / MB, " MB", 1
            ),
        )
    dbs = r["storage"]["databases"]
    for size in sorted({n for _, n in plan.storage}):

        def db(s, size=size):
            return dbs[f"{s}s/{size}r"]

        line(
            f"bytes/reading, {size:,} readings",
            lambda s, db=db: fmt(db(s)["bytes"] / db(s)["readings"], " B", 1),
        )
        line(
            f"latest of every sensor, {size:,}",
            lambda s, db=db: fmt(db(s)["queries"]["latest"]["seconds"] * 1000, " ms"),
        )
        line(
            f"one sensor one day, {size:,}",
            lambda s, db=db: fmt(db(s)["queries"]["one_day"]["seconds"] * 1000, " ms"),
        )
        line(
            f"all sensors one week, {size:,}",
            lambda s, db=db: fmt(db(s)["queries"]["week"]["seconds"], " s", 3),
        )
    line(
        "insert rate, one transaction per poll",
        lambda s: fmt(r["storage"]["write"][str(s)]["rate"], " /s", 0),
    )
    return rows


def render(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        lines.append("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")
        if n == 0:
            lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


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
    if long_future is not None:
        if not long_future.done():
            log("waiting for the long RSS run to reach its poll count ...")
        results["long_rss"] = long_future.result()
    long_pool.shutdown()
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
    missed = [name for name, ok in judged if not ok]
    print(f"{results['mode']} run, {results['elapsed_s']:.0f} s; results in {args.out}")
    if missed and not plan.quick:
        print(f"{len(missed)} budget line(s) missed")
    return 1 if (args.check and missed and not plan.quick) else 0


if __name__ == "__main__":
    sys.exit(main())
