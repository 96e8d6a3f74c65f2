"""``homepoll amazon-login`` and ``homepoll amazon-cookies``: getting an Alexa session onto the Pi.

``amazon-login`` registers homepoll as an Alexa device (the way Home Assistant's library
does) and keeps the refresh token, from which the daemon renews its cookies for months;
``--refresh-token`` imports a token obtained elsewhere. ``amazon-cookies`` is the fallback:
a browser's cookies, which expire within days or weeks.
"""

from __future__ import annotations

import asyncio
import dataclasses
import getpass
import os
import sys
import time
import uuid
from pathlib import Path

from homepoll.config import AmazonAqmSettings, Config
from homepoll.errors import CollectorError
from homepoll.fsutil import write_secret_file
from homepoll.safetext import escape_control, one_line, safe_lines
from homepoll.smallfile import MAX_SECRET_BYTES, read_small_file

EXIT_OK, EXIT_FAILED = 0, 1
FAR_EAST = "amazon.co.jp"  # aioamazondevices FE_SITE: home_region "FE" lives there


class UnreadableInput(Exception):
    """The token or cookie input cannot be read: exit 78 like a bad config."""


def _read_source(source: str, what: str) -> str:
    try:
        if source == "-":
            return sys.stdin.read(MAX_SECRET_BYTES)
        return read_small_file(Path(source), MAX_SECRET_BYTES).decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UnreadableInput(
            f"{source}: cannot read {what}: {getattr(exc, 'strerror', None) or exc}"
        ) from None


def _ask(prompt: str, secret: bool = False) -> str:
    """One line from the person: hidden on a terminal, plain from a pipe (tests, scripts)."""
    if secret and sys.stdin.isatty():
        return getpass.getpass(prompt)
    print(prompt, end="", flush=True)
    line = sys.stdin.readline()
    if not line:
        raise UnreadableInput("standard input ended before the sign-in was complete")
    print()  # the answer came from a pipe: end the prompt's line ourselves
    return line.rstrip("\r\n")


def _settings(config: Config, domain: str | None) -> AmazonAqmSettings:
    settings = config.amazon_aqm
    if domain:
        settings = dataclasses.replace(settings, domain=domain.strip().lower())
    return settings


def signin_base(settings: AmazonAqmSettings) -> str:
    """``https://www.<domain>``, or the simulator when ``auth_base_url`` points at one."""
    api = settings.auth_base_url.rstrip("/")
    return f"https://www.{settings.domain}" if api == f"https://api.{settings.domain}" else api


def amazon_login(
    config: Config, domain: str | None, token_source: str | None, debug_html: str | None
) -> int:
    from homepoll.collectors.amazon_aqm.authfile import AuthData
    from homepoll.collectors.amazon_aqm.signin import SignIn, SignInRefused

    settings = _settings(config, domain)
    if token_source is not None:
        token = _read_source(token_source, "the refresh token").strip()
        if not token or any(c.isspace() for c in token) or not token.isprintable():
            raise UnreadableInput(f"{token_source}: not a refresh token (one line, no spaces)")
        auth = AuthData(token, uuid.uuid4().hex.upper(), settings.domain)
    else:
        email = _ask("Amazon account e-mail: ")
        password = _ask("Password (not stored): ", secret=True)
        flow = SignIn(
            signin_base(settings),
            settings.auth_base_url,
            Path(debug_html) if debug_html else None,
        )
        try:
            registration = asyncio.run(
                flow.run(email, password, lambda: _ask("One-time code from your app: "))
            )
        except SignInRefused as exc:
            print(f"homepoll: {safe_lines(exc)}", file=sys.stderr)
            return EXIT_FAILED
        except OSError as exc:  # httpx transport errors are OSError-like: keep it short
            print(f"homepoll: cannot reach Amazon: {one_line(exc, 200)}", file=sys.stderr)
            return EXIT_FAILED
        marketplace = FAR_EAST if registration.home_region == "FE" else settings.domain
        auth = AuthData(registration.refresh_token, registration.device_serial, marketplace)
        print("signed in; homepoll is now a registered device on your Amazon account")
    auth.register_secrets()
    return asyncio.run(_finish(settings, auth, explicit_domain=bool(domain)))


async def _finish(settings: AmazonAqmSettings, auth, explicit_domain: bool) -> int:
    """Fresh cookies for the token, the account's own marketplace, save, test, list."""
    from homepoll.collectors.amazon_aqm.authfile import save_auth_file
    from homepoll.collectors.amazon_aqm.session import AmazonSession

    session = AmazonSession(settings, persist=False)
    session.auth = auth
    config_domain, found = settings.domain, None
    try:
        deadline = time.monotonic() + 60
        await session.exchange(deadline)
        found = await _account_marketplace(session, deadline)
        if found and found != auth.marketplace and explicit_domain:
            print(
                f"homepoll: warning: the account lives on {found}, not {settings.domain}; "
                f"keeping {settings.domain} as given with --domain"
            )
        elif found and found != auth.marketplace:
            auth.marketplace = found
            settings = dataclasses.replace(
                settings, domain=found, base_url=f"https://alexa.{found}"
            )
            if session.settings.base_url != f"https://alexa.{session.settings.domain}":
                settings = dataclasses.replace(settings, base_url=session.settings.base_url)
            session.settings = settings
            await session.exchange(deadline)
        await session.renew(deadline, "sign-in")
        auth.cookies = session.jar.as_dict()
    except CollectorError as exc:
        print(f"homepoll: Amazon did not accept the sign-in: {safe_lines(exc)}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        await session.aclose()
    save_auth_file(settings.auth_file, auth)
    print(f"saved the refresh token and device to {settings.auth_file} (mode 0600)")
    if found and found != config_domain and not explicit_domain:
        print(f"the account's marketplace is {found}; homepoll follows it")
    return await _list_monitors(settings, "sign-in")


async def _account_marketplace(session, deadline: float) -> str | None:
    """``/api/welcome`` -> alexaHostName, else ``/api/users/me`` -> marketPlaceDomainName."""
    import json

    for path, key, prefix in (
        ("/api/welcome", "alexaHostName", "alexa."),
        ("/api/users/me", "marketPlaceDomainName", "www."),
    ):
        try:
            response, body = await session.send("GET", session.base_url + path, deadline)
            value = json.loads(body).get(key) if response.status_code == 200 else None
        except (CollectorError, ValueError, AttributeError):
            continue
        if isinstance(value, str) and value.startswith(prefix + "amazon."):
            return value.removeprefix(prefix).lower()
    return None


async def _list_monitors(settings: AmazonAqmSettings, what: str, use_auth_file: bool = True) -> int:
    from homepoll.collectors.amazon_aqm import AmazonAqmCollector

    collector = AmazonAqmCollector(settings, use_auth_file=use_auth_file)
    try:
        monitors = await collector.discover()
    except CollectorError as exc:
        print(f"homepoll: Amazon did not accept the {what}: {safe_lines(exc)}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        await collector.aclose()
    if not monitors:
        print(
            f"homepoll: Amazon accepted the {what} but no air-quality monitor was found on "
            f"{settings.domain}; check collectors.amazon_aqm.domain (the marketplace of your "
            "Amazon account)",
            file=sys.stderr,
        )
        return EXIT_FAILED
    print(f"Amazon accepted the {what}; {len(monitors)} monitor(s) found:")
    for monitor in monitors:
        print(f"  {escape_control(monitor.name)}  ({monitor.endpoint_id})")
    return EXIT_OK


def amazon_cookies(config: Config, source: str) -> int:
    """Import a browser's cookies: validated and tested first, saved 0600 only when they work;
    the file they replace is kept as ``.bak``. A bad import never touches a working file."""
    from homepoll.cookies import missing_required, parse_cookie_input, save_cookie_file

    settings = config.amazon_aqm
    text = _read_source(source, "cookies")
    try:
        cookies = parse_cookie_input(text, settings.domain)
    except ValueError as exc:
        raise UnreadableInput(f"{'standard input' if source == '-' else source}: {exc}") from None
    target = Path(settings.cookies_file)
    missing = missing_required(cookies)
    if missing:
        print(
            f"homepoll: the cookies lack {', '.join(missing)}; Amazon will reject them. Export all "
            f"cookies of alexa.{settings.domain} while signed in. {target} is left as it was.",
            file=sys.stderr,
        )
        return EXIT_FAILED
    candidate = target.with_name(target.name + ".new")
    save_cookie_file(candidate, cookies)
    trial = dataclasses.replace(settings, cookies_file=candidate)
    try:
        code = asyncio.run(_list_monitors(trial, "cookies", use_auth_file=False))
    except BaseException:
        candidate.unlink(missing_ok=True)
        raise
    if code != EXIT_OK:
        candidate.unlink(missing_ok=True)
        print(f"homepoll: {target} is left as it was", file=sys.stderr)
        return EXIT_FAILED
    if target.exists():
        backup = target.with_name(target.name + ".bak")
        write_secret_file(backup, read_small_file(target, MAX_SECRET_BYTES).decode("utf-8"))
        print(f"the previous cookies are kept in {backup}")
    os.replace(candidate, target)
    print(f"saved {len(cookies)} cookies to {target} (mode 0600)")
    return EXIT_OK
