"""Issue 15's figures: what MQTT costs, and how fast a backlog drains.

- CPU per poll and RSS of three daemons polling the same simulators in the same seconds:
  MQTT off, MQTT on (retained state + discovery + events, a real Mosquitto), and MQTT on
  with the broker unreachable (a poll must not get slower, memory must not grow).
- The drain rate of the events backlog a one-day outage leaves at the default intervals
  (20 Hue sensors every 60 s, one air-quality monitor with 7 metrics every 300 s, every
  poll a new value: an upper bound), with the daemon's RSS while it drains.
- SD-card writes per day with MQTT off and with state + events on (broker up), side by side,
  measured as figure 5 measures them (bench/_flash.py) at the shipped commit_interval.

Needs Debian's mosquitto; without it the figures are skipped with the reason.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import _flash  # noqa: E402
from _daemon import Daemon, Simulators  # noqa: E402
from _measure import devices_for  # noqa: E402

DAY = 86_400
HUE_SENSORS, HUE_INTERVAL = 20, 60
AQM_METRICS, AQM_INTERVAL = 7, 300


@contextlib.contextmanager
def _mosquitto(prefix: str) -> Iterator[SimpleNamespace | None]:
    """A running broker with homepoll's user, its password file, and the test subscriber
    class; None when mosquitto is not installed."""
    from tests.mqtt_support import MOSQUITTO, MOSQUITTO_PASSWD, PASSWORD, USER, Broker, Subscriber

    if MOSQUITTO is None or MOSQUITTO_PASSWD is None:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        folder = Path(tmp)
        secret = folder / "mqtt_password"
        secret.write_text(PASSWORD + "\n")
        secret.chmod(0o600)
        broker = Broker(folder / "broker").start()
        try:
            yield SimpleNamespace(
                broker=broker,
                subscriber=Subscriber,
                config=lambda port: _mqtt_yaml(port, secret, USER),
                spare_port=Broker(folder / "nobody").port,  # configured, never started
            )
        finally:
            broker.kill()


def _mqtt_yaml(port: int, password_file: Path, user: str) -> str:
    return (
        f"mqtt: {{enabled: true, host: 127.0.0.1, port: {port}, username: {user},"
        f" password_file: '{password_file}', events: true}}\n"
    )


def flash_cost(seconds: float, history_days: float, runs: int) -> dict:
    """Flash bytes per day, MQTT off and on (state + events, broker up), side by side.

    Figure 5's method (bench/_flash.py: time compressed 60x, writeback emulated, a
    3-day-old database, the merge measured apart) with 20 Hue sensors and one monitor at
    the shipped commit_interval (300 s); with events on, each commit also queues its
    readings in the outbox and each acknowledged batch moves the cursor in a transaction
    of its own. The median of ``runs`` pairs.
    """
    with _mosquitto("hpbench-flash-") as mq:
        if mq is None:
            return {"skipped": "mosquitto is not installed"}
        variants = {"off": "", "on": mq.config(mq.broker.port)}
        found: dict[str, list[dict]] = {name: [] for name in variants}
        for _ in range(runs):
            with cf.ThreadPoolExecutor(len(variants)) as pool:
                futures = {}
                for name, extra in variants.items():
                    futures[name] = pool.submit(
                        _flash.flash, 20, 1, 300, seconds, history_days, extra_config=extra
                    )
                    time.sleep(0.3)  # staggered, as run.py does: imports would stall polls
                for name, future in futures.items():
                    found[name].append(future.result())
    return {
        name: {
            "bytes_per_day": statistics.median(r["bytes_per_day"] for r in results),
            "rows_per_day": statistics.median(r["rows_per_day"] for r in results),
            "runs": [r["bytes_per_day"] for r in results],
        }
        for name, results in found.items()
    }


def _window(daemon: Daemon, warmup: int, measured: int) -> dict:
    """CPU per poll (Hue and Amazon together) and RSS between two quiet moments."""
    daemon.wait_ready()
    daemon.wait_polls("hue", warmup, warmup * 2 + 30)
    time.sleep(0.1)
    before, p0 = daemon.sample(), daemon.polls("hue")
    daemon.wait_polls("hue", p0 + measured, measured * 3 + 30)
    time.sleep(0.1)
    after, n = daemon.sample(), daemon.polls("hue") - p0
    return {
        "polls": n,
        "cpu_per_poll": (after.cpu_ns - before.cpu_ns) / 1e9 / n,
        "rss_kb": after.rss_kb,
        "rss_growth_kb": after.rss_kb - before.rss_kb,
        "hwm_kb": after.hwm_kb,
        "stored": daemon.stored(),
        "mqtt": daemon.status().get("mqtt"),
    }


def cost(sensors: int, monitors: int, warmup: int, measured: int) -> dict:
    """MQTT off / on / broker down, side by side in one run."""
    with _mosquitto("hpbench-mqtt-") as mq:
        if mq is None:
            return {"skipped": "mosquitto is not installed"}
        with (
            Simulators(devices_for(sensors), monitors) as sims,
            mq.subscriber(mq.broker, "homepoll/#", "homeassistant/#") as watcher,
        ):
            variants = {
                "off": "",
                "on": mq.config(mq.broker.port),
                "broker down": mq.config(mq.spare_port),
            }
            daemons = {
                name: Daemon(sims, hue_interval=1, aqm_interval=1, extra_config=extra)
                for name, extra in variants.items()
            }
            try:
                with cf.ThreadPoolExecutor(len(daemons)) as pool:
                    futures = {
                        name: pool.submit(_window, d, warmup, measured)
                        for name, d in daemons.items()
                    }
                    out = {name: f.result() for name, f in futures.items()}
            finally:
                for daemon in daemons.values():
                    daemon.stop()
            out["on"]["messages_seen"] = len(watcher.snapshot())
    return out


def _prefill(db: Path, seconds: int) -> int:
    """``seconds`` of readings at the default intervals, queued for MQTT as a broker
    outage of that length leaves them."""
    from homepoll.model import Reading
    from homepoll.mqtt import outbox
    from homepoll.storage import Storage

    storage = Storage(db, commit_interval=0)
    storage.open()
    conn = outbox.connect(db)
    outbox.start_capture(conn)
    conn.close()
    start = int((time.time() - seconds) * 1000)
    rows = 0
    for t in range(0, seconds, HUE_INTERVAL):
        ts = start + t * 1000
        batch = [
            Reading("hue", f"sensor-{i}", f"Sensor {i}", "temperature", "degC", ts, 20 + t % 7)
            for i in range(HUE_SENSORS)
        ]
        if t % AQM_INTERVAL == 0:
            batch += [
                Reading("amazon_aqm", "monitor", "Monitor", f"m{k}", "index", ts, t % 50)
                for k in range(AQM_METRICS)
            ]
        storage.write(batch, ts, None)
        rows += len(batch)
    storage.close()
    return rows


def drain(seconds: int = DAY) -> dict:
    """Readings per second from a full outbox to an empty one, through a real broker to a
    subscriber, with the daemon's RSS and peak RSS at the end."""
    rows: list[int] = []
    with _mosquitto("hpbench-drain-") as mq:
        if mq is None:
            return {"skipped": "mosquitto is not installed"}
        with (
            Simulators(1, 0) as sims,
            mq.subscriber(mq.broker, "homepoll/+/+/events") as watcher,
        ):
            daemon = Daemon(
                sims,
                hue_interval=None,
                aqm_interval=None,
                extra_config=mq.config(mq.broker.port),
                seed=lambda db: rows.append(_prefill(db, seconds)),
            )
            try:
                daemon.wait_ready()
                cursor = _cursor_reader(daemon.db)
                first = daemon.wait_for(lambda: cursor() > 0, 60, step=0.005)
                start_seq = cursor()
                done = daemon.wait_for(lambda: cursor() >= rows[0], 600, step=0.01)
                sample = daemon.sample()
            finally:
                daemon.stop()
            seen = len(watcher.snapshot())
    return {
        "outage_s": seconds,
        "backlog": rows[0],
        "seconds": done - first,
        "rate": (rows[0] - start_seq) / max(done - first, 1e-9),
        "rss_kb": sample.rss_kb,
        "hwm_kb": sample.hwm_kb,
        "events_seen": seen,
    }


def _cursor_reader(db: Path):
    def read() -> int:
        try:
            conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
            try:
                row = conn.execute("SELECT seq FROM mqtt_cursor WHERE id = 1").fetchone()
            finally:
                conn.close()
        except sqlite3.Error:
            return 0
        return int(row[0]) if row else 0

    return read


def table(results: dict) -> list[list[str]]:
    """Rows for bench/run.py's output and docs/performance.md."""
    head = ["MQTT figure", "off", "on (state + events)", "on, broker down"]
    cost_r = results.get("cost", {})
    if "skipped" in cost_r:
        return [head, [f"skipped: {cost_r['skipped']}", "", "", ""]]
    names = ("off", "on", "broker down")
    rows = [head]
    if cost_r:
        rows += [
            ["CPU per poll (ms)", *(f"{cost_r[n]['cpu_per_poll'] * 1000:.2f}" for n in names)],
            ["RSS (MB)", *(f"{cost_r[n]['rss_kb'] / 1024:.1f}" for n in names)],
            ["RSS growth over the window (KB)", *(f"{cost_r[n]['rss_growth_kb']}" for n in names)],
        ]
    f = results.get("flash", {})
    if "skipped" not in f and f:
        rows.append(
            [
                "flash writes per day, commit_interval 300 (MB)",
                f"{f['off']['bytes_per_day'] / 2**20:.2f}",
                f"{f['on']['bytes_per_day'] / 2**20:.2f}",
                "",
            ]
        )
    d = results.get("drain", {})
    if "skipped" not in d and d:
        rows.append(
            [
                f"drain after {d['outage_s'] / 3600:g} h outage ({d['backlog']:,} readings)",
                "",
                f"{d['rate']:,.0f} readings/s ({d['seconds']:.1f} s),"
                f" RSS {d['rss_kb'] / 1024:.1f} MB, peak {d['hwm_kb'] / 1024:.1f} MB",
                "",
            ]
        )
    return rows


def phase(quick: bool, log) -> dict:
    """Called by bench/run.py."""
    log("MQTT: CPU per poll and RSS, off / on / broker down, side by side ...")
    out = {"cost": cost(20, 1, 2 if quick else 5, 3 if quick else 30)}
    log("MQTT: backlog drain after a one-day outage ...")
    out["drain"] = drain(DAY // 24 if quick else DAY)
    log("MQTT: flash writes per day, off / on (state + events), side by side ...")
    # the flash phase's window and database age (bench/run.py QUICK / FULL)
    out["flash"] = flash_cost(6, 1, 1) if quick else flash_cost(60, 3, 3)
    return out
