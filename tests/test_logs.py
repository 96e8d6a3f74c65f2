"""Logging: secrets never reach a handler, formats, journald mode, rotation, re-setup."""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import uuid
from pathlib import Path

import pytest

from homepoll.config import LogSettings
from homepoll.logs import remove_handlers, setup_logging
from homepoll.safetext import redact, register_secret

TIMESTAMPED = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR) \S+: ")


@pytest.fixture(autouse=True)
def _restore_logging():
    root = logging.getLogger()
    level = root.level
    saved = {
        name: (logging.getLogger(name).level, logging.getLogger(name).propagate)
        for name in ("phue", "httpx", "httpcore")
    }
    yield
    remove_handlers()
    root.setLevel(level)
    for name, (lvl, propagate) in saved.items():
        logging.getLogger(name).setLevel(lvl)
        logging.getLogger(name).propagate = propagate


def _secret() -> str:
    return "k" + uuid.uuid4().hex + "Zq"


def test_secret_never_reaches_file_or_stderr(tmp_path: Path, capsys):
    secret = _secret()
    register_secret(secret)
    log_file = tmp_path / "homepoll.log"
    setup_logging(LogSettings(level="DEBUG", file=log_file))

    log = logging.getLogger("homepoll.test")
    log.info("plain %s in args", secret)
    log.warning("inline " + secret)
    log.debug("mapping %(key)s", {"key": secret})
    try:
        raise RuntimeError(f"boom with {secret}")
    except RuntimeError:
        log.exception("failed")
    log.info("stack", stack_info=True, extra={"unused": 1})
    logging.getLogger("some.library").debug("third party says %s", secret)
    # phue logs the key at INFO/DEBUG and tracebacks at ERROR
    logging.getLogger("phue").debug("GET /api/%s/sensors", secret)
    logging.getLogger("phue").error("Using username: %s", secret)

    file_text = log_file.read_text(encoding="utf-8")
    err = capsys.readouterr().err
    for text in (file_text, err):
        assert secret not in text
        assert "plain *** in args" in text
        assert "inline ***" in text
        assert "mapping ***" in text
        assert "RuntimeError: boom with ***" in text  # traceback kept, redacted
        assert "third party says ***" in text
        assert "Using username" not in text  # phue is silenced entirely
        assert "sensors" not in text


def test_url_encoded_and_json_escaped_forms_are_masked(tmp_path: Path):
    secret = 'ab"c/d=' + uuid.uuid4().hex
    register_secret(secret)
    log_file = tmp_path / "x.log"
    setup_logging(LogSettings(file=log_file), stderr=False)
    log = logging.getLogger("homepoll.test")
    from urllib.parse import quote

    log.warning("cookie header %s", quote(secret, safe=""))
    log.warning("body %s", json.dumps({"v": secret}))
    text = log_file.read_text(encoding="utf-8")
    assert uuid.UUID(secret[-32:]).hex not in text
    assert text.count("***") == 2


def test_hue_key_in_url_is_masked_without_registration(tmp_path: Path):
    log_file = tmp_path / "x.log"
    setup_logging(LogSettings(file=log_file), stderr=False)
    logging.getLogger("homepoll.test").warning(
        "GET http://10.0.0.2/api/UnregisteredKey123/sensors failed"
    )
    text = log_file.read_text(encoding="utf-8")
    assert "UnregisteredKey123" not in text
    assert "http://10.0.0.2/api/***/sensors failed" in text
    assert redact("http://h/api/abcdefgh") == "http://h/api/***"


def test_redact_helper_and_short_values_ignored():
    secret = _secret()
    register_secret(secret)
    register_secret("abc")  # too short to mask without ruining every message
    assert redact(f"x {secret} y") == "x *** y"
    assert redact("abc abc") == "abc abc"
    register_secret(f"  {secret}xyz\n")  # a key read from a file with whitespace
    assert redact(f"{secret}xyz") == "***"


def test_json_format_lines_parse(tmp_path: Path, capsys):
    secret = _secret()
    register_secret(secret)
    log_file = tmp_path / "x.log"
    setup_logging(LogSettings(level="INFO", file=log_file, format="json"))
    log = logging.getLogger("homepoll.retry")
    log.info("hello %s", "world")
    try:
        raise ValueError(secret)
    except ValueError:
        log.error("oops", exc_info=True)
    log.debug("not at INFO")

    lines = log_file.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first["level"] == "INFO"
    assert first["logger"] == "homepoll.retry"
    assert first["message"] == "hello world"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first["ts"])
    assert "ValueError: ***" in second["exc"]
    assert secret not in lines[1]
    err_lines = capsys.readouterr().err.splitlines()
    assert [json.loads(line)["message"] for line in err_lines] == ["hello world", "oops"]


def test_journal_stream_drops_timestamp_on_stderr_only(tmp_path: Path, monkeypatch):
    stderr_path = tmp_path / "stderr.txt"
    log_file = tmp_path / "homepoll.log"
    with open(stderr_path, "w", encoding="utf-8") as stream:
        info = os.fstat(stream.fileno())
        monkeypatch.setattr(sys, "stderr", stream)
        monkeypatch.setenv("JOURNAL_STREAM", f"{info.st_dev}:{info.st_ino}")
        setup_logging(LogSettings(level="INFO", file=log_file))
        logging.getLogger("homepoll.retry").warning("giving up")
        remove_handlers()
    err = stderr_path.read_text(encoding="utf-8").splitlines()
    assert err == ["<4>WARNING homepoll.retry: giving up"]
    file_lines = log_file.read_text(encoding="utf-8").splitlines()
    assert len(file_lines) == 1
    assert TIMESTAMPED.match(file_lines[0])
    assert file_lines[0].endswith("WARNING homepoll.retry: giving up")


def test_inherited_journal_stream_keeps_timestamp(tmp_path: Path, monkeypatch):
    """JOURNAL_STREAM naming another file (inherited, stderr redirected) changes nothing."""
    stderr_path = tmp_path / "stderr.txt"
    with open(stderr_path, "w", encoding="utf-8") as stream:
        monkeypatch.setattr(sys, "stderr", stream)
        monkeypatch.setenv("JOURNAL_STREAM", "1:2")
        setup_logging(LogSettings(level="INFO", file=None))
        logging.getLogger("homepoll.retry").warning("giving up")
        remove_handlers()
    (line,) = stderr_path.read_text(encoding="utf-8").splitlines()
    assert TIMESTAMPED.match(line)


def test_rotation_at_small_max_bytes(tmp_path: Path):
    log_file = tmp_path / "logs" / "homepoll.log"  # parent created on demand
    setup_logging(LogSettings(level="INFO", file=log_file, max_bytes=400, backups=2), stderr=False)
    log = logging.getLogger("homepoll.test")
    for i in range(60):
        log.info("line %03d padding padding padding", i)
    names = sorted(p.name for p in log_file.parent.iterdir())
    assert names == ["homepoll.log", "homepoll.log.1", "homepoll.log.2"]
    for path in log_file.parent.iterdir():
        assert path.stat().st_size <= 400
    assert "line 059" in log_file.read_text(encoding="utf-8")


def test_setup_is_idempotent_and_changes_level(tmp_path: Path):
    root = logging.getLogger()
    before = list(root.handlers)
    log_file = tmp_path / "x.log"
    setup_logging(LogSettings(level="WARNING", file=log_file))
    setup_logging(LogSettings(level="WARNING", file=log_file))
    added = [h for h in root.handlers if h not in before]
    assert len(added) == 2  # file + stderr, not four
    log = logging.getLogger("homepoll.test")
    log.info("hidden")
    setup_logging(LogSettings(level="DEBUG", file=log_file), stderr=False)  # SIGHUP reload
    log.debug("shown")
    assert len([h for h in root.handlers if h not in before]) == 1
    text = log_file.read_text(encoding="utf-8")
    assert "hidden" not in text
    assert "shown" in text
    remove_handlers()
    assert root.handlers == before


def test_noisy_libraries_are_quieted(tmp_path: Path):
    setup_logging(LogSettings(level="DEBUG", file=tmp_path / "x.log"), stderr=False)
    assert logging.getLogger("httpx").getEffectiveLevel() == logging.WARNING
    assert logging.getLogger("httpcore").getEffectiveLevel() == logging.WARNING
    phue = logging.getLogger("phue")
    assert not phue.isEnabledFor(logging.CRITICAL)
    assert phue.propagate is False
