"""``homepoll demo``: what a newcomer runs first must tell the whole story and lose nothing."""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT, SOURCE
from tests.web_support import get


def test_short_demo_raises_and_clears_the_alert_and_stores_everything(tmp_path: Path) -> None:
    data = tmp_path / "demo"
    proc = subprocess.Popen(
        [sys.executable, "-m", "homepoll", "demo", "--duration", "14", "--data-dir", str(data)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={"PYTHONPATH": str(SOURCE), "PATH": "/usr/bin:/bin"},
        cwd=tmp_path,
    )
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:  # the dashboard is announced early and served while it runs
        seen.append(line)
        found = re.search(r"DASHBOARD: (http://127\.0\.0\.1:\d+/)", line)
        if found:
            status, _, body = get(found.group(1))
            assert status == 200 and b"<h1>homepoll</h1>" in body
            break
    else:
        raise AssertionError("no dashboard URL: " + "".join(seen)[-2000:])
    rest, errors = proc.communicate(timeout=60)
    result = subprocess.CompletedProcess(proc.args, proc.returncode, "".join(seen) + rest, errors)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert "ALERT FILE RAISED" in out
    assert "ALERT FILE CLEARED" in out
    assert "retrying in" in out  # a transient fault was retried
    assert "rate_limited" in out  # the throttled answer was backed off
    assert "0 of them are not stored" in out
    assert not (data / "ALERT_TOKEN_REFRESH_NEEDED.txt").exists()
    conn = sqlite3.connect(data / "readings.db")
    try:
        metrics = {m for (m,) in conn.execute("SELECT DISTINCT metric FROM sensors")}
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        conn.close()
    assert {"temperature", "light_level", "presence", "pm25", "pm10", "voc", "co", "iaq"} <= metrics
    assert "Traceback" not in result.stderr


def test_readme_first_command_sets_up_and_ends_in_the_demo() -> None:
    readme = (ROOT / "README.md").read_text()
    first_block = readme.split("```sh", 1)[1].split("```", 1)[0].strip()
    assert first_block.startswith("python3 -m venv .venv")
    assert first_block.rstrip().endswith("homepoll demo")
