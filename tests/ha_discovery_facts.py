"""Home Assistant's MQTT discovery rules, written down from Home Assistant's own code.

Sources (home-assistant/core, read through the search tool):
- homeassistant/components/mqtt/discovery.py: TOPIC_MATCHER
  ``(?P<component>\\w+)/(?:(?P<node_id>[a-zA-Z0-9_-]+)/)?(?P<object_id>[a-zA-Z0-9_-]+)/config``
- homeassistant/components/mqtt/sensor.py: _PLATFORM_SCHEMA_BASE (device_class,
  expire_after = cv.positive_int, state_class, unit_of_measurement) over MQTT_RO_SCHEMA
  (state_topic required) and MQTT_ENTITY_COMMON_SCHEMA (availability_topic, device,
  unique_id, entity_category ...)
- homeassistant/components/sensor/const.py: DEVICE_CLASS_UNITS, DEVICE_CLASS_STATE_CLASSES
- homeassistant/components/binary_sensor/__init__.py: BinarySensorDeviceClass
  (occupancy, connectivity ...), payload_on / payload_off of mqtt/binary_sensor.py
"""

from __future__ import annotations

import re
from typing import Any

# Home Assistant strips "<discovery_prefix>/" and matches the rest with this.
TOPIC_MATCHER = re.compile(
    r"(?P<component>\w+)/(?:(?P<node_id>[a-zA-Z0-9_-]+)/)?"
    r"(?P<object_id>[a-zA-Z0-9_-]+)/config"
)

# SensorDeviceClass -> units accepted (None = unitless), the subset homepoll uses.
SENSOR_UNITS: dict[str, set[str | None]] = {
    "aqi": {None},
    "battery": {"%"},
    "carbon_monoxide": {"ppm"},
    "humidity": {"%"},
    "illuminance": {"lx"},
    "pm10": {"µg/m³"},
    "pm25": {"µg/m³"},
    "pressure": {"Pa", "hPa", "kPa", "bar", "cbar", "mbar", "mmHg", "inHg", "psi"},
    "temperature": {"°C", "°F", "K"},
    "volatile_organic_compounds_parts": {"ppb", "ppm"},
}
# Every class above allows state_class "measurement" (DEVICE_CLASS_STATE_CLASSES).
BINARY_SENSOR_CLASSES = {"occupancy", "connectivity", "motion", "presence", "battery"}
ENTITY_CATEGORIES = {"config", "diagnostic"}
DEVICE_KEYS = {
    "identifiers",
    "connections",
    "name",
    "manufacturer",
    "model",
    "model_id",
    "via_device",
    "sw_version",
    "hw_version",
    "serial_number",
    "suggested_area",
    "configuration_url",
}
COMMON_KEYS = {
    "name",
    "unique_id",
    "state_topic",
    "availability_topic",
    "payload_available",
    "payload_not_available",
    "device",
    "origin",
    "qos",
    "entity_category",
    "device_class",
    "expire_after",
    "icon",
    "value_template",
    "enabled_by_default",
}
SENSOR_KEYS = COMMON_KEYS | {"state_class", "unit_of_measurement", "suggested_display_precision"}
BINARY_SENSOR_KEYS = COMMON_KEYS | {"payload_on", "payload_off", "off_delay"}


def check_config(topic: str, config: dict[str, Any], prefix: str) -> list[str]:
    """Every way ``config`` on ``topic`` breaks the rules above (empty = valid)."""
    problems: list[str] = []
    rest = topic[len(prefix) + 1 :] if topic.startswith(prefix + "/") else ""
    match = TOPIC_MATCHER.fullmatch(rest)
    if not match:
        return [f"{topic}: not a discovery topic under {prefix}"]
    component = match["component"]
    allowed = {"sensor": SENSOR_KEYS, "binary_sensor": BINARY_SENSOR_KEYS}.get(component)
    if allowed is None:
        return [f"{topic}: unexpected component {component}"]
    extra = set(config) - allowed
    if extra:
        problems.append(f"unknown keys {sorted(extra)}")
    for key in ("state_topic", "unique_id", "device", "availability_topic"):
        if not config.get(key):
            problems.append(f"missing {key}")
    state_topic = config.get("state_topic", "")
    if not isinstance(state_topic, str) or re.search(r"[+#\x00-\x1f]", state_topic):
        problems.append(f"bad state_topic {state_topic!r}")
    expire = config.get("expire_after")
    if expire is not None and not (isinstance(expire, int) and expire > 0):
        problems.append(f"expire_after must be a positive int, got {expire!r}")
    device = config.get("device") or {}
    if set(device) - DEVICE_KEYS:
        problems.append(f"unknown device keys {sorted(set(device) - DEVICE_KEYS)}")
    identifiers = device.get("identifiers")
    if not (
        isinstance(identifiers, list)
        and identifiers
        and all(isinstance(i, str) for i in identifiers)
    ):
        problems.append("device.identifiers must be a non-empty list of strings")
    if config.get("entity_category") not in (None, *ENTITY_CATEGORIES):
        problems.append(f"bad entity_category {config.get('entity_category')!r}")
    device_class = config.get("device_class")
    if component == "sensor":
        if config.get("state_class") != "measurement":
            problems.append("state_class must be measurement")
        if device_class is not None:
            units = SENSOR_UNITS.get(device_class)
            if units is None:
                problems.append(f"device_class {device_class!r} not expected for homepoll")
            elif config.get("unit_of_measurement") not in units:
                problems.append(
                    f"unit {config.get('unit_of_measurement')!r} invalid for {device_class}"
                )
    else:
        if device_class not in BINARY_SENSOR_CLASSES:
            problems.append(f"binary_sensor device_class {device_class!r}")
        if "unit_of_measurement" in config or "state_class" in config:
            problems.append("a binary_sensor has no unit or state_class")
    return problems
