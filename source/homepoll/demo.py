"""``homepoll demo``: the real daemon against both simulators, with a scripted story.

What a newcomer runs first: no hardware, no account. It shows readings arriving, faults
retried and recovered, a throttled answer backed off, Amazon rejecting the cookies (the
alert file raised) and fresh cookies dropped in (the alert cleared by the next poll), then
what was stored. Everything runs through the same Daemon and poll path as ``homepoll run``.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import socket
import sqlite3
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import yaml

from homepoll.collectors.amazon_aqm import AmazonAqmCollector
from homepoll.config import Config, load_config
from homepoll.cookies import save_cookie_file
from homepoll.daemon import Daemon
from homepoll.fsutil import write_secret_file
from homepoll.logs import RedactingFilter, remove_handlers, setup_logging
from homepoll.poller import PollReport
from homepoll.simulator.aqm_api import AqmApiSimulator
from homepoll.simulator.hue_bridge import HueBridgeSimulator

MIN_DURATION = 12.0


def demo_settings() -> dict:
    """Short intervals and retries so the whole story fits in about a minute."""
    return {
        "data_dir": ".",
        "log": {"level": "INFO"},
        "storage": {"commit_interval": 0},  # show each poll's new rows as they happen
        "retry": {
            "max_attempts": 3,
            "initial_delay": 0.2,
            "max_delay": 1.0,
            "jitter": 0.2,
            "attempt_timeout": 1.0,
            "rate_limit_delay": 1.0,  # a throttled Amazon poll pushes the next one 2.5 s back
            "poll_budget": 0.9,
        },
        "backoff": {"failure_threshold": 3, "max_interval": 6},
        "collectors": {
            "hue": {"enabled": True, "interval": 1.5},
            "amazon_aqm": {"enabled": True, "interval": 1.5},
        },
        "web": {"listen": f"127.0.0.1:{_web_port()}"},
    }


def _web_port(preferred: int = 8321) -> int:
    """The shipped port when it is free (a homepoll may already use it), else any free one."""
    for port in (preferred, 0):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return probe.getsockname()[1]
    return preferred


class Story:
    """The scripted events, at fractions of the demo's duration, and what the user sees."""

    def __init__(self, data: Path, hue: HueBridgeSimulator, aqm: AqmApiSimulator, config: Config):
        self.data = data
        self.hue = hue
        self.aqm = aqm
        self.config = config
        self.started = time.monotonic()
        self.alert_raised = False
        self.alert_cleared = False

    def say(self, text: str) -> None:
        print(f"[{time.monotonic() - self.started:5.1f}s] {text}", flush=True)

    def on_report(self, report: PollReport) -> None:
        if report.ok:
            detail = f"{len(report.readings)} readings ({report.stored} new)"
            if report.skipped:
                detail += f", {report.skipped} skipped"
            retries = f", {report.attempts - 1} retried" if report.attempts > 1 else ""
            self.say(f"  {report.collector:<11} ok      {detail}{retries}")
        else:
            self.say(
                f"  {report.collector:<11} FAILED  {report.outcome} after {report.attempts} "
                f"attempt(s): {report.error}"
            )
        if report.collector != "amazon_aqm":
            return
        alert = self.data / AmazonAqmCollector.alert_file
        if not report.ok and alert.exists() and not self.alert_raised:
            self.alert_raised = True
            self.say(f"ALERT FILE RAISED: {alert}")
            for line in alert.read_text().splitlines():
                print(f"        | {line}")
        elif report.ok and self.alert_raised and not alert.exists() and not self.alert_cleared:
            self.alert_cleared = True
            self.say(f"ALERT FILE CLEARED by the first successful poll: {alert.name} is gone")

    async def show_dashboard(self, daemon: Daemon) -> None:
        """Say where the dashboard is, once the daemon serves it (it does until the end)."""
        for _ in range(50):
            if daemon.web_url:
                self.say(f"DASHBOARD: {daemon.web_url}  (open it while the demo runs)")
                return
            await asyncio.sleep(0.1)
        self.say("DASHBOARD: not served (see the log line above)")

    async def play(self, duration: float, stop: Callable[[], None]) -> None:
        steps: list[tuple[float, str, Callable[[], Awaitable[None] | None]]] = [
            (
                0.12,
                "the Hue bridge fails twice (error 901, then garbage): retried",
                self._hue_faults,
            ),
            (
                0.25,
                "Amazon throttles (UNOFFICIAL_CLIENT_TOO_MANY_REQUESTS): back off",
                self._throttle,
            ),
            (0.38, "Amazon expires the session: the cookies are now rejected", self._expire),
            (
                0.62,
                "The user exports fresh cookies and runs `homepoll amazon-cookies`",
                self._refresh,
            ),
        ]
        for fraction, text, action in steps:
            await self._until(duration * fraction)
            self.say(f"STORY: {text}")
            result = action()
            if result is not None:
                await result
        await self._until(duration)
        self.say("STORY: time is up, stopping the daemon (as SIGTERM would)")
        stop()

    async def _until(self, offset: float) -> None:
        await asyncio.sleep(max(0.0, self.started + offset - time.monotonic()))

    def _hue_faults(self) -> None:
        self.hue.faults.apply_script("error_901 ok*2 garbage", "hue")

    def _throttle(self) -> None:
        self.aqm.faults.apply_script("too_many_requests", "aqm")

    def _expire(self) -> None:
        self.aqm.set_cookies()  # a new valid jar: the one homepoll holds is rejected (401)

    def _refresh(self) -> None:
        save_cookie_file(self.config.amazon_aqm.cookies_file, self.aqm.valid_cookies)


def _summary(config: Config) -> str:
    conn = sqlite3.connect(f"file:{config.storage.path}?mode=ro", uri=True)
    try:
        # SQLite takes the bare column "value" from the row where max(ts) is found.
        sensors = conn.execute(
            "SELECT source, name, metric, unit, count(*), value, max(ts) FROM readings_view "
            "GROUP BY source, device_id, metric ORDER BY source, name, metric"
        ).fetchall()
        polls = conn.execute(
            "SELECT collector, count(*), sum(outcome = 'ok'), sum(attempts) - count(*), "
            "group_concat(DISTINCT CASE WHEN outcome != 'ok' THEN outcome END), sum(readings) "
            "FROM polls GROUP BY collector ORDER BY collector"
        ).fetchall()
    finally:
        conn.close()
    lines = ["", "What was stored, per sensor:"]
    lines.append(f"  {'source':<11} {'sensor':<24} {'metric':<12} {'rows':>5} {'latest':>10}")
    for source, name, metric, unit, count, latest, _ts in sensors:
        lines.append(f"  {source:<11} {name[:24]:<24} {metric:<12} {count:>5} {latest:>10g} {unit}")
    lines += ["", "What each collector went through:"]
    lines.append(
        f"  {'collector':<11} {'polls':>5} {'ok':>4} {'retries':>7} {'rows':>6}  failures seen"
    )
    for collector, count, ok, retries, failures, rows in polls:
        lines.append(
            f"  {collector:<11} {count:>5} {ok:>4} {retries:>7} {rows:>6}  {failures or '-'}"
        )
    return "\n".join(lines)


def missing_from_database(config: Config, sims: list) -> int:
    """How many measurements the simulators served successfully that are not stored."""
    conn = sqlite3.connect(f"file:{config.storage.path}?mode=ro", uri=True)
    try:
        stored = set(conn.execute("SELECT source, device_id, metric, ts FROM readings_view"))
    finally:
        conn.close()
    served = {
        (s.source, s.device_id, s.metric, s.ts) for sim in sims for s in sim.served.snapshot()
    }
    return len(served - stored)


def _quiet_stderr_log() -> logging.Handler:
    """Warnings and worse on stderr, compact, so retries and alerts show beside the story."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter("        log %(levelname)s %(message)s"))
    handler.addFilter(RedactingFilter())
    logging.getLogger().addHandler(handler)
    return handler


def run_demo(duration: float = 60.0, data_dir: Path | None = None) -> int:
    duration = max(MIN_DURATION, duration)
    temporary = data_dir is None
    data = Path(tempfile.mkdtemp(prefix="homepoll-demo-")) if temporary else data_dir
    data.mkdir(parents=True, exist_ok=True)
    with (
        HueBridgeSimulator(update_period=2.0) as hue,
        AqmApiSimulator(update_period=2.0, monitors=2, fahrenheit_monitors=1) as aqm,
    ):
        settings = demo_settings()
        settings["collectors"]["hue"]["bridge"] = hue.address
        settings["collectors"]["amazon_aqm"]["base_url"] = aqm.base_url
        config_path = data / "config.yaml"
        config_path.write_text(yaml.safe_dump(settings, sort_keys=False))
        write_secret_file(data / "hue_username", f"{hue.key}\n")
        save_cookie_file(data / "amazon_cookies.json", aqm.valid_cookies)
        config = load_config(config_path)

        print(f"homepoll demo: {duration:g} s against the built-in simulators")
        print(f"  Hue bridge simulator   http://{hue.address}")
        print(f"  Alexa API simulator    {aqm.base_url}")
        print(f"  data folder            {data}  (database, status.json, alerts, log)")
        print()
        setup_logging(config.log, stderr=False)
        handler = _quiet_stderr_log()
        story = Story(data, hue, aqm, config)
        try:
            code = asyncio.run(_run(config, story, duration))
        finally:
            logging.getLogger().removeHandler(handler)
            remove_handlers()
        print(_summary(config))
        print()
        missing = missing_from_database(config, [hue, aqm])
        served = len(hue.served.snapshot()) + len(aqm.served.snapshot())
        print(f"The simulators served {served} measurements; {missing} of them are not stored.")
        ok = story.alert_raised and story.alert_cleared and code == 0 and missing == 0
        if ok:
            print("The alert was raised and cleared by itself, and no reading was lost.")
        else:
            print("The story did not play out as scripted (see the log above).")
        if temporary:
            shutil.rmtree(data, ignore_errors=True)
            print("The demo's temporary data folder was removed; keep it with --data-dir DIR.")
        else:
            print(f"Look around: homepoll readings --config {config_path}")
            print(f"             homepoll status --config {config_path}")
    return 0 if ok else 1


async def _run(config: Config, story: Story, duration: float) -> int:
    daemon = Daemon(config, on_report=story.on_report)
    player = asyncio.create_task(story.play(duration, daemon.request_stop))
    dashboard = asyncio.create_task(story.show_dashboard(daemon))
    try:
        return await daemon.run()
    finally:
        player.cancel()
        dashboard.cancel()
