"""One async HTTP(S) path to a Hue bridge, deCONZ gateway or diyHue, on httpx.

One ``httpx.AsyncHTTPTransport`` per collector, kept across polls (a TLS handshake is paid once per
connection, not per poll) and closed by ``aclose`` on reload and stop. Each exchange is bounded
as a whole by cancellation (``asyncio.timeout``), not per socket read, so a server that drips
its answer cannot hold a poll past its deadline, and no thread ever sits in a socket: httpx
cancels the read and closes the connection. Every failure becomes a taxonomy error whose
message names the bridge but never the request path (it contains the key) nor the key.
"""

from __future__ import annotations

import asyncio
import json
import math
import socket
import ssl
from typing import Any

import httpx

from homepoll import __version__
from homepoll.capped import CappedBuffer
from homepoll.errors import (
    AuthError,
    CollectorError,
    PermanentError,
    PollTimeout,
    RateLimitedError,
    TransientError,
)
from homepoll.safetext import one_line

USER_AGENT = f"homepoll/{__version__}"
MAX_BODY = 5_000_000
"""Largest answer read from the bridge; a real sensors list is tens of kB, v2 a few hundred."""


class TlsRefused(PermanentError):
    """The bridge's certificate was not accepted; ``code`` is OpenSSL's verify code, if any."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class NoTls(TransientError):
    """Nothing speaking TLS answered on the HTTPS address (refused, or plain HTTP there)."""


def retry_after(value: str | None) -> float | None:
    """Seconds from a numeric Retry-After header; None when absent or not a number."""
    try:
        seconds = float(value) if value is not None else math.nan
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def hue_error(answer: Any) -> dict[str, Any] | None:
    """The first Hue error of a ``[{"error": {...}}]`` answer, else None."""
    if isinstance(answer, list) and answer and isinstance(answer[0], dict):
        error = answer[0].get("error")
        if isinstance(error, dict):
            return error
    return None


def raise_hue_error(error: dict[str, Any], bridge: str, key: str | None) -> None:
    """Map a v1 error object (Hue, deCONZ, diyHue) to the taxonomy."""
    kind = error.get("type")
    description = one_line(error.get("description", ""), 200, [key])
    if kind == 1:
        raise AuthError("the bridge rejected homepoll's key (Hue error 1: unauthorized user)")
    if kind == 901:
        raise TransientError(f"bridge {bridge} reported an internal error (Hue error 901)")
    if kind == 3:
        raise PermanentError(
            f"bridge {bridge} says the resource is not available (Hue error 3: {description})"
        )
    raise PermanentError(f"bridge {bridge} answered Hue error {kind}: {description}")


class Answer:
    """A bridge's answer: HTTP status, headers and the decoded JSON body (None if not JSON)."""

    __slots__ = ("body", "headers", "json", "status")

    def __init__(self, status: int, headers: httpx.Headers, body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        try:
            self.json: Any = json.loads(body.decode("utf-8")) if body else None
        except (UnicodeDecodeError, ValueError, RecursionError):
            self.json = None


def check_status(answer: Answer, bridge: str, key: str | None) -> None:
    """Map a non-2xx HTTP status to the taxonomy.

    A Hue bridge answers API errors as 200 + error list; deCONZ and CLIP v2 use HTTP
    401/403 for a bad key, with the same error body (v1) or an ``errors`` list (v2).
    A 503 from a bridge is load, like 429: the retry policy waits ``rate_limit_delay``
    (or Retry-After) when that fits the poll's deadline, else pushes the next poll back.
    """
    status = answer.status
    if 200 <= status < 300:
        return
    if status in (401, 403):
        error = hue_error(answer.json)
        if error is not None and error.get("type") != 1:
            raise_hue_error(error, bridge, key)
        raise AuthError(f"the bridge rejected homepoll's key (HTTP {status}: unauthorized user)")
    if status in (429, 503):
        what = "too many requests" if status == 429 else "overloaded"
        raise RateLimitedError(
            f"bridge {bridge} answered HTTP {status} ({what})",
            retry_after(answer.headers.get("Retry-After")),
        )
    if 300 <= status < 400:
        # Never quote Location: it repeats the path, which contains the key.
        location = answer.headers.get("Location", "").lower()
        if location.startswith("https:") or not location:
            raise PermanentError(
                f"bridge {bridge} answered HTTP {status} with a redirect to HTTPS: it serves "
                "HTTPS only (a Hue Bridge Pro, or a bridge whose firmware dropped HTTP); set "
                "collectors.hue.transport to auto or https"
            )
        raise PermanentError(
            f"bridge {bridge} answered HTTP {status} (a redirect); homepoll does not follow "
            "redirects from a bridge"
        )
    error = hue_error(answer.json)
    if error is not None:
        raise_hue_error(error, bridge, key)
    if status >= 500 or status == 408:
        raise TransientError(f"bridge {bridge} answered HTTP {status}")
    raise PermanentError(f"bridge {bridge} answered HTTP {status}")


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception and every cause/context behind it (httpx wraps httpcore wraps anyio)."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not e for e in seen):
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def _first(exc: BaseException, kind: type[BaseException]) -> Any:
    return next((e for e in _chain(exc) if isinstance(e, kind)), None)


class BridgeHttp:
    """The kept connection to one bridge: one request at a time, bounded by cancellation."""

    def __init__(
        self,
        bridge: str,
        *,
        scheme: str = "http",
        verify: ssl.SSLContext | bool = False,
        server_name: str | None = None,
        keepalive: float = 90.0,
    ) -> None:
        self.bridge = bridge
        self.scheme = scheme
        self.server_name = server_name
        self._base = httpx.URL(f"{scheme}://{bridge}")
        # The transport alone, not an AsyncClient: a bridge needs none of the client's layers
        # (cookies, auth, redirects, proxies from the environment; a followed redirect would
        # turn POST /api into GET, or leak the key), and skipping them is 0.1 ms per poll.
        self._transport = httpx.AsyncHTTPTransport(
            verify=verify,
            trust_env=False,
            limits=httpx.Limits(
                max_connections=1, max_keepalive_connections=1, keepalive_expiry=keepalive
            ),
        )

    async def aclose(self) -> None:
        await self._transport.aclose()

    async def request(
        self,
        method: str,
        path: str,
        *,
        timeout: float,
        body: Any = None,
        headers: dict[str, str] | None = None,
        secret: str | None = None,
    ) -> Answer:
        """One exchange, the whole of it (connect, TLS, answer, body) within ``timeout`` s."""
        bridge = self.bridge
        content = None if body is None else json.dumps(body).encode()
        sent = {"User-Agent": USER_AGENT, **(headers or {})}
        if content is not None:
            sent["Content-Type"] = "application/json"
        extensions: dict[str, Any] = {
            "timeout": {"connect": timeout, "read": timeout, "write": timeout, "pool": timeout}
        }
        if self.server_name:
            extensions["sni_hostname"] = self.server_name
        try:
            async with asyncio.timeout(timeout):
                request = httpx.Request(
                    method,
                    self._base.join(path),
                    content=content,
                    headers=sent,
                    extensions=extensions,
                )
                response = await self._transport.handle_async_request(request)
                try:
                    raw = await _read_capped(response, bridge)
                finally:
                    await response.aclose()
        except (TimeoutError, httpx.TimeoutException):
            raise PollTimeout(f"bridge {bridge} did not answer within {timeout:.2g} s") from None
        except CollectorError:
            raise
        except httpx.ConnectError as exc:
            raise _connect_error(exc, bridge, self.scheme) from None
        except httpx.RemoteProtocolError as exc:
            text = str(exc).lower()
            if "without sending" in text or "disconnected" in text:
                raise TransientError(
                    f"bridge {bridge} closed the connection without answering"
                ) from None
            raise TransientError(
                f"bridge {bridge} sent a malformed HTTP answer ({type(exc).__name__})"
            ) from None
        except (httpx.ReadError, httpx.WriteError):
            raise TransientError(f"bridge {bridge} reset the connection") from None
        except (httpx.InvalidURL, httpx.UnsupportedProtocol, httpx.LocalProtocolError):
            # str(exc) may quote the request path, which contains the key.
            raise PermanentError(
                f"cannot build a request for bridge {bridge!r} (bad address, or the Hue key "
                "contains spaces or control characters)"
            ) from None
        except UnicodeError:
            raise PermanentError("the Hue key contains characters that cannot be sent") from None
        except httpx.HTTPError as exc:
            raise TransientError(
                f"talking to bridge {bridge} failed ({type(exc).__name__})"
            ) from None
        return Answer(response.status_code, response.headers, raw)


def _connect_error(exc: httpx.ConnectError, bridge: str, scheme: str) -> CollectorError:
    tls = _first(exc, ssl.SSLError)
    if isinstance(tls, ssl.SSLCertVerificationError):
        return TlsRefused(
            f"bridge {bridge}: its HTTPS certificate was refused ({tls.verify_message}); "
            "no request was sent",
            tls.verify_code,
        )
    if tls is not None:
        return NoTls(
            f"bridge {bridge} does not speak HTTPS at {scheme}://{bridge} "
            f"({getattr(tls, 'reason', None) or type(tls).__name__})"
        )
    if _first(exc, ConnectionRefusedError) is not None:
        if scheme == "https":
            return NoTls(f"bridge {bridge} refused the HTTPS connection")
        return TransientError(f"bridge {bridge} refused the connection")
    if _first(exc, socket.gaierror) is not None:
        return TransientError(f"cannot resolve the bridge's host name {bridge}")
    reason = next((e.strerror for e in _chain(exc) if isinstance(e, OSError) and e.strerror), None)
    return TransientError(f"cannot reach bridge {bridge}: {reason or type(exc).__name__}")


async def _read_capped(response: httpx.Response, bridge: str) -> bytes:
    body = CappedBuffer(MAX_BODY, f"bridge {bridge} sent an answer larger than {MAX_BODY} bytes")
    async for chunk in response.aiter_raw():
        body.add(chunk)
    return body.value()
