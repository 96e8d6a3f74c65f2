"""Run the reliability and security suite with the long settings and print the results table.

    .venv/bin/python bench/reliability.py                 # the published figures (~35 min)
    .venv/bin/python bench/reliability.py --quick         # CI-sized settings (~1.5 min)
    .venv/bin/python bench/reliability.py --write-doc     # also refresh docs/reliability.md

It runs ``pytest tests/test_reliability_*.py tests/test_security.py`` with
HOMEPOLL_SOAK_SECONDS / HOMEPOLL_CRASH_KILLS / HOMEPOLL_HOSTILE_POLLS set, collects the figures
each scenario records (HOMEPOLL_RELIABILITY_REPORT, JSON lines) and prints them as a Markdown
table. The exit code is pytest's: a table is only worth publishing from a green run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "reliability.md"
START, END = "<!-- results:start -->", "<!-- results:end -->"
FULL = {"soak": 1200.0, "kills": 50, "hostile": 200, "restart_loop": 180.0}
QUICK = {"soak": 5.0, "kills": 5, "hostile": 5, "restart_loop": 12.0}


def run_suite(settings: dict[str, float], report: Path, extra: list[str]) -> int:
    env = dict(os.environ)
    env.update(
        HOMEPOLL_SOAK_SECONDS=str(settings["soak"]),
        HOMEPOLL_CRASH_KILLS=str(int(settings["kills"])),
        HOMEPOLL_HOSTILE_POLLS=str(int(settings["hostile"])),
        HOMEPOLL_RESTART_LOOP_SECONDS=str(settings["restart_loop"]),
        HOMEPOLL_RELIABILITY_REPORT=str(report),
    )
    tests = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").glob("test_reliability_*.py"))
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests]
    command += ["tests/test_security.py", *extra]
    print("$", " ".join(command), flush=True)
    return subprocess.call(command, cwd=ROOT, env=env)


def _faults(entry: dict[str, Any]) -> str:
    faults = entry.get("faults") or {}
    if not faults:
        return ""
    if len(faults) > 8:
        total = sum(faults.values())
        return f"{total} ({len(faults)} kinds)"
    return ", ".join(f"{k} {v}" for k, v in sorted(faults.items()))


def _res(entry: dict[str, Any], key: str) -> str:
    start, end = entry.get("start") or {}, entry.get("end") or {}
    if key not in start:
        return ""
    return f"{start[key]:g} → {end.get(key, '?'):g}"


def table(entries: list[dict[str, Any]]) -> str:
    head = (
        "| scenario | polls | faults injected | served | stored | lost | duplicated | kills "
        "| RSS MiB | threads | fds |\n|---|---|---|---|---|---|---|---|---|---|---|"
    )
    rows = [head]
    for e in entries:
        if e["scenario"] == "systemd hardening":
            continue
        rows.append(
            "| {scenario} | {polls} | {faults} | {served} | {stored} | {lost} | {dup} | {kills} "
            "| {rss} | {threads} | {fds} |".format(
                scenario=e["scenario"],
                polls=e.get("polls", ""),
                faults=_faults(e),
                served=e.get("served", e.get("lines_logged", "")),
                stored=e.get("stored", e.get("lines_kept", "")),
                lost=e.get("lost", e.get("lost_in_kept_span", "")),
                dup=e.get("duplicated", e.get("split_lines", "")),
                kills=e.get("kills_survived", ""),
                rss=_res(e, "rss_mib"),
                threads=_res(e, "threads"),
                fds=_res(e, "fds"),
            )
        )
    return "\n".join(rows)


def matrix(entries: list[dict[str, Any]]) -> str:
    found = next((e for e in entries if "matrix" in e), None)
    if not found:
        return ""
    rows = ["| collector | fault | poll outcome | attempts | alert | readings lost |"]
    rows.append("|---|---|---|---|---|---|")
    for collector, kinds in found["matrix"].items():
        for kind, got in kinds.items():
            alert = "raised, cleared next poll" if got["alert"] else "-"
            rows.append(
                f"| {collector} | {kind} | {got['outcome']} | {got['attempts']} | {alert} | 0 |"
            )
    return "\n".join(rows)


def hostile(entries: list[dict[str, Any]]) -> str:
    found = next((e for e in entries if e["scenario"] == "hostile servers"), None)
    if not found:
        return ""
    rows = ["| collector:server | polls | outcomes | longest poll (s) | connections |"]
    rows.append("|---|---|---|---|---|")
    for key, result in sorted(found["results"].items()):
        outcomes = ", ".join(f"{k} {v}" for k, v in sorted(result["outcomes"].items()))
        rows.append(
            f"| {key} | {found['polls_per_kind']} | {outcomes} | {result['longest_poll_s']} "
            f"| {result['connections']} |"
        )
    rows.append(
        f"\nTest process before → after: RSS {_res(found, 'rss_mib')} MiB, threads "
        f"{_res(found, 'threads')}, open fds {_res(found, 'fds')}; peak RSS grew "
        f"{found.get('peak_rss_growth_mib')} MiB (answers are capped at 5 MB)."
    )
    return "\n".join(rows)


def render(entries: list[dict[str, Any]], settings: dict[str, float], seconds: float) -> str:
    score = next((e["hardening_score"] for e in entries if "hardening_score" in e), None)
    parts = [
        f"Run of {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {platform.machine()}, "
        f"Python {platform.python_version()}, {seconds / 60:.0f} min; settings: soak "
        f"{settings['soak']:g} s, {int(settings['kills'])} kills, {int(settings['hostile'])} "
        "hostile polls per server and collector.",
        "",
        table(entries),
        "",
        "systemd hardening (`systemd-analyze security --offline=true`): "
        + (f"**{score}**" if score is not None else "not measured (no systemd-analyze)"),
        "",
        "### Fault matrix",
        "",
        matrix(entries),
        "",
        "### Hostile servers",
        "",
        hostile(entries),
    ]
    return "\n".join(parts).rstrip() + "\n"


def write_doc(text: str) -> None:
    doc = DOC.read_text()
    if START not in doc or END not in doc:
        raise SystemExit(f"{DOC} lacks the {START} / {END} markers")
    before, rest = doc.split(START, 1)
    _, after = rest.split(END, 1)
    DOC.write_text(f"{before}{START}\n{text}{END}{after}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="CI-sized settings")
    parser.add_argument("--soak-seconds", type=float)
    parser.add_argument("--kills", type=int)
    parser.add_argument("--hostile-polls", type=int)
    parser.add_argument("--write-doc", action="store_true", help=f"refresh the table in {DOC}")
    args, extra = parser.parse_known_args()
    settings = dict(QUICK if args.quick else FULL)
    for key, value in (
        ("soak", args.soak_seconds),
        ("kills", args.kills),
        ("hostile", args.hostile_polls),
    ):
        if value is not None:
            settings[key] = value
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "figures.jsonl"
        started = time.monotonic()
        code = run_suite(settings, report, extra)
        elapsed = time.monotonic() - started
        entries = (
            [json.loads(line) for line in report.read_text().splitlines()]
            if report.exists()
            else []
        )
    text = render(entries, settings, elapsed)
    print()
    print(text)
    if args.write_doc:
        if code != 0:
            print("pytest failed: docs/reliability.md left unchanged", file=sys.stderr)
        else:
            write_doc(text)
            print(f"wrote the results into {DOC}")
    return code


if __name__ == "__main__":
    sys.exit(main())
