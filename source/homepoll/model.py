"""Plain data shared by collectors, storage and the daemon.

Kept free of behaviour so every part can import it without pulling in the others.
"""

from __future__ import annotations

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
