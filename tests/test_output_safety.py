"""What a hostile or careless source says reaches people only redacted and inert (issue 11
items 8 and 9): an Amazon error that echoes a cookie, a bridge error full of escape sequences.

Both sources are played by a small loopback server in this file that answers every request
with one fixed hostile body (the simulators' faults answer with fixed, harmless texts).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from homepoll.simulator.aqm_api import AqmApiSimulator

ESCAPES = "\x1b]0;pwned\x07\x1b[2J\x9b2J\u202etxt.exe\u2066"


@contextmanager
def hostile_server(answer: Callable[[BaseHTTPRequestHandler], object]) -> Iterator[str]:
    """A loopback HTTP server answering every GET/POST with 200 and ``answer(request)`` as JSON."""

    class Handler(BaseHTTPRequestHandler):
        def _reply(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            body = json.dumps(answer(self)).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _reply

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _echo_cookies(request: BaseHTTPRequestHandler) -> object:
    values = [part.partition("=")[2] for part in (request.headers.get("Cookie") or "").split(";")]
    return {
        "data": None,
        "errors": [
            {
                "message": "Session " + " ".join(values) + " is not valid" + ESCAPES,
                "extensions": {"code": "UNAUTHENTICATED"},
            }
        ],
    }


def test_an_amazon_error_echoing_a_cookie_is_stored_and_printed_redacted(setup_factory) -> None:
    with AqmApiSimulator() as aqm, hostile_server(_echo_cookies) as address:
        setup = setup_factory(aqm=aqm)
        cookies = aqm.valid_cookies
        setup.write(collectors={"amazon_aqm": {"base_url": f"http://{address}"}})
        once = setup.cli("once", "--collector", "amazon_aqm")
        status = setup.cli("status")
    assert once.returncode == 1, once.stdout + once.stderr
    assert "FAILED (auth)" in once.stdout
    stored = [error for (error,) in setup.query("SELECT error FROM polls")]
    alert = "".join(p.read_text() for p in setup.data.glob("ALERT_*.txt"))
    assert stored and alert
    for text in (once.stdout, once.stderr, status.stdout, *stored, alert, setup.log_text()):
        for value in cookies.values():
            assert value not in text
    for text in (once.stdout, once.stderr, status.stdout, status.stderr, alert):
        for char in "\x1b\x07\x9b\u202e\u2066":
            assert char not in text, (char, text)


def test_escape_sequences_from_a_bridge_never_reach_the_terminal(setup_factory) -> None:
    error = [{"error": {"type": 7, "address": "/sensors", "description": ESCAPES}}]
    with hostile_server(lambda request: error) as address:
        setup = setup_factory()
        setup.write_hue_key("homepoll-sim-key-0123456789abcdef")
        setup.write(
            retry={"max_attempts": 1},
            collectors={"hue": {"enabled": True, "bridge": address}},
        )
        once = setup.cli("once")
        status = setup.cli("status")
    assert once.returncode == 1, once.stdout + once.stderr
    assert "pwned" in once.stdout and "pwned" in status.stdout  # shown, but inert
    for text in (once.stdout, once.stderr, status.stdout, status.stderr):
        for char in "\x1b\x07\x9b\u202e\u2066":
            assert char not in text, (char, text)
