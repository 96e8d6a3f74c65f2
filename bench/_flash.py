"""Figure 5, flash: bytes the daemon makes the SD card write per day, the twice-daily move of
readings_recent measured apart and added."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import _proc
import _storage
from _daemon import BENCH, PYTHON, Daemon, Simulators
from _measure import _check_ok, devices_for

from homepoll.storage import MERGE_INTERVAL, MERGE_ROWS

COMPRESSION = 60.0
"""Flash runs poll every 1 s for Hue's 60 s and every 5 s for Amazon's 300 s."""


def _writeback(folder: Path) -> None:
    """Flush the daemon's dirty pages, as the kernel does within 35 s of a real 60 s poll.

    /proc/<pid>/io write_bytes counts a page when it turns dirty; a page written again
    before writeback counts once. At real intervals every poll finds its pages clean again,
    so without this a compressed run would undercount (the WAL's and log's shared pages).
    """
    for path in folder.iterdir():
        if path.is_file():
            with contextlib.suppress(OSError):
                fd = os.open(path, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)


def flash(
    sensors: int,
    monitors: int,
    commit_interval: float,
    seconds: float,
    history_days: float,
    *,
    runtime_dir: bool = True,
    extra_config: str = "",
) -> dict:
    """write_bytes per simulated day at the default intervals (60 s Hue, 300 s Amazon).

    Time runs COMPRESSION times faster: intervals 1 s / 5 s, commit_interval scaled the
    same way, sensors changing every 5 s (every 5th Hue poll sees new values: "mostly
    unchanged"). Bytes per day = bytes in the window x 86400 / (window x COMPRESSION).
    ``runtime_dir`` runs it as the systemd unit does (status.json on tmpfs); ``extra_config``
    is appended to the config (bench/_mqtt.py: the same run with MQTT events on).

    The daemon runs with the move of readings_recent into readings switched off (a 60 s
    window would catch a six-hourly move in one run out of six); the move is measured
    on its own afterwards, on the database the run left (``_merge_bytes``), and added
    as many times a day as storage.MERGE_INTERVAL / MERGE_ROWS make it happen.
    """
    period = 5.0
    command = [PYTHON, str(BENCH / "_no_merge.py")]
    with Simulators(
        devices_for(sensors), monitors, update_period=period, aqm_period=period
    ) as sims:
        daemon = Daemon(
            sims,
            hue_interval=60 / COMPRESSION,
            aqm_interval=300 / COMPRESSION if monitors else None,
            commit_interval=commit_interval / COMPRESSION,
            seed=lambda db: _storage.seed_history(
                db, devices_for(sensors), sims.info["monitors"], history_days
            ),
            command=command,
            runtime_dir=runtime_dir,
            extra_config=extra_config,
        )
        try:
            daemon.wait_ready()
            daemon.wait_polls("hue", 3, 30)
            time.sleep(0.3)
            _writeback(daemon.data)
            t0, s0, p0, r0 = time.monotonic(), daemon.sample(), daemon.polls("hue"), daemon.stored()
            io0, o0 = _proc.io_counters(daemon.pid), daemon.outcomes()
            end = t0 + seconds
            seen = daemon.status()
            spool = _Spool(daemon)
            while time.monotonic() < end:
                time.sleep(0.05)
                spool.sample()
                status = daemon.status()
                if status is not seen:
                    seen = status
                    time.sleep(0.05)
                    _writeback(daemon.data)
            t1, s1 = time.monotonic(), daemon.sample()
            io1 = _proc.io_counters(daemon.pid)
            polls_done = daemon.polls("hue") - p0
            stored = daemon.stored() - r0
            _check_ok(daemon, o0)
        except BaseException:
            daemon.stop()
            raise
        daemon.stop(keep=True)
    try:
        merge = _merge_bytes(daemon.db)
    finally:
        shutil.rmtree(daemon.dir, ignore_errors=True)
    factor = 86_400 / ((t1 - t0) * COMPRESSION)
    rows_per_day = stored * factor
    merges_per_day = max(86_400 / MERGE_INTERVAL, rows_per_day / MERGE_ROWS)
    commits_per_day = (s1.write_bytes - s0.write_bytes) * factor
    return {
        "bytes_per_day": commits_per_day + merges_per_day * merge["write_bytes"],
        "commit_bytes_per_day": commits_per_day,
        "merge_bytes": merge["write_bytes"],
        "merge_rows": merge["rows"],
        "merges_per_day": merges_per_day,
        "cancelled_per_day": (io1["cancelled_write_bytes"] - io0["cancelled_write_bytes"]) * factor,
        "write_calls_per_day": (io1["syscw"] - io0["syscw"]) * factor,
        "hue_polls_per_day": polls_done * factor,
        "rows_per_day": rows_per_day,
        "window_s": t1 - t0,
        "spool_bytes_per_day": spool.appended * factor,  # to RAM (tmpfs), not to flash
    }


class _Spool:
    """Bytes appended to the daemon's spool (storage/spool.py), which each commit empties."""

    def __init__(self, daemon: Daemon) -> None:
        from homepoll.storage.spool import spool_path

        env = {k: v for k, v in os.environ.items() if k != "RUNTIME_DIRECTORY"}
        if daemon.runtime_dir is not None:
            env["RUNTIME_DIRECTORY"] = str(daemon.runtime_dir)
        self.path = spool_path(daemon.db, env)
        self.appended = 0
        self._last = self._size()

    def _size(self) -> int:
        try:
            return self.path.stat().st_size
        except OSError:
            return 0

    def sample(self) -> None:
        size = self._size()
        self.appended += size - self._last if size >= self._last else size
        self._last = size


_MERGE_PROBE = """
import json, os, sys
from homepoll.storage import Storage

def written():
    with open("/proc/self/io") as f:
        return int(next(l for l in f if l.startswith("write_bytes")).split()[1])

storage = Storage(sys.argv[1])
storage.open()
conn = storage._db.conn
conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
os.sync()
before = written()
rows = storage.merge_recent()
conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the daemon's next checkpoint writes them
for suffix in ("", "-wal"):
    fd = os.open(sys.argv[1] + suffix, os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)
print(json.dumps({"rows": rows, "write_bytes": written() - before}))
storage.close()
"""


def _merge_bytes(db: Path) -> dict:
    """Bytes one move of readings_recent into readings writes (WAL plus its checkpoint).

    Measured on the database a flash run left: its readings_recent holds the run's rows,
    which touch every series, as six hours of them would.
    """
    out = subprocess.run(
        [PYTHON, "-c", _MERGE_PROBE, str(db)], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout)
