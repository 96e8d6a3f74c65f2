"""``homepoll`` with the move of readings_recent into readings switched off.

``python bench/_no_merge.py run --config FILE``

The flash figures run the daemon through this launcher: a short window would catch the
twice-a-day move in one run out of many, so the move is measured apart (``_flash.flash``)
and added per day. Only the standard library is imported before homepoll, so the launcher
adds nothing measurable to the daemon's RSS.
"""

from __future__ import annotations

import sys


def no_merge() -> None:
    from homepoll.storage import Storage

    original = Storage.__init__

    def __init__(self, path, **kwargs):
        original(self, path, **kwargs, merge_interval=float("inf"), merge_rows=2**62)

    Storage.__init__ = __init__


def main() -> int:
    no_merge()
    from homepoll.cli import main as homepoll_main

    return homepoll_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
