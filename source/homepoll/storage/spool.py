"""The spool: every poll's readings appended to a file in RAM until the database has them.

Commits are batched (``storage.commit_interval``, 300 s by default) because each one costs
SD-card writes. Between commits the readings live in the writer's memory, which a SIGKILL,
the watchdog's SIGABRT or an OOM kill takes with it. The spool keeps a copy where the
process's death cannot reach it: an append-only file on tmpfs (``$RUNTIME_DIRECTORY`` under
systemd, else the user's runtime folder), emptied after each commit and replayed into the
database on the next start. tmpfs costs no flash writes; it does not survive a power cut,
so a power cut can still cost up to ``commit_interval`` seconds of readings.

One line of JSON per poll. A line cut short by a kill is skipped on replay (counted).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from homepoll.model import Reading
from homepoll.storage.rows import Batch, PollRecord

log = logging.getLogger("homepoll.storage")

COMPACT_FLOOR = 1 << 20
"""A spool under twice this size is never compacted (a few thousand readings)."""

PENDING_SUFFIX = ".pending"
"""``readings.db.pending``: what a stop could not write to the database, kept beside it on the
same disk, because a stop often comes right before a reboot that empties tmpfs."""


def spool_folder(db_path: Path, env: Mapping[str, str] = os.environ) -> Path:
    """Where the spool lives: a RAM-backed folder only this user can write, if there is one.

    ``$RUNTIME_DIRECTORY`` (systemd's ``RuntimeDirectory=``), then ``$XDG_RUNTIME_DIR/homepoll``
    (the login session's), then ``/dev/shm/homepoll-<uid>``; the database's own folder (flash)
    only when none of them can be used.
    """
    runtime = env.get("RUNTIME_DIRECTORY", "").split(":")[0]
    if runtime:
        return Path(runtime)
    candidates = []
    if env.get("XDG_RUNTIME_DIR"):
        candidates.append(Path(env["XDG_RUNTIME_DIR"]) / "homepoll")
    candidates.append(Path("/dev/shm") / f"homepoll-{os.getuid()}")
    for folder in candidates:
        if _private_folder(folder):
            return folder
    return Path(db_path).parent


def spool_path(db_path: Path, env: Mapping[str, str] = os.environ) -> Path:
    """The spool file of the database at ``db_path`` (one per database: tests run many)."""
    key = hashlib.sha256(str(Path(db_path).absolute()).encode()).hexdigest()[:12]
    return spool_folder(db_path, env) / f"{Path(db_path).name}-spool-{key}.jsonl"


def _private_folder(folder: Path) -> bool:
    """Create ``folder`` 0700 if needed; True when it is ours alone (in /dev/shm anyone may
    have made it first, or made it a symlink to somewhere else)."""
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        info = os.lstat(folder)
    except OSError:
        return False
    return (
        stat.S_ISDIR(info.st_mode)
        and info.st_uid == os.getuid()
        and not info.st_mode & 0o077
        and os.access(folder, os.W_OK | os.X_OK)
    )


def encode(batch: Batch) -> bytes:
    """One poll as one line of JSON."""
    p = batch.poll
    record = {
        "t": batch.polled_at,
        "p": None
        if p is None
        else [p.collector, p.started_at, p.duration_ms, p.attempts, p.outcome, p.error],
        "r": [
            [r.source, r.device_id, r.name, r.metric, r.unit, r.ts, r.value, int(r.on_change)]
            for r in batch.readings
        ],
    }
    return (json.dumps(record, separators=(",", ":"), ensure_ascii=False) + "\n").encode()


def decode(line: bytes) -> Batch:
    """The inverse of :func:`encode`; ValueError (or TypeError) for a damaged line."""
    record = json.loads(line)
    poll = record["p"]
    return Batch(
        int(record["t"]),
        None if poll is None else PollRecord(*poll),
        [
            Reading(str(s), str(d), str(n), str(m), str(u), int(ts), float(v), bool(c))
            for s, d, n, m, u, ts, v, c in record["r"]
        ],
    )


@dataclass
class Recovered:
    """What a start found left behind by the previous run."""

    batches: list[Batch] = field(default_factory=list)
    damaged_lines: int = 0
    sources: list[str] = field(default_factory=list)  # the files they came from

    @property
    def readings(self) -> int:
        return sum(len(b.readings) for b in self.batches)


def read_batches(path: Path) -> tuple[list[Batch], int]:
    """The batches in a spool or pending file, and how many lines were damaged."""
    batches: list[Batch] = []
    damaged = 0
    with contextlib.suppress(FileNotFoundError), open(path, "rb") as handle:
        for line in handle:
            if not line.strip():
                continue
            try:
                batches.append(decode(line))
            except (ValueError, TypeError, KeyError):
                damaged += 1
    return batches, damaged


class Spool:
    """The append-only file of one database. Used from the writer thread only."""

    def __init__(self, path: Path, db_path: Path) -> None:
        self.path = Path(path)
        self.pending_path = Path(f"{db_path}{PENDING_SUFFIX}")
        self._fd: int | None = None
        self._size = 0
        self._failing = False
        self._compacted_size = 0  # size right after the last compaction

    @property
    def in_ram(self) -> bool:
        """False when the spool had to fall back to the database's own folder."""
        return self.path.parent != self.pending_path.parent

    def recover(self) -> Recovered:
        """Read what the previous run left (pending file first: it is older), keep it on disk
        until :meth:`clear` says the database has it."""
        found = Recovered()
        for path in (self.pending_path, self.path):
            batches, damaged = read_batches(path)
            if batches or damaged:
                found.batches += batches
                found.damaged_lines += damaged
                found.sources.append(str(path))
        return found

    def append(self, batch: Batch) -> bool:
        """Add one poll; False (logged once per episode) when the spool cannot be written."""
        data = encode(batch)
        try:
            if self._fd is None:
                self._fd = os.open(
                    self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600
                )
                self._size = os.fstat(self._fd).st_size
            os.write(self._fd, data)
        except OSError as exc:
            if not self._failing:
                log.warning(
                    "cannot write the spool %s (%s): readings waiting for the next commit"
                    " are only in memory until it works again",
                    self.path,
                    exc,
                )
            self._failing = True
            self._close_fd()
            return False
        if self._failing:
            log.info("the spool %s can be written again", self.path)
            self._failing = False
        self._size += len(data)
        return True

    def compact(self, batches: list[Batch]) -> None:
        """While commits fail and the writer's queue drops its oldest readings, keep the spool
        to what the queue still holds, so RAM stays bounded like the queue. Rewritten only
        when it has doubled since the last time: the cost per poll stays constant."""
        if self._size <= 2 * max(self._compacted_size, COMPACT_FLOOR):
            return
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        try:
            with open(tmp, "wb", opener=lambda p, f: os.open(p, f, 0o600)) as handle:
                for batch in batches:
                    handle.write(encode(batch))
            os.replace(tmp, self.path)
        except OSError as exc:
            log.warning("cannot compact the spool %s: %s", self.path, exc)
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            return
        self._close_fd()
        self._size = self._compacted_size = self.path.stat().st_size

    def clear(self) -> None:
        """The database has everything: empty the spool and drop the pending file."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.pending_path)
        if self._fd is not None:
            try:
                os.ftruncate(self._fd, 0)
                self._size = 0
                return
            except OSError:
                self._close_fd()
        with contextlib.suppress(FileNotFoundError):
            os.truncate(self.path, 0)
        self._size = 0

    def keep_for_next_start(self, batches: list[Batch], error: str, *, spooled: bool) -> int:
        """At a stop the database refused: keep ``batches`` for the next start, say where.

        Beside the database first (a stop often comes right before a reboot, which empties
        tmpfs), else they stay in the spool (``spooled``: all of them made it there). Returns
        how many readings are kept nowhere.
        """
        count = sum(len(b.readings) for b in batches)
        try:
            self._keep_beside_database(batches)
        except OSError as exc:
            if not spooled:
                log.error(
                    "stopping: %d readings could not be written (%s), nor kept beside the"
                    " database (%s) or in the spool: lost",
                    count,
                    error,
                    exc,
                )
                return count
            log.error(
                "stopping: %d readings could not be written (%s), nor kept beside the database"
                " (%s): they stay in the spool %s and the next start writes them%s",
                count,
                error,
                exc,
                self.path,
                " (unless the machine restarts first)" if self.in_ram else "",
            )
            return 0
        log.error(
            "stopping: %d readings could not be written to the database (%s): kept in %s,"
            " the next start writes them",
            count,
            error,
            self.pending_path,
        )
        return 0

    def _keep_beside_database(self, batches: list[Batch]) -> None:
        """Write ``batches`` durably to the pending file, then empty the spool; OSError if not."""
        from homepoll.fsutil import atomic_write_text

        text = b"".join(encode(b) for b in batches).decode()
        atomic_write_text(self.pending_path, text, mode=0o600)
        with contextlib.suppress(OSError):
            if self._fd is not None:
                os.ftruncate(self._fd, 0)
            else:
                os.truncate(self.path, 0)

    def remove(self) -> None:
        """A clean stop with nothing pending: leave no file behind."""
        self._close_fd()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    def _close_fd(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)


def waiting_batches(path: Path | str | None) -> Iterator[Batch]:
    """The batches in a daemon's spool (for readers: `homepoll readings`, the web page)."""
    if not path:
        return iter(())
    batches, _ = read_batches(Path(path))
    return iter(batches)
