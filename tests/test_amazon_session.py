"""A session that lasts without a person: renewal with the refresh token (issue 13: 2, 3, 7).

The 24-hour run is compressed by an injected clock: 288 polls at the shipped 300 s interval
run back to back through the real poll path (retry policy, SQLite, alert file) against the
simulator over loopback, which expires the cookies every six requests (half an hour).
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import replace
from pathlib import Path

import pytest

from homepoll.alerts import AlertFile
from homepoll.collectors.amazon_aqm import AmazonAqmCollector
from homepoll.collectors.amazon_aqm.authfile import AuthData, save_auth_file
from homepoll.config import load_config
from homepoll.poller import CollectorRunner, StorageWriter
from homepoll.simulator.aqm_api import AqmApiSimulator
from homepoll.storage import Storage
from tests.conftest import shipped_defaults, wait_for
from tests.reliability_support import collector_state

ALERT = "ALERT_TOKEN_REFRESH_NEEDED.txt"
DAY = 86_400


class Clock:
    def __init__(self) -> None:
        self.now = 1_790_000_000.0

    def __call__(self) -> float:
        return self.now


def _token_setup(setup_factory, sim: AqmApiSimulator, **amazon: object):
    setup = setup_factory(aqm=sim)
    (setup.data / "amazon_cookies.json").unlink()
    setup.write(collectors={"amazon_aqm": {"auth_base_url": sim.base_url, **amazon}})
    save_auth_file(
        setup.data / "amazon_auth.json",
        AuthData(sim.auth.issue_token(), "SERIAL0001", sim.auth.marketplace),
    )
    return setup


def test_a_compressed_day_renews_the_cookies_itself(setup_factory, tmp_path, caplog) -> None:
    clock = Clock()
    with AqmApiSimulator(
        monitors=2, update_period=300, clock=clock, marketplace="amazon.de"
    ) as sim:
        setup = _token_setup(setup_factory, sim)
        setup.settings["collectors"]["amazon_aqm"].pop("interval")  # the shipped 300 s
        setup.write()
        config = load_config(setup.config_path)
        settings = config.amazon_aqm
        assert settings.interval == 300
        sim.cookie_lifetime(requests=6)
        caplog.set_level(logging.DEBUG, logger="homepoll")

        async def day() -> list[str]:
            writer = StorageWriter(Storage(config.storage.path))
            await writer.open()
            collector = AmazonAqmCollector(settings, clock=clock)
            alert = AlertFile(config.data_dir / ALERT, "amazon_aqm", collector.alert_remedy)
            runner = CollectorRunner(
                collector,
                interval=settings.interval,
                retry=settings.retry,
                backoff=config.backoff,
                writer=writer,
                alert=alert,
                status=None,
                wall=clock,
            )
            outcomes = []
            for _ in range(DAY // 300):
                outcomes.append((await runner.poll()).outcome)
                assert not alert.path.exists()
                clock.now += 300
            await collector.aclose()
            await writer.flush()
            await writer.close()
            return outcomes

        outcomes = asyncio.run(day())
    assert outcomes == ["ok"] * 288  # no poll lost to auth
    assert not (setup.data / ALERT).exists()
    served = {(s.device_id, s.metric, s.ts) for s in sim.served.snapshot()}
    stored = {(d, m, ts) for _, d, m, ts in setup.stored()}
    assert served and served <= stored, len(served - stored)  # every served measurement stored
    renewals = [r for r in caplog.records if "session renewed" in r.getMessage()]
    # every 6 requests: one renewal per expiry, logged once each, at INFO
    assert sim.auth.exchanges >= 288 // 7
    assert len(renewals) == sim.auth.exchanges
    assert {r.levelno for r in renewals} == {logging.INFO}
    stored_auth = json.loads((setup.data / "amazon_auth.json").read_text())
    assert stored_auth["cookies"] == sim.valid_cookies  # renewed cookies saved
    everything = "\n".join(r.getMessage() for r in caplog.records)
    for secret in [stored_auth["refresh_token"], *sim.valid_cookies.values()]:
        assert secret not in everything


def test_cookies_are_renewed_proactively_every_few_days(setup_factory) -> None:
    clock = Clock()
    with AqmApiSimulator(monitors=1, clock=clock) as sim:
        setup = _token_setup(setup_factory, sim)
        settings = load_config(setup.config_path).amazon_aqm

        async def days() -> int:
            collector = AmazonAqmCollector(settings, clock=clock)
            for _ in range(10 * 24):  # hourly for ten days
                await collector.collect(5.0)
                clock.now += 3600
            await collector.aclose()
            return sim.auth.exchanges

        # the first poll (no cookies yet), then every four days: 0, 4, 8
        assert asyncio.run(days()) == 3


def test_set_cookie_on_answers_is_kept_and_saved(setup_factory) -> None:
    with AqmApiSimulator(monitors=1) as sim:
        setup = _token_setup(setup_factory, sim)
        settings = load_config(setup.config_path).amazon_aqm

        async def run() -> None:
            collector = AmazonAqmCollector(settings)
            await collector.collect(5.0)
            # Amazon rotates a cookie on an answer: the old value stops working
            jar = sim.valid_cookies
            jar["session-token"] = "rotated-" + jar["session-token"]
            sim.set_cookies(jar)
            collector.session.jar.absorb(
                [f"session-token={jar['session-token']}; Domain=127.0.0.1; Path=/"], "127.0.0.1"
            )
            collector.session.save_if_changed()
            await collector.collect(5.0)
            await collector.aclose()

        asyncio.run(run())
        saved = json.loads((setup.data / "amazon_auth.json").read_text())["cookies"]
        assert saved["session-token"] == sim.valid_cookies["session-token"]
        assert sim.auth.exchanges == 1  # the rotated cookie worked: no renewal needed


def test_revoked_token_raises_one_alert_and_a_new_token_clears_it(setup_factory, daemons) -> None:
    with AqmApiSimulator(update_period=1.0, monitors=1) as sim:
        setup = shipped_defaults(_token_setup(setup_factory, sim))  # commit_interval 300
        daemon = daemons(setup)
        wait_for(lambda: setup.row_count() > 0)
        sim.cookie_lifetime(requests=0)  # the cookies die: renewal needed...
        sim.auth.revoke_tokens()  # ...and the token is refused
        alert = setup.data / ALERT
        wait_for(alert.exists, timeout=10)
        text = alert.read_text()
        assert "homepoll amazon-login" in text
        assert "refused the refresh token" in text
        polls = collector_state(setup, "amazon_aqm")["polls"]
        wait_for(lambda: collector_state(setup, "amazon_aqm")["polls"] >= polls + 2)
        sim.cookie_lifetime()  # a new token gives working cookies again
        result = setup.cli("amazon-login", "--refresh-token", "-", input=sim.auth.issue_token())
        assert result.returncode == 0, result.stderr
        wait_for(lambda: not alert.exists(), timeout=10)  # no restart
        assert daemon.alive()
        assert setup.log_text().count("CRITICAL") == 1  # exactly one alert for the outage
        log = setup.log_text()
        for token in sim.auth.tokens:
            assert token not in log and token not in text
        assert daemon.stop() == 0


@pytest.mark.parametrize("refusal", ["revoked", "malformed"])
def test_only_a_refused_token_is_an_auth_failure(setup_factory, refusal: str) -> None:
    with AqmApiSimulator(monitors=1) as sim:
        setup = _token_setup(setup_factory, sim)
        path = setup.data / "amazon_auth.json"
        data = json.loads(path.read_text())
        if refusal == "revoked":
            sim.auth.revoke_tokens()
        else:
            data["refresh_token"] = "not-a-token-at-all"
            Path(path).write_text(json.dumps(data))
        result = setup.cli("once", "--collector", "amazon_aqm")
        assert result.returncode == 1
        assert (setup.data / ALERT).exists()
        assert data["refresh_token"] not in result.stdout + result.stderr + setup.log_text()


def test_refused_cookies_with_a_token_are_not_an_auth_failure(setup_factory) -> None:
    with AqmApiSimulator(monitors=1) as sim:
        setup = _token_setup(setup_factory, sim)
        assert setup.cli("once", "--collector", "amazon_aqm").returncode == 0
        sim.set_cookies()  # Amazon forgets the session: 401 on the next request
        result = setup.cli("once", "--collector", "amazon_aqm")
        assert result.returncode == 0, result.stdout + result.stderr
        assert not (setup.data / ALERT).exists()
        assert sim.auth.exchanges == 2
        outcomes = [o for (o,) in setup.query("SELECT outcome FROM polls ORDER BY started_at")]
        assert outcomes == ["ok", "ok"]
        # the second run's discovery was refused and sent once more right after the renewal,
        # within that poll, then the state request
        answers = [o for _, o in sim.graphql_requests]
        assert answers[2:] == ["unauthorized", "ok", "ok"], answers


def test_a_configured_domain_that_disagrees_with_the_account_is_an_override_with_a_warning(
    setup_factory, caplog
) -> None:
    with AqmApiSimulator(monitors=1, marketplace="amazon.de") as sim:
        setup = _token_setup(setup_factory, sim, domain="amazon.co.uk")
        settings = load_config(setup.config_path).amazon_aqm
        caplog.set_level(logging.INFO, logger="homepoll")
        collector = AmazonAqmCollector(settings)
        assert collector.session.load() and collector.session.marketplace == "amazon.co.uk"
        assert collector.session.marketplace == "amazon.co.uk"  # warned once, not twice
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1
        assert "domain is amazon.co.uk but the account signed in on amazon.de" in (
            warnings[0].getMessage()
        )
        default = AmazonAqmCollector(replace(settings, domain="amazon.com"))
        default.session.load()
        assert default.session.marketplace == "amazon.de"  # the default follows the account


def test_a_sign_in_during_a_poll_is_not_overwritten_by_that_poll(setup_factory) -> None:
    with AqmApiSimulator(monitors=1) as sim:
        setup = _token_setup(setup_factory, sim)
        settings = load_config(setup.config_path).amazon_aqm
        path = setup.data / "amazon_auth.json"

        async def run() -> None:
            collector = AmazonAqmCollector(settings)
            await collector.collect(5.0)
            # mid-poll: Amazon rotates a cookie, and amazon-login writes a new token
            collector.session.jar.absorb(["session-token=rotated-value-1"], "127.0.0.1")
            fresh = AuthData(sim.auth.issue_token(), "SERIAL0002", "amazon.com")
            save_auth_file(path, fresh)
            collector.session.save_if_changed()
            assert json.loads(path.read_text())["device_serial"] == "SERIAL0002"
            await collector.collect(5.0)  # the next poll reads the new file
            assert collector.session.auth is not None
            assert collector.session.auth.device_serial == "SERIAL0002"
            await collector.aclose()

        asyncio.run(run())
