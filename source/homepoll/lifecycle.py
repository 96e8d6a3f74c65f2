"""A daemon run's beginning and end, told truthfully: the data folder's lock, what the previous
run left behind, the storage it opens with, and what a stop achieved.

The lock file ``<data_dir>/homepoll.lock`` holds the pid of the run that owns the folder and is
emptied at a clean stop, so a pid found in it at start means the previous run was killed
(SIGKILL, the watchdog's SIGABRT, the OOM killer) or the power went. Unlike status.json it is
on the data disk, so it also tells after a power cut.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from homepoll.config import Config, ConfigError
from homepoll.storage import Storage
from homepoll.storage.spool import Recovered, Spool, spool_path

log = logging.getLogger("homepoll.daemon")

LOCK_FILE = "homepoll.lock"


@dataclass
class DataDirLock:
    """The held lock of one data folder (the kernel releases it when the process dies)."""

    fd: int
    previous_pid: int | None  # left by a run that did not stop cleanly


_held: DataDirLock | None = None  # a process holds at most one data folder


def lock_data_dir(path: Path) -> int | None:
    """Hold an exclusive lock on ``<data_dir>/homepoll.lock`` for the life of the process.

    Two daemons on one data folder would poll twice and overwrite each other's status.json.
    Returns the open descriptor (keep it open), or None when another process holds the lock.
    What the file held before (a pid if the previous run did not stop cleanly) is kept for
    :func:`held_lock`.
    """
    global _held
    lock = path / LOCK_FILE
    try:  # O_NOFOLLOW: a link planted there must not make us truncate its target
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        if exc.errno != errno.ELOOP:
            raise ConfigError([f"data_dir: cannot open {lock}: {exc.strerror}"]) from None
        raise ConfigError(
            [f"data_dir: {lock} is a symbolic link; homepoll writes no file through one: remove it"]
        ) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    previous = os.pread(fd, 64, 0).decode(errors="replace").strip()
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _held = DataDirLock(fd, int(previous) if previous.isdigit() else None)
    return fd


def held_lock() -> DataDirLock | None:
    return _held


def mark_clean_stop() -> None:
    """Empty the lock file: the next start must not report this run as killed."""
    if _held is not None:
        with contextlib.suppress(OSError):
            os.ftruncate(_held.fd, 0)


def open_storage(config: Config, env: dict[str, str] | None = None) -> Storage:
    """The daemon's Storage: batched commits, a spool in RAM, the first poll committed at once,
    pruning only by a plausible clock."""
    path = config.storage.path
    spool = Spool(spool_path(path, os.environ if env is None else env), path)
    if not spool.in_ram:
        log.info("no RAM-backed folder for the spool: it is %s, on the data disk", spool.path)
    return Storage(
        path,
        commit_interval=config.storage.commit_interval,
        spool=spool,
        commit_first=True,
        guard_clock=True,
    )


def report_previous_run(recovered: Recovered, commit_interval: float) -> dict[str, Any] | None:
    """One WARNING when the previous run did not stop cleanly or left readings behind;
    returns status.json's ``previous_exit`` entry (None after a clean stop)."""
    lock = held_lock()
    previous_pid = lock.previous_pid if lock is not None else None
    if previous_pid is None and not recovered.batches and not recovered.damaged_lines:
        return None
    what = (
        f"the previous run (pid {previous_pid}) did not stop cleanly (killed, crashed or"
        " the power went)"
        if previous_pid is not None
        else "the previous run left readings behind"
    )
    if recovered.batches:
        found = (
            f"recovered {recovered.readings} readings of {len(recovered.batches)} polls from"
            f" {', '.join(recovered.sources)}"
        )
    else:
        found = (
            "nothing was waiting in the spool (after a power cut, readings of up to"
            f" {commit_interval:g} s before it are lost)"
        )
    if recovered.damaged_lines:
        found += f"; {recovered.damaged_lines} damaged spool lines skipped"
    log.warning("%s; %s", what, found)
    return {
        "clean": previous_pid is None,
        "pid": previous_pid,
        "recovered_readings": recovered.readings,
        "recovered_polls": len(recovered.batches),
        "damaged_lines": recovered.damaged_lines,
        "noticed_at": datetime.now(UTC),
        "message": f"{what}; {found}",
    }


def systemd_status(states: list[str], storage: Storage) -> str:
    """The unit's STATUS= line: collector states, what is stored and what waits."""
    stored = sum(storage.stored_by.values())
    text = f"{', '.join(states)}; {stored} readings stored since start"
    if storage.queued:
        text += f", {storage.queued} waiting for the next commit"
        due = storage.next_commit()
        if due is not None:
            text += f" at {datetime.fromtimestamp(due).strftime('%H:%M')}"
    return text
