"""Disk trouble under the running daemon: a full disk, a deleted or garbage database, a
filesystem that turns read-only (what an SD card does on errors with errors=remount-ro).

The disks are real: a size-limited tmpfs and a loop-mounted ext4 image created here (root and
mount(8) needed; skipped with the reason otherwise). The daemon must keep polling, say clearly
in its log and in ``homepoll status`` what is wrong, keep the readings queued, and catch up
when the trouble ends.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from homepoll.simulator.aqm_api import AqmApiSimulator
from homepoll.simulator.hue_bridge import HueBridgeSimulator
from tests.conftest import Setup, wait_for
from tests.reliability_support import (
    assert_every_served_stored_once,
    assert_integrity_ok,
    assert_no_secrets,
    collector_state,
    integrity,
    poll_count,
    record_figures,
    secrets_of,
    served_map,
    status_json,
    stored_rows,
)


def _can_mount() -> str | None:
    """None when this machine lets the test mount filesystems, else why not."""
    if os.geteuid() != 0:
        return "mounting a test filesystem needs root"
    if shutil.which("mount") is None:
        return "mount(8) is not installed"
    return None


needs_mount = pytest.mark.skipif(_can_mount() is not None, reason=str(_can_mount()))


@pytest.fixture
def mounts() -> Iterator[Callable[..., None]]:
    """Mount filesystems for one test; everything is unmounted (lazily) afterwards."""
    mounted: list[Path] = []
    loops: list[str] = []

    def mount(kind: str, target: Path, *, size: str = "8m", image: Path | None = None) -> None:
        target.mkdir(parents=True, exist_ok=True)
        if kind == "tmpfs":
            command = ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(target)]
        else:  # ext4 on a loop device, remounted read-only on errors like a Pi's root fs
            assert image is not None
            loop = subprocess.run(
                ["losetup", "--find", "--show", str(image)], capture_output=True, text=True
            )
            if loop.returncode != 0:
                pytest.skip(f"no loop device: {loop.stderr.strip()}")
            loops.append(loop.stdout.strip())
            command = ["mount", "-t", "ext4", "-o", "errors=remount-ro", loops[-1], str(target)]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            pytest.skip(f"cannot mount a test filesystem: {result.stderr.strip()}")
        mounted.append(target)

    yield mount
    for target in reversed(mounted):
        subprocess.run(["umount", "-l", str(target)], capture_output=True)
    for loop in loops:
        subprocess.run(["losetup", "-d", loop], capture_output=True)


def _fill(folder: Path) -> Path:
    """Write a filler file until the filesystem says ENOSPC."""
    filler = folder / "filler.bin"
    block = b"\0" * 65536
    with open(filler, "wb", buffering=0) as handle:
        try:
            while True:
                handle.write(block)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
    # the last partial blocks too
    with contextlib.suppress(OSError), open(folder / "filler2.bin", "wb", buffering=0) as handle:
        while True:
            handle.write(b"\0" * 512)
    return filler


def _served_count(*sims) -> int:
    return len(served_map(*sims))


@needs_mount
def test_disk_full_keeps_polling_queues_readings_and_catches_up(tmp_path, mounts, daemons) -> None:
    mounts("tmpfs", tmp_path / "data", size="6m")
    with (
        HueBridgeSimulator(update_period=1.0) as hue,
        AqmApiSimulator(update_period=1.0, monitors=2) as aqm,
    ):
        setup = Setup(tmp_path, hue, aqm)
        setup.write(log={"level": "INFO"})
        daemon = daemons(setup)
        wait_for(lambda: setup.row_count() > 0)
        wait_for(lambda: collector_state(setup, "amazon_aqm").get("state") == "ok")

        _fill(setup.data)
        full_at = _served_count(hue, aqm)
        wait_for(lambda: _served_count(hue, aqm) >= full_at + 40, timeout=15)
        assert daemon.alive()
        status = setup.cli("status")
        assert status.returncode == 1, status.stdout
        assert "disk full" in status.stdout
        log = daemon.stderr()
        assert "database write failed" in log and "full" in log, log[-2000:]
        assert "Traceback" not in log

        for filler in setup.data.glob("filler*.bin"):
            filler.unlink()
        wait_for(
            lambda: (
                status_json(setup).get("storage", {}).get("queued") == 0
                and not status_json(setup)["storage"].get("last_error")
            ),
            timeout=15,
        )
        assert setup.cli("status").returncode == 0
        assert daemon.stop() == 0
        assert_integrity_ok(setup.db)
        counts = assert_every_served_stored_once(setup, hue, aqm)
        assert "database writes work again" in setup.log_text()
        assert_no_secrets(setup, secrets_of(hue, aqm), stderr=daemon.stderr())
    record_figures(
        "disk full (6 MB tmpfs filled up, then freed)",
        polls=poll_count(setup),
        faults={"enospc": 1},
        **counts,
    )


def _break_database(setup: Setup, how: str) -> None:
    garbage = os.urandom(200_000)
    if how == "deleted":
        for suffix in ("", "-wal", "-shm"):
            Path(f"{setup.db}{suffix}").unlink(missing_ok=True)
    elif how == "renamed_over":
        fake = setup.data / "garbage.tmp"
        fake.write_bytes(garbage)
        fake.replace(setup.db)
    else:  # `cp garbage readings.db`: same inode, new content
        # Checkpoint first: with every page still in the -wal, SQLite would simply rewrite the
        # file from it (it heals); after a checkpoint the file itself is the only copy.
        conn = sqlite3.connect(setup.db, timeout=5)
        try:
            wait_for(lambda: conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0)
        finally:
            conn.close()
        with open(setup.db, "r+b") as handle:
            handle.write(garbage)
            handle.truncate()


def test_database_deleted_or_replaced_by_garbage_while_running(
    hue_sim, setup_factory, daemons
) -> None:
    setup = setup_factory(hue=hue_sim)
    setup.write(log={"level": "INFO"})
    daemon = daemons(setup)
    wait_for(lambda: setup.row_count() > 0)
    wait_for(lambda: poll_count(setup) >= 2)
    figures = {}
    for how in ("deleted", "renamed_over", "overwritten_in_place"):
        corrupt_before = len(list(setup.data.glob("readings.db.corrupt-*")))
        log_before = len(setup.log_text())
        polls = collector_state(setup, "hue").get("polls", 0)
        _break_database(setup, how)
        # A poll in flight at that moment may have committed into the file that went away:
        # count only what is served once the next poll has finished.
        wait_for(lambda n=polls: collector_state(setup, "hue").get("polls", 0) > n)
        served_before = set(served_map(hue_sim))
        replaced_at = _served_count(hue_sim)
        wait_for(lambda n=replaced_at: _served_count(hue_sim) >= n + 6, timeout=15)
        assert daemon.alive()
        wait_for(lambda: collector_state(setup, "hue").get("state") == "ok")
        wait_for(lambda n=replaced_at: setup.row_count() > 0)
        log = setup.log_text()[log_before:]
        if how == "deleted":
            assert "deleted or replaced" in log
        else:
            assert "is corrupt" in log or "deleted or replaced" in log
        if how == "overwritten_in_place":
            assert "is corrupt" in log
        if "is corrupt" in log:
            assert len(list(setup.data.glob("readings.db.corrupt-*"))) > corrupt_before
        assert integrity(setup.db) == "ok"
        # Everything served after the trouble is in the new file, once; nothing else is.
        wait_for(lambda b=served_before: set(served_map(hue_sim)) - b <= _stored_keys(setup))
        after = set(served_map(hue_sim)) - served_before
        stored = _stored_keys(setup)
        assert after and stored <= set(served_map(hue_sim))
        assert len(stored) == len(stored_rows(setup))
        figures[how] = {"served_after": len(after), "stored": len(stored)}
    assert daemon.stop() == 0
    assert "Traceback" not in setup.log_text()
    assert integrity(setup.db) == "ok"
    record_figures(
        "database deleted, renamed over, overwritten in place (one after the other, running)",
        polls=sum(collector_state(setup, n).get("polls", 0) for n in ("hue",)),
        faults={f"db_{how}": 1 for how in figures},
        served=sum(f["served_after"] for f in figures.values()),
        stored=sum(f["stored"] for f in figures.values()),
        lost=0,
        duplicated=0,
        note="served/stored count what was served after each fault (earlier rows went with "
        "the old file)",
    )


def _stored_keys(setup: Setup) -> set[tuple]:
    return {(s, d, m, ts) for s, d, m, ts, _ in stored_rows(setup)}


def _ext4_device(target: Path) -> str | None:
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        if fields[4] == str(target):
            return fields[-2].rsplit("/", 1)[-1]  # source, e.g. /dev/loop3 -> loop3
    return None


@needs_mount
def test_filesystem_turning_read_only_keeps_daemon_up_and_status_says_why(
    tmp_path, mounts, daemons
) -> None:
    if shutil.which("mkfs.ext4") is None or shutil.which("losetup") is None:
        pytest.skip("mkfs.ext4 and losetup (e2fsprogs, util-linux) are needed")
    image = tmp_path / "sd.img"
    with open(image, "wb") as handle:
        handle.truncate(32 * 1024 * 1024)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True, capture_output=True)
    data = tmp_path / "data"
    mounts("ext4", data, image=image)
    device = _ext4_device(data)
    trigger = Path(f"/sys/fs/ext4/{device}/trigger_fs_error")
    if device is None or not trigger.exists():
        pytest.skip("this kernel has no ext4 trigger_fs_error to simulate a failing card")

    with HueBridgeSimulator(update_period=1.0) as hue:
        setup = Setup(tmp_path, hue, None)
        log_file = tmp_path / "homepoll.log"  # off the failing card, so the test can read it
        setup.write(log={"level": "INFO", "file": str(log_file)})
        daemon = daemons(setup)
        wait_for(lambda: poll_count(setup) >= 2)
        subprocess.run(["sync"], check=True)
        committed = {r[:4] for r in stored_rows(setup)}
        trigger.write_text("1")  # the kernel remounts the filesystem read-only
        broken_at = _served_count(hue)
        wait_for(lambda: _served_count(hue) >= broken_at + 15, timeout=15)
        assert daemon.alive()
        log = log_file.read_text()
        assert "database write failed" in log
        assert "Traceback" not in log
        status = setup.cli("status")
        assert status.returncode == 1, status.stdout
        assert "read-only filesystem" in status.stdout
        assert daemon.stop() == 0
        assert "could not be written" in log_file.read_text()  # what is lost is said

        # The person repairs the card and reboots: the daemon starts and catches up.
        subprocess.run(["umount", str(data)], check=True)
        fsck = subprocess.run(["e2fsck", "-fy", str(image)], capture_output=True, text=True)
        assert fsck.returncode in (0, 1), fsck.stdout + fsck.stderr
        mounts("ext4", data, image=image)
        recovered_at = _served_count(hue)
        daemon = daemons(setup)
        wait_for(lambda: _served_count(hue) >= recovered_at + 9, timeout=15)
        wait_for(lambda: collector_state(setup, "hue").get("state") == "ok")
        assert daemon.stop() == 0
        assert integrity(setup.db) == "ok"
        stored = {r[:4] for r in stored_rows(setup)}
        assert committed <= stored, "readings committed (and synced) before the error were lost"
        served = served_map(hue)
        assert stored <= set(served)
    record_figures(
        "filesystem turns read-only (ext4 errors=remount-ro), repaired, restarted",
        polls=poll_count(setup),
        faults={"emergency_read_only": 1},
        served=len(served),
        stored=len(stored),
        duplicated=0,
        note="readings fetched while read-only are lost at the stop (memory queue), as logged",
    )
