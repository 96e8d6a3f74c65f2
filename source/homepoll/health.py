"""status.json: what the daemon last knew about each collector, and `homepoll status` on it.

The daemon rewrites the file atomically after every poll; `homepoll status` only reads it
(plus the alert files), so status works without talking to the daemon and while it is down.

The file is ephemeral status, not data (under systemd it lives on tmpfs): it is replaced
atomically (temporary file + rename, so a reader never sees half of one) but not fsynced. A
power cut may leave the previous version or, on some filesystems, an empty or zero-filled
file; `status` then says the file is unreadable, and the daemon rewrites it after its next poll.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import tempfile
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from homepoll import __version__
from homepoll.fsutil import atomic_write_text
from homepoll.model import finite_number
from homepoll.safetext import redact
from homepoll.timefmt import iso_utc, parse_iso

STATUS_FILE = "status.json"

log = logging.getLogger("homepoll.health")

STATES = ("ok", "retrying", "failing", "auth_failed", "disabled")
DEGRADED_STATES = ("failing", "auth_failed")

EXIT_HEALTHY = 0
EXIT_DEGRADED = 1
EXIT_NOT_RUNNING = 2

STALE_GRACE = 120.0  # seconds past the latest next_poll before the file counts as stale
STALE_WITHOUT_SCHEDULE = 3600.0  # when no collector has a next_poll
LOW_DISK_BYTES = 1024 * 1024
"""Below this much free space in data_dir, `status` reports the disk as full: the daemon cannot
even rewrite status.json then, so the file alone would keep showing the last good state."""


def _jsonable(value: Any) -> Any:
    """datetimes become ISO strings, strings are redacted: status.json is world-readable."""
    if isinstance(value, datetime):
        return iso_utc(value)
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


class StatusFile:
    """Keeps the status in memory and writes it to ``path`` atomically on ``write()``.

    ``keep_existing`` starts from an existing file's collector and storage entries, so
    `homepoll once --collector hue` updates hue's entry and preserves the others.
    ``keep_owner`` additionally keeps that file's ``pid`` and ``started_at``: a one-shot
    command must not make a running daemon look dead (its pid would be gone a moment later).
    """

    def __init__(
        self,
        path: Path,
        *,
        keep_existing: bool = False,
        keep_owner: bool = False,
        pid: int | None = None,
        started_at: datetime | None = None,
        version: str = __version__,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.path = Path(path)
        self._now = now
        self.pid = os.getpid() if pid is None else pid
        self.started_at = iso_utc(started_at or now())
        self.version = version
        self.collectors: dict[str, dict[str, Any]] = {}
        self.storage: dict[str, Any] = {}
        self.updated_at: str | None = None
        if keep_existing or keep_owner:
            existing = read_status(self.path) or {}
            if keep_existing:
                collectors = existing.get("collectors")
                if isinstance(collectors, dict):
                    self.collectors = {
                        str(k): dict(v) for k, v in collectors.items() if isinstance(v, dict)
                    }
                if isinstance(existing.get("storage"), dict):
                    self.storage = dict(existing["storage"])
            if keep_owner and isinstance(existing.get("pid"), int):
                self.pid = existing["pid"]
                if isinstance(existing.get("started_at"), str):
                    self.started_at = existing["started_at"]

    def update_collector(self, name: str, **fields: Any) -> dict[str, Any]:
        """Merge ``fields`` into the collector's entry; returns the entry."""
        entry = self.collectors.setdefault(name, {})
        entry.update({k: _jsonable(v) for k, v in fields.items()})
        return entry

    def update_storage(self, **fields: Any) -> dict[str, Any]:
        """Merge ``fields`` (queued, dropped, last_error, path, ...) into the storage entry."""
        self.storage.update({k: _jsonable(v) for k, v in fields.items()})
        return self.storage

    def to_dict(self) -> dict[str, Any]:
        return {
            "pid": self.pid,
            "started_at": self.started_at,
            "updated_at": self.updated_at,
            "version": self.version,
            "storage": dict(self.storage),
            "collectors": {name: dict(entry) for name, entry in self.collectors.items()},
        }

    def write(self) -> bool:
        """Stamp ``updated_at`` and replace the file atomically. False (logged) on an OS error:
        a full disk must not stop polling."""
        self.updated_at = iso_utc(self._now())
        text = json.dumps(self.to_dict(), sort_keys=True) + "\n"
        try:
            try:
                atomic_write_text(self.path, text, durable=False)
            except FileNotFoundError:  # the folder is gone (or was never made): make it, again
                self.path.parent.mkdir(parents=True, exist_ok=True)
                atomic_write_text(self.path, text, durable=False)
        except OSError as exc:
            log.warning("cannot write %s: %s", self.path, exc)
            return False
        return True


def read_status(path: Path) -> dict[str, Any] | None:
    """The parsed status file, or None when it is missing, unreadable or not a JSON object."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


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


def disk_problems(data_dir: Path) -> list[str]:
    """What is wrong with the data folder's filesystem (read-only, full), seen from outside.

    When the disk is full or read-only the daemon cannot rewrite status.json, so `status` must
    look at the filesystem itself to say why the status stopped changing.
    """
    read_only = f"data folder {data_dir} is on a read-only filesystem: nothing can be stored"
    try:
        info = os.statvfs(data_dir)
    except OSError:
        return []
    if info.f_flag & os.ST_RDONLY:
        return [read_only]
    free = info.f_bavail * info.f_frsize
    if free < LOW_DISK_BYTES:
        return [f"disk full: {_size(free)} free for {data_dir}; readings are queued in memory"]
    if not os.access(data_dir, os.W_OK):
        return []  # not ours to probe (another user's folder)
    # ext4 turned read-only after errors (errors=remount-ro) still looks writable to statvfs
    # and access(): only a real write tells.
    try:
        fd, probe = tempfile.mkstemp(prefix=".status-probe-", dir=data_dir)
    except OSError as exc:
        if exc.errno == errno.EROFS:
            return [read_only]
        if exc.errno in (errno.EIO, errno.ENOSPC):
            return [f"data folder {data_dir} cannot be written: {exc.strerror}"]
        return []
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(probe)
    return []


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
    if not pid_alive(pid):
        down.append(f"not running: daemon pid {pid} is not alive")

    collectors = _collectors(status)
    updated = parse_iso(status.get("updated_at"))
    if updated is None:
        down.append("stale: status file has no valid updated_at")
    else:
        next_polls = [t for t in (parse_iso(c.get("next_poll")) for c in collectors.values()) if t]
        age = (now - updated).total_seconds()
        if next_polls:
            limit = max(next_polls)
            overdue = (now - limit).total_seconds()
            if overdue > grace:
                down.append(
                    f"stale: last update {_duration(age)} ago, a poll was due "
                    f"{_duration(overdue)} ago (daemon hung?)"
                )
        elif age > STALE_WITHOUT_SCHEDULE:
            down.append(f"stale: last update {_duration(age)} ago and no poll scheduled")

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


def _duration(seconds: float) -> str:
    seconds = abs(seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 36 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def _ago(value: object, now: datetime) -> str:
    moment = parse_iso(value)
    if moment is None:
        return "never"
    delta = (now - moment).total_seconds()
    return f"{_duration(delta)} ago" if delta >= 0 else f"in {_duration(delta)}"


def _until(value: object, now: datetime) -> str:
    moment = parse_iso(value)
    if moment is None:
        return "not scheduled"
    delta = (moment - now).total_seconds()
    return f"in {_duration(delta)}" if delta >= 0 else f"overdue by {_duration(delta)}"


def _size(num: object) -> str:
    if not isinstance(num, int | float):
        return "unknown size"
    value = float(num)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"


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
        storage = status.get("storage")
        if isinstance(storage, dict) and storage:
            out.append("")
            out.append(
                f"Storage: {storage.get('queued', 0)} queued, {storage.get('dropped', 0)} dropped"
                + (
                    f", last error: {redact(str(storage['last_error']))}"
                    if storage.get("last_error")
                    else ""
                )
            )

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
            f"Database: {_size(size)}"
            + (f", {count} readings" if count is not None else "")
            + f", newest reading {newest_text}"
            + (f" ({path})" if path else "")
        )
    return redact("\n".join(out)) + "\n"


def status_file_path(data_dir: Path) -> Path:
    """Where status.json is written: ``<data_dir>/status.json``, or where its symlink points."""
    return (Path(data_dir) / STATUS_FILE).resolve()


def place_status_file(data_dir: Path, runtime_dir: str | None) -> Path:
    """Choose where the daemon writes status.json, and make ``<data_dir>/status.json`` find it.

    It is rewritten after every poll: on an SD card that alone costs about 7 MB a day
    (bench/experiments.py flash). Under systemd (``RuntimeDirectory=``) it goes to tmpfs,
    and ``<data_dir>/status.json`` becomes a symlink to it, so readers keep the contract's path.
    Without a runtime directory it stays a plain file in the data folder.
    """
    public = Path(data_dir) / STATUS_FILE
    if not runtime_dir:
        if public.is_symlink():
            public.unlink()
        return public
    target = Path(runtime_dir.split(":")[0]) / STATUS_FILE
    if public.is_symlink() and Path(os.readlink(public)) == target:
        return target
    temporary = public.with_name(f".{STATUS_FILE}.link")
    temporary.unlink(missing_ok=True)
    temporary.symlink_to(target)
    os.replace(temporary, public)
    return target
