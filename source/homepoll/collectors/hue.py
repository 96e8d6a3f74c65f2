"""Philips Hue bridge (API v1) sensors through phue, with phue's pitfalls fixed.

phue 1.1 hard-codes a 10 s socket timeout, never checks the HTTP status, hands every
body to ``json.loads`` and logs the key (``Using username: ...``, URLs at DEBUG,
tracebacks on timeouts). ``_HueBridge`` keeps phue's API but replaces ``connect()`` and
``request()`` so that each call honours the attempt's timeout, every outcome maps to the
error taxonomy, and the key never reaches a log line or an exception message.
"""

from __future__ import annotations

import asyncio
import functools
import http.client
import json
import logging
import math
import os
import socket
import time
import warnings
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from homepoll.config import HueSettings
from homepoll.errors import (
    AuthError,
    CollectorError,
    PermanentError,
    PollTimeout,
    RateLimitedError,
    TransientError,
)
from homepoll.model import CollectResult, Reading

with warnings.catch_warnings():
    # phue 1.1 compares with a literal using "is not" (SyntaxWarning when compiled).
    warnings.simplefilter("ignore", SyntaxWarning)
    import phue

log = logging.getLogger("homepoll.collectors.hue")

SOURCE = "hue"
MAX_BODY = 5_000_000
"""Largest answer read from the bridge; a real sensors list is tens of kB."""

PAIR_WINDOW = 30.0
"""Seconds a link-button press allows pairing (Hue API v1)."""

_CHUNK = 65536
_DEVICE_ID_LEN = 23  # "00:17:88:01:02:03:04:05": the MAC part of a uniqueid

# Hue type -> (metric, unit, state field)
_MAPPED = {
    "ZLLPresence": ("presence", "bool", "presence"),
    "ZLLLightLevel": ("light_level", "lux", "lightlevel"),
    "ZLLTemperature": ("temperature", "degC", "temperature"),
}

ALERT_REMEDY = (
    "The Hue bridge no longer accepts homepoll's key (it was deleted in the Hue app, or the "
    "bridge was reset). To fix it:\n"
    "  1. Press the round link button on top of the Hue bridge.\n"
    "  2. Within 30 seconds run:  homepoll hue-pair --bridge {bridge}\n"
    "     (add --config PATH if homepoll runs with a config file elsewhere). It saves the new\n"
    "     key to the Hue key file (collectors.hue.username_file).\n"
    "  3. Run:  sudo systemctl reload homepoll\n"
    "     (or restart it) so the running daemon reads the new key.\n"
    "This file disappears by itself after the next successful Hue poll."
)


# --------------------------------------------------------------------------- HTTP


def _redact(text: str, secret: str | None) -> str:
    return text.replace(secret, "***") if secret else text


def _retry_after(value: str | None) -> float | None:
    """Seconds from a numeric Retry-After header; None when absent or not a number."""
    try:
        seconds = float(value) if value is not None else math.nan
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def _remaining(deadline: float, bridge: str, timeout: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise PollTimeout(f"bridge {bridge} did not answer within {timeout:g} s")
    return left


class _DeadlineSocket(socket.socket):
    """A socket whose every read may use only the time left before one overall deadline.

    A socket timeout bounds each ``recv``, not the exchange: a server that drips its answer a
    byte at a time never trips it, and http.client's buffered reads (headers line by line, the
    body in chunks) would keep the worker thread for hours after the poll gave up. Those
    threads are the loop's few shared workers (status and alert writes use them too).
    """

    __slots__ = ("deadline",)

    def recv_into(self, buffer, nbytes=0, flags=0):  # type: ignore[override]
        self._before_read()
        return super().recv_into(buffer, nbytes, flags)

    def recv(self, bufsize, flags=0):  # type: ignore[override]
        self._before_read()
        return super().recv(bufsize, flags)

    def _before_read(self) -> None:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("timed out")
        self.settimeout(left)


def _deadline_connection(
    deadline: float,
    address: tuple[str, int],
    timeout: float,
    source_address: tuple[str, int] | None = None,
) -> socket.socket:
    """``socket.create_connection`` returning a ``_DeadlineSocket`` (http.client's hook)."""
    plain = socket.create_connection(address, timeout, source_address)
    try:
        sock = _DeadlineSocket(plain.family, plain.type, plain.proto, fileno=plain.detach())
    except BaseException:
        plain.close()
        raise
    sock.deadline = deadline
    sock.settimeout(timeout)
    return sock


def _check_status(response: http.client.HTTPResponse, bridge: str) -> None:
    """Map a non-2xx HTTP status to the taxonomy; the bridge answers errors as 200 + list."""
    status = response.status
    if 200 <= status < 300:
        return
    if status == 429:
        retry_after = _retry_after(response.getheader("Retry-After"))
        raise RateLimitedError(
            f"bridge {bridge} answered HTTP 429 (too many requests)", retry_after
        )
    if status == 503:
        retry_after = _retry_after(response.getheader("Retry-After"))
        raise RateLimitedError(f"bridge {bridge} answered HTTP 503 (overloaded)", retry_after)
    if 300 <= status < 400:
        # Never quote Location: it repeats the path, which contains the key.
        location = (response.getheader("Location") or "").lower()
        if location.startswith("https:") or not location:
            raise PermanentError(
                f"bridge {bridge} answered HTTP {status} with a redirect to HTTPS: it is an "
                "HTTPS-only bridge (such as the Hue Bridge Pro) that the Hue API v1 / phue path "
                "cannot speak"
            )
        raise PermanentError(
            f"bridge {bridge} answered HTTP {status} (a redirect); homepoll speaks plain-HTTP "
            "Hue API v1 only and does not follow redirects (an HTTPS-only bridge?)"
        )
    if status >= 500 or status == 408:
        raise TransientError(f"bridge {bridge} answered HTTP {status}")
    raise PermanentError(f"bridge {bridge} answered HTTP {status}")


def _read_capped(
    response: http.client.HTTPResponse,
    conn: http.client.HTTPConnection,
    deadline: float,
    bridge: str,
    timeout: float,
) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        if conn.sock is not None:
            conn.sock.settimeout(_remaining(deadline, bridge, timeout))
        chunk = response.read(_CHUNK)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > MAX_BODY:
            chunks.clear()  # a traceback kept anywhere (a log record) must not pin 5 MB
            raise PermanentError(f"bridge {bridge} sent an answer larger than {MAX_BODY} bytes")
        chunks.append(chunk)


def http_json(
    bridge: str,
    method: str,
    path: str,
    data: Any = None,
    *,
    timeout: float,
    secret: str | None = None,
) -> Any:
    """One HTTP exchange with the bridge, returning the decoded JSON body.

    ``timeout`` bounds the whole exchange (connect, answer, body), not each socket
    operation. Every failure becomes a taxonomy error whose message names the bridge
    but never ``path`` (it contains the key) nor ``secret``.
    """
    deadline = time.monotonic() + timeout
    conn: http.client.HTTPConnection | None = None
    try:
        try:
            conn = http.client.HTTPConnection(bridge, timeout=timeout)
            conn._create_connection = functools.partial(_deadline_connection, deadline)  # type: ignore[attr-defined]
            conn.connect()
        except TimeoutError:
            raise PollTimeout(
                f"bridge {bridge} did not accept a connection within {timeout:g} s"
            ) from None
        try:
            body = None if data is None else json.dumps(data).encode()
            headers = {"Content-Type": "application/json"} if body is not None else {}
            conn.request(method, path, body=body, headers=headers)
            assert conn.sock is not None
            conn.sock.settimeout(_remaining(deadline, bridge, timeout))
            response = conn.getresponse()
            try:
                _check_status(response, bridge)
                raw = _read_capped(response, conn, deadline, bridge, timeout)
            finally:
                response.close()
        except TimeoutError:
            raise PollTimeout(f"bridge {bridge} did not answer within {timeout:g} s") from None
    except CollectorError:
        raise
    except ConnectionRefusedError:
        raise TransientError(f"bridge {bridge} refused the connection") from None
    except http.client.RemoteDisconnected:
        raise TransientError(f"bridge {bridge} closed the connection without answering") from None
    except ConnectionResetError:
        raise TransientError(f"bridge {bridge} reset the connection") from None
    except socket.gaierror:
        raise TransientError(f"cannot resolve the bridge's host name {bridge}") from None
    except http.client.InvalidURL:
        # str(exc) may quote the request path, which contains the key.
        raise PermanentError(
            f"cannot build a request for bridge {bridge!r} (bad address, or the Hue key "
            "contains spaces or control characters)"
        ) from None
    except UnicodeError:
        raise PermanentError("the Hue key contains characters that cannot be sent") from None
    except http.client.HTTPException as exc:
        raise TransientError(
            f"bridge {bridge} sent a malformed HTTP answer ({type(exc).__name__})"
        ) from None
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise TransientError(f"cannot reach bridge {bridge}: {reason}") from None
    finally:
        if conn is not None:
            conn.close()
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise TransientError(f"bridge {bridge} sent a non-JSON answer") from None


class _HueBridge(phue.Bridge):
    """phue's Bridge with a per-attempt timeout, HTTP status checks and no key in logs.

    One instance per attempt: an abandoned attempt's worker thread keeps its own timeout.
    """

    def __init__(self, bridge: str, username: str, timeout: float) -> None:
        self.timeout = timeout
        # config_file_path explicitly: phue must never read or write ~/.python_hue.
        super().__init__(ip=bridge, username=username, config_file_path=os.devnull)

    def connect(self) -> None:
        """phue's version only logs ``Using username: <key>`` when ip and username are given."""

    def request(self, mode: str = "GET", address: str | None = None, data: Any = None) -> Any:
        return http_json(
            self.ip, mode, address or "/", data, timeout=self.timeout, secret=self.username
        )


def _hue_error(answer: Any) -> dict[str, Any] | None:
    """The first Hue error of a ``[{"error": {...}}]`` answer, else None."""
    if isinstance(answer, list) and answer and isinstance(answer[0], dict):
        error = answer[0].get("error")
        if isinstance(error, dict):
            return error
    return None


def _raise_hue_error(error: dict[str, Any], bridge: str, key: str | None) -> None:
    kind = error.get("type")
    description = _redact(str(error.get("description", "")), key)[:200]
    if kind == 1:
        raise AuthError("the bridge rejected homepoll's key (Hue error 1: unauthorized user)")
    if kind == 901:
        raise TransientError(f"bridge {bridge} reported an internal error (Hue error 901)")
    if kind == 3:
        raise PermanentError(
            f"bridge {bridge} says the resource is not available (Hue error 3: {description})"
        )
    raise PermanentError(f"bridge {bridge} answered Hue error {kind}: {description}")


# --------------------------------------------------------------------------- parsing


_PRESENCE = "ZLLPresence"
_EPOCH = datetime(1970, 1, 1)  # naive: Hue's lastupdated is UTC without a zone
_EPOCH_UTC = _EPOCH.replace(tzinfo=UTC)

# One sensor resource as parse_sensors groups it: a plain tuple, built once per resource.
_Resource = tuple[str, str, str, str, dict[str, Any], dict[str, Any]]  # rid type name uid st cfg
_RID, _TYPE, _NAME, _UNIQUEID, _STATE, _CONFIG = range(6)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return float(value)
    except OverflowError:  # an int too large for a float: a garbage value, skipped
        return None


def _convert(metric: str, raw: Any) -> float | None:
    if metric == "presence":
        return (1.0 if raw else 0.0) if isinstance(raw, bool) else None
    number = _number(raw)
    if number is None:
        return None
    if metric == "temperature":
        return number / 100
    try:
        return round(10 ** ((number - 1) / 10000), 2)  # light_level: lightlevel -> lux
    except OverflowError:  # a garbage lightlevel must cost one reading, not the whole poll
        return None


def _parse_lastupdated(value: Any) -> int | None:
    """Hue's ``lastupdated`` (UTC, no zone) as unix ms; None for "none" or garbage."""
    if not isinstance(value, str) or value == "none":
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    # Same value as round(moment.replace(tzinfo=UTC).timestamp() * 1000), without the copy.
    since = moment - (_EPOCH if moment.tzinfo is None else _EPOCH_UTC)
    return round(since.total_seconds() * 1000)


def _sort_key(rid: Any) -> tuple[int, str]:
    """Numeric resource ids in numeric order, then any others in text order."""
    rid = str(rid)
    # isdecimal, not isdigit: "²" is a digit that int() rejects.
    return (int(rid), "") if rid.isdecimal() else (1 << 62, rid)


def parse_sensors(
    answer: Any,
    *,
    names: dict[str, str] | None = None,
    sensors: tuple[str, ...] | list[str] = (),
    now_ms: int,
) -> CollectResult:
    """Turn a ``GET /sensors`` answer into readings grouped by physical device.

    Per-sensor problems (unreachable, never updated, null values) are skipped and
    counted, never raised; only an answer of the wrong shape raises PermanentError.
    """
    if not isinstance(answer, dict):
        raise PermanentError(
            f"the bridge's sensors answer has an unexpected shape ({type(answer).__name__})"
        )
    names = names or {}
    wanted = set(sensors)
    devices: dict[str, list[_Resource]] = {}
    for rid in sorted(answer, key=_sort_key):
        item = answer[rid]
        if not isinstance(item, dict):
            continue
        kind = item.get("type")
        if kind not in _MAPPED:
            continue  # Daylight, switches, CLIP sensors...: not ours to map
        rid = str(rid)
        uniqueid = str(item.get("uniqueid") or "")
        state = item.get("state")
        config = item.get("config")
        resource = (
            rid,
            kind,
            str(item.get("name") or f"Hue sensor {rid}"),
            uniqueid,
            state if isinstance(state, dict) else {},
            config if isinstance(config, dict) else {},
        )
        device_id = uniqueid[:_DEVICE_ID_LEN] if uniqueid else f"hue-sensor-{rid}"
        group = devices.get(device_id)
        if group is None:
            devices[device_id] = [resource]
        else:
            group.append(resource)

    result = CollectResult()
    for device_id, resources in devices.items():
        _collect_device(device_id, resources, names, wanted, now_ms, result)
    return result


def _device_override(
    device_id: str, resources: list[_Resource], presence_name: str | None, names: dict[str, str]
) -> str | None:
    """The ``names:`` entry for this device: by device id, a uniqueid, the presence resource's
    name, then any resource's name (the first key found wins, even if its value is empty)."""
    lookup = [device_id, *(r[_UNIQUEID] for r in resources)]
    if presence_name:
        lookup.append(presence_name)
    lookup += [r[_NAME] for r in resources]
    return next((names[k] for k in lookup if k and k in names), None)


def _collect_device(
    device_id: str,
    resources: list[_Resource],
    names: dict[str, str],
    wanted: set[str],
    now_ms: int,
    result: CollectResult,
) -> None:
    presence_name = None
    for resource in resources:
        if resource[_TYPE] == _PRESENCE:
            presence_name = resource[_NAME]
            break
    override = _device_override(device_id, resources, presence_name, names) if names else None
    device_name = override or presence_name

    if wanted and not wanted & {device_id, presence_name, override}:
        resources = [r for r in resources if wanted & {r[_RID], r[_NAME], r[_UNIQUEID]}]
        if not resources:
            return
    label = device_name or resources[0][_NAME]

    readings = result.readings
    skipped = 0
    # Device-level values: the battery of the presence resource first (then the others', in
    # order); reachable only when every resource that reports it says True.
    battery: Any = None
    has_battery = presence_battery = False
    has_reachable = False
    all_true = all_truthy = True
    for _rid, kind, name, _uniqueid, state, config in resources:
        if "battery" in config and (
            not has_battery or (kind == _PRESENCE and not presence_battery)
        ):
            battery = config["battery"]
            has_battery = True
            presence_battery = kind == _PRESENCE
        if "reachable" in config:
            has_reachable = True
            reachable = config["reachable"]
            if reachable is not True:
                all_true = False
                if not reachable:
                    all_truthy = False
            if reachable is False:
                skipped += 1
                continue
        metric, unit, field_name = _MAPPED[kind]
        ts = _parse_lastupdated(state.get("lastupdated"))
        value = _convert(metric, state.get(field_name))
        if ts is None or value is None:
            skipped += 1
            continue
        readings.append(Reading(SOURCE, device_id, device_name or name, metric, unit, ts, value))

    # Device-level values carry no timestamp: poll time, stored only when they change.
    if has_battery:
        level = _number(battery)
        if level is None:
            skipped += 1
        else:
            readings.append(
                Reading(SOURCE, device_id, label, "battery", "%", now_ms, level, on_change=True)
            )
    if has_reachable:
        readings.append(
            Reading(
                SOURCE,
                device_id,
                label,
                "reachable",
                "bool",
                now_ms,
                1.0 if all_true else 0.0,
                on_change=True,
            )
        )
    if skipped:
        result.skipped += skipped
        why = "unreachable" if has_reachable and not all_truthy else "no current value"
        result.notes.append(f"{label}: {skipped} value(s) skipped ({why})")


# --------------------------------------------------------------------------- collector


class HueCollector:
    """Reads every Hue sensor with one ``GET /api/<key>/sensors/`` per attempt."""

    name = "hue"
    alert_file = "ALERT_HUE_AUTH_NEEDED.txt"
    alert_remedy = ALERT_REMEDY.format(bridge="HOST")

    def __init__(self, settings: HueSettings, *, clock: Callable[[], float] = time.time) -> None:
        self._settings = settings
        self._clock = clock
        self.alert_remedy = ALERT_REMEDY.format(bridge=settings.bridge)

    def _fetch(self, key: str, timeout: float) -> Any:
        bridge = _HueBridge(self._settings.bridge, key, timeout)
        answer = bridge.get_sensor()  # no id: one request for all sensors
        error = _hue_error(answer)
        if error is not None:
            _raise_hue_error(error, self._settings.bridge, key)
        return answer

    async def collect(self, timeout: float) -> CollectResult:
        key = self._settings.username
        if not key:
            raise AuthError("no Hue key is configured: pair with homepoll hue-pair")
        try:
            answer = await asyncio.to_thread(self._fetch, key, timeout)
        except CollectorError:
            raise
        except Exception as exc:  # a phue or parsing surprise: classify, secret-free
            log.debug("unexpected %s from the Hue bridge", type(exc).__name__)
            raise PermanentError(
                f"unexpected {type(exc).__name__} talking to bridge {self._settings.bridge}: "
                f"{_redact(str(exc), key)[:200]}"
            ) from None
        return parse_sensors(
            answer,
            names=self._settings.names,
            sensors=self._settings.sensors,
            now_ms=int(self._clock() * 1000),
        )

    async def aclose(self) -> None:
        """Nothing to release: phue opens one connection per request and closes it."""


# --------------------------------------------------------------------------- pairing


def pair(
    bridge: str,
    hostname: str,
    *,
    attempts_for: float = PAIR_WINDOW,
    interval: float = 1.0,
    timeout: float = 5.0,
    on_waiting: Callable[[], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> str:
    """Register homepoll with the bridge (link button) and return the new key.

    Our own POST rather than phue's constructor registration, which writes the key
    world-readable to ~/.python_hue. Retries while the bridge answers error 101.
    """
    give_up_at = clock() + attempts_for
    body = {"devicetype": f"homepoll#{hostname}"[:40]}
    while True:
        answer = http_json(bridge, "POST", "/api", body, timeout=timeout)
        if isinstance(answer, list) and answer and isinstance(answer[0], dict):
            success = answer[0].get("success")
            if isinstance(success, dict) and isinstance(success.get("username"), str):
                return success["username"]
        error = _hue_error(answer)
        if error is None:
            raise PermanentError(f"bridge {bridge} answered the pairing request unexpectedly")
        if error.get("type") != 101:
            _raise_hue_error(error, bridge, None)
        if clock() + interval > give_up_at:
            raise AuthError(f"link button not pressed within {attempts_for:g} s")
        if on_waiting is not None:
            on_waiting()
        sleep(interval)
