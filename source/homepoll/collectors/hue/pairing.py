"""Pairing: register homepoll with a Hue bridge (link button) or a deCONZ gateway (Phoscon).

A Hue bridge answers ``POST /api`` with error 101 until its link button is pressed; deCONZ
answers HTTP 403 with the same error 101 until "Authenticate app" is clicked in Phoscon
(Gateway -> Advanced). Either way: keep asking while the answer is error 101, whatever the
HTTP status, until the window closes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from homepoll.collectors.hue.transport import (
    BridgeHttp,
    check_status,
    hue_error,
    raise_hue_error,
)
from homepoll.errors import AuthError, PermanentError

PAIR_WINDOW = 30.0
"""Seconds a link-button press allows pairing (Hue API v1); Phoscon allows 60 s."""

PROMPT = (
    "Press the round link button on the Hue bridge at {bridge} now, or on a deCONZ gateway "
    'click "Authenticate app" in Phoscon (Gateway > Advanced); waiting {wait:g} s...'
)


async def pair_with(
    http: BridgeHttp,
    hostname: str,
    *,
    attempts_for: float = PAIR_WINDOW,
    interval: float = 1.0,
    timeout: float = 5.0,
    on_waiting: Callable[[], None] | None = None,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> str:
    """POST /api until the bridge hands out a key; return it. Retries while error 101."""
    bridge = http.bridge
    give_up_at = clock() + attempts_for
    body = {"devicetype": f"homepoll#{hostname}"[:40]}
    while True:
        answer = await http.request("POST", "/api", body=body, timeout=timeout)
        data = answer.json
        error = hue_error(data)
        if error is None or error.get("type") != 101:
            check_status(answer, bridge, None)
            if isinstance(data, list) and data and isinstance(data[0], dict):
                success = data[0].get("success")
                if isinstance(success, dict) and isinstance(success.get("username"), str):
                    return success["username"]
            if error is not None:
                raise_hue_error(error, bridge, None)
            raise PermanentError(f"bridge {bridge} answered the pairing request unexpectedly")
        if clock() + interval > give_up_at:
            raise AuthError(
                f'link button not pressed (or Phoscon\'s "Authenticate app" not clicked) '
                f"within {attempts_for:g} s"
            )
        if on_waiting is not None:
            on_waiting()
        await sleep(interval)


async def pair(
    bridge: str,
    hostname: str,
    *,
    transport: str = "auto",
    ca_file: Path | None = None,
    data_dir: Path | None = None,
    timeout: float = 5.0,
    **options: Any,
) -> str:
    """Pair over the same link a poll would use: HTTPS verified where the bridge has it (the
    POST goes to ``https://.../api`` directly; a followed redirect would turn it into a GET),
    plain HTTP only for a bridge without HTTPS. What was learned is remembered in
    ``data_dir``."""
    from homepoll.collectors.hue.link import BridgeLink
    from homepoll.collectors.hue.tls import BridgeMemoryFile

    link = BridgeLink(
        bridge, transport=transport, ca_file=ca_file, memory=BridgeMemoryFile.load(data_dir)
    )
    try:
        http = await link.connection(timeout)
        key = await pair_with(http, hostname, timeout=timeout, **options)
        if link.https:
            await link.https_worked()
        return key
    finally:
        await link.aclose()
