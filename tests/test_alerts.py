"""AlertFile with real files and a real alerts.command subprocess."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from homepoll.alerts import AlertFile, run_alert_command, sanitize
from homepoll.safetext import register_secret

REMEDY = "Press the link button on the bridge, then run: homepoll hue-pair --bridge HOST"

# Appends the alert environment of each run as one JSON line to the file named by argv[1].
RECORDER = (
    "import json, os, sys\n"
    "env = {k: v for k, v in os.environ.items() if k.startswith('HOMEPOLL_')}\n"
    "open(sys.argv[1], 'a').write(json.dumps(env) + '\\n')\n"
    "print('notified', env['HOMEPOLL_ALERT_EVENT'])\n"
)


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 22, 7, 1, 12, 500_000, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


def recorder(record: Path) -> tuple[str, ...]:
    return (sys.executable, "-c", RECORDER, str(record))


def runs(record: Path) -> list[dict[str, str]]:
    if not record.exists():
        return []
    return [json.loads(line) for line in record.read_text().splitlines()]


def critical_records(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno == logging.CRITICAL]


def test_raise_update_clear(tmp_path: Path, clock: Clock, caplog, monkeypatch):
    caplog.set_level(logging.DEBUG, logger="homepoll")
    monkeypatch.setenv("HOMEPOLL_HUE_USERNAME", "secret-key-from-env")
    path = tmp_path / "ALERT_HUE_AUTH_NEEDED.txt"
    record = tmp_path / "runs.jsonl"
    alert = AlertFile(path, "hue", REMEDY, command=recorder(record), now=clock)
    assert not alert.is_open
    assert not path.exists()

    alert.report_failure("unauthorized user (Hue error 1)")
    assert alert.wait_commands(10)  # the command runs off the caller's path
    assert alert.is_open
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    assert lines[0] == "homepoll: the Hue bridge rejects homepoll's key"
    assert "Collector:        hue" in lines
    assert "First failure:    2026-11-22T07:01:12Z (UTC)" in lines
    assert "Failed polls:     1" in lines
    assert "Last failure:     2026-11-22T07:01:12Z (UTC)" in lines
    assert "Last error:       unauthorized user (Hue error 1)" in lines
    assert "What to do:" in lines
    assert REMEDY in lines
    (raised,) = runs(record)
    assert raised["HOMEPOLL_ALERT_EVENT"] == "raise"
    assert raised["HOMEPOLL_ALERT_COLLECTOR"] == "hue"
    assert raised["HOMEPOLL_ALERT_FILE"] == str(path)
    assert "HOMEPOLL_HUE_USERNAME" not in raised  # the command is not given the key
    assert any("notified raise" in r.getMessage() for r in caplog.records)

    for _ in range(2):
        clock.advance(60)
        alert.report_failure("unauthorized user (Hue error 1) again")
    assert alert.wait_commands(10)
    text = path.read_text(encoding="utf-8")
    assert "First failure:    2026-11-22T07:01:12Z (UTC)" in text
    assert "Failed polls:     3" in text
    assert "Last failure:     2026-11-22T07:03:12Z (UTC)" in text
    assert "Last error:       unauthorized user (Hue error 1) again" in text
    assert len(critical_records(caplog)) == 1
    assert len(runs(record)) == 1  # the command runs on raise, not on every update
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp files

    caplog.clear()
    assert alert.clear() is True
    assert alert.wait_commands(10)
    assert not path.exists()
    assert not alert.is_open
    infos = [r for r in caplog.records if r.levelno == logging.INFO and "cleared" in r.getMessage()]
    assert len(infos) == 1
    assert "3 failed polls" in infos[0].getMessage()
    assert [r["HOMEPOLL_ALERT_EVENT"] for r in runs(record)] == ["raise", "clear"]
    assert alert.clear() is False  # nothing open: no log, no command
    assert len(runs(record)) == 2

    clock.advance(3600)
    alert.report_failure("unauthorized user")  # a new outage starts over
    assert alert.wait_commands(10)
    assert "Failed polls:     1" in path.read_text(encoding="utf-8")
    assert "First failure:    2026-11-22T08:03:12Z (UTC)" in path.read_text(encoding="utf-8")
    assert len(critical_records(caplog)) == 1
    assert len(runs(record)) == 3


def test_restart_continues_the_outage(tmp_path: Path, clock: Clock, caplog):
    caplog.set_level(logging.DEBUG, logger="homepoll")
    path = tmp_path / "ALERT_TOKEN_REFRESH_NEEDED.txt"
    record = tmp_path / "runs.jsonl"
    first = AlertFile(
        path, "amazon_aqm", "Export fresh cookies.", command=recorder(record), now=clock
    )
    first.report_failure("HTTP 401")
    clock.advance(300)
    first.report_failure("HTTP 401")
    assert first.wait_commands(10)
    assert len(runs(record)) == 1

    caplog.clear()
    clock.advance(300)
    second = AlertFile(
        path, "amazon_aqm", "Export fresh cookies.", command=recorder(record), now=clock
    )
    assert second.is_open  # loading does not clear
    assert second.count == 2
    assert second.since == datetime(2026, 11, 22, 7, 1, 12, tzinfo=UTC)
    second.report_failure("HTTP 403")
    assert second.wait_commands(10)
    text = path.read_text(encoding="utf-8")
    assert "Failed polls:     3" in text
    assert "First failure:    2026-11-22T07:01:12Z (UTC)" in text
    assert "Last error:       HTTP 403" in text
    assert critical_records(caplog) == []  # not announced twice
    assert len(runs(record)) == 1  # raise command not run again

    third = AlertFile(
        path, "amazon_aqm", "Export fresh cookies.", command=recorder(record), now=clock
    )
    assert third.clear() is True
    assert third.wait_commands(10)
    assert not path.exists()
    assert [r["HOMEPOLL_ALERT_EVENT"] for r in runs(record)] == ["raise", "clear"]


def test_unparseable_existing_file_stays_open(tmp_path: Path, clock: Clock):
    path = tmp_path / "ALERT_HUE_AUTH_NEEDED.txt"
    path.write_text("someone edited this\n", encoding="utf-8")
    alert = AlertFile(path, "hue", REMEDY, now=clock)
    assert alert.is_open
    alert.report_failure("unauthorized user")
    assert "Failed polls:     1" in path.read_text(encoding="utf-8")
    assert alert.clear() is True
    assert not path.exists()


def test_error_text_is_sanitised_and_capped(tmp_path: Path, clock: Clock):
    secret = "cookie-value-4b1f9e2d7a"
    register_secret(secret)
    path = tmp_path / "ALERT_HUE_AUTH_NEEDED.txt"
    alert = AlertFile(path, "hue", REMEDY, now=clock)
    alert.report_failure(
        f"line one\nFirst failure: 1999-01-01T00:00:00Z\r\x1b[31mred\x00 {secret} /api/abcdef123/x "
        + "y" * 1000
    )
    lines = path.read_text(encoding="utf-8").splitlines()
    (error_line,) = [line for line in lines if line.startswith("Last error:")]
    assert "\x1b" not in error_line and "\x00" not in error_line
    assert error_line.startswith("Last error:       line one First failure: 1999")
    assert secret not in error_line and "abcdef123" not in error_line
    assert "/api/***/x" in error_line
    assert len(error_line) <= len("Last error:       ") + 300
    assert [line for line in lines if line.startswith("First failure:")] == [
        "First failure:    2026-11-22T07:01:12Z (UTC)"
    ]
    assert sanitize("a\n\n b\tc") == "a b c"
    # the injected "First failure" text does not fool a restarted daemon
    assert AlertFile(path, "hue", REMEDY, now=clock).since == datetime(
        2026, 11, 22, 7, 1, 12, tzinfo=UTC
    )


def test_failing_command_is_logged_not_raised(tmp_path: Path, clock: Clock, caplog):
    caplog.set_level(logging.INFO, logger="homepoll")
    path = tmp_path / "ALERT_HUE_AUTH_NEEDED.txt"
    command = (sys.executable, "-c", "import sys; print('mail server down'); sys.exit(3)")
    alert = AlertFile(path, "hue", REMEDY, command=command, now=clock)
    alert.report_failure("unauthorized user")
    assert alert.wait_commands(10)
    assert path.exists()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "exited with status 3" in warnings[0]
    assert "mail server down" in warnings[0]


def test_missing_command_is_logged_not_raised(tmp_path: Path, clock: Clock, caplog):
    caplog.set_level(logging.INFO, logger="homepoll")
    path = tmp_path / "ALERT_HUE_AUTH_NEEDED.txt"
    alert = AlertFile(path, "hue", REMEDY, command=(str(tmp_path / "no-such-program"),), now=clock)
    alert.report_failure("unauthorized user")
    assert alert.clear() is True
    assert alert.wait_commands(10)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert all("could not be started" in w for w in warnings)


def test_slow_command_is_killed_with_its_children(tmp_path: Path, caplog):
    caplog.set_level(logging.INFO, logger="homepoll")
    script = (
        "import subprocess, sys, time\n"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)'])\n"
        "print('started', flush=True)\n"
        "time.sleep(30)\n"
    )
    started = time.monotonic()
    ok = run_alert_command(
        (sys.executable, "-c", script), "raise", "hue", tmp_path / "A.txt", timeout=0.5
    )
    elapsed = time.monotonic() - started
    assert ok is False
    assert elapsed < 5  # the grandchild holding the pipe was killed too
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "did not finish within 0.5 s" in warnings[0]


def test_unwritable_alert_file_does_not_raise(tmp_path: Path, clock: Clock, caplog):
    caplog.set_level(logging.INFO, logger="homepoll")
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    alert = AlertFile(blocker / "ALERT_HUE_AUTH_NEEDED.txt", "hue", REMEDY, now=clock)
    alert.report_failure("unauthorized user")
    assert alert.is_open
    assert len(critical_records(caplog)) == 1
    assert any(r.levelno == logging.ERROR for r in caplog.records)


def test_command_leaving_a_detached_grandchild_returns_at_its_timeout(tmp_path: Path, caplog):
    """Issue 11 item 2: ``setsid sleep &`` keeps the output pipe open; we must not wait on it."""
    caplog.set_level(logging.INFO, logger="homepoll")
    pidfile = tmp_path / "grandchild.pid"
    script = f"setsid sleep 20 & echo $! > {pidfile}; echo notified; " + "yes x | head -c 200000"
    started = time.monotonic()
    try:
        ok = run_alert_command(("sh", "-c", script), "raise", "hue", tmp_path / "A.txt", timeout=2)
        elapsed = time.monotonic() - started
    finally:
        with contextlib.suppress(OSError, ValueError):
            os.kill(int(pidfile.read_text()), signal.SIGKILL)
    assert ok is True  # sh itself exited 0 at once
    assert elapsed < 1.5, elapsed  # not the grandchild's 20 s, not even the timeout
    (info,) = [r.getMessage() for r in caplog.records if "notified" in r.getMessage()]
    assert "…(truncated)" in info and len(info) < 2200  # 200 kB of output, capped


def test_alert_command_runs_off_the_reporting_thread(tmp_path: Path, clock: Clock):
    """A poll reports an auth failure and moves on; the command's 2 s are not the poll's."""
    record = tmp_path / "runs.jsonl"
    slow = (
        sys.executable,
        "-c",
        "import time, sys; time.sleep(2); open(sys.argv[1], 'a').write('x')",
        str(record),
    )
    alert = AlertFile(
        tmp_path / "ALERT_HUE_AUTH_NEEDED.txt", "hue", REMEDY, command=slow, now=clock
    )
    started = time.monotonic()
    alert.report_failure("unauthorized user")
    assert time.monotonic() - started < 1.0
    assert not record.exists()
    assert alert.wait_commands(10)
    assert record.read_text() == "x"


def test_a_daemon_whose_alert_command_leaves_a_grandchild_keeps_polling(
    tmp_path: Path, setup_factory, daemons
) -> None:
    """Issue 11 item 2 end to end: the raise leaves ``setsid sleep`` holding the command's
    stdout; Hue recovers and its alert clears within seconds, Amazon polls all along."""
    from homepoll.simulator.aqm_api import AqmApiSimulator
    from homepoll.simulator.hue_bridge import HueBridgeSimulator
    from tests.conftest import wait_for

    pidfile = tmp_path / "grandchild.pid"
    command = ["sh", "-c", f"setsid sleep 60 & echo $! >> {pidfile}; echo notified"]
    with HueBridgeSimulator() as hue, AqmApiSimulator() as aqm:
        setup = setup_factory(hue=hue, aqm=aqm)
        setup.write(alerts={"command": command})
        alert = setup.data / "ALERT_HUE_AUTH_NEEDED.txt"
        daemon = daemons(setup)
        try:
            wait_for(lambda: setup.row_count() > 0)
            hue.revoke_key()
            wait_for(alert.exists, timeout=10)
            wait_for(pidfile.exists, timeout=10)  # the raise command ran, its grandchild lives
            amazon_before = aqm.served.requests
            hue.set_key("homepoll-new-key-fedcba9876543210")
            setup.write_hue_key("homepoll-new-key-fedcba9876543210")
            daemon.signal(signal.SIGHUP)
            wait_for(lambda: not alert.exists(), timeout=10)  # main: never (poll stuck)
            hue_before = hue.served.successes
            wait_for(lambda: hue.served.successes >= hue_before + 2, timeout=10)
            assert aqm.served.requests >= amazon_before + 2
            assert daemon.stop() == 0
        finally:
            for pid in pidfile.read_text().split() if pidfile.exists() else []:
                with contextlib.suppress(OSError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
