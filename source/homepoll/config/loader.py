"""The one generic walk from raw YAML to the schema's dataclasses, one problem line per bad key.

All problems are reported at once, so a user fixes a config file in one round instead of
one error per restart. Unknown keys are errors too: a typo must never silently fall back
to a default. Invalid values fall back to their defaults so the walk can go on.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import yaml

from homepoll.config import checks as c
from homepoll.config.schema import Config, keys
from homepoll.config.yaml_source import read_yaml
from homepoll.credentials import attach_secrets, exists
from homepoll.errors import ConfigError

_MISSING = object()


def load_config(path: Path | str, *, require_secrets: bool = True) -> Config:
    """Read, validate and resolve ``path``; raise ConfigError listing every problem.

    ``require_secrets=False`` is for commands that create the secrets (``hue-pair``,
    ``amazon-cookies``): a missing key is then not a problem, and ``cookies_file`` keeps
    its configured (writable) path instead of a read-only ``$CREDENTIALS_DIRECTORY`` copy.
    """
    path = Path(path)
    try:
        raw = read_yaml(path)
        checker = _Checker(path)
        config = checker.build(Config, raw, "", {}, path=Path(os.path.abspath(path)))
        config = attach_secrets(config, checker.failed, require_secrets)
        problems = checker.problems
    except ConfigError:
        raise
    except Exception as exc:  # never a traceback for any input
        problems = [f"{path}: unexpected error while checking the config: {type(exc).__name__}"]
    if problems:
        raise ConfigError(problems)
    return config


def describe_config(config: Config) -> str:
    """The effective settings as YAML-like text for ``check-config``, secrets masked.

    Only the presence of the Hue key is shown, and cookie files are never opened here.
    """
    effective: dict[str, Any] = {"config_file": str(config.path), **plain(config)}
    hue: dict[str, Any] = {}
    for name, value in effective["collectors"]["hue"].items():
        hue[name] = value
        if name == "username_file":
            hue["username"] = "***" if config.hue.username else "(not set)"
            hue["username_source"] = config.hue.username_source or "(none)"
    effective["collectors"]["hue"] = hue
    amazon = effective["collectors"]["amazon_aqm"]
    amazon["cookies"] = "present" if exists(config.amazon_aqm.cookies_file) else "missing"
    if config.log.file is None:
        effective["log"]["file"] = "- (stderr only)"
    text = yaml.safe_dump(effective, sort_keys=False, default_flow_style=False, allow_unicode=True)
    return f"# effective settings of {config.path} (secrets masked)\n{text}"


def plain(settings: Any) -> dict[str, Any]:
    """A schema dataclass as YAML-dumpable plain data, keys only (no secret fields)."""
    result: dict[str, Any] = {}
    for f in keys(type(settings)):
        value = getattr(settings, f.name)
        if dataclasses.is_dataclass(value):
            value = plain(value)
        elif isinstance(value, Path):
            value = str(value)
        elif isinstance(value, tuple):
            value = list(value)
        elif isinstance(value, dict):
            value = dict(value)
        under = f.metadata.get("under")
        (result.setdefault(under, {}) if under else result)[f.name] = value
    return result


class _Checker:
    """Walks the raw YAML along the schema, collecting problems and building the dataclasses."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.base_dir = Path(os.path.abspath(path)).parent
        self.data_dir = self.base_dir / "data"
        self.problems: list[str] = []
        self.failed: set[str] = set()
        self.given_at: dict[str, dict[str, Any]] = {}  # section key path -> keys it gave

    def problem(self, key: str, message: str) -> None:
        self.failed.add(key)
        self.problems.append(f"{key}: {message}")

    def resolve(self, text: str) -> Path:
        path = Path(text).expanduser()
        if not path.is_absolute():
            path = self.base_dir / path
        return Path(os.path.normpath(path))

    def build(self, cls: type, raw: dict, prefix: str, inherited: dict, **fixed: Any) -> Any:
        """``cls`` from the mapping ``raw`` found at ``prefix``; ``inherited``: defaults that
        override the schema's (the global retry keys under a collector's retry:)."""
        fields = keys(cls)
        groups: dict[str, list[dataclasses.Field]] = {}
        for f in fields:
            if f.metadata.get("under"):
                groups.setdefault(f.metadata["under"], []).append(f)
        direct = [f for f in fields if not f.metadata.get("under")]
        self.unknown_keys(raw, prefix, [f.name for f in direct] + list(groups), fields)

        values: dict[str, Any] = dict(fixed)
        given: dict[str, Any] = {}
        for f in direct:
            if "section" in f.metadata:
                values[f.name] = self.subsection(raw, f, prefix)
                continue
            value = self.value(raw, f, prefix)
            if value is not _MISSING:
                given[f.name] = value
            chosen = given.get(f.name, inherited.get(f.name, _MISSING))
            values[f.name] = self.finish(f, chosen, _join(prefix, f.name))
            if f.metadata.get("path") and f.name == "data_dir":
                self.data_dir = values[f.name]
        for under, members in groups.items():
            container = self.mapping(raw, under, prefix)
            self.unknown_keys(container, _join(prefix, under), [f.name for f in members], members)
            for f in members:
                values[f.name] = self.subsection(container, f, _join(prefix, under))
        self.given_at[prefix] = given

        settle = getattr(cls, "settle", None)
        if settle is not None:
            settle(
                values,
                set(given),
                lambda name, msg: self.problem(_join(prefix, name), msg),
                self.resolve,
            )
        return cls(**values)

    def subsection(self, parent: dict, f: dataclasses.Field, prefix: str) -> Any:
        inherit = f.metadata.get("inherit")
        base = self.given_at.get(inherit, {}) if inherit else {}
        raw = self.mapping(parent, f.name, prefix)
        return self.build(f.metadata["section"], raw, _join(prefix, f.name), base)

    def mapping(self, parent: dict, name: str, prefix: str) -> dict:
        """The mapping at ``parent[name]``; null or absent = empty."""
        value = parent.get(name)
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.problem(_join(prefix, name), f"must be a mapping of settings, got {c.show(value)}")
            return {}
        return value

    def unknown_keys(
        self, section: dict, prefix: str, allowed: list[str], fields: list[dataclasses.Field]
    ) -> None:
        for name in section:
            if isinstance(name, str) and name in allowed:
                continue
            key = _join(prefix, c.key_text(name))
            moved = _moved_to(name, fields)
            if moved:
                self.problem(key, f"unknown key here; did you mean {_join(prefix, moved)}?")
                continue
            import difflib  # only when a key is unknown: keeps the daemon's memory down

            close = difflib.get_close_matches(str(name).lower(), allowed, n=1, cutoff=0.6)
            if close:
                self.problem(key, f'unknown key; did you mean "{close[0]}"?')
            else:
                self.problem(key, f"unknown key; expected one of: {', '.join(allowed)}")

    def value(self, section: dict, f: dataclasses.Field, prefix: str) -> Any:
        """The checked value of key ``f`` in ``section``; _MISSING when absent or invalid."""
        raw = section.get(f.name, _MISSING)
        if raw is _MISSING:
            return _MISSING
        key = _join(prefix, f.name)
        try:
            return f.metadata["check"](raw)
        except c.Invalid as bad:
            message = f"must be {bad.expected}, got {c.show(raw)}"
            if bad.hint:
                message += f"; {bad.hint}"
            self.problem(key, message)
        except c.ItemProblems as bad:
            self.failed.add(key)
            for suffix, message in bad.items:
                self.problem(f"{key}{suffix}", message)
        return _MISSING

    def finish(self, f: dataclasses.Field, value: Any, key: str) -> Any:
        """Defaults and path resolution: null paths follow data_dir or the schema's default."""
        meta = f.metadata
        default = default_of(f)
        if not meta.get("path"):
            return default if value is _MISSING else value
        if value is _MISSING or value is None:
            if meta.get("data_file"):
                return self.data_dir / meta["data_file"]
            return self.resolve(str(default)) if isinstance(default, Path) else default
        if meta.get("dash_means_none") and value == "-":
            return None
        path = self.resolve(value)
        if meta.get("existing_file") and not path.is_file():
            self.problem(key, f"{path} is not an existing file")
        return path


def default_of(f: dataclasses.Field) -> Any:
    """A schema field's default value, whether given as a value or a factory."""
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


def _moved_to(name: Any, fields: list[dataclasses.Field]) -> str | None:
    """Where a key unknown here lives one level down, when exactly one place has it."""
    places = []
    for f in fields:
        section = f.metadata.get("section")
        if section and name in {k.name for k in keys(section)}:
            places.append(_join(f.metadata.get("under") or "", f"{f.name}.{name}"))
        elif f.metadata.get("under") and name == f.name:
            places.append(f"{f.metadata['under']}.{name}")
    return places[0] if len(set(places)) == 1 else None


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name
