"""Retained state topics and Home Assistant discovery, kept in step with the polls.

After every poll the daemon hands over the readings (``after_poll``: a dict update, no I/O,
so a slow or absent broker never slows a poll). Only the newest value per series is kept, so
memory stays bounded however long the broker is away; on (re)connection everything is sent
again, and a series that is new or renamed gets its discovery config sent at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import aiomqtt

from homepoll.model import Reading, SensorKey
from homepoll.mqtt import discovery
from homepoll.mqtt.link import PUBLISH_TIMEOUT, BrokerLink
from homepoll.mqtt.topics import DeviceSlugs, check_topic, slug

log = logging.getLogger("homepoll.mqtt")

HUB_TOPIC = "_hub"
"""``<base_topic>/_hub/<collector>``: a slug never starts with "_", so no device clashes."""


@dataclass
class Series:
    name: str
    unit: str
    topic: str
    payload: str | None = None
    state_sent: bool = False
    config_sent: str | None = None  # the discovery config last acknowledged, as sent


class TopicBook:
    """Series -> topics, shared by the state publisher and the events pump."""

    def __init__(self, base_topic: str) -> None:
        self.base = base_topic
        self.slugs = DeviceSlugs()

    def state_topic(self, key: SensorKey, name: str) -> str:
        device = self.slugs.get(key.source, key.device_id, name)
        return check_topic(f"{self.base}/{device}/{slug(key.metric)}", self.base)

    def events_topic(self, key: SensorKey, name: str) -> str:
        return check_topic(self.state_topic(key, name) + "/events", self.base)


class StatePublisher:
    """Sends state and discovery whenever something changed and the link is up."""

    def __init__(
        self,
        link: BrokerLink,
        book: TopicBook,
        *,
        discovery_prefix: str | None,
        intervals: dict[str, float],
        hubs: dict[str, str],
    ) -> None:
        self.link = link
        self.book = book
        self.prefix = discovery_prefix
        self.intervals = intervals
        self.hubs = hubs
        self.series: dict[SensorKey, Series] = {}
        self.hub_state: dict[str, tuple[str, bool]] = {}  # collector -> (payload, sent)
        self._hub_config_sent: set[str] = set()
        self._stale_topics: list[str] = []  # old state topics of renamed series, to clear
        self._wake = asyncio.Event()

    # -- fed by the daemon (no I/O) --------------------------------------------------------

    def prime(self, sensors: Iterable[tuple[str, str, str, str, str]]) -> None:
        """Known series in database order (source, device_id, name, metric, unit): the same
        devices get the same topics after a restart, before their first poll."""
        for source, device_id, name, metric, unit in sensors:
            self._track(SensorKey(source, device_id, metric), name, unit)

    def after_poll(self, collector: str, ok: bool, readings: list[Reading]) -> None:
        newest: dict[SensorKey, Reading] = {}
        for reading in readings:
            known = newest.get(reading.key)
            if known is None or reading.ts >= known.ts:
                newest[reading.key] = reading
        for key, reading in newest.items():
            series = self._track(key, reading.name, reading.unit)
            series.payload = discovery.state_payload(key.metric, reading.unit, reading.value)
            series.state_sent = False
        if collector in self.hubs:
            self.hub_state[collector] = ("1" if ok else "0", False)
        self._wake.set()

    def resend_all(self) -> None:
        """After a (re)connection or Home Assistant's birth message."""
        for series in self.series.values():
            series.state_sent = False
            series.config_sent = None
        self.hub_state = {name: (payload, False) for name, (payload, _) in self.hub_state.items()}
        self._hub_config_sent.clear()
        self._wake.set()

    def _track(self, key: SensorKey, name: str, unit: str) -> Series:
        series = self.series.get(key)
        if series is not None and series.name == name and series.unit == unit:
            return series
        topic = self.book.state_topic(key, name)
        if series is None:
            series = self.series[key] = Series(name, unit, topic)
            return series
        if topic != series.topic:
            log.info("%s renamed to %s: its topics move to %s", series.name, name, topic)
            self._stale_topics.append(series.topic)
        series.name, series.unit, series.topic = name, unit, topic
        series.state_sent = False
        return series

    # -- sending ---------------------------------------------------------------------------

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            await self.link.up.wait()
            self._wake.clear()
            client = self.link.client
            if client is None:
                continue
            try:
                await self._send_all(client)
            except (TimeoutError, aiomqtt.MqttError) as exc:
                log.debug("state publishing interrupted (%s); resent on reconnection", exc)

    async def _send_all(self, client: aiomqtt.Client) -> None:
        base = self.book.base
        while self._stale_topics:  # clear the retained value a renamed series left behind
            await self._send(client, self._stale_topics[0], b"", base)
            self._stale_topics.pop(0)
        for key, series in list(self.series.items()):
            if self.prefix:
                await self._send_config(client, key, series)
            if series.payload is not None and not series.state_sent:
                await self._send(client, series.topic, series.payload.encode(), base)
                series.state_sent = True
        for collector, (payload, sent) in list(self.hub_state.items()):
            if self.prefix and collector not in self._hub_config_sent:
                await self._send_hub_config(client, collector)
            if not sent:
                await self._send(client, self._hub_topic(collector), payload.encode(), base)
                self.hub_state[collector] = (payload, True)

    def _hub_topic(self, collector: str) -> str:
        return check_topic(f"{self.book.base}/{HUB_TOPIC}/{slug(collector)}", self.book.base)

    async def _send_config(self, client: aiomqtt.Client, key: SensorKey, series: Series) -> None:
        hub = discovery.hub_id(key.source, self.hubs.get(key.source, key.source))
        component, config = discovery.series_config(
            key,
            series.name,
            series.unit,
            state_topic=series.topic,
            availability_topic=self.link.status_topic,
            hub=hub,
            interval=self.intervals.get(key.source, 60.0),
        )
        text = json.dumps(config, sort_keys=True)
        if text == series.config_sent:
            return
        assert self.prefix is not None
        topic = discovery.discovery_topic(self.prefix, component, discovery.object_id(key))
        await self._send(client, topic, text.encode(), self.prefix)
        series.config_sent = text

    async def _send_hub_config(self, client: aiomqtt.Client, collector: str) -> None:
        assert self.prefix is not None
        where = self.hubs[collector]
        component, config = discovery.hub_config(
            collector,
            where,
            state_topic=self._hub_topic(collector),
            availability_topic=self.link.status_topic,
        )
        oid = discovery.hub_id(collector, where)
        topic = discovery.discovery_topic(self.prefix, component, oid)
        await self._send(client, topic, json.dumps(config, sort_keys=True).encode(), self.prefix)
        self._hub_config_sent.add(collector)

    async def _send(self, client: aiomqtt.Client, topic: str, payload: bytes, root: Any) -> None:
        await client.publish(
            check_topic(topic, root), payload, qos=1, retain=True, timeout=PUBLISH_TIMEOUT
        )
        self.link.status.acknowledged()
