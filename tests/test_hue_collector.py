"""HueCollector and pair() against the real Hue simulator over loopback HTTP.

Covers parsing (units, conversions, device grouping, names, filters, skips), the
mapping of every simulated fault to the error taxonomy, the transport (attempt timeout,
no key in logs or messages) and the pairing flow.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from homepoll.collectors.hue import HueCollector, pair, parse_sensors
from homepoll.config import HueSettings
from homepoll.errors import (
    AuthError,
    CollectorError,
    PermanentError,
    RateLimitedError,
    TransientError,
)
from homepoll.model import CollectResult, Reading
from homepoll.simulator.hue_bridge import DEFAULT_KEY, HueBridgeSimulator

T0 = 1_790_000_000.0
POLL_TIME = 1_790_000_042.5
DEV1 = "00:17:88:01:00:00:00:01"
DEV2 = "00:17:88:01:00:00:00:02"
DIMMER = "00:17:88:01:10:00:00:01"


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def sim() -> Iterator[HueBridgeSimulator]:
    with HueBridgeSimulator(clock=Clock()) as simulator:
        yield simulator


def collector(sim: HueBridgeSimulator, **settings: object) -> HueCollector:
    values: dict[str, object] = {"bridge": sim.address, "username": DEFAULT_KEY, **settings}
    return HueCollector(HueSettings(**values), clock=lambda: POLL_TIME)  # type: ignore[arg-type]


def collect(c: HueCollector, timeout: float = 2.0) -> CollectResult:
    """One poll, then the kept connection closed (as the daemon does at stop)."""

    async def run() -> CollectResult:
        try:
            return await c.collect(timeout)
        finally:
            await c.aclose()

    return asyncio.run(run())


def by_metric(result: CollectResult, device_id: str) -> dict[str, Reading]:
    return {r.metric: r for r in result.readings if r.device_id == device_id}


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --------------------------------------------------------------------------- parsing


def test_readings_match_what_the_bridge_served(sim: HueBridgeSimulator) -> None:
    result = collect(collector(sim))
    assert result.skipped == 0 and result.notes == []
    timed = {(r.device_id, r.metric, r.ts, r.value) for r in result.readings if not r.on_change}
    served = {(s.device_id, s.metric, s.ts, s.value) for s in sim.served.snapshot()}
    assert timed == served and len(timed) == 9
    units = {r.metric: r.unit for r in result.readings}
    assert units == {
        "temperature": "degC",
        "light_level": "lux",
        "presence": "bool",
        "battery": "%",
        "reachable": "bool",
    }
    for reading in result.readings:
        assert reading.source == "hue"
        assert reading.ts == (POLL_TIME * 1000 if reading.on_change else T0 * 1000)
        assert reading.on_change == (reading.metric in {"battery", "reachable"})
    # three motion sensors and the dimmer switch, whose battery is stored too
    assert len({r.device_id for r in result.readings}) == 4
    assert sum(r.metric == "battery" for r in result.readings) == 4  # once per device
    dimmer = by_metric(result, DIMMER)
    assert set(dimmer) == {"battery", "reachable"} and dimmer["battery"].value == 90
    assert dimmer["battery"].name == "Hue dimmer switch 1"


def test_conversions_on_the_documented_example() -> None:
    answer = {
        "5": {
            "name": "Hall temperature",
            "type": "ZLLTemperature",
            "uniqueid": "00:17:88:01:02:03:04:05-02-0402",
            "state": {"temperature": 2153, "lastupdated": "2026-11-22T07:01:12"},
            "config": {"on": True, "battery": 87, "reachable": True},
        },
        "6": {
            "name": "Hall light",
            "type": "ZLLLightLevel",
            "uniqueid": "00:17:88:01:02:03:04:05-02-0400",
            "state": {"lightlevel": 14000, "lastupdated": "2026-11-22T07:01:12"},
            "config": {"battery": 87, "reachable": True},
        },
        "7": {
            "name": "Hall",
            "type": "ZLLPresence",
            "uniqueid": "00:17:88:01:02:03:04:05-02-0406",
            "state": {"presence": True, "lastupdated": "2026-11-22T07:01:13"},
            "config": {"battery": 87, "reachable": True},
        },
        "8": {"name": "Daylight", "type": "Daylight", "state": {"daylight": True}},
        "9": {"name": "Generic", "type": "CLIPGenericStatus", "state": {"status": 3}},
    }
    result = parse_sensors(answer, now_ms=5)
    metrics = by_metric(result, "00:17:88:01:02:03:04:05")
    assert metrics["temperature"].value == 21.53
    assert metrics["light_level"].value == round(10 ** (13999 / 10000), 2) == 25.11
    assert metrics["presence"].value == 1.0
    assert metrics["temperature"].ts == 1_795_330_872_000  # 2026-11-22T07:01:12Z
    assert metrics["presence"].ts == 1_795_330_873_000
    assert (metrics["battery"].value, metrics["battery"].ts) == (87.0, 5)
    assert {r.name for r in result.readings} == {"Hall"}  # the presence resource's name
    assert len(result.readings) == 5 and result.skipped == 0


def test_device_without_presence_falls_back_to_resource_names() -> None:
    answer = {
        "3": {
            "name": "Lone thermometer",
            "type": "ZLLTemperature",
            "uniqueid": "00:17:88:01:0a:0b:0c:0d-02-0402",
            "state": {"temperature": -150, "lastupdated": "2026-01-01T00:00:00"},
            "config": {"reachable": True},
        },
    }
    result = parse_sensors(answer, now_ms=0)
    assert [(r.metric, r.name, r.value) for r in result.readings] == [
        ("temperature", "Lone thermometer", -1.5),
        ("reachable", "Lone thermometer", 1.0),
    ]


def test_exact_output_order_battery_choice_and_notes() -> None:
    """Resources in numeric id order, grouped by device in order of first appearance; per
    device its values, then battery (the presence resource's first), then reachable. Without
    a presence resource, values keep their resource's name, device values the first one's."""
    a, b = "00:17:88:01:0a:00:00:01", "00:17:88:01:0b:00:00:02"
    answer = {
        "10": {
            "name": "Porch",
            "type": "ZLLPresence",
            "uniqueid": f"{a}-02-0406",
            "state": {"presence": False, "lastupdated": "2026-11-22T07:01:12+01:00"},
            "config": {"battery": 80, "reachable": True},
        },
        "9": {
            "name": "Porch light",
            "type": "ZLLLightLevel",
            "uniqueid": f"{a}-02-0400",
            "state": {"lightlevel": 1, "lastupdated": "2026-11-22T07:01:12"},
            "config": {"battery": 50, "reachable": True},
        },
        "2": {
            "name": "Shed temperature",
            "type": "ZLLTemperature",
            "uniqueid": f"{b}-02-0402",
            "state": {"temperature": 1000, "lastupdated": "none"},
            "config": {"battery": 30, "reachable": 0},
        },
        "x": {
            "name": "Shed light",
            "type": "ZLLLightLevel",
            "uniqueid": f"{b}-02-0400",
            "state": {"lightlevel": 10001, "lastupdated": "2026-11-22T07:01:12"},
            "config": {"reachable": True},
        },
        "²": {"name": "odd id", "type": "Daylight", "state": {}},  # a digit int() rejects
    }
    result = parse_sensors(answer, now_ms=7)
    got = [(r.device_id, r.name, r.metric, r.ts, r.value, r.on_change) for r in result.readings]
    assert got == [
        (b, "Shed temperature", "light_level", 1_795_330_872_000, 10.0, False),
        (b, "Shed temperature", "battery", 7, 30.0, True),
        (b, "Shed temperature", "reachable", 7, 0.0, True),
        (a, "Porch", "light_level", 1_795_330_872_000, 1.0, False),
        (a, "Porch", "presence", 1_795_327_272_000, 0.0, False),
        (a, "Porch", "battery", 7, 80.0, True),
        (a, "Porch", "reachable", 7, 1.0, True),
    ]
    assert result.skipped == 1
    # reachable 0 is not False (the value is still read) but does count as unreachable
    assert result.notes == ["Shed temperature: temperature skipped (never updated)"]


def test_garbage_numbers_skip_one_value_not_the_poll() -> None:
    answer = {
        "1": {
            "name": "Hall",
            "type": "ZLLPresence",
            "uniqueid": "00:17:88:01:02:03:04:05-02-0406",
            "state": {"presence": True, "lastupdated": "2026-11-22T07:01:12"},
            "config": {"battery": 10**400, "reachable": True},
        },
        "2": {
            "name": "Hall light",
            "type": "ZLLLightLevel",
            "uniqueid": "00:17:88:01:02:03:04:05-02-0400",
            "state": {"lightlevel": 1e300, "lastupdated": "2026-11-22T07:01:12"},
            "config": {"reachable": True},
        },
    }
    result = parse_sensors(answer, now_ms=0)
    assert [r.metric for r in result.readings] == ["presence", "reachable"]
    assert result.skipped == 2
    assert result.notes == [
        "Hall: light_level skipped (value out of range)",
        "Hall: battery skipped (no current value)",
    ]


@pytest.mark.parametrize("shape", [[], "text", [{"success": {}}], None])
def test_unexpected_shape_is_permanent(shape: object) -> None:
    with pytest.raises(PermanentError):
        parse_sensors(shape, now_ms=0)


def test_presence_name_applies_to_the_whole_device(sim: HueBridgeSimulator) -> None:
    result = collect(collector(sim))
    assert {r.name for r in by_metric(result, DEV1).values()} == {"Hall sensor"}
    assert {r.name for r in by_metric(result, DEV2).values()} == {"Kitchen sensor"}


def test_names_override_by_bridge_name_or_device_id(sim: HueBridgeSimulator) -> None:
    names = {"Hue temperature sensor 1": "Entrance", DEV2 + "-02-0406": "Cooking", "nope": "x"}
    result = collect(collector(sim, names=names))
    assert {r.name for r in by_metric(result, DEV1).values()} == {"Entrance"}
    assert {r.name for r in by_metric(result, DEV2).values()} == {"Cooking"}
    result = collect(collector(sim, names={DEV2: "By MAC"}))
    assert {r.name for r in by_metric(result, DEV2).values()} == {"By MAC"}


def test_sensors_filter(sim: HueBridgeSimulator) -> None:
    result = collect(collector(sim, sensors=("Kitchen sensor",)))
    assert {r.device_id for r in result.readings} == {DEV2}
    assert set(by_metric(result, DEV2)) == {
        "temperature",
        "light_level",
        "presence",
        "battery",
        "reachable",
    }
    # a resource id ("4" = device 1's temperature) or name keeps that resource only
    result = collect(collector(sim, sensors=("4", "Hue ambient light sensor 2")))
    assert {(r.device_id, r.metric) for r in result.readings if not r.on_change} == {
        (DEV1, "temperature"),
        (DEV2, "light_level"),
    }
    assert {r.name for r in by_metric(result, DEV1).values()} == {"Hall sensor"}
    assert collect(collector(sim, sensors=("no such sensor",))).readings == []


def test_unreachable_and_stale_values_are_skipped_and_counted(sim: HueBridgeSimulator) -> None:
    sim.set_reachable(1, False)
    sim.set_never_updated(2)
    sim.set_null_value(3, "temperature")
    result = collect(collector(sim))
    assert result.skipped == 3 + 3 + 1
    dev1 = by_metric(result, DEV1)
    assert set(dev1) == {"battery", "reachable"} and dev1["reachable"].value == 0.0
    assert set(by_metric(result, DEV2)) == {"battery", "reachable"}
    dev3 = by_metric(result, "00:17:88:01:00:00:00:03")
    assert set(dev3) == {"light_level", "presence", "battery", "reachable"}
    assert result.notes == [
        "Hall sensor: presence skipped (unreachable)",
        "Hall sensor: light_level skipped (unreachable)",
        "Hall sensor: temperature skipped (unreachable)",
        "Kitchen sensor: presence skipped (never updated)",
        "Kitchen sensor: light_level skipped (never updated)",
        "Kitchen sensor: temperature skipped (never updated)",
        "Living room sensor: temperature skipped (no current value)",
    ]


# --------------------------------------------------------------------------- faults


@pytest.mark.parametrize(
    ("kind", "params", "error", "text"),
    [
        ("unauthorized", {}, AuthError, "Hue error 1: unauthorized user"),
        ("error_901", {}, TransientError, "901"),
        ("http_503", {}, RateLimitedError, "503"),
        ("reset", {}, TransientError, "reset"),
        ("empty", {}, TransientError, "closed the connection"),
        ("garbage", {}, TransientError, "non-JSON"),
        # transport auto: a bridge that now redirects to HTTPS is asked over HTTPS next
        ("redirect_https", {}, TransientError, "trying HTTPS"),
    ],
)
def test_fault_maps_to_taxonomy(
    sim: HueBridgeSimulator, kind: str, params: dict[str, float], error: type, text: str
) -> None:
    sim.faults.queue(kind, **params)
    with pytest.raises(error) as caught:
        collect(collector(sim))
    assert type(caught.value) is error
    assert text in str(caught.value)
    collect(collector(sim))  # the next poll works again


def test_rate_limit_carries_retry_after(sim: HueBridgeSimulator) -> None:
    sim.faults.queue("rate_limit", retry_after=2)
    sim.faults.queue("rate_limit")
    with pytest.raises(RateLimitedError) as caught:
        collect(collector(sim))
    assert caught.value.retry_after == 2
    with pytest.raises(RateLimitedError) as caught:
        collect(collector(sim))
    assert caught.value.retry_after is None


def test_attempt_timeout_bounds_a_slow_answer(sim: HueBridgeSimulator) -> None:
    sim.faults.queue("slow", seconds=5)
    started = time.monotonic()
    with pytest.raises(TransientError) as caught:
        collect(collector(sim), timeout=0.3)
    assert time.monotonic() - started < 0.6
    assert caught.value.outcome == "timeout" and "0.3 s" in str(caught.value)


def test_connection_refused_is_transient() -> None:
    port = closed_port()
    c = HueCollector(HueSettings(bridge=f"127.0.0.1:{port}", username=DEFAULT_KEY))
    with pytest.raises(TransientError, match="refused the connection"):
        asyncio.run(c.collect(1.0))


def test_missing_key_is_auth_error() -> None:
    c = HueCollector(HueSettings(bridge="127.0.0.1:9", username=None))
    with pytest.raises(AuthError):
        asyncio.run(c.collect(1.0))


def test_key_never_in_messages_or_logs(
    sim: HueBridgeSimulator, caplog: pytest.LogCaptureFixture, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    caplog.set_level(logging.DEBUG)
    for name in ("httpx", "httpcore"):  # as logs.setup_logging sets them in the daemon
        caplog.set_level(logging.WARNING, logger=name)
    messages = []
    for kind in ("unauthorized", "error_901", "http_503", "rate_limit", "reset", "garbage"):
        sim.faults.queue(kind)
    sim.faults.queue("redirect_https")
    sim.faults.queue("empty")
    sim.faults.queue("slow", seconds=1)
    for _ in range(9):
        with pytest.raises(CollectorError) as caught:
            collect(collector(sim), timeout=0.2)
        messages.append(str(caught.value))
        messages.append(repr(caught.value.__cause__))
        messages.append(repr(caught.value.__context__))
    collect(collector(sim))
    sim.revoke_key()
    with pytest.raises(AuthError) as caught:
        collect(collector(sim))
    messages.append(str(caught.value))
    text = "\n".join(messages) + caplog.text
    assert DEFAULT_KEY not in text and "/api/" not in text
    assert len(messages) == 28  # every poll was checked
    assert list(tmp_path.iterdir()) == []  # nothing written to HOME


def test_key_with_control_characters_is_permanent_and_not_quoted(sim: HueBridgeSimulator) -> None:
    key = "secret-key-with\nnewline and space"
    with pytest.raises(PermanentError) as caught:
        collect(collector(sim, username=key))
    assert "secret-key" not in str(caught.value) and "newline" not in str(caught.value)


def test_alert_remedy_names_the_bridge_and_the_steps(sim: HueBridgeSimulator) -> None:
    c = collector(sim)
    assert c.name == "hue" and c.alert_file == "ALERT_HUE_AUTH_NEEDED.txt"
    assert f"homepoll hue-pair --bridge {sim.address}" in c.alert_remedy
    assert "link button" in c.alert_remedy and "systemctl reload homepoll" in c.alert_remedy
    asyncio.run(c.aclose())


# --------------------------------------------------------------------------- pairing


def test_pair_succeeds_after_the_button_is_pressed(sim: HueBridgeSimulator) -> None:
    waits = []

    def on_waiting() -> None:
        waits.append(1)
        if len(waits) == 2:
            sim.press_link_button()

    key = asyncio.run(pair(sim.address, "pi", attempts_for=5, interval=0.02, on_waiting=on_waiting))
    assert len(waits) == 2 and key == sim.key and key != DEFAULT_KEY
    assert collect(collector(sim, username=key)).readings


def test_pair_gives_up_when_never_pressed(sim: HueBridgeSimulator) -> None:
    waits = []
    started = time.monotonic()
    with pytest.raises(AuthError, match=r"link button not pressed .* within 0.2 s"):
        asyncio.run(
            pair(
                sim.address,
                "pi",
                attempts_for=0.2,
                interval=0.05,
                on_waiting=lambda: waits.append(1),
            )
        )
    assert 0.1 < time.monotonic() - started < 1 and len(waits) >= 2
    assert sim.key == DEFAULT_KEY  # no key was created


def test_pair_unreachable_bridge_is_transient() -> None:
    with pytest.raises(TransientError):
        asyncio.run(
            pair(f"127.0.0.1:{closed_port()}", "pi", attempts_for=1, interval=0.01, timeout=0.5)
        )
