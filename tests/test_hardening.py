"""Files and process hardening (issue 11 items 5, 6, 7): what homepoll writes cannot be turned
against the user through a planted link, a loose umask or a core dump."""

from __future__ import annotations

import os
import resource
import signal
import stat
import subprocess
import sys
from pathlib import Path

from homepoll.simulator.hue_bridge import HueBridgeSimulator
from tests.conftest import ROOT, wait_for


def _run(setup, *args: str, umask: int | None = None, core: bool = False, timeout: float = 20):
    """``homepoll ARGS`` as a subprocess, optionally under a given umask or core limit."""

    def before() -> None:
        if umask is not None:
            os.umask(umask)
        if core:
            _, hard = resource.getrlimit(resource.RLIMIT_CORE)
            resource.setrlimit(resource.RLIMIT_CORE, (hard, hard))

    return subprocess.Popen(
        [sys.executable, "-m", "homepoll", *args, "--config", str(setup.config_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=setup.env(),
        cwd=setup.root,
        preexec_fn=before,
    )


def _finish(proc: subprocess.Popen, timeout: float = 20) -> tuple[int, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        return -1, out + err
    return proc.returncode, out + err


def test_a_linked_lock_file_is_refused_and_its_target_untouched(tmp_path, setup_factory) -> None:
    setup = setup_factory()
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    (setup.data / "homepoll.lock").symlink_to(victim)
    code, output = _finish(_run(setup, "run"), timeout=15)
    assert victim.read_text() == "precious\n"
    assert code == 78, output
    assert "homepoll.lock is a symbolic link" in output


def test_a_linked_log_file_is_not_written_through(tmp_path, setup_factory, hue_sim) -> None:
    setup = setup_factory(hue=hue_sim)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    (setup.data / "homepoll.log").symlink_to(victim)
    code, output = _finish(_run(setup, "once"))
    assert victim.read_text() == "precious\n"
    assert code == 0, output  # the poll still ran; the log went to stderr only
    assert "cannot write the log file" in output and "symbolic link" in output


def test_folders_0750_files_0640_under_umask_000(setup_factory, hue_sim) -> None:
    setup = setup_factory(hue=hue_sim)
    setup.write(data_dir="fresh/data")
    fresh = setup.root / "fresh" / "data"
    setup.write_hue_key(hue_sim.key)  # puts the key under the old data dir
    setup.write(collectors={"hue": {"username_file": str(setup.data / "hue_username")}})
    code, output = _finish(_run(setup, "once", umask=0))
    assert code == 0, output
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in [fresh.parent, fresh]}
    modes |= {p.name: stat.S_IMODE(p.stat().st_mode) for p in fresh.iterdir() if p.is_file()}
    assert {"homepoll.log", "readings.db"} <= set(modes), modes
    modes.pop("status.json")  # 0644 on purpose (no secret; test_health), inside a 0750 folder
    for name, mode in modes.items():
        limit = 0o750 if name in ("fresh", "data") else 0o640
        assert mode & ~limit == 0, (name, oct(mode))


def test_open_data_dir_is_warned_about_once(setup_factory, hue_sim, daemons) -> None:
    setup = setup_factory(hue=hue_sim)
    setup.data.chmod(0o777)
    daemon = daemons(setup)
    wait_for(lambda: "polls" in setup.log_text() or setup.row_count() > 0, timeout=10)
    wait_for(lambda: setup.row_count() > 0, timeout=10)
    assert daemon.stop() == 0
    lines = [line for line in setup.log_text().splitlines() if "can be written by" in line]
    assert len(lines) == 1, lines
    assert "everyone" in lines[0] and "chmod 750" in lines[0]


def test_no_core_dumps_even_when_the_caller_allows_them(setup_factory) -> None:
    with HueBridgeSimulator() as sim:
        setup = setup_factory(hue=sim)
        proc = _run(setup, "run", core=True)
        try:
            wait_for(lambda: (setup.data / "status.json").exists(), timeout=10)
            limits = Path(f"/proc/{proc.pid}/limits").read_text().splitlines()
            line = next(x for x in limits if x.startswith("Max core file size"))
        finally:
            proc.send_signal(signal.SIGTERM)
            _finish(proc)
    assert line.split()[4:6] == ["0", "0"], line


def test_unit_forbids_core_dumps() -> None:
    text = (ROOT / "systemd" / "homepoll.service").read_text()
    assert "\nLimitCORE=0\n" in text
