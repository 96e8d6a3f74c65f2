"""Issue 14, acceptance 4: hostile and slow web clients cannot delay a poll or grow memory.

50 clients drip a request one byte at a time, one sends a 1 MB header, one promises a body
it never sends, and a flood opens and drops connections; meanwhile the bridge simulator's
request counter (test_cadence's RequestClock) shows every poll keeping its 1 s cadence, the daemon's
RSS stays within a few MB of where it started, and SIGTERM still stops it within 10 s.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from pathlib import Path

from tests.conftest import wait_for
from tests.test_cadence import RequestClock
from tests.web_support import collectors, get

SLOW_CLIENTS = 50


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _drip(port: int, stop: threading.Event, opened: list[socket.socket]) -> None:
    """A slowloris client: a byte every 0.5 s, reconnecting when the server drops it."""
    request = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 400
    while not stop.is_set():
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        except OSError:
            time.sleep(0.2)
            continue
        opened.append(sock)
        try:
            for byte in request:
                if stop.wait(0.5):
                    break
                sock.sendall(bytes([byte]))
        except OSError:
            pass
        finally:
            sock.close()


def _hostile_once(port: int) -> dict[str, bytes]:
    answers = {}
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: ")
        with contextlib.suppress(OSError):
            for _ in range(64):  # 1 MB of header value, as fast as the server takes it
                sock.sendall(b"b" * 16384)
        with contextlib.suppress(OSError):
            answers["big header"] = sock.recv(200)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\nab")
        with contextlib.suppress(OSError):
            answers["never-finished body"] = sock.recv(200)
    return answers


def test_slow_and_hostile_clients_cannot_delay_polls(hue_sim, setup_factory, daemons) -> None:
    setup = setup_factory(hue=hue_sim)
    daemon = daemons(setup)
    url = setup.web_url
    port = int(url.rsplit(":", 1)[1].strip("/"))
    wait_for(lambda: collectors(setup).get("hue", {}).get("polls", 0) >= 2, timeout=15)
    assert get(url)[0] == 200  # warm: the first page's imports and caches are paid
    rss_before = _rss_kib(daemon.proc.pid)

    stop = threading.Event()
    opened: list[socket.socket] = []
    threads = [
        threading.Thread(target=_drip, args=(port, stop, opened), daemon=True)
        for _ in range(SLOW_CLIENTS)
    ]
    with RequestClock(hue_sim) as clock:
        for thread in threads:
            thread.start()
        answers = _hostile_once(port)
        flood = 0
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:  # connection churn on top of the slow ones
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 2):
                flood += 1
            time.sleep(0.01)
        rss_during = _rss_kib(daemon.proc.pid)
        status_during = get(url + "healthz", timeout=15)[0]
        started = time.monotonic()
        daemon.signal(15)
        code = daemon.proc.wait(timeout=15)
        stopped_in = time.monotonic() - started
    stop.set()
    for thread in threads:
        thread.join(timeout=5)

    assert answers["big header"].startswith(b"HTTP/1.0 400"), answers  # refused, not buffered
    assert answers["never-finished body"].startswith(b"HTTP/1.1 405"), answers
    assert len(opened) >= SLOW_CLIENTS and flood > 50
    gaps = clock.gaps()
    assert len(gaps) >= 6, gaps
    assert max(gaps) < 2.2, f"a poll was delayed: gaps {[round(g, 2) for g in gaps]}"
    assert rss_during - rss_before < 12 * 1024, (rss_before, rss_during)
    assert status_during in (200, 503)  # it still answers (503 only if busy)
    assert code == 0 and stopped_in < 10, stopped_in
