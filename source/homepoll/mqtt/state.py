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
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial

import aiomqtt

from homepoll.model import Reading, SensorKey
from homepoll.mqtt import discovery
from homepoll.mqtt.link import BrokerLink
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
    config_sent: tuple[str, str, str] | None = None  # (name, unit, topic) HA last got


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
        """Everything not yet sent, as one run of QoS 1 messages; marked sent only once the
        broker acknowledged all of it (a lost link leaves it for the next connection)."""
        base, prefix = self.book.base, self.prefix
        messages: list[tuple[str, bytes, bool]] = []
        done: list[Callable[[], None]] = []

        def add(topic: str, payload: bytes, root: str, then: Callable[[], None]) -> None:
            messages.append((check_topic(topic, root), payload, True))
            done.append(then)

        stale = list(self._stale_topics)  # clear the retained value a renamed series left
        for topic in stale:
            add(topic, b"", base, lambda: None)
        for key, series in list(self.series.items()):
            if prefix:
                config = self._config(key, series)
                if config[1] != series.config_sent:
                    add(
                        config[0],
                        config[1].encode(),
                        prefix,
                        _setter(series, "config_sent", config[1]),
                    )
            if series.payload is not None and not series.state_sent:
                add(
                    series.topic, series.payload.encode(), base, _setter(series, "state_sent", True)
                )
        for collector, (payload, sent) in list(self.hub_state.items()):
            if prefix and collector not in self._hub_config_sent:
                topic, text = self._hub_config(collector)
                add(topic, text.encode(), prefix, partial(self._hub_config_sent.add, collector))
            if not sent:
                add(
                    self._hub_topic(collector),
                    payload.encode(),
                    base,
                    partial(self.hub_state.__setitem__, collector, (payload, True)),
                )
        if not messages:
            return
        await self.link.publish(client, messages)
        del self._stale_topics[: len(stale)]
        for then in done:
            then()

    def _hub_topic(self, collector: str) -> str:
        return check_topic(f"{self.book.base}/{HUB_TOPIC}/{slug(collector)}", self.book.base)

    def _config(self, key: SensorKey, series: Series) -> tuple[str, str]:
        """(discovery topic, config as JSON text) of one series."""
        assert self.prefix is not None
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
        topic = discovery.discovery_topic(self.prefix, component, discovery.object_id(key))
        return topic, json.dumps(config, sort_keys=True)

    def _hub_config(self, collector: str) -> tuple[str, str]:
        assert self.prefix is not None
        where = self.hubs[collector]
        component, config = discovery.hub_config(
            collector,
            where,
            state_topic=self._hub_topic(collector),
            availability_topic=self.link.status_topic,
        )
        topic = discovery.discovery_topic(
            self.prefix, component, discovery.hub_id(collector, where)
        )
        return topic, json.dumps(config, sort_keys=True)


def _setter(series: Series, field: str, value: object) -> Callable[[], None]:
    """Mark ``series`` sent only if nothing changed it while the messages were on their way."""
    before = (series.topic, series.payload)

    def apply() -> None:
        if (series.topic, series.payload) == before:
            setattr(series, field, value)

    return apply
