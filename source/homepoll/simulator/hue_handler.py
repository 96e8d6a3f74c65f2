"""The simulated bridge's HTTP side: routes, faults, the TLS handshake, the served log.

Routes: ``/api/config`` (no key), ``/api/<key>/sensors[/<id>]``, ``POST /api`` (pairing),
``/clip/v2/resource[/<type>]`` (header ``hue-application-key``) and the test controls under
``/_sim/`` (``faults``, ``revoke``, ``press_button``, ``served``, ``stats``).
"""

from __future__ import annotations

import json
import re
import ssl
from collections.abc import Callable
from dataclasses import asdict
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from homepoll.simulator.faults import Fault, validate_script
from homepoll.simulator.hue_bridge import FAULT_KINDS, PAIR_WINDOW, hue_error
from homepoll.simulator.hue_model import CLUSTER
from homepoll.simulator.sockets import peer_closed, reset

if TYPE_CHECKING:
    from homepoll.simulator.hue_bridge import HueBridgeSimulator

_SENSORS_PATH = re.compile(r"^/api/(?P<key>[^/]+)/sensors(?:/(?P<rid>[^/]*))?/?$")
_KEYED_PATH = re.compile(r"^/api/(?P<key>[^/]+)(?P<rest>/.*)?$")
_V2_PATH = re.compile(r"^/clip/v2/resource(?:/(?P<rtype>[a-z_]+))?/?$")
HANDSHAKE_TIMEOUT = 5.0


class HueHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep connections open, as real bridges do
    disable_nagle_algorithm = True  # as nginx's tcp_nodelay: no 40 ms delayed-ACK stall
    server_version = "nginx"
    sys_version = ""
    _broken = False

    @property
    def sim(self) -> HueBridgeSimulator:
        return self.server.simulator  # type: ignore[attr-defined]

    def log_message(self, format: str, *args: Any) -> None:
        """Silence http.server's per-request stderr line."""

    def setup(self) -> None:
        """Finish the TLS handshake in this handler's thread, never in the accept loop."""
        self.sim.connection_opened(self.request)
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(HANDSHAKE_TIMEOUT)
            try:
                self.request.do_handshake()
            except (OSError, ValueError):  # a client that refused our certificate, or left
                self._broken = True
            else:
                self.sim.count_handshake()
            self.request.settimeout(None)
        super().setup()

    def handle(self) -> None:
        if not self._broken:
            try:
                super().handle()
            except (ssl.SSLError, ConnectionError, TimeoutError):
                self.close_connection = True

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.sim.connection_closed(self.request)

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
        if peer_closed(self.connection):
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

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(min(length, 1_000_000)) if length > 0 else b""

    def _unauthorized(self, address: str) -> None:
        # A Hue bridge says so with HTTP 200; deCONZ with 403 and the same body.
        status = 403 if self.sim.flavor == "deconz" else 200
        self._json(status, hue_error(1, address, "unauthorized user"))

    def _fault(self, fault: Fault, path: str) -> bool:
        """Apply a fault; True when it answered (or dropped) the request instead."""
        kind = fault.kind
        if kind == "slow":
            self.sim.stopping.wait(fault.number("seconds", 15.0))
            if peer_closed(self.connection) or self.sim.stopping.is_set():
                self.close_connection = True
                return True
            return False  # then answer normally
        if kind == "unauthorized":
            self._unauthorized("/sensors")
        elif kind == "error_901":
            self._json(200, hue_error(901, "/sensors", "Internal error, 500"))
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
            self._send(
                301,
                b"<html><body>Moved Permanently</body></html>",
                "text/html",
                {"Location": f"https://{host}{path}"},
            )
        elif kind == "reset":
            reset(self.connection)  # the RST goes out when rfile/wfile close too
        elif kind == "empty":
            pass  # close without a reply
        else:
            return False
        self.close_connection = True
        return True

    def _answer_measurements(self, payload: Any, served: list) -> None:
        """Send a sensors answer; record what it served only if it was delivered."""
        counted = False

        def deliver() -> None:
            nonlocal counted
            self.sim.served.add(served)
            self.sim.served.count_request(True)
            counted = True

        self._json(200, payload, deliver)
        if not counted:
            self.sim.served.count_request(False)

    def _faulted(self, raw_path: str) -> bool:
        """Take the next fault for a measurement request; True when it answered instead."""
        fault = self.sim.faults.next()
        if fault is None:
            return False
        if fault.kind != "slow":
            self.sim.served.count_request(False)
        if self._fault(fault, raw_path):
            if fault.kind == "slow":
                self.sim.served.count_request(False)
            return True
        return False

    # ------------------------------------------------------------------ routes

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == "/_sim/served":
            self._json(200, [asdict(s) for s in self.sim.served.snapshot()])
            return
        if path == "/_sim/stats":
            self._json(
                200, {"handshakes": self.sim.handshakes, "requests": self.sim.served.requests}
            )
            return
        if path.rstrip("/") in ("/api/config", "/api/0/config"):
            self._json(200, self.sim.config_json())
            return
        match = _V2_PATH.match(path)
        if match and self.sim.v2:
            self._clip_v2(match["rtype"])
            return
        match = _SENSORS_PATH.match(path)
        if match:
            self._sensors(match["key"], match["rid"] or None, self.path)
            return
        match = _KEYED_PATH.match(path)
        if match and self.sim.key_valid(match["key"]):
            rest = match["rest"] or "/"
            if rest.rstrip("/") == "/config":
                self._json(200, self.sim.config_json())
            else:
                self._json(200, hue_error(3, rest, f"resource, {rest}, not available"))
            return
        if match:
            self._unauthorized(match["rest"] or "/")
            return
        self._send(404, b"not found", "text/plain")

    def _sensors(self, key: str, rid: str | None, raw_path: str) -> None:
        # Counted before answering, so a client sees the count once it has its answer.
        if self._faulted(raw_path):
            return
        if not self.sim.key_valid(key):
            self.sim.served.count_request(False)
            self._unauthorized("/sensors")
            return
        sensors, served = self.sim.sensors_json()
        payload: Any = sensors
        if rid is not None:
            if rid not in sensors:
                self.sim.served.count_request(False)
                address = f"/sensors/{rid}"
                self._json(200, hue_error(3, address, f"resource, {address}, not available"))
                return
            payload = sensors[rid]
            uniqueid = str(payload.get("uniqueid", ""))
            served = [
                s
                for s in served
                if s.device_id == uniqueid[:23] and uniqueid.endswith("-" + CLUSTER[s.metric])
            ]
        self._answer_measurements(payload, served)

    def _clip_v2(self, rtype: str | None) -> None:
        if self._faulted(self.path):
            return
        if not self.sim.key_valid(self.headers.get("hue-application-key")):
            self.sim.served.count_request(False)
            self._json(403, {"errors": [{"description": "unauthorized user"}], "data": []})
            return
        data, served = self.sim.clip_v2()
        if rtype is not None:
            data = [item for item in data if item.get("type") == rtype]
            served = served if rtype in ("temperature", "light_level", "motion") else []
            metric = {"motion": "presence"}.get(rtype, rtype)
            served = [s for s in served if s.metric == metric]
        self._answer_measurements({"errors": [], "data": data}, served)

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
            self._json(200, {"pressed": True, "seconds": float(seconds)})
        elif path.rstrip("/") == "/api":
            fault = self.sim.faults.next()
            # "unauthorized" means nothing for pairing: it answers normally.
            if fault is not None and fault.kind != "unauthorized" and self._fault(fault, path):
                return
            status, answer = self.sim.pair(body)
            self._json(status, answer)
        else:
            self._send(404, b"not found", "text/plain")
