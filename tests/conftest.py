"""Shared fixtures: loopback simulators, config files in tmp_path, the daemon as a subprocess."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from homepoll.simulator.hue_bridge import HueBridgeSimulator

if TYPE_CHECKING:
    from homepoll.simulator.aqm_api import AqmApiSimulator

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "source"


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, every: float = 0.05) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(every)


def shipped_defaults(setup: Setup) -> Setup:
    """The test config without commit_interval: the daemon runs at the shipped 300 s."""
    setup.settings["storage"].pop("commit_interval", None)
    setup.write()
    assert "commit_interval" not in setup.config_path.read_text()
    return setup


@pytest.fixture
def hue_sim() -> Iterator[HueBridgeSimulator]:
    with HueBridgeSimulator(update_period=1.0) as sim:
        yield sim


@pytest.fixture
def aqm_sim() -> Iterator[AqmApiSimulator]:
    from homepoll.simulator.aqm_api import AqmApiSimulator

    with AqmApiSimulator(update_period=1.0, monitors=2, fahrenheit_monitors=1) as sim:
        yield sim


def deep_merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


class Setup:
    """A config folder in tmp_path pointed at the simulators, with short intervals."""

    def __init__(self, root: Path, hue: HueBridgeSimulator | None, aqm: AqmApiSimulator | None):
        self.root = root
        self.data = root / "data"
        self.config_path = root / "config.yaml"
        self.hue = hue
        self.aqm = aqm
        self.data.mkdir(parents=True, exist_ok=True)
        self.settings: dict[str, Any] = {
            "data_dir": "data",
            "log": {"level": "DEBUG"},
            "storage": {"commit_interval": 0},  # tests look at the database after each poll
            "retry": {
                "max_attempts": 3,
                "initial_delay": 0.1,
                "max_delay": 0.5,
                "jitter": 0,
                "attempt_timeout": 1.0,
                "rate_limit_delay": 0.5,
                "poll_budget": 0.9,
            },
            "backoff": {"failure_threshold": 3, "max_interval": 4},
            # The web face is on by default: each test gets its own port (parallel runs).
            "web": {"listen": f"127.0.0.1:{free_port()}"},
            "collectors": {
                "hue": {
                    "enabled": hue is not None,
                    "bridge": hue.address if hue else "127.0.0.1:9",
                    "interval": 1,
                },
                "amazon_aqm": {
                    "enabled": aqm is not None,
                    "base_url": f"http://{aqm.address}" if aqm else "http://127.0.0.1:9",
                    "interval": 1,
                },
            },
        }
        if hue is not None:
            self.write_hue_key(hue.key)
        if aqm is not None:
            self.write_cookies(aqm.valid_cookies)
        self.write()

    def write(self, **overrides: Any) -> Path:
        self.settings = deep_merge(self.settings, overrides)
        self.config_path.write_text(yaml.safe_dump(self.settings))
        return self.config_path

    def write_hue_key(self, key: str) -> None:
        path = self.data / "hue_username"
        path.write_text(key + "\n")
        path.chmod(0o600)

    def write_cookies(self, cookies: dict[str, str]) -> None:
        path = self.data / "amazon_cookies.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(cookies))
        tmp.chmod(0o600)
        tmp.replace(path)

    @property
    def db(self) -> Path:
        return self.data / "readings.db"

    @property
    def web_url(self) -> str:
        return f"http://{self.settings['web']['listen']}/"

    def query(self, sql: str, *params: Any) -> list[tuple]:
        if not self.db.exists():
            return []
        conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True)
        try:
            return conn.execute(sql, params).fetchall()
        except sqlite3.OperationalError:
            return []
        finally:
            conn.close()

    def stored(self) -> set[tuple[str, str, str, int]]:
        return {
            (s, d, m, ts)
            for s, d, m, ts in self.query("SELECT source, device_id, metric, ts FROM readings_view")
        }

    def row_count(self) -> int:
        rows = self.query("SELECT count(*) FROM readings_view")
        return rows[0][0] if rows else 0

    def env(self, **extra: str) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("HOMEPOLL_", "NOTIFY_", "WATCHDOG_", "JOURNAL_"))
        }
        env["PYTHONPATH"] = str(SOURCE)
        # The daemon's spool goes to the user's runtime folder: one per test, not /dev/shm.
        runtime = self.root / "run"
        runtime.mkdir(mode=0o700, exist_ok=True)
        env["XDG_RUNTIME_DIR"] = str(runtime)
        env.update(extra)
        return env

    def cli(
        self, *args: str, input: str | None = None, timeout: float = 30, **env: str
    ) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "homepoll", *args, "--config", str(self.config_path)],
            capture_output=True,
            text=True,
            input=input,
            timeout=timeout,
            env=self.env(**env),
            cwd=self.root,
        )

    def log_text(self) -> str:
        path = self.data / "homepoll.log"
        return path.read_text(errors="replace") if path.exists() else ""


class Daemon:
    """``homepoll run`` as a real subprocess."""

    def __init__(self, setup: Setup, **env: str) -> None:
        self.setup = setup
        self.stderr_path = setup.root / f"stderr-{time.monotonic_ns()}.txt"
        self._stderr = self.stderr_path.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "homepoll", "run", "--config", str(setup.config_path)],
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
            env=setup.env(**env),
            cwd=setup.root,
        )

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> int:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self._stderr.close()

    def kill(self) -> None:
        if self.alive():
            self.proc.kill()
            self.proc.wait(timeout=5)
        self._stderr.close()

    def stderr(self) -> str:
        if not self._stderr.closed:
            self._stderr.flush()
        return self.stderr_path.read_text(errors="replace")


@pytest.fixture
def setup_factory(tmp_path: Path) -> Callable[..., Setup]:
    def make(hue: HueBridgeSimulator | None = None, aqm: AqmApiSimulator | None = None) -> Setup:
        return Setup(tmp_path, hue, aqm)

    return make


@pytest.fixture
def daemons() -> Iterator[Callable[..., Daemon]]:
    started: list[Daemon] = []

    def start(setup: Setup, **env: str) -> Daemon:
        daemon = Daemon(setup, **env)
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        daemon.kill()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# Metrics stored only when they change, with the poll time as ts: not in a simulator's served log.
ON_CHANGE_METRICS = ("battery", "reachable")


def served_map(*sims: Any) -> dict[tuple[str, str, str, int], float]:
    return {
        (s.source, s.device_id, s.metric, s.ts): s.value
        for sim in sims
        for s in sim.served.snapshot()
    }


def stored_rows(setup: Setup, db: Path | None = None) -> list[tuple[str, str, str, int, float]]:
    """Stored measurements (not the on-change battery/reachable rows)."""
    path = db or setup.db
    if not path.exists():
        return []
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        return conn.execute(
            "SELECT source, device_id, metric, ts, value FROM readings_view WHERE metric NOT IN "
            f"({', '.join('?' * len(ON_CHANGE_METRICS))})",
            ON_CHANGE_METRICS,
        ).fetchall()
    finally:
        conn.close()


def assert_every_served_stored_once(
    setup: Setup, *sims: Any, excused: Iterable[tuple[str, str, str, int]] = ()
) -> dict[str, int]:
    """Every measurement served in a successful answer is stored exactly once, nothing else is.

    ``excused`` lists served measurements a scenario may legitimately miss (a poll in flight
    when the daemon was killed); returns the counts for the figures table.
    """
    served = served_map(*sims)
    assert served, "the simulators served nothing"
    rows = stored_rows(setup)
    stored = {(s, d, m, ts): v for s, d, m, ts, v in rows}
    duplicated = len(rows) - len(stored)
    assert duplicated == 0, "a measurement was stored twice"
    unexpected = set(stored) - set(served)
    assert not unexpected, f"stored but never served: {sorted(unexpected)[:5]}"
    missing = set(served) - set(stored)
    excused_set = set(excused)
    lost = missing - excused_set
    if lost:
        first = min(k[3] for k in lost)
        nearby = setup.query(
            "SELECT collector, started_at, duration_ms, outcome, attempts, readings, error"
            " FROM polls WHERE started_at BETWEEN ? AND ? ORDER BY started_at",
            first - 3000,
            first + 3000,
        )
        raise AssertionError(
            f"{len(lost)} served measurement(s) not stored: {sorted(lost)[:3]}; "
            f"polls around the first: {nearby}"
        )
    for key in set(served) & set(stored):
        assert stored[key] == pytest.approx(served[key], rel=1e-3, abs=0.01), key
    return {
        "served": len(served),
        "stored": len(stored),
        "lost": len(lost),
        "redone_or_excused": len(missing & excused_set),
        "duplicated": duplicated,
    }
