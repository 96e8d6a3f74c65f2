"""Amazon Smart Air Quality Monitor collector, via Amazon's private Alexa GraphQL API.

The API is undocumented (facts: shared/reference/amazon_aqm.md), authenticates with a
browser session's cookies that expire every few days, and reports failures in odd ways
(HTTP 200 with "Unauthenticated call", a redirect to the sign-in page, throttling without
Retry-After). This module's job is to turn each of those into the error taxonomy, so the
retry policy and the alert file do the right thing, and to map the answer into Readings.
No cookie value ever appears in a message: they are the account's keys.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from http.cookiejar import CookieJar, DefaultCookiePolicy
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from homepoll.config import AmazonAqmSettings
from homepoll.cookies import load_cookie_file, missing_required
from homepoll.errors import AuthError, PermanentError, RateLimitedError, TransientError
from homepoll.model import CollectResult, Reading

__all__ = ["DISCOVERY_QUERY", "STATE_QUERY", "AmazonAqmCollector", "Monitor"]

log = logging.getLogger("homepoll.collectors.amazon_aqm")

SOURCE = "amazon_aqm"
GRAPHQL_PATH = "/nexus/v1/graphql"
MAX_RESPONSE_BYTES = 5_000_000
DISCOVERY_MAX_AGE = 86_400.0  # seconds: a monitor added to the account shows up within a day
EMPTY_DISCOVERY_MAX_AGE = 3_600.0  # an empty account is re-checked hourly (one warning each)
USER_AGENT = (
    "Mozilla/5.0 (X11; Linux aarch64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0 Safari/537.36 homepoll/0.1"
)

DISCOVERY_QUERY = """query getAirQualityMonitors {
  listEndpoints(
    listEndpointsInput: {displayCategory: "AIR_QUALITY_MONITOR", includeHouseholdDevices: true}
  ) {
    endpoints {
      endpointId: id
      friendlyNameObject { value { text } }
      serialNumber { value { text } }
      manufacturer { value { text } }
    }
  }
}"""

STATE_QUERY = """query getEndpointState($endpointIds: [String]!) {
  listEndpoints(
    listEndpointsInput: {
      latencyTolerance: LOW, endpointIds: $endpointIds, includeHouseholdDevices: true
    }
  ) {
    endpoints {
      endpointId: id
      friendlyNameObject { value { text } }
      features {
        name
        instance
        properties {
          name
          error { type message }
          __typename
          ... on RangeValue { rangeValue { value } timeOfSample timeOfLastChange }
          ... on TemperatureSensor { value { value scale } timeOfSample timeOfLastChange }
          ... on Reachability { reachabilityStatusValue timeOfSample }
        }
      }
    }
  }
}"""

# metric, unit by range instance (fallback) and by friendly-name asset id (preferred)
_UNITS = {
    "humidity": "%",
    "voc": "index",
    "pm25": "ug/m3",
    "pm10": "ug/m3",
    "co": "ppm",
    "iaq": "index",
    "temperature": "degC",
    "reachable": "bool",
}
_BY_INSTANCE = {"4": "humidity", "5": "voc", "6": "pm25", "7": "pm10", "8": "co", "9": "iaq"}
_BY_ASSET = {
    "Alexa.AirQuality.Humidity": "humidity",
    "Alexa.AirQuality.VolatileOrganicCompounds": "voc",
    "Alexa.AirQuality.ParticulateMatter": "pm25",  # PM10 shares it: see _range_metric
    "Alexa.AirQuality.CarbonMonoxide": "co",
    "Alexa.AirQuality.IndoorAirQuality": "iaq",
}
_ASSET_RE = re.compile(r"Alexa\.AirQuality\.[A-Za-z0-9]+")

_THROTTLE_MARKERS = ("rate exceeded", "throttlingexception", "too many requests")
_THROTTLE_CODES = {"UNOFFICIAL_CLIENT_TOO_MANY_REQUESTS", "TOO_MANY_REQUESTS", "THROTTLED"}
_AUTH_CODES = {"FORBIDDEN", "UNAUTHENTICATED", "UNAUTHORIZED"}


@dataclass(frozen=True)
class Monitor:
    """One Air Quality Monitor on the account, as discovery reports it."""

    endpoint_id: str
    name: str
    serial: str | None = None


class AmazonAqmCollector:
    """Reads every Air Quality Monitor on the account: one GraphQL state request per poll.

    Discovery runs on the first poll, then once a day (hourly while it finds none), when
    the state answer names a monitor it does not know, and when the cookies change
    (maybe another account). So a poll costs one request, two when discovery is due.
    The cookie file is re-read whenever it changes on disk, so ``homepoll amazon-cookies``
    fixes an expired session without a restart.
    """

    name = SOURCE
    alert_file = "ALERT_TOKEN_REFRESH_NEEDED.txt"

    def __init__(
        self, settings: AmazonAqmSettings, *, clock: Callable[[], float] = time.time
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._url = settings.base_url.rstrip("/") + GRAPHQL_PATH
        self._referer = settings.base_url.rstrip("/") + "/spa/index.html"
        self._client: httpx.AsyncClient | None = None
        self._cookies: dict[str, str] | None = None
        self._cookie_stamp: tuple[int, int, int] | None = None
        self._monitors: list[Monitor] | None = None
        self._discovered_at: float | None = None
        self.alert_remedy = (
            "Amazon no longer accepts the saved Alexa web session (the cookies expire every few "
            f"days). To refresh it: sign in to https://alexa.{settings.domain} in a desktop "
            "browser, export the cookies for that site with a cookie-export extension (JSON) or "
            "copy the Cookie header from the browser's network tab, copy that file to this "
            "machine and run `homepoll amazon-cookies FILE`. It writes "
            f"{settings.cookies_file} (mode 0600) and tests the cookies; the running daemon "
            "picks the new file up on its next poll, no restart needed."
        )

    # ----------------------------------------------------------------- public API

    async def collect(self, timeout: float) -> CollectResult:
        """One attempt: (re)discover if due, then one state request for all monitors."""
        deadline = time.monotonic() + timeout
        cookies = await asyncio.to_thread(self._load_cookies)  # never block the loop
        if self._discovery_due():
            await self._discover(cookies, deadline)
        monitors = self._monitors or []
        if not monitors:
            domain = self._settings.domain
            return CollectResult(
                notes=[f"no Air Quality Monitor found on the account (marketplace {domain})"]
            )
        answer = await self._post(
            cookies,
            {
                "operationName": "getEndpointState",
                "variables": {"endpointIds": [m.endpoint_id for m in monitors]},
                "query": STATE_QUERY,
            },
            deadline,
        )
        endpoints = _endpoints(answer)
        result = self._map(endpoints, poll_ms=int(self._clock() * 1000))
        known = {m.endpoint_id for m in monitors}
        if any(isinstance(ep, dict) and ep.get("endpointId") not in known for ep in endpoints):
            log.info("Amazon answered for a monitor not discovered yet; rediscovering next poll")
            self._discovered_at = None
        return result

    async def discover(self, timeout: float = 10.0) -> list[Monitor]:
        """The monitors on the account (one request); raises the taxonomy errors."""
        cookies = await asyncio.to_thread(self._load_cookies)  # never block the loop
        await self._discover(cookies, time.monotonic() + timeout)
        return list(self._monitors or [])

    def _map(self, endpoints: list[Any], poll_ms: int) -> CollectResult:
        names = {m.endpoint_id: m.name for m in self._monitors or []}
        return _collector_map(endpoints, names, poll_ms)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    # ----------------------------------------------------------------- cookies

    def _load_cookies(self) -> dict[str, str]:
        """The cookie jar, re-read when the file's mtime, size or inode changed.

        Runs in a worker thread; only a regular file of sane size is read (a FIFO or a
        /dev/zero link is this collector's auth alert with the reason, never a hang).
        """
        path = Path(self._settings.cookies_file)
        try:
            st = os.stat(path)
        except OSError as exc:
            raise AuthError(
                f"cannot read the Amazon cookies file {path}: "
                f"{exc.strerror or type(exc).__name__}; "
                "run `homepoll amazon-cookies FILE` to create it"
            ) from None
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        if self._cookies is not None and stamp == self._cookie_stamp:
            return self._cookies
        try:
            cookies = load_cookie_file(path)
        except OSError as exc:
            raise AuthError(
                f"cannot read the Amazon cookies file {path}: {exc.strerror or type(exc).__name__}"
            ) from None
        except ValueError as exc:
            raise AuthError(f"the Amazon cookies file {path} is invalid: {exc}") from None
        _register_secrets(cookies.values())
        missing = missing_required(cookies)
        if missing:
            raise AuthError(
                f"the {' and '.join(missing)} cookie is missing from the Amazon cookies file "
                f"{path} (Amazon needs it echoed as a header); export all cookies of "
                f"https://alexa.{self._settings.domain} again"
            )
        if self._cookies is not None:
            log.info("Amazon cookies file %s changed: using the new cookies", path)
            self._discovered_at = None  # maybe another account: find its monitors again
        self._cookies, self._cookie_stamp = cookies, stamp
        return cookies

    # ----------------------------------------------------------------- discovery

    def _discovery_due(self) -> bool:
        if self._monitors is None or self._discovered_at is None:
            return True
        max_age = DISCOVERY_MAX_AGE if self._monitors else EMPTY_DISCOVERY_MAX_AGE
        return self._clock() - self._discovered_at >= max_age

    async def _discover(self, cookies: Mapping[str, str], deadline: float) -> None:
        answer = await self._post(
            cookies,
            {"operationName": "getAirQualityMonitors", "variables": {}, "query": DISCOVERY_QUERY},
            deadline,
        )
        monitors = []
        for ep in _endpoints(answer):
            endpoint_id = ep.get("endpointId") if isinstance(ep, dict) else None
            if not isinstance(endpoint_id, str) or not endpoint_id:
                log.debug("discovery: skipping an endpoint without an id")
                continue
            monitors.append(
                Monitor(
                    endpoint_id,
                    _text(ep.get("friendlyNameObject")) or endpoint_id,
                    _text(ep.get("serialNumber")),
                )
            )
        self._monitors = monitors
        self._discovered_at = self._clock()
        if monitors:
            log.info(
                "found %d Air Quality Monitor(s): %s",
                len(monitors),
                ", ".join(m.name for m in monitors),
            )
        else:
            log.warning(
                "Amazon lists no Air Quality Monitor on this account. That usually means a wrong "
                "marketplace (collectors.amazon_aqm.domain is %s: use the amazon.<tld> the monitor "
                "is registered on) or a missing/stale csrf cookie in %s",
                self._settings.domain,
                self._settings.cookies_file,
            )

    # ----------------------------------------------------------------- HTTP

    def _client_for(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                follow_redirects=False,  # a followed sign-in redirect would hide the auth failure
                verify=True,
                # cookies travel in our own header; never keep what Amazon sets
                cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])),
            )
        return self._client

    async def _post(self, cookies: Mapping[str, str], payload: object, deadline: float) -> Any:
        """POST one GraphQL body; return the decoded JSON of a usable answer or raise."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TransientError("no time left in this attempt for the Amazon request")
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "Referer": self._referer,
            "User-Agent": USER_AGENT,
            "csrf": cookies["csrf"],
            "Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items()),
        }
        client = self._client_for()
        host = urlsplit(self._url).netloc
        try:
            async with client.stream(
                "POST",
                self._url,
                content=json.dumps(payload).encode(),
                headers=headers,
                timeout=httpx.Timeout(remaining),
            ) as response:
                body = await _read_capped(response)
        except httpx.TimeoutException:
            raise TransientError(
                f"Amazon ({host}) did not answer within {remaining:.3g} s"
            ) from None
        except httpx.ConnectError as exc:
            raise TransientError(
                _scrub(f"cannot connect to {host}: {_short(str(exc))}", cookies)
            ) from None
        except (httpx.NetworkError, httpx.RemoteProtocolError) as exc:
            raise TransientError(
                f"connection to {host} failed: {type(exc).__name__}"
                + (f" ({_scrub(_short(str(exc)), cookies)})" if str(exc) else "")
            ) from None
        except httpx.HTTPError as exc:  # invalid URL, unsupported protocol, local protocol error
            raise PermanentError(f"request to {host} failed: {type(exc).__name__}") from None
        return _classify(response, body, cookies)


async def _read_capped(response: httpx.Response) -> bytes:
    chunks: list[bytes] = []
    total = 0
    async for chunk in response.aiter_bytes():
        total += len(chunk)
        if total > MAX_RESPONSE_BYTES:
            chunks.clear()  # a traceback kept anywhere (a log record) must not pin 5 MB
            raise PermanentError(
                f"Amazon's answer is larger than {MAX_RESPONSE_BYTES // 1_000_000} MB; giving up"
            )
        chunks.append(chunk)
    return b"".join(chunks)


def _classify(response: httpx.Response, body: bytes, cookies: Mapping[str, str]) -> Any:
    """Turn one HTTP answer into decoded JSON or the matching taxonomy error."""
    status = response.status_code
    text = body.decode("utf-8", "replace")
    if 300 <= status < 400:
        where = _strip_query(response.headers.get("location", ""))
        if "/ap/signin" in where:
            raise AuthError(
                f"Amazon redirected to the sign-in page ({where}): the cookies have expired"
            )
        raise AuthError(
            f"Amazon answered HTTP {status} redirecting to {where or 'nowhere'} instead of "
            "answering: the cookies have probably expired"
        )
    if status in (401, 403, 407):
        raise AuthError(
            f"Amazon rejected the cookies (HTTP {status}): they have expired or are invalid"
        )
    if status == 429:
        raise RateLimitedError("Amazon is throttling requests (HTTP 429)", retry_after=None)
    if status >= 500:
        raise TransientError(f"Amazon answered HTTP {status}")
    if status != 200 and _throttled_text(text):
        raise RateLimitedError(
            f"Amazon is throttling requests (HTTP {status}: {_scrub(_short(text), cookies)})",
            retry_after=None,
        )
    if status != 200:
        raise PermanentError(f"Amazon answered HTTP {status}: {_scrub(_short(text), cookies)}")
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        snippet = text.lstrip()[:2000].lower()
        if snippet.startswith("<") and (
            "signin" in snippet or "sign-in" in snippet or "sign in" in snippet
        ):
            raise AuthError(
                "Amazon answered with its sign-in page instead of JSON: the cookies have expired"
            ) from None
        if _throttled_text(text):
            raise RateLimitedError("Amazon is throttling requests", retry_after=None) from None
        raise TransientError(
            "Amazon answered with something that is not JSON (a proxy or captive portal?)"
        ) from None
    for item in data if isinstance(data, list) else [data]:
        _check_graphql_errors(item, cookies)
    return data


def _check_graphql_errors(item: object, cookies: Mapping[str, str]) -> None:
    """Raise for the GraphQL ``errors`` Amazon uses to say "not authenticated" or "slow down"."""
    if not isinstance(item, dict):
        return
    errors = item.get("errors")
    if not errors:
        return
    if not isinstance(errors, list):
        errors = [errors]
    messages = []
    for error in errors:
        if not isinstance(error, dict):
            messages.append(str(error))
            continue
        message = str(error.get("message") or "")
        ext = error.get("extensions")
        code = str(ext.get("errorCode") or ext.get("code") or "") if isinstance(ext, dict) else ""
        if message.strip().lower() == "unauthenticated call" or code.upper() in _AUTH_CODES:
            raise AuthError(
                f"Amazon refused the session ({message or code}): "
                "the cookies have expired or are invalid"
            )
        if code.upper() in _THROTTLE_CODES or _throttled_text(message):
            raise RateLimitedError(
                f"Amazon is throttling requests ({code or _short(message)})", retry_after=None
            )
        messages.append(f"{message} [{code}]" if code else message)
    if item.get("data") is None:
        raise PermanentError(
            "Amazon answered with an error: " + _scrub(_short("; ".join(messages)), cookies)
        )
    log.debug("Amazon answered with data and errors: %s", _short("; ".join(messages)))


def _endpoints(answer: Any) -> list[Any]:
    """``data.listEndpoints.endpoints`` of a (possibly batched) answer, or PermanentError."""
    item = answer[0] if isinstance(answer, list) and answer else answer
    data = item.get("data") if isinstance(item, dict) else None
    listing = data.get("listEndpoints") if isinstance(data, dict) else None
    endpoints = listing.get("endpoints") if isinstance(listing, dict) else None
    if not isinstance(endpoints, list):
        shape = sorted(item)[:8] if isinstance(item, dict) else type(item).__name__
        raise PermanentError(
            _short(
                "unknown answer shape from Amazon "
                f"(expected data.listEndpoints.endpoints, got {shape})"
            )
        )
    return endpoints


# --------------------------------------------------------------------- mapping


class _Mapper:
    """Features of one endpoint -> Readings; per-value problems are skipped and counted."""

    def __init__(self, device_id: str, name: str, poll_ms: int) -> None:
        self.device_id, self.name, self.poll_ms = device_id, name, poll_ms
        self.readings: list[Reading] = []
        self.skipped = 0

    def add(self, metric: str, value: float, ts: int, on_change: bool = False) -> None:
        if any(r.metric == metric for r in self.readings):
            return  # a duplicated feature: keep the first
        self.readings.append(
            Reading(SOURCE, self.device_id, self.name, metric, _UNITS[metric], ts, value, on_change)
        )

    def feature(self, feature: dict[str, Any], metric: str) -> None:
        prop = _value_property(feature, metric)
        if prop is None or prop.get("error"):
            self.skipped += 1
            return
        value = _temperature(prop) if metric == "temperature" else _range_value(prop)
        if value is None:
            log.debug("%s %s: no usable value in the answer", self.name, metric)
            self.skipped += 1
            return
        self.add(metric, value, _ts_ms(prop.get("timeOfSample")) or self.poll_ms)


def _metric_of(feature: dict[str, Any]) -> str | None:
    """The metric a feature carries, or None for features homepoll does not store."""
    kind = feature.get("name")
    if kind == "temperatureSensor":
        return "temperature"
    if kind == "range":
        return _range_metric(feature)
    return None


def _value_property(feature: dict[str, Any], metric: str) -> dict[str, Any] | None:
    props = [p for p in feature.get("properties") or [] if isinstance(p, dict)]
    wanted = "temperature" if metric == "temperature" else "rangeValue"
    for prop in props:
        if prop.get("name") == wanted:
            return prop
    return props[0] if props else None


def _reachability(features: list[dict[str, Any]]) -> bool | None:
    for feature in features:
        if feature.get("name") != "connectivity":
            continue
        for prop in feature.get("properties") or []:
            if (
                isinstance(prop, dict)
                and "reachabilityStatusValue" in prop
                and not prop.get("error")
            ):
                return prop.get("reachabilityStatusValue") == "OK"
    return None


def _range_metric(feature: dict[str, Any]) -> str | None:
    """Map by the friendly name's asset id when present, else by the instance number."""
    instance = str(feature.get("instance") or "").strip()
    found = _ASSET_RE.findall(json.dumps({k: v for k, v in feature.items() if k != "properties"}))
    for asset in found:
        metric = _BY_ASSET.get(asset)
        if metric == "pm25" and (instance == "7" or "10" in asset):
            return "pm10"
        if metric:
            return metric
    return _BY_INSTANCE.get(instance)


def _range_value(prop: dict[str, Any]) -> float | None:
    holder = prop.get("rangeValue")
    value = holder.get("value") if isinstance(holder, dict) else holder
    return _number(value)


def _temperature(prop: dict[str, Any]) -> float | None:
    holder = prop.get("value")
    if not isinstance(holder, dict):
        return None
    value = _number(holder.get("value"))
    if value is None:
        return None
    scale = str(holder.get("scale") or "CELSIUS").upper()
    if scale == "FAHRENHEIT":
        return round((value - 32) * 5 / 9, 2)
    if scale == "KELVIN":
        return round(value - 273.15, 2)
    return value


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if number == number and abs(number) != float("inf") else None


def _ts_ms(text: object) -> int | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    return int(moment.timestamp() * 1000)


def _text(holder: object) -> str | None:
    """``{"value": {"text": ...}}`` -> text."""
    value = holder.get("value") if isinstance(holder, dict) else None
    text = value.get("text") if isinstance(value, dict) else None
    return text if isinstance(text, str) and text else None


def _collector_map(endpoints: list[Any], names: Mapping[str, str], poll_ms: int) -> CollectResult:
    result = CollectResult()
    for ep in endpoints:
        if not isinstance(ep, dict) or not isinstance(ep.get("endpointId"), str):
            raise PermanentError("unknown answer shape from Amazon (an endpoint without an id)")
        device_id = ep["endpointId"]
        name = _text(ep.get("friendlyNameObject")) or names.get(device_id) or device_id
        features = [f for f in ep.get("features") or [] if isinstance(f, dict)]
        mapper = _Mapper(device_id, name, poll_ms)
        reachable = _reachability(features)
        if reachable is not None:
            mapper.add("reachable", 1.0 if reachable else 0.0, poll_ms, on_change=True)
        if reachable is False:
            mapper.skipped += sum(1 for f in features if _metric_of(f) is not None)
            log.info("Air Quality Monitor %s is unreachable: its values are skipped", name)
        else:
            for feature in features:
                metric = _metric_of(feature)
                if metric is not None:
                    mapper.feature(feature, metric)
        result.readings.extend(mapper.readings)
        result.skipped += mapper.skipped
    return result


# --------------------------------------------------------------------- helpers


def _throttled_text(text: str) -> bool:
    lowered = text.lower()
    return any(marker in lowered for marker in _THROTTLE_MARKERS)


def _strip_query(url: str) -> str:
    """A redirect target without query or fragment (sign-in URLs carry session details)."""
    if not url:
        return ""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}" if parts.netloc else parts.path


def _short(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _scrub(text: str, cookies: Mapping[str, str]) -> str:
    """Belt and braces: no cookie value may survive into a message, whatever echoed it."""
    for value in cookies.values():
        if len(value) >= 4:
            text = text.replace(value, "***")
    return text


def _register_secrets(values: Iterable[str]) -> None:
    """Have the log handlers redact cookie values (logs.py may not exist in every build)."""
    try:
        from homepoll.logs import register_secret
    except ImportError:
        return
    for value in values:
        if len(value) >= 4:
            register_secret(value)
