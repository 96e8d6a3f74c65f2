"""Process-wide safety set once at start: no core dumps, no loose file modes.

Core dumps hold every secret the process read (a watchdog SIGABRT wrote a 52 MB core with
the Hue key and the cookies), so the core size limit is set to 0, soft and hard, for us and
the programs we start (the unit also says ``LimitCORE=0``). ``PR_SET_DUMPABLE`` is not used:
it would also hide ``/proc/<pid>/io`` from the service's own user, which the benchmark reads.
The umask gains 027 (never loosened), so every folder homepoll makes is 0750 or tighter and
every file 0640 or tighter, SQLite's journal files included, whatever the caller's umask.
"""

from __future__ import annotations

import contextlib
import logging
import os
import resource
import stat
from pathlib import Path

log = logging.getLogger("homepoll.hardening")

UMASK_BITS = 0o027


def harden_process() -> None:
    """No core dumps; umask at least 027. Safe to call more than once."""
    with contextlib.suppress(OSError, ValueError):  # the unit's seccomp filter may say EPERM
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    old = os.umask(UMASK_BITS)
    os.umask(old | UMASK_BITS)


def warn_if_open_to_others(folder: Path) -> bool:
    """One warning when others may create, swap or link files in ``folder``; True if so."""
    try:
        mode = os.stat(folder).st_mode
    except OSError:
        return False
    if not mode & (stat.S_IWGRP | stat.S_IWOTH):
        return False
    who = "everyone" if mode & stat.S_IWOTH else "its group"
    log.warning(
        "data_dir %s can be written by %s (mode %03o): another user could plant links or swap "
        "the credentials there; run: chmod 750 %s",
        folder,
        who,
        stat.S_IMODE(mode),
        folder,
    )
    return True
