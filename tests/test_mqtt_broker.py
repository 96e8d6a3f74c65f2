"""The daemon against a real Mosquitto (loopback port, password file), watched by a separate
client: discovery and retained state (acceptance 1), hostile names (3), a wrong password (4).
The outage test (2) is in test_mqtt_outage.py."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Setup, served_map, wait_for
from tests.ha_discovery_facts import check_config
from tests.mqtt_support import PASSWORD, USER, Broker, Subscriber, needs_mosquitto

pytestmark = needs_mosquitto


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    broker = Broker(tmp_path / "broker").start()
    yield broker
    broker.kill()


def mqtt_setup(setup: Setup, broker: Broker, password: str = PASSWORD, **extra) -> None:
    path = setup.data / "mqtt_password"
    path.write_text(password + "\n")
    path.chmod(0o600)
    setup.write(
        mqtt={
            "enabled": True,
            "host": "127.0.0.1",
            "port": broker.port,
            "username": USER,
            "password_file": "data/mqtt_password",
            **extra,
        }
    )


def test_discovery_and_retained_state_reach_a_real_broker(
    hue_sim, aqm_sim, setup_factory, daemons, broker: Broker
) -> None:
    setup = setup_factory(hue=hue_sim, aqm=aqm_sim)
    mqtt_setup(setup, broker, protocol="5")
    daemon = daemons(setup)
    with Subscriber(broker, "homeassistant/#", "homepoll/#") as live:
        wait_for(lambda: len(_configs(live)) >= 20 and setup.row_count() > 0, timeout=20)
        wait_for(lambda: _state_topics(live), timeout=10)
    configs = _configs(live)
    problems = {t: check_config(t, c, "homeassistant") for t, c in configs.items()}
    assert {t: p for t, p in problems.items() if p} == {}
    classes = {c.get("device_class") for c in configs.values()}
    assert {"temperature", "illuminance", "occupancy", "battery", "connectivity"} <= classes
    assert {"humidity", "pm25", "pm10", "aqi", "carbon_monoxide"} <= classes
    for config in configs.values():
        assert config["availability_topic"] == "homepoll/status"
        via = config["device"].get("via_device")
        if via:  # every via_device is a device homepoll describes too
            assert any(via in c["device"]["identifiers"] for c in configs.values())

    # A client that connects later gets every state as a retained message: the served values.
    with Subscriber(broker, "homepoll/#", client_id="late-watcher") as late:
        wait_for(lambda: "homepoll/status" in late.latest(), timeout=5)
    retained = {m.topic: m for m in late.snapshot() if m.retain}
    assert retained["homepoll/status"].payload == b"online"
    served = served_map(hue_sim, aqm_sim)
    by_state_topic = {c["state_topic"]: c for c in configs.values()}
    checked = 0
    for topic, config in by_state_topic.items():
        message = retained.get(topic)
        assert message is not None, f"no retained state on {topic}"
        if config.get("device_class") in ("occupancy", "connectivity"):
            assert message.payload in (b"0", b"1")
            continue
        if "_hub" in topic or config.get("device_class") == "battery":
            continue
        value = float(message.payload)
        assert any(abs(value - v) < 0.01 for v in served.values()), (topic, value)
        checked += 1
    assert checked >= 10

    assert daemon.stop() == 0
    with Subscriber(broker, "homepoll/status", client_id="after-stop") as after:
        wait_for(lambda: "homepoll/status" in after.latest(), timeout=5)
    assert after.latest()["homepoll/status"].payload == b"offline"


def _configs(sub: Subscriber) -> dict[str, dict]:
    return {
        m.topic: json.loads(m.payload)
        for m in sub.snapshot()
        if m.topic.startswith("homeassistant/") and m.topic.endswith("/config") and m.payload
    }


def _state_topics(sub: Subscriber) -> set[str]:
    return {
        m.topic for m in sub.snapshot() if m.topic.startswith("homepoll/") and "/" in m.topic[9:]
    }


HOSTILE_NAMES = ["+/#", "../../../x", "homeassistant/status", "\x1b[31mred\x00", "", "a" * 300]


def test_hostile_sensor_names_never_make_an_invalid_or_escaping_topic(
    hue_sim, setup_factory, daemons, broker: Broker
) -> None:
    for device, name in enumerate(HOSTILE_NAMES[:3]):
        hue_sim.set_name(device, name)
    setup = setup_factory(hue=hue_sim)
    mqtt_setup(setup, broker, events=True)
    setup.write(storage={"commit_interval": 0})
    daemons(setup)
    with Subscriber(broker, "#") as watch:
        wait_for(lambda: any(m.topic.endswith("/events") for m in watch.snapshot()), timeout=15)
        for device, name in enumerate(HOSTILE_NAMES[3:]):
            hue_sim.set_name(device, name)  # renamed while running
        wait_for(lambda: len({m.topic for m in watch.snapshot()}) > 30, timeout=15)
        time.sleep(2.5)
    topics = {m.topic for m in watch.snapshot()}
    for topic in topics:
        assert topic.startswith(("homepoll/", "homeassistant/")), topic
        assert not re.search(r"[+#\x00-\x1f\x7f]", topic), topic
        if topic.startswith("homeassistant/"):
            assert re.fullmatch(
                r"homeassistant/(sensor|binary_sensor)/homepoll/[\w-]+/config", topic
            )
        else:
            parts = topic.split("/")
            assert all(re.fullmatch(r"_?[a-z0-9_]+", p) for p in parts[1:]), topic
    for message in watch.snapshot():  # names inside payloads are JSON-escaped, not raw
        assert b"\x1b" not in message.payload and b"\x00" not in message.payload


def test_a_wrong_password_is_one_error_then_an_alert_and_polling_goes_on(
    hue_sim, setup_factory, daemons, broker: Broker
) -> None:
    wrong = "Wrong-Passw0rd-xyz"
    setup = setup_factory(hue=hue_sim)
    mqtt_setup(setup, broker, password=wrong)
    setup.write(alerts={"offline_after": 1}, storage={"commit_interval": 0})
    daemon = daemons(setup)
    alert = setup.data / "ALERT_MQTT_OFFLINE.txt"
    wait_for(alert.exists, timeout=15)
    rows_then = setup.row_count()
    wait_for(lambda: setup.row_count() > rows_then, timeout=10)  # polling and storing go on
    status = setup.cli("status")
    assert "NOT connected" in status.stdout
    errors = [line for line in setup.log_text().splitlines() if " ERROR " in line]
    assert len([e for e in errors if "refused the login" in e]) == 1, errors
    assert "mqtt.password_file" in errors[0]

    # the fixed password is picked up at the next attempt, no restart; the alert goes away
    (setup.data / "mqtt_password").write_text(PASSWORD + "\n")
    wait_for(lambda: not alert.exists(), timeout=20)
    assert daemon.stop() == 0
    outputs = [
        setup.log_text(),
        daemon.stderr(),
        status.stdout + status.stderr,
        setup.cli("status", "--json").stdout,
    ]
    for text in outputs:
        assert wrong not in text and PASSWORD not in text
