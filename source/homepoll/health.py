"""`homepoll status`: the verdict (healthy, degraded, not running) and its text, from status.json.

status.json itself (what the daemon writes after every poll) is status_file.py; this module
only reads it, with the alert files and the data folder's filesystem, and judges.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from homepoll.fsutil import disk_problems, format_size
from homepoll.model import finite_number
from homepoll.safetext import one_line, redact, safe_lines
from homepoll.status_file import NO_DAEMON, STATUS_FILE, STOPPED
from homepoll.timefmt import duration_text, iso_utc, parse_iso

STATES = ("ok", "retrying", "failing", "auth_failed", "disabled")
DEGRADED_STATES = ("failing", "auth_failed")

EXIT_HEALTHY = 0
EXIT_DEGRADED = 1
EXIT_NOT_RUNNING = 2

STALE_GRACE = 120.0  # seconds past the latest next_poll before the file counts as stale
STALE_WITHOUT_SCHEDULE = 3600.0  # when no collector has a next_poll


def open_alerts(data_dir: Path) -> list[Path]:
    """Alert files currently present in ``data_dir``."""
    try:
        return sorted(Path(data_dir).glob("ALERT_*.txt"))
    except OSError:
        return []


def pid_alive(pid: object) -> bool:
    """True when a process with this pid exists (also when it belongs to another user)."""
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, runs as another user (the systemd service user)
        return True
    except OSError:
        return False
    return True


def _collectors(status: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    collectors = status.get("collectors")
    if not isinstance(collectors, dict):
        return {}
    return {str(k): v for k, v in collectors.items() if isinstance(v, dict)}


def evaluate(
    status: Mapping[str, Any] | None,
    data_dir: Path,
    now: datetime | None = None,
    *,
    grace: float = STALE_GRACE,
) -> tuple[int, list[str]]:
    """`homepoll status` verdict: (exit code, human lines), first line the verdict.

    2: no status file, daemon pid not alive, or status not updated since the latest scheduled
    poll plus ``grace`` (a hung daemon); 1: a collector failing / auth_failed, an alert file
    present, or storage queueing / dropping / failing; 0: healthy.
    """
    now = now or datetime.now(UTC)
    alerts = open_alerts(data_dir)
    alert_lines = [f"alert open: {path}" for path in alerts]
    disk_lines = disk_problems(data_dir)
    if status is None:
        public = Path(data_dir) / STATUS_FILE
        if public.exists():  # (a symlink into an emptied tmpfs does not exist)
            verdict = (
                f"not running or just started: status file {public} is unreadable (empty or "
                "damaged, as a power cut can leave it); a running daemon rewrites it after "
                "its next poll"
            )
        else:
            verdict = f"not running: no status file in {data_dir} (homepoll has not run here yet)"
        return EXIT_NOT_RUNNING, [verdict, *alert_lines, *disk_lines]

    down: list[str] = []
    pid = status.get("pid")
    if status.get("state") == NO_DAEMON:
        down.append(f"not running: no daemon has run with {data_dir} (only `homepoll once`)")
    elif not pid_alive(pid):
        if status.get("state") == STOPPED:
            stopped = parse_iso(status.get("stopped_at"))
            when = f" {_ago(iso_utc(stopped), now)}" if stopped else ""
            down.append(f"not running: stopped cleanly{when} (pid {pid})")
        else:
            down.append(f"not running: daemon pid {pid} is not alive (it did not stop cleanly)")

    collectors = _collectors(status)
    updated = parse_iso(status.get("updated_at"))
    if status.get("state") in (STOPPED, NO_DAEMON):
        pass  # nothing is scheduled: the age of the file says nothing
    elif updated is None:
        down.append("stale: status file has no valid updated_at")
    else:
        next_polls = [t for t in (parse_iso(c.get("next_poll")) for c in collectors.values()) if t]
        age = (now - updated).total_seconds()
        if next_polls:
            limit = max(next_polls)
            overdue = (now - limit).total_seconds()
            if overdue > grace:
                down.append(
                    f"stale: last update {duration_text(age)} ago, a poll was due "
                    f"{duration_text(overdue)} ago (daemon hung?)"
                )
        elif age > STALE_WITHOUT_SCHEDULE:
            down.append(f"stale: last update {duration_text(age)} ago and no poll scheduled")

    degraded: list[str] = list(disk_lines)
    for name, entry in sorted(collectors.items()):
        state = entry.get("state")
        if state in DEGRADED_STATES:
            error = entry.get("last_error")
            suffix = f": {redact(str(error))}" if error else ""
            degraded.append(f"collector {name} is {state}{suffix}")
    degraded.extend(alert_lines)
    storage = status.get("storage") if isinstance(status.get("storage"), dict) else {}
    assert isinstance(storage, dict)
    if (finite_number(storage.get("queued")) or 0) > 0 and storage.get("last_error"):
        # Readings waiting for the next batched commit (storage.commit_interval) are normal;
        # only a queue that writes cannot empty is a problem.
        degraded.append(f"storage: {storage['queued']} readings queued in memory (writes failing)")
    if (finite_number(storage.get("dropped")) or 0) > 0:
        degraded.append(f"storage: {storage['dropped']} readings dropped (queue overflow)")
    if storage.get("last_error"):
        degraded.append(f"storage error: {redact(str(storage['last_error']))}")

    if down:
        return EXIT_NOT_RUNNING, [*down, *degraded]
    if degraded:
        return EXIT_DEGRADED, [f"degraded (pid {pid})", *degraded]
    return EXIT_HEALTHY, [f"healthy (pid {pid}, {len(collectors)} collectors)"]


def _ago(value: object, now: datetime) -> str:
    moment = parse_iso(value)
    if moment is None:
        return "never"
    delta = (now - moment).total_seconds()
    return f"{duration_text(delta)} ago" if delta >= 0 else f"in {duration_text(delta)}"


def _until(value: object, now: datetime) -> str:
    moment = parse_iso(value)
    if moment is None:
        return "not scheduled"
    delta = (moment - now).total_seconds()
    return f"in {duration_text(delta)}" if delta >= 0 else f"overdue by {duration_text(delta)}"


def _clock_time(value: object) -> str:
    """HH:MM in local time (what a person compares with the clock on the wall)."""
    moment = parse_iso(value)
    return moment.astimezone().strftime("%H:%M") if moment is not None else "?"


def _life_cycle_lines(status: Mapping[str, Any], now: datetime) -> list[str]:
    """How the previous run ended (until the next clean start), what `once` did last."""
    out = []
    previous = status.get("previous_exit")
    if isinstance(previous, dict) and previous.get("message"):
        out.append(f"previous run: {previous['message']}")
    once = status.get("last_once")
    if isinstance(once, dict):
        results = once.get("collectors") if isinstance(once.get("collectors"), dict) else {}
        done = [
            f"{name} {entry.get('state', '?')}, {entry.get('readings_stored', 0)} readings stored"
            + (f" ({entry['last_error']})" if entry.get("last_error") else "")
            for name, entry in sorted(results.items())
            if isinstance(entry, dict)
        ]
        out.append(f"last `homepoll once` {_ago(once.get('at'), now)}: {'; '.join(done) or '-'}")
    return out


def _storage_line(storage: Mapping[str, Any]) -> str:
    """ "Storage: 120 stored since start, 23 waiting for the next commit at 14:05, 0 dropped"."""
    parts = []
    if storage.get("stored") is not None:
        parts.append(f"{storage['stored']} stored since start")
    waiting = f"{storage.get('queued', 0)} waiting for the next commit"
    if storage.get("next_commit") and (finite_number(storage.get("queued")) or 0) > 0:
        waiting += f" at {_clock_time(storage['next_commit'])}"
    parts += [waiting, f"{storage.get('dropped', 0)} dropped"]
    if storage.get("last_error"):
        parts.append(f"last error: {redact(str(storage['last_error']))}")
    return "Storage: " + ", ".join(parts)


def _first(mapping: Mapping[str, Any], *keys: str) -> Any:
    for key in keys:
        if mapping.get(key) is not None:
            return mapping[key]
    return None


def format_status(
    status: Mapping[str, Any] | None,
    evaluation: tuple[int, list[str]],
    summary: Mapping[str, Any] | None = None,
    *,
    now: datetime | None = None,
) -> str:
    """Human text for `homepoll status`: verdict, one block per collector, storage, database.

    ``summary`` is ``storage.database_summary()`` (size_bytes, readings, newest_ts in ms).
    """
    now = now or datetime.now(UTC)
    code, lines = evaluation
    out = [f"homepoll: {lines[0] if lines else code}"]
    out += [f"  {line}" for line in lines[1:]]

    if status is not None:
        started = status.get("started_at")
        out.append(
            f"version {status.get('version', '?')}, started {_ago(started, now)}, "
            f"status updated {_ago(status.get('updated_at'), now)}"
        )
        collectors = _collectors(status)
        if collectors:
            out.append("")
            out.append("Collectors:")
        width = max((len(name) for name in collectors), default=0)
        for name, entry in sorted(collectors.items()):
            failures = entry.get("consecutive_failures", 0)
            out.append(
                f"  {name:<{width}}  {entry.get('state', '?')!s:<11} "
                f"last success {_ago(entry.get('last_success'), now)}, "
                f"{failures} consecutive failures, "
                f"next poll {_until(entry.get('next_poll'), now)}, "
                f"{entry.get('readings_stored', 0)} readings stored"
            )
            if entry.get("last_error"):
                out.append(f"  {'':<{width}}  last error: {redact(str(entry['last_error']))}")
            if entry.get("throttled_until"):
                until = _clock_time(entry["throttled_until"])
                by = one_line(entry.get("throttled_by") or name, 40)
                out.append(f"  {'':<{width}}  throttled by {by} until {until}")
        out += _life_cycle_lines(status, now)
        storage = status.get("storage")
        if isinstance(storage, dict) and storage:
            out.append("")
            out.append(_storage_line(storage))

        if isinstance(status.get("mqtt"), dict):
            from homepoll.mqtt.status import describe

            out += ["", describe(status["mqtt"], lambda value: _ago(value, now))]

    if summary:
        size = _first(summary, "size_bytes", "size")
        count = _first(summary, "readings", "count", "readings_count")
        newest = _first(summary, "newest_ts", "newest")
        newest_text = "none"
        if isinstance(newest, int | float):
            moment = datetime.fromtimestamp(newest / 1000, UTC)
            newest_text = f"{iso_utc(moment)} ({_ago(iso_utc(moment), now)})"
        elif isinstance(newest, str):
            newest_text = newest
        path = summary.get("path")
        out.append("")
        out.append(
            f"Database: {format_size(size)}"
            + (f", {count} readings" if count is not None else "")
            + f", newest reading {newest_text}"
            + (f" ({path})" if path else "")
        )
    return safe_lines("\n".join(out)) + "\n"  # network text: no secret, no escape sequence
