"""Which Alexa endpoints homepoll reads: Amazon's own monitors, and opted-in temperature sources.

One GraphQL request lists every wanted display category under its own alias, as
aioamazondevices' ``getDevicesBaseData`` does (``const/queries.py``). A third-party monitor
listed as ``AIR_QUALITY_MONITOR`` is ignored (aioamazondevices PR #679 keeps
``manufacturer == "Amazon"``): read with Amazon's instance numbers it gives wrong metrics.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from homepoll.collectors.amazon_aqm.parse import endpoints_of, text_of

log = logging.getLogger("homepoll.collectors.amazon_aqm")

AQM_DEVICE_TYPE = "AEZME1X38KDRA"
"""Amazon Smart Air Quality Monitor's device type (dmsIdentifier): used without a manufacturer."""

AIR_QUALITY_MONITOR = "air_quality_monitor"
TEMPERATURE_SENSORS = "temperature_sensors"

# alias -> display category; the alias names those of aioamazondevices
_CATEGORIES = {
    AIR_QUALITY_MONITOR: {"airQualityMonitors": "AIR_QUALITY_MONITOR"},
    TEMPERATURE_SENSORS: {"alexaVoiceDevices": "ALEXA_VOICE_ENABLED", "thermostats": "THERMOSTAT"},
}

_FIELDS = """    endpoints {
      endpointId: id
      friendlyNameObject { value { text } }
      serialNumber { value { text } }
      manufacturer { value { text } }
      legacyIdentifiers { dmsIdentifier { deviceType { value { text } } } }
      features { name }
    }"""


@dataclass(frozen=True)
class Monitor:
    """One endpoint homepoll reads; ``kind`` says whether all its metrics or only °C count."""

    endpoint_id: str
    name: str
    serial: str | None = None
    kind: str = AIR_QUALITY_MONITOR


def _aliases(include: tuple[str, ...]) -> dict[str, str]:
    aliases: dict[str, str] = {}
    for what in include:
        aliases.update(_CATEGORIES.get(what, {}))
    return aliases


def discovery_query(include: tuple[str, ...] = (AIR_QUALITY_MONITOR,)) -> str:
    """The one discovery request for everything ``include`` asks for."""
    parts = [
        f"  {alias}: listEndpoints(\n"
        f'    listEndpointsInput: {{displayCategory: "{category}", '
        "includeHouseholdDevices: true}\n"
        f"  ) {{\n{_FIELDS}\n  }}"
        for alias, category in _aliases(include).items()
    ]
    return "query getHomepollEndpoints {\n" + "\n".join(parts) + "\n}"


DISCOVERY_QUERY = discovery_query()


def _device_type(ep: dict[str, Any]) -> str | None:
    ids = ep.get("legacyIdentifiers")
    dms = ids.get("dmsIdentifier") if isinstance(ids, dict) else None
    return text_of(dms.get("deviceType")) if isinstance(dms, dict) else None


def _has_temperature(ep: dict[str, Any]) -> bool:
    features = ep.get("features")
    return isinstance(features, list) and any(
        isinstance(f, dict) and f.get("name") == "temperatureSensor" for f in features
    )


def parse_discovery(answer: Any, include: tuple[str, ...]) -> tuple[list[Monitor], list[str]]:
    """(what to read, what was ignored and why) from a discovery answer."""
    wanted: dict[str, Monitor] = {}
    ignored: list[str] = []
    for alias, category in _aliases(include).items():
        for ep in endpoints_of(answer, alias):
            endpoint_id = ep.get("endpointId") if isinstance(ep, dict) else None
            if not isinstance(endpoint_id, str) or not endpoint_id or endpoint_id in wanted:
                continue
            name = text_of(ep.get("friendlyNameObject")) or endpoint_id
            serial = text_of(ep.get("serialNumber"))
            if category == "AIR_QUALITY_MONITOR":
                maker = text_of(ep.get("manufacturer"))
                if maker == "Amazon" or _device_type(ep) == AQM_DEVICE_TYPE:
                    wanted[endpoint_id] = Monitor(endpoint_id, name, serial)
                else:
                    ignored.append(f"{name} (an air-quality monitor made by {maker or 'unknown'})")
            elif _has_temperature(ep):
                wanted[endpoint_id] = Monitor(endpoint_id, name, serial, TEMPERATURE_SENSORS)
    return list(wanted.values()), ignored
