"""A Hue bridge on loopback: motion sensors whose values move, plus scripted faults.

Real HTTP or HTTPS, so the collector under test runs its production code path (httpx,
TLS verification, timeouts). It plays a Hue bridge (v1 ``/sensors``; with HTTPS also CLIP v2
``/clip/v2/resource``) or a deCONZ/Phoscon gateway (ZHA types, HTTP 403 for a bad key and
while pairing is locked). Every successful sensors answer records what it served in physical
units, so tests can check that homepoll stored each measurement exactly once, in every mode.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import socket
import ssl
import threading
import time
from collections.abc import Callable
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

from homepoll.simulator.faults import FaultPlan, Served, ServedLog
from homepoll.simulator.hue_model import (
    SimDevice,
    Snapshot,
    motion_values,
    v1_sensors,
    v2_resources,
    weather_values,
)

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
HUE_BRIDGE_ID = "001788FFFE000001"
DECONZ_BRIDGE_ID = "00212EFFFF012345"
FLAVORS = ("hue", "deconz")
TLS_MODES = (None, "ca", "self_signed")


def hue_error(kind: int, address: str, description: str) -> list[dict[str, Any]]:
    return [{"error": {"type": kind, "address": address, "description": description}}]


class HueBridgeSimulator:
    """A loopback bridge. ``start()``/``stop()`` or use it as a context manager.

    ``flavor`` "hue" or "deconz"; ``tls`` None (plain HTTP), "ca" (a certificate for
    ``cert_bridge_id`` issued by ``ca``, a test CA shaped like Signify's) or "self_signed"
    (an older square bridge). CLIP v2 is served by a Hue bridge over HTTPS unless ``v2`` is
    False. Values change every ``update_period`` seconds of ``clock`` (at least 1 s, because
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
        flavor: str = "hue",
        tls: str | None = None,
        ca: Any = None,
        bridge_id: str | None = None,
        cert_bridge_id: str | None = None,
        v2: bool | None = None,
    ) -> None:
        if flavor not in FLAVORS or tls not in TLS_MODES:
            raise ValueError(f"flavor must be one of {FLAVORS}, tls one of {TLS_MODES}")
        self._requested_port = port
        self._keys: list[str] = [key]
        self._clock = clock
        self._seed = seed
        self.flavor = flavor
        self.tls = tls
        self.bridge_id = bridge_id or (DECONZ_BRIDGE_ID if flavor == "deconz" else HUE_BRIDGE_ID)
        self.cert_bridge_id = cert_bridge_id or self.bridge_id
        self.v2 = (flavor == "hue" and tls is not None) if v2 is None else v2
        self._ca = ca
        self.update_period = max(1.0, float(update_period))
        self._devices = [SimDevice(n) for n in range(1, devices + 1)]
        self._button_until = -math.inf
        self._paired = 0
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self.stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._scratch: Any = None
        self.cert_pem: str | None = None
        self.faults = FaultPlan(FAULT_KINDS)
        self.served = ServedLog()
        self.switch_battery = 90  # the dimmer switch's battery, %; tests set it low
        self.handshakes = 0  # TLS handshakes completed: one per connection, not per poll
        self._connections: set[socket.socket] = set()  # kept-alive client connections

    # ------------------------------------------------------------------ lifecycle

    @property
    def port(self) -> int:
        return self._server.server_address[1] if self._server else self._requested_port

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    @property
    def ca_pem(self) -> str | None:
        """The PEM a client must trust for ``tls="ca"`` (the test root)."""
        return self._ca.pem if self._ca is not None else None

    def start(self) -> HueBridgeSimulator:
        from homepoll.simulator.hue_handler import HueHandler

        if self._server is None:
            self.stopping.clear()
            server = ThreadingHTTPServer(("127.0.0.1", self._requested_port), HueHandler)
            server.daemon_threads = True
            server.simulator = self  # type: ignore[attr-defined]
            if self.tls:
                server.socket = self._tls_context().wrap_socket(
                    server.socket, server_side=True, do_handshake_on_connect=False
                )
            self._server = server
            self._thread = threading.Thread(
                target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
            )
            self._thread.start()
        return self

    def _tls_context(self) -> ssl.SSLContext:
        from homepoll.simulator import hue_certs

        if self._scratch is None:
            self._scratch = hue_certs.scratch_folder()
        if self.tls == "self_signed":
            issued = hue_certs.self_signed(self.cert_bridge_id)
        else:
            if self._ca is None:
                self._ca = hue_certs.TestCa()
            issued = self._ca.issue(self.cert_bridge_id)
        self.cert_pem = issued.cert
        cert, key = issued.files(Path(self._scratch.name), "bridge")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        return context

    def stop(self) -> None:
        """Stop serving, wake sleeping ``slow`` answers, close every socket, join threads."""
        server, self._server = self._server, None
        if server is None:
            return
        self.stopping.set()
        server.shutdown()
        with self._lock:
            kept = list(self._connections)
        for sock in kept:  # wake handler threads waiting for a kept-alive client's next request
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        server.server_close()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._scratch is not None:
            self._scratch.cleanup()
            self._scratch = None

    def __enter__(self) -> HueBridgeSimulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ controls

    def count_handshake(self) -> None:
        with self._lock:
            self.handshakes += 1

    def connection_opened(self, sock: socket.socket) -> None:
        with self._lock:
            self._connections.add(sock)

    def connection_closed(self, sock: socket.socket) -> None:
        with self._lock:
            self._connections.discard(sock)

    @property
    def key(self) -> str | None:
        """The newest valid key (pairing adds one), or None after ``revoke_key()``."""
        with self._lock:
            return self._keys[-1] if self._keys else None

    def key_valid(self, key: str | None) -> bool:
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
        """Allow pairing for the next ``seconds`` of the clock (Phoscon: "Authenticate app")."""
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

    # ------------------------------------------------------------------ answers

    def snapshot(self) -> Snapshot:
        """The devices at the current update (counted from the unix epoch, so two simulators
        with one seed agree at any time)."""
        with self._lock:
            k = math.floor(self._clock() / self.update_period)
            devices = tuple(
                (
                    SimDevice(d.number, d.reachable, d.never_updated, set(d.null_metrics), d.name),
                    motion_values(self._seed, d.number, k),
                )
                for d in self._devices
            )
        return Snapshot(
            k,
            math.floor(k * self.update_period),
            devices,
            weather_values(self._seed, k),
            self.flavor == "deconz",
            self.switch_battery,
        )

    def sensors_json(self) -> tuple[dict[str, dict[str, Any]], list[Served]]:
        """The v1 ``GET /sensors`` object and the measurements a successful answer serves."""
        return v1_sensors(self.snapshot())

    def clip_v2(self) -> tuple[list[dict[str, Any]], list[Served]]:
        """CLIP v2's resources and the measurements a successful answer serves."""
        return v2_resources(self.snapshot())

    def config_json(self) -> dict[str, Any]:
        """``GET /api/config``: answered without a key, as real bridges and deCONZ do."""
        if self.flavor == "deconz":
            return {
                "name": "Phoscon-GW",
                "bridgeid": self.bridge_id,
                "modelid": "deCONZ",
                "apiversion": "1.16.0",
                "swversion": "2.26.3",
                "mac": "00:21:2e:01:23:45",
            }
        return {
            "name": "Philips hue",
            "bridgeid": self.bridge_id,
            "modelid": "BSB002",
            "apiversion": "1.65.0",
            "swversion": "1965111030",
            "mac": "00:17:88:00:00:01",
        }

    def pair(self, body: bytes) -> tuple[int, list[dict[str, Any]]]:
        """(HTTP status, answer) of ``POST /api``; deCONZ says 403 while pairing is locked."""
        try:
            devicetype = json.loads(body or b"{}").get("devicetype")
        except (ValueError, AttributeError):
            devicetype = None
        if not isinstance(devicetype, str) or not devicetype:
            return 400 if self.flavor == "deconz" else 200, hue_error(
                5, "/", "invalid/missing parameters in body"
            )
        with self._lock:
            if self._clock() > self._button_until:
                status = 403 if self.flavor == "deconz" else 200
                return status, hue_error(101, "", "link button not pressed")
            self._paired += 1
            new_key = f"homepoll-sim-paired-{self._paired:04d}-{self._rng.getrandbits(32):08x}"
            self._keys.append(new_key)
        return 200, [{"success": {"username": new_key}}]
