"""Issue 14, acceptance 5: the alerts a person needs (a source gone, a battery running out).

The real daemon against the Hue simulator: the bridge stops answering and
ALERT_HUE_OFFLINE.txt appears only after alerts.offline_after, then clears when it is back;
a dimmer at 10 % raises ALERT_BATTERY_LOW.txt, cleared when its battery is replaced. Both run
alerts.command on raise and clear, once each, and `status` and the dashboard show them.
Both at the shipped defaults (commit_interval 300: readings wait in RAM and the spool).
"""

from __future__ import annotations

import stat
import time
from datetime import UTC, datetime, timedelta

from homepoll.watch import notices
from tests.conftest import shipped_defaults, wait_for
from tests.web_support import collectors, get


def _events(setup) -> list[tuple[str, str]]:
    path = setup.root / "events.txt"
    words = path.read_text().split() if path.exists() else []
    return list(zip(words[::2], words[1::2], strict=True))


def _command(setup) -> list[str]:
    script = setup.root / "notify.sh"
    script.write_text(
        '#!/bin/sh\necho "$HOMEPOLL_ALERT_EVENT $HOMEPOLL_ALERT_COLLECTOR" >> '
        f"{setup.root / 'events.txt'}\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return [str(script)]


def test_offline_alert_after_offline_after_and_cleared_on_return(
    hue_sim, setup_factory, daemons
) -> None:
    setup = setup_factory(hue=hue_sim)
    setup.write(alerts={"offline_after": 3, "command": _command(setup)})
    shipped_defaults(setup)  # the alert promise at the defaults a user gets (commit_interval 300)
    daemons(setup)
    alert = setup.data / "ALERT_HUE_OFFLINE.txt"
    wait_for(lambda: collectors(setup).get("hue", {}).get("last_success"), timeout=15)
    hue_sim.faults.set_sticky("reset")  # the bridge is gone: every connection reset
    failing = time.monotonic()
    wait_for(lambda: collectors(setup)["hue"].get("state") == "failing", timeout=15)
    time.sleep(1.0)
    assert not alert.exists()  # failing, but not for offline_after yet
    wait_for(alert.exists, timeout=15)
    assert time.monotonic() - failing >= 3
    text = alert.read_text()
    assert "does not answer" in text and "Failed polls:" in text and "collectors.hue.bridge" in text
    assert setup.cli("status").returncode == 1
    assert "ALERT_HUE_OFFLINE.txt" in setup.cli("status").stdout
    assert b"ALERT_HUE_OFFLINE.txt" in get(setup.web_url)[2]
    hue_sim.faults.clear()
    wait_for(lambda: not alert.exists(), timeout=15)
    wait_for(lambda: ("clear", "hue") in _events(setup), timeout=10)
    assert _events(setup).count(("raise", "hue")) == 1
    assert not (setup.data / "ALERT_HUE_AUTH_NEEDED.txt").exists()


def test_battery_low_raised_updated_and_cleared(hue_sim, setup_factory, daemons) -> None:
    setup = setup_factory(hue=hue_sim)
    setup.write(alerts={"battery_low": 15, "command": _command(setup)})
    shipped_defaults(setup)
    daemons(setup)
    alert = setup.data / "ALERT_BATTERY_LOW.txt"
    wait_for(lambda: collectors(setup).get("hue", {}).get("polls", 0) >= 2, timeout=15)
    assert not alert.exists()  # the simulator's sensors are all well above 15 %
    hue_sim.switch_battery = 10
    wait_for(alert.exists, timeout=15)
    assert "Hue dimmer switch 1: 10 % since" in alert.read_text()
    hue_sim.switch_battery = 8
    wait_for(lambda: ": 8 % since" in alert.read_text(), timeout=15)  # updated in place
    assert "ALERT_BATTERY_LOW.txt" in setup.cli("status").stdout
    page = get(setup.web_url)[2]
    assert b"ALERT_BATTERY_LOW.txt" in page and b"Hue dimmer switch 1: 8 %" in page
    hue_sim.switch_battery = 100  # replaced
    wait_for(lambda: not alert.exists(), timeout=15)
    wait_for(lambda: ("clear", "battery") in _events(setup), timeout=10)
    assert _events(setup).count(("raise", "battery")) == 1


def test_corrupt_database_notice_lasts_until_a_start_a_day_later(tmp_path) -> None:
    db = tmp_path / "readings.db"
    moved = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
    (tmp_path / f"readings.db.corrupt-{moved:%Y%m%dT%H%M%SZ}").write_text("x")
    same_day = (moved + timedelta(hours=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
    next_day = (moved + timedelta(days=1, minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    shown = notices(db, same_day, now=moved + timedelta(days=5))
    assert len(shown) == 1 and "corrupt" in shown[0]  # this run started before a day passed
    assert notices(db, next_day) == []  # a clean start a day later: gone
    assert len(notices(db, None, now=moved + timedelta(hours=2))) == 1  # no daemon: by age
