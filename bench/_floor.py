"""The floor for CPU per poll: the same HTTP requests as homepoll, with nothing of ours.

A plain loop: http.client GET of the bridge's sensors (and, with --aqm, the same GraphQL
state POST homepoll sends), json.loads, the values picked out, one executemany
``INSERT OR IGNORE`` into the same schema, commit. Runs at the same cadence as the daemon
(so caches are as cold as the daemon's) and reports its own CPU from /proc/self/stat and
schedstat over the measured rounds, as one JSON line.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import sqlite3
import sys
import time
from datetime import UTC, datetime
from urllib.parse import urlsplit

from _proc import cpu_seconds, schedstat_ns

HUE_TYPES = {
    "ZLLPresence": ("presence", "presence"),
    "ZLLLightLevel": ("light_level", "lightlevel"),
    "ZLLTemperature": ("temperature", "temperature"),
}
STATE_QUERY = (
    "query getEndpointState($endpointIds: [String]!) { listEndpoints(listEndpointsInput: "
    "{latencyTolerance: LOW, endpointIds: $endpointIds, includeHouseholdDevices: true}) "
    "{ endpoints { endpointId: id features { name instance properties { name __typename "
    "... on RangeValue { rangeValue { value } timeOfSample } "
    "... on TemperatureSensor { value { value scale } timeOfSample } } } } } }"
)
DISCOVERY_QUERY = (
    'query { listEndpoints(listEndpointsInput: {displayCategory: "AIR_QUALITY_MONITOR"}) '
    "{ endpoints { endpointId: id } } }"
)


def ms(text: str) -> int:
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def hue_rows(sensors: dict, sensor_id, now: int) -> list[tuple]:
    """The floor's parse: pick each mapped sensor's value and time, convert units."""
    rows = []
    for item in sensors.values():
        mapped = HUE_TYPES.get(item.get("type"))
        if mapped is None:
            continue
        metric, field = mapped
        state = item["state"]
        value = state.get(field)
        if value is None or state.get("lastupdated") in (None, "none"):
            continue
        if metric == "temperature":
            value = value / 100
        elif metric == "light_level":
            value = round(10 ** ((value - 1) / 10000), 2)
        else:
            value = 1.0 if value else 0.0
        sid = sensor_id("hue", item["uniqueid"][:23], metric)
        rows.append((sid, ms(state["lastupdated"]), float(value), now))
    return rows


class Floor:
    def __init__(self, args: argparse.Namespace) -> None:
        self.hue = args.hue
        self.key = args.key
        self.db = sqlite3.connect(args.db, isolation_level=None)
        self.db.execute("PRAGMA journal_mode = WAL")
        self.db.execute("PRAGMA synchronous = NORMAL")
        self.ids: dict[tuple[str, str, str], int] = {}
        self.aqm = None
        if args.aqm_url:
            url = urlsplit(args.aqm_url)
            self.aqm = http.client.HTTPConnection(url.netloc, timeout=10)
            with open(args.cookies) as handle:
                cookies = json.load(handle)
            self.headers = {
                "Content-Type": "application/json",
                "csrf": cookies["csrf"],
                "Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items()),
            }
            answer = self.graphql({"query": DISCOVERY_QUERY, "variables": {}})
            endpoints = answer["data"]["listEndpoints"]["endpoints"]
            self.endpoints = [e["endpointId"] for e in endpoints]

    def graphql(self, payload: dict) -> dict:
        assert self.aqm is not None
        self.aqm.request(
            "POST", "/nexus/v1/graphql", body=json.dumps(payload).encode(), headers=self.headers
        )
        return json.loads(self.aqm.getresponse().read())

    def sensor_id(self, source: str, device: str, metric: str) -> int:
        key = (source, device, metric)
        found = self.ids.get(key)
        if found is None:
            self.db.execute(
                "INSERT OR IGNORE INTO sensors (source, device_id, name, metric, unit)"
                " VALUES (?, ?, ?, ?, '')",
                (source, device, device, metric),
            )
            found = self.db.execute(
                "SELECT id FROM sensors WHERE source = ? AND device_id = ? AND metric = ?", key
            ).fetchone()[0]
            self.ids[key] = found
        return found

    def round(self) -> int:
        now = int(time.time() * 1000)
        conn = http.client.HTTPConnection(self.hue, timeout=10)
        conn.request("GET", f"/api/{self.key}/sensors")
        sensors = json.loads(conn.getresponse().read())
        conn.close()
        rows = hue_rows(sensors, self.sensor_id, now)
        if self.aqm is not None:
            answer = self.graphql(
                {"query": STATE_QUERY, "variables": {"endpointIds": self.endpoints}}
            )
            for endpoint in answer["data"]["listEndpoints"]["endpoints"]:
                for feature in endpoint["features"]:
                    metric = feature["instance"] or feature["name"]
                    for prop in feature["properties"]:
                        if "rangeValue" in prop:
                            value = prop["rangeValue"]["value"]
                        elif prop.get("__typename") == "TemperatureSensor":
                            value = prop["value"]["value"]
                        else:
                            continue
                        sid = self.sensor_id("amazon_aqm", endpoint["endpointId"], metric)
                        rows.append((sid, ms(prop["timeOfSample"]), float(value), now))
        self.db.execute("BEGIN")
        self.db.executemany(
            "INSERT OR IGNORE INTO readings (sensor_id, ts, value, polled_at) VALUES (?, ?, ?, ?)",
            rows,
        )
        self.db.execute("COMMIT")
        return len(rows)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hue", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--aqm-url")
    parser.add_argument("--cookies")
    parser.add_argument("--db", required=True)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--interval", type=float, default=1.0)
    args = parser.parse_args()
    floor = Floor(args)
    pid = os.getpid()
    start = time.monotonic()
    before = None
    rows = 0
    for n in range(args.warmup + args.rounds):
        if n == args.warmup:
            before = (cpu_seconds(pid), schedstat_ns(pid))
        rows += floor.round()
        # the same cadence as the daemon: a poll every `interval` seconds, on the grid
        next_at = start + math.ceil((time.monotonic() - start) / args.interval) * args.interval
        time.sleep(max(0.0, next_at - time.monotonic()))
    assert before is not None
    after = (cpu_seconds(pid), schedstat_ns(pid))
    print(
        json.dumps(
            {
                "rounds": args.rounds,
                "cpu_per_poll": (after[0] - before[0]) / args.rounds,
                "cpu_ns_per_poll": (after[1] - before[1]) / args.rounds,
                "rows": rows,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
