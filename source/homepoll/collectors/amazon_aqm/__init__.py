"""Amazon Smart Air Quality Monitor collector, via Amazon's private Alexa GraphQL API.

The package splits the work: ``session`` (credentials, cookie jar, renewal with the refresh
token), ``answers`` (one HTTP answer -> JSON or the error taxonomy), ``discovery`` (which
endpoints to read) and ``parse`` (state answers -> Readings). This module runs one poll.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from homepoll.collectors.amazon_aqm.discovery import (
    DISCOVERY_QUERY,
    TEMPERATURE_SENSORS,
    Monitor,
    discovery_query,
    parse_discovery,
)
from homepoll.collectors.amazon_aqm.parse import STATE_QUERY, endpoints_of, map_state
from homepoll.collectors.amazon_aqm.session import AmazonSession
from homepoll.config import AmazonAqmSettings
from homepoll.errors import AuthError
from homepoll.model import CollectResult

__all__ = ["DISCOVERY_QUERY", "STATE_QUERY", "AmazonAqmCollector", "Monitor"]

log = logging.getLogger("homepoll.collectors.amazon_aqm")

SOURCE = "amazon_aqm"
DISCOVERY_MAX_AGE = 86_400.0  # seconds: a monitor added to the account shows up within a day
EMPTY_DISCOVERY_MAX_AGE = 3_600.0  # an empty account is re-checked hourly (one warning each)
SLOW_ENOUGH = 300.0  # Amazon's own clients poll every 5 minutes or slower


class AmazonAqmCollector:
    """Reads Amazon's monitors (and opted-in temperature sources): one state request per poll.

    Discovery runs on the first poll, then once a day (hourly while it finds none), when the
    state answer names an endpoint it does not know, and when the credentials change. With a
    refresh token the cookies are renewed every few days and at once when Amazon refuses
    them, and the refused request is sent once more within the same poll.
    """

    name = SOURCE
    vendor = "Amazon"  # status: "throttled by Amazon until HH:MM"
    alert_file = "ALERT_TOKEN_REFRESH_NEEDED.txt"

    def __init__(
        self,
        settings: AmazonAqmSettings,
        *,
        clock: Callable[[], float] = time.time,
        use_auth_file: bool = True,
    ) -> None:
        self._settings = settings
        self._clock = clock
        self.session = AmazonSession(settings, clock=clock, use_auth_file=use_auth_file)
        self._query = discovery_query(settings.include)
        self._monitors: list[Monitor] | None = None
        self._discovered_at: float | None = None
        self.alert_remedy = (
            "Amazon refused the saved Alexa session for good. Run `homepoll amazon-login` on "
            "this machine (email, password and the one-time code of your authenticator app); "
            f"it registers homepoll as an Alexa device and writes {settings.auth_file} "
            "(mode 0600), from which homepoll renews its cookies by itself for months. Without "
            "a password on this machine: get a refresh token elsewhere (e.g. alexa-cookie-cli) "
            "and run `homepoll amazon-login --refresh-token FILE`. The running daemon picks the "
            "new file up on its next poll, no restart needed. (Fallback: browser cookies with "
            "`homepoll amazon-cookies FILE`, which expire every few days.)"
        )
        self._warned_interval = False

    # ----------------------------------------------------------------- public API

    async def collect(self, timeout: float) -> CollectResult:
        """One attempt: fresh session if due, (re)discover if due, one state request."""
        deadline = time.monotonic() + timeout
        if not self._warned_interval:  # once per start or reload: the daemon builds a new one
            self._warned_interval = True
            if self._settings.interval < SLOW_ENOUGH:
                log.warning(
                    "collectors.amazon_aqm.interval is %g s: Amazon's own clients poll every "
                    "%g s or slower (the monitor updates every few minutes) and throttle faster "
                    "ones",
                    self._settings.interval,
                    SLOW_ENOUGH,
                )
        if self.session.load():
            self._discovered_at = None  # maybe another account: find its devices again
        start = self.session.renewals
        if self.session.renewal_due():
            await self.session.renew(deadline, "due")
        try:
            if self._discovery_due():
                await self._discover(deadline, start)
            return await self._state(deadline, start)
        finally:
            self.session.save_if_changed()

    async def discover(self, timeout: float = 10.0) -> list[Monitor]:
        """The monitors on the account (one request, two if the session needs renewing)."""
        deadline = time.monotonic() + timeout
        self.session.load()
        start = self.session.renewals
        if self.session.renewal_due():
            await self.session.renew(deadline, "due")
        try:
            await self._discover(deadline, start)
        finally:
            self.session.save_if_changed()
        return list(self._monitors or [])

    async def aclose(self) -> None:
        await self.session.aclose()

    # ----------------------------------------------------------------- requests

    async def _graphql(self, payload: dict[str, Any], deadline: float, start: int) -> Any:
        """One request; refused cookies with a refresh token: renew (once per poll) and resend.

        ``start`` is the session's renewal count when the attempt began.
        """
        try:
            return await self.session.graphql(payload, deadline)
        except AuthError as refused:
            if not self.session.token_mode or self.session.renewals != start:
                raise
            log.debug("cookies refused (%s); renewing them with the refresh token", refused)
            await self.session.renew(deadline, "Amazon refused the cookies")
        return await self.session.graphql(payload, deadline)

    async def _state(self, deadline: float, start: int) -> CollectResult:
        monitors = self._monitors or []
        if not monitors:
            return CollectResult(
                notes=[f"no Air Quality Monitor found on the account ({self.session.marketplace})"]
            )
        payload = {
            "operationName": "getEndpointState",
            "variables": {"endpointIds": [m.endpoint_id for m in monitors]},
            "query": STATE_QUERY,
        }
        answer = await self._graphql(payload, deadline, start)
        endpoints = endpoints_of(answer)
        names = {m.endpoint_id: m.name for m in monitors}
        only_temperature = frozenset(
            m.endpoint_id for m in monitors if m.kind == TEMPERATURE_SENSORS
        )
        result = map_state(endpoints, names, int(self._clock() * 1000), only_temperature)
        if any(isinstance(ep, dict) and ep.get("endpointId") not in names for ep in endpoints):
            log.info("Amazon answered for a device not discovered yet; rediscovering next poll")
            self._discovered_at = None
        return result

    # ----------------------------------------------------------------- discovery

    def _discovery_due(self) -> bool:
        if self._monitors is None or self._discovered_at is None:
            return True
        max_age = DISCOVERY_MAX_AGE if self._monitors else EMPTY_DISCOVERY_MAX_AGE
        return self._clock() - self._discovered_at >= max_age

    async def _discover(self, deadline: float, start: int) -> None:
        payload = {"operationName": "getHomepollEndpoints", "variables": {}, "query": self._query}
        answer = await self._graphql(payload, deadline, start)
        monitors, ignored = parse_discovery(answer, self._settings.include)
        self._monitors = monitors
        self._discovered_at = self._clock()
        if ignored:
            log.info(
                "ignoring %d device(s) that are not Amazon's own monitors: %s",
                len(ignored),
                "; ".join(ignored),
            )
        if monitors:
            others = sum(1 for m in monitors if m.kind == TEMPERATURE_SENSORS)
            log.info(
                "found %d Air Quality Monitor(s)%s: %s",
                len(monitors) - others,
                f" and {others} other temperature source(s)" if others else "",
                ", ".join(m.name for m in monitors),
            )
        else:
            log.warning(
                "Amazon lists no Air Quality Monitor on this account. That usually means a wrong "
                "marketplace (homepoll uses %s; set collectors.amazon_aqm.domain to the "
                "amazon.<tld> the monitor is registered on) or a missing/stale csrf cookie",
                self.session.marketplace,
            )
