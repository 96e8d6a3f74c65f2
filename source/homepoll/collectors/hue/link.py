"""Which way to talk to a bridge: HTTPS verified (chain + bridge id), pinned, or plain HTTP.

``transport: auto`` uses HTTPS wherever the bridge has it; plain HTTP only for a bridge with
no HTTPS at all (the round first-generation bridge, most deCONZ and diyHue set-ups), and
never again for a bridge on which HTTPS has worked (remembered in the data folder), so a
bridge that suddenly serves plain HTTP only does not get the key in clear text.
"""

from __future__ import annotations

import asyncio
import logging
import re
from pathlib import Path

from homepoll.collectors.hue.tls import (
    SELF_SIGNED_CODES,
    BridgeMemory,
    BridgeMemoryFile,
    fetch_certificate,
    verifying_context,
)
from homepoll.collectors.hue.transport import BridgeHttp, NoTls, TlsRefused
from homepoll.errors import PermanentError, TransientError

log = logging.getLogger("homepoll.collectors.hue")

_BRIDGE_ID = re.compile(r"^[0-9a-fA-F]{16}$")


def host_and_port(address: str, default: int) -> tuple[str, int]:
    """``host``, ``host:port``, ``[v6]`` or ``[v6]:port`` -> (host, port)."""
    if address.startswith("["):
        host, _, rest = address[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else default
    host, sep, port = address.rpartition(":")
    if sep and port.isdigit() and ":" not in host:
        return host, int(port)
    return address, default


class BridgeLink:
    """Owns the kept connection to one bridge and the decision of how to make it."""

    def __init__(
        self,
        address: str,
        *,
        transport: str,
        ca_file: Path | None,
        memory: BridgeMemoryFile,
        keepalive: float = 90.0,
    ) -> None:
        self.address = address
        self.transport = transport
        self.ca_file = ca_file
        self._memory_file = memory
        self.memory: BridgeMemory = memory.of(address)
        self._keepalive = keepalive
        self._http: BridgeHttp | None = None
        self._plain_announced = False

    @property
    def https(self) -> bool:
        return self._http is not None and self._http.scheme == "https"

    async def connection(self, timeout: float) -> BridgeHttp:
        """The kept connection, deciding HTTPS or HTTP on first use (may learn the id)."""
        if self._http is None:
            self._http = await self._open(timeout)
        return self._http

    async def aclose(self) -> None:
        http, self._http = self._http, None
        if http is not None:
            await http.aclose()

    async def forget_connection(self) -> None:
        """Decide again on the next attempt (after a redirect to HTTPS, say)."""
        await self.aclose()

    async def _open(self, timeout: float) -> BridgeHttp:
        if self.transport == "http":
            return self._plain()
        memory = self.memory
        if memory.bridge_id is None:
            try:
                await self._learn(timeout)
            except NoTls as exc:
                if self.transport == "https" or memory.https:
                    raise self.no_https(exc) from None
                if not self._plain_announced:
                    self._plain_announced = True
                    log.info(
                        "bridge %s has no HTTPS (%s); using plain HTTP (a round first-"
                        "generation Hue bridge, deCONZ or diyHue)",
                        self.address,
                        exc,
                    )
                return self._plain()
        context = verifying_context(ca_file=self.ca_file, pinned=memory.pinned_cert)
        return BridgeHttp(
            self.address,
            scheme="https",
            verify=context,
            server_name=memory.bridge_id,
            keepalive=self._keepalive,
        )

    def _plain(self) -> BridgeHttp:
        return BridgeHttp(self.address, scheme="http", keepalive=self._keepalive)

    def no_https(self, exc: Exception) -> TransientError:
        """The failure when HTTPS is required (configured, or it worked before) but absent."""
        why = (
            "HTTPS worked with this bridge before, so homepoll will not send the key over "
            "plain HTTP (remembered in hue_bridge.json in the data folder; delete its entry "
            "only if the bridge was really replaced)"
            if self.memory.https
            else "collectors.hue.transport is https"
        )
        return NoTls(f"{exc}; {why}")

    async def _learn(self, timeout: float) -> None:
        """Learn the bridge id from ``GET /api/config`` over a verified chain (no key sent);
        pin a self-signed certificate on first use."""
        memory = self.memory
        pinned = None
        try:
            answer = await self._config(
                verifying_context(ca_file=self.ca_file, check_id=False), timeout
            )
        except TlsRefused as exc:
            if exc.code not in SELF_SIGNED_CODES or self.ca_file is not None or memory.https:
                raise self.refused(exc) from None
            host, port = host_and_port(self.address, 443)
            pinned = await fetch_certificate(host, port, timeout)
            if pinned is None:
                raise self.refused(exc) from None
            answer = await self._config(verifying_context(pinned=pinned, check_id=False), timeout)
        bridge_id = answer.get("bridgeid") if isinstance(answer, dict) else None
        if not isinstance(bridge_id, str) or not _BRIDGE_ID.match(bridge_id):
            raise PermanentError(
                f"bridge {self.address} did not give a usable bridge id in /api/config; "
                "it cannot be verified over HTTPS (set collectors.hue.transport: http only "
                "for a bridge without a Hue certificate)"
            )
        memory.bridge_id = bridge_id.lower()
        if pinned is not None:
            memory.pinned_cert = pinned
            log.warning(
                "bridge %s (id %s) presents a self-signed certificate (an older Hue bridge): "
                "pinned it on first use in %s; a different certificate will be refused",
                self.address,
                memory.bridge_id,
                self._memory_file.path or "memory",
            )
        await asyncio.to_thread(self._memory_file.save)

    async def _config(self, context, timeout: float) -> object:
        probe = BridgeHttp(self.address, scheme="https", verify=context)
        try:
            answer = await probe.request("GET", "/api/config", timeout=timeout)
        finally:
            await probe.aclose()
        if answer.status != 200 or answer.json is None:
            raise TransientError(
                f"bridge {self.address} answered /api/config with HTTP {answer.status}"
            )
        return answer.json

    def refused(self, exc: TlsRefused) -> TlsRefused:
        if exc.code == 62 or "hostname" in str(exc).lower() or "IP address" in str(exc):
            what = (
                f"its certificate is for another bridge than the one paired "
                f"(id {self.memory.bridge_id})"
            )
        elif exc.code in SELF_SIGNED_CODES:
            what = "its certificate is self-signed and differs from the one pinned"
        else:
            what = "its certificate is not issued by the Hue root CA" + (
                f" nor by {self.ca_file}" if self.ca_file else ""
            )
        return TlsRefused(
            f"refusing bridge {self.address}: {what}; no request carrying the key was sent. "
            "If this really is your bridge, pair again (homepoll hue-pair) or set "
            "collectors.hue.ca_file",
            exc.code,
        )

    async def https_worked(self) -> None:
        """Remember that HTTPS works with this bridge: never plain HTTP for it again."""
        if not self.memory.https:
            self.memory.https = True
            log.info(
                "HTTPS works with bridge %s (id %s); plain HTTP will not be used for it again",
                self.address,
                self.memory.bridge_id,
            )
            await asyncio.to_thread(self._memory_file.save)
