"""The broker password: read from ``mqtt.password_file`` (or systemd's credential), never logged.

Read at every connection attempt, so fixing the file needs no restart. Problems are named by
key path and file, never by content.
"""

from __future__ import annotations

import logging
from pathlib import Path

from homepoll.config.schema import MQTT_PASSWORD_CREDENTIAL
from homepoll.credentials import located, systemd_copy
from homepoll.fsutil import is_readable_by_others
from homepoll.logs import register_secret
from homepoll.smallfile import FileTooLarge, read_small_file

log = logging.getLogger("homepoll.mqtt")

MAX_PASSWORD_BYTES = 4096


class PasswordError(Exception):
    """The password file is missing or unreadable; the message names the file only."""


def password_path(password_file: Path | None) -> Path | None:
    """The file to read: the configured one, else systemd's ``mqtt_password`` credential
    (``LoadCredential=mqtt_password:/etc/...``) when it exists."""
    if password_file is not None:
        return located(password_file, MQTT_PASSWORD_CREDENTIAL)
    return systemd_copy(MQTT_PASSWORD_CREDENTIAL)


def read_password(password_file: Path | None, *, warned: set[Path] | None = None) -> str | None:
    """The password (first line, stripped), None when none is configured; PasswordError."""
    path = password_path(password_file)
    if path is None:
        return None
    key = "mqtt.password_file"
    try:
        raw = read_small_file(path, MAX_PASSWORD_BYTES)  # a FIFO or /dev/zero link never blocks
    except FileTooLarge:
        raise PasswordError(f"{key}: {path} is too long for a password") from None
    except FileNotFoundError:
        raise PasswordError(f"{key}: {path} not found") from None
    except PermissionError:
        raise PasswordError(f"{key}: {path} cannot be read (permission denied)") from None
    except OSError as exc:
        raise PasswordError(f"{key}: {path} cannot be read ({exc.strerror or 'error'})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise PasswordError(f"{key}: {path} is not UTF-8 text") from None
    lines = text.splitlines()
    password = lines[0].strip() if lines else ""
    if not password:
        raise PasswordError(f"{key}: {path} is empty")
    register_secret(password)
    if warned is not None and path not in warned and is_readable_by_others(path):
        warned.add(path)
        log.warning("%s is readable by other users; run: chmod 600 %s", path, path)
    return password
