"""`homepoll amazon-login` through the real CLI against the simulated sign-in (issue 13: 1, 7).

The simulator's pages carry the element ids the maintained clients look for (alexapy
``_process_page``, aioamazondevices ``login.py``); /auth/register checks PKCE for real.
"""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from homepoll.simulator.aqm_api import AqmApiSimulator
from tests.conftest import Setup

ALERT = "ALERT_TOKEN_REFRESH_NEEDED.txt"


@pytest.fixture
def de_sim() -> Iterator[AqmApiSimulator]:
    """A German account: the sign-in starts on amazon.com, the account lives on amazon.de."""
    with AqmApiSimulator(
        update_period=1.0, monitors=1, third_party_monitors=1, marketplace="amazon.de"
    ) as sim:
        yield sim


def login_setup(setup_factory, sim: AqmApiSimulator) -> Setup:
    setup = setup_factory(aqm=sim)
    (setup.data / "amazon_cookies.json").unlink()  # no browser cookies: the token is the way in
    setup.write(collectors={"amazon_aqm": {"auth_base_url": sim.base_url}})
    return setup


def _answers(sim: AqmApiSimulator, *, password: str | None = None, code: str | None = None) -> str:
    auth = sim.auth
    return f"{auth.email}\n{password or auth.password}\n{code or auth.otp}\n"


def _secrets_absent(sim: AqmApiSimulator, texts: list[str], setup: Setup) -> None:
    """Acceptance 7: password, code, refresh tokens and cookie values appear nowhere."""
    auth_file = setup.data / "amazon_auth.json"
    stored = json.loads(auth_file.read_text()) if auth_file.exists() else {}
    secrets = [sim.auth.password, sim.auth.otp, *sim.auth.tokens, *sim.valid_cookies.values()]
    secrets += list(stored.get("cookies", {}).values())
    everything = "\n".join(texts) + setup.log_text()
    for path in setup.root.rglob("*.html"):
        everything += path.read_text()
    leaked = [s[:6] + "..." for s in secrets if s and s in everything]
    assert not leaked, leaked


def test_login_signs_in_registers_and_lists_the_monitors(de_sim, setup_factory) -> None:
    setup = login_setup(setup_factory, de_sim)
    debug = setup.root / "pages"
    result = setup.cli("amazon-login", "--debug-html", str(debug), input=_answers(de_sim))
    assert result.returncode == 0, result.stderr
    assert "1 monitor(s) found" in result.stdout and "Air monitor 1" in result.stdout
    assert "Acme" not in result.stdout  # the third-party monitor is not Amazon's
    assert "amazon.de" in result.stdout  # the account's marketplace, found, not guessed
    auth_file = setup.data / "amazon_auth.json"
    assert stat.S_IMODE(auth_file.stat().st_mode) == 0o600
    stored = json.loads(auth_file.read_text())
    assert stored["refresh_token"] in de_sim.auth.tokens  # the one /auth/register issued
    assert stored["marketplace"] == "amazon.de"
    assert stored["device_serial"] == de_sim.auth.registered[0]["serial"]
    assert stored["cookies"]["csrf"] == de_sim.valid_cookies["csrf"]
    text = auth_file.read_text()
    assert de_sim.auth.password not in text and de_sim.auth.email not in text
    pages = sorted(debug.glob("*.html"))
    assert len(pages) >= 2 and all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in pages)
    _secrets_absent(de_sim, [result.stdout, result.stderr], setup)
    assert "auth-mfa-otpcode" in pages[-1].read_text()  # the pages are kept, only secrets masked


@pytest.mark.parametrize(
    ("mode", "answers", "expected"),
    [
        ("captcha", {}, "captcha"),
        ("ok", {"password": "hunter2-wrong"}, "Amazon refused the sign-in"),
        ("ok", {"code": "135799"}, "refused the one-time code"),
        ("unknown_page", {}, "a page homepoll does not know"),
        ("claimspicker", {}, "verification step"),
    ],
)
def test_login_stops_with_a_clear_message(
    de_sim, setup_factory, mode: str, answers: dict[str, str], expected: str
) -> None:
    setup = login_setup(setup_factory, de_sim)
    de_sim.auth.signin_mode = mode
    result = setup.cli("amazon-login", input=_answers(de_sim, **answers))
    assert result.returncode == 1, result.stdout + result.stderr
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
    assert not (setup.data / "amazon_auth.json").exists()
    assert not de_sim.auth.registered
    _secrets_absent(de_sim, [result.stdout, result.stderr, answers.get("password", "")], setup)


def test_refresh_token_from_stdin_needs_no_password(de_sim, setup_factory) -> None:
    setup = login_setup(setup_factory, de_sim)
    token = de_sim.auth.issue_token()
    result = setup.cli("amazon-login", "--refresh-token", "-", input=token + "\n")
    assert result.returncode == 0, result.stderr
    assert "1 monitor(s) found" in result.stdout
    stored = json.loads((setup.data / "amazon_auth.json").read_text())
    assert stored["refresh_token"] == token and stored["marketplace"] == "amazon.de"
    _secrets_absent(de_sim, [result.stdout, result.stderr], setup)


def test_refresh_token_refused_or_unreadable(de_sim, setup_factory, tmp_path: Path) -> None:
    setup = login_setup(setup_factory, de_sim)
    working = setup.cli("amazon-login", "--refresh-token", "-", input=de_sim.auth.issue_token())
    assert working.returncode == 0, working.stderr
    before = (setup.data / "amazon_auth.json").read_bytes()
    revoked = de_sim.auth.issue_token()
    de_sim.auth.revoke_tokens()
    result = setup.cli("amazon-login", "--refresh-token", "-", input=revoked)
    assert result.returncode == 1
    assert "refused the refresh token" in result.stderr
    assert revoked not in result.stderr  # Amazon's error quotes the token: masked
    assert (setup.data / "amazon_auth.json").read_bytes() == before  # nothing changed
    missing = setup.cli("amazon-login", "--refresh-token", str(tmp_path / "nope"))
    assert missing.returncode == 78, missing.stderr
    blank = setup.cli("amazon-login", "--refresh-token", "-", input="   \n")
    assert blank.returncode == 78
