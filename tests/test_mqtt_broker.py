"""The daemon against a real Mosquitto (loopback port, password file), watched by a separate
client: discovery and retained state (acceptance 1), hostile names (3), a wrong password (4).
The outage test (2) is in test_mqtt_outage.py."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from homepoll.model import SensorKey
from homepoll.mqtt.state import TopicBook
from tests.conftest import Setup, served_map, shipped_defaults, wait_for
from tests.ha_discovery_facts import check_config
from tests.mqtt_support import PASSWORD, USER, Broker, Subscriber, needs_mosquitto
from tests.reliability_support import collector_state

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
        wait_for(lambda: len(_configs(live)) >= 20 and _hubs_described(live), timeout=20)
        configs = _configs(live)
        # Home Assistant's birth message makes homepoll send every config again
        before = _config_count(live)
        with Subscriber(broker, client_id="home-assistant") as ha:
            ha.client.publish("homeassistant/status", b"online", qos=1)
            wait_for(lambda: _config_count(live) >= before + len(configs), timeout=10)
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

    # status, /metrics and the dashboard tell the link
    metrics = httpx.get(setup.web_url + "metrics", timeout=5).text
    assert "homepoll_mqtt_connected 1.0" in metrics
    assert "homepoll_mqtt_last_publish_timestamp_seconds" in metrics
    assert 'data-mqtt="connected"' in httpx.get(setup.web_url, timeout=5).text
    assert "MQTT: connected to 127.0.0.1" in setup.cli("status").stdout
    assert daemon.stop() == 0
    # A client that connects later gets every state as a retained message: the values of
    # the last poll, as served; and the availability topic says offline after a clean stop.
    state_topics = {c["state_topic"] for c in configs.values()}
    with Subscriber(broker, "homepoll/#", client_id="late-watcher") as late:
        wait_for(lambda: state_topics | {"homepoll/status"} <= _retained(late).keys(), timeout=10)
    retained = _retained(late)
    assert retained["homepoll/status"] == b"offline"
    newest: dict[SensorKey, tuple[int, float]] = {}
    for (source, device_id, metric, ts), value in served_map(hue_sim, aqm_sim).items():
        key = SensorKey(source, device_id, metric)
        if key not in newest or ts > newest[key][0]:
            newest[key] = (ts, value)
    book = TopicBook("homepoll")
    checked = 0
    for source, device_id, name, metric in setup.query(
        "SELECT source, device_id, name, metric FROM sensors ORDER BY id"
    ):
        key = SensorKey(source, device_id, metric)
        topic = book.state_topic(key, name)
        assert topic in state_topics, f"no discovery config for {topic}"
        if key in newest:
            payload = retained[topic]
            served_value = newest[key][1]
            if metric == "presence":
                assert payload == (b"1" if served_value else b"0"), topic
            else:
                assert float(payload) == pytest.approx(served_value, abs=0.01), topic
            checked += 1
    assert checked >= 15


def _retained(sub: Subscriber) -> dict[str, bytes]:
    return {m.topic: m.payload for m in sub.snapshot() if m.retain}


def _configs(sub: Subscriber) -> dict[str, dict]:
    return {
        m.topic: json.loads(m.payload)
        for m in sub.snapshot()
        if m.topic.startswith("homeassistant/") and m.topic.endswith("/config") and m.payload
    }


def _config_count(sub: Subscriber) -> int:
    return len([m for m in sub.snapshot() if m.topic.endswith("/config")])


def _hubs_described(sub: Subscriber) -> bool:
    """Both collectors' hub devices (the sensors' via_device) have a config of their own."""
    configs = _configs(sub).values()
    hubs = {c["device"]["identifiers"][0] for c in configs if "_hub_" in c["unique_id"]}
    return len(hubs) == 2


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
    by_unique_id: dict[str, set[str]] = {}
    names: list[str] = []
    for message in watch.snapshot():
        if not message.payload.startswith(b"{"):
            continue
        body = json.loads(message.payload)  # names reach no consumer with raw controls
        name = body["device"]["name"] if "device" in body else body.get("name", "")
        assert not re.search(r"[\x00-\x1f\x7f]", name), name
        if "unique_id" in body:
            by_unique_id.setdefault(body["unique_id"], set()).add(message.topic)
            names.append(name)
    # a renamed device keeps one config topic per entity (renamed in HA, not duplicated)
    assert all(len(topics) == 1 for topics in by_unique_id.values())
    assert any("\\x1b[31mred" in name for name in names)  # the rename reached HA


def test_status_follows_the_broker_link_between_polls(
    hue_sim, setup_factory, daemons, broker: Broker
) -> None:
    """At the shipped interval (60 s) one poll happens in this test: `status` still says at
    once when the broker link comes up, goes down and comes back."""
    setup = setup_factory(hue=hue_sim)
    mqtt_setup(setup, broker)
    setup.write(collectors={"hue": {"interval": 60}})
    shipped_defaults(setup)
    daemon = daemons(setup)
    connected = "MQTT: connected to 127.0.0.1"
    wait_for(lambda: connected in setup.cli("status").stdout, timeout=10)
    broker.stop()
    wait_for(lambda: "MQTT: NOT connected to 127.0.0.1" in setup.cli("status").stdout, timeout=10)
    broker.start()
    wait_for(lambda: connected in setup.cli("status").stdout, timeout=15)  # backoff 1, 2, 4 s
    assert collector_state(setup, "hue")["polls"] == 1  # no poll wrote any of it
    assert daemon.stop() == 0


def test_a_wrong_password_is_one_error_then_an_alert_and_polling_goes_on(
    hue_sim, setup_factory, daemons, broker: Broker
) -> None:
    wrong = "Wrong-Passw0rd-xyz"
    setup = setup_factory(hue=hue_sim)
    mqtt_setup(setup, broker, password=wrong)
    setup.write(alerts={"offline_after": 1})
    shipped_defaults(setup)  # commit_interval 300: polls queue readings for the next commit
    daemon = daemons(setup)
    alert = setup.data / "ALERT_MQTT_OFFLINE.txt"
    wait_for(alert.exists, timeout=15)
    rows_then = setup.row_count()
    polls_then = collector_state(setup, "hue")["polls"]
    wait_for(lambda: collector_state(setup, "hue")["polls"] >= polls_then + 2, timeout=10)
    status = setup.cli("status")
    assert "NOT connected" in status.stdout
    assert "homepoll_mqtt_connected 0.0" in httpx.get(setup.web_url + "metrics").text
    assert 'data-mqtt="disconnected"' in httpx.get(setup.web_url, timeout=5).text
    errors = [line for line in setup.log_text().splitlines() if " ERROR " in line]
    assert len([e for e in errors if "refused the login" in e]) == 1, errors
    assert "mqtt.password_file" in errors[0]

    # the fixed password is picked up at the next attempt, no restart; the alert goes away
    (setup.data / "mqtt_password").write_text(PASSWORD + "\n")
    wait_for(lambda: not alert.exists(), timeout=20)
    assert daemon.stop() == 0
    assert setup.row_count() > rows_then  # polling and storing went on (the stop committed)
    outputs = [
        setup.log_text(),
        daemon.stderr(),
        status.stdout + status.stderr,
        setup.cli("status", "--json").stdout,
    ]
    for text in outputs:
        assert wrong not in text and PASSWORD not in text
