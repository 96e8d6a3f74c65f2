"""Sign in once as a registered Alexa device: PKCE, ``/ap/signin`` forms, ``/auth/register``.

The flow is the one aioamazondevices ``login.py`` runs (``_build_oauth_url``,
``_oauth_login``, ``_login_mode_interactive_oauth``, ``_register_device``); the pages are told
apart by the element ids alexapy ``alexalogin._process_page`` looks for. Forms are read with
the standard library's HTML parser. Nothing typed by the person (password, one-time code) is
kept, logged or written: only the refresh token Amazon returns leaves this module.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx

from homepoll.fsutil import atomic_write_text
from homepoll.safetext import one_line, redact

DEVICE_TYPE = "A2IVLV5VM2W81"  # the Alexa iOS app, as aioamazondevices registers
APP_VERSION = "2.2.663733.0"
BROWSER_AGENT = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Mobile/15E148"
)
MAX_STEPS = 8


class SignInRefused(Exception):
    """The sign-in cannot go on; the message says why and what to do, and holds no secret."""


@dataclass
class Registration:
    refresh_token: str
    device_serial: str
    home_region: str | None
    website_cookies: dict[str, str] = field(default_factory=dict)


@dataclass
class _Form:
    attrs: dict[str, str]
    inputs: list[dict[str, str]] = field(default_factory=list)


class _Page(HTMLParser):
    """Forms with their inputs, every element id, and the text of Amazon's message boxes."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.forms: list[_Form] = []
        self.ids: set[str] = set()
        self.message: list[str] = []
        self._box_depth = 0
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if values.get("id"):
            self.ids.add(values["id"])
        if values.get("id") in ("auth-error-message-box", "auth-warning-message-box"):
            self._box_depth = 1
        elif self._box_depth and tag not in ("input", "img", "br"):
            self._box_depth += 1
        if tag == "form":
            self.forms.append(_Form(values))
        elif tag == "input" and self.forms:
            self.forms[-1].inputs.append(values)

    def handle_endtag(self, tag: str) -> None:
        if self._box_depth:
            self._box_depth -= 1

    def handle_data(self, data: str) -> None:
        if self._box_depth and data.strip():
            self.message.append(data.strip())

    def form(self, **match: str) -> _Form | None:
        for form in self.forms:
            if all(form.attrs.get(k) == v for k, v in match.items()):
                return form
        return None

    def has_input(self, name: str) -> bool:
        return any(i.get("name") == name for f in self.forms for i in f.inputs)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _init_cookies() -> dict[str, str]:
    """What the Alexa app presents before signing in (aioamazondevices ``_build_init_cookies``)."""
    identity = {
        "device_user_dictionary": [],
        "device_registration_data": {"software_version": "35602678"},
        "app_identifier": {"app_version": APP_VERSION, "bundle_id": "com.amazon.echo"},
    }
    return {
        "frc": base64.b64encode(secrets.token_bytes(313)).decode().rstrip("="),
        "map-md": base64.b64encode(json.dumps(identity).encode()).decode().rstrip("="),
        "amzn-app-id": "MAPiOSLib/6.0/ToHideRetailLink",
    }


class SignIn:
    """One interactive registration; ``debug_dir`` keeps every page, secrets masked."""

    def __init__(self, signin_base: str, api_base: str, debug_dir: Path | None = None) -> None:
        self.signin_base = signin_base.rstrip("/")
        self.api_base = api_base.rstrip("/")
        self.debug_dir = debug_dir
        self.serial = uuid.uuid4().hex.upper()
        self.client_id = (self.serial + "#" + DEVICE_TYPE).encode().hex()
        self._verifier = _b64url(secrets.token_bytes(32))
        self._secrets: list[str] = []
        self._saved = 0

    def _oauth_params(self) -> dict[str, str]:
        challenge = _b64url(hashlib.sha256(self._verifier.encode()).digest())
        return {
            "openid.return_to": f"{self.signin_base}/ap/maplanding",
            "openid.oa2.code_challenge_method": "S256",
            "openid.assoc_handle": "amzn_dp_project_dee_ios",
            "openid.identity": "http://specs.openid.net/auth/2.0/identifier_select",
            "pageId": "amzn_dp_project_dee_ios",
            "accountStatusPolicy": "P1",
            "openid.claimed_id": "http://specs.openid.net/auth/2.0/identifier_select",
            "openid.mode": "checkid_setup",
            "openid.ns.oa2": "http://www.amazon.com/ap/ext/oauth/2",
            "openid.oa2.client_id": f"device:{self.client_id}",
            "language": "en-US",
            "openid.ns.pape": "http://specs.openid.net/extensions/pape/1.0",
            "openid.oa2.code_challenge": challenge,
            "openid.oa2.scope": "device_auth_access",
            "openid.ns": "http://specs.openid.net/auth/2.0",
            "openid.pape.max_auth_age": "0",
            "openid.oa2.response_type": "code",
        }

    async def run(self, email: str, password: str, ask_code: Callable[[], str]) -> Registration:
        self._secrets += [email, password]
        async with httpx.AsyncClient(
            follow_redirects=False, timeout=30, headers={"User-Agent": BROWSER_AGENT}
        ) as client:
            for name, value in _init_cookies().items():
                client.cookies.set(name, value)
            url = f"{self.signin_base}/ap/signin"
            response = await client.get(url, params=self._oauth_params())
            code = await self._walk(client, response, email, password, ask_code)
            return await self._register(client, code)

    async def _walk(
        self,
        client: httpx.AsyncClient,
        response: httpx.Response,
        email: str,
        password: str,
        ask_code: Callable[[], str],
    ) -> str:
        """Follow Amazon's pages until the authorization code; anything unexpected stops."""
        sent_password = sent_code = False
        for _ in range(MAX_STEPS):
            if response.is_redirect:
                target = urljoin(str(response.url), response.headers.get("location", ""))
                grant = parse_qs(urlsplit(target).query).get("openid.oa2.authorization_code")
                if grant:
                    self._secrets.append(grant[0])
                    return grant[0]
                response = await client.get(target)
                continue
            page = _Page(response.text)
            self._save(response.text, "signin")
            said = one_line(" ".join(page.message), 200, self._secrets)
            if "auth-captcha-image" in page.ids or page.form(id="cvf-aamation-challenge-form"):
                raise SignInRefused(
                    "Amazon asks for a captcha, which homepoll cannot show in a terminal. Sign in "
                    "once at https://www.amazon.com in a browser on this network, then try again "
                    "later, or import a refresh token with --refresh-token"
                )
            if "auth-mfa-otpcode" in page.ids or page.has_input("otpCode"):
                if sent_code:
                    raise SignInRefused(f"Amazon refused the one-time code: {said or 'no reason'}")
                code = ask_code().strip()
                self._secrets.append(code)
                form = page.form(id="auth-mfa-form") or page.form(name="signIn") or page.forms[0]
                fields = {"otpCode": code, "mfaSubmit": "Submit", "rememberDevice": "false"}
                response = await self._submit(client, response, form, fields)
                sent_code = True
                continue
            sign_in = page.form(name="signIn")
            if sign_in is not None and page.has_input("password"):
                if sent_password:
                    raise SignInRefused(f"Amazon refused the sign-in: {said or 'no reason given'}")
                fields = {"email": email, "password": password}
                response = await self._submit(client, response, sign_in, fields)
                sent_password = True
                continue
            if page.form(name="claimspicker") or page.form(id="auth-select-device-form"):
                raise SignInRefused(
                    "Amazon asks for a verification step homepoll cannot answer (a code by e-mail "
                    "or SMS, or a choice of device). Set up an authenticator app for two-step "
                    "verification in your Amazon account and try again"
                )
            break
        raise SignInRefused(
            "Amazon showed a page homepoll does not know"
            + (f" ({said})" if said else "")
            + "; run again with --debug-html DIR and attach the saved pages to a bug report"
        )

    async def _submit(
        self,
        client: httpx.AsyncClient,
        response: httpx.Response,
        form: _Form,
        fields: dict[str, str],
    ) -> httpx.Response:
        data = {
            i["name"]: i.get("value", "")
            for i in form.inputs
            if i.get("name") and i.get("type") == "hidden"
        }
        data.update(fields)
        target = urljoin(str(response.url), form.attrs.get("action") or str(response.url))
        method = (form.attrs.get("method") or "post").upper()
        if method == "GET":
            return await client.get(target, params=data)
        return await client.post(target, data=data)

    async def _register(self, client: httpx.AsyncClient, code: str) -> Registration:
        body = {
            "requested_extensions": ["device_info", "customer_info"],
            "cookies": {"website_cookies": [], "domain": ".amazon.com"},
            "registration_data": {
                "domain": "Device",
                "app_version": APP_VERSION,
                "device_type": DEVICE_TYPE,
                "device_name": "%FIRST_NAME%'s%DUPE_STRATEGY_1ST%homepoll",
                "os_version": "18.5",
                "device_serial": self.serial,
                "device_model": "iPhone",
                "app_name": "homepoll",
                "software_version": "35602678",
            },
            "auth_data": {
                "use_global_authentication": "true",
                "client_id": self.client_id,
                "authorization_code": code,
                "code_verifier": self._verifier,
                "code_algorithm": "SHA-256",
                "client_domain": "DeviceLegacy",
            },
            "requested_token_type": [
                "bearer",
                "mac_dms",
                "website_cookies",
                "store_authentication_cookie",
            ],
        }
        frc = client.cookies.get("frc")
        if frc:
            body["user_context_map"] = {"frc": frc}
        response = await client.post(f"{self.api_base}/auth/register", json=body)
        try:
            answer = response.json()
        except ValueError:
            answer = None
        success = _dig(answer, "response", "success")
        token = _dig(success, "tokens", "bearer", "refresh_token")
        if response.status_code != 200 or not isinstance(token, str) or not token:
            why = _dig(answer, "response", "error", "message") or f"HTTP {response.status_code}"
            raise SignInRefused(
                "Amazon refused to register homepoll as a device: "
                + one_line(why, 200, self._secrets)
            )
        self._secrets.append(token)
        cookies = {
            c["Name"]: str(c.get("Value", "")).replace('"', "")
            for c in _dig(success, "tokens", "website_cookies") or []
            if isinstance(c, dict) and isinstance(c.get("Name"), str)
        }
        region = _dig(success, "extensions", "customer_info", "home_region")
        return Registration(
            token, self.serial, region if isinstance(region, str) else None, cookies
        )

    def _save(self, html: str, label: str) -> None:
        """``--debug-html``: the page as Amazon sent it, with everything typed or issued masked."""
        if self.debug_dir is None:
            return
        self.debug_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not self._saved:  # a second run into the same folder keeps the first one's pages
            self._saved = len(list(self.debug_dir.glob("*.html")))
        self._saved += 1
        path = self.debug_dir / f"{self._saved:02d}-{label}.html"
        atomic_write_text(path, redact(html, self._secrets), mode=0o600)


def _dig(value: object, *keys: str) -> object:
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    return value
