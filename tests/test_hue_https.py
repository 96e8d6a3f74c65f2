"""HTTPS to the bridge, verified: the Hue root CA (a test CA of the same shape here), the
certificate's CN against the bridge id, a self-signed bridge pinned on first use, and never
plain HTTP again once HTTPS worked. Real TLS over loopback against the simulator."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from homepoll.collectors.hue import HueCollector
from homepoll.collectors.hue.pairing import pair_with
from homepoll.collectors.hue.tls import STATE_FILE
from homepoll.config import HueSettings
from homepoll.errors import CollectorError, PermanentError, TransientError
from homepoll.model import CollectResult
from homepoll.simulator.hue_bridge import DEFAULT_KEY, HUE_BRIDGE_ID, HueBridgeSimulator
from homepoll.simulator.hue_certs import TestCa

T0 = 1_790_000_000.0


@pytest.fixture(scope="module")
def ca() -> TestCa:
    return TestCa()


@pytest.fixture
def ca_file(ca: TestCa, tmp_path: Path) -> Path:
    path = tmp_path / "hue-test-root.pem"
    path.write_text(ca.pem)
    return path


@pytest.fixture
def https_sim(ca: TestCa) -> Iterator[HueBridgeSimulator]:
    with HueBridgeSimulator(clock=lambda: T0, tls="ca", ca=ca) as sim:
        yield sim


def collector(sim: HueBridgeSimulator, data: Path, **settings: object) -> HueCollector:
    values: dict[str, object] = {"bridge": sim.address, "username": DEFAULT_KEY, **settings}
    return HueCollector(HueSettings(**values), state_dir=data)  # type: ignore[arg-type]


def polls(c: HueCollector, n: int = 1, timeout: float = 3.0) -> list[CollectResult | Exception]:
    async def run() -> list[CollectResult | Exception]:
        out: list[CollectResult | Exception] = []
        try:
            for _ in range(n):
                try:
                    out.append(await c.collect(timeout))
                except CollectorError as exc:
                    out.append(exc)
        finally:
            await c.aclose()
        return out

    return asyncio.run(run())


def memory(data: Path) -> dict:
    return json.loads((data / STATE_FILE).read_text())["bridges"]


def test_v1_over_https_verified_by_chain_and_bridge_id(
    https_sim: HueBridgeSimulator, ca_file: Path, tmp_path: Path
) -> None:
    results = polls(collector(https_sim, tmp_path, ca_file=ca_file, api="v1"), n=3)
    assert all(isinstance(r, CollectResult) for r in results), results
    timed = {(r.device_id, r.metric, r.ts, r.value) for r in results[0].readings if not r.on_change}
    served = {(s.device_id, s.metric, s.ts, s.value) for s in https_sim.served.snapshot()}
    assert timed == served and len(timed) == 9
    # one handshake to learn the id, then one connection kept across all three polls: the TLS
    # handshake is paid per connection, not per poll (the simulator keeps connections open)
    assert https_sim.handshakes == 1 + 1
    remembered = memory(tmp_path)[https_sim.address]
    assert remembered["bridge_id"] == HUE_BRIDGE_ID.lower() and remembered["https"] is True
    assert remembered["pinned_cert"] is None


@pytest.mark.parametrize("trust", ["another_ca", "shipped_roots"])
def test_a_certificate_from_another_ca_is_refused_before_any_keyed_request(
    https_sim: HueBridgeSimulator, tmp_path: Path, trust: str
) -> None:
    settings: dict[str, object] = {}
    if trust == "another_ca":
        other = tmp_path / "other.pem"
        other.write_text(TestCa().pem)
        settings["ca_file"] = other
    (result,) = polls(collector(https_sim, tmp_path, **settings))
    assert isinstance(result, PermanentError), result
    assert "not issued by the Hue root CA" in str(result)
    assert "no request carrying the key was sent" in str(result)
    assert https_sim.served.requests == 0  # the sensors path was never reached
    assert DEFAULT_KEY not in str(result)


def test_a_certificate_for_another_bridge_id_is_refused(ca: TestCa, ca_file, tmp_path) -> None:
    # /api/config says 001788fffe000001, the certificate is for another bridge
    with HueBridgeSimulator(tls="ca", ca=ca, cert_bridge_id="001788FFFE999999") as sim:
        (result,) = polls(collector(sim, tmp_path, ca_file=ca_file))
        assert isinstance(result, PermanentError), result
        assert "another bridge than the one paired (id 001788fffe000001)" in str(result)
        assert sim.served.requests == 0


def test_a_bridge_id_remembered_at_pairing_is_checked(ca: TestCa, ca_file, tmp_path) -> None:
    (tmp_path / STATE_FILE).write_text(
        json.dumps({"bridges": {"PLACEHOLDER": {"bridge_id": "001788fffe0000aa"}}})
    )
    with HueBridgeSimulator(tls="ca", ca=ca) as sim:
        text = (tmp_path / STATE_FILE).read_text().replace("PLACEHOLDER", sim.address)
        (tmp_path / STATE_FILE).write_text(text)
        (result,) = polls(collector(sim, tmp_path, ca_file=ca_file))
        assert isinstance(result, PermanentError) and "0000aa" in str(result), result
        assert sim.served.requests == 0


def test_a_self_signed_bridge_is_pinned_on_first_use_and_only_it_accepted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="homepoll.collectors.hue")
    with HueBridgeSimulator(tls="self_signed") as sim:
        port = sim.port
        first = sim.cert_pem
        results = polls(collector(sim, tmp_path), n=2)
        assert all(isinstance(r, CollectResult) for r in results), results
    pins = [r for r in caplog.records if "pinned it on first use" in r.getMessage()]
    assert len(pins) == 1
    assert memory(tmp_path)[f"127.0.0.1:{port}"]["pinned_cert"] == first
    # the "same" bridge now presents another self-signed certificate: refused
    with HueBridgeSimulator(port, tls="self_signed") as impostor:
        (result,) = polls(collector(impostor, tmp_path))
        assert isinstance(result, PermanentError), result
        assert "refusing bridge" in str(result) and impostor.served.requests == 0


def test_after_https_worked_a_plain_http_bridge_never_gets_the_key(
    ca: TestCa, ca_file: Path, tmp_path: Path
) -> None:
    with HueBridgeSimulator(tls="ca", ca=ca) as sim:
        port = sim.port
        assert isinstance(polls(collector(sim, tmp_path, ca_file=ca_file))[0], CollectResult)
    with HueBridgeSimulator(port) as plain:  # same address, HTTP only now
        results = polls(collector(plain, tmp_path, ca_file=ca_file), n=2)
        for result in results:
            assert isinstance(result, TransientError), result
            assert "will not send the key over plain HTTP" in str(result)
        assert plain.served.requests == 0


def test_auto_uses_plain_http_only_for_a_bridge_without_https(
    hue_sim: HueBridgeSimulator, tmp_path: Path
) -> None:
    results = polls(collector(hue_sim, tmp_path), n=2)
    assert all(isinstance(r, CollectResult) for r in results), results
    assert hue_sim.served.requests == 2
    assert not (tmp_path / STATE_FILE).exists()  # nothing learned: no HTTPS there


def test_transport_https_refuses_a_bridge_without_https(hue_sim, tmp_path: Path) -> None:
    (result,) = polls(collector(hue_sim, tmp_path, transport="https"))
    assert isinstance(result, TransientError) and "transport is https" in str(result)
    assert hue_sim.served.requests == 0


def test_transport_http_says_what_to_do_about_a_redirect_to_https(hue_sim, tmp_path) -> None:
    hue_sim.faults.queue("redirect_https")
    (result,) = polls(collector(hue_sim, tmp_path, transport="http"))
    assert isinstance(result, PermanentError)
    assert "set collectors.hue.transport to auto or https" in str(result)


def test_pairing_posts_over_https_and_remembers_the_bridge(
    https_sim: HueBridgeSimulator, ca_file: Path, tmp_path: Path
) -> None:
    c = collector(https_sim, tmp_path, ca_file=ca_file)

    async def run() -> str:
        try:
            http = await c.link.connection(2.0)
            assert http.scheme == "https"
            https_sim.press_link_button()
            key = await pair_with(http, "pi", attempts_for=2, interval=0.05)
            await c.link.https_worked()
            return key
        finally:
            await c.aclose()

    key = asyncio.run(run())
    assert key == https_sim.key and key != DEFAULT_KEY
    assert memory(tmp_path)[https_sim.address]["https"] is True
