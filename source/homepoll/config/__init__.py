"""config.yaml: the schema (``schema``), its generic loader (``loader``) and the public API."""

from __future__ import annotations

import os
from pathlib import Path

from homepoll.config.loader import describe_config, load_config
from homepoll.config.schema import (
    AlertSettings,
    AmazonAqmSettings,
    BackoffSettings,
    Config,
    HueSettings,
    LogSettings,
    MqttSettings,
    RetrySettings,
    StorageSettings,
    WebSettings,
)
from homepoll.credentials import secret_problems
from homepoll.errors import ConfigError

__all__ = [
    "AlertSettings",
    "AmazonAqmSettings",
    "BackoffSettings",
    "Config",
    "ConfigError",
    "HueSettings",
    "LogSettings",
    "MqttSettings",
    "RetrySettings",
    "StorageSettings",
    "WebSettings",
    "default_config_path",
    "describe_config",
    "load_config",
    "secret_problems",
]

CONFIG_ENV = "HOMEPOLL_CONFIG"


def default_config_path() -> Path:
    """``$HOMEPOLL_CONFIG`` if set, else ``./config.yaml`` (the contract's default)."""
    env = os.environ.get(CONFIG_ENV, "").strip()
    return Path(env) if env else Path("config.yaml")
