"""``homepoll`` with the RSS-lever patches of bench/_rss_levers.py.

``python bench/_rss_launch.py PATCH[,PATCH...] run --config FILE`` (an empty PATCH list is
the baseline). Only the standard library is imported before homepoll, so the launcher
itself adds nothing measurable to the daemon's RSS.
"""

from __future__ import annotations

import sys


def _sqlite_cache(kib: int) -> None:
    from homepoll.storage import Storage

    original = Storage._connect

    def _connect(self):
        original(self)
        self._conn.execute(f"PRAGMA cache_size = -{kib}")

    Storage._connect = _connect


def _at_ready(action) -> None:
    """Run ``action()`` on the loop right after the daemon's READY=1 (start-up complete)."""
    from homepoll import notify

    original = notify.notify
    done = {"ready": False}

    def patched(message, *args, **kwargs):
        result = original(message, *args, **kwargs)
        if not done["ready"] and "READY=1" in message.split("\n"):
            done["ready"] = True
            action()
        return result

    notify.notify = patched


def _stack_256k() -> None:
    import threading

    threading.stack_size(256 * 1024)


def _gc_freeze() -> None:
    import gc

    _at_ready(gc.freeze)


def _malloc_trim() -> None:
    import asyncio
    import ctypes

    libc = ctypes.CDLL("libc.so.6")

    def trim() -> None:
        libc.malloc_trim(0)
        asyncio.get_running_loop().call_later(10, trim)

    _at_ready(trim)


PATCHES = {
    "sqlite-cache-512": lambda: _sqlite_cache(512),  # PRAGMA cache_size on the writer
    "sqlite-cache-256": lambda: _sqlite_cache(256),  # (default -2000 KiB)
    "stack-256k": _stack_256k,  # threading.stack_size before any thread starts
    "gc-freeze": _gc_freeze,  # gc.freeze() at READY=1
    "malloc-trim": _malloc_trim,  # glibc malloc_trim(0) every 10 s from READY=1 on
}


def launch(patches: str, argv: list[str]) -> int:
    for name in filter(None, patches.split(",")):
        PATCHES[name]()
    from homepoll.cli import main as homepoll_main

    return homepoll_main(argv)


if __name__ == "__main__":
    sys.exit(launch(sys.argv[1], sys.argv[2:]))
