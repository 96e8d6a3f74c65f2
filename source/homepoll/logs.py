"""Logging setup: rotating file, journald-friendly stderr, and secret redaction.

Redaction runs as a filter on every handler we install (not on a logger), so a record from
any logger, ours or a library's, is rewritten before it is formatted: the Hue key and the
Amazon cookie values must never reach a log line, a traceback in the log, or the journal.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import re
import sys
import threading
import urllib.parse
from datetime import UTC, datetime
from typing import TextIO

from homepoll.config import LogSettings

MASK = "***"
MIN_SECRET_LENGTH = 6

# A Hue key sits in the URL path right after /api/; mask whatever is there even when the key
# was never registered (a key typed into a bridge URL by hand, an old key from a log of phue).
_HUE_URL_KEY = re.compile(r"(/api/)[^/\s\"'?#<>]+")

# Control characters in a message (a sensor name from the network, a command's output) would
# start a forged line in the log file or the journal: they are written as escapes instead.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f\x85\u2028\u2029]")


def _escape_control(match: re.Match[str]) -> str:
    char = match.group()
    if char in "\n\r":
        return "\\n" if char == "\n" else "\\r"
    code = ord(char)
    return f"\\x{code:02x}" if code < 256 else f"\\u{code:04x}"


_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_JOURNAL_FORMAT = "%(levelname)s %(name)s: %(message)s"

# sd-daemon(3) priority prefixes: journald reads "<N>" at the start of a stderr line as the
# syslog priority, so `journalctl -p warning` works.
_JOURNAL_PRIORITY = {
    logging.DEBUG: 7,
    logging.INFO: 6,
    logging.WARNING: 4,
    logging.ERROR: 3,
    logging.CRITICAL: 2,
}

# Libraries that log secrets or full URLs. phue logs the key at INFO/DEBUG and tracebacks
# containing it at ERROR: silence it entirely. httpx logs every request URL at INFO.
_SILENCED = ("phue",)
_QUIETED = ("httpx", "httpcore", "apscheduler")  # apscheduler logs every run at INFO

_secrets_lock = threading.Lock()
_secrets: set[str] = set()
_secret_pattern: re.Pattern[str] | None = None

_installed: list[logging.Handler] = []


def register_secret(value: str) -> None:
    """Mask ``value`` (and its URL- and JSON-escaped forms) in every later log line."""
    global _secret_pattern
    if not isinstance(value, str):
        return
    variants = {value, value.strip()}
    variants |= {urllib.parse.quote(v, safe="") for v in list(variants)}
    variants |= {json.dumps(v)[1:-1] for v in list(variants)}
    variants = {v for v in variants if len(v) >= MIN_SECRET_LENGTH}
    if not variants:
        return
    with _secrets_lock:
        if variants <= _secrets:
            return
        _secrets.update(variants)
        ordered = sorted(_secrets, key=len, reverse=True)  # longest first: no partial leftovers
        _secret_pattern = re.compile("|".join(re.escape(s) for s in ordered))


def redact(text: str) -> str:
    """Return ``text`` with registered secrets and Hue URL keys replaced by ``***``."""
    if not isinstance(text, str):
        text = str(text)
    pattern = _secret_pattern
    if pattern is not None:
        text = pattern.sub(MASK, text)
    return _HUE_URL_KEY.sub(r"\g<1>" + MASK, text)


class RedactingFilter(logging.Filter):
    """Formats the message once, redacts it, and drops ``args`` so nothing unredacted remains."""

    _exc_formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # bad %-args: keep the information, still redacted
            message = f"{record.msg!s} (unformattable args: {record.args!r})"
        record.msg = _CONTROL.sub(_escape_control, redact(message))
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._exc_formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log shippers."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exc"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        return json.dumps(entry, ensure_ascii=False)


class JournalFormatter(logging.Formatter):
    """No timestamp (journald adds its own) and a ``<N>`` priority prefix for journald."""

    def __init__(self) -> None:
        super().__init__(_JOURNAL_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        priority = _JOURNAL_PRIORITY.get(record.levelno)
        if priority is None:
            priority = 7 if record.levelno < logging.INFO else 2
        return f"<{priority}>" + super().format(record)


def stderr_is_journal(stream: TextIO | None = None) -> bool:
    """True when ``stream`` (default stderr) is the journal stream named by $JOURNAL_STREAM.

    systemd sets JOURNAL_STREAM to "<device>:<inode>" of the stream; comparing it with the
    actual file descriptor avoids dropping timestamps when the variable was merely inherited
    (a shell started from a service, a redirected stderr).
    """
    value = os.environ.get("JOURNAL_STREAM", "")
    if not value:
        return False
    stream = sys.stderr if stream is None else stream
    try:
        device, inode = (int(part) for part in value.split(":", 1))
        info = os.fstat(stream.fileno())
    except (ValueError, OSError, AttributeError):
        return False
    return (info.st_dev, info.st_ino) == (device, inode)


def _formatter(settings: LogSettings, *, journal: bool) -> logging.Formatter:
    if settings.format == "json":
        return JsonFormatter()
    if journal:
        return JournalFormatter()
    return logging.Formatter(_TEXT_FORMAT)


def setup_logging(settings: LogSettings, *, stderr: bool = True) -> None:
    """Install (or re-install, e.g. on SIGHUP) our handlers on the root logger.

    Idempotent: handlers from a previous call are removed and closed first, so the level,
    format and file can change at runtime.
    """
    remove_handlers()
    root = logging.getLogger()
    level = logging.getLevelName(str(settings.level).upper())
    root.setLevel(level if isinstance(level, int) else logging.INFO)

    handlers: list[logging.Handler] = []
    if settings.file is not None:
        settings.file.parent.mkdir(parents=True, exist_ok=True)
        file_handler = logging.handlers.RotatingFileHandler(
            settings.file,
            maxBytes=max(0, int(settings.max_bytes)),
            backupCount=max(0, int(settings.backups)),
            encoding="utf-8",
        )
        file_handler.setFormatter(_formatter(settings, journal=False))
        handlers.append(file_handler)
    if stderr:
        stream_handler = logging.StreamHandler(sys.stderr)
        stream_handler.setFormatter(_formatter(settings, journal=stderr_is_journal(sys.stderr)))
        handlers.append(stream_handler)

    for handler in handlers:
        handler.addFilter(RedactingFilter())
        root.addHandler(handler)
        _installed.append(handler)

    for name in _SILENCED:
        silenced = logging.getLogger(name)
        silenced.setLevel(logging.CRITICAL + 1)
        silenced.propagate = False
        if not any(isinstance(h, logging.NullHandler) for h in silenced.handlers):
            silenced.addHandler(logging.NullHandler())
    for name in _QUIETED:
        logging.getLogger(name).setLevel(logging.WARNING)


def remove_handlers() -> None:
    """Remove and close the handlers ``setup_logging`` installed (shutdown, tests, reload)."""
    root = logging.getLogger()
    while _installed:
        handler = _installed.pop()
        root.removeHandler(handler)
        handler.close()
