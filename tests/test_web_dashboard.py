"""Issue 14, acceptance 1: the dashboard in a real headless Chromium.

A daemon polls both simulators on top of a day of history; Chromium loads the page at phone
and desktop widths, in light and dark; the DOM must show every device with a current value
it really stored, a chart per quantity with data points, and the page may not have asked
anything of any host but 127.0.0.1. Screenshots land in tmp_path (and in docs/ with
HOMEPOLL_SCREENSHOTS=docs).
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from tests.conftest import ROOT, wait_for
from tests.web_support import DESKTOP, PHONE, chromium, chromium_path, collectors, seed_history

pytestmark = pytest.mark.skipif(
    chromium_path() is None, reason="Debian's chromium is not installed (.ci/run installs it)"
)

# Read in the page: each device card's values, each chart's drawn elements.
DOM_SCRIPT = """(() => ({
  devices: [...document.querySelectorAll('section.device')].map(card => ({
    id: card.dataset.device,
    name: card.querySelector('h3').textContent,
    values: Object.fromEntries([...card.querySelectorAll('tr')].map(
      tr => [tr.dataset.metric, tr.querySelector('td.v').textContent])),
  })),
  charts: [...document.querySelectorAll('figure[data-chart]')].map(f => ({
    chart: f.dataset.chart,
    points: [...f.querySelectorAll('polyline')].reduce(
      (n, line) => n + line.getAttribute('points').trim().split(/\\s+/).length, 0),
    bands: f.querySelectorAll('rect.band').length,
  })),
  collectors: [...document.querySelectorAll('li.collector')].map(li => li.dataset.collector),
  background: getComputedStyle(document.body).backgroundColor,
  width: document.documentElement.scrollWidth,
}))()"""

EXPECTED_CHARTS = {"temperature", "humidity", "light", "pm", "air", "co", "battery", "presence"}


def _number(text: str) -> float:
    match = re.match(r"-?\d+(\.\d+)?", text)
    assert match, f"no number in {text!r}"
    return float(match.group())


def test_dashboard_in_chromium(hue_sim, aqm_sim, setup_factory, daemons, tmp_path: Path) -> None:
    setup = setup_factory(hue=hue_sim, aqm=aqm_sim)
    assert setup.cli("once").returncode == 0  # the sensors exist, so history can be added
    assert seed_history(setup.db) > 1000
    daemons(setup)
    url = setup.web_url
    wait_for(lambda: f"web face at {url}" in setup.log_text(), timeout=30)
    wait_for(
        lambda: (
            [c.get("last_success") for c in collectors(setup).values()].count(None) == 0
            and len(collectors(setup)) == 2
        ),
        timeout=30,
    )

    shots = tmp_path / "screenshots"
    shots.mkdir()
    visits = {}
    with chromium(tmp_path / "profile") as browser:
        for label, size, dark in (
            ("desktop", DESKTOP, False),
            ("phone", PHONE, False),
            ("phone-dark", PHONE, True),
        ):
            visit = browser.visit(url, size, DOM_SCRIPT, dark=dark)
            (shots / f"dashboard-{label}.png").write_bytes(visit.screenshot)
            visits[label] = visit

    for label, visit in visits.items():
        outside = [u for u in visit.requests if not u.startswith("http://127.0.0.1:")]
        assert not outside, f"{label}: the page asked other hosts: {outside}"
        assert visit.requests and visit.requests[0] == url
        assert visit.screenshot.startswith(b"\x89PNG")

    dom = visits["desktop"].dom
    stored = {
        (device_id, metric): {
            value
            for (value,) in setup.query(
                "SELECT value FROM readings_view WHERE device_id = ? AND metric = ?",
                device_id,
                metric,
            )
        }
        for device_id, metric in setup.query("SELECT device_id, metric FROM sensors")
    }
    names = {name for (name,) in setup.query("SELECT DISTINCT name FROM sensors")}
    assert {d["name"] for d in dom["devices"]} == names
    assert {"Hall sensor", "Kitchen sensor", "Air monitor 1"} <= names
    for device in dom["devices"]:
        temperature = device["values"].get("temperature")
        if temperature is None:
            continue
        shown = _number(temperature)
        assert "°C" in temperature
        assert any(abs(shown - v) < 0.051 for v in stored[(device["id"], "temperature")]), device
    charts = {c["chart"]: c for c in dom["charts"]}
    assert set(charts) >= EXPECTED_CHARTS
    for name in EXPECTED_CHARTS - {"presence", "battery"}:
        assert charts[name]["points"] >= 250, charts[name]  # a day of 5-minute buckets
    assert charts["presence"]["bands"] >= 3
    assert set(dom["collectors"]) == {"hue", "amazon_aqm"}
    # The phone layout fits the phone; dark mode really is dark.
    assert visits["phone"].dom["width"] <= PHONE[0]
    light = _rgb(visits["phone"].dom["background"])
    dark = _rgb(visits["phone-dark"].dom["background"])
    assert sum(light) > 600 and sum(dark) < 150

    target = os.environ.get("HOMEPOLL_SCREENSHOTS")
    if target:
        for shot in shots.iterdir():
            shutil.copy(shot, ROOT / target / shot.name)


def _rgb(css: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", css)[:3])
