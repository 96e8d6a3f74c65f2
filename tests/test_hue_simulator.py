"""The Hue bridge simulator over real loopback HTTP: shape, moving values, faults, pairing.

The collector's tests trust this simulator, so its own behaviour is pinned here with
plain http.client/urllib, independent of homepoll's collector code.
"""

from __future__ import annotations

import http.client
import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from homepoll.simulator.hue_bridge import DEFAULT_KEY, FAULT_KINDS, HueBridgeSimulator

T0 = 1_790_000_000.0  # 2026-09-21T...: a whole second, so lastupdated math is exact


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sim(clock: Clock) -> Iterator[HueBridgeSimulator]:
    with HueBridgeSimulator(clock=clock, update_period=5.0) as simulator:
        yield simulator


def call(
    sim: HueBridgeSimulator,
    method: str,
    path: str,
    body: bytes | None = None,
    timeout: float = 5.0,
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection(sim.address, timeout=timeout)
    try:
        conn.request(method, path, body=body)
        response = conn.getresponse()
        data = response.read()
        response.close()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, data
    finally:
        conn.close()


def sensors(sim: HueBridgeSimulator, key: str = DEFAULT_KEY, suffix: str = "") -> Any:
    status, _, data = call(sim, "GET", f"/api/{key}/sensors{suffix}")
    assert status == 200
    return json.loads(data)


def wait_for(predicate: Any, timeout: float = 2.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, "condition not reached"
        time.sleep(0.01)


def test_sensors_shape(sim: HueBridgeSimulator) -> None:
    status, headers, data = call(sim, "GET", f"/api/{DEFAULT_KEY}/sensors")
    assert status == 200 and headers["content-type"] == "application/json"
    answer = json.loads(data)
    assert answer == sensors(sim, suffix="/")  # phue asks for /sensors/
    types = [item["type"] for item in answer.values()]
    assert types.count("ZLLPresence") == types.count("ZLLTemperature") == 3
    assert types.count("ZLLLightLevel") == 3 and "Daylight" in types and "ZLLSwitch" in types
    device = {
        k: v
        for k, v in answer.items()
        if v.get("uniqueid", "").startswith("00:17:88:01:00:00:00:01-")
    }
    by_type = {v["type"]: v for v in device.values()}
    assert by_type["ZLLPresence"]["uniqueid"] == "00:17:88:01:00:00:00:01-02-0406"
    assert by_type["ZLLLightLevel"]["uniqueid"] == "00:17:88:01:00:00:00:01-02-0400"
    assert by_type["ZLLTemperature"]["uniqueid"] == "00:17:88:01:00:00:00:01-02-0402"
    assert by_type["ZLLPresence"]["name"] == "Hall sensor"
    assert by_type["ZLLTemperature"]["name"] == "Hue temperature sensor 1"
    assert by_type["ZLLLightLevel"]["name"] == "Hue ambient light sensor 1"
    temperature = by_type["ZLLTemperature"]
    assert isinstance(temperature["state"]["temperature"], int)
    assert temperature["state"]["lastupdated"] == "2026-09-21T14:13:20"
    assert isinstance(temperature["config"]["battery"], int)
    assert temperature["config"]["reachable"] is True
    assert isinstance(by_type["ZLLPresence"]["state"]["presence"], bool)


def test_values_move_every_update_period(sim: HueBridgeSimulator, clock: Clock) -> None:
    def temps() -> dict[str, tuple[int, str]]:
        return {
            v["uniqueid"]: (v["state"]["temperature"], v["state"]["lastupdated"])
            for v in sensors(sim).values()
            if v["type"] == "ZLLTemperature"
        }

    first = temps()
    clock.now += 4.9
    assert temps() == first  # within one period nothing moves
    clock.now += 0.1
    second = temps()
    assert {stamp for _, stamp in second.values()} == {"2026-09-21T14:13:25"}
    assert [v for v, _ in second.values()] != [v for v, _ in first.values()]
    # deterministic: a second simulator with the same seed and clock serves the same values
    with HueBridgeSimulator(clock=clock) as other:
        assert sensors(other) == sensors(sim)


def test_sub_second_update_period_keeps_lastupdated_distinct(clock: Clock) -> None:
    """lastupdated has 1 s resolution: two different values must never share one."""
    with HueBridgeSimulator(clock=clock, update_period=0.2) as sim:
        seen: dict[str, set[int]] = {}
        for _ in range(12):
            state = sensors(sim)["4"]["state"]
            seen.setdefault(state["lastupdated"], set()).add(state["temperature"])
            clock.now += 0.25
        assert len(seen) >= 2  # values did move
        assert all(len(values) == 1 for values in seen.values())


def test_unknown_key_is_hue_error_1(sim: HueBridgeSimulator) -> None:
    assert sensors(sim, key="wrong") == [
        {"error": {"type": 1, "address": "/sensors", "description": "unauthorized user"}}
    ]
    assert sim.served.snapshot() == []


def test_faults_appear_in_order_and_only_successes_are_served(sim: HueBridgeSimulator) -> None:
    script = b"http_503 rate_limit(retry_after=3) rate_limit garbage unauthorized error_901"
    status, _, data = call(sim, "POST", "/_sim/faults", script)
    assert status == 200 and json.loads(data) == {"pending": 6}
    path = f"/api/{DEFAULT_KEY}/sensors"
    status, headers, data = call(sim, "GET", path)
    assert status == 503 and b"<html>" in data
    status, headers, _ = call(sim, "GET", path)
    assert status == 429 and headers["retry-after"] == "3"
    status, headers, _ = call(sim, "GET", path)
    assert status == 429 and "retry-after" not in headers
    status, _, data = call(sim, "GET", path)
    assert status == 200
    with pytest.raises(ValueError):
        json.loads(data)
    assert sensors(sim)[0]["error"]["type"] == 1
    assert sensors(sim)[0]["error"]["type"] == 901
    assert sim.served.snapshot() == []  # nothing was delivered yet
    assert sim.served.requests == 6 and sim.served.successes == 0

    answer = sensors(sim)  # the plan is empty again: a normal answer
    status, _, data = call(sim, "GET", "/_sim/served")
    served = json.loads(data)
    assert len(served) == 9 and sim.served.successes == 1
    for item in answer.values():
        if item["type"] == "ZLLTemperature":
            expected = {
                "source": "hue",
                "device_id": item["uniqueid"][:23],
                "metric": "temperature",
                "ts": int(T0 * 1000),
                "value": item["state"]["temperature"] / 100,
            }
            assert expected in served
        if item["type"] == "ZLLLightLevel":
            lux = round(10 ** ((item["state"]["lightlevel"] - 1) / 10000), 2)
            assert {
                "device_id": item["uniqueid"][:23],
                "metric": "light_level",
                "value": lux,
            }.items() <= next(
                s
                for s in served
                if s["device_id"] == item["uniqueid"][:23] and s["metric"] == "light_level"
            ).items()


def test_bad_fault_script_is_rejected(sim: HueBridgeSimulator) -> None:
    status, _, data = call(sim, "POST", "/_sim/faults", b"http_503 explode*2")
    assert status == 400 and "explode" in json.dumps(json.loads(data))
    assert sim.faults.pending() == 0
    assert set(FAULT_KINDS) >= {"reset", "empty", "slow", "redirect_https"}


def test_connection_level_faults(sim: HueBridgeSimulator) -> None:
    path = f"/api/{DEFAULT_KEY}/sensors/"
    sim.faults.queue("reset")
    with pytest.raises(ConnectionResetError):
        call(sim, "GET", path)
    sim.faults.queue("empty")
    with pytest.raises(http.client.RemoteDisconnected):
        call(sim, "GET", path)
    sim.faults.queue("redirect_https")
    status, headers, _ = call(sim, "GET", path)
    assert status == 301 and headers["location"] == f"https://{sim.address}{path}"
    assert sim.served.snapshot() == []


def test_slow_answers_late_and_records_only_when_delivered(sim: HueBridgeSimulator) -> None:
    path = f"/api/{DEFAULT_KEY}/sensors"
    sim.faults.queue("slow", seconds=0.4)
    with pytest.raises(TimeoutError):
        call(sim, "GET", path, timeout=0.1)
    wait_for(lambda: sim.served.requests == 1)
    assert sim.served.snapshot() == []  # the client had gone: not delivered

    sim.faults.queue("slow", seconds=0.2)
    started = time.monotonic()
    status, _, _ = call(sim, "GET", path)
    assert status == 200 and time.monotonic() - started >= 0.2
    assert len(sim.served.snapshot()) == 9


def test_unreachable_and_never_updated_devices_are_not_served(sim: HueBridgeSimulator) -> None:
    sim.set_reachable(1, False)
    sim.set_never_updated(2)
    sim.set_null_value(3, "temperature")
    answer = sensors(sim)
    assert answer["2"]["config"]["reachable"] is False
    assert answer["5"]["state"]["lastupdated"] == "none"
    assert answer["10"]["state"]["temperature"] is None
    served = sim.served.snapshot()
    assert {(s.device_id[-2:], s.metric) for s in served} == {
        ("03", "presence"),
        ("03", "light_level"),
    }


def test_pairing_flow(sim: HueBridgeSimulator, clock: Clock) -> None:
    body = json.dumps({"devicetype": "homepoll#pi"}).encode()
    status, _, data = call(sim, "POST", "/api", body)
    assert status == 200 and json.loads(data)[0]["error"]["type"] == 101

    assert call(sim, "POST", "/_sim/press_button")[0] == 200
    clock.now += 29
    answer = json.loads(call(sim, "POST", "/api", body)[2])
    new_key = answer[0]["success"]["username"]
    assert new_key != DEFAULT_KEY and sim.key == new_key
    assert isinstance(sensors(sim, key=new_key), dict)

    clock.now += 2  # the 30 s window has passed
    assert json.loads(call(sim, "POST", "/api", body)[2])[0]["error"]["type"] == 101

    assert call(sim, "POST", "/_sim/revoke")[0] == 200
    assert sensors(sim, key=new_key)[0]["error"]["type"] == 1
    assert sensors(sim)[0]["error"]["type"] == 1
    sim.set_key("another")
    assert isinstance(sensors(sim, key="another"), dict)


def test_stop_is_idempotent_and_frees_the_port(clock: Clock) -> None:
    sim = HueBridgeSimulator(clock=clock).start()
    port = sim.port
    sim.faults.queue("slow", seconds=30)
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(f"GET /api/{DEFAULT_KEY}/sensors HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        wait_for(lambda: sim.faults.pending() == 0)
        started = time.monotonic()
        sim.stop()  # wakes the sleeping slow answer instead of waiting 30 s
        assert time.monotonic() - started < 2
    sim.stop()
    with socket.socket() as probe:
        # REUSEADDR tolerates TIME_WAIT leftovers but not a listening socket still open
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", port))
