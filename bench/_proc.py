"""Readers for /proc/<pid>: CPU time, memory, context switches and bytes written.

Everything here reads the kernel's own accounting of another process, so measuring
never adds work to the process being measured.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Sample:
    """One reading of a process's counters."""

    cpu: float  # user+sys seconds from /proc/<pid>/stat (whole process, dead threads included)
    cpu_ns: int  # sum of /proc/<pid>/task/*/schedstat run time: ns-precise, live threads only
    switches: int  # voluntary + nonvoluntary context switches summed over all threads
    write_bytes: int  # /proc/<pid>/io write_bytes (page-cache pages dirtied, whole process)
    rss_kb: int
    hwm_kb: int


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14, 15)


def _tasks(pid: int) -> list[Path]:
    try:
        return list(Path(f"/proc/{pid}/task").iterdir())
    except FileNotFoundError:
        return []


def schedstat_ns(pid: int) -> int:
    total = 0
    for task in _tasks(pid):
        # a thread may end between listing and reading
        with contextlib.suppress(FileNotFoundError, ProcessLookupError, IndexError, ValueError):
            total += int((task / "schedstat").read_text().split()[0])
    return total


def status_fields(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        key, _, value = line.partition(":")
        out[key] = value.strip()
    return out


def memory_kb(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) in kB."""
    fields = status_fields(Path(f"/proc/{pid}/status"))
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


def context_switches(pid: int) -> int:
    total = 0
    for task in _tasks(pid):
        try:
            fields = status_fields(task / "status")
        except (FileNotFoundError, ProcessLookupError):
            continue
        total += int(fields.get("voluntary_ctxt_switches", 0))
        total += int(fields.get("nonvoluntary_ctxt_switches", 0))
    return total


def io_counters(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        key, _, value = line.partition(":")
        out[key.strip()] = int(value)
    return out


def sample(pid: int) -> Sample:
    rss, hwm = memory_kb(pid)
    return Sample(
        cpu=cpu_seconds(pid),
        cpu_ns=schedstat_ns(pid),
        switches=context_switches(pid),
        write_bytes=io_counters(pid).get("write_bytes", 0),
        rss_kb=rss,
        hwm_kb=hwm,
    )
