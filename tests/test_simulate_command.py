"""``homepoll simulate`` (issue 11 item 17, fault names): --help lists them, and every port
rejects names nobody knows while accepting, and passing on, those meant for the other port."""

from __future__ import annotations

import subprocess
import sys
import urllib.error
import urllib.request

from homepoll.simulator import aqm_api, hue_bridge
from tests.conftest import SOURCE, free_port, wait_for


def test_help_lists_every_fault_name() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "homepoll", "simulate", "--help"],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(SOURCE), "PATH": "/usr/bin:/bin"},
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    for target, kinds in (("hue", hue_bridge.FAULT_KINDS), ("aqm", aqm_api.FAULT_KINDS)):
        line = next(x for x in result.stdout.splitlines() if x.strip().startswith(f"{target}."))
        assert all(kind in line for kind in kinds), (kinds, line)


def _post(port: int, path: str, body: str) -> int:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body.encode())
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return answer.status
    except urllib.error.HTTPError as error:
        return error.code


def _get(port: int, path: str) -> int:
    """The HTTP status, or 0 while nothing listens yet."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:
            return answer.status
    except urllib.error.HTTPError as error:
        return error.code
    except (urllib.error.URLError, ConnectionError):
        return 0


def test_every_port_rejects_unknown_names_and_passes_on_the_others() -> None:
    hue_port, aqm_port = free_port(), free_port()
    ports = ["--hue-port", str(hue_port), "--aqm-port", str(aqm_port)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "homepoll", "simulate", *ports],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={"PYTHONPATH": str(SOURCE), "PATH": "/usr/bin:/bin"},
    )
    try:
        wait_for(lambda: _get(hue_port, "/api/config") and _get(aqm_port, "/_sim/faults"))
        for port in (hue_port, aqm_port):
            for script in ("hue.no_such_fault", "aqm.no_such_fault", "no_such_fault"):
                assert _post(port, "/_sim/faults", script) == 400, (port, script)
        # a step for the other simulator is accepted on either port and reaches it
        assert _post(hue_port, "/_sim/faults", "aqm.http_503") == 200
        assert _post(aqm_port, "/_sim/faults", "hue.http_503") == 200
        assert _get(hue_port, f"/api/{hue_bridge.DEFAULT_KEY}/sensors") == 503
        assert _post(aqm_port, aqm_api.GRAPHQL_PATH, "{}") == 503
    finally:
        proc.terminate()
        proc.communicate(timeout=10)
