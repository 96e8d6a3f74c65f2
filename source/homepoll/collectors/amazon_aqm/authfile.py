"""``amazon_auth.json``: the registered device's refresh token, serial, marketplace and cookies.

Written by ``homepoll amazon-login`` and by the daemon when it renews the cookies, always
atomically with mode 0600. The password and the one-time code are never part of it.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from homepoll.fsutil import write_secret_file
from homepoll.safetext import register_secret

FORMAT_VERSION = 1


@dataclass
class AuthData:
    """What the collector needs to renew its own session, for months, without a person."""

    refresh_token: str
    device_serial: str
    marketplace: str  # "amazon.de": the account's own, found after sign-in
    cookies: dict[str, str] = field(default_factory=dict)  # the marketplace's cookies only
    cookies_renewed_at: float = 0.0  # unix seconds; 0 = never (an imported token)
    alexa_host: str | None = None  # "alexa.amazon.de", as /api/welcome answered
    created_at: float = field(default_factory=time.time)

    def register_secrets(self) -> None:
        """Have every log line, status and alert mask the token and the cookie values."""
        register_secret(self.refresh_token)
        for value in self.cookies.values():
            register_secret(value)


def load_auth_file(path: Path) -> AuthData:
    """Read and check the file; OSError when unreadable, ValueError (no secret in it) when bad."""
    text = Path(path).read_text(encoding="utf-8")
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(raw, dict):
        raise ValueError("not a JSON object")
    return _from_raw(raw)


def _from_raw(raw: dict[str, Any]) -> AuthData:
    token = raw.get("refresh_token")
    if not isinstance(token, str) or not token.strip():
        raise ValueError("no refresh_token in it")
    serial = raw.get("device_serial")
    marketplace = raw.get("marketplace")
    if not isinstance(serial, str) or not isinstance(marketplace, str) or not marketplace:
        raise ValueError("device_serial or marketplace missing")
    cookies = raw.get("cookies") or {}
    if not isinstance(cookies, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in cookies.items()
    ):
        raise ValueError("cookies must be a name -> value mapping")
    renewed = raw.get("cookies_renewed_at") or 0.0
    host = raw.get("alexa_host")
    data = AuthData(
        refresh_token=token.strip(),
        device_serial=serial,
        marketplace=marketplace,
        cookies=dict(cookies),
        cookies_renewed_at=float(renewed) if isinstance(renewed, int | float) else 0.0,
        alexa_host=host if isinstance(host, str) else None,
    )
    created = raw.get("created_at")
    if isinstance(created, int | float):
        data.created_at = float(created)
    data.register_secrets()
    return data


def save_auth_file(path: Path, data: AuthData) -> None:
    """Atomically, 0600, so a crash mid-write leaves the old file whole."""
    payload = {"version": FORMAT_VERSION, **asdict(data)}
    write_secret_file(Path(path), json.dumps(payload, indent=2, sort_keys=True) + "\n")
