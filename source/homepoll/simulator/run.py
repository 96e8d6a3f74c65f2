"""``homepoll simulate``: both simulators on loopback until SIGINT/SIGTERM."""

from __future__ import annotations

import signal
import sys
import threading

from homepoll.errors import EX_CONFIG
from homepoll.simulator import aqm_api, hue_bridge
from homepoll.simulator.faults import all_fault_kinds, validate_script


def check_script(script: str) -> list[str]:
    """Problems in a fault script, given the kinds each simulator knows."""
    return validate_script(script, {"hue": hue_bridge.FAULT_KINDS, "aqm": aqm_api.FAULT_KINDS})


def fault_help() -> str:
    """The fault names each simulator knows, for ``homepoll simulate --help``."""
    lines = ["faults (--faults SCRIPT, or POST a script to /_sim/faults on either port):"]
    for target, kinds in all_fault_kinds().items():
        lines.append(f"  {target}.{{{','.join(kinds)}}}")
    lines.append("  for either: ok, sticky(kind=NAME), random(seed=N,rate=0.3)")
    lines.append('  steps: KIND, KIND*N, KIND(key=value)*N, e.g. "hue.http_503*2 aqm.http_401"')
    return "\n".join(lines)


def run_simulators(hue_port: int, aqm_port: int, faults: str) -> int:
    problems = check_script(faults)
    if problems:
        for problem in problems:
            print(f"homepoll: --faults: {problem}", file=sys.stderr)
        return EX_CONFIG
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    with (
        hue_bridge.HueBridgeSimulator(port=hue_port) as hue,
        aqm_api.AqmApiSimulator(port=aqm_port) as aqm,
    ):
        hue.faults.partners["aqm"] = aqm.faults  # a script posted to either port drives both
        aqm.faults.partners["hue"] = hue.faults
        hue.faults.apply_script(faults, "hue")
        print(f"Hue bridge simulator:  http://{hue.address}  key: {hue.key}")
        print(f"Alexa API simulator:   http://{aqm.address}/nexus/v1/graphql")
        print()
        print("Point a config at them:")
        print(f"  collectors.hue.bridge: {hue.address}")
        print(f"  collectors.amazon_aqm.base_url: http://{aqm.address}")
        print(f"  HOMEPOLL_HUE_USERNAME={hue.key}")
        print(f"  cookies: echo '{aqm.cookie_header()}' | homepoll amazon-cookies -")
        print(
            "Press the simulated link button (pairing open for 30 s), then run hue-pair:\n"
            f"  curl -X POST http://{hue.address}/_sim/press_button"
        )
        print(
            "Fault scripts: POST a script to /_sim/faults on either port. Ctrl-C stops.", flush=True
        )
        stop.wait()
    return 0
