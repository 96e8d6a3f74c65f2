"""A loopback stand-in for Amazon's Alexa GraphQL endpoint, serving Air Quality Monitors.

homepoll must never touch a real Amazon account in tests or the demo, yet the collector's
whole value is in how it reacts to Amazon's odd failure signals (a 200 carrying
"Unauthenticated call", a sign-in redirect, throttling without Retry-After). This server
speaks the same request and answer shapes (see shared/reference/amazon_aqm.md) over real
HTTP, checks the cookie jar and the ``csrf`` header like Amazon, and injects scripted faults.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from homepoll.simulator.faults import (
    Fault,
    FaultPlan,
    Served,
    ServedLog,
    parse_step,
    validate_script,
)
from homepoll.simulator.sockets import peer_closed, reset

__all__ = ["FAULT_KINDS", "GRAPHQL_PATH", "RANDOM_KINDS", "AqmApiSimulator"]

SOURCE = "amazon_aqm"
GRAPHQL_PATH = "/nexus/v1/graphql"

FAULT_KINDS = (
    "http_401",
    "http_403",
    "http_407",
    "signin_redirect",
    "unauthenticated",
    "forbidden",
    "too_many_requests",
    "http_429",
    "rate_exceeded",
    "http_503",
    "slow",
    "empty_endpoints",
    "unknown_shape",
    "property_error",
    "unreachable",
    "reset",
)

RANDOM_KINDS = (
    "http_503",
    "reset",
    "http_429",
    "too_many_requests",
    "rate_exceeded",
    "property_error",
    "unreachable",
)
"""What ``random(...)`` picks from by default: failures a healthy daemon rides out by itself
(auth faults would raise alerts, ``slow`` would stall a soak run)."""

_RANGE_INSTANCES = {"humidity": "4", "voc": "5", "pm25": "6", "pm10": "7", "co": "8", "iaq": "9"}
_ASSETS = {
    "humidity": "Alexa.AirQuality.Humidity",
    "voc": "Alexa.AirQuality.VolatileOrganicCompounds",
    "pm25": "Alexa.AirQuality.ParticulateMatter",
    "pm10": "Alexa.AirQuality.ParticulateMatter",
    "co": "Alexa.AirQuality.CarbonMonoxide",
    "iaq": "Alexa.AirQuality.IndoorAirQuality",
}
_MAX_BODY = 1_000_000


@dataclass(frozen=True)
class _Monitor:
    index: int
    endpoint_id: str
    name: str
    serial: str
    fahrenheit: bool


@dataclass(frozen=True)
class _Sample:
    """One monitor's measurement at one moment, as served and as homepoll should store it."""

    ts_seconds: int
    ranges: dict[str, int]
    temperature: float  # in the monitor's own scale, as served
    temperature_c: float  # what homepoll should store


class AqmApiSimulator:
    """Alexa GraphQL endpoint for ``monitors`` Air Quality Monitors on 127.0.0.1.

    ``fahrenheit_monitors`` of them (the last ones) report temperature in FAHRENHEIT.
    Measurements change every ``update_period`` seconds (at least 1 s, since
    ``timeOfSample`` has seconds resolution), computed from ``clock`` and ``seed`` so the
    same moment always gives the same values.
    """

    def __init__(
        self,
        port: int = 0,
        *,
        cookies: Mapping[str, str] | None = None,
        monitors: int = 1,
        fahrenheit_monitors: int = 0,
        update_period: float = 5.0,
        clock: Callable[[], float] = time.time,
        seed: int = 0,
    ) -> None:
        if monitors < 0 or not 0 <= fahrenheit_monitors <= monitors:
            raise ValueError("need monitors >= 0 and 0 <= fahrenheit_monitors <= monitors")
        if update_period <= 0:
            raise ValueError("update_period must be > 0")
        self._requested_port = port
        self._clock = clock
        self._seed = seed
        self._period = max(float(update_period), 1.0)
        self._rng = random.Random(f"aqm-sim:{seed}")
        self._lock = threading.Lock()
        self._cookies = dict(cookies) if cookies is not None else self._new_jar()
        self.monitors = [
            self._make_monitor(i, i >= monitors - fahrenheit_monitors) for i in range(monitors)
        ]
        self.faults = FaultPlan(RANDOM_KINDS)
        self.served = ServedLog()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._port: int | None = None
        self._thread: threading.Thread | None = None

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> AqmApiSimulator:
        if self._server is not None:
            return self
        self._stopping.clear()
        server = _Server(("127.0.0.1", self._requested_port), _Handler)
        server.simulator = self
        self._server = server
        self._port = int(server.server_address[1])
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            daemon=True,
            name=f"aqm-sim-{self.port}",
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None:
            return
        self._stopping.set()  # wakes handlers sleeping in a "slow" fault
        server.shutdown()
        if thread is not None:
            thread.join(timeout=5)
        server.close_connections()
        server.server_close()
        self._server = None
        self._thread = None

    def __enter__(self) -> AqmApiSimulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound port (kept after stop(), so a test can point a client at a dead port)."""
        if self._port is None:
            raise RuntimeError("simulator not started")
        return self._port

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """What to put in ``collectors.amazon_aqm.base_url``."""
        return f"http://{self.address}"

    # ----------------------------------------------------------------- cookies

    @property
    def valid_cookies(self) -> dict[str, str]:
        with self._lock:
            return dict(self._cookies)

    def set_cookies(self, jar: Mapping[str, str] | None = None) -> dict[str, str]:
        """Make ``jar`` (default: a fresh random one) the only valid jar: the old one now fails."""
        with self._lock:
            self._cookies = dict(jar) if jar is not None else self._new_jar()
            return dict(self._cookies)

    def cookie_header(self) -> str:
        """The valid jar as a ``Cookie`` header value."""
        return "; ".join(f"{k}={v}" for k, v in self.valid_cookies.items())

    def _new_jar(self) -> dict[str, str]:
        def token(prefix: str) -> str:
            return f"sim-{prefix}-{self._rng.getrandbits(96):024x}"

        return {
            "csrf": token("csrf"),
            "session-id": token("sid"),
            "ubid-main": token("ubid"),
            "at-main": token("at"),
            "session-token": token("st"),
        }

    def _authorized(self, cookie_header: str, csrf_header: str) -> bool:
        sent: dict[str, str] = {}
        for part in cookie_header.split(";"):
            name, _, value = part.strip().partition("=")
            sent[name] = value
        jar = self.valid_cookies
        return all(sent.get(k) == v for k, v in jar.items()) and csrf_header == jar.get("csrf")

    # ----------------------------------------------------------------- values

    def _make_monitor(self, index: int, fahrenheit: bool) -> _Monitor:
        uid = f"{self._rng.getrandbits(128):032x}"
        endpoint = (
            f"amzn1.alexa.endpoint.sim-{uid[:8]}-{uid[8:12]}-{uid[12:16]}-{uid[16:20]}-{uid[20:]}"
        )
        return _Monitor(
            index=index,
            endpoint_id=endpoint,
            name=f"Air monitor {index + 1}" + (" (F)" if fahrenheit else ""),
            serial=f"GAQM{self._rng.randrange(10**11):011d}",
            fahrenheit=fahrenheit,
        )

    def sample(self, monitor: _Monitor, now: float | None = None) -> _Sample:
        """The monitor's measurement current at ``now`` (default: the clock)."""
        now = self._clock() if now is None else now
        step = math.floor(now / self._period)
        rng = random.Random(f"{self._seed}:{monitor.index}:{step}")
        phase = monitor.index * 1.7

        def wave(
            center: float, amplitude: float, speed: float, noise: float, lo: int, hi: int
        ) -> int:
            value = center + amplitude * math.sin(step / speed + phase) + rng.uniform(-noise, noise)
            return int(min(hi, max(lo, round(value))))

        pm25 = wave(12, 9, 6, 2, 1, 30)
        ranges = {
            "humidity": wave(45, 12, 7, 2, 30, 60),
            "voc": wave(15, 12, 5, 3, 0, 40),
            "pm25": pm25,
            "pm10": int(min(40, max(2, pm25 + rng.randint(1, 10)))),
            "co": wave(1, 1.2, 4, 0.5, 0, 3),
            "iaq": wave(85, 12, 8, 3, 60, 100),
        }
        celsius = round(21 + 1.5 * math.sin(step / 9 + phase) + rng.uniform(-0.2, 0.2), 2)
        if monitor.fahrenheit:
            served = round(celsius * 9 / 5 + 32, 1)
            stored = round((served - 32) * 5 / 9, 2)
        else:
            served = stored = celsius
        return _Sample(int(step * self._period), ranges, served, stored)

    # ----------------------------------------------------------------- GraphQL

    def _discovery_answer(self, fault: Fault | None) -> dict[str, Any]:
        endpoints = []
        if not (fault and fault.kind == "empty_endpoints"):
            endpoints = [
                {
                    "endpointId": m.endpoint_id,
                    "friendlyNameObject": {"value": {"text": m.name}},
                    "serialNumber": {"value": {"text": m.serial}},
                    "manufacturer": {"value": {"text": "Amazon"}},
                }
                for m in self.monitors
            ]
        return _wrap(endpoints)

    def _state_answer(
        self, ids: list[str], fault: Fault | None, served: list[Served]
    ) -> dict[str, Any]:
        if fault and fault.kind == "empty_endpoints":
            return _wrap([])
        wanted = [m for m in self.monitors if m.endpoint_id in ids]
        error_metric = str(fault.params.get("metric", "pm25")) if fault else ""
        endpoints = []
        for position, monitor in enumerate(wanted):
            sample = self.sample(monitor)
            iso = datetime.fromtimestamp(sample.ts_seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            reachable = not (fault and fault.kind == "unreachable" and position == 0)
            broken = (
                error_metric if fault and fault.kind == "property_error" and position == 0 else ""
            )
            features: list[dict[str, Any]] = [
                {
                    "name": "temperatureSensor",
                    "instance": None,
                    "properties": [
                        _prop(
                            "temperature",
                            "TemperatureSensor",
                            iso,
                            broken == "temperature",
                            value={
                                "value": sample.temperature,
                                "scale": "FAHRENHEIT" if monitor.fahrenheit else "CELSIUS",
                            },
                        )
                    ],
                }
            ]
            for metric, instance in _RANGE_INSTANCES.items():
                features.append(
                    {
                        "name": "range",
                        "instance": instance,
                        "properties": [
                            _prop(
                                "rangeValue",
                                "RangeValue",
                                iso,
                                broken == metric,
                                rangeValue={"value": sample.ranges[metric]},
                            )
                        ],
                    }
                )
            features.append(
                {
                    "name": "connectivity",
                    "instance": None,
                    "properties": [
                        {
                            "name": "reachability",
                            "__typename": "Reachability",
                            "error": None,
                            "reachabilityStatusValue": "OK" if reachable else "UNREACHABLE",
                            "timeOfSample": iso,
                        }
                    ],
                }
            )
            endpoints.append(
                {
                    "endpointId": monitor.endpoint_id,
                    "friendlyNameObject": {"value": {"text": monitor.name}},
                    "features": features,
                }
            )
            if reachable:
                ts = sample.ts_seconds * 1000
                values = {**sample.ranges, "temperature": sample.temperature_c}
                served.extend(
                    Served(SOURCE, monitor.endpoint_id, metric, ts, float(value))
                    for metric, value in values.items()
                    if metric != broken
                )
        return _wrap(endpoints)

    def _operation(self, op: object, fault: Fault | None, served: list[Served]) -> dict[str, Any]:
        if not isinstance(op, dict):
            return _error("Request body must be a GraphQL operation object", "BAD_REQUEST")
        name = op.get("operationName") or ""
        query = str(op.get("query") or "")
        variables = op.get("variables") or {}
        if name == "getEndpointState" or ("listEndpoints" in query and "endpointIds" in query):
            ids = variables.get("endpointIds") if isinstance(variables, dict) else None
            if not isinstance(ids, list):
                return _error("Variable '$endpointIds' is required", "BAD_REQUEST")
            return self._state_answer([str(i) for i in ids], fault, served)
        if name == "getAirQualityMonitors" or (
            "listEndpoints" in query and "displayCategory" in query
        ):
            return self._discovery_answer(fault)
        return _error("Unsupported operation (homepoll simulator)", "BAD_REQUEST")

    def handle_graphql(self, handler: _Handler, body: bytes) -> None:
        fault = self.faults.next()
        kind = fault.kind if fault else None
        if fault and kind == "slow" and self._stopping.wait(fault.number("seconds", 15.0)):
            handler.close_connection = True  # stopping: give up without an answer
            return
        if fault and kind == "slow" and handler.client_gone():
            # The client gave up waiting: an answer now would reach no one, so it must not be
            # recorded as served (tests compare the served log with what homepoll stored).
            self.served.count_request(False)
            handler.close_connection = True
            return
        if kind == "reset":
            self.served.count_request(False)
            handler.abort()
            return
        early = _early_fault(kind)
        if early is not None:
            self.served.count_request(False)
            status, payload, headers = early
            handler.send(status, payload, headers)
            return
        if not self._authorized(handler.headers.get("Cookie", ""), handler.headers.get("csrf", "")):
            self.served.count_request(False)
            handler.send_json(
                401, {"message": "Unauthorized", "errors": [{"message": "Unauthorized"}]}
            )
            return
        try:
            request = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError):
            self.served.count_request(False)
            handler.send_json(400, {"errors": [{"message": "Invalid JSON body"}]})
            return
        ops = request if isinstance(request, list) else [request]
        per_op = _graphql_fault(kind)
        if per_op is not None:
            answers = [per_op for _ in ops]
            self.served.count_request(False)
        elif kind == "unknown_shape":
            answers = [{"result": {"devices": []}, "status": "OK"} for _ in ops]
            self.served.count_request(False)
        else:
            served: list[Served] = []
            answers = [self._operation(op, fault, served) for op in ops]
            self.served.add(served)
            self.served.count_request(True)
        handler.send_json(200, answers if isinstance(request, list) else answers[0])

    def handle_control(self, handler: _Handler, method: str, path: str, body: bytes) -> None:
        if method == "POST" and path == "/_sim/faults":
            # one script may drive both simulators: steps for another target are ignored
            steps = body.decode("utf-8", "replace").split()
            script = " ".join(step for step in steps if _step_target(step) in (None, "aqm"))
            problems = validate_script(script, {"aqm": FAULT_KINDS})
            if problems:
                handler.send_json(400, {"problems": problems})
                return
            self.faults.apply_script(script, "aqm")
            handler.send_json(200, {"pending": self.faults.pending()})
        elif method == "GET" and path == "/_sim/faults":
            handler.send_json(
                200, {"pending": self.faults.pending(), "injected": self.faults.injected}
            )
        elif method == "GET" and path == "/_sim/served":
            handler.send_json(200, [asdict(s) for s in self.served.snapshot()])
        elif method == "POST" and path == "/_sim/cookies":
            jar = None
            if body.strip():
                try:
                    jar = json.loads(body)
                except json.JSONDecodeError:
                    jar = None
                if not isinstance(jar, dict) or not all(isinstance(v, str) for v in jar.values()):
                    handler.send_json(
                        400, {"problems": ["body must be a JSON name->value mapping"]}
                    )
                    return
            handler.send_json(200, {"cookies": self.set_cookies(jar)})
        else:
            handler.send_json(404, {"message": f"no such simulator endpoint: {method} {path}"})


def _step_target(step: str) -> str | None:
    try:
        return parse_step(step)[0]
    except ValueError:
        return None  # let validate_script report it


def _wrap(endpoints: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "data": {"listEndpoints": {"endpoints": endpoints}},
        "extensions": {"requestID": "sim", "duration": 3},
    }


def _error(message: str, code: str, **extensions: Any) -> dict[str, Any]:
    return {
        "data": None,
        "errors": [{"message": message, "extensions": {"errorCode": code, **extensions}}],
    }


def _prop(name: str, typename: str, iso: str, broken: bool, **value: Any) -> dict[str, Any]:
    if broken:
        return {
            "name": name,
            "__typename": typename,
            "error": {"type": "NOT_FOUND", "message": "State not available"},
            **{key: None for key in value},
            "timeOfSample": None,
            "timeOfLastChange": None,
        }
    return {
        "name": name,
        "__typename": typename,
        "error": None,
        **value,
        "timeOfSample": iso,
        "timeOfLastChange": iso,
    }


def _early_fault(kind: str | None) -> tuple[int, bytes | dict[str, Any], dict[str, str]] | None:
    """Faults answered at the HTTP level, before cookies are even looked at."""
    if kind in ("http_401", "http_403"):
        return int(kind[-3:]), {"message": "Unauthorized"}, {}
    if kind == "http_407":
        return 407, {"message": "Proxy Authentication Required"}, {"Proxy-Authenticate": "Basic"}
    if kind == "signin_redirect":
        page = (
            b"<!doctype html><html><head><title>Amazon Sign-In</title></head>"
            b"<body><form name='signIn' action='/ap/signin'></form></body></html>"
        )
        location = (
            "https://www.amazon.com/ap/signin?openid.return_to=https%3A%2F%2Falexa.amazon.com"
            "&openid.assoc_handle=amzn_dp_project_dee&sim-secret-query=1"
        )
        return 302, page, {"Location": location, "Content-Type": "text/html; charset=UTF-8"}
    if kind == "http_429":
        return 429, {"message": "Too Many Requests"}, {}
    if kind == "rate_exceeded":
        return 400, {"message": "Rate exceeded"}, {}
    if kind == "http_503":
        page = b"<html><body><h1>503 Service Unavailable</h1></body></html>"
        return 503, page, {"Content-Type": "text/html"}
    return None


def _graphql_fault(kind: str | None) -> dict[str, Any] | None:
    """Faults Amazon reports inside an HTTP 200 GraphQL answer."""
    if kind == "unauthenticated":
        return {"data": None, "errors": [{"message": "Unauthenticated call", "extensions": {}}]}
    if kind == "forbidden":
        return _error("Access denied", "FORBIDDEN")
    if kind == "too_many_requests":
        return _error("Too many requests", "UNOFFICIAL_CLIENT_TOO_MANY_REQUESTS", isRetryable=False)
    return None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    simulator: AqmApiSimulator

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def close_connections(self, wait: float = 2.0) -> None:
        """Wake handler threads idling on kept-alive connections; let them close their sockets."""
        with self._open_lock:
            connections = list(self._open)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            with self._open_lock:
                if not self._open:
                    return
            time.sleep(0.01)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "Server"
    sys_version = ""
    timeout = 30
    server: _Server

    def setup(self) -> None:
        super().setup()
        # headers and body go out in two writes: without this, Nagle + delayed ACK add 40 ms
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        """Silenced: the simulator runs inside tests and the demo."""

    def _body(self) -> bytes | None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= _MAX_BODY:
            self.send_json(400, {"message": "bad Content-Length"})
            self.close_connection = True
            return None
        return self.rfile.read(length) if length else b""

    def do_POST(self) -> None:
        body = self._body()
        if body is None:
            return
        path = urlsplit(self.path).path
        if path == GRAPHQL_PATH:
            self.server.simulator.handle_graphql(self, body)
        else:
            self.server.simulator.handle_control(self, "POST", path, body)

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == GRAPHQL_PATH:
            self.send_json(405, {"message": "Method Not Allowed"})
        else:
            self.server.simulator.handle_control(self, "GET", path, b"")

    def send(
        self, status: int, payload: bytes | dict[str, Any] | list[Any], headers: Mapping[str, str]
    ) -> None:
        if isinstance(payload, bytes):
            data = payload
            content_type = headers.get("Content-Type", "text/plain")
        else:
            data = json.dumps(payload).encode()
            content_type = "application/json"
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        for key, value in headers.items():
            if key != "Content-Type":
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def send_json(self, status: int, payload: dict[str, Any] | list[Any]) -> None:
        self.send(status, payload, {})

    def client_gone(self) -> bool:
        return peer_closed(self.connection)

    def abort(self) -> None:
        """Close the connection with a TCP reset and no answer at all."""
        self.close_connection = True
        reset(self.connection)
