"""The config schema: every key, its type, default, check and one-line doc, in one place.

A key is a dataclass field made by ``setting()``; a section is a field made by
``section()``. The loader (``homepoll.config.loader``) walks these fields and nothing else,
and a test holds the shipped ``config.yaml`` to the same keys and defaults. Fields made with
plain ``field()`` are filled in by the loader or the credentials module, never by the user.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from homepoll.config import checks as c

HUE_CREDENTIAL = "hue_username"
AMAZON_CREDENTIAL = "amazon_cookies.json"
AMAZON_AUTH_CREDENTIAL = "amazon_auth.json"
MQTT_PASSWORD_CREDENTIAL = "mqtt_password"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LOG_FORMATS = ("text", "json")
AMAZON_DEVICE_KINDS = ("air_quality_monitor", "temperature_sensors")


def setting(default: Any, check: c.Check, doc: str, **extra: Any) -> Any:
    """A config key. ``extra``: ``path`` (resolved from the config's folder), ``data_file``
    (null = this file in data_dir), ``dash_means_none`` (log.file "-"), ``yaml_default``
    (how the shipped config.yaml spells the default when it differs from the value)."""
    meta = {"check": check, "doc": doc, **extra}
    if isinstance(default, dict | list):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


def data_file_setting(name: str, doc: str) -> Any:
    """A file path key whose null default is ``<data_dir>/name``."""
    check = c.optional(c.path_text)
    return setting(Path("data") / name, check, doc, path=True, data_file=name)


def file_setting(doc: str, **extra: Any) -> Any:
    """An optional file path key (null = none), relative to the config's folder."""
    return setting(None, c.optional(c.path_text), doc, path=True, **extra)


def section(cls: type, doc: str, *, inherit: str | None = None, under: str | None = None) -> Any:
    """A nested mapping of keys. ``inherit``: a top-level section whose given keys are this
    one's defaults, key by key (a collector's retry: over the global retry:). ``under``: the
    mapping it sits in within the YAML (``collectors``) while being a field of this class."""
    meta = {"section": cls, "doc": doc, "inherit": inherit, "under": under}
    return field(default_factory=cls, metadata=meta)


Report = Callable[[str, str], None]  # (key name within the section, message)


@dataclass(frozen=True)
class RetrySettings:
    max_attempts: int = setting(4, c.integer(1), "attempts within one poll, the first included")
    initial_delay: float = setting(1.0, c.number(0), "wait before the second attempt")
    multiplier: float = setting(2.0, c.number(1), "each further wait is the previous times this")
    max_delay: float = setting(30.0, c.number(0), "longest wait between two attempts")
    jitter: float = setting(0.3, c.fraction, "fraction of each wait added at random")
    attempt_timeout: float = setting(10.0, c.number(above=0), "time limit of one HTTP call")
    rate_limit_delay: float = setting(60.0, c.number(0), "wait when throttled without a hint")
    poll_budget: float = setting(0.8, c.fraction, "fraction of the interval one poll may use")

    @staticmethod
    def settle(values: dict[str, Any], given: set[str], report: Report, _resolve: Any) -> None:
        """max_delay >= initial_delay, reported on whichever of the two this section gave."""
        if values["max_delay"] >= values["initial_delay"]:
            return
        if "max_delay" in given:
            report(
                "max_delay",
                f"must be >= initial_delay ({c.num_text(values['initial_delay'])}), "
                f"got {c.show(values['max_delay'])}",
            )
        elif "initial_delay" in given:
            report(
                "initial_delay",
                f"must be <= max_delay ({c.num_text(values['max_delay'])}), "
                f"got {c.show(values['initial_delay'])}",
            )


@dataclass(frozen=True)
class BackoffSettings:
    failure_threshold: int = setting(5, c.integer(1), "failed polls in a row before slowing down")
    max_interval: float = setting(900, c.number(1), "slowest poll cadence while failing")


@dataclass(frozen=True)
class LogSettings:
    level: str = setting("INFO", c.one_of(*LOG_LEVELS), "minimum level written")
    file: Path | None = setting(
        None,
        c.optional(c.path_text),
        'log file; null = <data_dir>/homepoll.log, "-" = stderr only',
        path=True,
        data_file="homepoll.log",
        dash_means_none=True,
    )
    max_bytes: int = setting(5_000_000, c.integer(1024), "rotate at this size")
    backups: int = setting(5, c.integer(0), "rotated files kept")
    format: str = setting("text", c.one_of(*LOG_FORMATS, expected="text or json"), "text | json")


@dataclass(frozen=True)
class StorageSettings:
    path: Path = data_file_setting("readings.db", "the SQLite database")
    retention_days: float = setting(0, c.number(0), "delete older readings; 0 = keep forever")
    commit_interval: float = setting(300, c.number(0), "seconds between database commits")


@dataclass(frozen=True)
class AlertSettings:
    command: tuple[str, ...] | None = setting(
        None, c.command, "program run on raise/clear (a string is shlex-split)"
    )
    offline_after: float = setting(3600, c.number(1), "seconds failing before OFFLINE alert")
    battery_low: float = setting(15, c.number(0, maximum=100), "battery % listed as low")

    @staticmethod
    def settle(values: dict[str, Any], given: set[str], report: Report, resolve: Any) -> None:
        """A relative program path means the config's folder, not the daemon's cwd; the
        program must exist and be executable now, not fail silently at the first alert."""
        argv = values["command"]
        if not argv:
            return
        if "/" in argv[0] and not Path(argv[0]).expanduser().is_absolute():
            argv = values["command"] = (str(resolve(argv[0])), *argv[1:])
        problem = c.program_problem(argv[0])
        if problem:
            report("command", problem)


@dataclass(frozen=True)
class HueSettings:
    enabled: bool = setting(True, c.boolean, "false = not polled")
    bridge: str = setting("192.168.1.2", c.bridge, "host or host:port of the bridge/gateway")
    api: str = setting("auto", c.one_of("auto", "v1", "v2"), "auto | v1 | v2 (CLIP v2, HTTPS)")
    transport: str = setting(
        "auto", c.one_of("auto", "https", "http"), "auto | https | http to the bridge"
    )
    ca_file: Path | None = file_setting(
        "CA of the bridge; null = the Hue root CA", existing_file=True
    )
    username_file: Path = data_file_setting(HUE_CREDENTIAL, "file holding the bridge key")
    interval: float = setting(60, c.number(1), "seconds between polls")
    sensors: tuple[str, ...] = setting(
        (), c.sensors, "[] = all; else names or ids", yaml_default=[]
    )
    names: dict[str, str] = setting({}, c.display_names, "display names by name or uniqueid")
    retry: RetrySettings = section(RetrySettings, "overrides of retry:", inherit="retry")
    username: str | None = field(default=None, repr=False)  # the secret, read from file/env
    # Where the key came from (env variable name or file path), for check-config; not secret.
    username_source: str | None = field(default=None, compare=False)
    # Why there is no key (not found, unreadable...), for the collector's auth alert.
    username_problem: str | None = field(default=None, compare=False)

    @staticmethod
    def settle(values: dict[str, Any], given: set[str], report: Report, _resolve: Any) -> None:
        """CLIP v2 is HTTPS only."""
        if values["api"] == "v2" and values["transport"] == "http":
            report(
                "transport" if "transport" in given else "api",
                "api v2 needs HTTPS; use transport auto or https, or api v1",
            )


@dataclass(frozen=True)
class AmazonAqmSettings:
    enabled: bool = setting(False, c.boolean, "true after signing in")
    domain: str = setting("amazon.com", c.domain, "Amazon marketplace")
    base_url: str = setting(
        "https://alexa.amazon.com",
        c.optional(c.base_url),
        "null = https://alexa.<domain>",
        yaml_default=None,
    )
    cookies_file: Path = data_file_setting(AMAZON_CREDENTIAL, "the cookie file")
    auth_file: Path = data_file_setting(AMAZON_AUTH_CREDENTIAL, "refresh token + device")
    auth_base_url: str = setting(
        "https://api.amazon.com",
        c.optional(c.base_url),
        "token exchange; null = https://api.<domain>",
        yaml_default=None,
    )
    include: tuple[str, ...] = setting(
        ("air_quality_monitor",),
        c.list_of(*AMAZON_DEVICE_KINDS),
        "which devices to record",
        yaml_default=["air_quality_monitor"],
    )
    interval: float = setting(300, c.number(1), "seconds between polls")
    retry: RetrySettings = section(RetrySettings, "overrides of retry:", inherit="retry")

    @staticmethod
    def settle(values: dict[str, Any], given: set[str], _report: Report, _resolve: Any) -> None:
        """Unset URLs follow the marketplace."""
        if "base_url" not in given or values["base_url"] is None:
            values["base_url"] = f"https://alexa.{values['domain']}"
        if "auth_base_url" not in given or values["auth_base_url"] is None:
            values["auth_base_url"] = f"https://api.{values['domain']}"


@dataclass(frozen=True)
class WebSettings:
    enabled: bool = setting(True, c.boolean, "serve the dashboard and /metrics")
    listen: str = setting("127.0.0.1:8321", c.listen, "host:port to listen on")


_MQTT_VERSION = c.one_of("3.1.1", "5", expected='"3.1.1" or "5"')


@dataclass(frozen=True)
class MqttSettings:
    enabled: bool = setting(False, c.boolean, "publish to an MQTT broker")
    host: str = setting("localhost", c.host, "broker host")
    port: int = setting(1883, c.integer(1, 65535), "broker port")
    username: str | None = setting(None, c.optional(c.text), "null = anonymous")
    password_file: Path | None = file_setting("file holding the broker password (0600)")
    protocol: str = setting("3.1.1", lambda v: _MQTT_VERSION(str(v)), "MQTT version: 3.1.1 | 5")
    tls: bool = setting(False, c.boolean, "TLS to the broker")
    ca_file: Path | None = file_setting("CA of the broker; null = the system's", existing_file=True)
    base_topic: str = setting("homepoll", c.topic, "topics start with this")
    discovery_prefix: str | None = setting(
        "homeassistant", c.optional(c.topic), "Home Assistant discovery; null = none"
    )
    events: bool = setting(False, c.boolean, "also publish every reading, in order")

    @staticmethod
    def settle(values: dict[str, Any], given: set[str], report: Report, _resolve: Any) -> None:
        """A password is only sent together with a user name."""
        if values["password_file"] is not None and values["username"] is None:
            report("password_file", "needs username: set as well")


@dataclass(frozen=True)
class Config:
    path: Path  # the config file itself, absolute; set by the loader
    data_dir: Path = setting(
        Path("data"), c.path_text, "database, alerts, status file, log", path=True
    )
    log: LogSettings = section(LogSettings, "logging")
    storage: StorageSettings = section(StorageSettings, "the SQLite database")
    retry: RetrySettings = section(RetrySettings, "retry defaults for every collector")
    backoff: BackoffSettings = section(BackoffSettings, "slower polling while failing")
    alerts: AlertSettings = section(AlertSettings, "alert files and the alert command")
    hue: HueSettings = section(
        HueSettings, "Philips Hue bridge, deCONZ/Phoscon, diyHue", under="collectors"
    )
    amazon_aqm: AmazonAqmSettings = section(
        AmazonAqmSettings, "Amazon Smart Air Quality Monitor", under="collectors"
    )
    web: WebSettings = section(WebSettings, "the dashboard")
    mqtt: MqttSettings = section(MqttSettings, "MQTT and Home Assistant")
    # Missing or bad secret files: warnings, never config problems (credentials.py).
    credential_warnings: tuple[str, ...] = field(default=(), compare=False)


def keys(cls: type) -> list[dataclasses.Field]:
    """The user-settable fields of a schema class, in order (keys and sections)."""
    return [f for f in dataclasses.fields(cls) if "doc" in f.metadata]
