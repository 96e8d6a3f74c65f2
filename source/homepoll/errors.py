"""The error taxonomy every collector maps its failures into.

The retry policy decides only from these classes, so a collector never needs to know
how it is retried, and the daemon never needs to know how a source fails.
Messages must be secret-free: they reach logs, status.json, alert files and the
``polls`` table.
"""

from __future__ import annotations


class CollectorError(Exception):
    """Base of every classified failure of a poll. ``outcome`` is the ``polls.outcome`` value."""

    outcome = "permanent"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class TransientError(CollectorError):
    """Worth retrying now: timeouts, refused or reset connections, HTTP 5xx, Hue error 901."""

    outcome = "transient"


class PollTimeout(TransientError):
    """The poll's deadline (``interval * poll_budget``) or an attempt's timeout ran out."""

    outcome = "timeout"


class RateLimitedError(CollectorError):
    """The source asks us to slow down; ``retry_after`` is its hint in seconds, if it gave one."""

    outcome = "rate_limited"

    def __init__(
        self, message: str, retry_after: float | None = None, *, retry_in_poll: bool = True
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        # False: a retry inside this poll would only extend the penalty (Amazon's throttle);
        # the poll ends and the daemon pushes the next one back instead.
        self.retry_in_poll = retry_in_poll


class AuthError(CollectorError):
    """Credentials were rejected: a person must act, so it is never retried."""

    outcome = "auth"


class PermanentError(CollectorError):
    """Retrying the same request cannot help: malformed request, unknown response shape."""

    outcome = "permanent"


class ConfigError(Exception):
    """The configuration is invalid; ``problems`` has one line per problem, naming its key path."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


EX_CONFIG = 78
"""sysexits EX_CONFIG: every command exits with it on a bad configuration."""
EX_USAGE = 64
"""sysexits EX_USAGE: a bad command line (an unknown option, ``--since yesterday``)."""


class UsageError(Exception):
    """A bad command-line value (exit 64) or query parameter of the web API (HTTP 400)."""
