"""Slugs, topics and discovery payloads (no broker): hostile names stay inside their roots."""

from __future__ import annotations

import re

import pytest

from homepoll.model import Reading, SensorKey
from homepoll.mqtt import discovery
from homepoll.mqtt.topics import DeviceSlugs, check_topic, object_id, slug
from tests.ha_discovery_facts import check_config

HOSTILE = [
    "+",
    "#",
    "a/b",
    "../../etc",
    "homeassistant/status",
    "\x00nul\x1b[31m",
    "line\nbreak\u2028",
    "",
    "   ",
    "💡🔥",
    "Küche Süd",
    "x" * 500,
    "$SYS/broker",
    "+/#/+",
    "名前",
]
VALID_SEGMENT = re.compile(r"[a-z0-9_]{1,48}")


@pytest.mark.parametrize("name", HOSTILE)
def test_slug_of_a_hostile_name_is_one_safe_segment(name: str) -> None:
    out = slug(name)
    assert VALID_SEGMENT.fullmatch(out), out
    assert not out.startswith("_")


def test_slug_keeps_readable_names() -> None:
    assert slug("Küche / Sensor #1") == "kuche_sensor_1"
    assert slug("Living room") == "living_room"


def test_devices_with_the_same_name_get_different_stable_slugs() -> None:
    slugs = DeviceSlugs()
    first = slugs.get("hue", "aa:01", "Hall")
    second = slugs.get("hue", "bb:02", "Hall")
    assert first == "hall" and second.startswith("hall_") and second != first
    again = DeviceSlugs()
    assert again.get("hue", "aa:01", "Hall") == first
    assert again.get("hue", "bb:02", "Hall") == second
    # a rename moves the device and frees its old slug
    assert slugs.get("hue", "aa:01", "Kitchen") == "kitchen"
    assert slugs.get("hue", "cc:03", "Hall") == "hall"


@pytest.mark.parametrize(
    "topic",
    ["homepoll/+/x", "homepoll/#", "homepoll/a\x00", "other/x", "homepoll//x", "homepollx/y"],
)
def test_check_topic_refuses_wildcards_and_escapes(topic: str) -> None:
    with pytest.raises(ValueError):
        check_topic(topic, "homepoll")


def _config_for(metric: str, unit: str, name: str = "Hall") -> tuple[str, dict]:
    key = SensorKey("hue", "00:17:88:01:02:03:04:05", metric)
    component, config = discovery.series_config(
        key,
        name,
        unit,
        state_topic=f"homepoll/hall/{metric}",
        availability_topic="homepoll/status",
        hub=discovery.hub_id("hue", "192.168.1.2"),
        interval=60,
    )
    return discovery.discovery_topic("homeassistant", component, object_id(key)), config


EXPECTED = {
    # metric, our unit -> component, device_class, HA unit
    ("temperature", "degC"): ("sensor", "temperature", "°C"),
    ("humidity", "%"): ("sensor", "humidity", "%"),
    ("pressure", "hPa"): ("sensor", "pressure", "hPa"),
    ("light_level", "lux"): ("sensor", "illuminance", "lx"),
    ("pm25", "ug/m3"): ("sensor", "pm25", "µg/m³"),
    ("pm10", "ug/m3"): ("sensor", "pm10", "µg/m³"),
    ("voc", "index"): ("sensor", "aqi", None),
    ("voc", "ppb"): ("sensor", "volatile_organic_compounds_parts", "ppb"),
    ("iaq", "index"): ("sensor", "aqi", None),
    ("co", "ppm"): ("sensor", "carbon_monoxide", "ppm"),
    ("battery", "%"): ("sensor", "battery", "%"),
    ("presence", "bool"): ("binary_sensor", "occupancy", None),
    ("reachable", "bool"): ("binary_sensor", "connectivity", None),
}


@pytest.mark.parametrize(("metric", "unit"), sorted(EXPECTED))
def test_discovery_config_matches_home_assistants_schema(metric: str, unit: str) -> None:
    topic, config = _config_for(metric, unit)
    assert check_config(topic, config, "homeassistant") == []
    component, device_class, ha_unit = EXPECTED[(metric, unit)]
    assert topic.startswith(f"homeassistant/{component}/")
    assert config["device_class"] == device_class
    assert config.get("unit_of_measurement") == ha_unit
    assert config["expire_after"] == 180  # three Hue intervals
    assert config["availability_topic"] == "homepoll/status"
    assert config["device"]["via_device"] == discovery.hub_id("hue", "192.168.1.2")
    assert config["device"]["name"] == "Hall"


def test_a_renamed_device_keeps_its_discovery_topic_and_unique_id() -> None:
    topic_a, config_a = _config_for("temperature", "degC", name="Hall")
    topic_b, config_b = _config_for("temperature", "degC", name="Entrance")
    assert topic_a == topic_b
    assert config_a["unique_id"] == config_b["unique_id"]
    assert config_b["device"]["name"] == "Entrance"
    assert config_a["device"]["identifiers"] == config_b["device"]["identifiers"]


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_names_never_leave_their_roots(name: str) -> None:
    from homepoll.mqtt.state import TopicBook

    book = TopicBook("homepoll")
    reading = Reading("hue", name or "id", name, name or "m", "degC", 1, 21.5)
    state = book.state_topic(reading.key, name)
    events = book.events_topic(reading.key, name)
    for topic in (state, events):
        assert topic.startswith("homepoll/")
        assert not re.search(r"[+#\x00-\x1f\x7f]", topic)
        assert all(VALID_SEGMENT.fullmatch(part) for part in topic.split("/")[1:-1] or ["x"])
    discovery_topic = discovery.discovery_topic("homeassistant", "sensor", object_id(reading.key))
    assert re.fullmatch(r"homeassistant/sensor/homepoll/[a-zA-Z0-9_-]+/config", discovery_topic)
