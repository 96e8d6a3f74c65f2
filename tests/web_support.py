"""Helpers for the web face tests: a day of history in a real database, a real Chromium.

The browser is Debian's ``chromium`` in headless mode, driven over its DevTools protocol
(a websocket on 127.0.0.1, spoken with aiohttp's client, which the web extra brings anyway):
that is how a test sees every request the page makes, not only the HTML it ends up with.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import math
import re
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
)
PHONE = (390, 844, True)
DESKTOP = (1280, 900, False)


def collectors(setup: Any) -> dict[str, dict[str, Any]]:
    """status.json's collectors (empty while the daemon has not written it)."""
    try:
        status = json.loads((setup.data / "status.json").read_text())
    except (OSError, ValueError):
        return {}
    return status.get("collectors", {})


def get(url: str, timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    """One plain GET: (status, headers, body), HTTP errors included."""
    import urllib.error
    import urllib.request

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback, no proxy
    try:
        with opener.open(url, timeout=timeout) as answer:
            return answer.status, dict(answer.headers), answer.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _shape(metric: str, hours: float, index: int) -> float | None:
    """A plausible value of ``metric`` ``hours`` into the day (None: not this time)."""
    day = math.sin((hours - 9) / 24 * 2 * math.pi)
    wobble = math.sin(hours * 3.1 + index) * 0.3
    if metric == "temperature":
        return round(20.5 + 1.8 * day + index * 0.6 + wobble, 2)
    if metric == "humidity":
        return round(46 - 6 * day + index * 3 + wobble * 4, 1)
    if metric == "light_level":
        return round(max(0.0, math.sin((hours - 7) / 12 * math.pi)) * (180 + 60 * index), 1)
    if metric in ("pm25", "pm10"):
        cooking = math.exp(-(((hours % 24) - 19) ** 2) / 0.5) * 40
        return round(6 + index * 2 + cooking * (1.5 if metric == "pm10" else 1) + wobble * 3, 1)
    if metric in ("voc", "iaq"):
        return round(40 + 25 * math.exp(-(((hours % 24) - 19) ** 2) / 1.5) + wobble * 10, 0)
    if metric == "co":
        return round(1 + max(0.0, wobble), 1)
    return None


def seed_history(db: Path, hours: float = 26, now: float | None = None) -> int:
    """Readings every 5 min for the last ``hours`` for every stored sensor; returns rows added.

    Straight into the database file (as a day of earlier polls would have left it), older than
    anything the simulators serve, so the live readings stay the newest.
    """
    now_ms = int((now or time.time()) * 1000) - 120_000
    start_ms = now_ms - int(hours * 3600_000)
    rows = []
    with contextlib.closing(sqlite3.connect(db)) as conn:
        sensors = conn.execute("SELECT id, metric FROM sensors ORDER BY id").fetchall()
        for index, (sensor_id, metric) in enumerate(sensors):
            if metric in ("battery", "reachable"):
                value = 1.0 if metric == "reachable" else 80.0 - index
                rows.append((sensor_id, start_ms, value, start_ms))
                continue
            for ts in range(start_ms + (index * 7919) % 300_000, now_ms, 300_000):
                hours_in = (ts / 3600_000) % 24
                if metric == "presence":
                    busy = 7 <= hours_in < 8.5 or 18 + index % 3 <= hours_in < 22
                    rows.append((sensor_id, ts, 1.0 if busy else 0.0, ts))
                    continue
                value = _shape(metric, hours_in, index % 4)
                if value is not None:
                    rows.append((sensor_id, ts, value, ts))
        with conn:
            conn.executemany("INSERT OR IGNORE INTO readings VALUES (?, ?, ?, ?)", rows)
    return len(rows)


@dataclass
class PageVisit:
    """What one page load did: every URL it requested, the values read from the DOM."""

    requests: list[str] = field(default_factory=list)
    dom: Any = None
    screenshot: bytes = b""


class Chromium:
    """A headless Chromium with a fresh profile, driven over the DevTools protocol."""

    def __init__(self, profile: Path) -> None:
        binary = chromium_path()
        assert binary, "chromium is not installed"
        profile.mkdir(parents=True, exist_ok=True)
        self.log = profile.parent / f"{profile.name}.stderr"
        with self.log.open("w") as stderr:  # a file, not a pipe: chromium logs freely
            self.proc = subprocess.Popen(
                [
                    binary,
                    *CHROMIUM_FLAGS,
                    f"--user-data-dir={profile}",
                    "--remote-debugging-address=127.0.0.1",
                    "--remote-debugging-port=0",
                    "about:blank",
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
        self.endpoint = self._endpoint()
        self._ids = itertools.count(1)

    def _endpoint(self) -> str:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and self.proc.poll() is None:
            found = re.search(r"DevTools listening on (ws://\S+)", self.log.read_text())
            if found:
                return found.group(1)
            time.sleep(0.1)
        self.close()
        raise AssertionError(f"chromium did not open its DevTools endpoint: {self.log.read_text()}")

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def visit(self, url: str, size: tuple[int, int, bool], script: str, *, dark: bool = False):
        return asyncio.run(self._visit(url, size, script, dark))

    async def _visit(self, url: str, size: tuple[int, int, bool], script: str, dark: bool):
        import aiohttp

        visit = PageVisit()
        async with (
            aiohttp.ClientSession() as http,
            http.ws_connect(self.endpoint, max_msg_size=64 * 1024 * 1024) as ws,
        ):
            pending: dict[int, asyncio.Future] = {}
            loaded = asyncio.Event()

            async def reader() -> None:
                async for message in ws:
                    data = json.loads(message.data)
                    if "id" in data and data["id"] in pending:
                        pending.pop(data["id"]).set_result(data)
                    elif data.get("method") == "Network.requestWillBeSent":
                        visit.requests.append(data["params"]["request"]["url"])
                    elif data.get("method") == "Page.loadEventFired":
                        loaded.set()

            task = asyncio.create_task(reader())

            async def call(method: str, session: str | None = None, **params: Any) -> dict:
                ident = next(self._ids)
                future = asyncio.get_running_loop().create_future()
                pending[ident] = future
                message = {"id": ident, "method": method, "params": params}
                if session:
                    message["sessionId"] = session
                await ws.send_str(json.dumps(message))
                answer = await asyncio.wait_for(future, 30)
                assert "error" not in answer, answer
                return answer.get("result", {})

            target = (await call("Target.createTarget", url="about:blank"))["targetId"]
            session = (await call("Target.attachToTarget", targetId=target, flatten=True))[
                "sessionId"
            ]
            width, height, mobile = size

            async def viewport(tall: int) -> None:
                await call(
                    "Emulation.setDeviceMetricsOverride",
                    session,
                    width=width,
                    height=tall,
                    deviceScaleFactor=2 if mobile else 1,
                    mobile=mobile,
                )

            await call("Network.enable", session)
            await call("Page.enable", session)
            await viewport(height)
            scheme = "dark" if dark else "light"
            await call(
                "Emulation.setEmulatedMedia",
                session,
                features=[{"name": "prefers-color-scheme", "value": scheme}],
            )
            await call("Page.navigate", session, url=url)
            await asyncio.wait_for(loaded.wait(), 30)
            result = await call("Runtime.evaluate", session, expression=script, returnByValue=True)
            visit.dom = result["result"].get("value")
            metrics = await call("Page.getLayoutMetrics", session)
            await viewport(math.ceil(metrics["cssContentSize"]["height"]))
            shot = await call("Page.captureScreenshot", session, format="png")
            visit.screenshot = base64.b64decode(shot["data"])
            await call("Target.closeTarget", targetId=target)
            task.cancel()
        return visit


@contextlib.contextmanager
def chromium(profile: Path) -> Iterator[Chromium]:
    browser = Chromium(profile)
    try:
        yield browser
    finally:
        browser.close()
