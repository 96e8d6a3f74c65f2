"""CLIP v2 (``GET /clip/v2/resource``) -> the same devices and series as v1.

How a v2 resource maps to v1, so a user who switches API keeps one history:

- ``device_id`` is the MAC in the device's ``zigbee_connectivity.mac_address``, which is
  what the first 23 characters of a v1 ``uniqueid`` are (``00:17:88:01:02:03:04:05``);
  a device without one gets ``hue-v2-<device uuid>``.
- ``temperature`` (degC), ``light_level`` (the same 10000*log10(lux)+1 scale -> lux) and
  ``motion`` (-> metric ``presence``) give the timed values; their ``*_report.changed``
  is cut to whole seconds, as v1's ``lastupdated`` shows the same moment.
- ``device_power.power_state.battery_level`` is the device's ``battery`` (every battery
  device, switches and remotes included); ``zigbee_connectivity.status`` is
  ``reachable`` (``connected`` or not). Values of an unreachable device are skipped, as v1
  does.
- Names: the device's ``metadata.name`` (the name in the Hue app, v1's presence name).
  ``sensors:`` entries match the device name, v2 ids and the v1 resource ids (``id_v1``
  ``/sensors/7`` -> ``7``); ``names:`` keys match the device id or the device name.
"""

from __future__ import annotations

from typing import Any

from homepoll.collectors.hue.devices import (
    NEVER_UPDATED,
    NO_VALUE,
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
from homepoll.timefmt import parse_iso

# rtype -> (metric, unit, section, field)
SENSOR_TYPES = {
    "temperature": ("temperature", "degC", "temperature", "temperature"),
    "light_level": ("light_level", "lux", "light", "light_level"),
    "motion": ("presence", "bool", "motion", "motion"),
}
WANTED_TYPES = frozenset({*SENSOR_TYPES, "device", "device_power", "zigbee_connectivity"})


def _v1_id(resource: dict[str, Any]) -> str:
    id_v1 = resource.get("id_v1")
    return id_v1.rsplit("/", 1)[-1] if isinstance(id_v1, str) and "/" in id_v1 else ""


def _changed_ms(report: Any) -> int | None:
    if not isinstance(report, dict):
        return None
    moment = parse_iso(report.get("changed"))
    return None if moment is None else int(moment.timestamp()) * 1000


def _value(rtype: str, resource: dict[str, Any], keys: tuple[str, ...]) -> Value:
    metric, unit, section, field_name = SENSOR_TYPES[rtype]
    body = resource.get(section)
    body = body if isinstance(body, dict) else {}
    report = body.get(f"{field_name}_report")
    if not isinstance(report, dict):  # never reported, or reported as not valid
        why = NEVER_UPDATED if body.get(f"{field_name}_valid", True) else NO_VALUE
        return Value(metric, unit, None, None, why, keys)
    raw = report.get(field_name)
    return timed_value(metric, unit, raw, convert(metric, raw), _changed_ms(report), keys)


def parse_v2(
    answer: Any,
    *,
    names: dict[str, str] | None = None,
    sensors: tuple[str, ...] | list[str] = (),
    now_ms: int,
) -> Parsed:
    """Turn a v2 resource list (``{"errors": [], "data": [...]}``) into readings."""
    data = answer.get("data") if isinstance(answer, dict) else None
    if not isinstance(data, list):
        raise PermanentError(
            f"the bridge's CLIP v2 answer has an unexpected shape ({type(answer).__name__})"
        )
    by_type: dict[str, list[dict[str, Any]]] = {t: [] for t in WANTED_TYPES}
    for resource in data:
        if isinstance(resource, dict):
            bucket = by_type.get(resource.get("type"))  # type: ignore[arg-type]
            if bucket is not None:
                bucket.append(resource)
    macs: dict[str, str] = {}
    reachable: dict[str, bool] = {}
    for item in by_type["zigbee_connectivity"]:
        owner = _owner(item)
        mac = item.get("mac_address")
        if owner and isinstance(mac, str) and mac:
            macs[owner] = mac.lower()
            reachable[owner] = item.get("status") == "connected"
    batteries: dict[str, float | None] = {}
    for item in by_type["device_power"]:
        owner = _owner(item)
        state = item.get("power_state")
        if owner and isinstance(state, dict) and "battery_level" in state:
            batteries[owner] = number(state.get("battery_level"))
    devices: dict[str, Device] = {}
    order: list[str] = []
    for item in by_type["device"]:
        rid = item.get("id")
        if not isinstance(rid, str):
            continue
        metadata = item.get("metadata")
        name = metadata.get("name") if isinstance(metadata, dict) else None
        name = str(name or f"Hue device {rid[:8]}")
        device_id = macs.get(rid) or f"hue-v2-{rid}"
        device = Device(device_id, name, [device_id, name])
        device.keys.update((name, rid, _v1_id(item)))
        device.keys.discard("")
        devices[rid] = device
        order.append(rid)
    used: set[str] = set()
    for rtype in SENSOR_TYPES:
        for item in by_type[rtype]:
            device = devices.get(_owner(item) or "")
            if device is None:
                continue
            keys = (_v1_id(item), str(item.get("id", "")), device.name)
            value = _value(rtype, item, keys)
            if reachable.get(_owner(item) or "") is False and value.value is not None:
                value.value, value.why = None, UNREACHABLE
            device.values.append(value)
            used.add(_owner(item) or "")
    for rid, level in batteries.items():
        if rid in devices:
            devices[rid].battery, devices[rid].battery_seen = level, True
            used.add(rid)
    chosen = []
    for rid in order:  # devices with a sensor or a battery, as v1 lists them
        if rid not in used:
            continue
        device = devices[rid]
        if rid in reachable:
            device.reachable = reachable[rid]
        device.values.sort(key=lambda v: _METRIC_ORDER[v.metric])
        chosen.append(device)
    chosen.sort(key=_v1_order)
    return emit(chosen, names=names or {}, sensors=sensors, now_ms=now_ms)


_METRIC_ORDER = {"presence": 0, "light_level": 1, "temperature": 2}


def _v1_order(device: Device) -> tuple[int, str]:
    """v1's order (by the lowest v1 resource id), so v1 and v2 list devices alike."""
    ids = [int(k) for v in device.values for k in v.keys[:1] if k.isdecimal()]
    ids += [int(k) for k in device.keys if k.isdecimal()]
    return (min(ids), "") if ids else (1 << 62, device.device_id)


def _owner(resource: dict[str, Any]) -> str | None:
    owner = resource.get("owner")
    rid = owner.get("rid") if isinstance(owner, dict) else None
    return rid if isinstance(rid, str) else None
