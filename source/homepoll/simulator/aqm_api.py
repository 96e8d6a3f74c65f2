"""A loopback stand-in for Amazon's Alexa GraphQL endpoint, serving Air Quality Monitors.

homepoll must never touch a real Amazon account in tests or the demo, yet the collector's
whole value is in how it reacts to Amazon's odd failure signals (a 200 carrying
"Unauthenticated call", a sign-in redirect, throttling without Retry-After). This server
speaks the same request and answer shapes (see shared/reference/amazon_aqm.md) over real
HTTP, checks the cookie jar and the ``csrf`` header like Amazon, and injects scripted faults.
"""

from __future__ import annotations

import json
import random
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict
from typing import Any

from homepoll.simulator import aqm_data
from homepoll.simulator.amazon_auth import CSRF_PATHS, SIGNIN_PATH, AmazonAuth
from homepoll.simulator.aqm_data import Device, Sample, graphql_error
from homepoll.simulator.aqm_faults import FAULT_KINDS, RANDOM_KINDS, early_fault, graphql_fault
from homepoll.simulator.aqm_http import GRAPHQL_PATH, Handler, Server, cookie_map
from homepoll.simulator.faults import (
    Fault,
    FaultPlan,
    Served,
    ServedLog,
    validate_script,
)

__all__ = ["FAULT_KINDS", "GRAPHQL_PATH", "RANDOM_KINDS", "AqmApiSimulator"]

SOURCE = "amazon_aqm"


class AqmApiSimulator:
    """Alexa GraphQL endpoint for ``monitors`` Air Quality Monitors on 127.0.0.1.

    ``fahrenheit_monitors`` of them (the last ones) report temperature in FAHRENHEIT.
    Measurements change every ``update_period`` seconds (at least 1 s, since
    ``timeOfSample`` has seconds resolution), computed from ``clock`` and ``seed`` so the
    same moment always gives the same values. ``third_party_monitors``, ``echo_temperature``
    and ``echo_plain`` add other devices to the account. ``self.auth`` speaks the sign-in and
    token protocol (simulator/amazon_auth.py) for the account on ``marketplace``.
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
        third_party_monitors: int = 0,
        echo_temperature: int = 0,
        echo_plain: int = 0,
        marketplace: str = "amazon.com",
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
            aqm_data.make_device(self._rng, i, aqm_data.AQM, i >= monitors - fahrenheit_monitors)
            for i in range(monitors)
        ]
        self.others = [
            aqm_data.make_device(self._rng, i, kind)
            for kind, count in (
                (aqm_data.THIRD_PARTY, third_party_monitors),
                (aqm_data.ECHO_TEMPERATURE, echo_temperature),
                (aqm_data.ECHO, echo_plain),
            )
            for i in range(count)
        ]
        self.auth = AmazonAuth(
            new_jar=self._new_jar, install_jar=self._install_jar, marketplace=marketplace
        )
        self._issued = (time.monotonic(), 0)  # when the jar was issued, requests since
        self._lifetime: tuple[int | None, float | None] = (None, None)
        self._penalty = 0.0  # throttle window, seconds; each request inside it restarts it
        self._throttled_until = 0.0
        self.graphql_requests: list[tuple[float, str]] = []  # (monotonic time, outcome)
        self.faults = FaultPlan(RANDOM_KINDS)
        self.served = ServedLog()
        self._stopping = threading.Event()
        self._server: Server | None = None
        self._port: int | None = None
        self._thread: threading.Thread | None = None

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> AqmApiSimulator:
        if self._server is not None:
            return self
        self._stopping.clear()
        server = Server(("127.0.0.1", self._requested_port), Handler)
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
    def devices(self) -> list[Device]:
        """Every endpoint on the account: Amazon's monitors first (tests may rename them)."""
        return self.monitors + self.others

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
        return self._install_jar(dict(jar) if jar is not None else self._new_jar())

    def _install_jar(self, jar: dict[str, str]) -> dict[str, str]:
        with self._lock:
            self._cookies = dict(jar)
            self._issued = (time.monotonic(), 0)
            return dict(self._cookies)

    def cookie_lifetime(self, *, requests: int | None = None, seconds: float | None = None) -> None:
        """Cookies stop working after ``requests`` GraphQL answers or ``seconds``, like Amazon's."""
        with self._lock:
            self._lifetime = (requests, seconds)

    def throttle(self, seconds: float) -> None:
        """Throttle for ``seconds``; a request inside the window restarts it (punishes retries)."""
        with self._lock:
            self._penalty = seconds
            self._throttled_until = time.monotonic() + seconds

    def _throttled(self) -> bool:
        with self._lock:
            now = time.monotonic()
            if now >= self._throttled_until:
                return False
            self._throttled_until = now + self._penalty
            return True

    def _expired(self) -> bool:
        """Count one authorized use of the jar; True once it has outlived its lifetime."""
        with self._lock:
            issued, uses = self._issued
            max_uses, max_age = self._lifetime
            if (max_uses is not None and uses >= max_uses) or (
                max_age is not None and time.monotonic() - issued >= max_age
            ):
                return True
            self._issued = (issued, uses + 1)
            return False

    def csrf_page(self, handler: Handler) -> None:
        """GET on the Alexa host with valid cookies: ``Set-Cookie: csrf`` (alexapy ``get_csrf``)."""
        sent = cookie_map(handler.headers.get("Cookie", ""))
        with self._lock:
            jar = self._cookies
            if not all(sent.get(k) == v for k, v in jar.items() if k != "csrf"):
                ok = False
            else:
                ok = True
                jar.setdefault("csrf", f"sim-csrf-{secrets.token_hex(12)}")
            csrf = jar.get("csrf", "")
        if not ok:
            handler.send_json(401, {"message": "Unauthorized"})
            return
        handler.send(200, b"{}", [("Set-Cookie", f"csrf={csrf}; Path=/; Secure")])

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
        sent = cookie_map(cookie_header)
        jar = self.valid_cookies
        return all(sent.get(k) == v for k, v in jar.items()) and csrf_header == jar.get("csrf")

    # ----------------------------------------------------------------- values

    def sample(self, device: Device, now: float | None = None) -> Sample:
        """The device's measurement current at ``now`` (default: the clock)."""
        now = self._clock() if now is None else now
        return aqm_data.sample(device, now, self._period, self._seed)

    def _operation(self, op: object, fault: Fault | None, served: list[Served]) -> dict[str, Any]:
        if not isinstance(op, dict):
            return graphql_error("Request body must be a GraphQL operation object", "BAD_REQUEST")
        name = op.get("operationName") or ""
        query = str(op.get("query") or "")
        variables = op.get("variables") or {}
        if name == "getEndpointState" or ("listEndpoints" in query and "endpointIds" in query):
            ids = variables.get("endpointIds") if isinstance(variables, dict) else None
            if not isinstance(ids, list):
                return graphql_error("Variable '$endpointIds' is required", "BAD_REQUEST")
            wanted = [str(i) for i in ids]
            return aqm_data.state_answer(self.devices, wanted, fault, served, self.sample)
        if "listEndpoints" in query and "displayCategory" in query:
            empty = bool(fault and fault.kind == "empty_endpoints")
            return aqm_data.discovery_answer(query, self.devices, empty)
        return graphql_error("Unsupported operation (homepoll simulator)", "BAD_REQUEST")

    def _log_request(self, outcome: str) -> None:
        with self._lock:
            self.graphql_requests.append((time.monotonic(), outcome))

    def handle_graphql(self, handler: Handler, body: bytes) -> None:
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
        early = early_fault(kind)
        if early is not None:
            self.served.count_request(False)
            status, payload, headers = early
            handler.send(status, payload, headers)
            return
        if self._throttled():
            self._log_request("throttled")
            self.served.count_request(False)
            handler.send_json(200, graphql_fault("too_many_requests") or {})
            return
        if (
            not self._authorized(handler.headers.get("Cookie", ""), handler.headers.get("csrf", ""))
            or self._expired()
        ):
            self._log_request("unauthorized")
            self.served.count_request(False)
            handler.send_json(
                401, {"message": "Unauthorized", "errors": [{"message": "Unauthorized"}]}
            )
            return
        self._log_request("ok")
        try:
            request = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError):
            self.served.count_request(False)
            handler.send_json(400, {"errors": [{"message": "Invalid JSON body"}]})
            return
        ops = request if isinstance(request, list) else [request]
        session = cookie_map(handler.headers.get("Cookie", "")).get("session-id", "")
        per_op = graphql_fault(kind, session)
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

    def route(self, handler: Handler, method: str, path: str, query: str, body: bytes) -> None:
        """The sign-in, token and Alexa-host pages; everything else is the control API."""
        auth = self.auth
        if path == SIGNIN_PATH:
            status, page, headers = (
                auth.signin_get(query) if method == "GET" else auth.signin_post(body)
            )
            handler.send(status, page, headers)
        elif method == "POST" and path == "/auth/register":
            handler.send_json(*auth.register(body))
        elif method == "POST" and path == "/auth/token":
            handler.send_json(*auth.exchange(body))
        elif method == "GET" and path == "/api/welcome":
            handler.send_json(200, auth.welcome())
        elif method == "GET" and path == "/api/users/me":
            handler.send_json(200, auth.users_me())
        elif method == "GET" and path in CSRF_PATHS:
            self.csrf_page(handler)
        else:
            self.handle_control(handler, method, path, body)

    def handle_control(self, handler: Handler, method: str, path: str, body: bytes) -> None:
        if method == "POST" and path == "/_sim/faults":
            # one script may drive both simulators: steps for the other one are checked
            # here and applied there (``homepoll simulate`` links the two plans)
            script = body.decode("utf-8", "replace")
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
