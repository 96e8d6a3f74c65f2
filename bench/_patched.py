"""``homepoll`` with experimental patches, to measure a proposed change before it is made.

``python bench/_patched.py PATCH[,PATCH...] run --config FILE``

bench/experiments.py runs the normal scenarios with this launcher instead of the
``homepoll`` script. The patches are measurement aids only, not the proposed code: each
one removes or changes one cost on the daemon's normal (all polls succeed) path.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

PATCHES: dict[str, str] = {
    "no-alert-hop": "no thread hop for AlertFile.clear() while no alert is open",
    "status-tmpfs": "status.json on tmpfs (data/status.json a symlink to it)",
    "status-every-10": "status.json written on every 10th write() only",
    "status-compact": "status.json without indent (C JSON encoder)",
    "retry-fast-path": "first attempt awaited directly; tenacity only after a failure",
}


def no_alert_hop() -> None:
    from homepoll.poller import CollectorRunner

    original = CollectorRunner._on_success

    async def _on_success(self, report, store):
        alert = self.alert
        if alert is not None and not alert.is_open:
            self.alert = None
            try:
                return await original(self, report, store)
            finally:
                self.alert = alert
        return await original(self, report, store)

    CollectorRunner._on_success = _on_success


def status_tmpfs() -> None:
    from homepoll.health import StatusFile

    original = StatusFile.__init__

    def __init__(self, path, **kwargs):
        path = Path(path)
        shadow = Path("/dev/shm") / f"hpbench-{os.getpid()}"
        shadow.mkdir(exist_ok=True)
        if not path.is_symlink():
            path.unlink(missing_ok=True)
            path.symlink_to(shadow / "status.json")
        original(self, shadow / "status.json", **kwargs)

    StatusFile.__init__ = __init__


def status_every_10() -> None:
    from homepoll.health import StatusFile

    original = StatusFile.write
    calls = {"n": 0}

    def write(self):
        calls["n"] += 1
        return original(self) if calls["n"] % 10 == 1 else True

    StatusFile.write = write


def status_compact() -> None:
    import homepoll.health as health

    real = health.json

    class CompactJson:
        def __getattr__(self, name):
            return getattr(real, name)

        @staticmethod
        def dumps(obj, **kwargs):
            kwargs.pop("indent", None)
            return real.dumps(obj, **kwargs)

    health.json = CompactJson()


def retry_fast_path() -> None:
    from homepoll import retry
    from homepoll.errors import CollectorError

    original = retry.RetryPolicy.run

    async def run(self, call, deadline):
        state = retry._PollState(deadline=deadline)
        try:
            value = await self._attempt(call, state)
        except CollectorError:
            return await original(self, call, deadline)  # measurement aid: happy path only
        return retry.Attempted(value, state.attempts)

    retry.RetryPolicy.run = run


def main() -> int:
    names = [n for n in sys.argv[1].split(",") if n]
    for name in names:
        if name not in PATCHES:
            raise SystemExit(f"unknown patch {name}; known: {', '.join(PATCHES)}")
        globals()[name.replace("-", "_")]()
    from homepoll.cli import main as homepoll_main

    return homepoll_main(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
