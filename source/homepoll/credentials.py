"""Where the secrets are: the Hue key, Amazon cookies and auth file, the MQTT password file,
and systemd's $CREDENTIALS_DIRECTORY copies of them.

Secrets never live in config.yaml; this module finds their files and reports problems by
key path and file name, never by content.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import stat
from pathlib import Path
from typing import TYPE_CHECKING

from homepoll.config.schema import (
    AMAZON_AUTH_CREDENTIAL,
    AMAZON_CREDENTIAL,
    HUE_CREDENTIAL,
    MQTT_PASSWORD_CREDENTIAL,
)
from homepoll.smallfile import MAX_SECRET_BYTES, FileTooLarge, read_small_file

if TYPE_CHECKING:
    from homepoll.config.schema import Config

log = logging.getLogger("homepoll.credentials")

HUE_USERNAME_ENV = "HOMEPOLL_HUE_USERNAME"
CREDENTIALS_ENV = "CREDENTIALS_DIRECTORY"


def secret_problems(config: Config, collector: str) -> list[str]:
    """Problems with ``collector``'s credentials, whether or not it is enabled.

    For ``homepoll once --collector NAME`` on a disabled collector, which load_config
    does not hold to its secrets.
    """
    if collector == "hue":
        if config.hue.username is not None:
            return []
        _key, _source, problem = find_hue_key(config.hue.username_file, config.hue.bridge)
        return [problem] if problem else []
    if collector == "amazon_aqm":
        if exists(config.amazon_aqm.auth_file):  # the refresh token suffices
            return []
        _path, problem = find_cookies(config.amazon_aqm.cookies_file)
        return [problem] if problem else []
    return [f"{collector}: unknown collector; expected one of: hue, amazon_aqm"]


_HUE_KEY = re.compile(r"[A-Za-z0-9._~-]{1,200}")


def attach_secrets(config: Config, failed: set[str], require_secrets: bool) -> Config:
    """Read the Hue key and locate the other secret files.

    A missing or bad one is never a config problem: it is listed in
    ``config.credential_warnings`` (``check-config`` prints them and exits 0) and the
    collector raises its auth alert with the remedy at run time (``hue.username_problem``).
    ``require_secrets=False`` (the commands that create secrets) collects no warnings and
    keeps the configured, writable paths.
    """
    warnings: list[str] = []
    hue = config.hue
    # A key path that is itself invalid already has its problem; a "not found" would only confuse.
    unsure = {"data_dir", "collectors", "collectors.hue", "collectors.hue.username_file"}
    if not unsure & failed:
        key, source, problem = find_hue_key(hue.username_file, hue.bridge)
        hue = dataclasses.replace(
            hue, username=key, username_source=source, username_problem=problem
        )
        if problem and hue.enabled:
            warnings.append(problem)

    amazon = config.amazon_aqm
    unsure = {"data_dir", "collectors", "collectors.amazon_aqm"}
    if require_secrets and not unsure & failed:
        cookies_file, problem = find_cookies(amazon.cookies_file)
        amazon = dataclasses.replace(
            amazon,
            cookies_file=cookies_file,
            auth_file=located(amazon.auth_file, AMAZON_AUTH_CREDENTIAL),
        )
        if problem and amazon.enabled and not exists(amazon.auth_file):  # the token suffices
            warnings.append(problem)
    mqtt = config.mqtt
    if require_secrets and mqtt.password_file is not None:
        password_file = located(mqtt.password_file, MQTT_PASSWORD_CREDENTIAL)
        mqtt = dataclasses.replace(mqtt, password_file=password_file)
        problem = file_problem("mqtt.password_file", password_file)
        if problem and mqtt.enabled:
            warnings.append(problem)
    return dataclasses.replace(
        config,
        hue=hue,
        amazon_aqm=amazon,
        mqtt=mqtt,
        credential_warnings=tuple(warnings) if require_secrets else (),
    )


def find_hue_key(username_file: Path, bridge: str) -> tuple[str | None, str | None, str | None]:
    """(key, where it came from, problem). Env wins, then the file, then systemd credentials.

    Problems name the file, never its content.
    """
    key_path = "collectors.hue.username_file"
    env = os.environ.get(HUE_USERNAME_ENV, "").strip()
    if env:
        if _HUE_KEY.fullmatch(env):
            return env, HUE_USERNAME_ENV, None
        return None, None, f"{HUE_USERNAME_ENV}: does not hold a valid Hue key"

    for path in (username_file, systemd_copy(HUE_CREDENTIAL)):
        if path is None:
            continue
        try:
            text = read_small_file(path, MAX_SECRET_BYTES).decode("utf-8")
        except (FileNotFoundError, NotADirectoryError):
            continue
        except PermissionError:
            return None, None, f"{key_path}: {path} cannot be read (permission denied)"
        except UnicodeDecodeError:
            return None, None, f"{key_path}: {path} does not hold a valid Hue key (not text)"
        except OSError as exc:
            return None, None, f"{key_path}: {path} cannot be read ({exc.strerror or 'error'})"
        key = text.strip()
        if not key:
            return (
                None,
                None,
                f"{key_path}: {path} is empty; pair again: homepoll hue-pair --bridge {bridge}",
            )
        if not _HUE_KEY.fullmatch(key):
            return (
                None,
                None,
                f"{key_path}: {path} does not hold a valid Hue key (one line expected)",
            )
        return key, str(path), None
    return (
        None,
        None,
        f"{key_path}: {username_file} not found; "
        f"pair with the bridge first: homepoll hue-pair --bridge {bridge}",
    )


def find_cookies(cookies_file: Path) -> tuple[Path, str | None]:
    """The cookie file to use and a problem if there is none (the collector reads it)."""
    key_path = "collectors.amazon_aqm.cookies_file"
    if not exists(cookies_file):
        candidate = systemd_copy(AMAZON_CREDENTIAL)
        if candidate is not None:
            return candidate, None
    return cookies_file, file_problem(
        key_path, cookies_file, "import cookies with: homepoll amazon-cookies FILE"
    )


def file_problem(key_path: str, path: Path, remedy: str | None = None) -> str | None:
    """Why the secret file ``path`` cannot be used, from its metadata only (never blocks)."""
    try:
        info = path.stat()
    except FileNotFoundError:
        return f"{key_path}: {path} not found" + (f"; {remedy}" if remedy else "")
    except OSError as exc:
        return f"{key_path}: {path} cannot be read ({exc.strerror or 'error'})"
    if not stat.S_ISREG(info.st_mode):
        return f"{key_path}: {path} is not a file"
    if info.st_size > MAX_SECRET_BYTES:
        too_large = FileTooLarge(info.st_size, MAX_SECRET_BYTES)
        return f"{key_path}: {path} cannot be read ({too_large.strerror})"
    if not os.access(path, os.R_OK):
        return f"{key_path}: {path} cannot be read (permission denied)"
    return None


def systemd_copy(name: str) -> Path | None:
    """``$CREDENTIALS_DIRECTORY/name`` when systemd's LoadCredential= put it there."""
    creds = os.environ.get(CREDENTIALS_ENV, "").strip()
    if creds and exists(Path(creds) / name):
        return Path(creds) / name
    return None


def located(path: Path, name: str) -> Path:
    """The configured secret file, or systemd's copy of it when the configured one is absent."""
    if exists(path):
        return path
    return systemd_copy(name) or path


def exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:
        return False


def warn_about_files(config: Config) -> None:
    """At start: each credential warning, and one line per file whose mode is unsafe.

    config.yaml holds no secret, so only others being able to change it matters (it names
    the program alerts.command runs); the secret files must be the service user's alone.
    """
    for warning in config.credential_warnings:
        log.warning("%s", warning)
    if _mode_has(config.path, 0o002):
        log.warning(
            "%s is writable by other users, who could change what homepoll runs; run: chmod o-w %s",
            config.path,
            config.path,
        )
    secrets = [
        config.hue.username_file,
        config.amazon_aqm.cookies_file,
        config.amazon_aqm.auth_file,
        config.mqtt.password_file,
    ]
    for path in secrets:
        if path is not None and _mode_has(path, 0o044):
            log.warning("%s is readable by other users; run: chmod 600 %s", path, path)


def _mode_has(path: Path, bits: int) -> bool:
    try:
        return bool(path.stat().st_mode & bits)
    except OSError:
        return False
