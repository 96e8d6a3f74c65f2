"""AmazonAqmCollector against the loopback GraphQL simulator: mapping, taxonomy, cookies."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import httpx
import pytest

from homepoll.collectors.amazon_aqm import AmazonAqmCollector, Monitor, answers, parse
from homepoll.config import AmazonAqmSettings
from homepoll.cookies import save_cookie_file
from homepoll.errors import (
    AuthError,
    CollectorError,
    PermanentError,
    RateLimitedError,
    TransientError,
)
from homepoll.model import CollectResult
from homepoll.simulator.aqm_api import AqmApiSimulator

T = TypeVar("T")
UNITS = {
    "temperature": "degC",
    "humidity": "%",
    "voc": "index",
    "pm25": "ug/m3",
    "pm10": "ug/m3",
    "co": "ppm",
    "iaq": "index",
    "reachable": "bool",
}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_780_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def sim() -> Iterator[AqmApiSimulator]:
    with AqmApiSimulator(monitors=2, fahrenheit_monitors=1) as s:
        yield s


@pytest.fixture
def cookie_file(tmp_path: Path, sim: AqmApiSimulator) -> Path:
    path = tmp_path / "amazon_cookies.json"
    save_cookie_file(path, sim.valid_cookies)
    return path


def _settings(sim: AqmApiSimulator, cookie_file: Path) -> AmazonAqmSettings:
    return AmazonAqmSettings(
        enabled=True, domain="amazon.co.uk", base_url=sim.base_url, cookies_file=cookie_file
    )


def run_with(
    sim: AqmApiSimulator,
    cookie_file: Path,
    body: Callable[[AmazonAqmCollector], Awaitable[T]],
    **kw: object,
) -> T:
    """Run ``body`` with a fresh collector inside one event loop, closing it afterwards."""

    async def main() -> T:
        collector = AmazonAqmCollector(_settings(sim, cookie_file), **kw)  # type: ignore[arg-type]
        try:
            return await body(collector)
        finally:
            await collector.aclose()

    return asyncio.run(main())


def collect_once(sim, cookie_file, timeout: float = 5.0) -> CollectResult:
    return run_with(sim, cookie_file, lambda c: c.collect(timeout))


def fail_after_warmup(sim, cookie_file, kind: str, timeout: float = 5.0) -> CollectorError:
    """Discover first (so the fault hits the state request), then collect with ``kind``."""

    async def body(c: AmazonAqmCollector) -> CollectorError:
        await c.collect(5.0)
        sim.faults.apply_script(kind, "aqm")
        with pytest.raises(CollectorError) as excinfo:
            await c.collect(timeout)
        return excinfo.value

    return run_with(sim, cookie_file, body)


def test_all_seven_metrics_per_monitor_with_units(sim, cookie_file) -> None:
    result = collect_once(sim, cookie_file)
    assert result.skipped == 0 and result.notes == []
    celsius_id, fahrenheit_id = (m.endpoint_id for m in sim.monitors)
    for device in (celsius_id, fahrenheit_id):
        mine = {r.metric: r for r in result.readings if r.device_id == device}
        assert set(mine) == set(UNITS)
        assert {m: r.unit for m, r in mine.items()} == UNITS
        assert all(r.source == "amazon_aqm" for r in mine.values())
        assert mine["reachable"].value == 1.0 and mine["reachable"].on_change
        assert not mine["humidity"].on_change
        assert 19 < mine["temperature"].value < 23  # stored in degC, also for the F monitor
    names = {r.device_id: r.name for r in result.readings}
    assert names[fahrenheit_id] == "Air monitor 2 (F)"
    # exactly what the simulator served, same ts (timeOfSample) and physical values
    stored = {
        (r.device_id, r.metric, r.ts, r.value) for r in result.readings if r.metric != "reachable"
    }
    served = {(s.device_id, s.metric, s.ts, s.value) for s in sim.served.snapshot()}
    assert stored == served and len(served) == 14


def test_reachable_uses_poll_time(sim, cookie_file) -> None:
    clock = FakeClock()
    result = run_with(sim, cookie_file, lambda c: c.collect(5.0), clock=clock)
    reachable = [r for r in result.readings if r.metric == "reachable"]
    assert {r.ts for r in reachable} == {int(clock.now * 1000)}


def test_property_error_skips_exactly_one_value(sim, cookie_file) -> None:
    async def body(c: AmazonAqmCollector) -> CollectResult:
        await c.collect(5.0)
        sim.faults.queue("property_error", metric="co")
        return await c.collect(5.0)

    result = run_with(sim, cookie_file, body)
    first = sim.monitors[0].endpoint_id
    assert result.skipped == 1
    assert len(result.readings) == 15
    assert "co" not in {r.metric for r in result.readings if r.device_id == first}


def test_unreachable_monitor_stores_reachable_zero_only(sim, cookie_file) -> None:
    async def body(c: AmazonAqmCollector) -> CollectResult:
        await c.collect(5.0)
        sim.faults.queue("unreachable")
        return await c.collect(5.0)

    result = run_with(sim, cookie_file, body)
    first, second = (m.endpoint_id for m in sim.monitors)
    mine = [r for r in result.readings if r.device_id == first]
    assert [(r.metric, r.value) for r in mine] == [("reachable", 0.0)]
    assert result.skipped == 7
    assert len([r for r in result.readings if r.device_id == second]) == 8


@pytest.mark.parametrize(
    "kind",
    ["http_401", "http_403", "http_407", "signin_redirect", "unauthenticated", "forbidden"],
)
def test_auth_signals(sim, cookie_file, kind) -> None:
    error = fail_after_warmup(sim, cookie_file, kind)
    assert type(error) is AuthError
    assert "cookies" in str(error)


def test_signin_redirect_names_target_without_query(sim, cookie_file) -> None:
    error = fail_after_warmup(sim, cookie_file, "signin_redirect")
    assert "https://www.amazon.com/ap/signin" in str(error)
    assert "?" not in str(error) and "sim-secret-query" not in str(error)
    assert "expired" in str(error)


def test_first_poll_auth_failure_happens_at_discovery(sim, cookie_file) -> None:
    sim.set_cookies()  # the saved jar is now stale
    with pytest.raises(AuthError):
        collect_once(sim, cookie_file)


@pytest.mark.parametrize("kind", ["too_many_requests", "http_429", "rate_exceeded"])
def test_throttling(sim, cookie_file, kind) -> None:
    error = fail_after_warmup(sim, cookie_file, kind)
    assert type(error) is RateLimitedError
    assert error.retry_after is None


@pytest.mark.parametrize("kind", ["http_503", "reset"])
def test_transient(sim, cookie_file, kind) -> None:
    assert type(fail_after_warmup(sim, cookie_file, kind)) is TransientError


def test_slow_answer_hits_the_timeout(sim, cookie_file) -> None:
    started = time.monotonic()
    error = fail_after_warmup(sim, cookie_file, "slow(seconds=3)", timeout=0.3)
    assert type(error) is TransientError
    assert "did not answer" in str(error)
    assert time.monotonic() - started < 2.0


def test_connection_refused_is_transient(tmp_path) -> None:
    with AqmApiSimulator() as dead:
        save_cookie_file(tmp_path / "c.json", dead.valid_cookies)
    with pytest.raises(TransientError):
        collect_once(dead, tmp_path / "c.json")


def test_unknown_shape_is_permanent(sim, cookie_file) -> None:
    error = fail_after_warmup(sim, cookie_file, "unknown_shape")
    assert type(error) is PermanentError
    assert "shape" in str(error) and len(str(error)) <= 200


def test_new_cookie_file_is_used_without_a_new_collector(sim, cookie_file) -> None:
    async def body(c: AmazonAqmCollector) -> list[object]:
        outcomes: list[object] = [len((await c.collect(5.0)).readings)]
        new_jar = sim.set_cookies()  # Amazon expires the session
        with pytest.raises(AuthError):
            await c.collect(5.0)
        save_cookie_file(cookie_file, new_jar)  # `homepoll amazon-cookies` drops a fresh jar
        outcomes.append(len((await c.collect(5.0)).readings))
        return outcomes

    assert run_with(sim, cookie_file, body) == [16, 16]


def test_discovery_is_cached(sim, cookie_file) -> None:
    clock = FakeClock()

    async def body(c: AmazonAqmCollector) -> list[int]:
        counts = []
        for advance in (0, 60, 86_400):
            clock.now += advance
            before = sim.served.requests
            await c.collect(5.0)
            counts.append(sim.served.requests - before)
        return counts

    # first poll: discovery + state; then one request; a day later discovery again
    assert run_with(sim, cookie_file, body, clock=clock) == [2, 1, 2]


def test_discover_returns_monitors(sim, cookie_file) -> None:
    monitors = run_with(sim, cookie_file, lambda c: c.discover())
    assert [m.endpoint_id for m in monitors] == [m.endpoint_id for m in sim.monitors]
    assert isinstance(monitors[0], Monitor)
    assert monitors[0].name == "Air monitor 1" and monitors[0].serial


def test_empty_endpoint_list_warns_once(sim, cookie_file, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="homepoll")
    sim.faults.queue("empty_endpoints")

    async def body(c: AmazonAqmCollector) -> list[CollectResult]:
        return [await c.collect(5.0), await c.collect(5.0)]

    results = run_with(sim, cookie_file, body)
    assert all(r.readings == [] and r.skipped == 0 for r in results)
    assert "amazon.co.uk" in results[0].notes[0]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "amazon.co.uk" in warnings[0].getMessage() and "csrf" in warnings[0].getMessage()
    assert sim.served.requests == 1  # the empty answer is cached too (re-checked hourly)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "cannot read"),
        ("{broken", "invalid"),
        ('{"session-id": "sim-x"}', "csrf"),
    ],
)
def test_bad_cookie_file_is_an_auth_error(sim, tmp_path, content, expected) -> None:
    path = tmp_path / "amazon_cookies.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(AuthError) as excinfo:
        collect_once(sim, path)
    assert expected in str(excinfo.value)
    assert str(path) in str(excinfo.value)
    assert sim.served.requests == 0


def test_browser_export_file_is_accepted(sim, tmp_path) -> None:
    import json

    export = [
        {"name": k, "value": v, "domain": ".amazon.com"} for k, v in sim.valid_cookies.items()
    ]
    path = tmp_path / "export.json"
    path.write_text(json.dumps(export))
    assert len(collect_once(sim, path).readings) == 16


def test_no_cookie_value_in_messages_or_logs(sim, cookie_file, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    secrets = list(sim.valid_cookies.values())
    messages: list[str] = []

    async def body(c: AmazonAqmCollector) -> None:
        await c.collect(5.0)
        kinds = ["http_401", "signin_redirect", "unauthenticated", "forbidden"]
        kinds += ["too_many_requests", "rate_exceeded", "http_503", "reset"]
        kinds += ["unknown_shape", "property_error", "unreachable"]
        for kind in kinds:
            sim.faults.apply_script(kind, "aqm")
            try:
                await c.collect(5.0)
            except CollectorError as exc:
                messages.append(str(exc))
        sim.set_cookies()
        try:
            await c.collect(5.0)
        except CollectorError as exc:
            messages.append(str(exc))

    run_with(sim, cookie_file, body)
    assert len(messages) == 10
    text = "\n".join(messages) + caplog.text
    for value in secrets:
        assert value not in text
    assert "sim-" not in text.replace("sim-secret-query", "")


def test_alert_metadata(sim, cookie_file) -> None:
    collector = AmazonAqmCollector(_settings(sim, cookie_file))
    assert collector.name == "amazon_aqm"
    assert collector.alert_file == "ALERT_TOKEN_REFRESH_NEEDED.txt"
    assert "run `homepoll amazon-login`" in collector.alert_remedy.lower()
    assert "homepoll amazon-cookies" in collector.alert_remedy  # the fallback stays
    asyncio.run(collector.aclose())  # never opened: a no-op


def test_oversized_answer_is_permanent(sim, cookie_file, monkeypatch) -> None:
    monkeypatch.setattr(answers, "MAX_RESPONSE_BYTES", 2_000)  # the state answer is ~5 kB
    with pytest.raises(PermanentError, match="larger than"):
        collect_once(sim, cookie_file)


JAR = {"csrf": "csrf-secret-1234", "session-id": "sid-secret-5678"}


@pytest.mark.parametrize(
    ("status", "body", "headers", "expected"),
    [
        (200, "<html><title>Amazon Sign-In</title></html>", {}, AuthError),
        (200, "<html>Bad gateway from your proxy</html>", {}, TransientError),
        (200, '{"__type": "ThrottlingException"} not json', {}, RateLimitedError),
        (400, "ThrottlingException: slow down", {}, RateLimitedError),
        (301, "", {"location": "https://alexa.amazon.com/other?sid=sid-secret-5678"}, AuthError),
        (404, "no such thing", {}, PermanentError),
        (502, "bad gateway", {}, TransientError),
        (
            200,
            '{"data": null, "errors": [{"message": "Boom csrf-secret-1234"}]}',
            {},
            PermanentError,
        ),
        (
            200,
            '{"data": null, "errors": [{"message": "x", '
            '"extensions": {"errorCode": "UNAUTHENTICATED"}}]}',
            {},
            AuthError,
        ),
        (
            200,
            '[{"data": null, "errors": [{"message": "Too many requests"}]}]',
            {},
            RateLimitedError,
        ),
    ],
)
def test_failure_table(status, body, headers, expected) -> None:
    response = httpx.Response(status, text=body, headers=headers)
    with pytest.raises(CollectorError) as excinfo:
        answers.classify(response, body.encode(), JAR.values())
    assert type(excinfo.value) is expected
    message = str(excinfo.value)
    assert "secret" not in message and len(message) <= 250
    if expected is RateLimitedError:
        assert excinfo.value.retry_after is None


def test_graphql_errors_next_to_data_are_tolerated() -> None:
    body = '{"data": {"listEndpoints": {"endpoints": []}}, "errors": [{"message": "partial"}]}'
    answer = answers.classify(httpx.Response(200, text=body), body.encode(), JAR.values())
    assert parse.endpoints_of(answer) == []


def test_mapping_prefers_asset_ids_and_tolerates_gaps() -> None:
    def rng(instance, asset, value, **extra):
        feature = {
            "name": "range",
            "instance": instance,
            "properties": [{"name": "rangeValue", "rangeValue": {"value": value}, **extra}],
        }
        if asset:
            feature["resources"] = {"friendlyNames": [{"value": {"assetId": asset}}]}
        return feature

    endpoint = {
        "endpointId": "ep-1",
        "friendlyNameObject": {"value": {"text": "Office"}},
        "features": [
            rng("42", "Alexa.AirQuality.Humidity", 51),
            rng("7", "Alexa.AirQuality.ParticulateMatter", 9, timeOfSample="2026-01-05T10:00:00Z"),
            rng("6", None, 4, timeOfSample="garbage"),
            rng("9", None, None),  # no value and no error: skipped, counted
            {"name": "powerController", "instance": None, "properties": []},  # ignored
            {
                "name": "temperatureSensor",
                "properties": [
                    {"name": "temperature", "value": {"value": 68, "scale": "FAHRENHEIT"}}
                ],
            },
        ],
    }
    result = parse.map_state([endpoint], {}, poll_ms=123)
    got = {r.metric: (r.value, r.ts) for r in result.readings}
    assert got == {
        "humidity": (51.0, 123),
        "pm10": (9.0, 1767607200000),
        "pm25": (4.0, 123),
        "temperature": (20.0, 123),
    }
    assert result.skipped == 1
    assert {r.name for r in result.readings} == {"Office"}
