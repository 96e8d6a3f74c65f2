"""A real Mosquitto on a loopback port with a password file, and a subscriber that records.

Mosquitto is Debian's ``mosquitto`` package (``.ci/run`` installs it when missing); tests
that need it skip with the reason when it is not there.
"""

from __future__ import annotations

import getpass
import json
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import free_port, wait_for

MOSQUITTO = shutil.which("mosquitto") or (
    "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
)
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd")
USER = "homepoll"
PASSWORD = "s3cret-Broker-pw-71"
WATCHER = "watcher"
WATCHER_PASSWORD = "watcher-pw-2"

needs_mosquitto = pytest.mark.skipif(
    MOSQUITTO is None or MOSQUITTO_PASSWD is None,
    reason="Debian's mosquitto package is not installed (.ci/run installs it as root)",
)


class Broker:
    """``mosquitto -c`` on 127.0.0.1:<free port>; stop (SIGTERM), kill (SIGKILL), start again
    on the same port.

    ``persistence``: the broker saves its sessions at a clean stop and loads them at start, so
    a watcher's persistent session outlives a restart and nothing published before the
    watcher is back slips past it (a SIGKILL restarts from the last clean stop's file).
    """

    def __init__(self, folder: Path, *, persistence: bool = False) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        passwords = folder / "passwords"
        passwords.write_text("")
        for user, password in ((USER, PASSWORD), (WATCHER, WATCHER_PASSWORD)):
            subprocess.run(
                [MOSQUITTO_PASSWD, "-b", str(passwords), user, password],
                check=True,
                capture_output=True,
            )
        passwords.chmod(0o600)
        self.conf = folder / "mosquitto.conf"
        saved = f"persistence true\npersistence_location {folder}/\n"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            # as root, mosquitto would switch to a "mosquitto" user that cannot read tmp_path
            f"user {getpass.getuser()}\n"
            "allow_anonymous false\n"
            f"password_file {passwords}\n"
            + (saved if persistence else "persistence false\n")
            + "max_queued_messages 100000\n"
            "log_type error\nlog_type warning\nlog_type notice\n"
            f"log_dest file {folder / 'mosquitto.log'}\n"
        )
        self.proc: subprocess.Popen | None = None

    def start(self) -> Broker:
        self.proc = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(self._listening, timeout=10)
        return self

    def _listening(self) -> bool:
        import socket

        with socket.socket() as sock:
            sock.settimeout(0.2)
            return sock.connect_ex(("127.0.0.1", self.port)) == 0

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=10)
        self.proc = None

    def kill(self) -> None:
        self.stop(signal.SIGKILL)


@dataclass
class Message:
    topic: str
    payload: bytes
    retain: bool
    at: float

    def json(self) -> dict:
        return json.loads(self.payload)


class Subscriber:
    """A separate MQTT client (paho, its own thread) that records what arrives.

    A persistent session (clean_session off, QoS 1) and a quick reconnect, so after a broker
    restart it is subscribed again before homepoll's backoff lets it back in.
    """

    def __init__(self, broker: Broker, *topics: str, client_id: str = "test-watcher") -> None:
        import paho.mqtt.client as mqtt

        self.topics = topics or ("#",)
        self.messages: list[Message] = []
        self.lock = threading.Lock()
        self.subscribed = threading.Event()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False
        )
        self.client.username_pw_set(WATCHER, WATCHER_PASSWORD)
        self.client.reconnect_delay_set(0.05, 0.2)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_disconnect = lambda *a: self.subscribed.clear()
        self.broker = broker

    def __enter__(self) -> Subscriber:
        self.client.connect("127.0.0.1", self.broker.port, keepalive=10)
        self.client.loop_start()
        wait_for(self.subscribed.is_set, timeout=10)
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(self, client, userdata, flags, reason_code, properties=None) -> None:
        if reason_code == 0:
            client.subscribe([(t, 1) for t in self.topics])
            self.subscribed.set()

    def _on_message(self, client, userdata, msg) -> None:
        with self.lock:
            self.messages.append(Message(msg.topic, bytes(msg.payload), msg.retain, time.time()))

    def snapshot(self) -> list[Message]:
        with self.lock:
            return list(self.messages)

    def latest(self) -> dict[str, Message]:
        """The last message per topic."""
        out: dict[str, Message] = {}
        for message in self.snapshot():
            out[message.topic] = message
        return out
