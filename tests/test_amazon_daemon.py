"""The Amazon air-quality collector through the real CLI and daemon, against the Alexa simulator."""

from __future__ import annotations

import itertools
import json
import re
import stat

import pytest

from homepoll.simulator.aqm_api import AqmApiSimulator
from tests.conftest import assert_every_served_stored_once, shipped_defaults, wait_for

ALERT = "ALERT_TOKEN_REFRESH_NEEDED.txt"
METRICS = {
    "temperature": "degC",
    "humidity": "%",
    "voc": "index",
    "pm25": "ug/m3",
    "pm10": "ug/m3",
    "co": "ppm",
    "iaq": "index",
}


@pytest.fixture
def frozen_aqm():
    now = 1_790_000_000.0
    with AqmApiSimulator(monitors=2, fahrenheit_monitors=1, clock=lambda: now) as sim:
        yield sim


def test_once_stores_all_seven_metrics_per_monitor_in_homepoll_units(
    frozen_aqm, setup_factory
) -> None:
    setup = setup_factory(aqm=frozen_aqm)
    result = setup.cli("once", "--collector", "amazon_aqm")
    assert result.returncode == 0, result.stderr
    rows = setup.query("SELECT device_id, metric, unit FROM sensors WHERE source = 'amazon_aqm'")
    devices = {d for d, _, _ in rows}
    assert len(devices) == 2
    for device in devices:
        units = {m: u for d, m, u in rows if d == device and m != "reachable"}
        assert units == METRICS
    assert_every_served_stored_once(setup, frozen_aqm)
    # The Fahrenheit monitor is stored in Celsius (the simulator records the physical degC value).
    temps = [
        v for (v,) in setup.query("SELECT value FROM readings_view WHERE metric='temperature'")
    ]
    assert all(10 < t < 35 for t in temps), temps
    assert setup.cli("once", "--collector", "amazon_aqm").stdout.count("(0 new)") == 1


def test_property_error_skips_one_value_and_stores_the_rest(frozen_aqm, setup_factory) -> None:
    setup = setup_factory(aqm=frozen_aqm)
    frozen_aqm.faults.apply_script("ok property_error", "aqm")  # discovery, then the state request
    result = setup.cli("once", "--collector", "amazon_aqm")
    assert result.returncode == 0, result.stderr
    assert "1 skipped" in result.stdout
    assert len(setup.query("SELECT 1 FROM readings_view WHERE metric != 'reachable'")) == 13
    assert_every_served_stored_once(setup, frozen_aqm)


@pytest.mark.parametrize(
    "signal_kind",
    ["http_401", "http_403", "http_407", "signin_redirect", "unauthenticated", "forbidden"],
)
def test_each_auth_signal_raises_the_alert_after_one_attempt(
    frozen_aqm, setup_factory, signal_kind
) -> None:
    setup = setup_factory(aqm=frozen_aqm)
    assert (
        setup.cli("once", "--collector", "amazon_aqm").returncode == 0
    )  # discovery cached? no: new process
    frozen_aqm.faults.set_sticky(signal_kind)
    requests_before = len(frozen_aqm.faults.arrivals)  # a new process: discovery fails first
    result = setup.cli("once", "--collector", "amazon_aqm")
    assert result.returncode == 1
    assert "FAILED (auth)" in result.stdout
    alert = setup.data / ALERT
    assert alert.exists()
    assert "amazon-cookies" in alert.read_text()
    assert setup.query("SELECT attempts FROM polls WHERE outcome = 'auth'") == [(1,)]
    assert len(frozen_aqm.faults.arrivals) - requests_before == 1  # one request, no retry
    frozen_aqm.faults.set_sticky(None)
    assert setup.cli("once", "--collector", "amazon_aqm").returncode == 0
    assert not alert.exists()


def test_fresh_cookies_file_clears_the_alert_without_restart_or_signal(
    aqm_sim, setup_factory, daemons
) -> None:
    setup = shipped_defaults(setup_factory(aqm=aqm_sim))  # commit_interval 300
    daemon = daemons(setup)
    wait_for(lambda: setup.row_count() > 0)  # the first poll is committed at once
    aqm_sim.set_cookies()  # the session expires: homepoll's jar is now rejected
    alert = setup.data / ALERT
    wait_for(alert.exists, timeout=10)
    text = alert.read_text()
    assert "Failed polls:" in text
    assert "401" in text
    status = setup.cli("status")
    assert status.returncode == 1
    assert "auth_failed" in status.stdout

    setup.write_cookies(aqm_sim.valid_cookies)  # the user drops in fresh cookies
    wait_for(lambda: not alert.exists(), timeout=10)
    assert daemon.alive()
    assert daemon.stop() == 0
    log = setup.log_text()
    assert log.count("CRITICAL") == 1
    for value in aqm_sim.valid_cookies.values():
        assert value not in log
    assert_every_served_stored_once(setup, aqm_sim)


def test_throttling_is_never_retried_and_pushes_polls_back_doubling(
    aqm_sim, setup_factory, daemons
) -> None:
    """Issue 13 acceptance 4: one request per throttled poll, growing gaps, then normal cadence.

    interval 1 s, rate_limit_delay 0.5 s, max_interval 4 s: the gaps after throttled polls are
    1.5, 2, 3, 4 s. The simulator's penalty (2.5 s) restarts with every request inside it, so
    it lifts only once a gap outgrows it: a client retrying inside the poll never gets out.
    """
    setup = setup_factory(aqm=aqm_sim)
    setup.write(retry={"rate_limit_delay": 0.5}, backoff={"failure_threshold": 100})
    daemon = daemons(setup)
    wait_for(lambda: setup.row_count() > 0)
    start = len(aqm_sim.graphql_requests)
    aqm_sim.throttle(2.5)
    wait_for(
        lambda: [o for _, o in aqm_sim.graphql_requests[start:]][-3:] == ["ok"] * 3,
        timeout=20,
    )
    assert daemon.stop() == 0
    log = aqm_sim.graphql_requests[start:]
    outcomes = [o for _, o in log]
    throttled = outcomes.count("throttled")
    assert throttled >= 3, outcomes
    assert outcomes[:throttled] == ["throttled"] * throttled, outcomes  # then never again
    gaps = [b - a for (a, _), (b, _) in itertools.pairwise(log)]
    after_throttle = gaps[:throttled]
    assert after_throttle == sorted(after_throttle), after_throttle  # they grow
    assert 1.3 <= after_throttle[0] <= 2.0, after_throttle  # interval + 0.5
    assert after_throttle[1] >= 1.8 and after_throttle[-1] >= 2.5, after_throttle
    assert max(gaps) <= 4.6, gaps  # capped at backoff.max_interval
    assert all(g < 1.6 for g in gaps[throttled + 1 :]), gaps  # normal cadence again
    # One request per throttled poll: every throttled answer ended its poll after 1 attempt.
    rows = setup.query("SELECT attempts FROM polls WHERE outcome = 'rate_limited'")
    assert len(rows) == throttled and all(a == 1 for (a,) in rows), rows
    log_text = setup.log_text()
    assert "throttled by the source; next poll in" in log_text
    assert not any(v in log_text for v in aqm_sim.valid_cookies.values())  # DEBUG log, no secret


def test_status_says_throttled_by_amazon_until(aqm_sim, setup_factory, daemons) -> None:
    setup = setup_factory(aqm=aqm_sim)
    setup.write(retry={"rate_limit_delay": 30}, backoff={"max_interval": 60})
    daemons(setup)
    wait_for(lambda: setup.row_count() > 0)
    aqm_sim.throttle(30)
    wait_for(lambda: "throttled by Amazon until" in setup.cli("status").stdout, timeout=10)
    line = next(x for x in setup.cli("status").stdout.splitlines() if "throttled by" in x)
    assert re.search(r"throttled by Amazon until \d\d:\d\d$", line), line


def test_long_run_with_random_faults_on_both_sources_loses_nothing(
    hue_sim, aqm_sim, setup_factory, daemons
) -> None:
    from homepoll.simulator import aqm_api, hue_bridge

    setup = setup_factory(hue=hue_sim, aqm=aqm_sim)
    setup.write(retry={"rate_limit_delay": 0.3})
    hue_sim.faults.set_random(
        seed=7, rate=0.35, kinds=["error_901", "http_503", "reset", "garbage", "empty"]
    )
    aqm_sim.faults.set_random(seed=11, rate=0.35, kinds=list(aqm_api.RANDOM_KINDS))
    assert hue_bridge.FAULT_KINDS
    daemon = daemons(setup)
    wait_for(lambda: hue_sim.served.requests >= 12 and aqm_sim.served.requests >= 12, timeout=40)
    hue_sim.faults.clear()
    aqm_sim.faults.clear()
    served = len(hue_sim.served.snapshot()), len(aqm_sim.served.snapshot())
    wait_for(
        lambda: (
            len(hue_sim.served.snapshot()) > served[0]
            and len(aqm_sim.served.snapshot()) > served[1]
        ),
        timeout=10,
    )
    assert daemon.alive()
    assert daemon.stop() == 0
    assert sum(hue_sim.faults.injected.values()) >= 2
    assert sum(aqm_sim.faults.injected.values()) >= 2
    assert_every_served_stored_once(setup, hue_sim, aqm_sim)
    assert "Traceback" not in setup.log_text()


def test_amazon_cookies_imports_each_form_and_tests_them(aqm_sim, setup_factory) -> None:
    setup = setup_factory()
    setup.write(collectors={"amazon_aqm": {"base_url": aqm_sim.base_url}})
    cookies_file = setup.data / "amazon_cookies.json"
    jar = aqm_sim.valid_cookies
    forms = {
        "export": json.dumps(
            [{"name": k, "value": v, "domain": ".amazon.com", "path": "/"} for k, v in jar.items()]
        ),
        "mapping": json.dumps(jar),
        "header": "Cookie: " + aqm_sim.cookie_header(),
    }
    for name, text in forms.items():
        cookies_file.unlink(missing_ok=True)
        source = setup.root / f"{name}.txt"
        source.write_text(text)
        result = setup.cli("amazon-cookies", str(source))
        assert result.returncode == 0, (name, result.stdout, result.stderr)
        assert "2 monitor(s) found" in result.stdout
        assert json.loads(cookies_file.read_text()) == jar
        assert stat.S_IMODE(cookies_file.stat().st_mode) == 0o600
        for value in jar.values():
            assert value not in result.stdout + result.stderr
    from_stdin = setup.cli("amazon-cookies", "-", input=forms["header"])
    assert from_stdin.returncode == 0, from_stdin.stderr


def test_amazon_cookies_refuses_garbage_with_78(setup_factory) -> None:
    setup = setup_factory()
    for garbage in ("", "not cookies at all", "[1, 2, 3]", '{"a": ["nested"]}'):
        result = setup.cli("amazon-cookies", "-", input=garbage)
        assert result.returncode == 78, garbage
        assert result.stderr.startswith("homepoll: ")
        assert "Traceback" not in result.stderr
    assert setup.cli("amazon-cookies", str(setup.root / "missing.json")).returncode == 78


def test_amazon_cookies_reports_a_rejected_set_with_1(aqm_sim, setup_factory) -> None:
    setup = setup_factory()
    setup.write(collectors={"amazon_aqm": {"base_url": aqm_sim.base_url}})
    stale = dict(aqm_sim.valid_cookies)
    aqm_sim.set_cookies()
    result = setup.cli("amazon-cookies", "-", input=json.dumps(stale))
    assert result.returncode == 1
    assert "did not accept" in result.stderr
    no_csrf = {k: v for k, v in aqm_sim.valid_cookies.items() if k != "csrf"}
    result = setup.cli("amazon-cookies", "-", input=json.dumps(no_csrf))
    assert result.returncode == 1
    assert "csrf" in result.stderr


def test_cookies_never_leak_at_debug(aqm_sim, setup_factory, daemons) -> None:
    setup = setup_factory(aqm=aqm_sim)
    aqm_sim.faults.apply_script(
        "http_503 signin_redirect unauthenticated too_many_requests unknown_shape", "aqm"
    )
    daemon = daemons(setup)
    wait_for(lambda: aqm_sim.faults.pending() == 0, timeout=20)
    old = aqm_sim.valid_cookies
    aqm_sim.set_cookies()
    wait_for((setup.data / ALERT).exists)
    outputs = {
        "status": setup.cli("status", "--json").stdout,
        "check-config": setup.cli("check-config").stdout,
        "once": (lambda r: r.stdout + r.stderr)(setup.cli("once")),
        "alert": (setup.data / ALERT).read_text(),
    }
    assert daemon.stop() == 0
    outputs["stderr"] = daemon.stderr()
    outputs["log"] = setup.log_text()
    outputs["polls"] = repr(setup.query("SELECT error FROM polls"))
    assert "DEBUG" in outputs["log"]
    secrets = [v for v in [*old.values(), *aqm_sim.valid_cookies.values()] if len(v) >= 6]
    for name, text in outputs.items():
        for value in secrets:
            assert value not in text, f"a cookie value leaked into {name}"
