"""The simulated Alexa account's devices and the GraphQL answers about them.

Amazon's own monitors (all metrics), a third-party monitor listed under the same display
category (aioamazondevices skips those: PR #679), and Echo devices with and without a
built-in temperature sensor (``ALEXA_VOICE_ENABLED``). Shapes follow
shared/reference/amazon_aqm.md and aioamazondevices ``const/queries.py``.
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from homepoll.simulator.faults import Fault, Served

SOURCE = "amazon_aqm"
AQM = "aqm"  # Amazon's Smart Air Quality Monitor
THIRD_PARTY = "third_party"  # another maker's monitor, AIR_QUALITY_MONITOR too
ECHO_TEMPERATURE = "echo_temperature"  # an Echo with a temperature sensor
ECHO = "echo"  # an Echo without one
CATEGORY = {
    AQM: "AIR_QUALITY_MONITOR",
    THIRD_PARTY: "AIR_QUALITY_MONITOR",
    ECHO_TEMPERATURE: "ALEXA_VOICE_ENABLED",
    ECHO: "ALEXA_VOICE_ENABLED",
}
RANGE_INSTANCES = {"humidity": "4", "voc": "5", "pm25": "6", "pm10": "7", "co": "8", "iaq": "9"}
_ALIAS = re.compile(
    r"(?:(\w+)\s*:\s*)?listEndpoints\s*\(\s*listEndpointsInput\s*:\s*\{[^}]*?"
    r'displayCategory\s*:\s*"(\w+)"'
)


@dataclass(frozen=True)
class Device:
    index: int
    endpoint_id: str
    name: str
    serial: str
    fahrenheit: bool = False
    kind: str = AQM


@dataclass(frozen=True)
class Sample:
    """One device's measurement at one moment, as served and as homepoll should store it."""

    ts_seconds: int
    ranges: dict[str, int]
    temperature: float  # in the device's own scale, as served
    temperature_c: float  # what homepoll should store


def make_device(rng: random.Random, index: int, kind: str, fahrenheit: bool = False) -> Device:
    uid = f"{rng.getrandbits(128):032x}"
    endpoint = (
        f"amzn1.alexa.endpoint.sim-{uid[:8]}-{uid[8:12]}-{uid[12:16]}-{uid[16:20]}-{uid[20:]}"
    )
    names = {
        AQM: f"Air monitor {index + 1}" + (" (F)" if fahrenheit else ""),
        THIRD_PARTY: f"Acme air sensor {index + 1}",
        ECHO_TEMPERATURE: f"Kitchen Echo {index + 1}",
        ECHO: f"Bedroom Echo Dot {index + 1}",
    }
    serial = f"G{kind[:3].upper()}{rng.randrange(10**11):011d}"
    return Device(index, endpoint, names[kind], serial, fahrenheit, kind)


def sample(device: Device, now: float, period: float, seed: int) -> Sample:
    """The device's measurement current at ``now``: the same moment always gives the same values."""
    step = math.floor(now / period)
    rng = random.Random(f"{seed}:{device.kind}:{device.index}:{step}")
    phase = device.index * 1.7

    def wave(center: float, amplitude: float, speed: float, noise: float, lo: int, hi: int) -> int:
        value = center + amplitude * math.sin(step / speed + phase) + rng.uniform(-noise, noise)
        return int(min(hi, max(lo, round(value))))

    pm25 = wave(12, 9, 6, 2, 1, 30)
    ranges = {
        "humidity": wave(45, 12, 7, 2, 30, 60),
        "voc": wave(15, 12, 5, 3, 0, 40),
        "pm25": pm25,
        "pm10": int(min(40, max(2, pm25 + rng.randint(1, 10)))),
        "co": wave(1, 1.2, 4, 0.5, 0, 3),
        "iaq": wave(85, 12, 8, 3, 60, 100),
    }
    celsius = round(21 + 1.5 * math.sin(step / 9 + phase) + rng.uniform(-0.2, 0.2), 2)
    if device.fahrenheit:
        served = round(celsius * 9 / 5 + 32, 1)
        stored = round((served - 32) * 5 / 9, 2)
    else:
        served = stored = celsius
    return Sample(int(step * period), ranges, served, stored)


def _text(value: str) -> dict[str, Any]:
    return {"value": {"text": value}}


def discovery_answer(query: str, devices: list[Device], empty: bool) -> dict[str, Any]:
    """Every ``alias: listEndpoints(displayCategory: ...)`` of the query, answered."""
    data: dict[str, Any] = {}
    for alias, category in _ALIAS.findall(query):
        listed = [] if empty else [d for d in devices if CATEGORY[d.kind] == category]
        data[alias or "listEndpoints"] = {"endpoints": [_listing(d) for d in listed]}
    return {"data": data, "extensions": {"requestID": "sim", "duration": 3}}


def _listing(device: Device) -> dict[str, Any]:
    maker = "Acme Sensors Ltd" if device.kind == THIRD_PARTY else "Amazon"
    device_type = {AQM: "AEZME1X38KDRA", THIRD_PARTY: "A3ACMEAIR0001"}.get(
        device.kind, "A4ZXE0RM7LQ7A9"
    )
    features = ["connectivity"]
    if device.kind in (AQM, THIRD_PARTY):
        features += ["temperatureSensor", "range"]
    elif device.kind == ECHO_TEMPERATURE:
        features += ["temperatureSensor", "volume"]
    else:
        features += ["volume"]
    return {
        "endpointId": device.endpoint_id,
        "friendlyNameObject": _text(device.name),
        "serialNumber": _text(device.serial),
        "manufacturer": _text(maker),
        "legacyIdentifiers": {"dmsIdentifier": {"deviceType": _text(device_type)}},
        "features": [{"name": name} for name in features],
    }


def state_answer(
    devices: list[Device],
    ids: list[str],
    fault: Fault | None,
    served: list[Served],
    sample_of: Any,
) -> dict[str, Any]:
    """State of the requested devices; what homepoll should store goes into ``served``."""
    if fault and fault.kind == "empty_endpoints":
        return wrap([])
    wanted = [d for d in devices if d.endpoint_id in ids]
    error_metric = str(fault.params.get("metric", "pm25")) if fault else ""
    endpoints = []
    for position, device in enumerate(wanted):
        now = sample_of(device)
        iso = datetime.fromtimestamp(now.ts_seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        reachable = not (fault and fault.kind == "unreachable" and position == 0)
        broken = error_metric if fault and fault.kind == "property_error" and position == 0 else ""
        scale = "FAHRENHEIT" if device.fahrenheit else "CELSIUS"
        features: list[dict[str, Any]] = []
        if device.kind != ECHO:
            temperature = {"value": now.temperature, "scale": scale}
            prop = _prop("temperature", "TemperatureSensor", iso, broken == "temperature")
            features.append(_feature("temperatureSensor", None, prop, value=temperature))
        if device.kind in (AQM, THIRD_PARTY):
            for metric, instance in RANGE_INSTANCES.items():
                prop = _prop("rangeValue", "RangeValue", iso, broken == metric)
                features.append(
                    _feature("range", instance, prop, rangeValue={"value": now.ranges[metric]})
                )
        else:  # an Echo's range instance is its volume, nothing homepoll stores
            prop = _prop("rangeValue", "RangeValue", iso, False)
            features.append(_feature("range", "4", prop, rangeValue={"value": 35}))
        status = "OK" if reachable else "UNREACHABLE"
        reach = {"name": "reachability", "__typename": "Reachability", "error": None}
        reach |= {"reachabilityStatusValue": status, "timeOfSample": iso}
        features.append({"name": "connectivity", "instance": None, "properties": [reach]})
        endpoints.append(
            {
                "endpointId": device.endpoint_id,
                "friendlyNameObject": _text(device.name),
                "features": features,
            }
        )
        if reachable and device.kind != THIRD_PARTY:
            values: dict[str, float] = {"temperature": now.temperature_c}
            if device.kind == AQM:
                values.update(now.ranges)
            if device.kind == ECHO:
                values = {}
            ts = now.ts_seconds * 1000
            served.extend(
                Served(SOURCE, device.endpoint_id, metric, ts, float(value))
                for metric, value in values.items()
                if metric != broken
            )
    return wrap(endpoints)


def _feature(name: str, instance: str | None, prop: dict[str, Any], **value: Any) -> dict:
    if prop.get("error") is None:
        prop.update(value)
    else:
        prop.update({key: None for key in value})
    return {"name": name, "instance": instance, "properties": [prop]}


def _prop(name: str, typename: str, iso: str, broken: bool) -> dict[str, Any]:
    if broken:
        return {
            "name": name,
            "__typename": typename,
            "error": {"type": "NOT_FOUND", "message": "State not available"},
            "timeOfSample": None,
            "timeOfLastChange": None,
        }
    return {
        "name": name,
        "__typename": typename,
        "error": None,
        "timeOfSample": iso,
        "timeOfLastChange": iso,
    }


def wrap(endpoints: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "data": {"listEndpoints": {"endpoints": endpoints}},
        "extensions": {"requestID": "sim", "duration": 3},
    }


def graphql_error(message: str, code: str, **extensions: Any) -> dict[str, Any]:
    return {
        "data": None,
        "errors": [{"message": message, "extensions": {"errorCode": code, **extensions}}],
    }
