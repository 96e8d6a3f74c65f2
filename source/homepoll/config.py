"""YAML configuration into frozen dataclasses.

Every validation problem names its key path, and all problems are reported at once,
so a user fixes a config file in one round instead of one error per restart.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from homepoll.errors import ConfigError

__all__ = [
    "AlertSettings",
    "AmazonAqmSettings",
    "BackoffSettings",
    "Config",
    "ConfigError",
    "HueSettings",
    "LogSettings",
    "RetrySettings",
    "StorageSettings",
    "load_config",
]


@dataclass(frozen=True)
class RetrySettings:
    max_attempts: int = 4
    initial_delay: float = 1.0
    multiplier: float = 2.0
    max_delay: float = 30.0
    jitter: float = 0.3
    attempt_timeout: float = 10.0
    rate_limit_delay: float = 60.0
    poll_budget: float = 0.8


@dataclass(frozen=True)
class BackoffSettings:
    failure_threshold: int = 5
    max_interval: float = 900.0


@dataclass(frozen=True)
class LogSettings:
    level: str = "INFO"
    file: Path | None = None  # resolved: None only when "-" (stderr only)
    max_bytes: int = 5_000_000
    backups: int = 5
    format: str = "text"


@dataclass(frozen=True)
class StorageSettings:
    path: Path = Path("data/readings.db")
    retention_days: float = 0
    commit_interval: float = 0


@dataclass(frozen=True)
class AlertSettings:
    command: tuple[str, ...] | None = None  # argument list; a string in YAML is shlex-split


@dataclass(frozen=True)
class HueSettings:
    enabled: bool = True
    bridge: str = "192.168.1.2"
    username_file: Path = Path("data/hue_username")
    interval: float = 60.0
    sensors: tuple[str, ...] = ()
    names: dict[str, str] = field(default_factory=dict)
    retry: RetrySettings = field(default_factory=RetrySettings)
    username: str | None = field(default=None, repr=False)  # the secret, read from file/env


@dataclass(frozen=True)
class AmazonAqmSettings:
    enabled: bool = False
    domain: str = "amazon.com"
    base_url: str = "https://alexa.amazon.com"  # resolved from domain when unset
    cookies_file: Path = Path("data/amazon_cookies.json")
    interval: float = 300.0
    retry: RetrySettings = field(default_factory=RetrySettings)


@dataclass(frozen=True)
class Config:
    path: Path
    data_dir: Path
    log: LogSettings
    storage: StorageSettings
    retry: RetrySettings
    backoff: BackoffSettings
    alerts: AlertSettings
    hue: HueSettings
    amazon_aqm: AmazonAqmSettings


def load_config(path: Path) -> Config:
    """Read, validate and resolve ``path``; raise ConfigError listing every problem."""
    raise NotImplementedError
