"""Crash-safe file writes shared by alerts, status.json and the secret files.

A power cut on a Pi must leave either the old file or the new one, never half of one,
and a secret must never exist, even for a moment, with a mode others can read.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


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
