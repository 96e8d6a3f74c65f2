"""What the MQTT side is doing, for `status`, /metrics and the dashboard; and its alert.

``MqttStatus`` is a plain object the daemon owns: the link and the publishers update it, the
status file, the web page and /metrics read it (``as_dict``). It never holds the password.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from homepoll.alerts import AlertFile
from homepoll.timefmt import iso_or_none

log = logging.getLogger("homepoll.mqtt")

ALERT_FILE = "ALERT_MQTT_OFFLINE.txt"
_REMEDY = """\
Check that the broker runs and is reachable from this machine (mqtt.host, mqtt.port), that
mqtt.username and the password in mqtt.password_file are right, and for TLS that
mqtt.ca_file signs the broker's certificate. Polling and storing go on meanwhile; with
mqtt.events every reading is sent once the broker is back."""


@dataclass
class MqttStatus:
    """The broker link as the rest of homepoll sees it (unix seconds, UTC)."""

    broker: str
    connected: bool = False
    since: float | None = None  # when the link last came up or went down
    last_publish: float | None = None  # the broker's last acknowledgement
    last_error: str | None = None
    published: int = 0  # messages the broker acknowledged since start
    events_enabled: bool = False
    backlog: int | None = None  # stored readings not yet acknowledged as events
    events_published: int = 0
    events_repeated: int = 0  # sent again after a lost connection (at-least-once)

    def snapshot(self) -> dict[str, Any]:
        """For /metrics and the dashboard: a copy, times as unix seconds."""
        return asdict(self)

    def as_dict(self) -> dict[str, Any]:
        """For status.json: times as ISO-8601 UTC strings."""
        out = asdict(self)
        out["since"] = iso_or_none(self.since)
        out["last_publish"] = iso_or_none(self.last_publish)
        return out

    def acknowledged(self, count: int = 1, now: float | None = None) -> None:
        self.published += count
        self.last_publish = time.time() if now is None else now


class OfflineAlert:
    """ALERT_MQTT_OFFLINE.txt: raised once the broker has been out of reach for
    ``alerts.offline_after`` seconds, updated per failed attempt, removed on connection."""

    def __init__(
        self,
        data_dir: Path,
        offline_after: float,
        *,
        command: tuple[str, ...] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.alert = AlertFile(
            data_dir / ALERT_FILE,
            "mqtt",
            _REMEDY,
            command=command,
            title="the MQTT broker has been out of reach",
        )
        self.offline_after = offline_after
        self._clock = clock
        self._down_since: float | None = None

    def failed(self, error: str) -> None:
        """One failed connection attempt (or a lost link). Blocking: call via to_thread."""
        now = self._clock()
        if self._down_since is None:
            self._down_since = now
        if self.alert.is_open or now - self._down_since >= self.offline_after:
            self.alert.report_failure(error)

    def connected(self) -> None:
        """Blocking: call via to_thread."""
        self._down_since = None
        self.alert.clear()


def describe(entry: dict[str, Any], ago: Callable[[object], str]) -> str:
    """The `homepoll status` line for status.json's ``mqtt`` entry."""
    broker = entry.get("broker", "?")
    if entry.get("connected"):
        state = f"connected to {broker} since {ago(entry.get('since'))}"
    else:
        state = f"NOT connected to {broker} (since {ago(entry.get('since'))})"
    parts = [f"MQTT: {state}", f"last publish {ago(entry.get('last_publish'))}"]
    if entry.get("events_enabled"):
        parts.append(f"events backlog {entry.get('backlog', '?')}")
    line = ", ".join(parts)
    if entry.get("last_error") and not entry.get("connected"):
        line += f"\n  last error: {entry['last_error']}"
    return line
