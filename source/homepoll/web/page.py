"""The dashboard's HTML: state strip, device cards, one chart per quantity.

Everything shown that came from a source (names, errors, alert text) goes through
``html.escape``; no secret is ever in the data handed to this module (collector states carry
redacted errors, alert files are written redacted).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from html import escape
from typing import Any

from homepoll.web import charts
from homepoll.web.queries import RANGES, Range, Series, is_yes_no

# Quantities drawn together: (chart id, title, metrics). Anything else gets a chart of its own.
GROUPS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("temperature", "Temperature", ("temperature",)),
    ("humidity", "Humidity", ("humidity",)),
    ("pressure", "Pressure", ("pressure",)),
    ("light", "Light", ("light_level",)),
    ("pm", "PM2.5 / PM10", ("pm25", "pm10")),
    ("air", "VOC / IAQ", ("voc", "iaq")),
    ("co", "CO", ("co",)),
    ("battery", "Battery", ("battery",)),
    ("presence", "Presence", ("presence",)),
)
UNIT_TEXT = {"degC": "°C", "ug/m3": "µg/m³", "bool": "", "index": ""}
METRIC_LABELS = {
    "temperature": "Temperature",
    "humidity": "Humidity",
    "pressure": "Pressure",
    "light_level": "Light",
    "presence": "Presence",
    "battery": "Battery",
    "reachable": "Reachable",
    "pm25": "PM2.5",
    "pm10": "PM10",
    "voc": "VOC",
    "iaq": "IAQ",
    "co": "CO",
}
HELD_METRICS = ("battery", "reachable")
STALE_SECONDS = 1800  # a value older than this shows its age even on a phone
STATE_CLASS = {"ok": "ok", "retrying": "warn", "failing": "bad", "auth_failed": "bad"}


@dataclass
class Dashboard:
    """What one page shows; built off the event loop by ``homepoll.web.app``."""

    view: Range
    now_ms: int
    version: str
    collectors: list[dict[str, Any]] = field(default_factory=list)
    mqtt: dict[str, Any] | None = None  # MqttStatus.snapshot() when MQTT is on
    alerts: list[tuple[str, str]] = field(default_factory=list)  # (file name, first lines)
    notices: list[str] = field(default_factory=list)
    latest: list[dict[str, Any]] = field(default_factory=list)
    series: list[Series] = field(default_factory=list)


def value_text(value: float, unit: str) -> str:
    """A reading as a person reads it: "21.4 °C", "yes", "12 lux"."""
    if is_yes_no(unit):
        return "yes" if value else "no"
    shown = f"{value:.1f}" if abs(value) < 100 and value != int(value) else f"{value:.0f}"
    suffix = UNIT_TEXT.get(unit, unit)
    return f"{shown} {suffix}".strip()


def metric_label(metric: str) -> str:
    return METRIC_LABELS.get(metric, metric.replace("_", " ").capitalize())


def age_text(seconds: float) -> str:
    """Compact: "now", "4 min", "3 h", "2 d"."""
    seconds = max(0.0, seconds)
    if seconds < 45:
        return "now"
    if seconds < 5400:
        return f"{max(1, round(seconds / 60))} min"
    if seconds < 36 * 3600:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} d"


def _collector_strip(data: Dashboard) -> str:
    items = []
    now = time.time()
    for entry in data.collectors:
        state = str(entry.get("state", "?"))
        success = entry.get("last_success")
        seen = f"last success {age_text(now - success)} ago" if success else "no success yet"
        seen = seen.replace("now ago", "just now")
        error = entry.get("last_error")
        detail = f'<div class="err">{escape(str(error))}</div>' if error else ""
        items.append(
            f'<li class="collector {STATE_CLASS.get(state, "warn")}" '
            f'data-collector="{escape(entry["name"])}"><b>{escape(entry["name"])}</b> '
            f'<span class="state">{escape(state)}</span> <small>{seen}</small>{detail}</li>'
        )
    if data.mqtt is not None:
        items.append(_mqtt_item(data.mqtt, now))
    for name, text in data.alerts:
        items.append(
            f'<li class="alert bad" data-alert="{escape(name)}"><b>{escape(name)}</b>'
            f"<pre>{escape(text)}</pre></li>"
        )
    items += [f'<li class="alert warn">{escape(line)}</li>' for line in data.notices]
    return f'<ul class="strip">{"".join(items)}</ul>'


def _mqtt_item(mqtt: dict[str, Any], now: float) -> str:
    """The broker link: connected or not, the events backlog, the last acknowledged publish."""
    connected = bool(mqtt.get("connected"))
    last = mqtt.get("last_publish")
    seen = f"last publish {age_text(now - last)} ago" if last else "nothing published yet"
    parts = [seen.replace("now ago", "just now")]
    if mqtt.get("events_enabled"):
        parts.append(f"backlog {int(mqtt.get('backlog') or 0)}")
    error = mqtt.get("last_error") if not connected else None
    detail = f'<div class="err">{escape(str(error))}</div>' if error else ""
    return (
        f'<li class="collector {"ok" if connected else "bad"}" data-mqtt="'
        f'{"connected" if connected else "disconnected"}"><b>MQTT</b> '
        f'<span class="state">{"connected" if connected else "not connected"}</span> '
        f"<small>{escape(str(mqtt.get('broker', '')))} · {' · '.join(parts)}</small>{detail}</li>"
    )


def _device_cards(data: Dashboard) -> str:
    devices: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in data.latest:
        devices.setdefault((row["source"], row["device_id"]), []).append(row)
    cards = []
    for (source, device_id), rows in sorted(devices.items(), key=lambda kv: kv[1][0]["name"]):
        name = rows[0]["name"]
        lines = []
        newest = max(row["ts"] for row in rows)
        for row in sorted(rows, key=lambda r: r["metric"]):
            # Battery and reachable are stored only when they change: confirmed by every poll,
            # so they are as fresh as the device's newest reading.
            held = row["metric"] in HELD_METRICS
            age = (data.now_ms - (newest if held else row["ts"])) / 1000
            label = escape(metric_label(row["metric"]))
            stale = ' class="stale"' if age > STALE_SECONDS else ""
            lines.append(
                f'<tr data-metric="{escape(row["metric"])}"{stale}><th>{label}</th>'
                f'<td class="v">{escape(value_text(row["value"], row["unit"]))}</td>'
                f'<td class="age">{age_text(age)}</td></tr>'
            )
        seen = age_text(data.now_ms / 1000 - newest / 1000)
        cards.append(
            f'<section class="device" data-device="{escape(device_id)}">'
            f"<h3>{escape(name)}</h3><small>{escape(source)} · "
            f"{'updated now' if seen == 'now' else f'updated {seen} ago'}</small>"
            f"<table>{''.join(lines)}</table></section>"
        )
    if not cards:
        return '<p class="empty">No readings yet: the first poll is on its way.</p>'
    return f'<div class="devices">{"".join(cards)}</div>'


def _groups(series: Sequence[Series]) -> Iterable[tuple[str, str, list[Series]]]:
    used: set[str] = set()
    for chart_id, title, metrics in GROUPS:
        chosen = [s for s in series if s.metric in metrics]
        used.update(metrics)
        if chosen:
            yield chart_id, title, chosen
    for metric in sorted({s.metric for s in series} - used):
        if metric == "reachable":
            continue  # shown by the collector strip and the device cards, not worth a chart
        yield (
            metric,
            metric.replace("_", " ").capitalize(),
            [s for s in series if s.metric == metric],
        )


def _charts(data: Dashboard) -> str:
    figures = []
    for chart_id, title, chosen in _groups(data.series):
        unit = UNIT_TEXT.get(chosen[0].unit, chosen[0].unit)
        if all(is_yes_no(s.unit) for s in chosen):
            svg = charts.band_chart(title, chosen, data.view, data.now_ms, chart_id)
            legend = ""
        else:
            svg = charts.line_chart(title, chosen, data.view, data.now_ms, chart_id)
            mixed = len({c.metric for c in chosen}) > 1
            legend = "".join(
                f'<li><i class="c{i % charts.PALETTE}"></i>{escape(s.name)}'
                + (f" {escape(metric_label(s.metric))}" if mixed else "")
                + "</li>"
                for i, s in enumerate(chosen)
            )
            legend = f'<ul class="legend">{legend}</ul>'
        caption = f"{escape(title)} <small>{escape(unit)}</small>" if unit else escape(title)
        points = sum(len(s.points) for s in chosen)
        figures.append(
            f'<figure class="card" data-chart="{chart_id}" data-points="{points}">'
            f"<figcaption>{caption}</figcaption>{svg}{legend}</figure>"
        )
    return f'<div class="charts">{"".join(figures)}</div>' if figures else ""


def _range_links(view: Range) -> str:
    links = []
    for key, other in RANGES.items():
        current = ' aria-current="page"' if key == view.key else ""
        links.append(f'<a href="/?range={key}"{current}>{escape(other.label)}</a>')
    return f'<nav class="ranges">{"".join(links)}</nav>'


def render(data: Dashboard, stylesheet: str) -> str:
    """The whole page: no script, no external resource, refreshes itself every minute."""
    updated = datetime.fromtimestamp(data.now_ms / 1000).astimezone().strftime("%H:%M")
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="color-scheme" content="light dark">'
        f'<meta http-equiv="refresh" content="60"><title>homepoll</title>'
        f"<style>{stylesheet}</style></head><body>"
        f'<header><h1>homepoll</h1><span class="updated">updated {updated}</span>'
        f"{_range_links(data.view)}</header><main>"
        f"{_collector_strip(data)}{_device_cards(data)}{_charts(data)}</main>"
        f'<footer>homepoll {escape(data.version)} · <a href="/metrics">metrics</a> · '
        '<a href="/api/latest">latest (JSON)</a> · <a href="/healthz">health</a></footer>'
        "</body></html>"
    )
