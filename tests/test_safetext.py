"""The shared output helpers: what reaches a terminal, a file or a log is inert and secret-free."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from homepoll.model import finite_number
from homepoll.safetext import escape_control, one_line, redact, register_secret
from homepoll.timefmt import iso_or_none, iso_utc, parse_iso


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("\x1b]0;title\x07\x1b[2J", "\\x1b]0;title\\x07\\x1b[2J"),
        ("one-byte CSI \x9b2J", "one-byte CSI \\x9b2J"),  # C1, issue 11 item 9
        ("\x85next line", "\\x85next line"),
        ("evil\u202etxt.exe", "evil\\u202etxt.exe"),  # right-to-left override
        ("\u2066isolate\u2069 \u202aembed\u202c", "\\u2066isolate\\u2069 \\u202aembed\\u202c"),
        ("line\nforged\r", "line\\nforged\\r"),
        ("Ünïcödé 温度 🌡\ttab", "Ünïcödé 温度 🌡\ttab"),
    ],
)
def test_control_and_bidi_characters_are_escaped(raw: str, shown: str) -> None:
    assert escape_control(raw) == shown


def test_redact_masks_registered_given_and_url_secrets() -> None:
    register_secret("registered-secret-91f2")
    text = "a registered-secret-91f2 b given-cookie c /api/hue-key-abc/lights d"
    assert redact(text, ["given-cookie", None, "ab"]) == "a *** b *** c /api/***/lights d"


def test_one_line_redacts_collapses_escapes_and_caps() -> None:
    line = one_line("first\n\tsecond\x9b \u202eword-sekrit1 " + "x" * 50, 40, ["word-sekrit1"])
    assert line.startswith("first second\\x9b \\u202e*** x")
    assert len(line) == 40 and line.endswith("…")


def test_time_helpers_round_trip() -> None:
    moment = datetime(2026, 11, 22, 7, 1, 12, tzinfo=UTC)
    assert iso_utc(moment) == iso_utc(moment.timestamp()) == "2026-11-22T07:01:12Z"
    assert iso_utc(moment.replace(tzinfo=None), sep=" ") == "2026-11-22 07:01:12Z"
    assert parse_iso("2026-11-22T07:01:12Z") == moment
    assert parse_iso("2026-11-22T08:01:12+01:00") == moment
    assert parse_iso("2026-11-22T07:01:12") == moment
    assert parse_iso("2026-11-22T07:01:12", naive_is_utc=False) is None
    assert parse_iso("yesterday") is None and parse_iso(None) is None
    assert iso_or_none(None) is None


@pytest.mark.parametrize(
    ("value", "from_text", "number"),
    [
        (21, False, 21.0),
        (21.5, False, 21.5),
        ("21.5", False, None),
        ("21.5", True, 21.5),
        (True, False, None),
        (float("inf"), False, None),
        (float("nan"), False, None),
        ("NaN", True, None),
        (10**400, False, None),
        (None, False, None),
    ],
)
def test_finite_number(value: object, from_text: bool, number: float | None) -> None:
    assert finite_number(value, from_text=from_text) == number
