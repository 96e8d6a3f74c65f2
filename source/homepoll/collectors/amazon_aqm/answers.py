"""One Alexa answer -> decoded JSON or the error taxonomy (facts: shared/reference/amazon_aqm.md).

Amazon reports failures in odd ways: HTTP 200 with "Unauthenticated call", a redirect to the
sign-in page, throttling without Retry-After. A throttled answer is marked not to be retried
inside the poll (Amazon marks it ``isRetryable: false``; aioamazondevices never retries it).
No secret ever appears in a message: everything Amazon echoes is scrubbed first.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

import httpx

from homepoll.capped import CappedBuffer
from homepoll.errors import (
    AuthError,
    CollectorError,
    PermanentError,
    RateLimitedError,
    TransientError,
)
from homepoll.safetext import one_line, redact

log = logging.getLogger("homepoll.collectors.amazon_aqm")

MAX_RESPONSE_BYTES = 5_000_000
_THROTTLE_MARKERS = ("rate exceeded", "throttlingexception", "too many requests")
_THROTTLE_CODES = {"UNOFFICIAL_CLIENT_TOO_MANY_REQUESTS", "TOO_MANY_REQUESTS", "THROTTLED"}
_AUTH_CODES = {"FORBIDDEN", "UNAUTHENTICATED", "UNAUTHORIZED"}


def throttled(message: str) -> RateLimitedError:
    """Amazon's throttle: never retried inside the poll; the daemon pushes the next poll back."""
    return RateLimitedError(message, retry_after=None, retry_in_poll=False)


async def read_capped(response: httpx.Response) -> bytes:
    buffer = CappedBuffer(
        MAX_RESPONSE_BYTES,
        f"Amazon's answer is larger than {MAX_RESPONSE_BYTES // 1_000_000} MB; giving up",
    )
    async for chunk in response.aiter_bytes():
        buffer.add(chunk)
    return buffer.value()


def classify(response: httpx.Response, body: bytes, cookies: Iterable[str]) -> Any:
    """Turn one HTTP answer into decoded JSON or the matching taxonomy error.

    Whatever Amazon wrote into an error (it has been seen quoting the session cookie) is
    redacted here, once, before the message can be stored, printed or logged.
    """
    secrets = list(cookies)
    try:
        return _classify(response, body, secrets)
    except CollectorError as error:
        error.message = redact(error.message, secrets)
        error.args = (error.message,)
        raise


def _classify(response: httpx.Response, body: bytes, cookies: Iterable[str]) -> Any:
    status = response.status_code
    text = body.decode("utf-8", "replace")
    if 300 <= status < 400:
        where = _strip_query(response.headers.get("location", ""))
        if "/ap/signin" in where:
            raise AuthError(
                f"Amazon redirected to the sign-in page ({where}): the cookies have expired"
            )
        raise AuthError(
            f"Amazon answered HTTP {status} redirecting to {where or 'nowhere'} instead of "
            "answering: the cookies have probably expired"
        )
    if status in (401, 403, 407):
        raise AuthError(
            f"Amazon rejected the cookies (HTTP {status}): they have expired or are invalid"
        )
    if status == 429:
        raise throttled("Amazon is throttling requests (HTTP 429)")
    if status >= 500:
        raise TransientError(f"Amazon answered HTTP {status}")
    if status != 200 and _throttled_text(text):
        raise throttled(f"Amazon is throttling requests (HTTP {status}: {scrub(text, cookies)})")
    if status != 200:
        raise PermanentError(f"Amazon answered HTTP {status}: {scrub(text, cookies)}")
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        snippet = text.lstrip()[:2000].lower()
        if snippet.startswith("<") and (
            "signin" in snippet or "sign-in" in snippet or "sign in" in snippet
        ):
            raise AuthError(
                "Amazon answered with its sign-in page instead of JSON: the cookies have expired"
            ) from None
        if _throttled_text(text):
            raise throttled("Amazon is throttling requests") from None
        raise TransientError(
            "Amazon answered with something that is not JSON (a proxy or captive portal?)"
        ) from None
    for item in data if isinstance(data, list) else [data]:
        _check_graphql_errors(item, cookies)
    return data


def _check_graphql_errors(item: object, cookies: Iterable[str]) -> None:
    """Raise for the GraphQL ``errors`` Amazon uses to say "not authenticated" or "slow down"."""
    if not isinstance(item, dict):
        return
    errors = item.get("errors")
    if not errors:
        return
    if not isinstance(errors, list):
        errors = [errors]
    messages = []
    for error in errors:
        if not isinstance(error, dict):
            messages.append(str(error))
            continue
        message = str(error.get("message") or "")
        ext = error.get("extensions")
        code = str(ext.get("errorCode") or ext.get("code") or "") if isinstance(ext, dict) else ""
        if message.strip().lower() == "unauthenticated call" or code.upper() in _AUTH_CODES:
            raise AuthError(
                f"Amazon refused the session ({message or code}): "
                "the cookies have expired or are invalid"
            )
        if code.upper() in _THROTTLE_CODES or _throttled_text(message):
            raise throttled(f"Amazon is throttling requests ({code or one_line(message, 200)})")
        messages.append(f"{message} [{code}]" if code else message)
    if item.get("data") is None:
        raise PermanentError(
            "Amazon answered with an error: " + scrub("; ".join(messages), cookies)
        )
    log.debug("Amazon answered with data and errors: %s", one_line("; ".join(messages), 200))


def _throttled_text(text: str) -> bool:
    lowered = text.lower()
    return any(marker in lowered for marker in _THROTTLE_MARKERS)


def _strip_query(url: str) -> str:
    """A redirect target without query or fragment (sign-in URLs carry session details)."""
    if not url:
        return ""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}" if parts.netloc else parts.path


def scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` on one line of at most 200 characters, every secret (given or registered) masked."""
    return one_line(text, 200, secrets)
