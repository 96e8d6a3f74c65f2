"""Every stored reading, in database order, on ``<base_topic>/<device>/<metric>/events``.

Reads the outbox (``outbox.py``) in batches of ``BATCH`` rows, publishes them with QoS 1,
and moves the cursor only once the broker has acknowledged the whole batch. A lost link or
a killed daemon repeats at most that batch (at-least-once delivery), never skips a reading;
memory is one batch whatever the backlog. SQLite work runs in a thread of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aiomqtt

from homepoll.model import SensorKey
from homepoll.mqtt import outbox
from homepoll.mqtt.discovery import MAX_NAME
from homepoll.mqtt.link import BrokerLink
from homepoll.mqtt.state import TopicBook
from homepoll.safetext import one_line

log = logging.getLogger("homepoll.mqtt")

BATCH = 200
RETRY_PAUSE = 5.0
IDLE_CHECK = 30.0
"""Seconds between looks at the outbox when nothing nudged the pump (``homepoll once``)."""


def event_payload(event: outbox.Event) -> bytes:
    """``{"ts": unix ms, "value": ..., "unit": ..., "name": ...}``; a name's control
    characters are escaped (``\x1b``), so no consumer ever gets them raw."""
    name = one_line(event.name, MAX_NAME)
    body = {"ts": event.ts, "value": event.value, "unit": event.unit, "name": name}
    return json.dumps(body, separators=(",", ":")).encode()


class EventPump:
    def __init__(self, link: BrokerLink, book: TopicBook, db_path: Path) -> None:
        self.link = link
        self.book = book
        self.db_path = Path(db_path)
        self.status = link.status
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="homepoll-mqtt-db")
        self._conn: sqlite3.Connection | None = None
        self._wake = asyncio.Event()
        self._sent_upto = 0  # highest seq handed to a client in this process
        self._cursor = 0

    async def _db(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _open(self) -> int:
        self._conn = outbox.connect(self.db_path)
        outbox.start_capture(self._conn)
        return outbox.cursor(self._conn)

    async def start(self) -> None:
        """Create the outbox and its trigger; before the first poll, so no reading slips by."""
        self._cursor = await self._db(self._open)
        self.status.events_enabled = True
        self.status.backlog = await self._db(outbox.backlog, self._conn)

    def nudge(self) -> None:
        """A poll finished: storage may have committed new readings."""
        self._wake.set()

    async def drain(self, timeout: float) -> bool:
        """At shutdown: give what the final flush committed ``timeout`` seconds to go out
        (whatever does not is sent after the next start). True when nothing is left."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        self.nudge()
        while self._conn is not None and self.link.up.is_set():
            left = await self._db(outbox.backlog, self._conn)
            self.status.backlog = left
            if not left:
                return True
            if loop.time() >= deadline:
                break
            await asyncio.sleep(0.05)
        return False

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await self._db(conn.close)
        self._executor.shutdown(wait=False)

    async def run(self) -> None:
        while True:
            client = self.link.client
            if client is None or not self.link.up.is_set():
                await self._while_down()
                continue
            try:
                batch = await self._db(outbox.read_batch, self._conn, self._cursor, BATCH)
            except sqlite3.Error as exc:
                log.warning("reading the MQTT events outbox failed (%s); retrying", exc)
                await asyncio.sleep(IDLE_CHECK)
                continue
            if not batch:
                self.status.backlog = 0
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), IDLE_CHECK)
                continue
            try:
                await self._publish(client, batch)
            except (aiomqtt.MqttError, TimeoutError) as exc:
                log.debug(
                    "events interrupted at seq %d (%s); resent after reconnection",
                    batch[0].seq,
                    exc,
                )
                await self._wait_for_new_link(client)
                continue
            last = batch[-1].seq
            try:
                await self._db(outbox.acknowledge, self._conn, last)
            except sqlite3.Error as exc:  # the batch is sent again later: duplicates, no gap
                log.warning("saving the MQTT events cursor failed (%s); retrying", exc)
                await asyncio.sleep(1.0)
                continue
            self._cursor = last
            self.status.events_published += len(batch)
            self.status.backlog = await self._db(outbox.backlog, self._conn)

    async def _publish(self, client: aiomqtt.Client, batch: list[outbox.Event]) -> None:
        """All of ``batch``, in order (one connection keeps the order); returns once the
        broker acknowledged every message."""
        messages = []
        for event in batch:
            key = SensorKey(event.source, event.device_id, event.metric)
            if event.seq <= self._sent_upto:
                self.status.events_repeated += 1
            messages.append((self.book.events_topic(key, event.name), event_payload(event), False))
        self._sent_upto = max(self._sent_upto, batch[-1].seq)
        await self.link.publish(client, messages)

    async def _while_down(self) -> None:
        """Keep the backlog figure true while the broker is away (one O(1) query after
        each poll), until the link is up again."""
        self._wake.clear()
        with contextlib.suppress(sqlite3.Error):
            self.status.backlog = await self._db(outbox.backlog, self._conn)
        up = asyncio.ensure_future(self.link.up.wait())
        woken = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait({up, woken}, timeout=IDLE_CHECK, return_when="FIRST_COMPLETED")
        finally:
            up.cancel()
            woken.cancel()

    async def _wait_for_new_link(self, old: aiomqtt.Client) -> None:
        """Let the link notice the loss and reconnect (or, if the link is fine and only slow,
        try again after a pause); never spin on a dead client."""
        for _ in range(int(RETRY_PAUSE / 0.2)):
            if self.link.client is not old or not self.link.up.is_set():
                return
            await asyncio.sleep(0.2)
