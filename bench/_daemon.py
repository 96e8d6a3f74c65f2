"""One benchmark scenario's processes: the simulators and a real ``homepoll run``.

The daemon is the installed console script, started exactly as systemd starts it
(Type=notify: READY=1 arrives on the socket named by $NOTIFY_SOCKET), with a config in a
temporary folder pointing at the loopback simulators. Progress is read from the daemon's
own status.json (``polls`` per collector), never by talking to the daemon.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import _proc

BENCH = Path(__file__).resolve().parent
PYTHON = sys.executable


def homepoll_command() -> list[str]:
    """The venv's ``homepoll`` console script, as the systemd unit runs it."""
    script = Path(PYTHON).parent / "homepoll"
    return [str(script)] if script.exists() else [PYTHON, "-m", "homepoll"]


class Simulators:
    """bench/_sim.py in its own process: a Hue bridge with ``devices`` motion sensors
    (3 sensor resources each) and an Alexa endpoint with ``monitors`` air-quality monitors."""

    def __init__(
        self, devices: int, monitors: int = 0, update_period: float = 5.0, aqm_period: float = 5.0
    ) -> None:
        self.proc = subprocess.Popen(
            [
                PYTHON,
                str(BENCH / "_sim.py"),
                f"--hue-devices={devices}",
                f"--aqm-monitors={monitors}",
                f"--update-period={update_period}",
                f"--aqm-update-period={aqm_period}",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(5)
            raise RuntimeError("the simulator process did not start")
        self.info = json.loads(line)

    def close(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(BrokenPipeError, OSError):
                assert self.proc.stdin is not None
                self.proc.stdin.close()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def __enter__(self) -> Simulators:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class NotifyListener:
    """An AF_UNIX datagram socket standing in for systemd's notify socket (drained in a thread:
    a full queue would make the daemon's sd_notify wait)."""

    path: Path
    messages: list[tuple[float, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.path))
        self.sock.settimeout(0.2)
        self.ready = threading.Event()
        self._stop = False
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        while not self._stop:
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            now = time.monotonic()
            text = data.decode("utf-8", "replace")
            self.messages.append((now, text))
            if "READY=1" in text.split("\n"):
                self.ready.set()

    def ready_at(self) -> float | None:
        for when, text in self.messages:
            if "READY=1" in text.split("\n"):
                return when
        return None

    def close(self) -> None:
        self._stop = True
        self._thread.join()
        self.sock.close()


def make_workdir(
    sims: Simulators,
    *,
    hue_interval: float | None = 1,
    aqm_interval: float | None = None,
    commit_interval: float = 0,
    root: Path | None = None,
    web: str | None = None,
    extra_config: str = "",
) -> Path:
    """A temporary folder with config.yaml, data/, the Hue key and the Amazon cookies.

    ``web``: the web face's listen address; None switches it off (figures side by side would
    fight over its one default port, and bench/_web.py measures it on and off apart).
    ``extra_config``: more top-level YAML (the MQTT figures' ``mqtt:`` section)."""
    folder = Path(tempfile.mkdtemp(prefix="hpbench-", dir=root))
    data = folder / "data"
    data.mkdir()
    info = sims.info
    hue = (
        f"  hue: {{enabled: true, bridge: '{info['hue']}', interval: {hue_interval}}}"
        if hue_interval
        else "  hue: {enabled: false}"
    )
    aqm = (
        f"  amazon_aqm: {{enabled: true, base_url: '{info['aqm_url']}', interval: {aqm_interval}}}"
        if aqm_interval
        else "  amazon_aqm: {enabled: false}"
    )
    config = folder / "config.yaml"
    config.write_text(
        "data_dir: data\n"
        "log: {level: INFO}\n"
        f"storage: {{commit_interval: {commit_interval}}}\n"
        f"web: {{enabled: {'true' if web else 'false'}, listen: '{web or '127.0.0.1:8321'}'}}\n"
        f"collectors:\n{hue}\n{aqm}\n" + extra_config
    )
    config.chmod(0o600)
    from homepoll.cookies import save_cookie_file
    from homepoll.fsutil import write_secret_file

    write_secret_file(data / "hue_username", info["hue_key"] + "\n")
    save_cookie_file(data / "amazon_cookies.json", info["cookies"])
    return folder


def unit_environment() -> dict[str, str]:
    """The Environment= settings of systemd/homepoll.service: the daemon runs as installed."""
    unit = BENCH.parent / "systemd" / "homepoll.service"
    env = {}
    for line in unit.read_text().splitlines():
        if line.startswith("Environment="):
            key, _, value = line.removeprefix("Environment=").partition("=")
            env[key] = value
    return env


class Daemon:
    """A ``homepoll run`` in a fresh temporary folder; stop() checks it exits 0."""

    def __init__(
        self,
        sims: Simulators,
        *,
        hue_interval: float | None = 1,
        aqm_interval: float | None = None,
        commit_interval: float = 0,
        watchdog_usec: int | None = None,
        root: Path | None = None,
        seed=None,
        command: list[str] | None = None,
        runtime_dir: bool = False,
        web: str | None = None,
        extra_config: str = "",
    ) -> None:
        """``runtime_dir``: run as the systemd unit does, with RUNTIME_DIRECTORY on tmpfs
        (/dev/shm), where homepoll keeps status.json behind a data/status.json symlink."""
        self.dir = make_workdir(
            sims,
            hue_interval=hue_interval,
            aqm_interval=aqm_interval,
            commit_interval=commit_interval,
            root=root,
            web=web,
            extra_config=extra_config,
        )
        self.data = self.dir / "data"
        self.config = self.dir / "config.yaml"
        self.status_path = self.data / "status.json"
        self.db = self.data / "readings.db"
        if seed is not None:
            seed(self.db)  # e.g. history, before the daemon opens the file
        self.notify = NotifyListener(self.dir / "notify.sock")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HOMEPOLL_", "WATCHDOG_"))}
        env.update(unit_environment())
        env["NOTIFY_SOCKET"] = str(self.notify.path)
        env.pop("JOURNAL_STREAM", None)
        if watchdog_usec:
            env["WATCHDOG_USEC"] = str(watchdog_usec)
        env.pop("RUNTIME_DIRECTORY", None)
        self.runtime_dir: Path | None = None
        if runtime_dir:
            self.runtime_dir = Path(tempfile.mkdtemp(prefix="hpbench-run-", dir="/dev/shm"))
            env["RUNTIME_DIRECTORY"] = str(self.runtime_dir)
        self._out = open(self.dir / "stderr.txt", "wb")  # noqa: SIM115 - closed in stop()
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [*(command or homepoll_command()), "run", "--config", str(self.config)],
            env=env,
            cwd=self.dir,
            stdin=subprocess.DEVNULL,
            stdout=self._out,
            stderr=subprocess.STDOUT,
        )
        self.pid = self.proc.pid
        self._status_mtime = 0
        self._status: dict = {}

    # -- progress ----------------------------------------------------------------------

    def status(self) -> dict:
        """status.json, re-read only when it changed on disk."""
        try:
            mtime = os.stat(self.status_path).st_mtime_ns
        except FileNotFoundError:
            return self._status
        if mtime != self._status_mtime:
            try:
                self._status = json.loads(self.status_path.read_text())
                self._status_mtime = mtime
            except (ValueError, FileNotFoundError):
                pass
        return self._status

    def polls(self, name: str) -> int:
        return int(self.status().get("collectors", {}).get(name, {}).get("polls", 0) or 0)

    def stored(self) -> int:
        collectors = self.status().get("collectors", {})
        return sum(int(c.get("readings_stored", 0) or 0) for c in collectors.values())

    def outcomes(self) -> dict:
        collectors = self.status().get("collectors", {})
        return {name: c.get("outcomes", {}) for name, c in collectors.items()}

    def wait_for(self, predicate, timeout: float, step: float = 0.02) -> float:
        """Poll ``predicate`` until true; returns the monotonic time it was first seen true."""
        give_up = time.monotonic() + timeout
        while True:
            if predicate():
                return time.monotonic()
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"homepoll exited with {self.proc.returncode}: {self.log_tail()}"
                )
            if time.monotonic() > give_up:
                raise TimeoutError(f"timed out after {timeout:g} s; {self.log_tail()}")
            time.sleep(step)

    def wait_ready(self, timeout: float = 30) -> float:
        """Seconds from exec to READY=1."""
        self.wait_for(self.notify.ready.is_set, timeout, step=0.002)
        at = self.notify.ready_at()
        assert at is not None
        return at - self.started

    def wait_polls(self, name: str, count: int, timeout: float) -> float:
        return self.wait_for(lambda: self.polls(name) >= count, timeout)

    def sample(self) -> _proc.Sample:
        return _proc.sample(self.pid)

    def log_tail(self) -> str:
        parts = []
        for path in (self.dir / "stderr.txt", self.data / "homepoll.log"):
            with contextlib.suppress(OSError):
                parts.append(path.read_text(errors="replace")[-1500:])
        return " | ".join(p for p in parts if p)

    # -- end -----------------------------------------------------------------------------

    def stop(self, keep: bool = False) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.notify.close()
        self._out.close()
        code = self.proc.returncode
        if code != 0:
            tail = self.log_tail()
            if self.runtime_dir is not None:
                shutil.rmtree(self.runtime_dir, ignore_errors=True)
            if not keep:
                shutil.rmtree(self.dir, ignore_errors=True)
            raise RuntimeError(f"homepoll run exited with {code}: {tail}")
        if not keep:
            shutil.rmtree(self.dir, ignore_errors=True)
        if self.runtime_dir is not None:
            shutil.rmtree(self.runtime_dir, ignore_errors=True)
        return code
