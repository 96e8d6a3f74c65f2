"""Text on its way out of homepoll: secrets masked, control and bidi characters escaped.

Everything shown to a person, stored, logged or written to a file passes through here:
``redact`` masks the Hue key and the Amazon cookie values (registered once when read, or given
per call), ``escape_control`` makes text from the network inert on a terminal and in a log
line, ``one_line`` does both and caps the length for alert files and error columns.
"""

from __future__ import annotations

import json
import re
import threading
import urllib.parse
from collections.abc import Iterable

MASK = "***"
MIN_SECRET_LENGTH = 6
"""Registered secrets shorter than this are not masked everywhere (they would mask words)."""
MIN_GIVEN_SECRET_LENGTH = 4
"""Secrets handed to :func:`redact` for one message (a cookie value) are masked from this length."""

# A Hue key sits in the URL path right after /api/; mask whatever is there even when the key
# was never registered (a key typed into a bridge URL by hand, an old key from a log of phue).
_HUE_URL_KEY = re.compile(r"(/api/)[^/\s\"'?#<>]+")

# C0 (TAB aside), DEL, C1 (U+0080-U+009F: U+009B is a one-byte CSI), the line and paragraph
# separators, and the bidi embeddings/overrides/isolates that reorder what a terminal shows.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")

_secrets_lock = threading.Lock()
_secrets: set[str] = set()
_secret_pattern: re.Pattern[str] | None = None


def register_secret(value: str) -> None:
    """Mask ``value`` (and its URL- and JSON-escaped forms) in everything redacted from now on."""
    global _secret_pattern
    if not isinstance(value, str):
        return
    variants = {value, value.strip()}
    variants |= {urllib.parse.quote(v, safe="") for v in list(variants)}
    variants |= {json.dumps(v)[1:-1] for v in list(variants)}
    variants = {v for v in variants if len(v) >= MIN_SECRET_LENGTH}
    if not variants:
        return
    with _secrets_lock:
        if variants <= _secrets:
            return
        _secrets.update(variants)
        ordered = sorted(_secrets, key=len, reverse=True)  # longest first: no partial leftovers
        _secret_pattern = re.compile("|".join(re.escape(s) for s in ordered))


def redact(text: object, secrets: Iterable[str | None] = ()) -> str:
    """``text`` with registered secrets, the given ``secrets`` and Hue URL keys as ``***``."""
    text = text if isinstance(text, str) else str(text)
    for secret in secrets:
        if secret and len(secret) >= MIN_GIVEN_SECRET_LENGTH:
            text = text.replace(secret, MASK)
    pattern = _secret_pattern
    if pattern is not None:
        text = pattern.sub(MASK, text)
    return _HUE_URL_KEY.sub(r"\g<1>" + MASK, text)


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if char in "\n\r":
        return "\\n" if char == "\n" else "\\r"
    code = ord(char)
    return f"\\x{code:02x}" if code < 256 else f"\\u{code:04x}"


def escape_control(text: object) -> str:
    """Control and bidi characters written as ``\\x1b``, ``\\u202e``...: inert, yet readable."""
    text = text if isinstance(text, str) else str(text)
    return _CONTROL.sub(_escape, text)


def one_line(text: object, limit: int, secrets: Iterable[str | None] = ()) -> str:
    """Redacted, whitespace runs as one space, controls escaped, at most ``limit`` characters."""
    line = escape_control(" ".join(redact(text, secrets).split()))
    if len(line) > limit:
        line = line[: limit - 1].rstrip() + "…"
    return line


def safe_lines(text: object, secrets: Iterable[str | None] = ()) -> str:
    """Redacted, with controls escaped in each line: a multi-line report for a terminal."""
    return "\n".join(escape_control(line) for line in redact(text, secrets).split("\n"))
