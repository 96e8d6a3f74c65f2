"""Every simulator mode through the real daemon, and one history whichever API is used.

Modes: a Hue bridge over HTTPS with the v1 API, the same with CLIP v2, and a deCONZ gateway
(plain HTTP, ZHA types). The classic v1/HTTP bridge is test_daemon's own nothing-lost test.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from homepoll.collectors.hue import HueCollector
from homepoll.config import HueSettings
from homepoll.simulator.hue_bridge import DEFAULT_KEY, HueBridgeSimulator
from homepoll.simulator.hue_certs import TestCa
from tests.conftest import assert_every_served_stored_once, wait_for

MODES = {
    "v1-https": {"tls": "ca", "settings": {"api": "v1"}},
    "v2-https": {"tls": "ca", "settings": {}},  # api auto picks CLIP v2
    "deconz": {"flavor": "deconz", "settings": {}},
}


@pytest.fixture(scope="module")
def ca() -> TestCa:
    return TestCa()


@pytest.mark.parametrize("mode", sorted(MODES))
def test_nothing_lost_in_every_mode(mode: str, ca: TestCa, setup_factory, daemons) -> None:
    spec = MODES[mode]
    with HueBridgeSimulator(
        update_period=1.0, flavor=spec.get("flavor", "hue"), tls=spec.get("tls"), ca=ca
    ) as sim:
        setup = setup_factory(hue=sim)
        hue: dict[str, object] = dict(spec["settings"])
        if sim.tls:
            (setup.root / "hue-ca.pem").write_text(ca.pem)
            hue["ca_file"] = str(setup.root / "hue-ca.pem")
        setup.write(collectors={"hue": hue})
        sim.faults.apply_script("http_503 ok reset ok slow(seconds=2) ok garbage ok", "hue")
        daemon = daemons(setup)
        wait_for(lambda: sim.faults.pending() == 0, timeout=20)
        before = len(sim.served.snapshot())
        wait_for(lambda: len(sim.served.snapshot()) > before, timeout=10)
        assert daemon.stop() == 0
        counts = assert_every_served_stored_once(setup, sim)
        assert counts["stored"] > 0
    metrics = {m for (m,) in setup.query("SELECT DISTINCT metric FROM sensors")}
    expected = {"temperature", "light_level", "presence", "battery", "reachable"}
    if mode == "deconz":
        expected |= {"humidity", "pressure"}
    assert metrics == expected
    log = setup.log_text()
    assert "Traceback" not in log and DEFAULT_KEY not in log
    if sim.tls:
        assert "HTTPS works with bridge" in log
    if mode == "v2-https":
        assert "speaks CLIP v2" in log


@pytest.fixture
def both_apis(tmp_path: Path) -> Iterator[tuple[HueBridgeSimulator, Path]]:
    ca = TestCa()
    ca_file = tmp_path / "ca.pem"
    ca_file.write_text(ca.pem)
    with HueBridgeSimulator(clock=lambda: 1_790_000_123.0, tls="ca", ca=ca, devices=4) as sim:
        yield sim, ca_file


def _collect(sim: HueBridgeSimulator, ca_file: Path, api: str, folder: Path):
    settings = HueSettings(bridge=sim.address, username=DEFAULT_KEY, api=api, ca_file=ca_file)
    collector = HueCollector(settings, clock=lambda: 1_790_000_200.0, state_dir=folder)

    async def run():
        try:
            return await collector.collect(3.0)
        finally:
            await collector.aclose()

    return asyncio.run(run())


def test_v1_and_v2_give_the_same_series(both_apis, tmp_path: Path) -> None:
    sim, ca_file = both_apis
    sim.set_reachable(2, False)
    sim.set_never_updated(3)
    sim.set_null_value(4, "temperature")
    sim.set_name(1, "Hall motion")
    results = {}
    for api in ("v1", "v2"):
        folder = tmp_path / api
        folder.mkdir()
        results[api] = _collect(sim, ca_file, api, folder)
    v1, v2 = results["v1"], results["v2"]

    def series(result):
        return [(r.device_id, r.name, r.metric, r.unit, r.ts, r.value) for r in result.readings]

    assert series(v1) == series(v2)
    assert len({r[0] for r in series(v1)}) == 5  # four motion sensors and the dimmer
    assert (v1.skipped, v1.notes) == (v2.skipped, v2.notes)
    assert v1.skipped == 3 + 3 + 1
