"""The web face's routes: dashboard, /metrics, /api/latest, /api/readings, /healthz.

Handlers gather the daemon's in-memory state on the event loop (a few attribute reads), then
do every database read and all rendering in the web's worker threads (``WebServer.offload``),
on read-only connections. Nothing here writes anything.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from homepoll import __version__, readout
from homepoll.errors import UsageError
from homepoll.safetext import one_line
from homepoll.web import page
from homepoll.web.queries import DEFAULT_RANGE, RANGES, chart_series
from homepoll.web.server import WebServer
from homepoll.web.style import STYLESHEET

if TYPE_CHECKING:
    from homepoll.daemon import Daemon

# Sent with every answer: the page may load nothing from anywhere (not even from us, apart
# from its inline style), so a hostile sensor name could not pull in a script or a tracker.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
MAX_ALERT_CHARS = 2000
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"  # the text format 0.0.4


def daemon_state(daemon: Daemon) -> dict[str, Any]:
    """The daemon's live numbers, read on the event loop (cheap attribute reads only)."""
    collectors = []
    for runner in daemon.runners.values():
        collectors.append(
            {
                "name": runner.name,
                "state": runner.state,
                "last_success": runner.last_success,
                "last_error": one_line(runner.last_error, 300) if runner.last_error else None,
                "consecutive_failures": runner.consecutive_failures,
                "outcomes": dict(runner.outcomes),
                "retries": getattr(runner, "retries", 0),
                "readings_stored": runner.readings_stored,
            }
        )
    writer = daemon.writer
    return {
        "started_at": daemon.started_at,
        "collectors": collectors,
        "spool": _spool(daemon),
        "queued": writer.storage.queued if writer else 0,
        "dropped": writer.storage.dropped if writer else 0,
        "version": __version__,
        "mqtt": daemon.mqtt_status.snapshot() if daemon.mqtt_status is not None else None,
    }


def _spool(daemon: Daemon) -> Path | None:
    """Where the daemon keeps readings waiting for the next commit (shown as if stored)."""
    return daemon.writer.storage.spool_path if daemon.writer else None


def build_app(daemon: Daemon, db_path: Path, data_dir: Path) -> web.Application:
    """The aiohttp application for ``daemon``; every handler is read-only."""

    def server(request: web.Request) -> WebServer:
        return request.app["homepoll.server"]

    async def dashboard(request: web.Request) -> web.Response:
        view = RANGES.get(request.query.get("range", DEFAULT_RANGE), RANGES[DEFAULT_RANGE])
        state = daemon_state(daemon)
        html = await server(request).offload(_dashboard_html, db_path, data_dir, view, state)
        return web.Response(text=html, content_type="text/html", headers=SECURITY_HEADERS)

    async def metrics_text(request: web.Request) -> web.Response:
        state = daemon_state(daemon)
        body = await server(request).offload(_metrics_body, db_path, data_dir, state)
        return web.Response(
            body=body, headers={**SECURITY_HEADERS, "Content-Type": METRICS_CONTENT_TYPE}
        )

    async def api_latest(request: web.Request) -> web.Response:
        body = await server(request).offload(_latest_json, db_path, _spool(daemon))
        return _json(body)

    async def api_readings(request: web.Request) -> web.Response:
        query = request.query
        fmt = query.get("format", "json")
        if fmt not in ("json", "csv"):
            raise web.HTTPBadRequest(text="format: json or csv\n")
        try:
            body = await server(request).offload(
                readout.readings_export,
                db_path,
                query.get("since", "24h"),
                query.get("sensor") or None,
                query.get("metric") or None,
                fmt,
                False,  # utc
                _spool(daemon),  # waiting
            )
        except UsageError as exc:
            raise web.HTTPBadRequest(text=f"{exc}\n", headers=SECURITY_HEADERS) from None
        if fmt == "csv":
            return web.Response(
                text=body, content_type="text/csv", charset="utf-8", headers=SECURITY_HEADERS
            )
        return _json(body)

    async def healthz(request: web.Request) -> web.Response:
        code, lines = await server(request).offload(_health, data_dir)
        return web.Response(
            status=200 if code == 0 else 503, text="\n".join(lines) + "\n", headers=SECURITY_HEADERS
        )

    app = web.Application(client_max_size=4096)  # read-only: no request needs a body
    app.router.add_get("/", dashboard)
    app.router.add_get("/metrics", metrics_text)
    app.router.add_get("/api/latest", api_latest)
    app.router.add_get("/api/readings", api_readings)
    app.router.add_get("/healthz", healthz)
    return app


def _json(body: str) -> web.Response:
    return web.Response(
        text=body, content_type="application/json", charset="utf-8", headers=SECURITY_HEADERS
    )


def _dashboard_html(db_path: Path, data_dir: Path, view, state: dict[str, Any]) -> str:
    from homepoll.watch import alert_texts, notices

    now_ms = int(time.time() * 1000)
    data = page.Dashboard(
        view=view,
        now_ms=now_ms,
        version=state["version"],
        collectors=state["collectors"],
        mqtt=state.get("mqtt"),
        alerts=alert_texts(data_dir, MAX_ALERT_CHARS),
        notices=notices(db_path, state["started_at"]),
        latest=readout.current_values(db_path, state.get("spool")),
        series=chart_series(db_path, view, now_ms, state.get("spool")),
    )
    return page.render(data, STYLESHEET)


def _metrics_body(db_path: Path, data_dir: Path, state: dict[str, Any]) -> bytes:
    # prometheus-client is loaded by the first scrape: 1.6 MB a dashboard-only user never pays
    from homepoll.health import open_alerts
    from homepoll.web import metrics

    state = {**state, "alerts": len(open_alerts(data_dir))}
    return metrics.exposition(readout.current_values(db_path, state.get("spool")), state)


def _latest_json(db_path: Path, spool: Path | None) -> str:
    return readout.latest_json(readout.current_values(db_path, spool), time.time())


def _health(data_dir: Path) -> tuple[int, list[str]]:
    from homepoll.health import evaluate
    from homepoll.status_file import STATUS_FILE, read_status

    return evaluate(read_status(data_dir / STATUS_FILE), data_dir)
