"""What the simulated bridge holds and how each dialect shows it.

One set of devices, three views: a Hue bridge's v1 ``/sensors`` (``ZLL*`` types), a deCONZ
gateway's v1 ``/sensors`` (``ZHA*`` types, milliseconds on ``lastupdated``, an Aqara-style
weather sensor with humidity and pressure, a contact sensor) and CLIP v2's
``/clip/v2/resource`` (devices, each sensor resource owned by its device, batteries in
``device_power``, reachability in ``zigbee_connectivity``). Shapes follow public answers:
pydeconz's test fixtures, aiohue's ``v2_resources.json``, diyHue's resource templates.
Each view also lists, as ``Served``, the measurements it shows in physical units.
"""

from __future__ import annotations

import math
import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from homepoll.simulator.faults import Served

ROOMS = ("Hall", "Kitchen", "Living room", "Bedroom", "Bathroom", "Garage", "Office", "Attic")
CLUSTER = {"presence": "0406", "light_level": "0400", "temperature": "0402"}
DIMMER_MAC = "00:17:88:01:10:00:00:01"
WEATHER_MAC = "00:15:8d:00:02:4a:f7:4e"
CONTACT_MAC = "00:15:8d:00:03:11:22:33"
_NS = uuid.UUID("6b1f1b36-5d2a-4c8e-9a57-9d8f0e6c1a20")


def hue_time(seconds: int, millis: int | None = None, zulu: bool = False) -> str:
    text = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    if millis is not None:
        text += f".{millis:03d}"
    return text + ("Z" if zulu else "")


def rid_v2(*parts: object) -> str:
    """A stable v2 resource id (a UUID, as the bridge uses) for these parts."""
    return str(uuid.uuid5(_NS, ":".join(str(p) for p in parts)))


@dataclass
class SimDevice:
    """One Hue motion sensor (SML001): presence, light level and temperature."""

    number: int
    reachable: bool = True
    never_updated: bool = False
    null_metrics: set[str] = field(default_factory=set)
    name: str | None = None  # the motion sensor's name as set in the Hue app

    @property
    def mac(self) -> str:
        return f"00:17:88:01:00:00:{self.number >> 8:02x}:{self.number & 0xFF:02x}"

    @property
    def room(self) -> str:
        n = self.number
        return ROOMS[n - 1] if n <= len(ROOMS) else f"Room {n}"

    @property
    def display_name(self) -> str:
        return self.name or f"{self.room} sensor"


def motion_values(seed: int, device: int, k: int) -> tuple[int, int, bool, int]:
    """(temperature in 0.01 degC, lightlevel, presence, battery) of update ``k``."""
    rng = random.Random(f"{seed}:{device}:{k}")
    temperature = round(2000 + 150 * math.sin(k / 12 + device) + rng.randint(-40, 40))
    lightlevel = rng.randint(3000, 30000)
    presence = rng.random() < 0.35
    battery = max(1, 100 - 7 * device - (k // 3600) % 20)  # k counts from the epoch
    return temperature, lightlevel, presence, battery


def weather_values(seed: int, k: int) -> tuple[int, int, int, int]:
    """(temperature 0.01 degC, humidity 0.01 %, pressure hPa, battery) of the weather sensor."""
    rng = random.Random(f"{seed}:weather:{k}")
    return (
        1900 + rng.randint(-300, 300),
        3555 + rng.randint(-900, 900),
        1010 + rng.randint(-8, 8),
        87,
    )


def lux(lightlevel: int) -> float:
    return round(10 ** ((lightlevel - 1) / 10000), 2)


@dataclass(frozen=True)
class Snapshot:
    """The devices at one update: what every view is built from."""

    k: int
    stamp: int  # whole unix seconds of the update
    devices: tuple[tuple[SimDevice, tuple[int, int, bool, int]], ...]
    weather: tuple[int, int, int, int]
    deconz: bool
    switch_battery: int = 90

    @property
    def millis(self) -> int:
        """Sub-second part of the update (v2 and deCONZ show it; Hue v1 truncates it)."""
        return (self.k * 137) % 1000


def v1_sensors(snap: Snapshot) -> tuple[dict[str, dict[str, Any]], list[Served]]:
    """The v1 ``GET /sensors`` object (Hue or deCONZ dialect) and what it serves."""
    deconz = snap.deconz
    when_text = hue_time(snap.stamp, snap.millis if deconz else None)
    ts = snap.stamp * 1000 + (snap.millis if deconz else 0)
    out: dict[str, dict[str, Any]] = {
        "1": {
            "state": {"daylight": False, "lastupdated": when_text},
            "config": {"on": True, "configured": True, "sunriseoffset": 30, "sunsetoffset": -30},
            "name": "Daylight",
            "type": "Daylight",
            "modelid": "PHDL00",
            "manufacturername": "Signify Netherlands B.V.",
            "swversion": "1.0",
        }
    }
    served: list[Served] = []
    prefix = "ZHA" if deconz else "ZLL"
    for device, (temperature, lightlevel, presence, battery) in snap.devices:
        config = {"on": True, "battery": battery, "reachable": device.reachable}
        if not deconz:
            config |= {"alert": "none", "ledindication": False, "usertest": False}
        when = "none" if device.never_updated else when_text
        light_state: dict[str, Any] = {
            "lightlevel": lightlevel,
            "dark": lightlevel < 16000,
            "daylight": lightlevel > 26000,
        }
        if deconz:
            light_state["lux"] = round(lux(lightlevel))
        resources = [
            ("Presence", device.display_name, "presence", {"presence": presence}, float(presence)),
            (
                "LightLevel",
                f"Hue ambient light sensor {device.number}",
                "light_level",
                light_state,
                lux(lightlevel),
            ),
            (
                "Temperature",
                f"Hue temperature sensor {device.number}",
                "temperature",
                {"temperature": temperature},
                temperature / 100,
            ),
        ]
        for offset, (kind, name, metric, state, value) in enumerate(resources):
            if metric in device.null_metrics:
                state = {key: None for key in state}
            rid = str(2 + 3 * (device.number - 1) + offset)
            out[rid] = {
                "state": {**state, "lastupdated": when},
                "config": dict(config),
                "name": name,
                "type": prefix + kind,
                "modelid": "SML001",
                "manufacturername": "Signify Netherlands B.V." if not deconz else "Philips",
                "productname": "Hue motion sensor",
                "swversion": "6.1.1.27575",
                "uniqueid": f"{device.mac}-02-{CLUSTER[metric]}",
            }
            if device.reachable and not device.never_updated and metric not in device.null_metrics:
                served.append(Served("hue", device.mac, metric, ts, value))
    next_id = 2 + 3 * len(snap.devices)
    out[str(next_id)] = {
        "state": {"buttonevent": 1002, "lastupdated": when_text},
        "config": {"on": True, "battery": snap.switch_battery, "reachable": True},
        "name": "Hue dimmer switch 1",
        "type": "ZHASwitch" if deconz else "ZLLSwitch",
        "modelid": "RWL021",
        "manufacturername": "Signify Netherlands B.V." if not deconz else "Philips",
        "uniqueid": f"{DIMMER_MAC}-02-fc00",
    }
    if deconz:
        out.update(_deconz_extras(snap, next_id + 1, when_text, ts, served))
    return out, served


def _deconz_extras(
    snap: Snapshot, first_id: int, when: str, ts: int, served: list[Served]
) -> dict[str, dict[str, Any]]:
    """An Aqara weather sensor (temperature, humidity, pressure) and a contact sensor."""
    temperature, humidity, pressure, battery = snap.weather
    common = {"manufacturername": "LUMI", "modelid": "lumi.weather", "swversion": "20161129"}
    config = {"battery": battery, "offset": 0, "on": True, "reachable": True}
    items = [
        ("ZHATemperature", "0402", "temperature", {"temperature": temperature}, temperature / 100),
        ("ZHAHumidity", "0405", "humidity", {"humidity": humidity}, humidity / 100),
        ("ZHAPressure", "0403", "pressure", {"pressure": pressure}, float(pressure)),
    ]
    out = {}
    for offset, (kind, cluster, metric, state, value) in enumerate(items):
        out[str(first_id + offset)] = {
            **common,
            "config": dict(config),
            "ep": 1,
            "name": "Weather balcony",
            "state": {**state, "lastupdated": when},
            "type": kind,
            "uniqueid": f"{WEATHER_MAC}-01-{cluster}",
        }
        served.append(Served("hue", WEATHER_MAC, metric, ts, value))
    out[str(first_id + 3)] = {
        "config": {"battery": 64, "on": True, "reachable": True, "temperature": 2100},
        "ep": 1,
        "manufacturername": "LUMI",
        "modelid": "lumi.sensor_magnet.aq2",
        "name": "Front door",
        "state": {"lastupdated": when, "open": False},
        "type": "ZHAOpenClose",
        "uniqueid": f"{CONTACT_MAC}-01-0006",
    }
    return out


def v2_resources(snap: Snapshot) -> tuple[list[dict[str, Any]], list[Served]]:
    """CLIP v2's ``data`` list: what ``GET /clip/v2/resource`` holds, sensors and more."""
    changed = hue_time(snap.stamp, snap.millis, zulu=True)
    ts = snap.stamp * 1000  # homepoll keeps whole seconds, as v1 shows them
    data: list[dict[str, Any]] = [_bridge_device()]
    served: list[Served] = []
    for device, (temperature, lightlevel, presence, battery) in snap.devices:
        dev_id = rid_v2(device.mac, "device")
        presence_v1 = 2 + 3 * (device.number - 1)
        owner = {"rid": dev_id, "rtype": "device"}
        status = "connected" if device.reachable else "connectivity_issue"
        sensors = [
            ("motion", "motion", "presence", presence_v1, {"motion": presence}, float(presence)),
            (
                "light_level",
                "light",
                "light_level",
                presence_v1 + 1,
                {"light_level": lightlevel},
                lux(lightlevel),
            ),
            (
                "temperature",
                "temperature",
                "temperature",
                presence_v1 + 2,
                {"temperature": temperature / 100},
                temperature / 100,
            ),
        ]
        services = [
            {"rid": rid_v2(device.mac, "zigbee_connectivity"), "rtype": "zigbee_connectivity"}
        ]
        services += [{"rid": rid_v2(device.mac, t), "rtype": t} for t, *_ in sensors]
        services.append({"rid": rid_v2(device.mac, "device_power"), "rtype": "device_power"})
        data.append(
            _device(
                dev_id, presence_v1, device.display_name, "SML001", "Hue motion sensor", services
            )
        )
        data.append(_connectivity(device.mac, owner, presence_v1, status))
        data.append(_power(device.mac, owner, presence_v1, battery))
        for rtype, section, metric, v1_id, report, value in sensors:
            key = next(iter(report))
            body: dict[str, Any] = {f"{key}_valid": metric not in device.null_metrics, key: None}
            if metric not in device.null_metrics and not device.never_updated:
                body[key] = report[key]
                body[f"{key}_report"] = {"changed": changed, **report}
                if device.reachable:
                    served.append(Served("hue", device.mac, metric, ts, value))
            elif metric in device.null_metrics:
                body.pop(key)
            data.append(
                {
                    "enabled": True,
                    "id": rid_v2(device.mac, rtype),
                    "id_v1": f"/sensors/{v1_id}",
                    section: body,
                    "owner": owner,
                    "type": rtype,
                }
            )
    dimmer_v1 = 2 + 3 * len(snap.devices)
    dimmer = rid_v2(DIMMER_MAC, "device")
    owner = {"rid": dimmer, "rtype": "device"}
    services = [
        {"rid": rid_v2(DIMMER_MAC, "button"), "rtype": "button"},
        {"rid": rid_v2(DIMMER_MAC, "device_power"), "rtype": "device_power"},
        {"rid": rid_v2(DIMMER_MAC, "zigbee_connectivity"), "rtype": "zigbee_connectivity"},
    ]
    data.append(
        _device(dimmer, dimmer_v1, "Hue dimmer switch 1", "RWL021", "Hue dimmer switch", services)
    )
    data.append(_power(DIMMER_MAC, owner, dimmer_v1, snap.switch_battery))
    data.append(_connectivity(DIMMER_MAC, owner, dimmer_v1, "connected"))
    data.append(
        {
            "id": rid_v2(DIMMER_MAC, "button"),
            "id_v1": f"/sensors/{dimmer_v1}",
            "owner": owner,
            "button": {"last_event": "short_release"},
            "type": "button",
        }
    )
    return data, served


def _device(dev_id: str, v1_id: int, name: str, model: str, product: str, services: list) -> dict:
    return {
        "id": dev_id,
        "id_v1": f"/sensors/{v1_id}",
        "metadata": {"archetype": "unknown_archetype", "name": name},
        "product_data": {
            "certified": True,
            "manufacturer_name": "Signify Netherlands B.V.",
            "model_id": model,
            "product_archetype": "unknown_archetype",
            "product_name": product,
            "software_version": "2.85.1",
        },
        "services": services,
        "type": "device",
    }


def _connectivity(mac: str, owner: dict, v1_id: int, status: str) -> dict:
    return {
        "id": rid_v2(mac, "zigbee_connectivity"),
        "id_v1": f"/sensors/{v1_id}",
        "mac_address": mac,
        "owner": owner,
        "status": status,
        "type": "zigbee_connectivity",
    }


def _power(mac: str, owner: dict, v1_id: int, battery: int) -> dict:
    return {
        "id": rid_v2(mac, "device_power"),
        "id_v1": f"/sensors/{v1_id}",
        "owner": owner,
        "power_state": {"battery_level": battery, "battery_state": "normal"},
        "type": "device_power",
    }


def _bridge_device() -> dict:
    bridge = rid_v2("bridge", "device")
    services = [{"rid": rid_v2("bridge", "bridge"), "rtype": "bridge"}]
    device = _device(bridge, 0, "Hue Bridge", "BSB002", "Hue Bridge", services)
    device.pop("id_v1")
    return device
