"""``homepoll`` with experimental patches, to measure a change side by side with the code.

``python bench/_patched.py PATCH[,PATCH...] run --config FILE``

bench/experiments.py and bench/_rss_levers.py run the normal scenarios with this launcher
instead of the ``homepoll`` script; it imports only the standard library before homepoll,
so it adds nothing measurable to the daemon's RSS. The patches are measurement aids only,
not proposed code: each one removes, changes or puts back one cost on the daemon's normal
(all polls succeed) path.
The ``old-*`` patches put back what the code did before a change, so the current code is
the baseline and each of them shows what that change saved.
"""

from __future__ import annotations

import sys

PATCHES: dict[str, str] = {
    "no-merge": "readings_recent never moved into readings (flash runs measure the move apart)",
    "old-retry": "before: every poll set up tenacity, also for a first attempt that succeeds",
    "old-parse": "before: parse_sensors built a frozen _Resource per resource, sorted lookups",
    "old-status-fsync": "before: status.json fsynced (file and folder) before/after the rename",
    "old-status-indent": "before: status.json written with indent=2",
    "status-every-10": "status.json written on every 10th write() only",
    "old-sqlite-cache": "before: the writer's SQLite page cache at SQLite's default 2,000 KiB",
    "stack-256k": "threading.stack_size(256 KiB) before any thread starts",
    "gc-freeze": "gc.freeze() once start-up is done (at READY=1)",
    "malloc-trim": "glibc malloc_trim(0) on the loop every 10 s from READY=1 on",
}


def no_merge() -> None:
    from homepoll.storage import Storage

    original = Storage.__init__

    def __init__(self, path, **kwargs):
        original(self, path, **kwargs, merge_interval=float("inf"), merge_rows=2**62)

    Storage.__init__ = __init__


def old_retry() -> None:
    from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt

    from homepoll import retry
    from homepoll.errors import CollectorError, RateLimitedError

    async def run(self, call, deadline):
        """The former RetryPolicy.run: the whole poll, first attempt included, in tenacity."""
        state = retry._PollState(deadline=deadline)

        async def sleep(seconds):
            await self._sleep(float(seconds))

        def before_sleep(retry_state):  # the warning itself only runs on a failure
            pass

        retrying = AsyncRetrying(
            sleep=sleep,
            stop=stop_after_attempt(self.settings.max_attempts)
            | retry._StopAtDeadline(self, state),
            wait=lambda retry_state: self._wait_for(state, retry_state),
            retry=retry_if_exception_type(retry.RETRYABLE),
            before_sleep=before_sleep,
            reraise=True,
        )
        try:
            value = await retrying(self._attempt, call, state)
        except CollectorError as error:
            if isinstance(error, RateLimitedError) and state.retry_after is None:
                hint = error.retry_after
                state.retry_after = self.settings.rate_limit_delay if hint is None else hint
            self._log_give_up(error, state)
            raise retry.PollFailed(error, state.attempts, state.retry_after) from error
        return retry.Attempted(value, state.attempts)

    retry.RetryPolicy.run = run


def old_parse() -> None:
    from dataclasses import dataclass
    from datetime import UTC, datetime

    from homepoll.collectors import hue
    from homepoll.errors import PermanentError
    from homepoll.model import CollectResult, Reading

    @dataclass(frozen=True)
    class Resource:
        rid: str
        type: str
        name: str
        uniqueid: str
        state: dict
        config: dict

        @property
        def device_id(self):
            return self.uniqueid[:23] if self.uniqueid else f"hue-sensor-{self.rid}"

    def as_dict(value):
        return value if isinstance(value, dict) else {}

    def lastupdated(value):
        if not isinstance(value, str) or value == "none":
            return None
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return round(moment.timestamp() * 1000)

    def sort_key(rid):
        return (int(rid), "") if rid.isdigit() else (1 << 62, rid)

    def parse_sensors(answer, *, names=None, sensors=(), now_ms):
        if not isinstance(answer, dict):
            raise PermanentError("unexpected shape")
        names = names or {}
        wanted = set(sensors)
        devices = {}
        for rid in sorted(answer, key=lambda r: sort_key(str(r))):
            item = answer[rid]
            if not isinstance(item, dict) or item.get("type") not in hue._MAPPED:
                continue
            resource = Resource(
                rid=str(rid),
                type=str(item["type"]),
                name=str(item.get("name") or f"Hue sensor {rid}"),
                uniqueid=str(item.get("uniqueid") or ""),
                state=as_dict(item.get("state")),
                config=as_dict(item.get("config")),
            )
            devices.setdefault(resource.device_id, []).append(resource)
        result = CollectResult()
        for device_id, resources in devices.items():
            collect_device(device_id, resources, names, wanted, now_ms, result)
        return result

    def collect_device(device_id, resources, names, wanted, now_ms, result):
        presence_name = next((r.name for r in resources if r.type == "ZLLPresence"), None)
        lookup = [device_id, *(r.uniqueid for r in resources)]
        lookup += [presence_name] if presence_name else []
        lookup += [r.name for r in resources]
        override = next((names[k] for k in lookup if k and k in names), None)
        device_name = override or presence_name
        if wanted and not wanted & {device_id, presence_name, override}:
            resources = [r for r in resources if wanted & {r.rid, r.name, r.uniqueid}]
            if not resources:
                return
        label = device_name or resources[0].name
        skipped_before = result.skipped
        for resource in resources:
            metric, unit, field_name = hue._MAPPED[resource.type]
            if resource.config.get("reachable") is False:
                result.skipped += 1
                continue
            ts = lastupdated(resource.state.get("lastupdated"))
            value = hue._convert(metric, resource.state.get(field_name))
            if ts is None or value is None:
                result.skipped += 1
                continue
            name = device_name or resource.name
            result.readings.append(Reading("hue", device_id, name, metric, unit, ts, value))
        ordered = sorted(resources, key=lambda r: r.type != "ZLLPresence")
        batteries = [r.config["battery"] for r in ordered if "battery" in r.config]
        if batteries:
            battery = hue._number(batteries[0])
            if battery is None:
                result.skipped += 1
            else:
                result.readings.append(
                    Reading("hue", device_id, label, "battery", "%", now_ms, battery, True)
                )
        reachables = [r.config["reachable"] for r in ordered if "reachable" in r.config]
        if reachables:
            reachable = 1.0 if all(v is True for v in reachables) else 0.0
            result.readings.append(
                Reading("hue", device_id, label, "reachable", "bool", now_ms, reachable, True)
            )
        if result.skipped > skipped_before:
            why = "unreachable" if reachables and not all(reachables) else "no current value"
            result.notes.append(
                f"{label}: {result.skipped - skipped_before} value(s) skipped ({why})"
            )

    hue.parse_sensors = parse_sensors


def old_status_fsync() -> None:
    import homepoll.status_file as health
    from homepoll.fsutil import atomic_write_text

    def durable_write(path, text, mode=0o644, *, durable=True):
        atomic_write_text(path, text, mode)  # fsync of the file and its folder

    health.atomic_write_text = durable_write


def old_status_indent() -> None:
    import homepoll.status_file as health

    real = health.json

    class IndentedJson:
        def __getattr__(self, name):
            return getattr(real, name)

        @staticmethod
        def dumps(obj, **kwargs):
            return real.dumps(obj, indent=2, **kwargs)

    health.json = IndentedJson()


def status_every_10() -> None:
    from homepoll.status_file import StatusFile

    original = StatusFile.write
    calls = {"n": 0}

    def write(self):
        calls["n"] += 1
        return original(self) if calls["n"] % 10 == 1 else True

    StatusFile.write = write


def old_sqlite_cache() -> None:
    from homepoll.storage import connection

    connection.CACHE_KIB = 2000


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


def stack_256k() -> None:
    import threading

    threading.stack_size(256 * 1024)


def gc_freeze() -> None:
    import gc

    _at_ready(gc.freeze)


def malloc_trim() -> None:
    import asyncio
    import ctypes

    libc = ctypes.CDLL("libc.so.6")

    def trim() -> None:
        libc.malloc_trim(0)
        asyncio.get_running_loop().call_later(10, trim)

    _at_ready(trim)


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
