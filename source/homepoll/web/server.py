"""The web face's HTTP server: aiohttp in the daemon's own event loop, kept on a short leash.

Why aiohttp: it runs in the loop the daemon already has (no second thread or process), and
it already defends against the hostile clients this must survive: header lines over 8 KiB and
more than 128 headers get a 400 before anything is buffered, and its keep-alive timer starts
when the connection opens, so a client that never finishes its request is dropped after
``IDLE_TIMEOUT``. On top of that the server caps open connections (``MAX_CONNECTIONS``) and
the work in flight (``MAX_BUSY``): a flood gets 503s or closed sockets, never more memory or a
later poll. All reading and rendering runs in the web's own worker threads.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from aiohttp import web

log = logging.getLogger("homepoll.web")

T = TypeVar("T")

IDLE_TIMEOUT = 10.0
"""Seconds a connection may stay open without a complete request (slow or silent clients)."""
MAX_CONNECTIONS = 64
"""Open connections at most; more are closed at once (each costs a few kilobytes)."""
MAX_BUSY = 4
"""Requests being answered at once; more get 503 (queries are the costly part)."""
STOP_TIMEOUT = 0.5
"""Seconds given to requests in flight at shutdown: they only read, and the daemon's 10 s
stop budget belongs to the poll in flight and the final flush."""
WORKERS = 2


class _Refused(asyncio.Protocol):
    """Stands in for a request handler when the connection cap is reached: closes at once."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.abort()


class WebServer:
    """Serves an aiohttp ``Application`` on one listening socket until ``stop``."""

    def __init__(self, app: web.Application, host: str, port: int) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.url: str | None = None
        self._runner: web.AppRunner | None = None
        self._server: asyncio.AbstractServer | None = None
        self._executor = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="homepoll-web")
        self._busy = asyncio.Semaphore(MAX_BUSY)
        app["homepoll.server"] = self

    async def start(self) -> bool:
        """Listen; False (after one clear ERROR line) when the address cannot be had."""
        try:
            sock = _listen(self.host, self.port)
        except OSError as exc:
            reason = "the port is in use" if exc.errno == errno.EADDRINUSE else exc.strerror
            log.error(
                "web face not started: cannot listen on %s:%d (%s); polling goes on without it."
                " Set web.listen to a free address or web.enabled: false",
                self.host,
                self.port,
                reason,
            )
            self._executor.shutdown(wait=False)
            return False
        self._runner = web.AppRunner(
            self.app,
            handle_signals=False,
            access_log=None,
            keepalive_timeout=IDLE_TIMEOUT,
            handler_cancellation=True,
            shutdown_timeout=STOP_TIMEOUT,
        )
        await self._runner.setup()
        handlers = self._runner.server
        assert handlers is not None

        def protocol() -> asyncio.Protocol:
            if len(handlers.connections) >= MAX_CONNECTIONS:
                return _Refused()
            return handlers()

        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(protocol, sock=sock, backlog=MAX_CONNECTIONS)
        host, port = sock.getsockname()[:2]
        self.port = port
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{port}/"
        log.info("web face at %s", self.url)
        return True

    async def stop(self) -> None:
        """Stop listening, give requests in flight ``STOP_TIMEOUT``, close every connection."""
        if self._server is not None:
            self._server.close()
        if self._runner is not None:
            try:
                await asyncio.wait_for(self._runner.cleanup(), STOP_TIMEOUT * 2)
            except (TimeoutError, Exception):  # never let the web face hold up the stop
                log.warning("web face: some connections did not close in time")
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def offload(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn`` in the web's worker threads, or refuse (503) when too much is in flight."""
        if self._busy.locked():
            raise web.HTTPServiceUnavailable(text="busy, try again\n", headers={"Retry-After": "5"})
        async with self._busy:
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(MAX_CONNECTIONS)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
