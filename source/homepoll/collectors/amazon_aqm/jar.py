"""The session's cookies: the marketplace's name -> value, kept up to date from ``Set-Cookie``.

Amazon rotates cookies on its answers; a client that keeps resending the old ones goes stale
sooner (alexa-cookie2 ``addCookies`` and aiohttp's jar in aioamazondevices both keep them).
Headers are parsed with the standard library's cookie parser; one jar holds one site's
cookies, so a cookie of another domain is never mixed in.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from email.utils import parsedate_to_datetime
from http.cookies import CookieError, SimpleCookie

from homepoll.safetext import register_secret


class CookieJar:
    """Name -> value for one site, plus whether anything changed since the last save."""

    def __init__(self, cookies: Mapping[str, str] | None = None) -> None:
        self._cookies: dict[str, str] = dict(cookies or {})
        self.changed = False

    def __contains__(self, name: str) -> bool:
        return name in self._cookies

    def get(self, name: str) -> str | None:
        return self._cookies.get(name)

    def values(self) -> list[str]:
        return list(self._cookies.values())

    def as_dict(self) -> dict[str, str]:
        return dict(self._cookies)

    def replace(self, cookies: Mapping[str, str]) -> None:
        """A renewal: the old cookies are all gone."""
        for value in cookies.values():
            register_secret(value)
        self._cookies = dict(cookies)
        self.changed = True

    def header(self) -> str:
        return "; ".join(f"{name}={value}" for name, value in self._cookies.items())

    def absorb(self, set_cookie_headers: Iterable[str], host: str) -> None:
        """Apply the ``Set-Cookie`` headers of one answer from ``host``."""
        for header in set_cookie_headers:
            parsed = SimpleCookie()
            try:
                parsed.load(header)
            except CookieError:
                continue  # one malformed header must not cost the others
            for name, morsel in parsed.items():
                if not _domain_matches(morsel["domain"], host):
                    continue
                if _expired(morsel["max-age"], morsel["expires"]):
                    if self._cookies.pop(name, None) is not None:
                        self.changed = True
                    continue
                value = morsel.value
                register_secret(value)
                if self._cookies.get(name) != value:
                    self._cookies[name] = value
                    self.changed = True


def _domain_matches(domain: str, host: str) -> bool:
    domain = domain.lower().lstrip(".")
    host = host.lower().split(":")[0]
    return not domain or host == domain or host.endswith("." + domain)


def _expired(max_age: str, expires: str) -> bool:
    if max_age:
        try:
            return int(max_age) <= 0
        except ValueError:
            return False
    if expires:
        try:
            return parsedate_to_datetime(expires).timestamp() <= time.time()
        except (TypeError, ValueError):
            return False
    return False
