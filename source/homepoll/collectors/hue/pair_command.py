"""``homepoll hue-pair``: pair with the config's bridge (or ``--bridge``), save the key 0600."""

from __future__ import annotations

import asyncio
import socket
import sys

from homepoll.collectors.hue.pairing import PROMPT, pair
from homepoll.config import Config
from homepoll.errors import CollectorError
from homepoll.fsutil import write_secret_file


def run_hue_pair(config: Config, bridge: str | None, wait: float) -> int:
    """Exit 0 when paired, 1 when the button was not pressed or the bridge is unreachable."""
    bridge = bridge or config.hue.bridge
    print(PROMPT.format(bridge=bridge, wait=wait), flush=True)
    shown: list[bool] = []

    def waiting() -> None:
        if not shown:
            print("waiting for the link button...", flush=True)
            shown.append(True)

    try:
        key = asyncio.run(
            pair(
                bridge,
                socket.gethostname(),
                transport=config.hue.transport,
                ca_file=config.hue.ca_file,
                data_dir=config.data_dir,
                attempts_for=wait,
                on_waiting=waiting,
            )
        )
    except CollectorError as exc:
        print(f"homepoll: pairing failed: {exc}", file=sys.stderr)
        return 1
    write_secret_file(config.hue.username_file, key + "\n")
    print(f"paired with {bridge}; key saved to {config.hue.username_file} (mode 0600)")
    if config.hue.bridge != bridge:
        print(f"set collectors.hue.bridge: {bridge} in {config.path} to poll this bridge")
    return 0
