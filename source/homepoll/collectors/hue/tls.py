"""Trusting a bridge's certificate, and what homepoll remembers about each bridge.

A Hue bridge's certificate is issued by Signify's private root (shipped with homepoll as
``hue_roots.pem``) with the **bridge id** as its subject CN and no subjectAltName: not the
IP address a user configures. So the check is: the chain ends at that root (or the user's
``ca_file``), and the CN equals the bridge id (case-insensitively). The second half is
OpenSSL's own host-name check run against the bridge id: httpx sends the id as the TLS
server name, and Python's ``hostname_checks_common_name`` matches it against a SAN-less
certificate's CN, during the handshake, before a byte of the request (with the key) is sent.

Older square bridges present a self-signed certificate: it is pinned on first use (logged)
and only that exact certificate is accepted afterwards.

``hue_bridge.json`` in the data folder remembers, per configured bridge address, its id, a
pinned certificate, whether HTTPS has worked (then plain HTTP is never used again for it)
and whether it speaks CLIP v2. Nothing in it is secret.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from homepoll.fsutil import atomic_write_text

log = logging.getLogger("homepoll.collectors.hue")

STATE_FILE = "hue_bridge.json"
# OpenSSL verify codes (X509_V_ERR_*) that say "self-signed", as opposed to "another CA".
SELF_SIGNED_CODES = frozenset({18, 19})


def hue_roots() -> str:
    """The Hue root CAs shipped with homepoll (PEM)."""
    return resources.files("homepoll.collectors.hue").joinpath("hue_roots.pem").read_text()


def verifying_context(
    *, ca_file: Path | None = None, pinned: str | None = None, check_id: bool = True
) -> ssl.SSLContext:
    """Trust only the Hue roots (or ``ca_file``, or one pinned certificate).

    ``check_id``: the certificate's CN must equal the TLS server name httpx sends, which
    homepoll sets to the bridge id. Off only to learn that id from ``/api/config`` (no key
    is sent on such a connection).
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if pinned is not None:
        context.load_verify_locations(cadata=pinned)
    elif ca_file is not None:
        context.load_verify_locations(cafile=str(ca_file))
    else:
        context.load_verify_locations(cadata=hue_roots())
    context.verify_mode = ssl.CERT_REQUIRED
    context.check_hostname = check_id
    context.hostname_checks_common_name = True  # Hue certificates carry no SAN
    context.verify_flags &= ~ssl.VERIFY_X509_PARTIAL_CHAIN  # a pinned leaf must be self-signed
    return context


async def fetch_certificate(host: str, port: int, timeout: float) -> str | None:
    """The certificate a server presents (PEM), unverified: for a pin on first use only."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        async with asyncio.timeout(timeout):
            _, writer = await asyncio.open_connection(host, port, ssl=context)
            try:
                der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
            finally:
                writer.close()
                await writer.wait_closed()
    except (OSError, TimeoutError, ssl.SSLError):
        return None
    return ssl.DER_cert_to_PEM_cert(der) if der else None


@dataclass
class BridgeMemory:
    """What homepoll learned about one bridge address."""

    bridge_id: str | None = None
    https: bool = False  # HTTPS has worked: never plain HTTP again
    pinned_cert: str | None = None  # a self-signed certificate accepted on first use
    v2: bool | None = None  # None: not probed yet


@dataclass
class BridgeMemoryFile:
    """``<data_dir>/hue_bridge.json``; in memory only when there is no data folder."""

    path: Path | None
    bridges: dict[str, BridgeMemory] = field(default_factory=dict)

    @classmethod
    def load(cls, folder: Path | None) -> BridgeMemoryFile:
        path = folder / STATE_FILE if folder is not None else None
        memory = cls(path)
        if path is None:
            return memory
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return memory
        except (OSError, ValueError) as exc:
            log.warning("cannot read %s (%s): starting without it", path, exc)
            return memory
        known = set(BridgeMemory.__dataclass_fields__)
        for address, values in (raw.get("bridges") or {}).items() if isinstance(raw, dict) else ():
            if isinstance(values, dict):
                memory.bridges[address] = BridgeMemory(
                    **{k: v for k, v in values.items() if k in known}
                )
        return memory

    def of(self, address: str) -> BridgeMemory:
        return self.bridges.setdefault(address, BridgeMemory())

    def save(self) -> None:
        if self.path is None:
            return
        data: dict[str, Any] = {
            "about": "what homepoll learned about each Hue bridge; delete an entry after "
            "replacing a bridge",
            "bridges": {a: asdict(m) for a, m in sorted(self.bridges.items())},
        }
        try:
            atomic_write_text(self.path, json.dumps(data, indent=2) + "\n")
        except OSError as exc:
            log.warning("cannot write %s: %s", self.path, exc.strerror or exc)
