"""The Alexa GraphQL simulator over real loopback HTTP: answers, auth checks, faults, control."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator

import httpx
import pytest

from homepoll.collectors.amazon_aqm import DISCOVERY_QUERY, STATE_QUERY
from homepoll.simulator.aqm_api import FAULT_KINDS, AqmApiSimulator

T0 = 1_780_000_000.0
ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


class FakeClock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sim(clock: FakeClock) -> Iterator[AqmApiSimulator]:
    with AqmApiSimulator(monitors=2, fahrenheit_monitors=1, update_period=5, clock=clock) as s:
        yield s


@pytest.fixture
def http(sim: AqmApiSimulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sim.base_url, timeout=5) as client:
        yield client


def _headers(sim: AqmApiSimulator, csrf: str | None = None) -> dict[str, str]:
    return {
        "Cookie": sim.cookie_header(),
        "csrf": sim.valid_cookies["csrf"] if csrf is None else csrf,
        "Content-Type": "application/json",
    }


DISCOVERY = {"operationName": "getHomepollEndpoints", "variables": {}, "query": DISCOVERY_QUERY}


def _state(ids: list[str]) -> dict[str, object]:
    return {
        "operationName": "getEndpointState",
        "variables": {"endpointIds": ids},
        "query": STATE_QUERY,
    }


def _post(http: httpx.Client, sim: AqmApiSimulator, body: object, **kw: str) -> httpx.Response:
    return http.post("/nexus/v1/graphql", json=body, headers=_headers(sim, **kw))


def _ids(sim: AqmApiSimulator) -> list[str]:
    return [m.endpoint_id for m in sim.monitors]


def _values(endpoint: dict) -> dict[str, object]:
    out: dict[str, object] = {}
    for feature in endpoint["features"]:
        prop = feature["properties"][0]
        if feature["name"] == "range":
            out[feature["instance"]] = prop["rangeValue"] and prop["rangeValue"]["value"]
        elif feature["name"] == "temperatureSensor":
            out["temperature"] = prop["value"]
        else:
            out["reachable"] = prop["reachabilityStatusValue"]
    return out


def test_discovery_lists_monitors(http, sim) -> None:
    answer = _post(http, sim, DISCOVERY).json()
    endpoints = answer["data"]["airQualityMonitors"]["endpoints"]
    assert [e["endpointId"] for e in endpoints] == _ids(sim)
    assert endpoints[0]["endpointId"].startswith("amzn1.alexa.endpoint.")
    assert endpoints[1]["friendlyNameObject"]["value"]["text"] == "Air monitor 2 (F)"
    assert endpoints[0]["serialNumber"]["value"]["text"]
    # discovery serves no measurement
    assert sim.served.snapshot() == []


def test_state_answer_shape_and_served_log(http, sim) -> None:
    answer = _post(http, sim, _state(_ids(sim))).json()
    endpoints = answer["data"]["listEndpoints"]["endpoints"]
    assert len(endpoints) == 2
    celsius, fahrenheit = (_values(e) for e in endpoints)
    assert set(celsius) == {"4", "5", "6", "7", "8", "9", "temperature", "reachable"}
    assert celsius["temperature"]["scale"] == "CELSIUS"
    assert 19 < celsius["temperature"]["value"] < 23
    assert fahrenheit["temperature"]["scale"] == "FAHRENHEIT"
    assert 66 < fahrenheit["temperature"]["value"] < 74
    assert 30 <= celsius["4"] <= 60 and 0 <= celsius["5"] <= 40 and 60 <= celsius["9"] <= 100
    prop = endpoints[0]["features"][1]["properties"][0]
    assert ISO_Z.match(prop["timeOfSample"]) and prop["error"] is None

    served = sim.served.snapshot()
    assert len(served) == 14  # 7 metrics x 2 monitors; reachability has no source time
    f_temp = next(s for s in served if s.device_id == _ids(sim)[1] and s.metric == "temperature")
    assert f_temp.value == round((fahrenheit["temperature"]["value"] - 32) * 5 / 9, 2)
    assert 19 < f_temp.value < 23
    assert {s.source for s in served} == {"amazon_aqm"}
    assert sim.served.requests == 1 and sim.served.successes == 1


def test_values_move_with_the_clock(http, sim, clock) -> None:
    first = _post(http, sim, _state(_ids(sim)[:1])).json()
    again = _post(http, sim, _state(_ids(sim)[:1])).json()
    assert first == again  # same update period: same sample
    clock.now += 5
    later = _post(http, sim, _state(_ids(sim)[:1])).json()
    t1 = first["data"]["listEndpoints"]["endpoints"][0]["features"][0]["properties"][0]
    t2 = later["data"]["listEndpoints"]["endpoints"][0]["features"][0]["properties"][0]
    assert t2["timeOfSample"] > t1["timeOfSample"]
    samples = {s.ts for s in sim.served.snapshot()}
    assert len(samples) == 2 and max(samples) - min(samples) == 5000


def test_sub_second_period_still_gives_distinct_seconds(clock) -> None:
    sim = AqmApiSimulator(update_period=0.2, clock=clock)
    monitor = sim.monitors[0]
    a = sim.sample(monitor, T0)
    b = sim.sample(monitor, T0 + 1)
    assert b.ts_seconds - a.ts_seconds >= 1


def test_batched_body_gets_an_array(http, sim) -> None:
    answer = _post(http, sim, [DISCOVERY, _state(_ids(sim))]).json()
    assert isinstance(answer, list) and len(answer) == 2
    assert len(answer[1]["data"]["listEndpoints"]["endpoints"]) == 2


def test_recognises_queries_without_operation_name(http, sim) -> None:
    answer = _post(http, sim, {"query": STATE_QUERY, "variables": {"endpointIds": _ids(sim)}})
    assert len(answer.json()["data"]["listEndpoints"]["endpoints"]) == 2


@pytest.mark.parametrize("what", ["no_cookie", "wrong_cookie", "no_csrf", "wrong_csrf"])
def test_bad_credentials_get_401(http, sim, what) -> None:
    headers = _headers(sim)
    if what == "no_cookie":
        del headers["Cookie"]
    elif what == "wrong_cookie":
        headers["Cookie"] = headers["Cookie"].replace("session-token=sim", "session-token=old")
    elif what == "no_csrf":
        del headers["csrf"]
    else:
        headers["csrf"] = "nope"
    response = http.post("/nexus/v1/graphql", json=DISCOVERY, headers=headers)
    assert response.status_code == 401
    assert response.json()["message"]
    assert sim.served.requests == 1 and sim.served.successes == 0


def test_cookie_rotation_rejects_old_jar(http, sim) -> None:
    old = _headers(sim)
    new = sim.set_cookies()
    assert new != dict(re.findall(r"([^=; ]+)=([^;]+)", old["Cookie"]))
    assert http.post("/nexus/v1/graphql", json=DISCOVERY, headers=old).status_code == 401
    assert _post(http, sim, DISCOVERY).status_code == 200
    rotated = http.post("/_sim/cookies").json()["cookies"]
    assert rotated == sim.valid_cookies and rotated != new
    assert set(rotated) >= {"csrf", "session-id", "ubid-main", "at-main", "session-token"}


def test_fault_script_over_control_endpoint(http, sim) -> None:
    assert http.post("/_sim/faults", content="http_503 ok signin_redirect hue.http_503").json() == {
        "pending": 3
    }
    assert _post(http, sim, DISCOVERY).status_code == 503
    assert _post(http, sim, DISCOVERY).status_code == 200
    redirect = _post(http, sim, DISCOVERY)
    assert redirect.status_code == 302
    assert redirect.headers["location"].startswith("https://www.amazon.com/ap/signin?")
    assert "text/html" in redirect.headers["content-type"]
    bad = http.post("/_sim/faults", content="nonsense_kind")
    assert bad.status_code == 400 and "unknown fault" in bad.json()["problems"][0]


@pytest.mark.parametrize(
    ("kind", "status", "check"),
    [
        ("http_401", 401, None),
        ("http_403", 403, None),
        ("http_407", 407, None),
        ("http_429", 429, None),
        ("rate_exceeded", 400, lambda j: j == {"message": "Rate exceeded"}),
        ("unauthenticated", 200, lambda j: j["errors"][0]["message"] == "Unauthenticated call"),
        ("forbidden", 200, lambda j: j["errors"][0]["extensions"]["errorCode"] == "FORBIDDEN"),
        (
            "too_many_requests",
            200,
            lambda j: (
                j["errors"][0]["extensions"]
                == {"errorCode": "UNOFFICIAL_CLIENT_TOO_MANY_REQUESTS", "isRetryable": False}
                and j["errors"][0]["message"] == "Too many requests"
                and j["data"] is None
            ),
        ),
        ("empty_endpoints", 200, lambda j: j["data"]["listEndpoints"]["endpoints"] == []),
        ("unknown_shape", 200, lambda j: "data" not in j),
    ],
)
def test_http_level_faults(http, sim, kind, status, check) -> None:
    sim.faults.queue(kind)
    response = _post(http, sim, _state(_ids(sim)))
    assert response.status_code == status
    if check is not None:
        assert check(response.json())
    assert sim.served.snapshot() == []
    assert sim.faults.injected == {kind: 1}


def test_property_error_serves_all_but_one(http, sim) -> None:
    sim.faults.queue("property_error", metric="pm10")
    answer = _post(http, sim, _state(_ids(sim))).json()
    first = answer["data"]["listEndpoints"]["endpoints"][0]
    pm10 = next(f for f in first["features"] if f["instance"] == "7")["properties"][0]
    assert pm10["error"] == {"type": "NOT_FOUND", "message": "State not available"}
    served = sim.served.snapshot()
    assert len(served) == 13
    assert not any(s.device_id == _ids(sim)[0] and s.metric == "pm10" for s in served)


def test_unreachable_first_monitor_serves_nothing_for_it(http, sim) -> None:
    sim.faults.queue("unreachable")
    answer = _post(http, sim, _state(_ids(sim))).json()
    first, second = answer["data"]["listEndpoints"]["endpoints"]
    assert _values(first)["reachable"] == "UNREACHABLE"
    assert _values(second)["reachable"] == "OK"
    assert {s.device_id for s in sim.served.snapshot()} == {_ids(sim)[1]}


def test_reset_closes_without_answer(http, sim) -> None:
    sim.faults.queue("reset")
    with pytest.raises(httpx.TransportError):
        _post(http, sim, DISCOVERY)
    assert _post(http, sim, DISCOVERY).status_code == 200  # the server carries on


def test_slow_delays_the_answer(http, sim) -> None:
    sim.faults.queue("slow", seconds=0.3)
    with pytest.raises(httpx.ReadTimeout):
        http.post("/nexus/v1/graphql", json=DISCOVERY, headers=_headers(sim), timeout=0.1)
    sim.faults.queue("slow", seconds=0.2)
    assert _post(http, sim, DISCOVERY).status_code == 200


def test_served_endpoint_lists_measurements(http, sim) -> None:
    _post(http, sim, _state(_ids(sim)))
    served = http.get("/_sim/served").json()
    assert len(served) == 14
    assert set(served[0]) == {"source", "device_id", "metric", "ts", "value"}


def test_fault_kinds_are_all_handled(http, sim) -> None:
    for kind in FAULT_KINDS:
        sim.faults.queue(kind, seconds=0.01)
        try:
            response = _post(http, sim, _state(_ids(sim)))
        except httpx.TransportError:
            assert kind == "reset"
            continue
        assert response.status_code in (200, 302, 400, 401, 403, 407, 429, 503), kind
    assert set(sim.faults.injected) == set(FAULT_KINDS)


def test_stop_is_idempotent_and_frees_the_port(clock) -> None:
    sim = AqmApiSimulator(clock=clock).start()
    port = sim.port
    with httpx.Client(base_url=sim.base_url) as client:  # a kept-alive connection stays open
        assert client.post("/nexus/v1/graphql", json=DISCOVERY).status_code == 401
        sim.stop()
        sim.stop()
    with socket.socket() as probe:  # the listener is gone (reuse as HTTPServer does)
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", port))


def test_rejects_inconsistent_arguments() -> None:
    with pytest.raises(ValueError):
        AqmApiSimulator(monitors=1, fahrenheit_monitors=2)
    with pytest.raises(ValueError):
        AqmApiSimulator(update_period=0)
