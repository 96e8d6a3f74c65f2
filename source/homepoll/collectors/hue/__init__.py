"""Philips Hue bridges (any model), deCONZ/Phoscon gateways and diyHue, over httpx.

``transport`` is the one async HTTP(S) path; ``v1`` and ``v2`` turn each API's answer into
devices; ``devices`` turns devices into readings the same way for both; ``pairing`` gets a
key. phue is not used: it spoke plain HTTP only, could not verify a certificate, had no CLIP
v2 and blocked a thread per call; homepoll had already replaced its request and connect.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from homepoll.collectors.hue.devices import SOURCE, Parsed
from homepoll.collectors.hue.pairing import PAIR_WINDOW, pair
from homepoll.collectors.hue.transport import (
    Answer,
    BridgeHttp,
    check_status,
    hue_error,
    raise_hue_error,
)
from homepoll.collectors.hue.v1 import parse_sensors, parse_v1
from homepoll.config import HueSettings
from homepoll.errors import AuthError, PermanentError, TransientError
from homepoll.model import CollectResult

__all__ = ["PAIR_WINDOW", "SOURCE", "HueCollector", "pair", "parse_sensors"]

log = logging.getLogger("homepoll.collectors.hue")

ALERT_REMEDY = (
    "The bridge no longer accepts homepoll's key (it was deleted in the Hue app or Phoscon, "
    "or the bridge was reset). To fix it:\n"
    "  1. Press the round link button on top of the Hue bridge (on a deCONZ gateway: click\n"
    '     "Authenticate app" in Phoscon, Gateway > Advanced).\n'
    "  2. Within 30 seconds run:  homepoll hue-pair --bridge {bridge}\n"
    "     (add --config PATH if homepoll runs with a config file elsewhere). It saves the new\n"
    "     key to the Hue key file (collectors.hue.username_file).\n"
    "  3. Run:  sudo systemctl reload homepoll\n"
    "     (or restart it) so the running daemon reads the new key.\n"
    "This file disappears by itself after the next successful Hue poll."
)

# A key goes into the URL path: anything but these would change the request or be escaped.
_SENDABLE_KEY = re.compile(r"^[A-Za-z0-9._~-]+$")


def json_of(answer: Answer, bridge: str) -> Any:
    if answer.json is None:
        raise TransientError(f"bridge {bridge} sent a non-JSON answer")
    return answer.json


class HueCollector:
    """Reads every sensor with one request per attempt (v1), over one kept connection."""

    name = "hue"
    alert_file = "ALERT_HUE_AUTH_NEEDED.txt"
    alert_remedy = ALERT_REMEDY.format(bridge="HOST")

    def __init__(
        self,
        settings: HueSettings,
        *,
        clock: Callable[[], float] = time.time,
        state_dir: Path | None = None,
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._state_dir = state_dir
        self.alert_remedy = ALERT_REMEDY.format(bridge=settings.bridge)
        self._http: BridgeHttp | None = None
        self._warned_filters: set[str] = set()
        self._skipping: frozenset[str] | None = None

    async def collect(self, timeout: float) -> CollectResult:
        key = self._settings.username
        if not key:
            raise AuthError(
                self._settings.username_problem
                or "no Hue key is configured: pair with homepoll hue-pair"
            )
        if not _SENDABLE_KEY.match(key):
            raise PermanentError(
                "the Hue key contains characters that cannot be sent (spaces, slashes or "
                "control characters): check the key file, or pair again with homepoll hue-pair"
            )
        bridge = self._settings.bridge
        http = self._connection()
        answer = await http.request("GET", f"/api/{key}/sensors", timeout=timeout, secret=key)
        check_status(answer, bridge, key)
        data = json_of(answer, bridge)
        error = hue_error(data)
        if error is not None:
            raise_hue_error(error, bridge, key)
        parsed = parse_v1(
            data,
            names=self._settings.names,
            sensors=self._settings.sensors,
            now_ms=int(self._clock() * 1000),
        )
        self._report(parsed)
        return parsed.result

    def _connection(self) -> BridgeHttp:
        if self._http is None:
            self._http = BridgeHttp(
                self._settings.bridge, keepalive=max(90.0, self._settings.interval * 2)
            )
        return self._http

    def _report(self, parsed: Parsed) -> None:
        """Say once what the user should know: filters matching nothing, a changed skip set."""
        for entry in parsed.unmatched:
            if entry in self._warned_filters:
                continue
            self._warned_filters.add(entry)
            kind = parsed.ignored.get(entry)
            if kind:
                log.warning(
                    "collectors.hue.sensors: %r is a %s, which holds no measurement homepoll "
                    "stores; remove it from the list",
                    entry,
                    kind,
                )
            else:
                log.warning(
                    "collectors.hue.sensors: %r matches no sensor on the bridge (names, "
                    "resource ids and uniqueids are matched exactly)",
                    entry,
                )
        skipping = frozenset(parsed.result.notes)
        if skipping != self._skipping:
            if skipping:
                log.info("hue: skipping %s", "; ".join(sorted(skipping)))
            elif self._skipping:
                log.info("hue: no value skipped any more")
            self._skipping = skipping

    async def aclose(self) -> None:
        """Close the kept connection (reload and stop call this)."""
        http, self._http = self._http, None
        if http is not None:
            await http.aclose()
