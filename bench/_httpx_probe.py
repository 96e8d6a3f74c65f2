"""RSS and CPU of httpx's AsyncClient against a sync httpx.Client run in asyncio.to_thread.

``python bench/_httpx_probe.py async|sync`` prints one JSON line. A loopback HTTP server in
the same process answers the POSTs (its CPU is the same in both modes), so the difference
between the two modes is the client path alone: what AmazonAqmCollector would save by
calling Amazon the way HueCollector calls the bridge.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = b'{"data": {"listEndpoints": {"endpoints": []}}}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


def rss_kb() -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS"):
                return int(line.split()[1])
    return 0


async def measure(mode: str, url: str) -> dict:
    base = rss_kb()
    if mode == "async":
        client = httpx.AsyncClient()

        async def post() -> None:
            await client.post(url, content=b"{}")
    else:
        sync_client = httpx.Client()

        async def post() -> None:
            await asyncio.to_thread(sync_client.post, url, content=b"{}")

    for _ in range(20):
        await post()
    grown = rss_kb() - base
    t0 = time.process_time()
    for _ in range(200):
        await post()
    cpu = (time.process_time() - t0) / 200
    return {"mode": mode, "rss_growth_kb": grown, "cpu_per_request": cpu}


def main() -> int:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/nexus/v1/graphql"
    print(json.dumps(asyncio.run(measure(sys.argv[1], url))))
    server.shutdown()
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
