"""The command line as a user runs it: real processes, real files, the loopback simulators."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from homepoll.simulator.hue_bridge import HueBridgeSimulator
from tests.conftest import SOURCE, Setup, free_port, wait_for

# (name, config text, key path the single problem line must name)
BAD_CONFIGS = [
    ("word for int", "retry:\n  max_attempts: three\n", "retry.max_attempts"),
    ("zero attempts", "retry:\n  max_attempts: 0\n", "retry.max_attempts"),
    ("negative delay", "retry:\n  initial_delay: -1\n", "retry.initial_delay"),
    ("jitter above 1", "retry:\n  jitter: 1.5\n", "retry.jitter"),
    ("budget above 1", "retry:\n  poll_budget: 2\n", "retry.poll_budget"),
    ("interval below 1", "collectors:\n  hue:\n    interval: 0.5\n", "collectors.hue.interval"),
    ("bool for number", "collectors:\n  hue:\n    interval: true\n", "collectors.hue.interval"),
    ("unknown top key", "colectors: {}\n", "colectors"),
    ("misspelt nested key", "retry:\n  max_atempts: 3\n", "retry.max_atempts"),
    ("bad log level", "log:\n  level: LOUD\n", "log.level"),
    ("bad log format", "log:\n  format: xml\n", "log.format"),
    ("list not mapping", "- a\n- b\n", "mapping"),
    ("empty file", "", "empty"),
    ("yaml syntax", "retry:\n  max_attempts: [1, 2\n", "line"),
    ("bridge url", "collectors:\n  hue:\n    bridge: http://10.0.0.2\n", "collectors.hue.bridge"),
    (
        "override typo",
        "collectors:\n  hue:\n    retry:\n      jiter: 0\n",
        "collectors.hue.retry.jiter",
    ),
    ("bad alert command", "alerts:\n  command: 42\n", "alerts.command"),
    ("negative retention", "storage:\n  retention_days: -3\n", "storage.retention_days"),
    ("web listen without port", "web:\n  listen: 0.0.0.0\n", "web.listen"),
]


def run_cli(*args: str, cwd: Path, stdin: str | None = None, **env: str):
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("HOMEPOLL_")}
    full_env["PYTHONPATH"] = str(SOURCE)
    full_env.update(env)
    return subprocess.run(
        [sys.executable, "-m", "homepoll", *args],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=cwd,
        env=full_env,
        input=stdin,
    )


@pytest.mark.parametrize("command", ["check-config", "run"])
@pytest.mark.parametrize(("name", "text", "key_path"), BAD_CONFIGS, ids=[c[0] for c in BAD_CONFIGS])
def test_bad_config_exits_78_with_one_line_naming_the_key(
    tmp_path: Path, command: str, name: str, text: str, key_path: str
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(text)
    result = run_cli(command, "--config", str(config), cwd=tmp_path, HOMEPOLL_HUE_USERNAME="k" * 20)
    assert result.returncode == 78, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert key_path in lines[0]
    assert lines[0].startswith("homepoll: ")


@pytest.mark.parametrize("command", ["check-config", "run", "once", "status"])
def test_missing_config_file_exits_78(tmp_path: Path, command: str) -> None:
    result = run_cli(command, "--config", str(tmp_path / "nope.yaml"), cwd=tmp_path)
    assert result.returncode == 78
    assert "nope.yaml" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_secret_file_is_a_warning_with_pairing_hint(tmp_path: Path) -> None:
    """Not a config error (issue 11 item 12): the run-time side is in test_credentials.py."""
    (tmp_path / "config.yaml").write_text("collectors:\n  hue:\n    bridge: 127.0.0.1:9\n")
    result = run_cli("check-config", cwd=tmp_path)  # ./config.yaml is the default
    assert result.returncode == 0, result.stderr
    assert result.stderr.startswith("homepoll: warning: collectors.hue.username_file")
    assert "hue-pair" in result.stderr


def test_config_from_environment_variable(tmp_path: Path) -> None:
    config = tmp_path / "elsewhere.yaml"
    config.write_text("collectors:\n  hue:\n    enabled: false\n")
    result = run_cli("check-config", cwd=tmp_path, HOMEPOLL_CONFIG=str(config))
    assert result.returncode == 0, result.stderr
    assert "elsewhere.yaml: valid" in result.stdout


def test_check_config_masks_the_key_and_shows_effective_values(hue_sim, setup_factory) -> None:
    setup: Setup = setup_factory(hue=hue_sim)
    result = setup.cli("check-config")
    assert result.returncode == 0, result.stderr
    assert hue_sim.key not in result.stdout
    assert "***" in result.stdout
    assert str(setup.data / "readings.db") in result.stdout


def test_readings_command_formats_and_filters(hue_sim, setup_factory) -> None:
    setup: Setup = setup_factory(hue=hue_sim)
    assert setup.cli("once").returncode == 0
    as_json = json.loads(
        setup.cli("readings", "--format", "json", "--metric", "temperature").stdout
    )
    assert len(as_json) == 3
    assert {row["unit"] for row in as_json} == {"degC"}
    csv_lines = setup.cli("readings", "--format", "csv", "--sensor", "kitchen").stdout.splitlines()
    assert csv_lines[0].startswith("time,source,device_id,name,metric,unit,value")
    assert len(csv_lines) == 1 + 5 and all("Kitchen" in line for line in csv_lines[1:])
    table = setup.cli("readings", "--since", "2d").stdout
    assert "light_level" in table
    assert "no readings" in setup.cli("readings", "--since", "2099-01-01").stdout
    unknown = setup.cli("readings", "--metric", "nope")
    assert unknown.returncode == 64 and "temperature" in unknown.stderr  # the known ones
    bad = setup.cli("readings", "--since", "yesterday")
    assert bad.returncode == 64
    assert "--since" in bad.stderr


def test_once_at_the_default_commit_interval_reports_what_it_stored(hue_sim, setup_factory) -> None:
    setup: Setup = setup_factory(hue=hue_sim)
    setup.write(storage={"commit_interval": 300})  # the shipped default, not the tests' 0
    first = setup.cli("once")
    assert first.returncode == 0, first.stderr
    stored = setup.query("SELECT COUNT(*) FROM readings_view")[0][0]
    assert stored > 0
    assert f"({stored} new)" in first.stdout
    storage = json.loads((setup.data / "status.json").read_text())["storage"]
    assert (storage["stored"], storage["queued"]) == (stored, 0)
    assert f"{stored} stored since start, 0 waiting" in setup.cli("status").stdout


def test_hue_pair_saves_key_0600_after_button_press(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("collectors:\n  hue:\n    bridge: 127.0.0.1:9\n")
    with HueBridgeSimulator() as sim:
        sim.press_link_button()
        result = run_cli("hue-pair", "--bridge", sim.address, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        key_file = tmp_path / "data" / "hue_username"
        key = key_file.read_text().strip()
        assert sim.key_valid(key)
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        assert key not in result.stdout + result.stderr
        assert f"collectors.hue.bridge: {sim.address}" in result.stdout


def test_hue_pair_without_button_press_exits_1(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("collectors:\n  hue:\n    bridge: 127.0.0.1:9\n")
    with HueBridgeSimulator() as sim:
        result = run_cli("hue-pair", "--bridge", sim.address, "--wait", "1.5", cwd=tmp_path)
    assert result.returncode == 1
    assert "link button" in result.stderr
    assert not (tmp_path / "data" / "hue_username").exists()


def test_hue_pair_unreachable_bridge_exits_1(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("collectors:\n  hue:\n    bridge: 127.0.0.1:9\n")
    result = run_cli(
        "hue-pair", "--bridge", f"127.0.0.1:{free_port()}", "--wait", "1", cwd=tmp_path
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr


def test_simulate_serves_both_apis_until_sigterm(tmp_path: Path) -> None:
    hue_port, aqm_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOMEPOLL_")}
    env["PYTHONPATH"] = str(SOURCE)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "homepoll",
            "simulate",
            "--hue-port",
            str(hue_port),
            "--aqm-port",
            str(aqm_port),
            "--faults",
            "hue.http_503",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    try:

        def up() -> bool:
            try:
                urllib.request.urlopen(
                    f"http://127.0.0.1:{hue_port}/_sim/served", timeout=1
                ).close()
                return True
            except OSError:
                return False

        wait_for(up)
        with pytest.raises(urllib.error.HTTPError) as first:
            urllib.request.urlopen(f"http://127.0.0.1:{hue_port}/api/x/sensors", timeout=2)
        assert first.value.code == 503
        first.value.close()
        body = json.load(
            urllib.request.urlopen(f"http://127.0.0.1:{hue_port}/api/x/sensors", timeout=2)
        )
        assert body[0]["error"]["type"] == 1
        # the link button the banner names can be pressed, and hue-pair then pairs
        press = f"http://127.0.0.1:{hue_port}/_sim/press_button"
        urllib.request.urlopen(urllib.request.Request(press, method="POST"), timeout=2).close()
        (tmp_path / "config.yaml").write_text("collectors:\n  hue:\n    transport: http\n")
        paired = run_cli(
            "hue-pair", "--bridge", f"127.0.0.1:{hue_port}", "--wait", "5", cwd=tmp_path
        )
        assert paired.returncode == 0, paired.stdout + paired.stderr
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        banner = proc.stdout.read()
        assert f"127.0.0.1:{hue_port}" in banner and f"curl -X POST {press}" in banner
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def test_simulate_rejects_a_bad_fault_script(tmp_path: Path) -> None:
    result = run_cli("simulate", "--faults", "hue.meteor_strike", cwd=tmp_path)
    assert result.returncode == 78
    assert "meteor_strike" in result.stderr


def test_version_and_help(tmp_path: Path) -> None:
    assert run_cli("--version", cwd=tmp_path).stdout.startswith("homepoll ")
    helptext = run_cli("--help", cwd=tmp_path).stdout
    for command in (
        "run",
        "once",
        "check-config",
        "status",
        "readings",
        "hue-pair",
        "amazon-cookies",
        "simulate",
        "demo",
    ):
        assert command in helptext


def test_status_without_any_state_exits_2(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("collectors:\n  hue:\n    enabled: false\n")
    result = run_cli("status", cwd=tmp_path)
    assert result.returncode == 2
    started = time.time()
    as_json = json.loads(run_cli("status", "--json", cwd=tmp_path).stdout)
    assert as_json["exit_code"] == 2
    assert time.time() - started < 10
