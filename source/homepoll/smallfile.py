"""Reading the small files a user points us at (config, keys, cookies) without ever hanging.

A FIFO, a device or a symlink to ``/dev/zero`` in place of such a file would block a plain
``read_text()`` forever or fill the memory; a 200 MB config.yaml would take minutes. Such a
file gets an OSError whose ``strerror`` says what is wrong, in words fit for a problem line.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from homepoll.fsutil import format_size

KIB = 1024
MAX_CONFIG_BYTES = 1024 * KIB
"""config.yaml: the shipped one is 8 KiB; anything near this is the wrong file."""
MAX_SECRET_BYTES = 256 * KIB
"""A key, cookie, auth or password file: a full browser cookie export is a few KiB."""

_KINDS = (
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


class NotRegularFile(OSError):
    """The path is a FIFO, device or socket: never read, since reading could block forever."""


class FileTooLarge(OSError):
    """The file is over the limit for its kind; ``size`` and ``limit`` in bytes."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(
            errno.EFBIG, f"{format_size(size)}, more than the {format_size(limit)} allowed"
        )
        self.size = size
        self.limit = limit


def read_small_file(path: Path, limit: int) -> bytes:
    """The bytes of ``path`` when it is a regular file of at most ``limit`` bytes.

    Opened non-blocking, so even opening a FIFO returns at once; the type and size are
    checked on the open descriptor, so a swap between check and read changes nothing.
    Raises FileNotFoundError, PermissionError, IsADirectoryError, NotRegularFile,
    FileTooLarge or another OSError.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise IsADirectoryError(errno.EISDIR, "is a directory")
        if not stat.S_ISREG(info.st_mode):
            kind = next((name for test, name in _KINDS if test(info.st_mode)), "not a file")
            raise NotRegularFile(errno.EINVAL, f"not a regular file but {kind}")
        if info.st_size > limit:
            raise FileTooLarge(info.st_size, limit)
        chunks = []
        total = 0
        while chunk := os.read(fd, min(64 * KIB, limit + 1 - total) or 1):
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:  # grew since fstat
                raise FileTooLarge(total, limit)
        return b"".join(chunks)
    finally:
        os.close(fd)
