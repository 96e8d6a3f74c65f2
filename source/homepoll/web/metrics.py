"""``/metrics``: current readings and homepoll's own counters, exposed by prometheus-client.

A fresh registry per scrape with one custom collector (prometheus-client's documented way to
expose values that live elsewhere): the readings come from the database, the counters from
the daemon's runners, so nothing is copied into global metric objects between scrapes.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)

# metric -> (Prometheus name, factor to the base unit, help). Base units per the Prometheus
# naming conventions: ratios instead of percent, pascals, grams per cubic metre.
QUANTITIES: dict[str, tuple[str, float, str]] = {
    "temperature": ("homepoll_temperature_celsius", 1.0, "Temperature in degrees Celsius"),
    "humidity": ("homepoll_humidity_ratio", 0.01, "Relative humidity, 0-1"),
    "pressure": ("homepoll_pressure_pascals", 100.0, "Air pressure in pascals"),
    "light_level": ("homepoll_light_lux", 1.0, "Illuminance in lux"),
    "presence": ("homepoll_presence", 1.0, "Presence detected (1) or not (0)"),
    "battery": ("homepoll_battery_ratio", 0.01, "Battery charge, 0-1"),
    "reachable": ("homepoll_reachable", 1.0, "Device reachable (1) or not (0)"),
    "pm25": ("homepoll_pm25_grams_per_cubic_meter", 1e-6, "PM2.5 mass concentration"),
    "pm10": ("homepoll_pm10_grams_per_cubic_meter", 1e-6, "PM10 mass concentration"),
    "voc": ("homepoll_voc_index", 1.0, "Volatile organic compounds index"),
    "iaq": ("homepoll_iaq_index", 1.0, "Indoor air quality index"),
    "co": ("homepoll_co_ratio", 1e-6, "Carbon monoxide, volume fraction (ppm x 1e-6)"),
}
_UNSAFE = re.compile(r"[^a-zA-Z0-9_]+")
LABELS = ["source", "device", "name"]


def quantity(metric: str, unit: str) -> tuple[str, float, str]:
    """The exposition name, factor and help text of a stored metric (unknown ones too)."""
    known = QUANTITIES.get(metric)
    if known:
        return known
    suffix = "" if unit in ("", "index") else "_" + _UNSAFE.sub("_", unit).strip("_").lower()
    name = "homepoll_" + _UNSAFE.sub("_", metric).strip("_").lower() + suffix
    return name, 1.0, f"{metric} ({unit})"


class _Snapshot:
    """prometheus-client custom collector over values gathered for one scrape."""

    def __init__(self, latest: Sequence[dict[str, Any]], state: dict[str, Any]) -> None:
        self.latest = latest
        self.state = state

    def collect(self) -> Iterator[Metric]:
        yield from self._readings()
        yield from self._own()

    def _readings(self) -> Iterator[Metric]:
        families: dict[str, GaugeMetricFamily] = {}
        for row in self.latest:
            name, factor, help_text = quantity(row["metric"], row["unit"])
            family = families.get(name)
            if family is None:
                family = families[name] = GaugeMetricFamily(name, help_text, labels=LABELS)
            family.add_metric(
                [row["source"], row["device_id"], row["name"]],
                float(f"{row['value'] * factor:.12g}"),  # no 0.35000000000000003
            )
        yield from families.values()

    def _own(self) -> Iterator[Metric]:
        runners = self.state.get("collectors", [])
        polls = CounterMetricFamily(
            "homepoll_polls", "Polls by collector and outcome", labels=["collector", "outcome"]
        )
        retries = CounterMetricFamily(
            "homepoll_retries", "Retried attempts within polls", labels=["collector"]
        )
        stored = CounterMetricFamily(
            "homepoll_readings_stored", "New readings stored", labels=["collector"]
        )
        success = GaugeMetricFamily(
            "homepoll_last_success_timestamp_seconds",
            "Unix time of the collector's last successful poll",
            labels=["collector"],
        )
        failures = GaugeMetricFamily(
            "homepoll_consecutive_failures", "Failed polls in a row", labels=["collector"]
        )
        for runner in runners:
            name = runner["name"]
            for outcome, count in sorted(runner.get("outcomes", {}).items()):
                polls.add_metric([name, outcome], count)
            retries.add_metric([name], runner.get("retries", 0))
            stored.add_metric([name], runner.get("readings_stored", 0))
            failures.add_metric([name], runner.get("consecutive_failures", 0))
            if runner.get("last_success") is not None:
                success.add_metric([name], runner["last_success"])
        yield from (polls, retries, stored, success, failures)
        yield GaugeMetricFamily(
            "homepoll_storage_queue_readings",
            "Readings in memory waiting for the next database commit",
            value=self.state.get("queued", 0),
        )
        yield CounterMetricFamily(
            "homepoll_readings_dropped",
            "Readings dropped because the in-memory queue overflowed",
            value=self.state.get("dropped", 0),
        )
        yield GaugeMetricFamily(
            "homepoll_alerts_open",
            "Alert files present in data/",
            value=self.state.get("alerts", 0),
        )
        yield InfoMetricFamily(
            "homepoll", "homepoll build information", value={"version": self.state["version"]}
        )
        if self.state.get("mqtt"):
            yield from _mqtt(self.state["mqtt"])


def _mqtt(mqtt: dict[str, Any]) -> Iterator[Metric]:
    """The broker link (MqttStatus.snapshot()), only while MQTT is on."""
    yield GaugeMetricFamily(
        "homepoll_mqtt_connected",
        "1 while connected to the MQTT broker",
        value=int(bool(mqtt["connected"])),
    )
    yield CounterMetricFamily(
        "homepoll_mqtt_published", "MQTT messages the broker acknowledged", value=mqtt["published"]
    )
    if mqtt.get("last_publish") is not None:
        yield GaugeMetricFamily(
            "homepoll_mqtt_last_publish_timestamp_seconds",
            "Unix time of the broker's last acknowledgement",
            value=mqtt["last_publish"],
        )
    if mqtt.get("events_enabled"):
        yield GaugeMetricFamily(
            "homepoll_mqtt_events_backlog",
            "Stored readings not yet acknowledged as MQTT events",
            value=mqtt.get("backlog") or 0,
        )
        yield CounterMetricFamily(
            "homepoll_mqtt_events_repeated",
            "Events sent again after a lost connection (at-least-once delivery)",
            value=mqtt.get("events_repeated", 0),
        )


def exposition(latest: Sequence[dict[str, Any]], state: dict[str, Any]) -> bytes:
    """The text format for one scrape (run it in a worker thread: it formats every series)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot(latest, state))
    return generate_latest(registry)
