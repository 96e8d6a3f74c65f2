"""The web face: dashboard, /metrics and the JSON API, served by the daemon.

Importing this package costs nothing; ``start`` imports aiohttp and prometheus-client only
when ``web.enabled`` is true, so a daemon with the web face off never loads them.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from homepoll.config import Config
    from homepoll.daemon import Daemon
    from homepoll.web.server import WebServer

log = logging.getLogger("homepoll.web")

DEFAULT_LISTEN = ("127.0.0.1", 8321)


def listen_address(config: Config) -> tuple[str, int] | None:
    """(host, port) to serve on, or None when the web face is switched off."""
    web = getattr(config, "web", None)
    if web is None or not web.enabled:
        return None
    host, port = getattr(web, "host", None), getattr(web, "port", None)
    if host is not None and port is not None:
        return str(host), int(port)
    listen = str(getattr(web, "listen", "") or "")
    host, _, port_text = listen.rpartition(":")
    if not host or not port_text.isdigit():
        return DEFAULT_LISTEN
    return host.strip("[]"), int(port_text)


async def start(daemon: Daemon) -> WebServer | None:
    """Serve the web face for ``daemon``; None when it is off or could not listen."""
    address = listen_address(daemon.config)
    if address is None:
        return None
    try:
        from homepoll.web.app import build_app
        from homepoll.web.server import WebServer
    except ImportError as exc:
        log.error(
            "web face not started: %s is not installed; run: pip install 'homepoll[web]' "
            "(or set web.enabled: false). Polling goes on without it",
            exc.name or exc,
        )
        return None
    try:
        app = build_app(daemon, daemon.config.storage.path, daemon.config.data_dir)
        server = WebServer(app, *address)
        return server if await server.start() else None
    except Exception:  # the web face must never take polling down with it
        log.exception("web face could not start; polling goes on without it")
        return None
