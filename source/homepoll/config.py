"""YAML configuration into frozen dataclasses.

Every validation problem names its key path, and all problems are reported at once,
so a user fixes a config file in one round instead of one error per restart.
Unknown keys are errors too: a typo must never silently fall back to a default.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

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
    "default_config_path",
    "describe_config",
    "load_config",
    "secret_problems",
]

HUE_USERNAME_ENV = "HOMEPOLL_HUE_USERNAME"
CONFIG_ENV = "HOMEPOLL_CONFIG"
CREDENTIALS_ENV = "CREDENTIALS_DIRECTORY"
HUE_CREDENTIAL = "hue_username"
AMAZON_CREDENTIAL = "amazon_cookies.json"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LOG_FORMATS = ("text", "json")


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
    commit_interval: float = 300


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
    # Where the key came from (env variable name or file path), for check-config; not secret.
    username_source: str | None = field(default=None, compare=False)


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


# --------------------------------------------------------------------------- public API


def default_config_path() -> Path:
    """``$HOMEPOLL_CONFIG`` if set, else ``./config.yaml`` (the contract's default)."""
    env = os.environ.get(CONFIG_ENV, "").strip()
    return Path(env) if env else Path("config.yaml")


def load_config(path: Path | str, *, require_secrets: bool = True) -> Config:
    """Read, validate and resolve ``path``; raise ConfigError listing every problem.

    ``require_secrets=False`` is for commands that create the secrets (``hue-pair``,
    ``amazon-cookies``): a missing key is then not a problem, and ``cookies_file`` keeps
    its configured (writable) path instead of a read-only ``$CREDENTIALS_DIRECTORY`` copy.
    """
    path = Path(path)
    try:
        raw = _read_yaml(path)
        checker = _Checker(path)
        config = checker.build(raw)
        config = _attach_secrets(config, checker, require_secrets)
        problems = checker.problems
    except ConfigError:
        raise
    except Exception as exc:  # never a traceback for any input
        problems = [f"{path}: unexpected error while checking the config: {type(exc).__name__}"]
    if problems:
        raise ConfigError(problems)
    return config


def secret_problems(config: Config, collector: str) -> list[str]:
    """Problems with ``collector``'s credentials, whether or not it is enabled.

    For ``homepoll once --collector NAME`` on a disabled collector, which load_config
    does not hold to its secrets.
    """
    if collector == "hue":
        if config.hue.username is not None:
            return []
        _key, _source, problem = _find_hue_key(config.hue.username_file, config.hue.bridge)
        return [problem] if problem else []
    if collector == "amazon_aqm":
        _path, problem = _find_cookies(config.amazon_aqm.cookies_file)
        return [problem] if problem else []
    return [f"{collector}: unknown collector; expected one of: hue, amazon_aqm"]


def describe_config(config: Config) -> str:
    """The effective settings as YAML-like text for ``check-config``, secrets masked.

    Only the presence of the Hue key is shown, and cookie files are never opened here.
    """
    hue: dict[str, Any] = {}
    for name, value in _plain(config.hue).items():
        hue[name] = value
        if name == "username_file":
            hue["username"] = "***" if config.hue.username else "(not set)"
            hue["username_source"] = config.hue.username_source or "(none)"
    amazon = _plain(config.amazon_aqm)
    amazon["cookies"] = "present" if _exists(config.amazon_aqm.cookies_file) else "missing"
    log = _plain(config.log)
    if config.log.file is None:
        log["file"] = "- (stderr only)"
    effective = {
        "config_file": str(config.path),
        "data_dir": str(config.data_dir),
        "log": log,
        "storage": _plain(config.storage),
        "retry": _plain(config.retry),
        "backoff": _plain(config.backoff),
        "alerts": _plain(config.alerts),
        "collectors": {"hue": hue, "amazon_aqm": amazon},
    }
    text = yaml.safe_dump(effective, sort_keys=False, default_flow_style=False, allow_unicode=True)
    return f"# effective settings of {config.path} (secrets masked)\n{text}"


# --------------------------------------------------------------------------- reading YAML


class _Loader(yaml.SafeLoader):
    """SafeLoader that notes duplicate keys, which PyYAML would silently let the last one win."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.duplicates: list[tuple[int, str]] = []

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:  # type: ignore[override]
        seen: set[str] = set()
        for key_node, _value in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag.endswith(":merge"):
                continue
            if key_node.value in seen:
                self.duplicates.append((key_node.start_mark.line + 1, key_node.value))
            seen.add(key_node.value)
        return super().construct_mapping(node, deep)


def _read_yaml(path: Path) -> dict:
    """The top-level mapping of ``path``; any reading or parsing failure is a ConfigError."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError([f"{path}: config file not found"]) from None
    except IsADirectoryError:
        raise ConfigError([f"{path}: is a directory, not a config file"]) from None
    except PermissionError:
        raise ConfigError([f"{path}: cannot read config file (permission denied)"]) from None
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read config file ({exc.strerror or exc})"]) from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{path}: not UTF-8 text (bad byte at offset {exc.start})"]) from None

    loader = _Loader(text)
    try:
        raw = loader.get_single_data()
    except yaml.YAMLError as exc:
        raise ConfigError([_yaml_problem(path, exc)]) from None
    except RecursionError:
        raise ConfigError([f"{path}: YAML nested too deeply"]) from None
    finally:
        loader.dispose()

    if raw is None:
        raise ConfigError(
            [f"{path}: config file is empty; expected settings like 'data_dir: data'"]
        )
    if not isinstance(raw, dict):
        raise ConfigError(
            [f"{path}: top level must be a mapping of settings (key: value), got {_show(raw)}"]
        )
    if loader.duplicates:
        raise ConfigError(
            [
                f"{path} line {line}: duplicate key {key!r}; only one may be given"
                for line, key in loader.duplicates
            ]
        )
    return raw


def _yaml_problem(path: Path, exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or "invalid YAML"
    if mark is None:
        return f"{path}: invalid YAML ({problem})"
    context = getattr(exc, "context", None)
    context_mark = getattr(exc, "context_mark", None)
    if context and not context.startswith("while"):
        problem = f"{context}, {problem}"  # "expected a single document, but found another"
    text = f"{path} line {mark.line + 1}: {problem} (column {mark.column + 1})"
    if context and context.startswith("while") and context_mark is not None:
        text += f", {context} started at line {context_mark.line + 1}"
    return text


# --------------------------------------------------------------------------- validation


class _Invalid(Exception):
    """A value does not fit; ``expected`` completes 'must be ...'."""

    def __init__(self, expected: str, hint: str | None = None) -> None:
        super().__init__(expected)
        self.expected = expected
        self.hint = hint


_MISSING = object()

_TOP_KEYS = ("data_dir", "log", "storage", "retry", "backoff", "alerts", "collectors")
_LOG_KEYS = ("level", "file", "max_bytes", "backups", "format")
_STORAGE_KEYS = ("path", "retention_days", "commit_interval")
_RETRY_KEYS = tuple(f.name for f in dataclasses.fields(RetrySettings))
_BACKOFF_KEYS = ("failure_threshold", "max_interval")
_ALERT_KEYS = ("command",)
_COLLECTORS = ("hue", "amazon_aqm")
_HUE_KEYS = ("enabled", "bridge", "username_file", "interval", "sensors", "names", "retry")
_AMAZON_KEYS = ("enabled", "domain", "base_url", "cookies_file", "interval", "retry")

# Keys that belong somewhere else: a more useful hint than a spelling match.
_TOP_MOVED = {
    **{name: f"collectors.{name}" for name in _COLLECTORS},
    **{name: f"retry.{name}" for name in _RETRY_KEYS},
    **{name: f"backoff.{name}" for name in _BACKOFF_KEYS},
}
_COLLECTOR_MOVED = {name: f"retry.{name}" for name in _RETRY_KEYS}


class _Checker:
    """Walks the raw YAML, collecting one problem line per bad key and building the dataclasses.

    Invalid values fall back to defaults so the walk can go on and report everything.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.base_dir = Path(os.path.abspath(path)).parent
        self.problems: list[str] = []
        self.failed: set[str] = set()

    # -- helpers

    def problem(self, key: str, message: str) -> None:
        self.failed.add(key)
        self.problems.append(f"{key}: {message}")

    def section(
        self,
        parent: dict,
        name: str,
        prefix: str,
        allowed: tuple[str, ...],
        moved: dict[str, str] | None = None,
    ) -> dict:
        """The mapping at ``parent[name]`` (null or absent = empty), unknown keys reported."""
        key = _join(prefix, name)
        value = parent.get(name)
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.problem(key, f"must be a mapping of settings, got {_show(value)}")
            return {}
        self.unknown_keys(value, key, allowed, moved)
        return value

    def unknown_keys(
        self, section: dict, prefix: str, allowed: tuple[str, ...], moved: dict | None = None
    ) -> None:
        for name in section:
            if isinstance(name, str) and name in allowed:
                continue
            key = _join(prefix, _key_text(name))
            if moved and name in moved:
                self.problem(key, f"unknown key here; did you mean {_join(prefix, moved[name])}?")
                continue
            import difflib  # only when a key is unknown: keeps the daemon's memory down

            close = difflib.get_close_matches(str(name).lower(), allowed, n=1, cutoff=0.6)
            if close:
                self.problem(key, f'unknown key; did you mean "{close[0]}"?')
            else:
                self.problem(key, f"unknown key; expected one of: {', '.join(allowed)}")

    def value(
        self, section: dict, name: str, prefix: str, check: Callable[[Any], Any], default: Any
    ) -> Any:
        """``check(section[name])``, or ``default`` when absent or invalid (then a problem)."""
        raw = section.get(name, _MISSING)
        if raw is _MISSING:
            return default
        key = _join(prefix, name)
        try:
            return check(raw)
        except _Invalid as bad:
            message = f"must be {bad.expected}, got {_show(raw)}"
            if bad.hint:
                message += f"; {bad.hint}"
            self.problem(key, message)
            return default

    def path_value(self, section: dict, name: str, prefix: str, default: Path) -> Path:
        """A path setting; null means the default, relative means from the config's folder."""
        text = self.value(section, name, prefix, _optional(_path_text), None)
        return default if text is None else self.resolve(text)

    def resolve(self, text: str) -> Path:
        path = Path(text).expanduser()
        if not path.is_absolute():
            path = self.base_dir / path
        return Path(os.path.normpath(path))

    # -- sections

    def build(self, raw: dict) -> Config:
        self.unknown_keys(raw, "", _TOP_KEYS, _TOP_MOVED)
        data_dir = self.resolve(self.value(raw, "data_dir", "", _path_text, "data"))
        log = self.log(raw, data_dir)
        storage = self.storage(raw, data_dir)
        retry_given = self.retry_given(self.section(raw, "retry", "", _RETRY_KEYS), "retry")
        retry = self.retry_settings({}, retry_given, "retry")
        backoff = self.backoff(raw)
        alerts = self.alerts(raw)
        collectors = self.section(raw, "collectors", "", _COLLECTORS)
        hue = self.hue(collectors, data_dir, retry_given)
        amazon = self.amazon(collectors, data_dir, retry_given)
        return Config(
            path=Path(os.path.abspath(self.path)),
            data_dir=data_dir,
            log=log,
            storage=storage,
            retry=retry,
            backoff=backoff,
            alerts=alerts,
            hue=hue,
            amazon_aqm=amazon,
        )

    def log(self, raw: dict, data_dir: Path) -> LogSettings:
        sec = self.section(raw, "log", "", _LOG_KEYS)
        defaults = LogSettings()
        file_text = self.value(sec, "file", "log", _optional(_path_text), None)
        if file_text == "-":
            log_file = None
        elif file_text is None:
            log_file = data_dir / "homepoll.log"
        else:
            log_file = self.resolve(file_text)
        return LogSettings(
            level=self.value(sec, "level", "log", _log_level, defaults.level),
            file=log_file,
            max_bytes=self.value(sec, "max_bytes", "log", _integer(1024), defaults.max_bytes),
            backups=self.value(sec, "backups", "log", _integer(0), defaults.backups),
            format=self.value(sec, "format", "log", _log_format, defaults.format),
        )

    def storage(self, raw: dict, data_dir: Path) -> StorageSettings:
        sec = self.section(raw, "storage", "", _STORAGE_KEYS)
        return StorageSettings(
            path=self.path_value(sec, "path", "storage", data_dir / "readings.db"),
            retention_days=self.value(sec, "retention_days", "storage", _number(0), 0),
            commit_interval=self.value(sec, "commit_interval", "storage", _number(0), 300),
        )

    def retry_given(self, sec: dict, prefix: str) -> dict[str, Any]:
        """Only the retry keys present (and valid) in ``sec``, for key-by-key merging."""
        checks: dict[str, Callable[[Any], Any]] = {
            "max_attempts": _integer(1),
            "initial_delay": _number(0),
            "multiplier": _number(1),
            "max_delay": _number(0),
            "jitter": _fraction,
            "attempt_timeout": _number(above=0),
            "rate_limit_delay": _number(0),
            "poll_budget": _fraction,
        }
        given: dict[str, Any] = {}
        for name, check in checks.items():
            value = self.value(sec, name, prefix, check, _MISSING)
            if value is not _MISSING:
                given[name] = value
        return given

    def retry_settings(self, base: dict, given: dict, prefix: str) -> RetrySettings:
        """``given`` merged over ``base`` (the global retry keys), with cross-key checks."""
        settings = RetrySettings(**{**base, **given})
        if settings.max_delay < settings.initial_delay and (
            "max_delay" in given or "initial_delay" in given
        ):
            if "max_delay" in given:
                self.problem(
                    f"{prefix}.max_delay",
                    f"must be >= initial_delay ({_num_text(settings.initial_delay)}), "
                    f"got {_show(settings.max_delay)}",
                )
            else:
                self.problem(
                    f"{prefix}.initial_delay",
                    f"must be <= max_delay ({_num_text(settings.max_delay)}), "
                    f"got {_show(settings.initial_delay)}",
                )
        return settings

    def backoff(self, raw: dict) -> BackoffSettings:
        sec = self.section(raw, "backoff", "", _BACKOFF_KEYS)
        defaults = BackoffSettings()
        return BackoffSettings(
            failure_threshold=self.value(
                sec, "failure_threshold", "backoff", _integer(1), defaults.failure_threshold
            ),
            max_interval=self.value(
                sec, "max_interval", "backoff", _number(1), defaults.max_interval
            ),
        )

    def alerts(self, raw: dict) -> AlertSettings:
        sec = self.section(raw, "alerts", "", _ALERT_KEYS)
        command = self.value(sec, "command", "alerts", _command, None)
        if command and "/" in command[0] and not Path(command[0]).expanduser().is_absolute():
            # A relative program path means the config's folder, not the daemon's cwd.
            command = (str(self.resolve(command[0])), *command[1:])
        return AlertSettings(command=command)

    def hue(self, collectors: dict, data_dir: Path, global_retry: dict) -> HueSettings:
        prefix = "collectors.hue"
        sec = self.section(collectors, "hue", "collectors", _HUE_KEYS, _COLLECTOR_MOVED)
        defaults = HueSettings()
        retry_sec = self.section(sec, "retry", prefix, _RETRY_KEYS)
        retry_given = self.retry_given(retry_sec, f"{prefix}.retry")
        return HueSettings(
            enabled=self.value(sec, "enabled", prefix, _boolean, defaults.enabled),
            bridge=self.value(sec, "bridge", prefix, _bridge, defaults.bridge),
            username_file=self.path_value(sec, "username_file", prefix, data_dir / HUE_CREDENTIAL),
            interval=self.value(sec, "interval", prefix, _number(1), defaults.interval),
            sensors=self.sensors(sec, prefix),
            names=self.names(sec, prefix),
            retry=self.retry_settings(global_retry, retry_given, f"{prefix}.retry"),
        )

    def sensors(self, sec: dict, prefix: str) -> tuple[str, ...]:
        raw = sec.get("sensors")
        key = f"{prefix}.sensors"
        if raw is None:
            return ()
        if not isinstance(raw, list):
            self.problem(key, f"must be a list of sensor names or ids, got {_show(raw)}")
            return ()
        result = []
        for index, item in enumerate(raw):
            if isinstance(item, bool) or not isinstance(item, str | int) or str(item).strip() == "":
                self.problem(f"{key}[{index}]", f"must be a sensor name or id, got {_show(item)}")
            else:
                result.append(str(item).strip())
        return tuple(result)

    def names(self, sec: dict, prefix: str) -> dict[str, str]:
        raw = sec.get("names")
        key = f"{prefix}.names"
        if raw is None:
            return {}
        if not isinstance(raw, dict):
            self.problem(
                key, f"must be a mapping of sensor name or id to display name, got {_show(raw)}"
            )
            return {}
        result = {}
        for name, display in raw.items():
            item_key = _join(key, _key_text(name))
            if isinstance(name, bool) or not isinstance(name, str | int) or str(name).strip() == "":
                self.problem(item_key, "must be keyed by a sensor name or id")
            elif not isinstance(display, str) or not display.strip():
                self.problem(item_key, f"must be a non-empty display name, got {_show(display)}")
            else:
                result[str(name).strip()] = display.strip()
        return result

    def amazon(self, collectors: dict, data_dir: Path, global_retry: dict) -> AmazonAqmSettings:
        prefix = "collectors.amazon_aqm"
        sec = self.section(collectors, "amazon_aqm", "collectors", _AMAZON_KEYS, _COLLECTOR_MOVED)
        defaults = AmazonAqmSettings()
        retry_sec = self.section(sec, "retry", prefix, _RETRY_KEYS)
        retry_given = self.retry_given(retry_sec, f"{prefix}.retry")
        domain = self.value(sec, "domain", prefix, _domain, defaults.domain)
        base_url = self.value(sec, "base_url", prefix, _optional(_base_url), None)
        return AmazonAqmSettings(
            enabled=self.value(sec, "enabled", prefix, _boolean, defaults.enabled),
            domain=domain,
            base_url=base_url or f"https://alexa.{domain}",
            cookies_file=self.path_value(sec, "cookies_file", prefix, data_dir / AMAZON_CREDENTIAL),
            interval=self.value(sec, "interval", prefix, _number(1), defaults.interval),
            retry=self.retry_settings(global_retry, retry_given, f"{prefix}.retry"),
        )


# --------------------------------------------------------------------------- value checks


def _optional(check: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def optional(value: Any) -> Any:
        if value is None:
            return None
        try:
            return check(value)
        except _Invalid as bad:
            raise _Invalid(f"{bad.expected} or null", bad.hint) from None

    return optional


def _integer(minimum: int) -> Callable[[Any], int]:
    def integer(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise _Invalid(f"an integer >= {minimum}")
        return value

    return integer


def _number(minimum: float | None = None, *, above: float | None = None) -> Callable[[Any], float]:
    if above is not None:
        expected = f"a number > {_num_text(above)}"
    else:
        expected = f"a number >= {_num_text(minimum or 0)}"

    def number(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _Invalid(expected)
        if not math.isfinite(value):
            raise _Invalid(expected)
        if minimum is not None and value < minimum:
            raise _Invalid(expected)
        if above is not None and value <= above:
            raise _Invalid(expected)
        return float(value)

    return number


def _fraction(value: Any) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not 0 <= value <= 1
    ):
        raise _Invalid("a number between 0 and 1")
    return float(value)


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _Invalid("true or false")
    return value


def _path_text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip() or "\0" in value:
        raise _Invalid("a non-empty path")
    return value.strip()


def _log_level(value: Any) -> str:
    if isinstance(value, str) and value.strip().upper() in LOG_LEVELS:
        return value.strip().upper()
    raise _Invalid(f"one of {', '.join(LOG_LEVELS)}")


def _log_format(value: Any) -> str:
    if isinstance(value, str) and value.strip().lower() in LOG_FORMATS:
        return value.strip().lower()
    raise _Invalid(" or ".join(LOG_FORMATS))


_HOSTNAME = re.compile(
    r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?"
)
_IPV6 = re.compile(r"\[[0-9A-Fa-f:.]+(?:%[A-Za-z0-9_.-]+)?\]")


def _bridge(value: Any) -> str:
    expected = "a host or host:port (the bridge speaks plain HTTP)"
    if not isinstance(value, str) or not value.strip():
        raise _Invalid(expected)
    text = value.strip()
    if "://" in text:
        raise _Invalid(
            expected, "give just the host or host:port, without http:// and without a path"
        )
    host, port = text, None
    if text.startswith("["):
        close = text.find("]")
        if close != -1 and text[close + 1 :].startswith(":"):
            host, port = text[: close + 1], text[close + 2 :]
        if not _IPV6.fullmatch(host):
            raise _Invalid(expected)
    else:
        if text.count(":") == 1:
            host, port = text.split(":")
        if not _HOSTNAME.fullmatch(host):
            hint = "write an IPv6 address in brackets: [fe80::1]" if ":" in text else None
            raise _Invalid(expected, hint)
    if port is not None and not (port.isdigit() and 1 <= int(port) <= 65535):
        raise _Invalid(expected, "the port must be a number from 1 to 65535")
    return text


_DOMAIN = re.compile(r"amazon(?:\.[a-z]{2,3}){1,2}")


def _domain(value: Any) -> str:
    expected = 'an Amazon marketplace domain like "amazon.com" or "amazon.co.uk"'
    if not isinstance(value, str) or not _DOMAIN.fullmatch(value.strip().lower()):
        raise _Invalid(expected)
    return value.strip().lower()


def _base_url(value: Any) -> str:
    expected = "a URL starting with http:// or https://"
    if not isinstance(value, str):
        raise _Invalid(expected)
    text = value.strip().rstrip("/")
    scheme, _, rest = text.partition("://")
    if scheme.lower() not in ("http", "https") or not rest or any(c.isspace() for c in text):
        raise _Invalid(expected)
    return text


def _command(value: Any) -> tuple[str, ...] | None:
    expected = "a command line, a list of arguments, or null"
    if value is None:
        return None
    if isinstance(value, str):
        try:
            argv = shlex.split(value)
        except ValueError as exc:
            raise _Invalid(expected, f"cannot split it: {exc}") from None
        if not argv:
            raise _Invalid(expected)
        return tuple(argv)
    if isinstance(value, list) and value and all(isinstance(a, str) for a in value):
        if not value[0].strip():
            raise _Invalid(expected, "the first argument must name the program")
        return tuple(value)
    raise _Invalid(expected, "a list must hold only strings" if isinstance(value, list) else None)


# --------------------------------------------------------------------------- secrets

_HUE_KEY = re.compile(r"[A-Za-z0-9._~-]{1,200}")


def _attach_secrets(config: Config, checker: _Checker, require_secrets: bool) -> Config:
    """Read the Hue key and locate the Amazon cookies; problems only where they are needed."""
    hue = config.hue
    # A key path that is itself invalid already has its problem; a "not found" would only confuse.
    unsure = {"data_dir", "collectors", "collectors.hue", "collectors.hue.username_file"}
    if not unsure & checker.failed:
        key, source, problem = _find_hue_key(hue.username_file, hue.bridge)
        hue = dataclasses.replace(hue, username=key, username_source=source)
        if problem and hue.enabled and require_secrets:
            checker.problems.append(problem)

    amazon = config.amazon_aqm
    unsure = {
        "data_dir",
        "collectors",
        "collectors.amazon_aqm",
        "collectors.amazon_aqm.cookies_file",
    }
    if require_secrets and not unsure & checker.failed:
        cookies_file, problem = _find_cookies(amazon.cookies_file)
        amazon = dataclasses.replace(amazon, cookies_file=cookies_file)
        if problem and amazon.enabled:
            checker.problems.append(problem)
    return dataclasses.replace(config, hue=hue, amazon_aqm=amazon)


def _find_hue_key(username_file: Path, bridge: str) -> tuple[str | None, str | None, str | None]:
    """(key, where it came from, problem). Env wins, then the file, then systemd credentials.

    Problems name the file, never its content.
    """
    key_path = "collectors.hue.username_file"
    env = os.environ.get(HUE_USERNAME_ENV, "").strip()
    if env:
        if _HUE_KEY.fullmatch(env):
            return env, HUE_USERNAME_ENV, None
        return None, None, f"{HUE_USERNAME_ENV}: does not hold a valid Hue key"

    candidates = [username_file]
    creds = os.environ.get(CREDENTIALS_ENV, "").strip()
    if creds:
        candidates.append(Path(creds) / HUE_CREDENTIAL)
    for path in candidates:
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


def _find_cookies(cookies_file: Path) -> tuple[Path, str | None]:
    """The cookie file to use and a problem if there is none (the collector reads it)."""
    key_path = "collectors.amazon_aqm.cookies_file"
    if _exists(cookies_file):
        if not cookies_file.is_file():
            return cookies_file, f"{key_path}: {cookies_file} is not a file"
        if not os.access(cookies_file, os.R_OK):
            return cookies_file, f"{key_path}: {cookies_file} cannot be read (permission denied)"
        return cookies_file, None
    creds = os.environ.get(CREDENTIALS_ENV, "").strip()
    if creds:
        candidate = Path(creds) / AMAZON_CREDENTIAL
        if _exists(candidate):
            return candidate, None
    return (
        cookies_file,
        f"{key_path}: {cookies_file} not found; import cookies with: homepoll amazon-cookies FILE",
    )


# --------------------------------------------------------------------------- small helpers


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:
        return False


def _join(prefix: str, name: str) -> str:
    if not prefix:
        return name
    return f"{prefix}.{name}"


def _key_text(name: Any) -> str:
    return name if isinstance(name, str) else _show(name)


def _num_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _show(value: Any) -> str:
    """How a given value appears in a problem line: YAML-like and short."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
        return text if len(text) <= 60 else text[:56] + '..."'
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return f"a {type(value).__name__}"


def _plain(settings: Any) -> dict[str, Any]:
    """A dataclass as YAML-dumpable plain data, without the secret fields."""
    result: dict[str, Any] = {}
    for f in dataclasses.fields(settings):
        if f.name in ("username", "username_source"):
            continue
        value = getattr(settings, f.name)
        if dataclasses.is_dataclass(value):
            value = _plain(value)
        elif isinstance(value, Path):
            value = str(value)
        elif isinstance(value, tuple):
            value = list(value)
        elif isinstance(value, dict):
            value = dict(value)
        result[f.name] = value
    return result
