"""The simulated Amazon sign-in and token endpoints (device registration, cookie exchange, csrf).

Written from the clients that talk to the real ones, not from Amazon: the form pages carry
the element ids alexapy ``_process_page`` and aioamazondevices ``login.py`` look for
(``form name=signIn``, ``auth-mfa-otpcode``, ``auth-captcha-image``,
``auth-error-message-box``); ``/auth/register`` and ``/auth/token`` answer in the shapes
aioamazondevices reads (``response.success.tokens.bearer.refresh_token``,
``response.tokens.cookies[".amazon.<tld>"]``). PKCE is checked for real.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import secrets
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

SIGNIN_PATH = "/ap/signin"
CSRF_PATHS = ("/api/language", "/spa/index.html", "/api/devices-v2/device")
SIGNIN_MODES = ("ok", "captcha", "unknown_page", "claimspicker")


def _page(title: str, body: str) -> bytes:
    return (
        f"<!doctype html><html><head><title>{html.escape(title)}</title></head>"
        f"<body>{body}</body></html>"
    ).encode()


def _hidden(fields: dict[str, str]) -> str:
    return "".join(
        f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
        for k, v in fields.items()
    )


def _error_box(heading: str, message: str) -> str:
    return (
        '<div id="auth-error-message-box" class="a-box a-alert a-alert-error">'
        f'<h4 class="a-alert-heading">{html.escape(heading)}</h4>'
        f'<ul class="a-unordered-list"><li><span class="a-list-item">{html.escape(message)}'
        "</span></li></ul></div>"
    )


class AmazonAuth:
    """One Amazon account: its password, its authenticator code, its registered devices."""

    def __init__(
        self,
        *,
        new_jar: Callable[[], dict[str, str]],
        install_jar: Callable[[dict[str, str]], None],
        email: str = "pi-owner@example.com",
        password: str = "correct horse battery staple",
        otp: str = "246810",
        marketplace: str = "amazon.com",
    ) -> None:
        self._new_jar = new_jar
        self._install_jar = install_jar
        self.email, self.password, self.otp = email, password, otp
        self.marketplace = marketplace
        self.signin_mode = "ok"
        self.tokens: dict[str, bool] = {}  # refresh token -> still valid
        self.registered: list[dict[str, Any]] = []
        self.exchanges = 0
        self._flows: dict[str, dict[str, str]] = {}  # workflow id -> challenge, client id, stage
        self._codes: dict[str, dict[str, str]] = {}  # authorization code -> challenge, client id
        self._lock = threading.Lock()

    # ----------------------------------------------------------------- control

    def issue_token(self) -> str:
        token = "Atnr|sim-" + secrets.token_urlsafe(48)
        with self._lock:
            self.tokens[token] = True
        return token

    def revoke_tokens(self) -> None:
        """The user removed the device in "Manage your content and devices"."""
        with self._lock:
            self.tokens = dict.fromkeys(self.tokens, False)

    # ----------------------------------------------------------------- sign-in pages

    def signin_get(self, query: str) -> tuple[int, bytes, list[tuple[str, str]]]:
        params = {k: v[0] for k, v in parse_qs(query).items()}
        flow = secrets.token_hex(8)
        with self._lock:
            self._flows[flow] = {
                "challenge": params.get("openid.oa2.code_challenge", ""),
                "client_id": params.get("openid.oa2.client_id", ""),
                "return_to": params.get("openid.return_to", ""),
                "stage": "password",
            }
        body = self._password_form(flow, error=None)
        return 200, body, [("Set-Cookie", f"session-id={flow}; Path=/; HttpOnly")]

    def _password_form(self, flow: str, error: str | None) -> bytes:
        box = _error_box("There was a problem", error) if error else ""
        return _page(
            "Amazon Sign-In",
            f'{box}<form name="signIn" method="post" action="{SIGNIN_PATH}">'
            + _hidden({"appActionToken": secrets.token_hex(12), "workflowState": flow})
            + '<input type="email" name="email" id="ap_email">'
            '<input type="password" name="password" id="ap_password">'
            '<input type="submit" id="signInSubmit"></form>',
        )

    def _otp_form(self, flow: str, error: str | None) -> bytes:
        box = _error_box("There was a problem", error) if error else ""
        return _page(
            "Two-Step Verification",
            f'{box}<form id="auth-mfa-form" name="signIn" method="post" action="{SIGNIN_PATH}">'
            + _hidden({"workflowState": flow, "rememberDevice": ""})
            + '<input type="tel" id="auth-mfa-otpcode" name="otpCode" autocomplete="off">'
            '<input type="submit" id="auth-signin-button" name="mfaSubmit"></form>',
        )

    def signin_post(self, body: bytes) -> tuple[int, bytes, list[tuple[str, str]]]:
        form = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
        flow_id = form.get("workflowState", "")
        with self._lock:
            flow = self._flows.get(flow_id)
        if flow is None:
            return 200, _page("Amazon", '<div id="ap_error_return_home">Sorry</div>'), []
        if flow["stage"] == "password":
            return self._after_password(flow_id, flow, form)
        return self._after_otp(flow_id, flow, form)

    def _after_password(self, flow_id: str, flow: dict[str, str], form: dict[str, str]) -> Any:
        mode = self.signin_mode
        if mode == "captcha":
            page = _page(
                "Amazon Sign-In",
                '<form name="signIn" method="post" action="/ap/signin">'
                '<img id="auth-captcha-image" src="/captcha.jpg">'
                '<input name="guess" type="text"></form>',
            )
            return 200, page, []
        if mode == "unknown_page":
            return 200, _page("Amazon", "<p>Something we have never seen</p>"), []
        if mode == "claimspicker":
            page = _page(
                "Verification needed",
                '<form name="claimspicker" method="post" action="/ap/cvf/verify">'
                '<input type="radio" name="option" value="email"></form>',
            )
            return 200, page, []
        if form.get("email") != self.email or form.get("password") != self.password:
            return 200, self._password_form(flow_id, "Your password is incorrect"), []
        flow["stage"] = "otp"
        return 200, self._otp_form(flow_id, None), []

    def _after_otp(self, flow_id: str, flow: dict[str, str], form: dict[str, str]) -> Any:
        if form.get("otpCode") != self.otp:
            return 200, self._otp_form(flow_id, "The code you entered is not valid."), []
        code = "ANsim" + secrets.token_urlsafe(16)
        with self._lock:
            self._codes[code] = {"challenge": flow["challenge"], "client_id": flow["client_id"]}
            self._flows.pop(flow_id, None)
        target = flow["return_to"] or "https://www.amazon.com/ap/maplanding"
        location = target + "?" + urlencode({"openid.oa2.authorization_code": code})
        return 302, b"", [("Location", location)]

    # ----------------------------------------------------------------- tokens

    def register(self, body: bytes) -> tuple[int, dict[str, Any]]:
        try:
            request = json.loads(body)
            auth = request["auth_data"]
            code, verifier = auth["authorization_code"], auth["code_verifier"]
            serial = request["registration_data"]["device_serial"]
        except (ValueError, KeyError, TypeError):
            return 400, {"response": {"error": {"code": "InvalidRequest", "message": "bad body"}}}
        with self._lock:
            grant = self._codes.pop(code, None)
        digest = hashlib.sha256(str(verifier).encode()).digest()
        challenge = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
        if grant is None or grant["challenge"] != challenge:
            return 400, {"response": {"error": {"code": "InvalidValue", "message": "invalid code"}}}
        if grant["client_id"] != f"device:{auth.get('client_id')}":
            return 400, {"response": {"error": {"code": "InvalidValue", "message": "client"}}}
        token = self.issue_token()
        self.registered.append({"serial": serial, "client_id": auth.get("client_id")})
        region = {"co.jp": "FE", "com.au": "FE", "com": "NA", "ca": "NA"}.get(
            self.marketplace.removeprefix("amazon."), "EU"
        )
        jar = self._new_jar()
        return 200, {
            "response": {
                "success": {
                    "tokens": {
                        "bearer": {
                            "access_token": "Atna|sim-" + secrets.token_urlsafe(24),
                            "refresh_token": token,
                            "expires_in": "3600",
                        },
                        "website_cookies": [{"Name": k, "Value": v} for k, v in jar.items()],
                    },
                    "extensions": {
                        "device_info": {"device_serial_number": serial, "device_name": "homepoll"},
                        "customer_info": {"home_region": region, "user_id": "amzn1.account.SIM"},
                    },
                }
            }
        }

    def exchange(self, body: bytes) -> tuple[int, dict[str, Any]]:
        """``/auth/token``: fresh cookies for a valid refresh token; the error echoes the token."""
        form = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
        token = form.get("source_token", "")
        if form.get("requested_token_type") != "auth_cookies" or not token:
            return 400, {"error": "invalid_request", "error_description": "missing parameters"}
        with self._lock:
            state = self.tokens.get(token)
        if state is None:  # malformed or unknown; Amazon-style, it quotes what it got
            return 400, {
                "error": "invalid_grant",
                "error_description": f"The token {token} is malformed or unknown",
            }
        if state is False:
            return 400, {
                "error": "invalid_grant",
                "error_description": f"The refresh token {token} has been revoked",
            }
        self.exchanges += 1
        jar = {k: v for k, v in self._new_jar().items() if k != "csrf"}
        self._install_jar(jar)
        decoy = {k: v + "-com" for k, v in jar.items()}  # another domain's: must not be mixed in
        cookies = {f".{self.marketplace}": [{"Name": k, "Value": v} for k, v in jar.items()]}
        if self.marketplace != "amazon.com":
            cookies[".amazon.com"] = [{"Name": k, "Value": v} for k, v in decoy.items()]
        return 200, {"response": {"tokens": {"cookies": cookies}}, "request_id": "sim"}

    def welcome(self) -> dict[str, Any]:
        return {"alexaHostName": f"alexa.{self.marketplace}"}

    def users_me(self) -> dict[str, Any]:
        return {"marketPlaceDomainName": f"www.{self.marketplace}", "countryOfResidence": "XX"}


def path_of(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.path, parts.query
