"""deCONZ/Phoscon and diyHue: ZHA types with their units, HTTP 403 + error 1 as the auth
alert, pairing that waits through 403 + error 101 until "Authenticate app" is clicked.

The parser fixture is written from public answers: pydeconz's sensor test fixtures (Aqara
``lumi.weather`` humidity 3555 = 35.55 %, pressure 1010 hPa), a deCONZ dump quoted in a
public repository (``lastupdated`` ``2024-06-22T04:08:22.511``, ``lastseen`` with ``Z``),
diyHue's emulated motion sensor (generic names, a battery per resource).
"""

from __future__ import annotations

import threading
import time

from homepoll.collectors.hue import parse_sensors
from homepoll.simulator.hue_bridge import HueBridgeSimulator

WEATHER = "00:15:8d:00:02:4a:f7:4e"
MOTION = "00:17:88:01:03:28:0f:d4"
DIMMER = "00:17:88:01:08:0c:3a:11"

DECONZ_ANSWER = {
    "1": {
        "config": {"battery": 100, "offset": 0, "on": True, "reachable": True},
        "ep": 1,
        "manufacturername": "LUMI",
        "modelid": "lumi.weather",
        "name": "Mi temperature 1",
        "state": {"lastupdated": "2019-05-05T14:39:00", "temperature": 2182},
        "type": "ZHATemperature",
        "uniqueid": f"{WEATHER}-01-0402",
    },
    "2": {
        "config": {"battery": 100, "offset": 0, "on": True, "reachable": True},
        "ep": 1,
        "manufacturername": "LUMI",
        "modelid": "lumi.weather",
        "name": "Mi temperature 1",
        "state": {"humidity": 3555, "lastupdated": "2019-05-05T14:39:00.512"},
        "type": "ZHAHumidity",
        "uniqueid": f"{WEATHER}-01-0405",
    },
    "3": {
        "config": {"battery": 100, "on": True, "reachable": True},
        "ep": 1,
        "manufacturername": "LUMI",
        "modelid": "lumi.weather",
        "name": "Mi temperature 1",
        "state": {"lastupdated": "2019-05-05T14:39:00Z", "pressure": 1010},
        "type": "ZHAPressure",
        "uniqueid": f"{WEATHER}-01-0403",
    },
    "4": {
        "config": {"battery": 62, "on": True, "reachable": True, "sensitivity": 2},
        "ep": 2,
        "manufacturername": "Philips",
        "modelid": "SML001",
        "name": "Hue motion Hue Motion Sensor",
        "state": {"lastupdated": "2024-06-22T04:08:22.511", "presence": True},
        "type": "ZHAPresence",
        "uniqueid": f"{MOTION}-02-0406",
    },
    "5": {
        "config": {"battery": 62, "on": True, "reachable": True},
        "ep": 2,
        "manufacturername": "Philips",
        "modelid": "SML001",
        "name": "LightLevel 5",
        "state": {
            "dark": False,
            "daylight": False,
            "lastupdated": "2024-06-22T04:08:22.511",
            "lightlevel": 6955,
            "lux": 5,
        },
        "type": "ZHALightLevel",
        "uniqueid": f"{MOTION}-02-0400",
    },
    "6": {
        "config": {"battery": 15, "on": True, "reachable": True},
        "ep": 1,
        "manufacturername": "Philips",
        "modelid": "RWL021",
        "name": "Dimmer Switch",
        "state": {"buttonevent": 1002, "lastupdated": "2024-06-21T19:02:11.000"},
        "type": "ZHASwitch",
        "uniqueid": f"{DIMMER}-02-fc00",
    },
    "7": {
        "config": {"on": True, "reachable": True},
        "ep": 1,
        "manufacturername": "Xiaomi",
        "modelid": "lumi.sensor_86sw1",
        "name": "Battery 7",
        "state": {"battery": 83, "lastupdated": "2024-06-21T19:02:11.000"},
        "type": "ZHABattery",
        "uniqueid": "00:15:8d:00:01:aa:bb:cc-01-0001",
    },
    "8": {"name": "Daylight", "type": "Daylight", "state": {"daylight": True}},
}


def test_zha_types_are_stored_with_their_units() -> None:
    result = parse_sensors(DECONZ_ANSWER, now_ms=7)
    got = {(r.device_id, r.metric): (r.value, r.unit, r.ts) for r in result.readings}
    assert got[(WEATHER, "temperature")] == (21.82, "degC", 1_557_067_140_000)
    assert got[(WEATHER, "humidity")] == (35.55, "%", 1_557_067_140_512)
    assert got[(WEATHER, "pressure")] == (1010.0, "hPa", 1_557_067_140_000)
    assert got[(MOTION, "presence")] == (1.0, "bool", 1_719_029_302_511)
    assert got[(MOTION, "light_level")][:2] == (round(10 ** (6954 / 10000), 2), "lux")
    assert got[(WEATHER, "battery")] == (100.0, "%", 7)
    assert got[(MOTION, "battery")] == (62.0, "%", 7)
    assert got[(DIMMER, "battery")] == (15.0, "%", 7)  # a switch's battery, named after it
    assert got[("00:15:8d:00:01:aa:bb:cc", "battery")] == (83.0, "%", 7)  # ZHABattery
    names = {r.device_id: r.name for r in result.readings}
    assert names[DIMMER] == "Dimmer Switch"
    assert names[MOTION] == "Hue motion Hue Motion Sensor"
    assert result.skipped == 0 and result.notes == []


def test_a_bad_key_403_raises_the_auth_alert_and_a_good_poll_clears_it(setup_factory) -> None:
    with HueBridgeSimulator(update_period=1.0, flavor="deconz") as sim:
        setup = setup_factory(hue=sim)
        alert = setup.data / "ALERT_HUE_AUTH_NEEDED.txt"
        sim.revoke_key()
        failed = setup.cli("once")
        assert failed.returncode == 1
        assert "FAILED (auth)" in failed.stdout and "HTTP 403" in failed.stdout
        assert alert.exists() and "Authenticate app" in alert.read_text()
        sim.set_key("renewed-key-0123456789")
        setup.write_hue_key("renewed-key-0123456789")
        ok = setup.cli("once")
        assert ok.returncode == 0, ok.stdout + ok.stderr
        assert not alert.exists()
        stored = dict(setup.query("SELECT metric, unit FROM sensors"))
        assert stored["humidity"] == "%" and stored["pressure"] == "hPa"


def test_hue_pair_waits_through_403_error_101_until_phoscon_unlocks(setup_factory) -> None:
    with HueBridgeSimulator(flavor="deconz") as sim:
        setup = setup_factory(hue=sim)
        (setup.data / "hue_username").unlink()
        timer = threading.Timer(1.0, sim.press_link_button)
        timer.start()
        started = time.monotonic()
        try:
            result = setup.cli("hue-pair", "--wait", "10")  # --bridge: the config's
        finally:
            timer.cancel()
        assert result.returncode == 0, result.stdout + result.stderr
        assert time.monotonic() - started >= 1.0
        assert "link button" in result.stdout and "Authenticate app" in result.stdout
        assert (setup.data / "hue_username").read_text().strip() == sim.key
