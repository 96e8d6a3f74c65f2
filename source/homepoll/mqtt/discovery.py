"""Home Assistant MQTT discovery: one retained config message per series.

Checked against Home Assistant's own code (home-assistant/core): the discovery topic pattern
``<prefix>/<component>/[<node_id>/]<object_id>/config`` with ids of ``[a-zA-Z0-9_-]``
(mqtt/discovery.py ``TOPIC_MATCHER``), the sensor schema (mqtt/sensor.py:
``expire_after`` a positive int, ``state_class``, ``unit_of_measurement``) and the units
each sensor device class accepts (sensor/const.py ``DEVICE_CLASS_UNITS``). The config topic
and ``unique_id`` come from the series' ids, never its name, so a device renamed in the Hue
app is renamed in Home Assistant (same entity, new name), not duplicated.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from homepoll import __version__
from homepoll.model import SensorKey
from homepoll.mqtt.topics import object_id, short_hash, slug
from homepoll.safetext import one_line

NODE_ID = "homepoll"
MAX_NAME = 100
"""Characters of a sensor name shown in Home Assistant (controls escaped, see one_line)."""
EXPIRE_INTERVALS = 3
"""A value older than this many poll intervals shows as unavailable in Home Assistant."""

# Our unit spelling -> Home Assistant's (sensor/const.py); None = unitless.
HA_UNITS: dict[str, str | None] = {
    "degC": "°C",
    "degF": "°F",
    "%": "%",
    "lux": "lx",
    "hPa": "hPa",
    "ug/m3": "µg/m³",
    "ppm": "ppm",
    "ppb": "ppb",
    "index": None,
    "bool": None,
}


@dataclass(frozen=True)
class Kind:
    """How Home Assistant should show one metric."""

    component: str  # sensor | binary_sensor
    device_class: str | None
    label: str
    diagnostic: bool = False


_KINDS: dict[str, Kind] = {
    "temperature": Kind("sensor", "temperature", "Temperature"),
    "humidity": Kind("sensor", "humidity", "Humidity"),
    "pressure": Kind("sensor", "pressure", "Pressure"),
    "light_level": Kind("sensor", "illuminance", "Light level"),
    "pm25": Kind("sensor", "pm25", "PM2.5"),
    "pm10": Kind("sensor", "pm10", "PM10"),
    "co": Kind("sensor", "carbon_monoxide", "Carbon monoxide"),
    # Amazon's VOC and IAQ are unitless 0-100 indexes: "aqi" is HA's unitless air-quality
    # class; a VOC in ppm/ppb (another source) is volatile_organic_compounds_parts below.
    "voc": Kind("sensor", "aqi", "VOC index"),
    "iaq": Kind("sensor", "aqi", "Indoor air quality"),
    "battery": Kind("sensor", "battery", "Battery", diagnostic=True),
    "presence": Kind("binary_sensor", "occupancy", "Occupancy"),
    "reachable": Kind("binary_sensor", "connectivity", "Reachable", diagnostic=True),
}

_MAKERS = {
    "hue": ("Signify (Hue API)", "Hue sensor", "Hue bridge"),
    "amazon_aqm": ("Amazon", "Smart Air Quality Monitor", "Amazon Alexa"),
}


def kind_of(metric: str, unit: str) -> Kind:
    """The component and device class for a metric (a generic sensor for unknown ones)."""
    if metric == "voc" and unit in ("ppm", "ppb"):
        return Kind("sensor", "volatile_organic_compounds_parts", "VOC")
    known = _KINDS.get(metric)
    if known is not None:
        return known
    return Kind("sensor", None, metric.replace("_", " ").capitalize() or "Value")


def ha_unit(unit: str) -> str | None:
    """Home Assistant's spelling of ``unit``; unknown units pass through as a safe slug."""
    if unit in HA_UNITS:
        return HA_UNITS[unit]
    return slug(unit, fallback="") or None


def state_payload(metric: str, unit: str, value: float) -> str:
    """The state topic's text: ``"1"``/``"0"`` for a binary sensor, else the number."""
    if kind_of(metric, unit).component == "binary_sensor":
        return "1" if value else "0"
    return f"{value:.10g}"


def hub_id(source: str, where: str) -> str:
    """The device identifier of the bridge (or Amazon account) a device is reached through."""
    return f"homepoll_{slug(source)}_hub_{short_hash(source, where)}"


def device_info(key: SensorKey, name: str, hub: str) -> dict[str, Any]:
    manufacturer, model, _hub_model = _MAKERS.get(key.source, (key.source, key.source, ""))
    return {
        "identifiers": [f"homepoll_{slug(key.source)}_{short_hash(key.source, key.device_id)}"],
        "name": one_line(name, MAX_NAME) or key.device_id,
        "manufacturer": manufacturer,
        "model": model,
        "via_device": hub,
    }


def discovery_topic(prefix: str, component: str, oid: str) -> str:
    return f"{prefix}/{component}/{NODE_ID}/{oid}/config"


def series_config(
    key: SensorKey,
    name: str,
    unit: str,
    *,
    state_topic: str,
    availability_topic: str,
    hub: str,
    interval: float,
) -> tuple[str, dict[str, Any]]:
    """(component, config) of one series; the caller puts it on ``discovery_topic``."""
    kind = kind_of(key.metric, unit)
    oid = object_id(key)
    config: dict[str, Any] = {
        "name": kind.label,
        "unique_id": f"homepoll_{oid}",
        "state_topic": state_topic,
        "availability_topic": availability_topic,
        "payload_available": "online",
        "payload_not_available": "offline",
        "expire_after": max(1, round(interval * EXPIRE_INTERVALS)),
        "qos": 1,
        "device": device_info(key, name, hub),
        "origin": {"name": "homepoll", "sw_version": __version__},
    }
    if kind.device_class:
        config["device_class"] = kind.device_class
    if kind.diagnostic:
        config["entity_category"] = "diagnostic"
    if kind.component == "binary_sensor":
        config["payload_on"] = "1"
        config["payload_off"] = "0"
    else:
        config["state_class"] = "measurement"
        unit_text = ha_unit(unit)
        if unit_text:
            config["unit_of_measurement"] = unit_text
    return kind.component, config


def hub_config(
    source: str, where: str, *, state_topic: str, availability_topic: str
) -> tuple[str, dict[str, Any]]:
    """The bridge / Amazon account as a device of its own, with one connectivity entity
    ("the last poll worked"), so the sensors' ``via_device`` points at something real."""
    manufacturer, _model, hub_model = _MAKERS.get(source, (source, source, source))
    identifier = hub_id(source, where)
    return "binary_sensor", {
        "name": "Connection",
        "unique_id": f"{identifier}_connectivity",
        "state_topic": state_topic,
        "availability_topic": availability_topic,
        "payload_on": "1",
        "payload_off": "0",
        "device_class": "connectivity",
        "entity_category": "diagnostic",
        "qos": 1,
        "device": {
            "identifiers": [identifier],
            "name": f"{hub_model} ({where})",
            "manufacturer": manufacturer,
            "model": hub_model,
        },
        "origin": {"name": "homepoll", "sw_version": __version__},
    }
