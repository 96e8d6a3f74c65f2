"""Cookie import: the three input forms users paste, and secret-free rejection of the rest."""

from __future__ import annotations

import json
import stat

import pytest

from homepoll.cookies import (
    load_cookie_file,
    missing_required,
    parse_cookie_input,
    save_cookie_file,
)


def test_browser_export_list_keeps_only_the_marketplaces_cookies() -> None:
    export = [
        {"name": "csrf", "value": "c1", "domain": ".amazon.com", "path": "/", "secure": True},
        {"name": "session-id", "value": "s1", "domain": "alexa.amazon.com", "hostOnly": True},
        {"name": "session-id", "value": "s-uk", "domain": ".amazon.co.uk"},
        {"name": "at-acbuk", "value": "a1", "domain": ".amazon.co.uk"},
        {"name": "_ga", "value": "tracker", "domain": ".google.com"},
        {"name": "NID", "value": "x", "domain": "notamazon.com"},
    ]
    text = json.dumps(export)
    assert parse_cookie_input(text) == {"csrf": "c1", "session-id": "s1"}
    assert parse_cookie_input(text, "amazon.co.uk") == {"session-id": "s-uk", "at-acbuk": "a1"}
    with pytest.raises(ValueError, match=r"amazon\.co\.uk, amazon\.com but none for amazon\.de"):
        parse_cookie_input(text, "amazon.de")


NETSCAPE = (
    "# Netscape HTTP Cookie File\n"
    "# https://curl.se/docs/http-cookies.html\n\n"
    ".amazon.de\tTRUE\t/\tTRUE\t0\tcsrf\tcsrf-de\n"
    "#HttpOnly_.amazon.de\tTRUE\t/\tTRUE\t1900000000\tsession-id\tsid-de\n"
    "alexa.amazon.de\tFALSE\t/\tTRUE\t1\tat-acbde\tat-de\n"
    ".amazon.com\tTRUE\t/\tFALSE\t0\tsession-id\tsid-com\n"
)


def test_netscape_cookies_txt_with_or_without_its_header() -> None:
    expected = {"csrf": "csrf-de", "session-id": "sid-de", "at-acbde": "at-de"}
    assert parse_cookie_input(NETSCAPE, "amazon.de") == expected
    bare = NETSCAPE.split("\n", 3)[3]  # curl -c without the comment lines
    assert parse_cookie_input(bare, "amazon.de") == expected
    assert parse_cookie_input(NETSCAPE, "amazon.com") == {"session-id": "sid-com"}
    only_de = "\n".join(line for line in NETSCAPE.splitlines() if ".amazon.com" not in line)
    assert parse_cookie_input(only_de, "amazon.com") == expected  # one site: nothing to choose
    with pytest.raises(ValueError, match=r"cookies\.txt"):
        parse_cookie_input("# Netscape HTTP Cookie File\n.amazon.de\tTRUE\t/\n", "amazon.de")


def test_export_list_without_domains_keeps_everything() -> None:
    export = [{"name": "csrf", "value": "c1"}, {"name": "ubid-main", "value": "u1"}]
    assert parse_cookie_input(json.dumps(export)) == {"csrf": "c1", "ubid-main": "u1"}


def test_name_value_mapping() -> None:
    text = '\n{"csrf": "c1", "session-token": "\\"quoted+/=\\""}\n'
    assert parse_cookie_input(text) == {"csrf": "c1", "session-token": '"quoted+/="'}


@pytest.mark.parametrize(
    "line",
    [
        'Cookie: csrf=c1; session-id=s1; x-main="a=b"',
        'csrf=c1; session-id=s1; x-main="a=b";',
        'cookie:csrf=c1;session-id=s1;x-main="a=b"',
    ],
)
def test_raw_cookie_header(line: str) -> None:
    assert parse_cookie_input(line) == {"csrf": "c1", "session-id": "s1", "x-main": '"a=b"'}


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   \n",
        "hello world",
        "[1, 2]",
        '[{"name": "csrf"}]',
        '[{"name": "csrf", "value": 5}]',
        '{"csrf": 1}',
        "{not json",
        "[]",
        "{}",
        '"just a string"',
        "a=b\nc=d",
        '[{"name": "x", "value": "y", "domain": ".example.org"}]',
        '{"bad name": "v"}',
    ],
)
def test_garbage_is_rejected(text: str) -> None:
    with pytest.raises(ValueError):
        parse_cookie_input(text)


def test_rejection_message_never_contains_a_value() -> None:
    secret = "topsecret-value-\u00e9"
    with pytest.raises(ValueError) as excinfo:
        parse_cookie_input(json.dumps({"session-token": secret}))
    assert "session-token" in str(excinfo.value)
    assert "topsecret" not in str(excinfo.value)


def test_save_is_0600_and_round_trips(tmp_path) -> None:
    path = tmp_path / "sub" / "amazon_cookies.json"
    save_cookie_file(path, {"csrf": "c1", "session-id": "s1"})
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_cookie_file(path) == {"csrf": "c1", "session-id": "s1"}
    assert json.loads(path.read_text()) == {"csrf": "c1", "session-id": "s1"}


def test_load_missing_file_raises_oserror(tmp_path) -> None:
    with pytest.raises(OSError):
        load_cookie_file(tmp_path / "nope.json")


def test_missing_required() -> None:
    assert missing_required({"session-id": "s"}) == ["csrf"]
    assert missing_required({"csrf": ""}) == ["csrf"]
    assert missing_required({"csrf": "c", "session-id": "s"}) == []
