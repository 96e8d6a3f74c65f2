"""What the Hue collector tells the user: skipped values and why, filters matching nothing,
same-named devices told apart, and a busy bridge's 503 waited out when it fits the poll."""

from __future__ import annotations

import asyncio
import logging

import pytest

from homepoll.collectors.hue import HueCollector
from homepoll.config import BackoffSettings, HueSettings, RetrySettings
from homepoll.poller import CollectorRunner
from homepoll.simulator.hue_bridge import HueBridgeSimulator

LOGGER = "homepoll.collectors.hue"


def _collector(sim: HueBridgeSimulator, **settings: object) -> HueCollector:
    values: dict[str, object] = {"bridge": sim.address, "username": sim.key, **settings}
    return HueCollector(HueSettings(**values))  # type: ignore[arg-type]


def _polls(collector: HueCollector, n: int) -> list:
    async def run() -> list:
        try:
            return [await collector.collect(2.0) for _ in range(n)]
        finally:
            await collector.aclose()

    return asyncio.run(run())


def _messages(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == level]


def test_a_filter_entry_matching_nothing_or_only_a_daylight_is_warned_about_once(
    hue_sim: HueBridgeSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    sensors = ("Nonexistent", "Daylight", "Hue dimmer switch 1")
    results = _polls(_collector(hue_sim, sensors=sensors), 3)
    warnings = _messages(caplog, logging.WARNING)
    assert len(warnings) == 2, warnings
    assert "'Nonexistent' matches no sensor" in warnings[0]
    assert "'Daylight' is a Daylight" in warnings[1]
    # the dimmer switch entry selects its battery (and reachability)
    assert {r.metric for r in results[-1].readings} == {"battery", "reachable"}


def test_the_skip_set_is_logged_when_it_changes_not_every_poll(
    hue_sim: HueBridgeSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    hue_sim.set_reachable(2, False)
    collector = _collector(hue_sim)

    async def run() -> None:
        for _ in range(3):
            await collector.collect(2.0)
        hue_sim.set_reachable(2, True)
        for _ in range(2):
            await collector.collect(2.0)
        await collector.aclose()

    asyncio.run(run())
    infos = [m for m in _messages(caplog, logging.INFO) if m.startswith("hue:")]
    assert len(infos) == 2, infos
    assert "Kitchen sensor: temperature skipped (unreachable)" in infos[0]
    assert infos[1] == "hue: no value skipped any more"


def test_devices_with_the_same_name_are_told_apart(hue_sim: HueBridgeSimulator) -> None:
    for device in (1, 2):
        hue_sim.set_name(device, "Hue motion sensor")  # diyHue's generic name
    (result,) = _polls(_collector(hue_sim), 1)
    names = {r.device_id: r.name for r in result.readings}
    assert names["00:17:88:01:00:00:00:01"] == "Hue motion sensor (00:00:01)"
    assert names["00:17:88:01:00:00:00:02"] == "Hue motion sensor (00:00:02)"
    assert names["00:17:88:01:00:00:00:03"] == "Living room sensor"


@pytest.mark.parametrize(
    ("delay", "outcome", "attempts"), [(0.2, "ok", 2), (5.0, "rate_limited", 1)]
)
def test_a_bridge_503_waits_rate_limit_delay_when_it_fits(
    hue_sim: HueBridgeSimulator, delay: float, outcome: str, attempts: int
) -> None:
    hue_sim.faults.queue("http_503")
    runner = CollectorRunner(
        _collector(hue_sim),
        interval=2.0,
        retry=RetrySettings(rate_limit_delay=delay, attempt_timeout=1.0, poll_budget=0.9),
        backoff=BackoffSettings(),
        writer=None,
        alert=None,
        status=None,
    )

    async def run():
        try:
            return await runner.poll(store=False)
        finally:
            await runner.collector.aclose()

    report = asyncio.run(run())
    assert (report.outcome, report.attempts) == (outcome, attempts)
    if outcome != "ok":  # did not fit: the next poll is pushed back by the delay
        assert report.retry_after == delay and "503" in (report.error or "")


def test_once_prints_each_skipped_value_and_why(hue_sim: HueBridgeSimulator, setup_factory) -> None:
    hue_sim.set_reachable(1, False)
    hue_sim.set_null_value(3, "temperature")
    setup = setup_factory(hue=hue_sim)
    result = setup.cli("once", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "4 skipped" in result.stdout
    notes = [line.strip() for line in result.stdout.splitlines() if "note:" in line]
    assert notes == [
        "note: Hall sensor: presence skipped (unreachable)",
        "note: Hall sensor: light_level skipped (unreachable)",
        "note: Hall sensor: temperature skipped (unreachable)",
        "note: Living room sensor: temperature skipped (no current value)",
    ]
