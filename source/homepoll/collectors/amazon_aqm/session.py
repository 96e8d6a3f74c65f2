"""The Alexa session: credentials on disk, the cookie jar, and renewal with the refresh token.

With ``auth_file`` (written by ``homepoll amazon-login``) the session renews itself: the
refresh token is exchanged for fresh cookies (``POST /auth/token``,
``requested_token_type=auth_cookies``, as aioamazondevices ``http_wrapper.refresh_data`` and
alexa-cookie2 ``getLocalCookies`` do) and ``csrf`` is fetched from the Alexa host (alexapy
``get_csrf`` order). Only a refused refresh token is a permanent auth failure. Without it the
browser cookies of ``cookies_file`` are used as before, and their refusal is the failure.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from http.cookiejar import CookieJar as StdCookieJar
from http.cookiejar import DefaultCookiePolicy
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx

from homepoll.collectors.amazon_aqm.answers import classify, read_capped, scrub, throttled
from homepoll.collectors.amazon_aqm.authfile import AuthData, load_auth_file, save_auth_file
from homepoll.collectors.amazon_aqm.jar import CookieJar
from homepoll.config import AmazonAqmSettings
from homepoll.cookies import load_cookie_file, missing_required, save_cookie_file
from homepoll.errors import AuthError, PermanentError, TransientError
from homepoll.safetext import register_secret

log = logging.getLogger("homepoll.collectors.amazon_aqm")
T = TypeVar("T")

RENEW_EVERY = 4 * 86_400.0  # seconds; alexa-cookie2 renews every 5 days, browsers last 4-14
APP_VERSION = "2.2.663733.0"  # the Alexa iOS app aioamazondevices const/http.py presents
USER_AGENT = f"AmazonWebView/AmazonAlexa/{APP_VERSION}/iOS/18.5/iPhone"
CSRF_PATHS = (
    "/api/language",
    "/spa/index.html",
    "/api/devices-v2/device?cached=true",
    "/templates/oobe/d-device-pick.handlebars",
)
_LANGUAGES = {
    "com": "en-US", "co.uk": "en-GB", "de": "de-DE", "fr": "fr-FR", "it": "it-IT",
    "es": "es-ES", "ca": "en-CA", "com.au": "en-AU", "co.jp": "ja-JP", "in": "en-IN",
    "com.br": "pt-BR", "com.mx": "es-MX", "nl": "nl-NL",
}  # fmt: skip
REMEDY = "run `homepoll amazon-login` (or import a token with `--refresh-token`)"


def accept_language(marketplace: str) -> str:
    return _LANGUAGES.get(marketplace.removeprefix("amazon."), "en-US")


class AmazonSession:
    """One Alexa account's session; every request to Amazon goes through ``send``."""

    def __init__(
        self,
        settings: AmazonAqmSettings,
        *,
        clock: Callable[[], float] = time.time,
        use_auth_file: bool = True,
        persist: bool = True,
    ) -> None:
        self.settings = settings
        self._use_auth_file = use_auth_file
        self._persist = persist  # False: amazon-login saves the file itself, once it all worked
        self._clock = clock
        self.auth: AuthData | None = None
        self.jar = CookieJar()
        self._stamp: tuple[str, int, int, int] | None = None
        self._client: httpx.AsyncClient | None = None
        self._warned_domain = False
        self.renewals = 0

    # ----------------------------------------------------------------- where

    @property
    def marketplace(self) -> str:
        """The account's marketplace; ``domain`` in config overrides it (with one warning)."""
        configured = self.settings.domain
        if self.auth is None or self.auth.marketplace == configured:
            return configured
        if configured == "amazon.com":  # the default: the account knows better
            return self.auth.marketplace
        if not self._warned_domain:
            self._warned_domain = True
            log.warning(
                "collectors.amazon_aqm.domain is %s but the account signed in on %s; using %s "
                "as configured (remove domain from config.yaml to follow the account)",
                configured, self.auth.marketplace, configured,
            )  # fmt: skip
        return configured

    def _derived(self, configured: str, prefix: str) -> str:
        default = f"https://{prefix}.{self.settings.domain}"
        base = configured.rstrip("/")
        return f"https://{prefix}.{self.marketplace}" if base == default else base

    @property
    def base_url(self) -> str:
        return self._derived(self.settings.base_url, "alexa")

    @property
    def token_url(self) -> str:
        return self._derived(self.settings.auth_base_url, "api") + "/auth/token"

    @property
    def token_mode(self) -> bool:
        return self.auth is not None

    # ----------------------------------------------------------------- credentials

    def load(self) -> bool:
        """(Re)read the credentials when their file changed; True when they did."""
        auth_path = Path(self.settings.auth_file)
        use_auth = self._use_auth_file and _exists(auth_path)
        path = auth_path if use_auth else Path(self.settings.cookies_file)
        try:
            st = os.stat(path)
        except OSError as exc:
            raise AuthError(
                f"no Amazon credentials: cannot read {path} "
                f"({exc.strerror or type(exc).__name__}); {REMEDY}"
            ) from None
        stamp = (str(path), st.st_mtime_ns, st.st_size, st.st_ino)
        if stamp == self._stamp:
            return False
        if path == auth_path:
            self._load_auth(path)
        else:
            self._load_cookies(path)
        if self._stamp is not None:
            log.info("Amazon credentials in %s changed: using them", path)
        self._stamp = stamp
        return True

    def _load_auth(self, path: Path) -> None:
        self.auth = _read(path, load_auth_file, "auth file")
        self.jar = CookieJar(self.auth.cookies)

    def _load_cookies(self, path: Path) -> None:
        cookies = _read(path, lambda p: load_cookie_file(p, self.marketplace), "cookies file")
        for value in cookies.values():
            register_secret(value)
        missing = missing_required(cookies)
        if missing:
            raise AuthError(
                f"the {' and '.join(missing)} cookie is missing from the Amazon cookies file "
                f"{path} (Amazon needs it echoed as a header); {REMEDY}"
            )
        self.auth = None
        self.jar = CookieJar(cookies)

    def renewal_due(self) -> bool:
        if self.auth is None:
            return False
        if "csrf" not in self.jar:
            return True
        return self._clock() - self.auth.cookies_renewed_at >= RENEW_EVERY

    def save_if_changed(self) -> None:
        """Keep what Amazon set on its answers: written atomically, 0600, only when changed."""
        if not self.jar.changed or not self._persist:
            return
        path = Path(self.settings.auth_file if self.auth else self.settings.cookies_file)
        try:
            st = os.stat(path)
            on_disk = (str(path), st.st_mtime_ns, st.st_size, st.st_ino)
        except OSError:
            on_disk = None
        if self._stamp is not None and on_disk != self._stamp:
            # a new sign-in or import wrote it meanwhile: it wins, the next poll reads it
            log.debug("%s changed on disk during the poll; not overwriting it", path)
            return
        if self.auth is not None:
            self.auth.cookies = self.jar.as_dict()
            save_auth_file(path, self.auth)
        else:
            save_cookie_file(path, self.jar.as_dict())
        self.jar.changed = False
        st = os.stat(path)
        self._stamp = (str(path), st.st_mtime_ns, st.st_size, st.st_ino)

    # ----------------------------------------------------------------- renewal

    async def renew(self, deadline: float, reason: str) -> None:
        """Fresh cookies for the refresh token, then ``csrf``; AuthError only if it is refused."""
        await self.exchange(deadline)
        await self.fetch_csrf(deadline)
        assert self.auth is not None
        self.auth.cookies_renewed_at = self._clock()
        self.renewals += 1
        self.save_if_changed()
        log.info("Amazon session renewed with the refresh token (%s)", reason)

    async def exchange(self, deadline: float) -> None:
        """``POST /auth/token``: the refresh token for the marketplace's cookies (no csrf yet)."""
        assert self.auth is not None
        form = {
            "app_name": "homepoll",
            "app_version": APP_VERSION,
            "di.sdk.version": "6.12.4",
            "source_token": self.auth.refresh_token,
            "package_name": "com.amazon.echo",
            "di.hw.version": "iPhone",
            "platform": "iOS",
            "requested_token_type": "auth_cookies",
            "source_token_type": "refresh_token",
            "di.os.name": "iOS",
            "di.os.version": "18.5",
            "current_version": "6.12.4",
            "domain": f"www.{self.marketplace}",
        }
        response, body = await self.send("POST", self.token_url, deadline, data=form, jar=False)
        self.jar.replace(self._token_answer(response, body))

    async def fetch_csrf(self, deadline: float) -> None:
        """GET pages of the Alexa host until one sets ``csrf`` (alexapy ``get_csrf`` order)."""
        for path in CSRF_PATHS:
            if "csrf" in self.jar:
                return
            await self.send("GET", self.base_url + path, deadline)
        if "csrf" not in self.jar:
            raise TransientError("Amazon gave fresh cookies but no csrf cookie; trying again later")

    def _token_answer(self, response: httpx.Response, body: bytes) -> dict[str, str]:
        secrets = [self.auth.refresh_token] if self.auth else []
        text = scrub(body.decode("utf-8", "replace"), secrets)
        status = response.status_code
        if status == 429 or "too many requests" in text.lower() or "rate exceeded" in text.lower():
            raise throttled(f"Amazon is throttling the token exchange (HTTP {status})")
        if status >= 500:
            raise TransientError(f"Amazon's token exchange answered HTTP {status}")
        if status in (400, 401, 403):
            raise AuthError(
                f"Amazon refused the refresh token (HTTP {status}: {text}): the device was "
                f"removed from the account or the token revoked; {REMEDY}"
            )
        if status != 200:
            raise PermanentError(f"Amazon's token exchange answered HTTP {status}: {text}")
        try:
            listing = json.loads(body)["response"]["tokens"]["cookies"]
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
            raise TransientError("Amazon's token exchange answered without cookies") from None
        site = listing.get(f".{self.marketplace}") if isinstance(listing, dict) else None
        if not isinstance(site, list):
            raise PermanentError(f"Amazon's token exchange gave no cookies for {self.marketplace}")
        cookies = {
            c["Name"]: str(c["Value"]).replace('"', "")
            for c in site
            if isinstance(c, dict) and isinstance(c.get("Name"), str) and "Value" in c
        }
        for value in cookies.values():
            register_secret(value)
        return cookies

    # ----------------------------------------------------------------- HTTP

    def _client_for(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                follow_redirects=False,  # a followed sign-in redirect would hide the auth failure
                # our jar, not httpx's: one site's cookies, saved with the credentials
                cookies=StdCookieJar(policy=DefaultCookiePolicy(allowed_domains=[])),
            )
        return self._client

    def headers(self) -> dict[str, str]:
        """What the Alexa app sends (aioamazondevices const/http.py REQUEST_AGENT["Amazon"])."""
        base = self.base_url
        headers = {
            "User-Agent": USER_AGENT,
            "Accept-Language": accept_language(self.marketplace),
            "Accept": "application/json",
            "Referer": f"{base}/spa/index.html",
            "Origin": base,
        }
        csrf = self.jar.get("csrf")
        if csrf:
            headers["csrf"] = csrf
        if self.jar.header():
            headers["Cookie"] = self.jar.header()
        return headers

    async def send(
        self, method: str, url: str, deadline: float, *, jar: bool = True, **kw: Any
    ) -> tuple[httpx.Response, bytes]:
        """One request; transport failures -> taxonomy, Set-Cookie -> the jar."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TransientError("no time left in this attempt for the Amazon request")
        host = urlsplit(url).netloc
        headers = self.headers() if jar else {"User-Agent": USER_AGENT}
        headers.update(kw.pop("headers", {}))
        secrets = self.jar.values() + ([self.auth.refresh_token] if self.auth else [])
        try:
            async with self._client_for().stream(
                method, url, headers=headers, timeout=httpx.Timeout(remaining), **kw
            ) as response:
                body = await read_capped(response)
        except httpx.TimeoutException:
            raise TransientError(
                f"Amazon ({host}) did not answer within {remaining:.3g} s"
            ) from None
        except httpx.ConnectError as exc:
            raise TransientError(scrub(f"cannot connect to {host}: {exc}", secrets)) from None
        except (httpx.NetworkError, httpx.RemoteProtocolError) as exc:
            detail = f" ({scrub(str(exc), secrets)})" if str(exc) else ""
            raise TransientError(
                f"connection to {host} failed: {type(exc).__name__}{detail}"
            ) from None
        except httpx.HTTPError as exc:
            raise PermanentError(f"request to {host} failed: {type(exc).__name__}") from None
        if jar:
            self.jar.absorb(response.headers.get_list("set-cookie"), urlsplit(url).hostname or "")
        return response, body

    async def graphql(self, payload: object, deadline: float) -> Any:
        """POST one GraphQL body to the Alexa host; the decoded answer or a taxonomy error."""
        response, body = await self.send(
            "POST",
            self.base_url + "/nexus/v1/graphql",
            deadline,
            content=json.dumps(payload).encode(),
            headers={"Content-Type": "application/json; charset=utf-8"},
        )
        return classify(response, body, self.jar.values())

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


def _read(path: Path, loader: Callable[[Path], T], what: str) -> T:
    """One credentials file through ``loader``; unreadable or invalid -> AuthError with the fix."""
    try:
        return loader(path)
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
        raise AuthError(f"cannot read the Amazon {what} {path}: {why}; {REMEDY}") from None
    except ValueError as exc:
        raise AuthError(f"the Amazon {what} {path} is invalid: {exc}; {REMEDY}") from None


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:
        return False
