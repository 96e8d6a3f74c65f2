"""Alexa GraphQL state answers -> Readings (the query, the response paths and the units are
those of Home Assistant's library, aioamazondevices ``const/queries.py``).

Per-value problems (a property with an ``error``, an unreachable device) are skipped and
counted, never a failed poll. Endpoints that are not Amazon's own monitors (an Echo, a
thermostat) give only their temperature: their range instances mean something else.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from typing import Any

from homepoll.errors import PermanentError
from homepoll.model import CollectResult, Reading, finite_number
from homepoll.safetext import one_line
from homepoll.timefmt import parse_iso

log = logging.getLogger("homepoll.collectors.amazon_aqm")

SOURCE = "amazon_aqm"

STATE_QUERY = """query getEndpointState($endpointIds: [String]!) {
  listEndpoints(
    listEndpointsInput: {
      latencyTolerance: LOW, endpointIds: $endpointIds, includeHouseholdDevices: true
    }
  ) {
    endpoints {
      endpointId: id
      friendlyNameObject { value { text } }
      features {
        name
        instance
        properties {
          name
          error { type message }
          __typename
          ... on RangeValue { rangeValue { value } timeOfSample timeOfLastChange }
          ... on TemperatureSensor { value { value scale } timeOfSample timeOfLastChange }
          ... on Reachability { reachabilityStatusValue timeOfSample }
        }
      }
    }
  }
}"""

# metric, unit by range instance (fallback) and by friendly-name asset id (preferred)
_UNITS = {
    "humidity": "%",
    "voc": "index",
    "pm25": "ug/m3",
    "pm10": "ug/m3",
    "co": "ppm",
    "iaq": "index",
    "temperature": "degC",
    "reachable": "bool",
}
_BY_INSTANCE = {"4": "humidity", "5": "voc", "6": "pm25", "7": "pm10", "8": "co", "9": "iaq"}
_BY_ASSET = {
    "Alexa.AirQuality.Humidity": "humidity",
    "Alexa.AirQuality.VolatileOrganicCompounds": "voc",
    "Alexa.AirQuality.ParticulateMatter": "pm25",  # PM10 shares it: see _range_metric
    "Alexa.AirQuality.CarbonMonoxide": "co",
    "Alexa.AirQuality.IndoorAirQuality": "iaq",
}
_TEMPERATURE_SOURCE_FEATURES = ("temperatureSensor", "connectivity")
_ASSET_RE = re.compile(r"Alexa\.AirQuality\.[A-Za-z0-9]+")


class _Mapper:
    """Features of one endpoint -> Readings; per-value problems are skipped and counted."""

    def __init__(self, device_id: str, name: str, poll_ms: int) -> None:
        self.device_id, self.name, self.poll_ms = device_id, name, poll_ms
        self.readings: list[Reading] = []
        self.skipped = 0

    def add(self, metric: str, value: float, ts: int, on_change: bool = False) -> None:
        if any(r.metric == metric for r in self.readings):
            return  # a duplicated feature: keep the first
        self.readings.append(
            Reading(SOURCE, self.device_id, self.name, metric, _UNITS[metric], ts, value, on_change)
        )

    def feature(self, feature: dict[str, Any], metric: str) -> None:
        prop = _value_property(feature, metric)
        if prop is None or prop.get("error"):
            self.skipped += 1
            return
        value = _temperature(prop) if metric == "temperature" else _range_value(prop)
        if value is None:
            log.debug("%s %s: no usable value in the answer", self.name, metric)
            self.skipped += 1
            return
        self.add(metric, value, _ts_ms(prop.get("timeOfSample")) or self.poll_ms)


def _metric_of(feature: dict[str, Any]) -> str | None:
    """The metric a feature carries, or None for features homepoll does not store."""
    kind = feature.get("name")
    if kind == "temperatureSensor":
        return "temperature"
    if kind == "range":
        return _range_metric(feature)
    return None


def _value_property(feature: dict[str, Any], metric: str) -> dict[str, Any] | None:
    props = [p for p in feature.get("properties") or [] if isinstance(p, dict)]
    wanted = "temperature" if metric == "temperature" else "rangeValue"
    for prop in props:
        if prop.get("name") == wanted:
            return prop
    return props[0] if props else None


def _reachability(features: list[dict[str, Any]]) -> bool | None:
    for feature in features:
        if feature.get("name") != "connectivity":
            continue
        for prop in feature.get("properties") or []:
            if (
                isinstance(prop, dict)
                and "reachabilityStatusValue" in prop
                and not prop.get("error")
            ):
                return prop.get("reachabilityStatusValue") == "OK"
    return None


def _range_metric(feature: dict[str, Any]) -> str | None:
    """Map by the friendly name's asset id when present, else by the instance number."""
    instance = str(feature.get("instance") or "").strip()
    found = _ASSET_RE.findall(json.dumps({k: v for k, v in feature.items() if k != "properties"}))
    for asset in found:
        metric = _BY_ASSET.get(asset)
        if metric == "pm25" and (instance == "7" or "10" in asset):
            return "pm10"
        if metric:
            return metric
    return _BY_INSTANCE.get(instance)


def _range_value(prop: dict[str, Any]) -> float | None:
    holder = prop.get("rangeValue")
    value = holder.get("value") if isinstance(holder, dict) else holder
    return _number(value)


def _temperature(prop: dict[str, Any]) -> float | None:
    holder = prop.get("value")
    if not isinstance(holder, dict):
        return None
    value = _number(holder.get("value"))
    if value is None:
        return None
    scale = str(holder.get("scale") or "CELSIUS").upper()
    if scale == "FAHRENHEIT":
        return round((value - 32) * 5 / 9, 2)
    if scale == "KELVIN":
        return round(value - 273.15, 2)
    return value


def _number(value: object) -> float | None:
    return finite_number(value, from_text=True)  # Alexa sends some numbers as text


def _ts_ms(text: object) -> int | None:
    moment = parse_iso(text, naive_is_utc=False)  # Alexa always sends an offset
    return None if moment is None else int(moment.timestamp() * 1000)


def text_of(holder: object) -> str | None:
    """``{"value": {"text": ...}}`` -> text."""
    value = holder.get("value") if isinstance(holder, dict) else None
    text = value.get("text") if isinstance(value, dict) else None
    return text if isinstance(text, str) and text else None


def map_state(
    endpoints: list[Any],
    names: Mapping[str, str],
    poll_ms: int,
    temperature_only: frozenset[str] = frozenset(),
) -> CollectResult:
    """Readings of every endpoint in a state answer; ``temperature_only`` ids give only °C."""
    result = CollectResult()
    for ep in endpoints:
        if not isinstance(ep, dict) or not isinstance(ep.get("endpointId"), str):
            raise PermanentError("unknown answer shape from Amazon (an endpoint without an id)")
        device_id = ep["endpointId"]
        name = text_of(ep.get("friendlyNameObject")) or names.get(device_id) or device_id
        features = [f for f in ep.get("features") or [] if isinstance(f, dict)]
        if device_id in temperature_only:
            features = [
                f for f in features if f.get("name") in ("temperatureSensor", "connectivity")
            ]
        mapper = _Mapper(device_id, name, poll_ms)
        reachable = _reachability(features)
        if reachable is not None:
            mapper.add("reachable", 1.0 if reachable else 0.0, poll_ms, on_change=True)
        if reachable is False:
            mapper.skipped += sum(1 for f in features if _metric_of(f) is not None)
            log.info("Alexa device %s is unreachable: its values are skipped", name)
        else:
            for feature in features:
                metric = _metric_of(feature)
                if metric is not None:
                    mapper.feature(feature, metric)
        result.readings.extend(mapper.readings)
        result.skipped += mapper.skipped
    return result


def endpoints_of(answer: Any, alias: str = "listEndpoints") -> list[Any]:
    """``data.<alias>.endpoints`` of a (possibly batched) answer, or PermanentError."""
    item = answer[0] if isinstance(answer, list) and answer else answer
    data = item.get("data") if isinstance(item, dict) else None
    listing = data.get(alias) if isinstance(data, dict) else None
    endpoints = listing.get("endpoints") if isinstance(listing, dict) else None
    if not isinstance(endpoints, list):
        shape = sorted(item)[:8] if isinstance(item, dict) else type(item).__name__
        raise PermanentError(
            one_line(
                f"unknown answer shape from Amazon (expected data.{alias}.endpoints, got {shape})",
                200,
            )
        )
    return endpoints
