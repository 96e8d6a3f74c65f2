"""The benchmark's two tables (budget lines with their floors, and the scaling curve) from
the figures ``bench/run.py`` gathered."""

from __future__ import annotations

import statistics
from typing import Any

from homepoll.config import StorageSettings

MB = 1024 * 1024


def med(runs: list[dict], key: str) -> float | None:
    values = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(values) if values else None


def flash_key(sensors: int, monitors: int, commit: float, systemd: bool = True) -> str:
    return f"{sensors}+{monitors}@{commit}" + ("" if systemd else "/data")


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


def build_table(plan: Any, r: dict) -> tuple[list[list[str]], list[tuple[str, bool]]]:
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
            floor_text += (
                f"; {fmt(arch * 1000, ' ms')} (APScheduler + httpx.AsyncClient + writer thread)"
            )
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


def scale_table(plan: Any, r: dict) -> list[list[str]]:
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
        "  floor: APScheduler + httpx + writer thread",
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
