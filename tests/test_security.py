"""Security: secret files and warnings, the alert command without a shell, hostile sensor names,
and the systemd unit's sandbox (scored by systemd-analyze where it exists).

The secrets grep over every fault kind lives in test_reliability_faults.py (it greps every
output of the fault matrix run); here are the pieces a hostile network or a careless install
could turn against the user.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from homepoll.readout import csv_cell
from homepoll.simulator.aqm_api import AqmApiSimulator
from homepoll.simulator.hue_bridge import HueBridgeSimulator
from tests.conftest import ROOT, wait_for
from tests.reliability_support import record_figures

HOSTILE_NAMES = [
    "Kitchen \"quoted\" 'single'",
    "Hall\n2026-01-01 00:00:00,000 CRITICAL homepoll.alerts: ALERT forged",
    "../../../../tmp/homepoll-pwned",
    "a/b\\c",
    "Ünïcödé 温度 🌡",
    "\x1b[31mred\x1b[0m\x07",
    "$(touch /tmp/homepoll-pwned-shell); `id` | rm -rf ~ #",
    "tab\there\rcarriage",
]
# Monitors only (AQM): the Hue bridge would refuse none of these either.
AQM_NAMES = ['Air "one"\nCRITICAL forged line', "../../Air/two", "Büro-Luft 空気"]


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --------------------------------------------------------------------------- secrets


def test_secret_files_are_created_0600_and_open_files_are_warned_about_once(
    hue_sim, aqm_sim, setup_factory, daemons
) -> None:
    setup = setup_factory(hue=hue_sim, aqm=aqm_sim)
    key_file = setup.data / "hue_username"
    cookies_file = setup.data / "amazon_cookies.json"
    key_file.unlink()
    cookies_file.unlink()

    hue_sim.press_link_button()
    paired = setup.cli("hue-pair", "--bridge", hue_sim.address)
    assert paired.returncode == 0, paired.stderr
    assert _mode(key_file) == 0o600
    imported = setup.cli("amazon-cookies", "-", input=json.dumps(aqm_sim.valid_cookies))
    assert imported.returncode == 0, imported.stderr
    assert _mode(cookies_file) == 0o600

    setup.config_path.chmod(0o646)  # others may change it, and so what alerts.command runs
    cookies_file.chmod(0o640)
    daemon = daemons(setup)
    wait_for(lambda: setup.row_count() > 0)
    daemon.signal(signal.SIGHUP)
    wait_for(lambda: "configuration from" in setup.log_text())
    assert daemon.stop() == 0
    log = setup.log_text()
    warnings = [line for line in log.splitlines() if "by other users" in line]
    assert len(warnings) == 2, warnings  # config.yaml and the cookie file, once each
    assert any(
        str(setup.config_path) in w and "writable by other users" in w and "chmod o-w" in w
        for w in warnings
    )
    assert any(str(cookies_file) in w and "readable by other users" in w for w in warnings)
    assert not any(str(key_file) in w for w in warnings)  # 0600: no warning

    # config.yaml holds no secret: readable by all (0644) is fine (issue 11 item 14), as is
    # the installer's 0640 root:homepoll.
    setup.config_path.chmod(0o644)
    cookies_file.chmod(0o600)
    (setup.data / "homepoll.log").unlink()
    daemon = daemons(setup)
    wait_for(lambda: "started" in setup.log_text())
    assert daemon.stop() == 0
    assert "by other users" not in setup.log_text()

    key = key_file.read_text().strip()
    shown = setup.cli("check-config", HOMEPOLL_HUE_USERNAME=key)
    assert shown.returncode == 0
    assert key not in shown.stdout + shown.stderr
    for value in aqm_sim.valid_cookies.values():
        assert value not in shown.stdout + shown.stderr
    assert "***" in shown.stdout


# --------------------------------------------------------------------------- alert command


def test_alert_command_gets_no_shell_no_secret_and_its_output_is_logged(
    hue_sim, setup_factory, daemons, tmp_path
) -> None:
    setup = setup_factory(hue=hue_sim)
    key = hue_sim.key
    seen = tmp_path / "command-saw.json"
    script = tmp_path / "notify.py"
    script.write_text(
        "import json, os, sys\n"
        f"open({str(seen)!r}, 'a').write(json.dumps({{'argv': sys.argv[1:], 'env': dict("
        "os.environ)}) + '\\n')\n"
        "print('notified', os.environ['HOMEPOLL_ALERT_EVENT'])\n"
        "print('second line\\nCRITICAL forged by the command')\n"
    )
    tricky = ["$(touch pwned-subst)", "; touch pwned-semicolon", "`touch pwned-tick`", "*"]
    setup.write(alerts={"command": [sys.executable, str(script), *tricky]})
    daemon = daemons(setup, HOMEPOLL_HUE_USERNAME=key)
    wait_for(lambda: setup.row_count() > 0)
    hue_sim.faults.set_sticky("unauthorized")
    wait_for(lambda: seen.exists() and "raise" in seen.read_text())
    hue_sim.faults.set_sticky(None)
    wait_for(lambda: "clear" in seen.read_text())
    assert daemon.stop() == 0

    calls = [json.loads(line) for line in seen.read_text().splitlines()]
    assert [c["env"]["HOMEPOLL_ALERT_EVENT"] for c in calls] == ["raise", "clear"]
    for call in calls:
        assert call["argv"] == tricky  # passed literally: no shell expanded anything
        assert call["env"]["HOMEPOLL_ALERT_COLLECTOR"] == "hue"
        assert call["env"]["HOMEPOLL_ALERT_FILE"].endswith("ALERT_HUE_AUTH_NEEDED.txt")
        assert key not in json.dumps(call["env"])
    assert not list(setup.root.glob("pwned*")) and not list(Path.cwd().glob("pwned*"))
    log = setup.log_text()
    assert "notified raise" in log and "notified clear" in log
    assert not any(line.startswith("CRITICAL forged") for line in log.splitlines())


# --------------------------------------------------------------------------- hostile names


def test_hostile_sensor_names_are_stored_and_printed_safely(setup_factory, daemons) -> None:
    now = 1_790_000_000.0
    with (
        HueBridgeSimulator(devices=len(HOSTILE_NAMES), clock=lambda: now) as hue,
        AqmApiSimulator(monitors=len(AQM_NAMES), clock=lambda: now) as aqm,
    ):
        for number, name in enumerate(HOSTILE_NAMES, 1):
            hue.set_name(number, name)
        aqm.monitors[:] = [replace(m, name=n) for m, n in zip(aqm.monitors, AQM_NAMES, strict=True)]
        setup = setup_factory(hue=hue, aqm=aqm)
        once = setup.cli("once")
        assert once.returncode == 0, once.stdout + once.stderr
        daemon = daemons(setup)
        wait_for(lambda: setup.log_text().count("found 3 Air Quality Monitor") >= 2)
        assert daemon.stop() == 0
        since = "2026-01-01T00:00:00Z"
        table = setup.cli("readings", "--since", since)
        as_csv = subprocess.run(  # bytes: text mode would turn a quoted CR into a newline
            [
                sys.executable,
                "-m",
                "homepoll",
                "readings",
                "--since",
                since,
                "--format",
                "csv",
                "--config",
                str(setup.config_path),
            ],
            capture_output=True,
            env=setup.env(),
            cwd=setup.root,
            timeout=30,
        )
        as_json = setup.cli("readings", "--since", since, "--format", "json")

    stored = {name for (name,) in setup.query("SELECT DISTINCT name FROM sensors")}
    assert set(HOSTILE_NAMES) | set(AQM_NAMES) <= stored  # stored exactly as the source said
    rows = json.loads(as_json.stdout)
    assert {r["name"] for r in rows} == stored  # JSON round-trips them
    parsed = list(csv.DictReader(io.StringIO(as_csv.stdout.decode("utf-8"), newline="")))
    assert len(parsed) == len(rows)
    # CSV: one row per reading, every name made inert (controls escaped, no formula start)
    assert {r["name"] for r in parsed} == {csv_cell(name) for name in stored}
    assert not re.search(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", as_csv.stdout)
    for text in (once.stdout, table.stdout):
        assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f]", text), (
            "a control character reached the terminal"
        )
    assert len(table.stdout.splitlines()) == 1 + len(rows)  # header + one line per reading
    log = setup.log_text()
    assert not any("CRITICAL forged" in line.split(": ", 1)[0] for line in log.splitlines())
    assert not any(line.startswith(("CRITICAL", "2026-01-01")) for line in log.splitlines())
    assert not Path("/tmp/homepoll-pwned").exists()
    assert not Path("/tmp/homepoll-pwned-shell").exists()
    for path in setup.root.rglob("*"):  # nothing was created from a name
        assert "pwned" not in path.name and "Air" not in path.name


# --------------------------------------------------------------------------- systemd

UNIT = ROOT / "systemd" / "homepoll.service"
INSTALL = ROOT / "systemd" / "install.sh"
ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(
    ANALYZE is None, reason="systemd-analyze is not installed (apt-get install systemd)"
)


def _unit_with_existing_binary(tmp_path: Path) -> Path:
    """The unit as shipped, but ExecStart pointing at a program that exists here: verify checks
    that the binary exists, and /opt/homepoll is only there after install.sh."""
    text = UNIT.read_text()
    fake = tmp_path / "homepoll"
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)
    text = text.replace("/opt/homepoll/venv/bin/homepoll", str(fake))
    copy = tmp_path / "homepoll.service"
    copy.write_text(text)
    return copy


@needs_analyze
def test_unit_hardening_score_is_at_most_1_2() -> None:
    result = subprocess.run(
        [ANALYZE, "security", "--offline=true", "--no-pager", str(UNIT)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    score = float(match.group(1))
    assert score <= 1.2, result.stdout
    record_figures("systemd hardening", hardening_score=score)


@needs_analyze
def test_unit_verifies_cleanly(tmp_path) -> None:
    unit = _unit_with_existing_binary(tmp_path)
    result = subprocess.run(
        [ANALYZE, "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "homepoll.service" not in result.stderr, result.stderr


def test_unit_has_the_required_settings() -> None:
    settings: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            settings.setdefault(key.strip(), []).append(value.strip())
    one = {k: v[-1] for k, v in settings.items()}
    assert one["Type"] == "notify"
    assert float(one["WatchdogSec"]) > 0
    assert one["Restart"] == "on-failure"
    assert float(one["RestartSec"]) >= 10
    for key in ("After", "Wants"):
        assert {"network-online.target", "time-sync.target"} <= set(one[key].split())
    assert "kill -HUP $MAINPID" in one["ExecReload"]
    assert one.get("DynamicUser") == "yes" or one.get("User") not in (None, "", "root")
    for key in ("StateDirectory", "LogsDirectory", "ConfigurationDirectory"):
        assert one[key] == "homepoll"
    for key, value in {
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "NoNewPrivileges": "yes",
        "CapabilityBoundingSet": "",
        "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
    }.items():
        assert one[key] == value, key
    assert "@system-service" in settings["SystemCallFilter"]


def test_install_script_parses_and_keeps_user_files() -> None:
    parsed = subprocess.run(["bash", "-n", str(INSTALL)], capture_output=True, text=True)
    assert parsed.returncode == 0, parsed.stderr
    lines = INSTALL.read_text().splitlines()
    assert "set -euo pipefail" in lines
    # The user's config, data and log are removed by one line only, under --purge (what the
    # installer does with them otherwise is run for real in test_install.py).
    removing = [
        n
        for n, line in enumerate(lines)
        if line.strip().startswith(("rm ", "mv "))
        and any(d in line for d in ("$STATE_DIR", "$CONF_DIR", "$LOG_DIR"))
    ]
    assert len(removing) == 1
    assert lines[removing[0] - 1].strip() == 'if [ "$purge" = yes ]; then'


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_install_script_passes_shellcheck() -> None:
    result = subprocess.run(["shellcheck", str(INSTALL)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_readings_output_never_carries_a_secret_from_the_environment(
    hue_sim, setup_factory
) -> None:
    """The key given through the environment (systemd LoadCredential-style) stays out of
    every command's output, including a failing `once`."""
    setup = setup_factory(hue=hue_sim)
    key = hue_sim.key
    (setup.data / "hue_username").unlink()
    hue_sim.faults.queue("redirect_https")
    result = setup.cli("once", HOMEPOLL_HUE_USERNAME=key)
    assert key not in result.stdout + result.stderr
    assert os.environ.get("HOMEPOLL_HUE_USERNAME") is None
