"""An optional feature switched off costs nothing, not even its import (web face, MQTT).

The daemon runs with ``PYTHONPROFILEIMPORTTIME``, so every module it ever imports is named on
its stderr, pure-Python ones too (``/proc/<pid>/maps`` only shows compiled extensions).
"""

from __future__ import annotations

from tests.conftest import free_port, wait_for
from tests.web_support import collectors

OPTIONAL_PACKAGES = {"aiohttp", "prometheus_client", "aiomqtt", "paho"}


def _imported(stderr: str) -> set[str]:
    """Top-level package names of every module the process imported."""
    names = set()
    for line in stderr.splitlines():
        if line.startswith("import time:") and line.count("|") == 2:
            module = line.rsplit("|", 1)[1].strip()
            names.add(module.split(".")[0])
    return names


def _run_until_polled(setup, daemons) -> set[str]:
    daemon = daemons(setup, PYTHONPROFILEIMPORTTIME="1")
    wait_for(
        lambda: sum(c.get("outcomes", {}).get("ok", 0) for c in collectors(setup).values()) >= 1,
        timeout=30,
    )
    assert daemon.stop() == 0, daemon.stderr()[-2000:]
    return _imported(daemon.stderr())


def test_web_and_mqtt_off_import_none_of_their_packages(hue_sim, setup_factory, daemons) -> None:
    setup = setup_factory(hue=hue_sim)
    setup.write(web={"enabled": False})  # mqtt is off by default
    imported = _run_until_polled(setup, daemons)
    assert {"httpx", "apscheduler", "homepoll"} <= imported  # the list is the daemon's imports
    assert not imported & OPTIONAL_PACKAGES


def test_mqtt_on_imports_its_client(hue_sim, setup_factory, daemons) -> None:
    """The other side: the check above sees a feature's packages when it is on."""
    setup = setup_factory(hue=hue_sim)
    # Nothing listens on the broker port: the client is imported, the link retries, polls go on.
    setup.write(web={"enabled": False}, mqtt={"enabled": True, "port": free_port()})
    imported = _run_until_polled(setup, daemons)
    assert {"aiomqtt", "paho"} <= imported
    assert "aiohttp" not in imported
