"""A Hue API v1 bridge on loopback: motion sensors whose values move, plus scripted faults.

Real HTTP, so the collector under test runs its production code path (httpx, sockets,
timeouts). Every successful sensors answer records what it served in physical units,
so tests can check that homepoll stored each measurement exactly once.
"""

from __future__ import annotations

import json
import math
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from homepoll.simulator.faults import Fault, FaultPlan, Served, ServedLog, validate_script
from homepoll.simulator.sockets import peer_closed, reset

FAULT_KINDS = (
    "unauthorized",
    "error_901",
    "http_503",
    "rate_limit",
    "slow",
    "reset",
    "garbage",
    "redirect_https",
    "empty",
)

DEFAULT_KEY = "homepoll-sim-key-0123456789abcdef"
PAIR_WINDOW = 30.0
ROOMS = ("Hall", "Kitchen", "Living room", "Bedroom", "Bathroom", "Garage", "Office", "Attic")

_SENSORS_PATH = re.compile(r"^/api/(?P<key>[^/]+)/sensors(?:/(?P<rid>[^/]*))?/?$")
_KEYED_PATH = re.compile(r"^/api/(?P<key>[^/]+)(?P<rest>/.*)?$")


def _unauthorized(address: str) -> list[dict[str, Any]]:
    return [{"error": {"type": 1, "address": address, "description": "unauthorized user"}}]


def _hue_time(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")


@dataclass
class _Device:
    """One Hue motion sensor (SML001): presence, light level and temperature resources."""

    number: int
    reachable: bool = True
    never_updated: bool = False
    null_metrics: set[str] = field(default_factory=set)
    name: str | None = None  # the motion sensor's name as set in the Hue app

    @property
    def mac(self) -> str:
        return f"00:17:88:01:00:00:{self.number >> 8:02x}:{self.number & 0xFF:02x}"

    @property
    def room(self) -> str:
        n = self.number
        return ROOMS[n - 1] if n <= len(ROOMS) else f"Room {n}"


class HueBridgeSimulator:
    """A loopback Hue bridge. ``start()``/``stop()`` or use it as a context manager.

    Values change every ``update_period`` seconds of ``clock`` (at least 1 s, because
    ``lastupdated`` has one-second resolution and two updates must never share it).
    """

    def __init__(
        self,
        port: int = 0,
        *,
        key: str = DEFAULT_KEY,
        devices: int = 3,
        update_period: float = 5.0,
        clock: Callable[[], float] = time.time,
        seed: int = 0,
    ) -> None:
        self._requested_port = port
        self._keys: list[str] = [key]
        self._clock = clock
        self._seed = seed
        self.update_period = max(1.0, float(update_period))
        self._devices = [_Device(n) for n in range(1, devices + 1)]
        self._button_until = -math.inf
        self._paired = 0
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.faults = FaultPlan(FAULT_KINDS)
        self.served = ServedLog()
        self.switch_battery = 90  # the dimmer switch's battery, %; tests set it low

    # ------------------------------------------------------------------ lifecycle

    @property
    def port(self) -> int:
        return self._server.server_address[1] if self._server else self._requested_port

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> HueBridgeSimulator:
        if self._server is None:
            self._stopping.clear()
            server = ThreadingHTTPServer(("127.0.0.1", self._requested_port), _Handler)
            server.daemon_threads = True
            server.simulator = self  # type: ignore[attr-defined]
            self._server = server
            self._thread = threading.Thread(
                target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, wake sleeping ``slow`` answers, close every socket, join threads."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()  # joins the handler threads
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> HueBridgeSimulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ controls

    @property
    def key(self) -> str | None:
        """The newest valid key (pairing adds one), or None after ``revoke_key()``."""
        with self._lock:
            return self._keys[-1] if self._keys else None

    def key_valid(self, key: str) -> bool:
        with self._lock:
            return key in self._keys

    def revoke_key(self, key: str | None = None) -> None:
        """Forget ``key`` (all keys when None), as deleting it in the Hue app does."""
        with self._lock:
            self._keys = [] if key is None else [k for k in self._keys if k != key]

    def set_key(self, key: str) -> None:
        """Make ``key`` the only valid key."""
        with self._lock:
            self._keys = [key]

    def press_link_button(self, seconds: float = PAIR_WINDOW) -> None:
        """Allow pairing for the next ``seconds`` of the clock."""
        with self._lock:
            self._button_until = self._clock() + seconds

    def set_reachable(self, device: int, reachable: bool) -> None:
        """Device numbers start at 1; an unreachable device reports ``reachable: false``."""
        with self._lock:
            self._devices[device - 1].reachable = reachable

    def set_name(self, device: int, name: str) -> None:
        """Rename the device's motion sensor (any text the Hue app accepts, or worse)."""
        with self._lock:
            self._devices[device - 1].name = name

    def set_never_updated(self, device: int, never: bool = True) -> None:
        """The device's resources report ``lastupdated: "none"`` (just paired, no report yet)."""
        with self._lock:
            self._devices[device - 1].never_updated = never

    def set_null_value(self, device: int, metric: str, null: bool = True) -> None:
        """One state value ("temperature", "light_level" or "presence") reads ``null``."""
        with self._lock:
            target = self._devices[device - 1].null_metrics
            if null:
                target.add(metric)
            else:
                target.discard(metric)

    # ------------------------------------------------------------------ values

    def _epoch(self) -> tuple[int, int]:
        """(update number, its lastupdated in whole unix seconds) for the current clock.

        Counted from the unix epoch, so two simulators with one seed agree at any time.
        """
        k = math.floor(self._clock() / self.update_period)
        return k, math.floor(k * self.update_period)

    def _values(self, device: int, k: int) -> tuple[int, int, bool, int]:
        """(temperature in 0.01 degC, lightlevel, presence, battery) of update ``k``."""
        rng = random.Random(f"{self._seed}:{device}:{k}")
        temperature = round(2000 + 150 * math.sin(k / 12 + device) + rng.randint(-40, 40))
        lightlevel = rng.randint(3000, 30000)
        presence = rng.random() < 0.35
        battery = max(1, 100 - 7 * device - (k // 3600) % 20)  # k counts from the epoch
        return temperature, lightlevel, presence, battery

    def sensors_json(self) -> tuple[dict[str, dict[str, Any]], list[Served]]:
        """The ``GET /sensors`` object and the measurements a successful answer serves."""
        with self._lock:
            k, stamp = self._epoch()
            devices = [
                (d.number, d.mac, d.name, d.reachable, d.never_updated, set(d.null_metrics))
                for d in self._devices
            ]
        lastupdated = _hue_time(stamp)
        ts = stamp * 1000
        out: dict[str, dict[str, Any]] = {
            "1": {
                "state": {"daylight": False, "lastupdated": lastupdated},
                "config": {
                    "on": True,
                    "configured": True,
                    "sunriseoffset": 30,
                    "sunsetoffset": -30,
                },
                "name": "Daylight",
                "type": "Daylight",
                "modelid": "PHDL00",
                "manufacturername": "Signify Netherlands B.V.",
                "swversion": "1.0",
            }
        }
        served: list[Served] = []
        for number, mac, custom_name, reachable, never, nulls in devices:
            temperature, lightlevel, presence, battery = self._values(number, k)
            lux = round(10 ** ((lightlevel - 1) / 10000), 2)
            config = {
                "on": True,
                "battery": battery,
                "reachable": reachable,
                "alert": "none",
                "ledindication": False,
                "usertest": False,
            }
            when = "none" if never else lastupdated
            resources = [
                (
                    "ZLLPresence",
                    custom_name or f"{_Device(number).room} sensor",
                    "0406",
                    "presence",
                    {"presence": presence},
                    1.0 if presence else 0.0,
                ),
                (
                    "ZLLLightLevel",
                    f"Hue ambient light sensor {number}",
                    "0400",
                    "light_level",
                    {
                        "lightlevel": lightlevel,
                        "dark": lightlevel < 16000,
                        "daylight": lightlevel > 26000,
                    },
                    lux,
                ),
                (
                    "ZLLTemperature",
                    f"Hue temperature sensor {number}",
                    "0402",
                    "temperature",
                    {"temperature": temperature},
                    temperature / 100,
                ),
            ]
            for offset, (kind, name, cluster, metric, state, value) in enumerate(resources):
                if metric in nulls:
                    state = {key: None for key in state}
                rid = str(2 + 3 * (number - 1) + offset)
                out[rid] = {
                    "state": {**state, "lastupdated": when},
                    "swupdate": {"state": "noupdates", "lastinstall": "2026-01-10T10:00:00"},
                    "config": dict(config),
                    "name": name,
                    "type": kind,
                    "modelid": "SML001",
                    "manufacturername": "Signify Netherlands B.V.",
                    "productname": "Hue motion sensor",
                    "swversion": "6.1.1.27575",
                    "uniqueid": f"{mac}-02-{cluster}",
                    "capabilities": {"certified": True},
                }
                if reachable and not never and metric not in nulls:
                    served.append(Served("hue", mac, metric, ts, value))
        switch_id = str(2 + 3 * len(devices))
        out[switch_id] = {
            "state": {"buttonevent": 1002, "lastupdated": lastupdated},
            "config": {"on": True, "battery": self.switch_battery, "reachable": True},
            "name": "Hue dimmer switch 1",
            "type": "ZLLSwitch",
            "modelid": "RWL021",
            "manufacturername": "Signify Netherlands B.V.",
            "uniqueid": "00:17:88:01:10:00:00:01-02-fc00",
        }
        return out, served

    # ------------------------------------------------------------------ pairing

    def pair(self, body: bytes) -> list[dict[str, Any]]:
        try:
            devicetype = json.loads(body or b"{}").get("devicetype")
        except (ValueError, AttributeError):
            devicetype = None
        if not isinstance(devicetype, str) or not devicetype:
            return [
                {
                    "error": {
                        "type": 5,
                        "address": "/",
                        "description": "invalid/missing parameters in body",
                    }
                }
            ]
        with self._lock:
            if self._clock() > self._button_until:
                return [
                    {
                        "error": {
                            "type": 101,
                            "address": "",
                            "description": "link button not pressed",
                        }
                    }
                ]
            self._paired += 1
            new_key = f"homepoll-sim-paired-{self._paired:04d}-{self._rng.getrandbits(32):08x}"
            self._keys.append(new_key)
        return [{"success": {"username": new_key}}]


class _Handler(BaseHTTPRequestHandler):
    server_version = "nginx"
    sys_version = ""

    @property
    def sim(self) -> HueBridgeSimulator:
        return self.server.simulator  # type: ignore[attr-defined]

    def log_message(self, format: str, *args: Any) -> None:
        """Silence http.server's per-request stderr line."""

    # ------------------------------------------------------------------ plumbing

    def _send(
        self,
        status: int,
        body: bytes,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
        on_delivery: Callable[[], None] | None = None,
    ) -> bool:
        """Write a whole answer; False when the client had gone (not delivered).

        ``on_delivery`` runs just before the last byte goes out: after every failure
        point that matters, yet before the client can have parsed the answer, so a
        test reading the served log right after its request never misses an entry.
        """
        if self._client_gone():
            self.close_connection = True
            return False
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body[:-1])
            if on_delivery is not None:
                on_delivery()
            self.wfile.write(body[-1:])
            self.wfile.flush()
            return True
        except OSError:
            self.close_connection = True
            return False

    def _json(
        self, status: int, payload: Any, on_delivery: Callable[[], None] | None = None
    ) -> bool:
        return self._send(status, json.dumps(payload).encode(), on_delivery=on_delivery)

    def _client_gone(self) -> bool:
        return peer_closed(self.connection)

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(min(length, 1_000_000)) if length > 0 else b""

    def _fault(self, fault: Fault, path: str) -> bool:
        """Apply a fault; True when it answered (or dropped) the request instead."""
        kind = fault.kind
        if kind == "slow":
            self.sim._stopping.wait(fault.number("seconds", 15.0))
            if self._client_gone() or self.sim._stopping.is_set():
                self.close_connection = True
                return True
            return False  # then answer normally
        if kind == "unauthorized":
            self._json(200, _unauthorized("/sensors"))
        elif kind == "error_901":
            self._json(
                200,
                [
                    {
                        "error": {
                            "type": 901,
                            "address": "/sensors",
                            "description": "Internal error, 500",
                        }
                    }
                ],
            )
        elif kind == "http_503":
            self._send(
                503,
                b"<html><body><h1>503 Service Unavailable</h1>The bridge is busy.</body></html>",
                "text/html",
            )
        elif kind == "rate_limit":
            headers = {}
            if "retry_after" in fault.params:
                headers["Retry-After"] = f"{fault.number('retry_after', 0):g}"
            self._send(429, b"", "text/plain", headers)
        elif kind == "garbage":
            self._send(200, b"\x00\x17<ht\xffml>{not json", "text/plain")
        elif kind == "redirect_https":
            host = self.headers.get("Host") or self.sim.address
            location = f"https://{host}{path}"
            self._send(
                301,
                b"<html><body>Moved Permanently</body></html>",
                "text/html",
                {"Location": location},
            )
        elif kind == "reset":
            reset(self.connection)  # the RST goes out when rfile/wfile close too
        elif kind == "empty":
            pass  # close without a reply
        else:
            return False
        self.close_connection = True
        return True

    # ------------------------------------------------------------------ routes

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == "/_sim/served":
            self._json(200, [asdict(s) for s in self.sim.served.snapshot()])
            return
        match = _SENSORS_PATH.match(path)
        if match:
            self._sensors(match["key"], match["rid"] or None, self.path)
            return
        match = _KEYED_PATH.match(path)
        if match and self.sim.key_valid(match["key"]):
            rest = match["rest"] or "/"
            if rest.rstrip("/") == "/config":
                self._json(
                    200,
                    {
                        "name": "Philips hue",
                        "apiversion": "1.65.0",
                        "swversion": "1965111030",
                        "mac": "00:17:88:00:00:01",
                        "bridgeid": "001788FFFE000001",
                        "modelid": "BSB002",
                    },
                )
            else:
                self._json(
                    200,
                    [
                        {
                            "error": {
                                "type": 3,
                                "address": rest,
                                "description": f"resource, {rest}, not available",
                            }
                        }
                    ],
                )
            return
        if match:
            self._json(200, _unauthorized(match["rest"] or "/"))
            return
        self._send(404, b"not found", "text/plain")

    def _sensors(self, key: str, rid: str | None, raw_path: str) -> None:
        # Counted before answering, so a client sees the count once it has its answer.
        fault = self.sim.faults.next()
        if fault is not None:
            if fault.kind != "slow":
                self.sim.served.count_request(False)
            if self._fault(fault, raw_path):
                if fault.kind == "slow":
                    self.sim.served.count_request(False)
                return
        if not self.sim.key_valid(key):
            self.sim.served.count_request(False)
            self._json(200, _unauthorized("/sensors"))
            return
        sensors, served = self.sim.sensors_json()
        if rid is not None:
            if rid not in sensors:
                self.sim.served.count_request(False)
                self._json(
                    200,
                    [
                        {
                            "error": {
                                "type": 3,
                                "address": f"/sensors/{rid}",
                                "description": f"resource, /sensors/{rid}, not available",
                            }
                        }
                    ],
                )
                return
            payload: Any = sensors[rid]
            uniqueid = str(payload.get("uniqueid", ""))
            served = [
                s
                for s in served
                if s.device_id == uniqueid[:23] and uniqueid.endswith(_CLUSTER[s.metric])
            ]
        else:
            payload = sensors
        counted = False

        def deliver() -> None:
            nonlocal counted
            self.sim.served.add(served)
            self.sim.served.count_request(True)
            counted = True

        self._json(200, payload, deliver)
        if not counted:
            self.sim.served.count_request(False)

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        body = self._body()
        if path == "/_sim/faults":
            script = body.decode("utf-8", "replace")
            problems = validate_script(script, {"hue": FAULT_KINDS})
            if problems:
                self._json(400, {"problems": problems})
                return
            self.sim.faults.apply_script(script, "hue")
            self._json(200, {"pending": self.sim.faults.pending()})
        elif path == "/_sim/revoke":
            self.sim.revoke_key()
            self._json(200, {"revoked": True})
        elif path == "/_sim/press_button":
            seconds = parse_qs(urlsplit(self.path).query).get("seconds", [str(PAIR_WINDOW)])[0]
            try:
                self.sim.press_link_button(float(seconds))
            except ValueError:
                self._json(400, {"problems": [f"bad seconds {seconds!r}"]})
                return
            self._json(200, {"pressed": True})
        elif path.rstrip("/") == "/api":
            fault = self.sim.faults.next()
            # "unauthorized" means nothing for pairing: it answers normally.
            if fault is not None and fault.kind != "unauthorized" and self._fault(fault, path):
                return
            self._json(200, self.sim.pair(body))
        else:
            self._send(404, b"not found", "text/plain")


_CLUSTER = {"presence": "-0406", "light_level": "-0400", "temperature": "-0402"}
