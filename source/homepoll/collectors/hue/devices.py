"""From bridge resources to readings: the part v1 (Hue, deCONZ, diyHue) and CLIP v2 share.

Each API module turns its answer into ``Device`` records (one per physical device, keyed by
its Zigbee MAC, the first 23 characters of a v1 ``uniqueid``); this module applies the
``names:`` and ``sensors:`` settings, makes same-named devices distinguishable, and says
which values were skipped and why. So the same devices give the same series whichever API
was used.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from homepoll.model import CollectResult, Reading, finite_number

SOURCE = "hue"

# Why a value was not stored (the text ``once`` prints and the log names).
UNREACHABLE = "unreachable"
NEVER_UPDATED = "never updated"
NO_VALUE = "no current value"
OUT_OF_RANGE = "value out of range"


@dataclass(slots=True)
class Value:
    """One timed measurement of a resource; ``value`` None means skipped for ``why``."""

    metric: str
    unit: str
    ts: int | None
    value: float | None
    why: str | None
    keys: tuple[str, ...]  # what a ``sensors:`` entry may name: resource id, name, uniqueid


@dataclass(slots=True)
class Device:
    """One physical device as one API sees it."""

    device_id: str
    name: str  # the name the user gave it (presence resource, or the v2 device), else first
    lookup: list[str] = field(default_factory=list)  # ``names:`` keys, in priority order
    keys: set[str] = field(default_factory=set)  # ``sensors:`` keys that select the device
    values: list[Value] = field(default_factory=list)
    battery: float | None = None
    battery_seen: bool = False
    battery_from_presence: bool = False
    reachable: bool | None = None  # None: no resource says; else every resource says True


@dataclass(slots=True)
class Parsed:
    """What a parse produced, plus what the collector reports once rather than every poll."""

    result: CollectResult
    unmatched: list[str] = field(default_factory=list)  # ``sensors:`` entries matching nothing
    ignored: dict[str, str] = field(default_factory=dict)  # resource name -> its unmapped type


def number(value: Any) -> float | None:
    """A JSON number as a finite float; None for bools, text, null and absurd values."""
    return finite_number(value)


def lux(lightlevel: float) -> float | None:
    """Hue's light level (10000 * log10(lux) + 1) in lux; None when absurd."""
    try:
        return round(10 ** ((lightlevel - 1) / 10000), 2)
    except OverflowError:
        return None


def convert(metric: str, raw: Any, scale: float = 1) -> float | None:
    """A raw state value in the metric's unit: presence as 1/0, light level as lux."""
    if metric == "presence":
        return (1.0 if raw else 0.0) if isinstance(raw, bool) else None
    value = number(raw)
    if value is None:
        return None
    if metric == "light_level":
        return lux(value)
    return round(value * scale, 4) if scale != 1 else value


def timed_value(
    metric: str, unit: str, raw: Any, value: float | None, ts: int | None, keys: tuple[str, ...]
) -> Value:
    """A measurement, or why it is skipped: no value (null), out of range, never updated."""
    why = None
    if value is None:
        why = NO_VALUE if raw is None else OUT_OF_RANGE
    elif ts is None:
        why = NEVER_UPDATED
    return Value(metric, unit, ts, value, why, keys)


def emit(
    devices: list[Device],
    *,
    names: dict[str, str],
    sensors: tuple[str, ...] | list[str],
    now_ms: int,
    ignored: dict[str, str] | None = None,
) -> Parsed:
    """Readings of every selected device, in the order given; notes for every skipped value."""
    wanted = set(sensors)
    matched: set[str] = set()
    chosen: list[tuple[Device, list[Value], str]] = []
    for device in devices:
        override = next((names[k] for k in device.lookup if k and k in names), None)
        label = override or device.name
        values = device.values
        if wanted:
            hit = wanted & (device.keys | {device.device_id, override or ""})
            if hit:
                matched |= hit
            else:
                values = [v for v in values if wanted.intersection(v.keys)]
                for v in values:
                    matched |= wanted.intersection(v.keys)
                if not values:
                    continue
        chosen.append((device, values, label))
    labels = _distinct([label for _, _, label in chosen], [d.device_id for d, _, _ in chosen])
    result = CollectResult()
    for (device, values, _), label in zip(chosen, labels, strict=True):
        _device_readings(device, values, label, now_ms, result)
    unmatched = [entry for entry in sensors if entry not in matched]
    ignored = ignored or {}
    if wanted and ignored:
        unmatched = [e for e in unmatched if e not in ignored] + [
            e for e in unmatched if e in ignored
        ]
    return Parsed(result, unmatched, ignored)


def _distinct(labels: list[str], ids: list[str]) -> list[str]:
    """Same-named devices get the end of their id (enough to tell them apart) as a suffix."""
    counts: dict[str, int] = {}
    for label in labels:
        counts[label] = counts.get(label, 0) + 1
    if all(n == 1 for n in counts.values()):
        return labels
    out = []
    for label, device_id in zip(labels, ids, strict=True):
        out.append(label if counts[label] == 1 else f"{label} ({device_id[-8:]})")
    if len(set(out)) != len(out):  # ids that share their end: the whole id
        out = [
            label if counts[label] == 1 else f"{label} ({device_id})"
            for label, device_id in zip(labels, ids, strict=True)
        ]
    return out


def _device_readings(
    device: Device, values: list[Value], label: str, now_ms: int, result: CollectResult
) -> None:
    readings = result.readings
    device_id = device.device_id
    for v in values:
        if v.value is None or v.ts is None:
            result.skipped += 1
            result.notes.append(f"{label}: {v.metric} skipped ({v.why or NO_VALUE})")
            continue
        readings.append(Reading(SOURCE, device_id, label, v.metric, v.unit, v.ts, v.value))
    # Device-level values carry no timestamp: poll time, stored only when they change.
    if device.battery_seen:
        if device.battery is None:
            result.skipped += 1
            result.notes.append(f"{label}: battery skipped ({NO_VALUE})")
        else:
            readings.append(
                Reading(SOURCE, device_id, label, "battery", "%", now_ms, device.battery, True)
            )
    if device.reachable is not None:
        readings.append(
            Reading(
                SOURCE,
                device_id,
                label,
                "reachable",
                "bool",
                now_ms,
                1.0 if device.reachable else 0.0,
                True,
            )
        )
