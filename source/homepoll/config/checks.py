"""Value checks for config keys: each takes the raw YAML value and returns the clean one.

A check raises ``Invalid`` with what it expected; the loader turns that into the one line
``key.path: must be <expected>, got <value>``. ``ItemProblems`` names single bad items of a
list or mapping (``sensors[1]``, ``names.Hall``).
"""

from __future__ import annotations

import json
import math
import os
import re
import shlex
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

Check = Callable[[Any], Any]


class Invalid(Exception):
    """A value does not fit; ``expected`` completes 'must be ...'."""

    def __init__(self, expected: str, hint: str | None = None) -> None:
        super().__init__(expected)
        self.expected = expected
        self.hint = hint


class ItemProblems(Exception):
    """Some items of a list or mapping are bad: (key suffix, message) per item."""

    def __init__(self, items: list[tuple[str, str]]) -> None:
        super().__init__(items)
        self.items = items


def optional(check: Check) -> Check:
    """``check``, or None for null (meaning: the default)."""

    def optional_value(value: Any) -> Any:
        if value is None:
            return None
        try:
            return check(value)
        except Invalid as bad:
            raise Invalid(f"{bad.expected} or null", bad.hint) from None

    return optional_value


def integer(minimum: int, maximum: int | None = None) -> Check:
    expected = f"an integer >= {minimum}"
    if maximum is not None:
        expected = f"an integer from {minimum} to {maximum}"

    def integer_value(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise Invalid(expected)
        if maximum is not None and value > maximum:
            raise Invalid(expected)
        return value

    return integer_value


def number(
    minimum: float | None = None, *, above: float | None = None, maximum: float | None = None
) -> Check:
    if above is not None:
        expected = f"a number > {num_text(above)}"
    elif maximum is not None:
        expected = f"a number between {num_text(minimum or 0)} and {num_text(maximum)}"
    else:
        expected = f"a number >= {num_text(minimum or 0)}"

    def number_value(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise Invalid(expected)
        if not math.isfinite(value):
            raise Invalid(expected)
        if minimum is not None and value < minimum:
            raise Invalid(expected)
        if above is not None and value <= above:
            raise Invalid(expected)
        if maximum is not None and value > maximum:
            raise Invalid(expected)
        return float(value)

    return number_value


def fraction(value: Any) -> float:
    return _FRACTION(value)


def boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise Invalid("true or false")
    return value


def path_text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip() or "\0" in value:
        raise Invalid("a non-empty path")
    return value.strip()


def one_of(*choices: str, upper: bool = False, expected: str | None = None) -> Check:
    """One of ``choices``, compared without case; normalised to the choice's own spelling."""
    by_lower = {choice.lower(): choice for choice in choices}
    text = expected or f"one of {', '.join(choices)}"

    def choice_value(value: Any) -> str:
        if isinstance(value, str) and value.strip().lower() in by_lower:
            return by_lower[value.strip().lower()]
        raise Invalid(text)

    return choice_value


def list_of(*choices: str) -> Check:
    """A non-empty list of distinct ``choices``, kept in the given order."""
    expected = f"a list of one or more of: {', '.join(choices)}"

    def list_value(value: Any) -> tuple[str, ...]:
        if not isinstance(value, list) or not value:
            raise Invalid(expected)
        bad = [
            (f"[{index}]", f"must be one of {', '.join(choices)}, got {show(item)}")
            for index, item in enumerate(value)
            if item not in choices
        ]
        if bad:
            raise ItemProblems(bad)
        return tuple(dict.fromkeys(value))

    return list_value


def text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip() or any(c < " " for c in value):
        raise Invalid("a non-empty text on one line")
    return value.strip()


_HOSTNAME = re.compile(
    r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?"
)
_IPV6 = re.compile(r"\[[0-9A-Fa-f:.]+(?:%[A-Za-z0-9_.-]+)?\]")


def _host_port(value: Any, expected: str, *, port_required: bool) -> str:
    """``host``, ``host:port`` or ``[v6]:port``, checked; raises Invalid with ``expected``."""
    if not isinstance(value, str) or not value.strip():
        raise Invalid(expected)
    given = value.strip()
    if "://" in given:
        raise Invalid(
            expected, "give just the host or host:port, without http:// and without a path"
        )
    host, port = given, None
    if given.startswith("["):
        close = given.find("]")
        if close != -1 and given[close + 1 :].startswith(":"):
            host, port = given[: close + 1], given[close + 2 :]
        if not _IPV6.fullmatch(host):
            raise Invalid(expected)
    else:
        if given.count(":") == 1:
            host, port = given.split(":")
        if not _HOSTNAME.fullmatch(host):
            hint = "write an IPv6 address in brackets: [fe80::1]" if ":" in given else None
            raise Invalid(expected, hint)
    if port is None and port_required:
        raise Invalid(expected, "the port is missing")
    if port is not None and not (port.isdigit() and 1 <= int(port) <= 65535):
        raise Invalid(expected, "the port must be a number from 1 to 65535")
    return given


def bridge(value: Any) -> str:
    return _host_port(value, "a host or host:port", port_required=False)


def listen(value: Any) -> str:
    return _host_port(value, 'host:port, e.g. "127.0.0.1:8321"', port_required=True)


def host(value: Any) -> str:
    if isinstance(value, str) and ":" in value.strip() and not value.strip().startswith("["):
        raise Invalid("a host name or address", "give the port under port:")
    return _host_port(value, "a host name or address", port_required=False)


_DOMAIN = re.compile(r"amazon(?:\.[a-z]{2,3}){1,2}")


def domain(value: Any) -> str:
    expected = 'an Amazon marketplace domain like "amazon.com" or "amazon.co.uk"'
    if not isinstance(value, str) or not _DOMAIN.fullmatch(value.strip().lower()):
        raise Invalid(expected)
    return value.strip().lower()


def base_url(value: Any) -> str:
    expected = "a URL starting with http:// or https://"
    if not isinstance(value, str):
        raise Invalid(expected)
    given = value.strip().rstrip("/")
    scheme, _, rest = given.partition("://")
    if scheme.lower() not in ("http", "https") or not rest or any(c.isspace() for c in given):
        raise Invalid(expected)
    return given


def topic(value: Any) -> str:
    expected = "an MQTT topic without wildcards (+ #) or leading/trailing /"
    if (
        not isinstance(value, str)
        or not value.strip()
        or any(c in value for c in "+#\0")
        or value.strip().startswith("/")
        or value.strip().endswith("/")
        or any(c.isspace() or c < " " for c in value.strip())
    ):
        raise Invalid(expected)
    return value.strip()


def command(value: Any) -> tuple[str, ...] | None:
    expected = "a command line, a list of arguments, or null"
    if value is None:
        return None
    if isinstance(value, str):
        try:
            argv = shlex.split(value)
        except ValueError as exc:
            raise Invalid(expected, f"cannot split it: {exc}") from None
        if not argv:
            raise Invalid(expected)
        return tuple(argv)
    if isinstance(value, list) and value and all(isinstance(a, str) for a in value):
        if not value[0].strip():
            raise Invalid(expected, "the first argument must name the program")
        return tuple(value)
    raise Invalid(expected, "a list must hold only strings" if isinstance(value, list) else None)


def program_problem(program: str) -> str | None:
    """Why ``program`` (a path, or a name looked up in PATH) cannot be run, if it cannot."""
    if "/" not in program:
        if shutil.which(program) is None:
            return f"program {show(program)} not found in PATH ({os.environ.get('PATH', '')})"
        return None
    path = Path(program).expanduser()
    if not path.is_file():
        return f"program {path} not found" if not path.exists() else f"{path} is not a program"
    if not os.access(path, os.X_OK):
        return f"program {path} is not executable; run: chmod +x {path}"
    return None


def sensors(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise Invalid("a list of sensor names or ids")
    bad = [
        (f"[{index}]", f"must be a sensor name or id, got {show(item)}")
        for index, item in enumerate(value)
        if isinstance(item, bool) or not isinstance(item, str | int) or str(item).strip() == ""
    ]
    if bad:
        raise ItemProblems(bad)
    return tuple(str(item).strip() for item in value)


def display_names(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise Invalid("a mapping of sensor name or id to display name")
    bad: list[tuple[str, str]] = []
    result = {}
    for name, display in value.items():
        suffix = f".{key_text(name)}"
        if isinstance(name, bool) or not isinstance(name, str | int) or str(name).strip() == "":
            bad.append((suffix, "must be keyed by a sensor name or id"))
        elif not isinstance(display, str) or not display.strip():
            bad.append((suffix, f"must be a non-empty display name, got {show(display)}"))
        else:
            result[str(name).strip()] = display.strip()
    if bad:
        raise ItemProblems(bad)
    return result


# --------------------------------------------------------------------------- wording


def key_text(name: Any) -> str:
    return name if isinstance(name, str) else show(name)


def num_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def show(value: Any) -> str:
    """How a given value appears in a problem line: YAML-like and short."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        quoted = json.dumps(value, ensure_ascii=False)
        return quoted if len(quoted) <= 60 else quoted[:56] + '..."'
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return f"a {type(value).__name__}"


_FRACTION = number(0, maximum=1)
