"""Readings the daemon has fetched but not yet committed, shown to readers as if stored.

Between commits (``storage.commit_interval``) new readings are in the daemon's memory and in
its spool (spool.py). `homepoll readings` and the web page read the spool too, so what the
daemon fetched shows at once; status.json says where the spool is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from homepoll.status_file import STATUS_FILE, read_status
from homepoll.storage.spool import waiting_batches

_KEY = ("source", "device_id", "metric", "ts")


def spool_of(data_dir: Path) -> Path | None:
    """The running (or killed) daemon's spool, as its status.json names it."""
    status = read_status(Path(data_dir) / STATUS_FILE) or {}
    storage = status.get("storage") if isinstance(status.get("storage"), dict) else {}
    spool = storage.get("spool") if isinstance(storage, dict) else None
    return Path(spool) if isinstance(spool, str) and spool else None


def merge_waiting(
    rows: list[dict[str, Any]],
    spool: Path | None,
    since_ms: int,
    sensor: str | None,
    metric: str | None,
    limit: int | None,
) -> list[dict[str, Any]]:
    """``rows`` (oldest first) plus the matching readings of ``spool`` not in them yet.

    An on-change reading (battery, reachable) counts only when its value differs from the
    one before it, as storage would decide.
    """
    if spool is None:
        return rows
    seen = {tuple(row[k] for k in _KEY) for row in rows}
    last = {(r["source"], r["device_id"], r["metric"]): r["value"] for r in rows}
    wanted = sensor.lower() if sensor else None
    extra = []
    for batch in waiting_batches(spool):
        for r in batch.readings:
            key = (r.source, r.device_id, r.metric, r.ts)
            if r.ts < since_ms or key in seen or (metric and r.metric != metric):
                continue
            if wanted and wanted not in r.name.lower() and r.device_id != sensor:
                continue
            if r.on_change and last.get(key[:3]) == r.value:
                continue
            seen.add(key)
            last[key[:3]] = r.value
            extra.append(
                {
                    "ts": r.ts,
                    "source": r.source,
                    "device_id": r.device_id,
                    "name": r.name,
                    "metric": r.metric,
                    "unit": r.unit,
                    "value": r.value,
                    "polled_at": batch.polled_at,
                }
            )
    if not extra:
        return rows
    merged = sorted([*rows, *extra], key=lambda r: (r["ts"], r["name"], r["metric"]))
    return merged[-limit:] if limit is not None and limit > 0 else merged
