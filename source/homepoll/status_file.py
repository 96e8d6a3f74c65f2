"""status.json: what the daemon last knew about each collector, written after every poll.

The daemon rewrites the file atomically after every poll; `homepoll status` only reads it
(plus the alert files), so status works without talking to the daemon and while it is down.

The file is ephemeral status, not data (under systemd it lives on tmpfs): it is replaced
atomically (temporary file + rename, so a reader never sees half of one) but not fsynced. A
power cut may leave the previous version or, on some filesystems, an empty or zero-filled
file; `status` then says the file is unreadable, and the daemon rewrites it after its next poll.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from homepoll import __version__
from homepoll.fsutil import atomic_write_text
from homepoll.safetext import redact
from homepoll.timefmt import iso_utc

STATUS_FILE = "status.json"

# Top-level "state": the daemon is running (or died without saying so: its pid is gone),
# stopped cleanly, or never ran here (only `homepoll once` wrote the file).
RUNNING, STOPPED, NO_DAEMON = "running", "stopped", "no daemon"
_EXTRA_KEYS = ("state", "stopped_at", "previous_exit", "last_once")

log = logging.getLogger("homepoll.status_file")


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
    ``extra`` holds the daemon's life cycle (``state``, ``stopped_at``, ``previous_exit``)
    and what `homepoll once` did last (``last_once``); ``keep_existing`` keeps it too.
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
        self.sections: dict[str, dict[str, Any]] = {}  # optional features' own entries (mqtt)
        self.extra: dict[str, Any] = {}
        self.updated_at: str | None = None
        self.existing: dict[str, Any] = {}
        if keep_existing or keep_owner:
            existing = self.existing = read_status(self.path) or {}
            if keep_existing:
                self.extra = {k: existing[k] for k in _EXTRA_KEYS if k in existing}
                self.sections = {
                    k: v
                    for k, v in existing.items()
                    if isinstance(v, dict) and k not in (*_EXTRA_KEYS, "collectors", "storage")
                }
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

    def update_section(self, name: str, fields: dict[str, Any]) -> None:
        """Replace a feature's top-level entry (``mqtt``: broker link, backlog)."""
        self.sections[name] = {k: _jsonable(v) for k, v in fields.items()}

    def update_extra(self, **fields: Any) -> None:
        """Set top-level fields (``state``, ``stopped_at``, ``previous_exit``, ``last_once``)."""
        self.extra.update({k: _jsonable(v) for k, v in fields.items()})

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.sections,
            **self.extra,
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


class OnceStatus(StatusFile):
    """status.json as `homepoll once` updates it: what it did goes to ``last_once``.

    A daemon's entries (running, stopped or dead) are its history: a one-shot poll must not
    reset them (a fresh runner knows no last success) nor make the file read like a crash.
    Only where no daemon ever wrote the file do the collector entries come from `once`.
    """

    def __init__(self, path: Path, **options: Any) -> None:
        super().__init__(path, keep_existing=True, keep_owner=True, **options)
        self._daemon_owned = isinstance(self.existing.get("pid"), int) and (
            self.existing.get("state") != NO_DAEMON
        )
        if not self._daemon_owned:
            self.pid = None
            self.extra["state"] = NO_DAEMON
        self._results: dict[str, dict[str, Any]] = {}
        self.extra["last_once"] = {"at": self.started_at, "pid": os.getpid(), "collectors": {}}

    def update_collector(self, name: str, **fields: Any) -> dict[str, Any]:
        entry = self._results.setdefault(name, {})
        entry.update(
            {k: _jsonable(v) for k, v in fields.items() if k in _ONCE_FIELDS and v is not None}
        )
        self.extra["last_once"]["collectors"] = dict(self._results)
        if not self._daemon_owned:
            return super().update_collector(name, **fields)
        return entry

    def update_storage(self, **fields: Any) -> dict[str, Any]:
        if not self._daemon_owned:  # the daemon's figures (queue, spool) are not ours
            return super().update_storage(**fields)
        return self.storage


_ONCE_FIELDS = ("state", "last_attempt", "last_error", "readings_stored")


def read_status(path: Path) -> dict[str, Any] | None:
    """The parsed status file, or None when it is missing, unreadable or not a JSON object."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def status_file_path(data_dir: Path) -> Path:
    """Where status.json is written: ``<data_dir>/status.json``, or where its symlink points."""
    return (Path(data_dir) / STATUS_FILE).resolve()


def place_status_file(data_dir: Path, runtime_dir: str | None) -> Path:
    """Choose where the daemon writes status.json, and make ``<data_dir>/status.json`` find it.

    It is rewritten after every poll: on an SD card that alone costs about 7 MB a day.
    Under systemd (``RuntimeDirectory=``) it goes to tmpfs,
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
