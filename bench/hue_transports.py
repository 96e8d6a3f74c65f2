"""Hue transports side by side: CPU per poll and RSS for v1/HTTP, v1/HTTPS and v2/HTTPS.

    .venv/bin/python bench/hue_transports.py [--polls 200] [--sizes 20,150]

Each mode polls the simulator (in its own process, so its CPU never counts) through
HueCollector.collect, back to back on one kept AsyncClient, in a fresh process per mode and
size; CPU is that process's user+sys time over the measured polls, RSS its VmRSS after them.
The floor in the same run is the same loop doing only ``GET`` + ``json.loads`` over plain
http.client (no homepoll code). Loopback only.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PYTHON = sys.executable
MODES = {"v1/HTTP": (None, "v1"), "v1/HTTPS": ("ca", "v1"), "v2/HTTPS": ("ca", "v2")}


def serve(tls: str | None, devices: int) -> int:
    from homepoll.simulator.hue_bridge import HueBridgeSimulator

    with HueBridgeSimulator(devices=devices, update_period=3600, tls=tls) as sim:
        print(json.dumps({"address": sim.address, "key": sim.key, "ca": sim.ca_pem}), flush=True)
        sys.stdin.read()
    return 0


def rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def measure(info: dict, api: str, polls: int, warmup: int) -> int:
    import asyncio

    from homepoll.collectors.hue import HueCollector
    from homepoll.config import HueSettings

    folder = Path(tempfile.mkdtemp(prefix="hpbench-hue-"))
    ca_file = None
    if info["ca"]:
        ca_file = folder / "ca.pem"
        ca_file.write_text(info["ca"])
    settings = HueSettings(bridge=info["address"], username=info["key"], api=api, ca_file=ca_file)
    collector = HueCollector(settings, state_dir=folder)

    async def run() -> dict:
        for _ in range(warmup):
            await collector.collect(10)
        cpu0, wall0 = time.process_time(), time.monotonic()
        for _ in range(polls):
            await collector.collect(10)
        cpu = time.process_time() - cpu0
        wall = time.monotonic() - wall0
        await collector.aclose()
        return {"cpu_ms_per_poll": cpu / polls * 1000, "wall_ms_per_poll": wall / polls * 1000}

    result = asyncio.run(run())
    result["rss_mb"] = rss_kb() / 1024
    print(json.dumps(result))
    return 0


def floor(info: dict, polls: int, warmup: int) -> int:
    import http.client

    def once() -> None:
        conn = http.client.HTTPConnection(info["address"], timeout=10)
        conn.request("GET", f"/api/{info['key']}/sensors")
        json.loads(conn.getresponse().read())
        conn.close()

    for _ in range(warmup):
        once()
    cpu0 = time.process_time()
    for _ in range(polls):
        once()
    print(
        json.dumps(
            {
                "cpu_ms_per_poll": (time.process_time() - cpu0) / polls * 1000,
                "rss_mb": rss_kb() / 1024,
            }
        )
    )
    return 0


def child(*args: str) -> dict:
    out = subprocess.run([PYTHON, __file__, *args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--polls", type=int, default=200)
    parser.add_argument("--sizes", default="20,150")
    parser.add_argument("--role", default="main")
    parser.add_argument("--info", default="")
    parser.add_argument("--api", default="v1")
    parser.add_argument("--tls", default="")
    parser.add_argument("--devices", type=int, default=7)
    args = parser.parse_args()
    warmup = 5
    if args.role == "serve":
        return serve(args.tls or None, args.devices)
    if args.role == "measure":
        return measure(json.loads(args.info), args.api, args.polls, warmup)
    if args.role == "floor":
        return floor(json.loads(args.info), args.polls, warmup)
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        devices = max(1, -(-size // 3))
        for mode, (tls, api) in MODES.items():
            sim = subprocess.Popen(
                [PYTHON, __file__, "--role=serve", f"--tls={tls or ''}", f"--devices={devices}"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            try:
                info = sim.stdout.readline()
                got = child(
                    "--role=measure", f"--info={info}", f"--api={api}", f"--polls={args.polls}"
                )
                if mode == "v1/HTTP":
                    rows.append(
                        (
                            size,
                            "floor (http.client GET + json.loads)",
                            child("--role=floor", f"--info={info}", f"--polls={args.polls}"),
                        )
                    )
                rows.append((size, mode, got))
            finally:
                sim.stdin.close()
                sim.wait(10)
    print(f"{'sensors':>7}  {'mode':<38} {'CPU ms/poll':>11} {'RSS MB':>7}")
    for size, mode, r in rows:
        print(f"{size:>7}  {mode:<38} {r['cpu_ms_per_poll']:>11.2f} {r['rss_mb']:>7.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
