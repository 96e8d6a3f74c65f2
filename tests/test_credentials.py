"""Credential files as a clumsy user or an attacker leaves them (issue 11 items 1, 3, 4, 12,
13): a bad, missing or huge one is that collector's auth alert or a warning, never a hang,
a config error or the daemon's exit; the other collector keeps polling."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from homepoll.config import ConfigError, load_config
from homepoll.cookies import load_cookie_file
from tests.conftest import Setup, shipped_defaults, wait_for
from tests.reliability_support import collector_state

HUE_ALERT = "ALERT_HUE_AUTH_NEEDED.txt"
AQM_ALERT = "ALERT_TOKEN_REFRESH_NEEDED.txt"
COLLECTORS = ("hue", "amazon_aqm")
KEY = "Zk3hQ9vLr2XwYb7TtN4mPq8sJd6cEa1fGu5oHiWx"


def rows_of(setup: Setup, source: str) -> int:
    rows = setup.query("SELECT count(*) FROM readings_view WHERE source = ?", source)
    return rows[0][0] if rows else 0


def keeps_polling(setup: Setup, source: str) -> None:
    """``source`` has good polls from now on (its collector was not held up). Read from
    status.json: at the shipped commit_interval the readings wait for their commit."""
    before = collector_state(setup, source).get("last_success")
    wait_for(
        lambda: (
            (s := collector_state(setup, source)).get("state") == "ok"
            and s.get("last_success") != before
        ),
        timeout=10,
    )


def within(seconds: float, call: Callable[[], Any]) -> Any:
    """``call()`` in a thread, failing the test (not hanging it) when it blocks."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = call()
        except BaseException as exc:  # handed to the test below
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"blocked for more than {seconds} s"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


# --------------------------------------------------------------------------- item 1


def test_a_fifo_or_dev_zero_cookie_file_is_an_auth_alert_not_a_hang(
    hue_sim, aqm_sim, setup_factory, daemons
) -> None:
    setup = shipped_defaults(setup_factory(hue=hue_sim, aqm=aqm_sim))
    cookies = setup.data / "amazon_cookies.json"
    alert = setup.data / AQM_ALERT
    daemon = daemons(setup)
    # Both polled well (only the daemon's first write is committed at once at the defaults).
    wait_for(lambda: all(collector_state(setup, n).get("state") == "ok" for n in COLLECTORS))

    cookies.unlink()
    os.mkfifo(cookies, 0o600)  # nobody ever writes to it: a plain read blocks forever
    wait_for(lambda: alert.exists() and "FIFO" in alert.read_text(), timeout=10)
    keeps_polling(setup, "hue")
    assert daemon.alive()
    hue_rows = rows_of(setup, "hue")
    started = time.monotonic()
    assert daemon.stop() == 0
    assert time.monotonic() - started < 5
    assert rows_of(setup, "hue") > hue_rows  # the stop committed what the polls read

    # A restart with the file still bad starts (no exit 78) and polls the bridge.
    cookies.unlink()
    cookies.symlink_to("/dev/zero")
    daemon = daemons(setup)
    wait_for(lambda: "character device" in alert.read_text(), timeout=10)
    keeps_polling(setup, "hue")
    assert daemon.alive()
    assert daemon.stop() == 0


def test_load_of_a_fifo_key_file_returns_at_once_with_a_warning(tmp_path: Path) -> None:
    key_file = tmp_path / "data" / "hue_username"
    key_file.parent.mkdir()
    os.mkfifo(key_file)
    path = tmp_path / "config.yaml"
    path.write_text("{}\n", encoding="utf-8")
    config = within(5, lambda: load_config(path))
    assert config.hue.username is None
    assert config.credential_warnings == (
        f"collectors.hue.username_file: {key_file} cannot be read (not a regular file but a FIFO)",
    )


def test_a_fifo_config_file_is_one_problem_line_not_a_hang(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    os.mkfifo(path)
    with pytest.raises(ConfigError) as caught:
        within(5, lambda: load_config(path))
    assert caught.value.problems == [
        f"{path}: cannot read config file (not a regular file but a FIFO)"
    ]


# --------------------------------------------------------------------------- item 4


def test_a_huge_config_file_is_refused_at_once_with_one_line(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("# " + "x" * (2 * 1024 * 1024) + "\ndata_dir: data\n", encoding="utf-8")
    started = time.monotonic()
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert time.monotonic() - started < 1
    assert caught.value.problems == [
        f"{path}: config file is 2.0 MB, more than the 1.0 MB a config file may be; "
        "is this the right file?"
    ]


def test_huge_key_and_cookie_files_are_refused_with_their_size(tmp_path: Path) -> None:
    key_file = tmp_path / "data" / "hue_username"
    key_file.parent.mkdir()
    key_file.write_text(KEY * 10_000, encoding="utf-8")  # 400 KB
    path = tmp_path / "config.yaml"
    path.write_text("{}\n", encoding="utf-8")
    assert load_config(path).credential_warnings == (
        f"collectors.hue.username_file: {key_file} cannot be read "
        "(390.6 KB, more than the 256.0 KB allowed)",
    )
    cookies = tmp_path / "cookies.json"
    cookies.write_text('{"csrf": "' + "c" * 300_000 + '"}', encoding="utf-8")
    with pytest.raises(OSError) as caught:
        load_cookie_file(cookies)
    assert caught.value.strerror == "293.0 KB, more than the 256.0 KB allowed"


# --------------------------------------------------------------------------- items 12, 13


def test_a_missing_or_deleted_key_is_the_hue_alert_while_amazon_polls_on(
    hue_sim, aqm_sim, setup_factory, daemons
) -> None:
    setup = shipped_defaults(setup_factory(hue=hue_sim, aqm=aqm_sim))
    key_file = setup.data / "hue_username"
    key_file.unlink()
    alert = setup.data / HUE_ALERT

    checked = setup.cli("check-config")  # a fresh clone: validate before pairing
    assert checked.returncode == 0, checked.stderr
    assert checked.stderr.splitlines() == [
        f"homepoll: warning: collectors.hue.username_file: {key_file} not found; "
        f"pair with the bridge first: homepoll hue-pair --bridge {hue_sim.address}"
    ]

    daemon = daemons(setup)
    wait_for(lambda: alert.exists(), timeout=10)
    assert f"homepoll hue-pair --bridge {hue_sim.address}" in alert.read_text()
    keeps_polling(setup, "amazon_aqm")

    setup.write_hue_key(hue_sim.key)  # paired: SIGHUP picks the key up
    daemon.signal(signal.SIGHUP)
    wait_for(lambda: not alert.exists(), timeout=10)
    keeps_polling(setup, "hue")

    key_file.unlink()  # deleted while running: the next reload is not refused for it
    daemon.signal(signal.SIGHUP)
    wait_for(lambda: setup.log_text().count("configuration from") == 2, timeout=10)
    wait_for(lambda: alert.exists() and "not found" in alert.read_text(), timeout=10)
    assert "invalid; keeping the running configuration" not in setup.log_text()
    keeps_polling(setup, "amazon_aqm")
    assert daemon.alive()
    assert daemon.stop() == 0


# --------------------------------------------------------------------------- item 3


def test_alert_command_set_by_sighup_runs_on_the_next_alert(
    hue_sim, setup_factory, daemons
) -> None:
    setup = setup_factory(hue=hue_sim)
    marker = setup.root / "notified.txt"
    script = setup.root / "notify.sh"
    script.write_text('#!/bin/sh\necho "$HOMEPOLL_ALERT_EVENT" >> "$1"\n', encoding="utf-8")
    script.chmod(0o755)
    daemon = daemons(setup)
    wait_for(lambda: setup.row_count() > 0)

    setup.write(alerts={"command": [str(script), str(marker)]})
    daemon.signal(signal.SIGHUP)
    wait_for(lambda: "configuration from" in setup.log_text())
    hue_sim.revoke_key()
    wait_for(lambda: (setup.data / HUE_ALERT).exists(), timeout=10)
    wait_for(marker.exists, timeout=10)
    assert marker.read_text().split() == ["raise"]
    assert daemon.stop() == 0


@pytest.mark.parametrize(
    ("command", "fragment"),
    [
        ("./no-such-notifier", "program {root}/no-such-notifier not found"),
        (
            "no-such-notifier-anywhere --now",
            'program "no-such-notifier-anywhere" not found in PATH',
        ),
        ("./notes.txt", "program {root}/notes.txt is not executable; run: chmod +x"),
    ],
    ids=["missing-path", "missing-in-path", "not-executable"],
)
def test_alert_command_must_name_a_runnable_program(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str, fragment: str
) -> None:
    monkeypatch.setenv("HOMEPOLL_HUE_USERNAME", KEY)
    (tmp_path / "notes.txt").write_text("not a program\n", encoding="utf-8")
    path = tmp_path / "config.yaml"
    path.write_text(f"alerts: {{command: '{command}'}}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert len(caught.value.problems) == 1
    assert caught.value.problems[0].startswith("alerts.command: ")
    assert fragment.format(root=tmp_path) in caught.value.problems[0]
