"""HTTP plumbing of the Alexa simulator: a threaded server that can drop its connections, and
a handler that routes to the simulator and sends JSON or HTML with any headers."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from homepoll.simulator.sockets import peer_closed, reset

GRAPHQL_PATH = "/nexus/v1/graphql"
_MAX_BODY = 1_000_000


def cookie_map(header: str) -> dict[str, str]:
    sent: dict[str, str] = {}
    for part in header.split(";"):
        name, _, value = part.strip().partition("=")
        sent[name] = value
    return sent


class Server(ThreadingHTTPServer):
    daemon_threads = True
    simulator: Any

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def close_connections(self, wait: float = 2.0) -> None:
        """Wake handler threads idling on kept-alive connections; let them close their sockets."""
        with self._open_lock:
            connections = list(self._open)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            with self._open_lock:
                if not self._open:
                    return
            time.sleep(0.01)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # as nginx's tcp_nodelay: no 40 ms delayed-ACK stall
    server_version = "Server"
    sys_version = ""
    timeout = 30
    server: Server

    def setup(self) -> None:
        super().setup()
        # headers and body go out in two writes: without this, Nagle + delayed ACK add 40 ms
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        """Silenced: the simulator runs inside tests and the demo."""

    def _body(self) -> bytes | None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= _MAX_BODY:
            self.send_json(400, {"message": "bad Content-Length"})
            self.close_connection = True
            return None
        return self.rfile.read(length) if length else b""

    def do_POST(self) -> None:
        body = self._body()
        if body is None:
            return
        parts = urlsplit(self.path)
        if parts.path == GRAPHQL_PATH:
            self.server.simulator.handle_graphql(self, body)
        else:
            self.server.simulator.route(self, "POST", parts.path, parts.query, body)

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        if parts.path == GRAPHQL_PATH:
            self.send_json(405, {"message": "Method Not Allowed"})
        else:
            self.server.simulator.route(self, "GET", parts.path, parts.query, b"")

    def send(
        self,
        status: int,
        payload: bytes | dict[str, Any] | list[Any],
        headers: Mapping[str, str] | Sequence[tuple[str, str]],
    ) -> None:
        pairs = list(headers.items()) if isinstance(headers, Mapping) else list(headers)
        if isinstance(payload, bytes):
            data = payload
            content_type = dict(pairs).get("Content-Type", "text/html; charset=UTF-8")
        else:
            data = json.dumps(payload).encode()
            content_type = "application/json"
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        for key, value in pairs:
            if key != "Content-Type":
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def send_json(self, status: int, payload: dict[str, Any] | list[Any]) -> None:
        self.send(status, payload, {})

    def client_gone(self) -> bool:
        return peer_closed(self.connection)

    def abort(self) -> None:
        """Close the connection with a TCP reset and no answer at all."""
        self.close_connection = True
        reset(self.connection)
