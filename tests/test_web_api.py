"""Issue 14, acceptance 2 and 3-4's edges: /metrics, the JSON API, /healthz, on and off.

The real daemon serves; every answer is checked against the database file it wrote.
"""

from __future__ import annotations

import json
import re
import socket
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from homepoll.simulator.hue_bridge import HueBridgeSimulator
from homepoll.storage import latest_readings
from homepoll.web.metrics import quantity
from tests.conftest import wait_for
from tests.web_support import collectors, get


@pytest.fixture
def steady_hue():
    """A bridge whose values do not move for an hour: the newest values stay the newest."""
    with HueBridgeSimulator(update_period=3600.0) as sim:
        yield sim


def _scrape(url: str) -> dict[str, dict[tuple, float]]:
    status, headers, body = get(url + "metrics")
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    found: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            found.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def _polls(setup) -> int:
    """Successful polls so far (a poll that timed out on a loaded machine stored nothing)."""
    return sum(c.get("outcomes", {}).get("ok", 0) for c in collectors(setup).values())


def test_metrics_hold_every_series_and_counters_move(steady_hue, setup_factory, daemons) -> None:
    setup = setup_factory(hue=steady_hue)
    daemons(setup)
    wait_for(lambda: _polls(setup) >= 2, timeout=30)
    first = _scrape(setup.web_url)
    latest = latest_readings(setup.db)
    assert len(latest) >= 15  # 3 sensors x (temperature, light, presence, battery, reachable)
    for row in latest:
        name, factor, _ = quantity(row["metric"], row["unit"])
        labels = (("device", row["device_id"]), ("name", row["name"]), ("source", row["source"]))
        assert first[name][labels] == pytest.approx(row["value"] * factor), (name, labels)
    assert "homepoll_temperature_celsius" in first and "homepoll_humidity_ratio" not in first
    polls_before = first["homepoll_polls_total"][(("collector", "hue"), ("outcome", "ok"))]
    assert polls_before >= 1
    assert first["homepoll_info"][(("version", _version()),)] == 1
    assert first["homepoll_alerts_open"][()] == 0
    assert first["homepoll_last_success_timestamp_seconds"][(("collector", "hue"),)] > 1e9
    assert (("collector", "hue"),) in first["homepoll_readings_stored_total"]
    assert (("collector", "hue"),) in first["homepoll_retries_total"]
    assert () in first["homepoll_storage_queue_readings"]

    target = _polls(setup) + 2
    wait_for(lambda: _polls(setup) >= target, timeout=30)
    second = _scrape(setup.web_url)
    assert second["homepoll_polls_total"][(("collector", "hue"), ("outcome", "ok"))] > polls_before
    assert (
        second["homepoll_last_success_timestamp_seconds"][(("collector", "hue"),)]
        > first["homepoll_last_success_timestamp_seconds"][(("collector", "hue"),)]
    )


def _version() -> str:
    from homepoll import __version__

    return __version__


def test_api_and_healthz_answer_from_the_database(hue_sim, setup_factory, daemons) -> None:
    setup = setup_factory(hue=hue_sim)
    daemons(setup)
    url = setup.web_url
    wait_for(lambda: _polls(setup) >= 1, timeout=30)

    status, headers, body = get(url + "api/latest")
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    served = {(r["device_id"], r["metric"]) for r in json.loads(body)}
    assert served == {(r["device_id"], r["metric"]) for r in latest_readings(setup.db)}

    status, headers, body = get(url + "api/readings?since=1h&metric=temperature&format=csv")
    assert status == 200 and headers["Content-Type"].startswith("text/csv")
    lines = body.decode().splitlines()
    assert lines[0].startswith("time,source,device_id,name,metric,unit,value")
    assert len(lines) > 1 and all(",temperature,degC," in line for line in lines[1:])

    status, _, body = get(url + "api/readings?metric=temprature")
    assert status == 400 and b"did you mean 'temperature'" in body

    status, _, body = get(url + "healthz")
    assert status == 200 and body.startswith(b"healthy")
    (setup.data / "ALERT_HUE_OFFLINE.txt").write_text("homepoll: test\n")
    status, _, body = get(url + "healthz")
    assert status == 503 and b"ALERT_HUE_OFFLINE.txt" in body

    status, headers, _ = get(url)
    assert status == 200 and "default-src 'none'" in headers["Content-Security-Policy"]
    for path in ("", "?range=1y", "metrics", "api/latest", "api/readings?since=1d", "healthz"):
        assert hue_sim.key.encode() not in get(url + path)[2], path  # never a secret
    assert get(url + "nothing-here")[0] == 404
    with socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1].strip("/")))) as sock:
        sock.sendall(b"POST /api/latest HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 405")


def _mapped(pid: int) -> str:
    return Path(f"/proc/{pid}/maps").read_text()


def test_web_off_loads_nothing_and_a_taken_port_is_one_error(
    hue_sim, setup_factory, daemons
) -> None:
    setup = setup_factory(hue=hue_sim)
    setup.write(web={"enabled": False})
    daemon = daemons(setup)
    wait_for(lambda: _polls(setup) >= 1, timeout=30)
    maps = _mapped(daemon.proc.pid)
    assert "aiohttp" not in maps and "multidict" not in maps  # not even imported
    assert daemon.stop() == 0

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        setup.write(web={"enabled": True, "listen": f"127.0.0.1:{port}"})
        daemon = daemons(setup)
        polls = _polls(setup)
        wait_for(lambda: _polls(setup) >= polls + 2, timeout=30)  # polling goes on
        log = setup.log_text()
        errors = [line for line in log.splitlines() if " ERROR homepoll.web" in line]
        assert len(errors) == 1 and "port is in use" in errors[0] and str(port) in errors[0]
        assert "aiohttp" in _mapped(daemon.proc.pid)  # it was on, and tried
        assert daemon.stop() == 0


def test_bad_listen_is_a_config_error(tmp_path: Path) -> None:
    from tests.conftest import Setup

    setup = Setup(tmp_path, None, None)
    setup.write(web={"listen": "127.0.0.1:99999"})
    result = setup.cli("run")
    assert result.returncode == 78
    assert "web.listen" in result.stderr and "Traceback" not in result.stderr


def test_current_values_include_readings_waiting_for_the_commit(
    hue_sim, setup_factory, daemons
) -> None:
    """At the shipped commit_interval (300 s) the database lags; the page and API do not."""
    setup = setup_factory(hue=hue_sim)
    setup.write(storage={"commit_interval": 300})
    daemons(setup)
    wait_for(lambda: _polls(setup) >= 4, timeout=30)
    api = json.loads(get(setup.web_url + "api/latest")[2])
    newest_api = max(row["time"] for row in api if row["metric"] == "temperature")
    stored = setup.query("SELECT max(ts) FROM readings_view WHERE metric = 'temperature'")
    newest_db = stored[0][0] if stored and stored[0][0] else 0
    from homepoll.readout import iso_time

    assert newest_api > iso_time(newest_db), (newest_api, newest_db)
    cli = json.loads(setup.cli("latest", "--format", "json").stdout)
    assert max(row["time"] for row in cli if row["metric"] == "temperature") >= newest_api
    metrics = get(setup.web_url + "metrics")[2].decode()
    assert "homepoll_temperature_celsius{" in metrics
    page = get(setup.web_url)[2].decode()  # the charts draw the waiting readings too
    drawn = re.search(r'data-chart="temperature" data-points="(\d+)"', page)
    assert drawn and int(drawn.group(1)) >= 3, page[-500:]
    from homepoll.storage.waiting import spool_of
    from homepoll.web.queries import RANGES, chart_series

    spool = spool_of(setup.data)
    assert spool is not None
    now_ms = int(time.time() * 1000)

    def temperature_points(**kw) -> list:
        series = chart_series(setup.db, RANGES["24h"], now_ms, **kw)
        return [s.points for s in series if s.metric == "temperature"]

    assert temperature_points(spool=spool) != temperature_points()  # newer values averaged in
