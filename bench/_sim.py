"""The loopback simulators in their own process, so their CPU never counts as homepoll's.

Started by bench/run.py: prints one JSON line (addresses, Hue key, Amazon cookie jar) and
serves until its standard input closes or it gets SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading

from homepoll.simulator.aqm_api import AqmApiSimulator
from homepoll.simulator.hue_bridge import HueBridgeSimulator


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hue-devices", type=int, default=7)
    parser.add_argument("--aqm-monitors", type=int, default=0)
    parser.add_argument("--update-period", type=float, default=5.0)
    parser.add_argument("--aqm-update-period", type=float, default=5.0)
    args = parser.parse_args()

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    hue = HueBridgeSimulator(devices=args.hue_devices, update_period=args.update_period)
    aqm = AqmApiSimulator(monitors=max(1, args.aqm_monitors), update_period=args.aqm_update_period)
    with hue, aqm:
        info = {
            "hue": hue.address,
            "hue_key": hue.key,
            "aqm_url": aqm.base_url,
            "cookies": aqm.valid_cookies,
            "monitors": [m.endpoint_id for m in aqm.monitors][: args.aqm_monitors],
        }
        print(json.dumps(info), flush=True)

        def wait_stdin() -> None:
            sys.stdin.read()
            stop.set()

        threading.Thread(target=wait_stdin, daemon=True).start()
        stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
