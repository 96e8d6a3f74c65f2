"""Logging setup: rotating file, journald-friendly stderr, every line through safetext.

Redaction runs as a filter on every handler we install (not on a logger), so a record from
any logger, ours or a library's, is rewritten before it is formatted: the Hue key and the
Amazon cookie values must never reach a log line, a traceback in the log, or the journal.
"""

from __future__ import annotations

import errno
import json
import logging
import logging.handlers
import os
import sys
from datetime import UTC, datetime
from typing import TextIO

from homepoll.config import LogSettings
from homepoll.safetext import escape_control, redact, register_secret

__all__ = ["register_secret"]  # amazon_aqm imports it from here until it uses safetext

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

_installed: list[logging.Handler] = []


class RedactingFilter(logging.Filter):
    """Formats the message once, redacts it, and drops ``args`` so nothing unredacted remains."""

    _exc_formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # bad %-args: keep the information, still redacted
            message = f"{record.msg!s} (unformattable args: {record.args!r})"
        record.msg = escape_control(redact(message))
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


class _NoFollowRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """Opens the log with O_NOFOLLOW and mode 0640: a link planted as homepoll.log (or as
    the file a rotation creates) makes the open fail instead of appending to its target."""

    def _open(self):
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(self.baseFilename, flags, 0o640)
        return open(fd, self.mode, encoding=self.encoding, errors=self.errors)


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
    problem = None
    if settings.file is not None:
        settings.file.parent.mkdir(parents=True, exist_ok=True)
        try:
            file_handler = _NoFollowRotatingFileHandler(
                settings.file,
                maxBytes=max(0, int(settings.max_bytes)),
                backupCount=max(0, int(settings.backups)),
                encoding="utf-8",
            )
        except OSError as exc:  # logged below, on stderr (the journal): the daemon runs on
            why = "it is a symbolic link" if exc.errno == errno.ELOOP else exc.strerror
            problem = f"cannot write the log file {settings.file}: {why}; logging to stderr only"
        else:
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

    if problem:
        logging.getLogger("homepoll.logs").error(problem)
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
