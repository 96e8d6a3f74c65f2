"""Plain data shared by collectors, storage and the daemon.

Kept free of behaviour so every part can import it without pulling in the others.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import NamedTuple


class SensorKey(NamedTuple):
    """Identifies one stored series: a metric of a physical device from one source.

    A tuple, not a dataclass: storage builds one per reading to look up its caches, and a
    tuple is built and hashed several times faster.
    """

    source: str
    device_id: str
    metric: str


@dataclass(frozen=True, slots=True)
class Reading:
    """One measured value.

    ``ts`` is when the value was measured (the source's own time where it gives one),
    in unix milliseconds UTC, so re-reading an unchanged measurement maps to the same row.
    ``on_change`` marks values the source gives without a timestamp (battery,
    reachability): those carry the poll time and are stored only when the value differs
    from the newest stored one, so an unchanged battery level costs no rows.
    """

    source: str
    device_id: str
    name: str
    metric: str
    unit: str
    ts: int
    value: float
    on_change: bool = False

    @property
    def key(self) -> SensorKey:
        return SensorKey(self.source, self.device_id, self.metric)


@dataclass(slots=True)
class CollectResult:
    """What one successful collection produced.

    ``skipped`` counts values the source could not give this time (an unreachable sensor,
    a property error): they are not poll failures, but the user should see how many.
    """

    readings: list[Reading] = field(default_factory=list)
    skipped: int = 0
    notes: list[str] = field(default_factory=list)


def finite_number(value: object, *, from_text: bool = False) -> float | None:
    """A value as a reading can hold it: a finite float, or None for anything else.

    JSON gives ints, floats (Python's json even reads ``Infinity`` and ``NaN``) and, from some
    sources, numbers as text (``from_text``); booleans are never numbers, and an int too large
    for a float is garbage, not a reading.
    """
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    if isinstance(value, str) and not from_text:
        return None
    try:
        number = float(value)
    except (ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None
