"""`homepoll readings` and `homepoll latest` output (also served by /api/readings, /api/latest).

One set of rules for every format: times in local time unless asked for UTC, ISO 8601 with
the offset in CSV and JSON, yes/no quantities as yes/no in a table and true/false in CSV and
JSON, a header row, and every cell from the network made inert (control and bidi characters
escaped; CSV cells that a spreadsheet would run as a formula neutralised the OWASP way).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import re
import sys
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from homepoll.errors import UsageError
from homepoll.health import duration_text as age_text
from homepoll.safetext import escape_control

if TYPE_CHECKING:
    from homepoll.config import Config

KNOWN_METRICS = ("temperature", "humidity", "pressure", "light_level", "presence", "battery")
KNOWN_METRICS += ("reachable", "pm25", "pm10", "voc", "iaq", "co")
FIELDS = ("source", "device_id", "name", "metric", "unit")
_SINCE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def parse_since(text: str, now: float) -> int:
    """'90s', '15m', '1h', '2d', '1w' or an ISO date/time (local time unless it has an offset)."""
    match = _SINCE.match(text.strip())
    if match:
        return int((now - float(match[1]) * _UNIT_SECONDS[match[2]]) * 1000)
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(
            f"--since: expected a duration like 30m, 1h, 2d or an ISO time such as "
            f"2026-11-30T08:00 (local time), got {text!r}"
        ) from None
    if moment.tzinfo is None:
        moment = moment.astimezone()  # a time without offset is the reader's local time
    return int(moment.timestamp() * 1000)


def moment(ms: int, utc: bool) -> datetime:
    when = datetime.fromtimestamp(ms / 1000, UTC)
    return when if utc else when.astimezone()


def iso_time(ms: int, utc: bool = False) -> str:
    """ISO 8601 with the offset: "2026-11-30T09:15:02+01:00" (UTC: "...+00:00")."""
    return moment(ms, utc).isoformat(timespec="seconds")


def table_time(ms: int, utc: bool = False) -> str:
    return moment(ms, utc).strftime("%Y-%m-%d %H:%M:%S")


def zone_name(utc: bool) -> str:
    return "UTC" if utc else datetime.now().astimezone().tzname() or "local"


def is_yes_no(unit: str) -> bool:
    return unit == "bool"


def shown_value(value: float, unit: str) -> str:
    """For a person: yes/no, or the number without a useless ".0"."""
    if is_yes_no(unit):
        return "yes" if value else "no"
    return f"{value:g}" if abs(value) < 1e15 else repr(value)


def json_value(value: float, unit: str) -> float | int | bool:
    if is_yes_no(unit):
        return bool(value)
    return int(value) if value.is_integer() and abs(value) < 2**53 else value


def csv_cell(text: object) -> str:
    """A text cell a spreadsheet shows as text: controls escaped, a formula start quoted."""
    cell = escape_control(text)
    return "'" + cell if cell.startswith(_FORMULA_START) else cell


def _table(header: Sequence[str], rows: Iterable[Sequence[str]], right: set[int]) -> str:
    cells = [list(header), *([escape_control(c) for c in row] for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = []
    for row in cells:
        parts = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines) + "\n"


def _csv(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    out = io.StringIO()
    # CRLF rows (RFC 4180): a bare CR inside a field is quoted too, so no cell splits a row.
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


def _dumps(data: Any) -> str:
    # ASCII-only: every non-ASCII character (C1 controls and bidi overrides included) becomes
    # a \\u escape, so the JSON is inert on a terminal and still exact for a program.
    return json.dumps(data, ensure_ascii=True)


# -- readings --------------------------------------------------------------------------


def readings_table(rows: Sequence[dict[str, Any]], utc: bool) -> str:
    header = [f"time ({zone_name(utc)})", "name", "metric", "value", "unit"]
    body = (
        [
            table_time(r["ts"], utc),
            r["name"],
            r["metric"],
            shown_value(r["value"], r["unit"]),
            "" if is_yes_no(r["unit"]) else r["unit"],
        ]
        for r in rows
    )
    return _table(header, body, right={3})


def readings_csv(rows: Sequence[dict[str, Any]], utc: bool) -> str:
    header = ["time", *FIELDS, "value", "polled_at"]
    body = (
        [
            iso_time(r["ts"], utc),
            *(csv_cell(r[k]) for k in FIELDS),
            str(json_value(r["value"], r["unit"])).lower(),
            iso_time(r["polled_at"], utc),
        ]
        for r in rows
    )
    return _csv(header, body)


def readings_json(rows: Sequence[dict[str, Any]], utc: bool) -> str:
    return _dumps(
        [
            {
                "time": iso_time(r["ts"], utc),
                **{k: r[k] for k in FIELDS},
                "value": json_value(r["value"], r["unit"]),
                "polled_at": iso_time(r["polled_at"], utc),
            }
            for r in rows
        ]
    )


def render_readings(rows: Sequence[dict[str, Any]], fmt: str, utc: bool) -> str:
    if fmt == "json":
        return readings_json(rows, utc) + "\n"
    if fmt == "csv":
        return readings_csv(rows, utc)
    return readings_table(rows, utc)


# -- latest ----------------------------------------------------------------------------


def current_values(path: Path, spool: Path | None) -> list[dict[str, Any]]:
    """The newest value of every series: stored, or fetched and waiting for the next commit
    (``spool``, the daemon's; at the default commit_interval the database lags up to 5 min)."""
    from homepoll.storage import latest_readings

    rows = latest_readings(path)
    if spool is None:
        return rows
    from homepoll.storage.waiting import merge_waiting

    newest = {(r["source"], r["device_id"], r["metric"]): r for r in rows}
    for row in merge_waiting([], spool, 0, None, None, None):
        key = (row["source"], row["device_id"], row["metric"])
        if key not in newest or row["ts"] >= newest[key]["ts"]:
            newest[key] = row
    return sorted(newest.values(), key=lambda r: (r["name"], r["metric"]))


def latest_table(rows: Sequence[dict[str, Any]], now: float, utc: bool) -> str:
    header = ["name", "metric", "value", "unit", f"measured ({zone_name(utc)})", "age"]
    body = (
        [
            r["name"],
            r["metric"],
            shown_value(r["value"], r["unit"]),
            "" if is_yes_no(r["unit"]) else r["unit"],
            table_time(r["ts"], utc),
            age_text(now - r["ts"] / 1000),
        ]
        for r in rows
    )
    return _table(header, body, right={2, 5})


def latest_json(rows: Sequence[dict[str, Any]], now: float, utc: bool = False) -> str:
    return _dumps(
        [
            {
                "time": iso_time(r["ts"], utc),
                **{k: r[k] for k in FIELDS},
                "value": json_value(r["value"], r["unit"]),
                "age_seconds": round(max(0.0, now - r["ts"] / 1000), 1),
            }
            for r in rows
        ]
    )


def latest_csv(rows: Sequence[dict[str, Any]], now: float, utc: bool) -> str:
    header = ["time", *FIELDS, "value", "age_seconds"]
    body = (
        [
            iso_time(r["ts"], utc),
            *(csv_cell(r[k]) for k in FIELDS),
            str(json_value(r["value"], r["unit"])).lower(),
            f"{max(0.0, now - r['ts'] / 1000):.1f}",
        ]
        for r in rows
    )
    return _csv(header, body)


# -- checks and the API's one-call export ------------------------------------------------


def check_filters(path: Path, sensor: str | None, metric: str | None) -> None:
    """UsageError naming the known metrics / sensors (and the closest) for an unknown one."""
    if not sensor and not metric:
        return
    from homepoll.storage import known_sensors

    known = known_sensors(path)
    metrics = sorted({row[2] for row in known}) or list(KNOWN_METRICS)
    if metric and metric not in metrics:
        raise UsageError(_unknown("--metric", metric, metrics))
    if sensor:
        needle = sensor.casefold()
        if not any(needle in row[0].casefold() or sensor == row[1] for row in known):
            names = sorted({row[0] for row in known})
            if not names:
                raise UsageError(f"--sensor: no sensors stored yet, so none matches {sensor!r}")
            raise UsageError(_unknown("--sensor", sensor, names))


def _unknown(option: str, given: str, known: Sequence[str]) -> str:
    import difflib  # only on this error path: it is not small

    close = difflib.get_close_matches(given, known, n=1, cutoff=0.6)
    hint = f" (did you mean {escape_control(close[0])!r}?)" if close else ""
    listed = ", ".join(escape_control(k) for k in known[:40])
    more = f" and {len(known) - 40} more" if len(known) > 40 else ""
    parts = [f"{option}: unknown {escape_control(given)!r}{hint}", f"known: {listed}{more}"]
    return "; ".join(parts)


def readings_export(
    path: Path,
    since: str,
    sensor: str | None,
    metric: str | None,
    fmt: str,
    utc: bool = False,
    waiting: Path | None = None,
) -> str:
    """What ``homepoll readings`` prints, for /api/readings (JSON/CSV); ``waiting`` is the
    daemon's spool (readings fetched, waiting for the next commit)."""
    from homepoll.storage import query_readings

    since_ms = parse_since(since, time.time())
    check_filters(path, sensor, metric)
    rows = query_readings(path, since_ms, sensor=sensor, metric=metric, waiting=waiting)
    return render_readings(rows, fmt, utc)


def print_readings(config: Config, args: argparse.Namespace) -> int:
    """`homepoll readings`: the rows since --since, filtered, in the chosen format."""
    from homepoll.storage import query_readings
    from homepoll.storage.waiting import spool_of

    since = parse_since(args.since, time.time())
    check_filters(config.storage.path, args.sensor, args.metric)
    rows = query_readings(
        config.storage.path,
        since,
        sensor=args.sensor,
        metric=args.metric,
        waiting=spool_of(config.data_dir),  # fetched, waiting for the next commit
    )
    if not rows and args.format == "table":
        print(f"no readings since {table_time(since, args.utc)} ({zone_name(args.utc)})")
        return 0
    sys.stdout.write(render_readings(rows, args.format, args.utc))
    return 0


def print_latest(config: Config, args: argparse.Namespace) -> int:
    """`homepoll latest`: the newest value of every series with its age."""
    from homepoll.storage.waiting import spool_of

    rows = current_values(config.storage.path, spool_of(config.data_dir))
    now = time.time()
    if args.format == "json":
        sys.stdout.write(latest_json(rows, now, args.utc) + "\n")
    elif args.format == "csv":
        sys.stdout.write(latest_csv(rows, now, args.utc))
    elif not rows:
        print(f"no readings stored yet in {config.storage.path}")
    else:
        sys.stdout.write(latest_table(rows, now, args.utc))
    return 0
