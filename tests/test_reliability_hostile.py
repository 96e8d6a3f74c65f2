"""Slow and hostile servers: every poll ends by its deadline, memory stays bounded, nothing leaks.

A real TCP server on 127.0.0.1 plays a broken or malicious bridge / Alexa endpoint: it accepts
and never answers, drips its answer one byte at a time, sends a 100 MB body, deeply nested or
non-UTF-8 JSON, a redirect loop, or an endless header block. Both collectors poll it through the
daemon's own poll path (``CollectorRunner.poll``: retry policy, attempt timeouts, deadline), many
times in a row; afterwards no worker thread may still sit in a socket read, the server must have
seen every connection closed, and this process may hold no more file descriptors than before.

``HOMEPOLL_HOSTILE_POLLS`` sets the polls per kind and collector (CI default 5; 200 for the
figures). The drip interval is shorter than the attempt timeout, which is what matters: each
``recv`` returns before its socket timeout, so only an overall deadline ends the read.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import resource
import socket
import ssl
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import pytest

from homepoll.collectors.amazon_aqm import AmazonAqmCollector
from homepoll.collectors.hue import HueCollector
from homepoll.collectors.hue.tls import STATE_FILE
from homepoll.config import BackoffSettings, RetrySettings, load_config
from homepoll.poller import CollectorRunner
from homepoll.simulator.hue_certs import TestCa
from tests.conftest import Setup
from tests.reliability_support import count_knob, open_fd_targets, proc_stats, record_figures

NAMES = ("hue", "hue_https", "amazon_aqm")  # hue_https: the same bridge answers over TLS
BRIDGE_ID = "001788fffe00abcd"
KINDS = ("hang", "drip", "huge", "nested", "non_utf8", "redirect_loop", "header_flood")
ATTEMPT_TIMEOUT = 0.25
DEADLINE = 0.4  # interval 1 s x poll_budget 0.4
DRIP_EVERY = 0.05
HUGE_BYTES = 100 * 1024 * 1024
NESTING = 200_000

# What each collector must make of each answer (the taxonomy's outcome of the poll).
EXPECTED = {
    "hue": {
        "hang": {"timeout"},
        "drip": {"timeout"},
        "huge": {"permanent"},
        "nested": {"permanent", "transient"},
        "non_utf8": {"transient"},
        "redirect_loop": {"permanent"},
        "header_flood": {"transient"},
    },
    "amazon_aqm": {
        "hang": {"timeout", "transient"},
        "drip": {"timeout", "transient"},
        "huge": {"permanent"},
        "nested": {"permanent", "transient"},
        "non_utf8": {"permanent", "transient"},
        "redirect_loop": {"auth"},  # Amazon's 3xx means the session expired (reference)
        "header_flood": {"transient"},
    },
}
EXPECTED["hue_https"] = EXPECTED["hue"]  # TLS changes nothing about what an answer means


class HostileServer:
    """A raw TCP server whose every answer is the chosen kind of trouble."""

    def __init__(self, kind: str, tls: ssl.SSLContext | None = None) -> None:
        self.kind = kind
        self._tls = tls
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.1)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self.connections = 0
        self.requests = 0
        self._acceptor = threading.Thread(target=self._accept_loop, daemon=True)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self._sock.getsockname()[1]}"

    def open_connections(self) -> int:
        with self._lock:
            return len(self._open)

    def __enter__(self) -> HostileServer:
        self._acceptor.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._acceptor.join(5)
        with self._lock:
            conns = list(self._open)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        for thread in self._threads:
            thread.join(5)
        self._sock.close()

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self._open.add(conn)
                self.connections += 1
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]
            thread.start()

    def _client_gone(self, conn: socket.socket) -> bool:
        if isinstance(conn, ssl.SSLSocket):  # no MSG_PEEK on TLS: read (the client sends no more)
            conn.settimeout(0)
            try:
                return conn.recv(1) == b""
            except (ssl.SSLWantReadError, BlockingIOError):
                return False
            except OSError:
                return True
            finally:
                conn.settimeout(None)
        try:
            return conn.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except BlockingIOError:
            return False
        except OSError:
            return True

    def _wait_until_gone(self, conn: socket.socket) -> None:
        while not self._stop.is_set() and not self._client_gone(conn):
            self._stop.wait(0.02)

    def _read_request(self, conn: socket.socket) -> str | None:
        conn.settimeout(5)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return None
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        while len(body) < length:
            chunk = conn.recv(65536)
            if not chunk:
                return None
            body += chunk
        with self._lock:
            self.requests += 1
        return head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")[1]

    def _serve(self, conn: socket.socket) -> None:
        try:
            if self._tls is not None:
                raw = conn
                raw.settimeout(5)
                conn = self._tls.wrap_socket(raw, server_side=True)
                with self._lock:
                    self._open.discard(raw)
                    self._open.add(conn)
            path = self._read_request(conn)
            if path is None:
                return
            conn.settimeout(None)
            getattr(self, f"_{self.kind}")(conn, path)
        except OSError:
            pass
        finally:
            with self._lock:
                self._open.discard(conn)
            conn.close()

    @staticmethod
    def _head(status: str, length: int | None, extra: str = "") -> bytes:
        size = f"Content-Length: {length}\r\n" if length is not None else ""
        return (
            f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n{size}{extra}"
            "Connection: close\r\n\r\n"
        ).encode()

    def _hang(self, conn: socket.socket, path: str) -> None:
        self._wait_until_gone(conn)

    def _drip(self, conn: socket.socket, path: str) -> None:
        body = json.dumps({"1": {"name": "x" * 10_000}}).encode()
        for byte in self._head("200 OK", len(body)) + body:
            if self._stop.is_set() or self._client_gone(conn):
                return
            conn.sendall(bytes([byte]))
            self._stop.wait(DRIP_EVERY)

    def _huge(self, conn: socket.socket, path: str) -> None:
        conn.sendall(self._head("200 OK", HUGE_BYTES))
        chunk = b"[" + b" " * 65535
        sent = 0
        while sent < HUGE_BYTES and not self._stop.is_set():
            conn.sendall(chunk)
            sent += len(chunk)

    def _nested(self, conn: socket.socket, path: str) -> None:
        body = b"[" * NESTING + b"]" * NESTING
        conn.sendall(self._head("200 OK", len(body)) + body)
        self._wait_until_gone(conn)

    def _non_utf8(self, conn: socket.socket, path: str) -> None:
        body = b'{"1": {"type": "ZLLTemperature", "name": "\xff\xfe\xc3(", "state": {}}}'
        conn.sendall(self._head("200 OK", len(body)) + body)
        self._wait_until_gone(conn)

    def _redirect_loop(self, conn: socket.socket, path: str) -> None:
        conn.sendall(self._head("302 Found", 0, f"Location: http://{self.address}{path}\r\n"))
        self._wait_until_gone(conn)

    def _header_flood(self, conn: socket.socket, path: str) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\n")
        for n in range(1_000_000):
            if self._stop.is_set():
                return
            conn.sendall(f"X-Flood-{n}: {'y' * 100}\r\n".encode())


def _blocked_in_socket_reads() -> list[str]:
    """Names of threads (other than this one) whose stack sits in a socket read."""
    blocked = []
    me = threading.get_ident()
    names = {t.ident: t.name for t in threading.enumerate()}
    for ident, frame in sys._current_frames().items():
        if ident == me:
            continue
        functions = set()
        while frame is not None:
            functions.add(frame.f_code.co_name)
            frame = frame.f_back
        if functions & {"readinto", "recv_into", "_read_capped", "getresponse", "_fetch"}:
            blocked.append(names.get(ident, str(ident)))
    return blocked


@pytest.fixture
def settings(tmp_path: Path):
    setup = Setup(tmp_path, None, None)
    setup.write_hue_key("homepoll-hostile-key-0123456789")
    setup.write_cookies({"csrf": "hostile-csrf-0123456789", "session-id": "hostile-sid-987654"})
    setup.write(
        retry={
            "max_attempts": 3,
            "initial_delay": 0.02,
            "max_delay": 0.05,
            "jitter": 0,
            "attempt_timeout": ATTEMPT_TIMEOUT,
            "poll_budget": DEADLINE,
        },
        collectors={"hue": {"enabled": True}, "amazon_aqm": {"enabled": True}},
    )
    return load_config(setup.config_path)


def _runner(name: str, config, address: str) -> CollectorRunner:
    if name == "hue":  # a plain-HTTP bridge
        collector = HueCollector(replace(config.hue, bridge=address, transport="http"))
        retry = config.hue.retry
    elif name == "hue_https":  # a bridge that has worked over HTTPS, its id known
        data = Path(config.data_dir)
        (data / STATE_FILE).write_text(
            json.dumps({"bridges": {address: {"bridge_id": BRIDGE_ID, "https": True}}})
        )
        settings = replace(config.hue, bridge=address, ca_file=data / "ca.pem", api="v1")
        collector = HueCollector(settings, state_dir=data)
        retry = config.hue.retry
    else:
        collector = AmazonAqmCollector(replace(config.amazon_aqm, base_url=f"http://{address}"))
        retry = config.amazon_aqm.retry
    return CollectorRunner(
        collector,
        interval=1.0,
        retry=retry,
        backoff=BackoffSettings(failure_threshold=10**6),
        writer=None,
        alert=None,
        status=None,
    )


@contextlib.contextmanager
def _servers(tls: ssl.SSLContext) -> Iterator[dict[str, HostileServer]]:
    with contextlib.ExitStack() as stack:
        yield {
            f"{name}:{kind}": stack.enter_context(
                HostileServer(kind, tls if name == "hue_https" else None)
            )
            for name in NAMES
            for kind in KINDS
        }


def _bridge_tls(data: Path) -> ssl.SSLContext:
    """A bridge certificate (CN = bridge id) from a test root; the root goes to data/ca.pem."""
    ca = TestCa()
    (data / "ca.pem").write_text(ca.pem)
    cert, key = ca.issue(BRIDGE_ID).files(data, "bridge")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


@pytest.fixture
def quiet_logs() -> Iterator[None]:
    """Thousands of failed attempts: pytest's log capture would keep every record (and with it
    each exception's frames) alive, which is not what the daemon does."""
    logger = logging.getLogger("homepoll")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    yield
    logger.setLevel(level)


def test_hostile_servers_end_by_deadline_with_no_thread_or_socket_leak(
    settings, quiet_logs
) -> None:
    polls = count_knob("HOMEPOLL_HOSTILE_POLLS", 5)
    assert isinstance(settings.hue.retry, RetrySettings)
    results: dict[str, dict[str, object]] = {}
    with _servers(_bridge_tls(Path(settings.data_dir))) as servers:
        before_fds = open_fd_targets()
        before = proc_stats()
        rss_peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

        async def drive(name: str, kind: str) -> None:
            server = servers[f"{name}:{kind}"]
            runner = _runner(name, settings, server.address)
            outcomes: dict[str, int] = {}
            longest = 0.0
            try:
                for _ in range(polls):
                    started = time.monotonic()
                    report = await runner.poll(store=False)
                    longest = max(longest, time.monotonic() - started)
                    outcomes[report.outcome] = outcomes.get(report.outcome, 0) + 1
            finally:
                await runner.collector.aclose()
            results[f"{name}:{kind}"] = {
                "outcomes": outcomes,
                "longest_poll_s": round(longest, 3),
                "connections": server.connections,
            }

        async def main() -> None:
            # One kind at a time, both collectors side by side (as in the daemon); then the
            # Hue bridge over TLS alone (the server's TLS work shares this process's CPU).
            for kind in KINDS:
                await asyncio.gather(*(drive(name, kind) for name in ("hue", "amazon_aqm")))
            for kind in KINDS:
                await drive("hue_https", kind)

        # Not asyncio.run(): it would join a worker thread stuck in a read forever, and a
        # stuck thread is exactly what this test must report rather than hang on.
        loop = asyncio.new_event_loop()
        executor = ThreadPoolExecutor(max_workers=6, thread_name_prefix="hostile-poll")
        loop.set_default_executor(executor)
        try:
            loop.run_until_complete(main())
        finally:
            executor.shutdown(wait=False)
            loop.close()
        # Any worker thread must have left its socket read by its own timeout by now.
        deadline = time.monotonic() + ATTEMPT_TIMEOUT + 2.0
        while time.monotonic() < deadline and (
            _blocked_in_socket_reads() or any(s.open_connections() for s in servers.values())
        ):
            time.sleep(0.05)
        blocked = _blocked_in_socket_reads()
        still_open = {k: s.open_connections() for k, s in servers.items() if s.open_connections()}
        after = proc_stats()
        after_fds = open_fd_targets()
        rss_growth_mib = (
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_peak_before
        ) / 1024

    problems = []
    for key, result in results.items():
        name, kind = key.split(":")
        if result["longest_poll_s"] > DEADLINE + 0.3:
            problems.append(f"{key}: a poll outlived its deadline: {result}")
        if not set(result["outcomes"]) <= EXPECTED[name][kind]:
            problems.append(f"{key}: misclassified: {result}")
        if result["connections"] < polls:  # stuck worker threads starve later polls
            problems.append(f"{key}: only {result['connections']} of {polls} polls got out")
    assert not problems, "\n".join(problems)
    assert not blocked, f"threads still in a socket read: {blocked}"
    assert not still_open, f"connections the client never closed: {still_open}"
    assert len(after_fds) <= len(before_fds), sorted(set(after_fds) - set(before_fds))
    assert rss_growth_mib < 80, f"peak RSS grew by {rss_growth_mib:.0f} MiB"
    record_figures(
        "hostile servers",
        polls=polls * len(results),
        polls_per_kind=polls,
        faults={kind: polls * 2 for kind in KINDS},
        results=results,
        start=before,
        end=after,
        peak_rss_growth_mib=round(rss_growth_mib, 1),
    )
