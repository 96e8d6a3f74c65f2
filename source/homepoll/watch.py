"""The alerts a person needs beyond bad credentials: a source gone, batteries running out.

``ALERT_HUE_OFFLINE.txt`` / ``ALERT_AMAZON_OFFLINE.txt`` once a source has failed (for a
reason other than auth) for longer than ``alerts.offline_after``; ``ALERT_BATTERY_LOW.txt``
listing every device at or under ``alerts.battery_low``. Same rules as the auth alerts
(``homepoll.alerts``): raised once with a CRITICAL line and ``alerts.command``, updated in
place, removed when the reason is gone, and a restart neither clears nor repeats them.

Decisions are made on the event loop from what the poll already has in memory; only an
actual file change goes to a worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from homepoll.alerts import AlertFile, run_alert_command
from homepoll.fsutil import atomic_write_text
from homepoll.safetext import escape_control, one_line
from homepoll.timefmt import iso_utc, parse_iso

if TYPE_CHECKING:
    from homepoll.config import Config
    from homepoll.model import Reading

log = logging.getLogger("homepoll.alerts")

OFFLINE_FILES = {"hue": "ALERT_HUE_OFFLINE.txt", "amazon_aqm": "ALERT_AMAZON_OFFLINE.txt"}
OFFLINE_TITLES = {
    "hue": "the Hue bridge does not answer",
    "amazon_aqm": "Amazon's air-quality service does not answer",
}
OFFLINE_REMEDY = {
    "hue": (
        "Check that the bridge has power and network (its three lights), and that\n"
        "collectors.hue.bridge in config.yaml is the address it answers on now (a new\n"
        "router may have given it another one). `homepoll status` shows the last error."
    ),
    "amazon_aqm": (
        "Check the Pi's internet connection and that the monitor shows up in the Alexa app.\n"
        "Amazon outages usually pass by themselves. `homepoll status` shows the last error."
    ),
}
BATTERY_FILE = "ALERT_BATTERY_LOW.txt"
DEFAULT_OFFLINE_AFTER = 3600.0
DEFAULT_BATTERY_LOW = 15.0
CORRUPT_NOTICE_DAYS = 1.0
_BATTERY_LINE = re.compile(
    r"^- (?P<name>.*): (?P<value>[\d.]+) % since (?P<since>\S+) \(UTC\) \[(?P<key>[^\]]+)\]$"
)


def alert_settings(config: Config) -> tuple[float, float]:
    """(offline_after, battery_low) from the config (its defaults while a key is missing)."""
    alerts = config.alerts
    return (
        float(getattr(alerts, "offline_after", DEFAULT_OFFLINE_AFTER)),
        float(getattr(alerts, "battery_low", DEFAULT_BATTERY_LOW)),
    )


class OfflineWatch:
    """One collector's offline alert: raised after ``offline_after`` s of non-auth failures."""

    def __init__(
        self,
        collector: str,
        data_dir: Path,
        offline_after: float,
        command: tuple[str, ...] | None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.offline_after = offline_after
        self.alert = AlertFile(
            Path(data_dir) / OFFLINE_FILES.get(collector, f"ALERT_{collector.upper()}_OFFLINE.txt"),
            collector,
            OFFLINE_REMEDY.get(collector, "Check that the source is reachable."),
            command=command,
            title=OFFLINE_TITLES.get(collector, f"{collector} does not answer"),
        )
        self._clock = clock
        self._failing_since: float | None = None  # monotonic
        self._first_failure: datetime | None = None
        self._failures = 0

    async def succeeded(self) -> None:
        """The source answered (a good poll, or even an auth refusal): it is not offline."""
        self._failing_since = None
        self._failures = 0
        if self.alert.is_open or self.alert.path.exists():
            await asyncio.to_thread(self.alert.clear)

    async def failed(self, error: str) -> None:
        if self._failing_since is None:
            self._failing_since = self._clock()
            self._first_failure = datetime.now(UTC)
            self._failures = 0
        self._failures += 1
        if self.alert.is_open:  # open already (maybe since before a restart): keep it current
            await asyncio.to_thread(self.alert.report_failure, error)
        elif self._clock() - self._failing_since >= self.offline_after:
            await asyncio.to_thread(
                self.alert.report_failure,
                error,
                since=self._first_failure,
                failures=self._failures,
            )


@dataclass
class _Low:
    name: str
    value: float
    since: datetime


class BatteryWatch:
    """``ALERT_BATTERY_LOW.txt``: every device at or under the threshold, one line each."""

    def __init__(self, path: Path, threshold: float, command: tuple[str, ...] | None) -> None:
        self.path = Path(path)
        self.threshold = threshold
        self.command = command
        self.low: dict[str, _Low] = {}
        self._load()

    def _load(self) -> None:
        """Continue the alert of an earlier process (restart survival)."""
        try:
            text = self.path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return
        for line in text.splitlines():
            match = _BATTERY_LINE.match(line)
            if match:
                since = parse_iso(match["since"]) or datetime.now(UTC)
                self.low[match["key"]] = _Low(match["name"], float(match["value"]), since)

    async def observe(self, readings: list[Reading]) -> None:
        """After a good poll: add, update or drop devices by their battery reading."""
        changed = False
        for reading in readings:
            if reading.metric != "battery":
                continue
            key = f"{reading.source}/{reading.device_id}"
            known = self.low.get(key)
            if reading.value <= self.threshold:
                if known is None or known.value != reading.value:
                    since = known.since if known else datetime.now(UTC)
                    self.low[key] = _Low(one_line(reading.name, 80), reading.value, since)
                    changed = True
            elif known is not None:
                del self.low[key]
                changed = True
        if changed or (not self.low and self.path.exists()):
            await asyncio.to_thread(self._sync)

    def render(self) -> str:
        lines = [f"homepoll: batteries at or under {self.threshold:g} %", ""]
        for key, low in sorted(self.low.items(), key=lambda kv: kv[1].value):
            lines.append(f"- {low.name}: {low.value:g} % since {iso_utc(low.since)} (UTC) [{key}]")
        lines += [
            "",
            "What to do:",
            "Replace or recharge these batteries. A Hue sensor or switch stops reporting",
            "(and a dimmer stops working) soon after its battery runs out.",
            "",
            "homepoll updates this file as batteries change and deletes it when none is low.",
        ]
        return "\n".join(lines) + "\n"

    def _sync(self) -> None:
        """Write, update or remove the file to match ``self.low`` (in a worker thread)."""
        existed = self.path.exists()
        if not self.low:
            if existed:
                with contextlib.suppress(FileNotFoundError):
                    self.path.unlink()
                log.info("alert %s cleared: no battery is low any more", self.path.name)
                self._run_command("clear")
            return
        try:
            atomic_write_text(self.path, self.render())
        except OSError as exc:
            log.error("cannot write alert file %s: %s", self.path, exc)
        names = ", ".join(f"{low.name} ({low.value:g} %)" for low in self.low.values())
        if existed:
            log.info("alert %s updated: %s", self.path.name, names)
            return
        log.critical("ALERT battery low: %s (see %s)", names, self.path)
        self._run_command("raise")

    def _run_command(self, event: str) -> None:
        if self.command:
            run_alert_command(self.command, event, "battery", self.path)


_battery_watches: dict[Path, BatteryWatch] = {}


def battery_watch(config: Config) -> BatteryWatch:
    """The one battery alert of a data folder, shared by every collector's runner."""
    _, threshold = alert_settings(config)
    path = Path(config.data_dir) / BATTERY_FILE
    watch = _battery_watches.get(path)
    if watch is None:
        watch = _battery_watches[path] = BatteryWatch(path, threshold, config.alerts.command)
    watch.threshold, watch.command = threshold, config.alerts.command  # a reload applies
    return watch


class PollWatch:
    """What a runner calls after each stored poll: its offline alert and the battery alert."""

    def __init__(self, offline: OfflineWatch, battery: BatteryWatch) -> None:
        self.offline = offline
        self.battery = battery

    @classmethod
    def for_collector(cls, name: str, config: Config) -> PollWatch:
        offline_after, _ = alert_settings(config)
        offline = OfflineWatch(name, config.data_dir, offline_after, config.alerts.command)
        return cls(offline, battery_watch(config))

    async def after_success(self, readings: list[Reading]) -> None:
        await self.offline.succeeded()
        await self.battery.observe(readings)

    async def after_failure(self, error: str, auth: bool) -> None:
        if auth:
            await self.offline.succeeded()  # it answered, only to refuse: not offline
        else:
            await self.offline.failed(error)


# -- shown by `status` and the dashboard --------------------------------------------------


def notices(db_path: Path, started_at: Any = None, now: datetime | None = None) -> list[str]:
    """A corrupt database moved aside, shown until a start at least a day after the move."""
    now = now or datetime.now(UTC)
    started = parse_iso(started_at) if started_at else None
    found = []
    db_path = Path(db_path)
    with contextlib.suppress(OSError):
        for path in sorted(db_path.parent.glob(f"{db_path.name}.corrupt-*")):
            if path.name.endswith(("-wal", "-shm")):
                continue
            stamp = path.name.rsplit(".corrupt-", 1)[1][:16]
            try:
                moved = datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
            except ValueError:
                continue
            horizon = moved + timedelta(days=CORRUPT_NOTICE_DAYS)
            if (started or now) < horizon:
                found.append(
                    f"the database was corrupt: moved aside to {path.name} at {iso_utc(moved)}"
                    " and a fresh one started; readings before that are in the old file"
                )
    return found


def alert_texts(data_dir: Path, limit: int) -> list[tuple[str, str]]:
    """(file name, text) of every open alert, capped, controls escaped."""
    from homepoll.health import open_alerts

    texts = []
    for path in open_alerts(data_dir):
        try:
            with path.open("r", encoding="utf-8", errors="replace") as handle:
                text = handle.read(limit)
        except OSError as exc:
            text = f"(cannot read: {exc.strerror})"
        lines = [escape_control(line) for line in text.splitlines()]
        texts.append((path.name, "\n".join(lines)))
    return texts
