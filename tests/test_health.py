"""status.json writing/reading and the `homepoll status` verdict, on real files and pids."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from homepoll.health import EXIT_DEGRADED, EXIT_HEALTHY, EXIT_NOT_RUNNING, evaluate, format_status
from homepoll.safetext import register_secret
from homepoll.status_file import StatusFile, read_status

NOW = datetime(2026, 11, 22, 7, 1, 12, tzinfo=UTC)


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()  # reaped: the pid no longer exists
    return proc.pid


def healthy_status(tmp_path: Path, *, now: datetime = NOW) -> StatusFile:
    status = StatusFile(
        tmp_path / "status.json", started_at=now - timedelta(hours=1), now=lambda: now
    )
    status.update_collector(
        "hue",
        state="ok",
        last_success=now - timedelta(minutes=3),
        last_attempt=now - timedelta(minutes=3),
        last_error=None,
        consecutive_failures=0,
        next_poll=now + timedelta(seconds=42),
        readings_stored=1234,
    )
    status.update_collector("amazon_aqm", state="disabled", next_poll=None)
    status.update_storage(queued=0, dropped=0, last_error=None, path=str(tmp_path / "readings.db"))
    assert status.write()
    return status


def test_write_and_read_back(tmp_path: Path):
    status = healthy_status(tmp_path)
    data = read_status(tmp_path / "status.json")
    assert data is not None
    assert data["pid"] == os.getpid()
    assert data["updated_at"] == "2026-11-22T07:01:12Z"
    assert data["started_at"] == "2026-11-22T06:01:12Z"
    assert isinstance(data["version"], str)
    hue = data["collectors"]["hue"]
    assert hue["last_success"] == "2026-11-22T06:58:12Z"
    assert hue["next_poll"] == "2026-11-22T07:01:54Z"
    assert hue["readings_stored"] == 1234
    assert data["storage"]["queued"] == 0
    assert data == status.to_dict()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["status.json"]  # no temp files left


def test_keep_existing_preserves_other_collectors(tmp_path: Path):
    healthy_status(tmp_path)
    once = StatusFile(tmp_path / "status.json", keep_existing=True, now=lambda: NOW, pid=99999999)
    once.update_collector("amazon_aqm", state="ok", readings_stored=5)
    once.write()
    data = read_status(tmp_path / "status.json")
    assert data["collectors"]["hue"]["readings_stored"] == 1234
    assert data["collectors"]["amazon_aqm"] == {
        "state": "ok",
        "next_poll": None,
        "readings_stored": 5,
    }
    assert data["pid"] == 99999999

    owner = StatusFile(
        tmp_path / "status.json", keep_existing=True, keep_owner=True, now=lambda: NOW
    )
    owner.write()
    assert read_status(tmp_path / "status.json")["pid"] == 99999999  # a running daemon stays owner

    fresh = StatusFile(tmp_path / "status.json", now=lambda: NOW)
    fresh.write()
    assert read_status(tmp_path / "status.json")["collectors"] == {}


def test_read_status_missing_or_garbage(tmp_path: Path):
    path = tmp_path / "status.json"
    assert read_status(path) is None
    path.write_text("{not json")
    assert read_status(path) is None
    path.write_text("[1, 2]")
    assert read_status(path) is None
    path.write_bytes(b"\xff\xfe")
    assert read_status(path) is None


def test_write_failure_is_reported_not_raised(tmp_path: Path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert StatusFile(blocker / "status.json", now=lambda: NOW).write() is False


def test_evaluate_healthy(tmp_path: Path):
    healthy_status(tmp_path)
    code, lines = evaluate(read_status(tmp_path / "status.json"), tmp_path, NOW)
    assert code == EXIT_HEALTHY, lines
    assert lines[0].startswith("healthy")


def test_evaluate_missing_file(tmp_path: Path):
    code, lines = evaluate(read_status(tmp_path / "status.json"), tmp_path, NOW)
    assert code == EXIT_NOT_RUNNING
    assert "no status file" in lines[0]


def test_evaluate_dead_pid(tmp_path: Path):
    healthy_status(tmp_path)
    data = read_status(tmp_path / "status.json")
    data["pid"] = dead_pid()
    code, lines = evaluate(data, tmp_path, NOW)
    assert code == EXIT_NOT_RUNNING
    assert "not alive" in lines[0]
    data["pid"] = None
    assert evaluate(data, tmp_path, NOW)[0] == EXIT_NOT_RUNNING


def test_evaluate_other_users_pid_counts_as_alive(tmp_path: Path):
    healthy_status(tmp_path)
    data = read_status(tmp_path / "status.json")
    data["pid"] = 1  # init: alive, possibly another user's (PermissionError) -> still running
    assert evaluate(data, tmp_path, NOW)[0] == EXIT_HEALTHY


def test_evaluate_stale(tmp_path: Path):
    healthy_status(tmp_path)
    data = read_status(tmp_path / "status.json")
    # next poll was due at +42 s; within the 120 s grace it is fine, after it the daemon is hung
    assert evaluate(data, tmp_path, NOW + timedelta(seconds=150))[0] == EXIT_HEALTHY
    code, lines = evaluate(data, tmp_path, NOW + timedelta(seconds=170))
    assert code == EXIT_NOT_RUNNING
    assert lines[0].startswith("stale")
    # without any scheduled poll, one hour without an update is stale
    for entry in data["collectors"].values():
        entry["next_poll"] = None
    assert evaluate(data, tmp_path, NOW + timedelta(minutes=59))[0] == EXIT_HEALTHY
    assert evaluate(data, tmp_path, NOW + timedelta(minutes=61))[0] == EXIT_NOT_RUNNING
    data["updated_at"] = "garbage"
    assert evaluate(data, tmp_path, NOW)[0] == EXIT_NOT_RUNNING


@pytest.mark.parametrize("state", ["auth_failed", "failing"])
def test_evaluate_degraded_collector(tmp_path: Path, state: str):
    status = healthy_status(tmp_path)
    status.update_collector(
        "hue", state=state, last_error="unauthorized user", consecutive_failures=4
    )
    status.write()
    code, lines = evaluate(read_status(tmp_path / "status.json"), tmp_path, NOW)
    assert code == EXIT_DEGRADED
    assert f"collector hue is {state}: unauthorized user" in lines


def test_evaluate_retrying_is_not_degraded(tmp_path: Path):
    status = healthy_status(tmp_path)
    status.update_collector("hue", state="retrying", consecutive_failures=1)
    status.write()
    assert evaluate(read_status(tmp_path / "status.json"), tmp_path, NOW)[0] == EXIT_HEALTHY


def test_evaluate_alert_file_present(tmp_path: Path):
    healthy_status(tmp_path)
    (tmp_path / "ALERT_TOKEN_REFRESH_NEEDED.txt").write_text("x")
    code, lines = evaluate(read_status(tmp_path / "status.json"), tmp_path, NOW)
    assert code == EXIT_DEGRADED
    assert any("ALERT_TOKEN_REFRESH_NEEDED.txt" in line for line in lines)


@pytest.mark.parametrize(
    "fields",
    [
        {"queued": 12, "last_error": "database is locked"},
        {"dropped": 3},
        {"last_error": "database or disk is full"},
    ],
)
def test_evaluate_storage_trouble(tmp_path: Path, fields: dict):
    status = healthy_status(tmp_path)
    status.update_storage(**fields)
    status.write()
    assert evaluate(read_status(tmp_path / "status.json"), tmp_path, NOW)[0] == EXIT_DEGRADED


def test_readings_waiting_for_a_batched_commit_are_healthy(tmp_path: Path):
    status = healthy_status(tmp_path)
    status.update_storage(queued=40, dropped=0, last_error=None)
    status.write()
    assert evaluate(read_status(tmp_path / "status.json"), tmp_path, NOW)[0] == 0


def test_dead_daemon_wins_over_degraded(tmp_path: Path):
    status = healthy_status(tmp_path)
    status.update_collector("hue", state="auth_failed")
    status.pid = dead_pid()
    status.write()
    code, lines = evaluate(read_status(tmp_path / "status.json"), tmp_path, NOW)
    assert code == EXIT_NOT_RUNNING
    assert "collector hue is auth_failed" in lines


def test_format_status_text(tmp_path: Path):
    secret = "hue-key-7f3a9c1e55"
    register_secret(secret)
    status = healthy_status(tmp_path)
    status.update_collector("hue", last_error=f"GET /api/{secret}/sensors: refused")
    status.write()
    data = read_status(tmp_path / "status.json")
    assert secret not in json.dumps(data)  # redacted before it reached the disk
    data["collectors"]["hue"]["last_error"] = f"raw {secret}"  # defensive on output too
    (tmp_path / "ALERT_HUE_AUTH_NEEDED.txt").write_text("x")
    evaluation = evaluate(data, tmp_path, NOW)
    summary = {
        "size_bytes": 3 * 1024 * 1024,
        "readings": 5678,
        "newest_ts": int((NOW - timedelta(minutes=2)).timestamp() * 1000),
    }
    text = format_status(data, evaluation, summary, now=NOW)
    assert secret not in text
    assert text.startswith("homepoll: degraded")
    assert "ALERT_HUE_AUTH_NEEDED.txt" in text
    (hue_line,) = [line for line in text.splitlines() if line.strip().startswith("hue ")]
    assert "ok" in hue_line
    assert "last success 3 min ago" in hue_line
    assert "0 consecutive failures" in hue_line
    assert "next poll in 42 s" in hue_line
    assert "1234 readings stored" in hue_line
    assert "last error: raw ***" in text
    assert "3.0 MB" in text
    assert "5678 readings" in text
    assert "2026-11-22T06:59:12Z (2 min ago)" in text


def test_format_status_without_file(tmp_path: Path):
    evaluation = evaluate(None, tmp_path, NOW)
    text = format_status(None, evaluation, None, now=NOW)
    assert text.startswith("homepoll: not running")


def test_write_is_one_line_of_json_world_readable_and_recreates_its_folder(tmp_path: Path):
    status = healthy_status(tmp_path / "gone")  # the folder does not exist yet
    path = tmp_path / "gone" / "status.json"
    text = path.read_text()
    assert text.endswith("\n") and text.count("\n") == 1
    assert json.loads(text) == status.to_dict()
    assert path.stat().st_mode & 0o777 == 0o644
    for _ in range(3):  # rewritten in place of the old file, no temporary files left behind
        assert status.write()
    assert sorted(p.name for p in path.parent.iterdir()) == ["status.json"]


@pytest.mark.parametrize(
    "content",
    [b"", b"\0" * 4096, b'{"pid": 12, "collectors": {"hue": {"sta', b"\xff\xfe", b"[]"],
    ids=["empty", "zeros", "truncated", "not-utf8", "not-an-object"],
)
def test_status_of_an_unreadable_file_says_so_cleanly(tmp_path: Path, content: bytes):
    """What a power cut can leave of a status.json written without fsync."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "status.json").write_bytes(content)
    status = read_status(data / "status.json")
    assert status is None
    code, lines = evaluate(status, data, NOW)
    assert code == EXIT_NOT_RUNNING
    assert "is unreadable" in lines[0] and str(data / "status.json") in lines[0]
    assert format_status(status, (code, lines), None, now=NOW).startswith(
        "homepoll: not running or just started: status file"
    )
    # end to end: the command prints the verdict and exits 2, no traceback
    (tmp_path / "config.yaml").write_text(
        "data_dir: data\ncollectors:\n  hue:\n    enabled: false\n"
    )
    source = Path(__file__).resolve().parents[1] / "source"
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOMEPOLL_")}
    env["PYTHONPATH"] = str(source)
    result = subprocess.run(
        [sys.executable, "-m", "homepoll", "status"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
        env=env,
    )
    assert result.returncode == EXIT_NOT_RUNNING, result.stderr
    assert "is unreadable" in result.stdout
    assert "Traceback" not in result.stderr


def test_format_status_survives_fields_of_the_wrong_type(tmp_path: Path):
    status = {
        "pid": os.getpid(),
        "updated_at": "2026-11-22T07:01:12Z",
        "collectors": {"hue": {"state": ["ok"], "next_poll": 5}},
        "storage": {"queued": "x"},
    }
    evaluation = evaluate(status, tmp_path, NOW)
    assert "hue" in format_status(status, evaluation, None, now=NOW)
