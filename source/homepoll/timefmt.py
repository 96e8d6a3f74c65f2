"""Time as homepoll writes and reads it: ISO-8601 in UTC, to the second ("2026-11-22T07:01:12Z")."""

from __future__ import annotations

from datetime import UTC, datetime

ISO_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def iso_utc(moment: datetime | float, sep: str = "T") -> str:
    """A datetime (naive ones are taken as UTC) or unix seconds -> "2026-11-22T07:01:12Z"."""
    if not isinstance(moment, datetime):
        moment = datetime.fromtimestamp(moment, UTC)
    elif moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime(ISO_FORMAT if sep == "T" else f"%Y-%m-%d{sep}%H:%M:%SZ")


def iso_or_none(seconds: float | None) -> str | None:
    """Unix seconds -> :func:`iso_utc`, None kept: status.json fields that may be unset."""
    return None if seconds is None else iso_utc(seconds)


def parse_iso(value: object, *, naive_is_utc: bool = True) -> datetime | None:
    """Any ISO-8601 time ("Z" accepted) -> an aware datetime; None when absent or malformed.

    A time without offset is UTC, or rejected (None) with ``naive_is_utc=False``: a source
    that always sends offsets sent garbage when one is missing.
    """
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC) if naive_is_utc else None


def duration_text(seconds: float) -> str:
    """A span as a person reads it: "45 s", "12 min", "3.5 h", "2.0 d"."""
    seconds = abs(seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 36 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"
