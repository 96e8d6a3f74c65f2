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
from homepoll.collectors.hue.link import BridgeLink
from homepoll.collectors.hue.pairing import PAIR_WINDOW, pair
from homepoll.collectors.hue.tls import BridgeMemoryFile
from homepoll.collectors.hue.transport import (
    Answer,
    BridgeHttp,
    NoTls,
    TlsRefused,
    check_status,
    hue_error,
    raise_hue_error,
)
from homepoll.collectors.hue.v1 import parse_sensors, parse_v1
from homepoll.collectors.hue.v2 import parse_v2
from homepoll.config import HueSettings
from homepoll.errors import AuthError, PermanentError, PollTimeout, TransientError
from homepoll.model import CollectResult
from homepoll.safetext import one_line

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
    """Reads every sensor with one request per attempt (v1 or CLIP v2) over one kept
    connection: HTTPS verified against the Hue root CA and the bridge id where the bridge
    has it (see ``link``)."""

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
        self.alert_remedy = ALERT_REMEDY.format(bridge=settings.bridge)
        self.link = BridgeLink(
            settings.bridge,
            transport=settings.transport,
            ca_file=settings.ca_file,
            memory=BridgeMemoryFile.load(state_dir),
            keepalive=max(90.0, settings.interval * 2),
        )
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
        deadline = time.monotonic() + timeout
        http = await self.link.connection(timeout)
        left = deadline - time.monotonic()
        try:
            if await self._use_v2(http, key, left):
                data = await self._get(http, "/clip/v2/resource", key, deadline, v2=True)
                parse = parse_v2
            else:
                data = await self._get(http, f"/api/{key}/sensors", key, deadline)
                parse = parse_v1
        except PollTimeout:  # the whole attempt's time, not what was left for the request
            raise PollTimeout(
                f"bridge {self._settings.bridge} did not answer within {timeout:.2g} s"
            ) from None
        except TlsRefused as exc:
            await self.link.forget_connection()
            raise self.link.refused(exc) from None
        except NoTls as exc:
            await self.link.forget_connection()
            if self.link.memory.https or self._settings.transport == "https":
                raise self.link.no_https(exc) from None
            raise
        except PermanentError as exc:
            if "redirect to HTTPS" in str(exc) and self._settings.transport == "auto":
                await self.link.forget_connection()  # the bridge dropped HTTP: try HTTPS
                raise TransientError(f"{exc}; trying HTTPS") from None
            raise
        if http.scheme == "https":
            await self.link.https_worked()
        parsed = parse(
            data,
            names=self._settings.names,
            sensors=self._settings.sensors,
            now_ms=int(self._clock() * 1000),
        )
        self._report(parsed)
        return parsed.result

    async def _get(
        self, http: BridgeHttp, path: str, key: str, deadline: float, *, v2: bool = False
    ) -> Any:
        bridge = self._settings.bridge
        headers = {"hue-application-key": key} if v2 else None
        timeout = deadline - time.monotonic()
        if timeout <= 0:
            raise PollTimeout(f"bridge {bridge}: no time left in this attempt")
        answer = await http.request("GET", path, timeout=timeout, headers=headers, secret=key)
        check_status(answer, bridge, key)
        data = json_of(answer, bridge)
        error = hue_error(data)
        if error is not None:
            raise_hue_error(error, bridge, key)
        if v2 and isinstance(data, dict) and data.get("errors") and not data.get("data"):
            raise PermanentError(
                f"bridge {bridge} answered CLIP v2 errors: {one_line(data['errors'], 200, [key])}"
            )
        return data

    async def _use_v2(self, http: BridgeHttp, key: str, timeout: float) -> bool:
        """CLIP v2 when configured, or (auto) when the bridge has it; remembered."""
        api = self._settings.api
        if http.scheme != "https":
            if api == "v2":
                raise PermanentError(
                    f"CLIP v2 needs HTTPS and bridge {self._settings.bridge} has none here; "
                    "set collectors.hue.api: v1 (or auto)"
                )
            return False
        if api != "auto":
            return api == "v2"
        memory = self.link.memory
        if memory.v2 is None:
            answer = await http.request(
                "GET",
                "/clip/v2/resource/bridge",
                timeout=timeout,
                headers={"hue-application-key": key},
                secret=key,
            )
            if answer.status in (404, 405) or (200 <= answer.status < 300 and answer.json is None):
                memory.v2 = False
            else:
                check_status(answer, self._settings.bridge, key)
                memory.v2 = isinstance(answer.json, dict) and "data" in answer.json
            log.info(
                "bridge %s %s CLIP v2; polling it with %s",
                self._settings.bridge,
                "speaks" if memory.v2 else "does not speak",
                "CLIP v2" if memory.v2 else "the v1 API",
            )
        return bool(memory.v2)

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
        await self.link.aclose()
