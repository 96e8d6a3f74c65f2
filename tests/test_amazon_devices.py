"""Which Alexa devices are read, browser-cookie import, and echoed secrets (issue 13: 5, 6, 7;
issue 11 item 8), through the real CLI against the simulator."""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator

import pytest

from homepoll.simulator.aqm_api import AqmApiSimulator


@pytest.fixture
def mixed_sim() -> Iterator[AqmApiSimulator]:
    """Amazon's monitor, another maker's monitor, an Echo with a sensor and one without."""
    now = 1_790_000_000.0
    with AqmApiSimulator(
        monitors=1, third_party_monitors=1, echo_temperature=1, echo_plain=1, clock=lambda: now
    ) as sim:
        yield sim


def _by_kind(sim: AqmApiSimulator) -> dict[str, str]:
    return {d.kind: d.endpoint_id for d in sim.devices}


@pytest.mark.parametrize("opt_in", [False, True])
def test_only_amazons_monitor_and_the_opted_in_echo_are_stored(
    mixed_sim, setup_factory, opt_in: bool
) -> None:
    setup = setup_factory(aqm=mixed_sim)
    if opt_in:
        include = ["air_quality_monitor", "temperature_sensors"]
        setup.write(collectors={"amazon_aqm": {"include": include}})
    result = setup.cli("once", "--collector", "amazon_aqm")
    assert result.returncode == 0, result.stdout + result.stderr
    ids = _by_kind(mixed_sim)
    rows = setup.query("SELECT DISTINCT device_id, metric FROM sensors")
    metrics: dict[str, set[str]] = {}
    for device, metric in rows:
        metrics.setdefault(device, set()).add(metric)
    assert ids["third_party"] not in metrics  # never read with Amazon's instance numbers
    assert ids["echo"] not in metrics  # no temperature sensor: nothing to read
    assert {"humidity", "pm25", "voc", "iaq", "co", "temperature"} <= metrics[ids["aqm"]]
    if opt_in:
        assert metrics[ids["echo_temperature"]] == {"temperature", "reachable"}  # not its volume
    else:
        assert ids["echo_temperature"] not in metrics
    log = setup.log_text()
    assert "ignoring 1 device(s) that are not Amazon's own monitors: Acme air sensor 1" in log
    served = {(s.device_id, s.metric, s.ts) for s in mixed_sim.served.snapshot()}
    stored = {(d, m, ts) for _, d, m, ts in setup.stored()}
    assert served == {k for k in stored if k[1] != "reachable"}  # every served value, once


def _export(jar: dict[str, str], domain: str, suffix: str = "") -> list[dict[str, str]]:
    return [{"name": k, "value": v + suffix, "domain": domain, "path": "/"} for k, v in jar.items()]


def test_cookie_import_keeps_the_marketplace_and_never_spoils_a_working_file(
    setup_factory,
) -> None:
    with AqmApiSimulator(monitors=1) as sim:
        setup = setup_factory()
        setup.write(collectors={"amazon_aqm": {"base_url": sim.base_url, "domain": "amazon.de"}})
        target = setup.data / "amazon_cookies.json"
        jar = sim.valid_cookies
        # a browser export holding both marketplaces: the .com values come last and differ
        both = setup.root / "both.json"
        both.write_text(json.dumps(_export(jar, ".amazon.de") + _export(jar, ".amazon.com", "-x")))
        result = setup.cli("amazon-cookies", str(both))
        assert result.returncode == 0, result.stdout + result.stderr
        assert json.loads(target.read_text()) == jar  # the .de values, none overwritten
        working = target.read_bytes()

        # unusable imports: missing csrf, refused by Amazon, garbage -> the file is untouched
        no_csrf = {k: v for k, v in jar.items() if k != "csrf"}
        stale = {**jar, "session-token": "expired-long-ago"}
        attempts = {
            "no_csrf.json": (json.dumps(no_csrf), 1),
            "stale.json": (json.dumps(stale), 1),
            "garbage.txt": ("certainly not cookies", 78),
        }
        for name, (text, code) in attempts.items():
            path = setup.root / name
            path.write_text(text)
            refused = setup.cli("amazon-cookies", str(path))
            assert refused.returncode == code, (name, refused.stdout, refused.stderr)
            assert target.read_bytes() == working, name
            assert not (setup.data / "amazon_cookies.json.new").exists()
            for value in jar.values():
                assert value not in refused.stdout + refused.stderr

        # a Netscape cookies.txt (alexa-remote-control's format) replaces it; .bak kept
        sim.set_cookies()
        fresh = sim.valid_cookies
        lines = ["# Netscape HTTP Cookie File"] + [
            f".amazon.de\tTRUE\t/\tTRUE\t0\t{k}\t{v}" for k, v in fresh.items()
        ]
        txt = setup.root / "cookies.txt"
        txt.write_text("\n".join(lines) + "\n")
        result = setup.cli("amazon-cookies", str(txt))
        assert result.returncode == 0, result.stdout + result.stderr
        assert json.loads(target.read_text()) == fresh
        backup = setup.data / "amazon_cookies.json.bak"
        assert backup.read_bytes() == working
        assert stat.S_IMODE(backup.stat().st_mode) == 0o600
        assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_an_amazon_error_quoting_the_session_cookie_is_redacted(setup_factory) -> None:
    """Issue 11 item 8: ``forbidden`` quotes the request's session-id back."""
    with AqmApiSimulator(monitors=1) as sim:
        setup = setup_factory(aqm=sim)
        sim.faults.set_sticky("forbidden")
        result = setup.cli("once", "--collector", "amazon_aqm")
        assert result.returncode == 1
        session = sim.valid_cookies["session-id"]
        status = (setup.data / "status.json").read_text()
        errors = [e for (e,) in setup.query("SELECT error FROM polls") if e]
        alert = (setup.data / "ALERT_TOKEN_REFRESH_NEEDED.txt").read_text()
        assert errors and "Access denied for session ***" in errors[0]
        for text in (result.stdout, result.stderr, status, alert, setup.log_text(), *errors):
            assert session not in text
