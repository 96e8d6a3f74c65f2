"""Files and the filesystem: crash-safe writes (alerts, status.json, secrets) and a disk probe.

A power cut on a Pi must leave either the old file or the new one, never half of one,
and a secret must never exist, even for a moment, with a mode others can read. When the
disk is full or read-only, the probe says so from outside the daemon.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from pathlib import Path

LOW_DISK_BYTES = 1024 * 1024
"""Below this much free space in data_dir, `status` reports the disk as full: the daemon cannot
even rewrite status.json then, so the file alone would keep showing the last good state."""


def atomic_write_text(path: Path, text: str, mode: int = 0o644, *, durable: bool = True) -> None:
    """Write ``text`` to ``path`` via a temporary file in the same folder and rename it over.

    Readers see the old file or the new one, never part of one. ``durable`` also fsyncs the
    file and its folder, so the new file survives a power cut; a file rewritten after every
    poll (status.json) skips that and lets its readers cope with what a power cut leaves.
    """
    path = Path(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    if durable:
        _fsync_dir(path.parent)


def write_secret_file(path: Path, text: str) -> None:
    """Write a secret atomically with mode 0600 (created that way, never chmod-ed afterwards)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, text, mode=0o600)


def is_readable_by_others(path: Path, mask: int = 0o044) -> bool:
    """True when group or others (``mask``) may read ``path``: worth one warning for a secret."""
    try:
        return bool(Path(path).stat().st_mode & mask)
    except OSError:
        return False


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
        return [
            f"disk full: {format_size(free)} free for {data_dir}; readings are queued in memory"
        ]
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


def format_size(num: object) -> str:
    """Bytes for people: "512 B", "3.4 MB"; "unknown size" for anything not a number."""
    if not isinstance(num, int | float):
        return "unknown size"
    value = float(num)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
