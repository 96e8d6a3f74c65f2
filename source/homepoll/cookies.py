"""Amazon cookie import: browser exports, name->value mappings and raw ``Cookie:`` lines.

Users get their Alexa session from a desktop browser, and every cookie-export extension
writes a slightly different shape; accepting the common ones here means the collector and
the ``homepoll amazon-cookies`` command agree on what a valid cookie file is.
Error messages never quote cookie values: they end up in logs and alert files.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Mapping
from http.cookiejar import LoadError, MozillaCookieJar
from pathlib import Path

from homepoll.fsutil import write_secret_file
from homepoll.smallfile import MAX_SECRET_BYTES, read_small_file

__all__ = [
    "REQUIRED_COOKIES",
    "load_cookie_file",
    "missing_required",
    "parse_cookie_input",
    "save_cookie_file",
]

REQUIRED_COOKIES = ("csrf",)
"""Cookies without which no Alexa GraphQL call can succeed (``csrf`` is echoed as a header)."""

_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_AMAZON_DOMAIN = re.compile(r"(^|\.)amazon\.[a-z.]+$")


def parse_cookie_input(text: str, marketplace: str = "amazon.com") -> dict[str, str]:
    """Cookies from a JSON export list, a JSON mapping, a Netscape ``cookies.txt`` or a
    ``Cookie:`` header line. An input with cookies of several Amazon domains gives only the
    ``marketplace``'s: the same names (``session-id``) exist on each, with other values.

    Raises ValueError with a message that never contains a cookie value.
    """
    text = text.strip().lstrip("\ufeff").strip()
    if not text:
        raise ValueError("the cookie input is empty")
    if text[0] in "[{":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(
                f"the cookie input looks like JSON but is not valid JSON "
                f"({exc.msg} at line {exc.lineno} column {exc.colno})"
            ) from None
        if isinstance(data, list):
            cookies = _select(_from_export_list(data), marketplace)
        elif isinstance(data, dict):
            cookies = _from_mapping(data)
        else:  # pragma: no cover - json.loads of "[..."/"{..." is a list or dict
            raise ValueError("the cookie input is JSON but neither a list nor a mapping")
    elif _looks_netscape(text):
        cookies = _select(_from_netscape(text), marketplace)
    else:
        cookies = _from_header(text)
    if not cookies:
        raise ValueError("the cookie input holds no cookies")
    return cookies


Triple = tuple[str, str, str]  # domain ("" when the export gives none), name, value


def _from_export_list(items: list[object]) -> list[Triple]:
    """Browser-export format (EditThisCookie, Cookie-Editor): objects with name/value/domain."""
    found: list[Triple] = []
    for index, item in enumerate(items, start=1):
        if not isinstance(item, dict) or "name" not in item or "value" not in item:
            raise ValueError(f"cookie list item {index} is not an object with 'name' and 'value'")
        name, value = item["name"], item["value"]
        if not isinstance(name, str) or not isinstance(value, str):
            raise ValueError(f"cookie list item {index}: 'name' and 'value' must be strings")
        domain = item.get("domain")
        found.append((domain.lower().lstrip(".") if isinstance(domain, str) else "", name, value))
    return found


def _looks_netscape(text: str) -> bool:
    first = text.splitlines()[0]
    return first.startswith(("# Netscape HTTP Cookie File", "# HTTP Cookie File")) or (
        first.count("\t") == 6
    )


def _from_netscape(text: str) -> list[Triple]:
    """``cookies.txt`` (curl, alexa-remote-control, browser add-ons), read by the standard
    library's Mozilla cookie jar; expired cookies are kept (Amazon decides, not the file)."""
    for number, line in enumerate(text.splitlines(), start=1):
        data = line.removeprefix("#HttpOnly_")
        if data.strip() and not data.startswith("#") and data.count("\t") != 6:
            raise ValueError(f"the cookie input looks like a cookies.txt but line {number} is bad")
    if not text.startswith("#"):
        text = "# Netscape HTTP Cookie File\n" + text
    jar = MozillaCookieJar()
    try:
        jar._really_load(io.StringIO(text + "\n"), "<input>", True, True)
    except (LoadError, ValueError, IndexError):
        raise ValueError(
            "the cookie input looks like a cookies.txt but a line is malformed"
        ) from None
    return [(c.domain.lower().lstrip("."), c.name, c.value or "") for c in jar]


def _select(found: list[Triple], marketplace: str) -> dict[str, str]:
    """The marketplace's cookies (and those without a domain) when several Amazon sites are
    present; other sites' are dropped."""
    market = marketplace.lower().removeprefix("www.").removeprefix("alexa.")
    domains = {d for d, _, _ in found if d}
    amazon = {d for d in domains if _AMAZON_DOMAIN.search(d)}
    if domains and not amazon:
        raise ValueError("the cookie input holds no cookies for an amazon.* domain")
    mine = {d for d in amazon if d == market or d.endswith("." + market)}
    if len({_site(d) for d in amazon}) == 1:
        mine = amazon  # one site only: nothing to mix up (the marketplace is checked on use)
    if amazon and not mine:
        sites = ", ".join(sorted({_site(d) for d in amazon}))
        raise ValueError(
            f"the cookie input holds cookies for {sites} but none for {market} "
            "(collectors.amazon_aqm.domain); export them while signed in on that marketplace"
        )
    cookies: dict[str, str] = {}
    for domain, name, value in found:
        if not domain or domain in mine:
            _add(cookies, name, value)
    return cookies


def _site(domain: str) -> str:
    match = _AMAZON_DOMAIN.search(domain)
    return match.group(0).lstrip(".") if match else domain


def _from_mapping(data: Mapping[str, object]) -> dict[str, str]:
    cookies: dict[str, str] = {}
    for name, value in data.items():
        if not isinstance(value, str):
            raise ValueError(f"cookie {name!r}: the value must be a string")
        _add(cookies, name, value)
    return cookies


def _from_header(text: str) -> dict[str, str]:
    """``Cookie: a=b; c=d`` (the prefix is optional), as copied from a browser's network tab."""
    if "\n" in text:
        raise ValueError("the cookie input is neither JSON nor a single Cookie: header line")
    if text.lower().startswith("cookie:"):
        text = text[len("cookie:") :]
    cookies: dict[str, str] = {}
    for index, part in enumerate(text.split(";"), start=1):
        part = part.strip()
        if not part:
            continue
        name, sep, value = part.partition("=")
        if not sep:
            raise ValueError(
                f"the cookie input is neither JSON nor a Cookie: header line "
                f"(part {index} has no '=')"
            )
        _add(cookies, name.strip(), value.strip())
    return cookies


def _add(cookies: dict[str, str], name: str, value: str) -> None:
    """Add one cookie after checking it can travel in a Cookie header unchanged."""
    if not _NAME.match(name):
        raise ValueError(f"invalid cookie name {name[:40]!r}")
    if any(ch in value for ch in ";\r\n") or not value.isascii() or not value.isprintable():
        raise ValueError(f"cookie {name!r} has a value that cannot be sent in a Cookie header")
    cookies[name] = value


def load_cookie_file(path: Path, marketplace: str = "amazon.com") -> dict[str, str]:
    """Read and parse a cookie file; raises OSError (unreadable, not a regular file, too
    large) or ValueError (invalid, not UTF-8)."""
    text = read_small_file(Path(path), MAX_SECRET_BYTES).decode("utf-8")
    return parse_cookie_input(text, marketplace)


def save_cookie_file(path: Path, cookies: Mapping[str, str]) -> None:
    """Store cookies as a JSON name->value mapping, atomically and with mode 0600."""
    write_secret_file(Path(path), json.dumps(dict(cookies), indent=2, sort_keys=True) + "\n")


def missing_required(cookies: Mapping[str, str]) -> list[str]:
    """Names of required cookies absent (or empty) in ``cookies``, e.g. ``["csrf"]``."""
    return [name for name in REQUIRED_COOKIES if not cookies.get(name)]
