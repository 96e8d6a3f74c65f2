"""The MQTT side of the daemon: link, state/discovery publisher and events pump, wired.

The daemon talks to ``MqttService`` only: ``start()`` before the first poll, ``after_poll()``
after each one (no I/O), ``stop()`` at shutdown, ``status`` for `status`, /metrics and the
dashboard.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from homepoll.mqtt.events import EventPump
from homepoll.mqtt.link import BrokerLink, client_id
from homepoll.mqtt.state import StatePublisher, TopicBook
from homepoll.mqtt.status import MqttStatus, OfflineAlert

log = logging.getLogger("homepoll.mqtt")

_COLLECTORS = ("hue", "amazon_aqm")
DRAIN_SECONDS = 2.0
"""At shutdown, how long events committed by the final flush may take to go out (systemd
allows 10 s in all; what is left goes after the next start)."""


def _hub_names(config: Any) -> dict[str, str]:
    """What each collector reaches its devices through, for the hub devices in HA."""
    return {"hue": str(config.hue.bridge), "amazon_aqm": str(config.amazon_aqm.domain)}


def known_sensors(path: Path) -> list[tuple[str, str, str, str, str]]:
    """(source, device_id, name, metric, unit) of every stored series, oldest first."""
    if not Path(path).is_file():
        return []
    conn = sqlite3.connect(Path(path).absolute().as_uri() + "?mode=ro", uri=True, timeout=5.0)
    try:
        return list(
            conn.execute("SELECT source, device_id, name, metric, unit FROM sensors ORDER BY id")
        )
    except sqlite3.Error:
        return []
    finally:
        conn.close()


def _report_crash(task: asyncio.Task) -> None:
    """A publisher task must never end before stop(); if one does, say so loudly."""
    if not task.cancelled() and task.exception() is not None:
        log.error("MQTT: a publisher stopped unexpectedly", exc_info=task.exception())


class MqttService:
    def __init__(
        self, config: Any, on_change: Callable[[MqttStatus], Awaitable[None]] | None = None
    ) -> None:
        settings = config.mqtt
        self.config = config
        self.db_path = Path(config.storage.path)
        self.status = MqttStatus(broker=f"{settings.host}:{settings.port}")
        alert = OfflineAlert(
            Path(config.data_dir), config.alerts.offline_after, command=config.alerts.command
        )
        self.book = TopicBook(settings.base_topic)
        self.link = BrokerLink(
            settings,
            identifier=client_id(Path(config.data_dir)),
            status=self.status,
            alert=alert,
            on_up=self._on_up,
            on_ha_online=self._on_ha_online,
            on_change=on_change,
        )
        self.state = StatePublisher(
            self.link,
            self.book,
            discovery_prefix=settings.discovery_prefix,
            intervals={name: float(getattr(config, name).interval) for name in _COLLECTORS},
            hubs=_hub_names(config),
        )
        self.events = EventPump(self.link, self.book, self.db_path) if settings.events else None
        self._tasks: list[asyncio.Task] = []

    async def start(self) -> None:
        """Before the first poll: learn the known series, create the events outbox."""
        self.state.prime(await asyncio.to_thread(known_sensors, self.db_path))
        if self.events is not None:
            await self.events.start()
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self.link.run()), loop.create_task(self.state.run())]
        if self.events is not None:
            self._tasks.append(loop.create_task(self.events.run()))
        for task in self._tasks:
            task.add_done_callback(_report_crash)
        log.info(
            "MQTT: publishing to %s under %s/ (discovery %s, events %s)",
            self.status.broker,
            self.book.base,
            self.config.mqtt.discovery_prefix or "off",
            "on" if self.events is not None else "off",
        )

    def after_poll(self, report: Any) -> None:
        self.state.after_poll(report.collector, report.ok, report.readings)
        if self.events is not None:
            self.events.nudge()

    async def _on_up(self) -> None:
        self.state.resend_all()
        if self.events is not None:
            self.events.nudge()

    def _on_ha_online(self) -> None:
        self.state.resend_all()

    async def stop(self) -> None:
        """After storage's final flush: drain briefly, say offline, disconnect."""
        if self.events is not None:
            with contextlib.suppress(Exception):
                if not await self.events.drain(DRAIN_SECONDS):
                    log.info("MQTT: %s events left for the next start", self.status.backlog)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.link.close(), 3.0)
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5.0)
        if self.events is not None:
            await self.events.close()
