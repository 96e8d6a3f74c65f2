"""One connection to the broker, kept up for the life of the daemon (aiomqtt on asyncio).

Connect (MQTT 3.1.1 or 5, user + password, optional TLS, a last will of ``offline`` on
``<base_topic>/status``), say ``online``, listen for Home Assistant's birth message; when
the link is lost, wait a growing, jittered delay and connect again with a fresh client (so
nothing of a dead session stays in memory). Publishers wait on ``up`` and use ``client``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import random
import socket
import ssl
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiomqtt
from aiomqtt.exceptions import MqttConnectError

from homepoll.alerts import sanitize
from homepoll.mqtt.secret import PasswordError, read_password
from homepoll.mqtt.status import MqttStatus, OfflineAlert

log = logging.getLogger("homepoll.mqtt")

KEEPALIVE = 60
"""Seconds between pings on an idle link; a dead broker is noticed within 1.5 times this."""
CONNECT_TIMEOUT = 10.0
PUBLISH_TIMEOUT = 15.0
"""Seconds to wait for the broker's acknowledgements of a run of QoS 1 messages (plus 10 ms
per message)."""
BACKOFF_MIN = 1.0
BACKOFF_MAX = 60.0
MAX_INFLIGHT = 20
MAX_PENDING = 1000
"""Messages awaiting acknowledgement before aiomqtt warns (one events batch is 200)."""


def client_id(data_dir: Path) -> str:
    """Stable per installation (this machine and this data folder), so a restart takes over
    its own session instead of looking like a second client; no state to keep."""
    try:
        machine = Path("/etc/machine-id").read_text(encoding="utf-8").strip()
    except OSError:
        machine = ""
    seed = f"{machine or socket.gethostname()}\x1f{Path(data_dir).absolute()}"
    return "homepoll-" + hashlib.sha256(seed.encode()).hexdigest()[:12]


def backoff_delay(failures: int, rand: Callable[[], float] = random.random) -> float:
    """1, 2, 4 ... 60 s, each between half and all of that (jitter), so many homepolls
    reconnecting after a broker restart do not arrive in lockstep."""
    ceiling = min(BACKOFF_MAX, BACKOFF_MIN * 2 ** max(0, failures - 1))
    return ceiling * (0.5 + 0.5 * rand())


def describe(exc: BaseException, broker: str) -> tuple[str, bool]:
    """(one line for the log, whether a person must fix something)."""
    if isinstance(exc, PasswordError):
        return str(exc), True
    if isinstance(exc, MqttConnectError):
        code = getattr(exc.rc, "value", exc.rc)
        if code in (4, 5, 134, 135):
            return (
                f"the MQTT broker {broker} refused the login ({sanitize(exc)}): check"
                " mqtt.username and the password in mqtt.password_file",
                True,
            )
        return f"the MQTT broker {broker} refused the connection: {sanitize(exc)}", True
    if isinstance(exc, ssl.SSLError):
        return f"TLS with the MQTT broker {broker} failed: {sanitize(exc)} (mqtt.ca_file?)", True
    text = sanitize(exc) or type(exc).__name__
    return f"cannot reach the MQTT broker {broker}: {text}", False


class BrokerLink:
    """Owns the connection; ``run()`` until cancelled."""

    def __init__(
        self,
        settings: Any,
        *,
        identifier: str,
        status: MqttStatus,
        alert: OfflineAlert | None,
        on_up: Callable[[], Awaitable[None]],
        on_ha_online: Callable[[], None],
        on_change: Callable[[MqttStatus], Awaitable[None]] | None = None,
    ) -> None:
        self.settings = settings
        self.identifier = identifier
        self.status = status
        self.alert = alert
        self.on_up = on_up
        self.on_ha_online = on_ha_online
        self.on_change = on_change  # the link came up or went down (status.json says so)
        self.client: aiomqtt.Client | None = None
        self.up = asyncio.Event()
        self._lost = asyncio.Event()  # set when the current session ends; fresh per session
        self.status_topic = f"{settings.base_topic}/status"
        prefix = settings.discovery_prefix
        self.ha_status_topic = f"{prefix}/status" if prefix else None
        self._warned: set[Path] = set()
        self._logged_problem: str | None = None
        self._tasks: set[asyncio.Task] = set()

    async def run(self) -> None:
        failures = 0
        while True:
            try:
                await self._session()
                error: BaseException = ConnectionError("connection lost")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                error = exc
            failures = 1 if self.status.connected else failures + 1
            try:
                await self._went_down(error)
            except Exception:  # reporting must never end the reconnect loop
                log.exception("MQTT: reporting a lost connection failed")
            await asyncio.sleep(backoff_delay(failures))

    async def _session(self) -> None:
        settings = self.settings
        password = await asyncio.to_thread(
            read_password, settings.password_file, warned=self._warned
        )
        tls = None
        if settings.tls:
            ca = str(settings.ca_file) if getattr(settings, "ca_file", None) else None
            tls = await asyncio.to_thread(ssl.create_default_context, cafile=ca)
        protocol = (
            aiomqtt.ProtocolVersion.V5
            if str(getattr(settings, "protocol", "3.1.1")) == "5"
            else aiomqtt.ProtocolVersion.V311
        )
        client = aiomqtt.Client(
            settings.host,
            settings.port,
            username=settings.username,
            password=password,
            identifier=self.identifier,
            protocol=protocol,
            will=aiomqtt.Will(self.status_topic, b"offline", qos=1, retain=True),
            keepalive=KEEPALIVE,
            timeout=CONNECT_TIMEOUT,
            tls_context=tls,
            max_inflight_messages=MAX_INFLIGHT,
            logger=logging.getLogger("homepoll.mqtt.paho"),
        )
        # aiomqtt warns per publish beyond 10 awaiting acknowledgement; a batch is 200 by design
        client.pending_calls_threshold = MAX_PENDING
        async with client:
            await client.publish(
                self.status_topic, b"online", qos=1, retain=True, timeout=PUBLISH_TIMEOUT
            )
            if self.ha_status_topic:
                await client.subscribe(self.ha_status_topic, qos=1, timeout=PUBLISH_TIMEOUT)
            self.client = client
            self._lost = asyncio.Event()
            await self._came_up()
            try:
                async for message in client.messages:
                    if (
                        self.ha_status_topic
                        and message.topic.matches(self.ha_status_topic)
                        and message.payload == b"online"
                    ):
                        log.info("Home Assistant announced itself: sending discovery again")
                        self.on_ha_online()
            finally:
                self.client = None
                self.up.clear()
                self._lost.set()

    async def _came_up(self) -> None:
        recovered = self._logged_problem is not None
        self.status.connected = True
        self.status.since = time.time()
        self.status.last_error = None
        self.status.acknowledged()
        self._logged_problem = None
        log.info(
            "%s the MQTT broker %s as %s",
            "connected again to" if recovered else "connected to",
            self.status.broker,
            self.identifier,
        )
        if self.alert is not None:
            await asyncio.to_thread(self.alert.connected)
        if self.on_change is not None:
            await self.on_change(self.status)
        self.up.set()
        task = asyncio.get_running_loop().create_task(self.on_up())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _went_down(self, error: BaseException) -> None:
        message, needs_person = describe(error, self.status.broker)
        was_up = self.status.connected
        changed = was_up or message != self._logged_problem
        self.status.connected = False
        self.status.last_error = message
        if was_up or self.status.since is None:
            self.status.since = time.time()
        if message != self._logged_problem:
            level = logging.ERROR if needs_person else logging.WARNING
            log.log(level, "%s; retrying with backoff", message)
            self._logged_problem = message
        else:
            log.debug("%s (still)", message)
        if self.alert is not None:
            await asyncio.to_thread(self.alert.failed, message)
        if changed and self.on_change is not None:
            await self.on_change(self.status)

    async def publish(
        self, client: aiomqtt.Client, messages: list[tuple[str, bytes, bool]]
    ) -> None:
        """Send (topic, payload, retain) messages with QoS 1, in order, and return once the
        broker acknowledged all of them. Raises MqttError as soon as this session is lost:
        an acknowledgement that can no longer come is not waited for."""
        if client is not self.client:
            raise aiomqtt.MqttError("not connected")
        lost = self._lost
        # One deadline for the whole run (a per-message timeout costs a task per message).
        sends = asyncio.gather(
            *(
                client.publish(topic, payload, qos=1, retain=retain, timeout=math.inf)
                for topic, payload, retain in messages
            )
        )
        watch = asyncio.ensure_future(lost.wait())
        try:
            done, _ = await asyncio.wait(
                {sends, watch},
                timeout=PUBLISH_TIMEOUT + len(messages) / 100,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            watch.cancel()
        if sends not in done:
            sends.cancel()
            await asyncio.gather(sends, return_exceptions=True)
            why = "connection lost" if lost.is_set() else "no acknowledgement in time"
            raise aiomqtt.MqttError(f"{why} while waiting for acknowledgements")
        sends.result()  # raises the first failure
        self.status.acknowledged(len(messages))

    async def close(self) -> None:
        """Say ``offline`` (a clean stop does not trigger the will) and disconnect."""
        client = self.client
        if client is None:
            return
        with contextlib.suppress(Exception):
            await client.publish(self.status_topic, b"offline", qos=1, retain=True, timeout=2.0)
