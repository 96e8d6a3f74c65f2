"""The v1 ``GET /api/<key>/sensors`` answer (Hue bridge, deCONZ/Phoscon, diyHue) -> devices.

Hue bridges name their sensors ``ZLL*``; deCONZ names the same and other Zigbee sensors
``ZHA*`` (a Hue motion sensor paired to deCONZ shows up as ZHA types). deCONZ reports
humidity in 0.01 % and pressure in hPa, and may put milliseconds or a ``Z`` on
``lastupdated``. Any resource with ``config.battery`` (switches, remotes, contact sensors)
gives its device a battery; ``ZHABattery`` carries it in ``state.battery``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from homepoll.collectors.hue.devices import (
    UNREACHABLE,
    Device,
    Parsed,
    Value,
    convert,
    emit,
    number,
    timed_value,
)
from homepoll.errors import PermanentError
from homepoll.model import CollectResult
from homepoll.timefmt import parse_iso

DEVICE_ID_LEN = 23  # "00:17:88:01:02:03:04:05": the MAC part of a uniqueid

# type -> (metric, unit, state field, scale)
MAPPED: dict[str, tuple[str, str, str, float]] = {
    "ZLLPresence": ("presence", "bool", "presence", 1),
    "ZHAPresence": ("presence", "bool", "presence", 1),
    "ZLLLightLevel": ("light_level", "lux", "lightlevel", 1),
    "ZHALightLevel": ("light_level", "lux", "lightlevel", 1),
    "ZLLTemperature": ("temperature", "degC", "temperature", 0.01),
    "ZHATemperature": ("temperature", "degC", "temperature", 0.01),
    "ZHAHumidity": ("humidity", "%", "humidity", 0.01),
    "ZHAPressure": ("pressure", "hPa", "pressure", 1),
}
PRESENCE_TYPES = frozenset({"ZLLPresence", "ZHAPresence"})
BATTERY_TYPE = "ZHABattery"

_EPOCH_UTC = datetime(1970, 1, 1, tzinfo=UTC)


def parse_lastupdated(value: Any) -> int | None:
    """``lastupdated`` (UTC; no zone, ``Z`` or an offset; maybe milliseconds) as unix ms."""
    if value == "none":
        return None
    moment = parse_iso(value)
    return None if moment is None else round((moment - _EPOCH_UTC).total_seconds() * 1000)


def _sort_key(rid: Any) -> tuple[int, str]:
    """Numeric resource ids in numeric order, then any others in text order."""
    rid = str(rid)
    # isdecimal, not isdigit: "²" is a digit that int() rejects.
    return (int(rid), "") if rid.isdecimal() else (1 << 62, rid)


def _timed_value(kind: str, state: dict[str, Any], keys: tuple[str, ...]) -> Value:
    metric, unit, field_name, scale = MAPPED[kind]
    raw = state.get(field_name)
    if raw is None and metric == "light_level" and number(state.get("lux")) is not None:
        raw = state.get("lux")  # deCONZ may give only lux on some light sensors
        value = number(raw)
    else:
        value = convert(metric, raw, scale)
    ts = parse_lastupdated(state.get("lastupdated"))
    return timed_value(metric, unit, raw, value, ts, keys)


def parse_v1(
    answer: Any,
    *,
    names: dict[str, str] | None = None,
    sensors: tuple[str, ...] | list[str] = (),
    now_ms: int,
) -> Parsed:
    """Turn a v1 sensors answer into readings grouped by physical device.

    Per-sensor problems (unreachable, never updated, null values) are skipped and noted,
    never raised; only an answer of the wrong shape raises PermanentError.
    """
    if not isinstance(answer, dict):
        raise PermanentError(
            f"the bridge's sensors answer has an unexpected shape ({type(answer).__name__})"
        )
    devices: dict[str, Device] = {}
    uniqueids: dict[str, list[str]] = {}
    resource_names: dict[str, list[str]] = {}
    presence_names: dict[str, str] = {}
    ignored: dict[str, str] = {}
    for rid in sorted(answer, key=_sort_key):
        item = answer[rid]
        if not isinstance(item, dict):
            continue
        kind = item.get("type")
        rid = str(rid)
        state = item.get("state")
        state = state if isinstance(state, dict) else {}
        config = item.get("config")
        config = config if isinstance(config, dict) else {}
        name = str(item.get("name") or f"Hue sensor {rid}")
        mapped = kind in MAPPED
        if not mapped and "battery" not in config and kind != BATTERY_TYPE:
            if isinstance(kind, str):
                ignored.setdefault(name, kind)
                ignored.setdefault(rid, kind)
            continue
        uniqueid = str(item.get("uniqueid") or "")
        device_id = uniqueid[:DEVICE_ID_LEN] if uniqueid else f"hue-sensor-{rid}"
        device = devices.get(device_id)
        if device is None:
            device = devices[device_id] = Device(device_id, name)
            uniqueids[device_id], resource_names[device_id] = [], []
        if uniqueid:
            uniqueids[device_id].append(uniqueid)
        resource_names[device_id].append(name)
        presence = kind in PRESENCE_TYPES
        if presence and device_id not in presence_names:
            presence_names[device_id] = device.name = name
            device.keys.add(name)
        if "reachable" in config:
            reachable = config["reachable"]
            ok = reachable is True
            device.reachable = ok if device.reachable is None else device.reachable and ok
        else:
            reachable = None
        _battery(device, kind, state, config, presence)
        if mapped:
            value = _timed_value(kind, state, (rid, name, uniqueid))
            if reachable is False:
                value.value, value.why = None, UNREACHABLE
            device.values.append(value)
        else:  # a switch, remote, contact sensor, ZHABattery: the device's battery
            device.keys.update((rid, name, uniqueid))
    for device_id, device in devices.items():
        presence_name = presence_names.get(device_id)
        device.lookup = [
            device_id,
            *uniqueids[device_id],
            *([presence_name] if presence_name else []),
            *resource_names[device_id],
        ]
    return emit(
        list(devices.values()),
        names=names or {},
        sensors=sensors,
        now_ms=now_ms,
        ignored=ignored,
    )


def _battery(
    device: Device, kind: Any, state: dict[str, Any], config: dict[str, Any], presence: bool
) -> None:
    """The device's battery: the presence resource's first (diyHue reports a different one on
    each of a motion sensor's three resources), else the first resource's that has one."""
    source = state if kind == BATTERY_TYPE else config
    if "battery" not in source:
        return
    if device.battery_seen and (not presence or device.battery_from_presence):
        return
    device.battery = number(source["battery"])
    device.battery_seen = True
    device.battery_from_presence = presence


def parse_sensors(
    answer: Any,
    *,
    names: dict[str, str] | None = None,
    sensors: tuple[str, ...] | list[str] = (),
    now_ms: int,
) -> CollectResult:
    """``parse_v1`` without the once-per-run reports: the readings, skips and notes."""
    return parse_v1(answer, names=names, sensors=sensors, now_ms=now_ms).result
