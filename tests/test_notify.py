"""sd_notify over a real AF_UNIX datagram socket, and the watchdog interval."""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path

import pytest

from homepoll.notify import notify, watchdog_interval


@pytest.fixture
def receiver(tmp_path: Path):
    path = tmp_path / "n.sock"
    if len(str(path)) > 100:  # AF_UNIX path limit (~108 bytes)
        pytest.skip("tmp_path too long for a unix socket")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(2)
    yield path, sock
    sock.close()


def test_notify_sends_one_datagram(receiver, monkeypatch):
    path, sock = receiver
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    assert notify("READY=1") is True
    assert sock.recv(4096) == b"READY=1"
    assert notify("STATUS=polling 2 collectors\nWATCHDOG=1") is True
    assert sock.recv(4096) == b"STATUS=polling 2 collectors\nWATCHDOG=1"


def test_notify_abstract_namespace(monkeypatch):
    name = f"homepoll-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(2)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert notify("WATCHDOG=1") is True
        assert sock.recv(4096) == b"WATCHDOG=1"


def test_notify_without_socket_is_false(monkeypatch, tmp_path: Path):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert notify("READY=1") is False
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "missing.sock"))
    assert notify("READY=1") is False  # OSError swallowed
    monkeypatch.setenv("NOTIFY_SOCKET", "vsock:2:1234")
    assert notify("READY=1") is False


def test_watchdog_interval(monkeypatch):
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    assert watchdog_interval() is None
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    assert watchdog_interval() == 15.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert watchdog_interval() == 15.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))  # meant for another process
    assert watchdog_interval() is None
    monkeypatch.delenv("WATCHDOG_PID")
    for bad in ("0", "-5", "soon", ""):
        monkeypatch.setenv("WATCHDOG_USEC", bad)
        assert watchdog_interval() is None
