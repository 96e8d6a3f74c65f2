"""Issue 14, acceptance 6 (and issue 11 items 10 and 15): readable `readings` and `latest`.

Known rows go straight into a real database file; the CLI runs as a user would, under
TZ=Europe/Berlin, so local time, offsets and --since are checked against fixed instants.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import sqlite3
from pathlib import Path

import pytest

from homepoll.readout import csv_cell
from homepoll.storage import Storage
from tests.conftest import Setup

BERLIN = {"TZ": "Europe/Berlin"}
# 2026-11-29 01:58:00 UTC = 02:58 in Berlin (CET, +01:00)
T0 = 1_795_917_480_000
SENSORS = [
    (1, "hue", "00:17:88:01:00:00:00:01", "Hall sensor", "temperature", "degC"),
    (2, "hue", "00:17:88:01:00:00:00:01", "Hall sensor", "presence", "bool"),
    (3, "hue", "00:17:88:01:00:00:00:02", '=HYPERLINK("http://x")', "temperature", "degC"),
    (4, "amazon_aqm", "amzn1.alexa.endpoint.a", "@SUM(1+1)*cmd|' /C calc'!A0", "pm25", "ug/m3"),
]


@pytest.fixture
def setup(tmp_path: Path) -> Setup:
    made = Setup(tmp_path, None, None)
    storage = Storage(made.db)
    storage.open()
    storage.close()
    with contextlib.closing(sqlite3.connect(made.db)) as conn, conn:
        conn.executemany("INSERT INTO sensors VALUES (?, ?, ?, ?, ?, ?)", SENSORS)
        rows = []
        for minute in range(0, 60, 10):  # 01:58 .. 02:48 UTC
            ts = T0 + minute * 60_000
            rows += [(1, ts, 21.5, ts), (2, ts, float(minute % 20 == 0), ts), (3, ts, 19.0, ts)]
            rows.append((4, ts, 12.0, ts))
        conn.executemany("INSERT INTO readings VALUES (?, ?, ?, ?)", rows)
    return made


def test_table_has_a_header_local_time_and_yes_no(setup: Setup) -> None:
    result = setup.cli("readings", "--since", "2026-11-29T02:58", "--metric", "presence", **BERLIN)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["time", "(CET)", "name", "metric", "value", "unit"]
    assert lines[1].startswith("2026-11-29 02:58:00  Hall sensor  presence")
    assert lines[1].rstrip().endswith("yes") and lines[2].rstrip().endswith("no")
    assert len(lines) == 1 + 6
    utc = setup.cli(
        "readings", "--since", "2026-11-29T02:58", "--utc", "--metric", "presence", **BERLIN
    )
    assert "(UTC)" in utc.stdout.splitlines()[0]
    assert utc.stdout.splitlines()[1].startswith("2026-11-29 01:58:00")


def test_since_is_local_time(setup: Setup) -> None:
    # 03:38 Berlin = 02:38 UTC: the last two of the six readings per sensor.
    result = setup.cli("readings", "--since", "2026-11-29T03:38", "--format", "json", **BERLIN)
    rows = json.loads(result.stdout)
    assert {row["time"] for row in rows} == {
        "2026-11-29T03:38:00+01:00",
        "2026-11-29T03:48:00+01:00",
    }
    as_utc = setup.cli("readings", "--since", "2026-11-29T02:38Z", "--format", "json", "--utc")
    assert {row["time"] for row in json.loads(as_utc.stdout)} == {
        "2026-11-29T02:38:00+00:00",
        "2026-11-29T02:48:00+00:00",
    }


def test_json_has_iso_times_with_offset_and_true_false(setup: Setup) -> None:
    result = setup.cli("readings", "--since", "2026-11-29T00:00Z", "--format", "json", **BERLIN)
    rows = json.loads(result.stdout)
    presence = [row for row in rows if row["metric"] == "presence"]
    assert presence[0]["value"] is True and presence[1]["value"] is False
    assert presence[0]["time"] == "2026-11-29T02:58:00+01:00"
    assert presence[0]["polled_at"] == "2026-11-29T02:58:00+01:00"
    temperature = next(
        r for r in rows if r["metric"] == "temperature" and r["name"] == "Hall sensor"
    )
    assert temperature["value"] == 21.5 and "ts" not in temperature


def test_csv_iso_offsets_and_formula_cells_neutralised(setup: Setup) -> None:
    result = setup.cli("readings", "--since", "2026-11-29T00:00Z", "--format", "csv", **BERLIN)
    parsed = list(csv.DictReader(io.StringIO(result.stdout, newline="")))
    assert parsed[0]["time"].endswith("+01:00")
    names = {row["name"] for row in parsed}
    assert '\'=HYPERLINK("http://x")' in names and "'@SUM(1+1)*cmd|' /C calc'!A0" in names
    assert not any(name.startswith(("=", "+", "-", "@", "\t", "\r")) for name in names)
    assert {row["value"] for row in parsed if row["metric"] == "presence"} == {"true", "false"}
    for dangerous in ("+1", "-2+3", "\tx", "=1+1"):
        assert csv_cell(dangerous) == "'" + dangerous
    assert csv_cell("\rcmd") == "\\rcmd"  # a CR is escaped before it could start a formula
    assert csv_cell("Hall") == "Hall" and csv_cell("a\x1b[2Jb") == "a\\x1b[2Jb"


def test_unknown_metric_or_sensor_is_a_usage_error_with_the_known_ones(setup: Setup) -> None:
    typo = setup.cli("readings", "--metric", "temprature")
    assert typo.returncode == 64
    assert "did you mean 'temperature'" in typo.stderr
    assert "known: pm25, presence, temperature" in typo.stderr
    sensor = setup.cli("readings", "--sensor", "Hal sensr")
    assert sensor.returncode == 64 and "did you mean 'Hall sensor'" in sensor.stderr
    assert setup.cli("readings", "--sensor", "hall", "--since", "2026-01-01").returncode == 0
    for args in (
        ("readings", "--since", "yesterday"),
        ("readings", "--format", "xml"),
        ("readings", "--bogus"),
        ("once", "--collector", "nope"),
    ):
        result = setup.cli(*args)
        assert result.returncode == 64, (args, result.stderr)
        assert "Traceback" not in result.stderr


def test_latest_shows_every_series_with_its_age(setup: Setup) -> None:
    table = setup.cli("latest", **BERLIN)
    assert table.returncode == 0
    lines = table.stdout.splitlines()
    assert lines[0].split()[:4] == ["name", "metric", "value", "unit"]
    assert len(lines) == 1 + len(SENSORS)
    hall = next(line for line in lines if "presence" in line)
    assert "2026-11-29 03:48:00" in hall and " no " in f"{hall} "
    rows = json.loads(setup.cli("latest", "--format", "json").stdout)
    assert len(rows) == len(SENSORS) and all(row["age_seconds"] > 0 for row in rows)
    as_csv = setup.cli("latest", "--format", "csv").stdout.splitlines()
    assert as_csv[0].startswith("time,source,device_id,name,metric,unit,value,age_seconds")
