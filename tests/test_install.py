"""systemd/install.sh in a scratch root (issue 11 items 18-20): a fake systemctl, python3 and
runuser record what the installer asks of the system; nothing outside tmp_path is touched.

The script is shellcheck-clean (test_security) and runs here for real: folders, modes, the
config from the committed package, the wrapper, the half-made venv, --uninstall [--purge],
the systemd-time-wait-sync offer.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the installer runs as root")

FAKE_PYTHON3 = """#!/bin/bash
echo "python3 $*" >> "$FAKE_LOG"
case "$1" in
  -c) if [[ "$2" == *ensurepip* ]] && [ -n "${FAKE_NO_VENV:-}" ]; then exit 1; fi; exit 0 ;;
  -m) [ "$2" = venv ] || exit 2
      mkdir -p "$3/bin" && cp "$FAKE_BIN/venv-python" "$3/bin/python" && exit 0 ;;
esac
exit 2
"""
FAKE_VENV_PYTHON = """#!/bin/bash
echo "venv-python $*" >> "$FAKE_LOG"
if [ "$1 $2" = "-m pip" ]; then
  case "$3" in
    --version) exit 0 ;;
    install) printf '#!/bin/sh\\n' > "$(dirname "$0")/homepoll"; chmod +x "$(dirname "$0")/homepoll"
             exit 0 ;;
  esac
fi
exit 1
"""
RECORDER = """#!/bin/bash
echo "$(basename "$0") $*" >> "$FAKE_LOG"
[ "$(basename "$0") $1" = "systemctl is-active" ] && exit 3
[ "$(basename "$0") $1" = "systemctl is-enabled" ] && exit 1
exit 0
"""


class Installer:
    """A copy of the repository (git-committed) and a scratch root to install it into."""

    def __init__(self, tmp_path: Path) -> None:
        self.src = tmp_path / "checkout"
        self.root = tmp_path / "root"
        self.bin = tmp_path / "bin"
        self.log = tmp_path / "calls.log"
        ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
        self.src.mkdir()
        for name in ("pyproject.toml", "README.md", "config.yaml"):
            shutil.copy(ROOT / name, self.src / name)
        for name in ("source", "systemd"):
            shutil.copytree(ROOT / name, self.src / name, ignore=ignore)
        git = ["git", "-C", str(self.src), "-c", "user.name=t", "-c", "user.email=t@t"]
        subprocess.run([*git, "init", "-q"], check=True)
        subprocess.run([*git, "add", "-A"], check=True)
        subprocess.run([*git, "commit", "-qm", "release"], check=True)
        self.bin.mkdir()
        scripts = {"python3": FAKE_PYTHON3, "venv-python": FAKE_VENV_PYTHON}
        scripts |= {name: RECORDER for name in ("systemctl", "useradd", "userdel", "runuser")}
        for name, text in scripts.items():
            (self.bin / name).write_text(text)
            (self.bin / name).chmod(0o755)

    def run(self, *args: str, **env: str) -> subprocess.CompletedProcess:
        script = self.src / "systemd" / "install.sh"
        # An installer that does not know the scratch root would install into this machine.
        assert "HOMEPOLL_INSTALL_ROOT" in script.read_text(), "refusing to run: no scratch root"
        self.log.write_text("")
        return subprocess.run(
            ["bash", str(self.src / "systemd" / "install.sh"), *args],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=60,
            env={
                **os.environ,
                "PATH": f"{self.bin}:{os.environ['PATH']}",
                "HOMEPOLL_INSTALL_ROOT": str(self.root),
                "HOMEPOLL_INSTALL_USER": "daemon",  # exists on Debian, unlike homepoll
                "FAKE_LOG": str(self.log),
                "FAKE_BIN": str(self.bin),
                **env,
            },
        )

    def calls(self) -> list[str]:
        return self.log.read_text().splitlines()

    def path(self, absolute: str) -> Path:
        return self.root / absolute.lstrip("/")


def test_install_upgrade_recover_and_uninstall_in_a_scratch_root(tmp_path: Path) -> None:
    setup = Installer(tmp_path)
    # someone tried things in the checkout: the installer must not ship that working copy
    edited = setup.src / "config.yaml"
    edited.write_text(edited.read_text().replace("192.168.1.2", "10.9.9.9"))

    first = setup.run()
    assert first.returncode == 0, first.stdout + first.stderr
    config = setup.path("/etc/homepoll/config.yaml")
    text = config.read_text()
    assert "10.9.9.9" not in text and "192.168.1.2" in text
    assert "data_dir: /var/lib/homepoll" in text and "file: /var/log/homepoll/homepoll.log" in text
    assert stat.S_IMODE(config.stat().st_mode) == 0o640
    assert stat.S_IMODE(setup.path("/var/lib/homepoll").stat().st_mode) == 0o700
    assert (
        setup.path("/etc/systemd/system/homepoll.service").read_text()
        == (setup.src / "systemd" / "homepoll.service").read_text()
    )
    assert "systemctl daemon-reload" in setup.calls()
    assert "systemctl enable homepoll.service" in setup.calls()
    assert any(c.startswith("venv-python -m pip install") for c in setup.calls())
    assert "systemctl enable systemd-time-wait-sync.service" not in setup.calls()
    assert "tip: on a Pi without a clock chip" in first.stdout  # offered, not imposed

    wrapper = setup.path("/usr/local/bin/homepoll")
    assert stat.S_IMODE(wrapper.stat().st_mode) == 0o755
    ran = subprocess.run(
        [str(wrapper), "status", "--json"],
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": f"{setup.bin}:{os.environ['PATH']}", "FAKE_LOG": str(setup.log)},
    )
    assert ran.returncode == 0, ran.stderr
    assert setup.calls()[-1] == (
        "runuser -u daemon -- env HOMEPOLL_CONFIG=/etc/homepoll/config.yaml "
        "/opt/homepoll/venv/bin/homepoll status --json"
    )

    # a first install interrupted inside the venv: the next run rebuilds it, keeps the config
    config.write_text(text + "# mine\n")
    python = setup.path("/opt/homepoll/venv/bin/python")
    python.write_text("#!/bin/sh\nexit 1\n")
    again = setup.run("--time-sync")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "rebuilding the half-made virtual environment" in again.stdout
    assert "kept your /etc/homepoll/config.yaml" in again.stdout
    assert config.read_text().endswith("# mine\n")
    assert setup.path("/opt/homepoll/venv/bin/homepoll").exists()
    assert "systemctl enable systemd-time-wait-sync.service" in setup.calls()

    removed = setup.run("--uninstall")
    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert "systemctl disable --now homepoll.service" in setup.calls()
    for gone in (
        "/opt/homepoll",
        "/usr/local/bin/homepoll",
        "/etc/systemd/system/homepoll.service",
    ):
        assert not setup.path(gone).exists(), gone
    for kept in ("/etc/homepoll/config.yaml", "/var/lib/homepoll", "/var/log/homepoll"):
        assert setup.path(kept).exists(), kept

    purged = setup.run("--uninstall", "--purge")
    assert purged.returncode == 0, purged.stdout + purged.stderr
    for gone in ("/etc/homepoll", "/var/lib/homepoll", "/var/log/homepoll"):
        assert not setup.path(gone).exists(), gone


def test_missing_python3_venv_is_named_with_its_apt_line(tmp_path: Path) -> None:
    setup = Installer(tmp_path)
    result = setup.run(FAKE_NO_VENV="1")
    assert result.returncode == 1
    assert "sudo apt install python3-venv" in result.stderr
    assert not setup.path("/opt/homepoll").exists()


def test_bad_options_exit_64(tmp_path: Path) -> None:
    setup = Installer(tmp_path)
    assert setup.run("--purge").returncode == 64
    assert setup.run("--frobnicate").returncode == 64
