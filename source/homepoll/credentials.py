"""Where the secrets are: the Hue key, Amazon cookies and auth file, the MQTT password file,
and systemd's $CREDENTIALS_DIRECTORY copies of them.

Secrets never live in config.yaml; this module finds their files and reports problems by
key path and file name, never by content.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

from homepoll.config.schema import (
    AMAZON_AUTH_CREDENTIAL,
    AMAZON_CREDENTIAL,
    HUE_CREDENTIAL,
    MQTT_PASSWORD_CREDENTIAL,
)

if TYPE_CHECKING:
    from homepoll.config.schema import Config

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
        _path, problem = find_cookies(config.amazon_aqm.cookies_file)
        return [problem] if problem else []
    return [f"{collector}: unknown collector; expected one of: hue, amazon_aqm"]


_HUE_KEY = re.compile(r"[A-Za-z0-9._~-]{1,200}")


def attach_secrets(
    config: Config, failed: set[str], problems: list[str], require_secrets: bool
) -> Config:
    """Read the Hue key and locate the Amazon cookies; problems only where they are needed."""
    hue = config.hue
    # A key path that is itself invalid already has its problem; a "not found" would only confuse.
    unsure = {"data_dir", "collectors", "collectors.hue", "collectors.hue.username_file"}
    if not unsure & failed:
        key, source, problem = find_hue_key(hue.username_file, hue.bridge)
        hue = dataclasses.replace(hue, username=key, username_source=source)
        if problem and hue.enabled and require_secrets:
            problems.append(problem)

    amazon = config.amazon_aqm
    unsure = {
        "data_dir",
        "collectors",
        "collectors.amazon_aqm",
        "collectors.amazon_aqm.cookies_file",
    }
    if require_secrets and not unsure & failed:
        cookies_file, problem = find_cookies(amazon.cookies_file)
        amazon = dataclasses.replace(
            amazon,
            cookies_file=cookies_file,
            auth_file=located(amazon.auth_file, AMAZON_AUTH_CREDENTIAL),
        )
        if problem and amazon.enabled:
            problems.append(problem)
    mqtt = config.mqtt
    if require_secrets and mqtt.password_file is not None:
        password_file = located(mqtt.password_file, MQTT_PASSWORD_CREDENTIAL)
        mqtt = dataclasses.replace(mqtt, password_file=password_file)
    return dataclasses.replace(config, hue=hue, amazon_aqm=amazon, mqtt=mqtt)


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
            text = path.read_text(encoding="utf-8")
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
    if exists(cookies_file):
        if not cookies_file.is_file():
            return cookies_file, f"{key_path}: {cookies_file} is not a file"
        if not os.access(cookies_file, os.R_OK):
            return cookies_file, f"{key_path}: {cookies_file} cannot be read (permission denied)"
        return cookies_file, None
    candidate = systemd_copy(AMAZON_CREDENTIAL)
    if candidate is not None:
        return candidate, None
    return (
        cookies_file,
        f"{key_path}: {cookies_file} not found; import cookies with: homepoll amazon-cookies FILE",
    )


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
