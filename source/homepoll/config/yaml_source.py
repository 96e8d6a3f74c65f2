"""Reading config.yaml: bytes to one top-level mapping, every failure a ConfigError line.

Duplicate keys are problems (PyYAML would let the last one win) and syntax errors name
their line and column. Only a regular file of at most MAX_CONFIG_BYTES is read: a FIFO
cannot hang a start, nor a 200 MB file take minutes and the unit's whole memory.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from homepoll.config.checks import show
from homepoll.errors import ConfigError
from homepoll.fsutil import format_size
from homepoll.smallfile import MAX_CONFIG_BYTES, FileTooLarge, read_small_file


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


def read_yaml(path: Path) -> dict:
    """The top-level mapping of ``path``; any reading or parsing failure is a ConfigError."""
    try:
        data = read_small_file(path, MAX_CONFIG_BYTES)
    except FileTooLarge as exc:
        raise ConfigError(
            [
                f"{path}: config file is {format_size(exc.size)}, more than the "
                f"{format_size(exc.limit)} a config file may be; is this the right file?"
            ]
        ) from None
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
        raise ConfigError([yaml_problem(path, exc)]) from None
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
            [f"{path}: top level must be a mapping of settings (key: value), got {show(raw)}"]
        )
    if loader.duplicates:
        raise ConfigError(
            [
                f"{path} line {line}: duplicate key {key!r}; only one may be given"
                for line, key in loader.duplicates
            ]
        )
    return raw


def yaml_problem(path: Path, exc: yaml.YAMLError) -> str:
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
