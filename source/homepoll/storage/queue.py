"""The bounded queue of polls waiting for the next commit, and what overflowing it costs."""

from __future__ import annotations

import logging

from homepoll.storage.rows import Batch

log = logging.getLogger("homepoll.storage")


class PendingQueue:
    """Batches not yet committed, oldest first, bounded by ``limit`` readings.

    A disk that stays full or locked must not grow the daemon's memory without end; past
    the limit the oldest readings go, each one counted and the first of an episode logged.
    """

    def __init__(self, limit: int) -> None:
        self.limit = max(1, limit)
        self.batches: list[Batch] = []
        self.readings = 0  # readings in ``batches``
        self.dropped = 0  # readings dropped since start
        self._overflowing = False
        self._episode_dropped = 0

    def __bool__(self) -> bool:
        return bool(self.batches)

    def add(self, batch: Batch) -> None:
        self.batches.append(batch)
        self.readings += len(batch.readings)

    def full(self) -> bool:
        return self.readings >= self.limit

    def committed(self) -> None:
        """Everything went into the database: empty the queue, end an overflow episode."""
        self.batches.clear()
        self.readings = 0
        if self._overflowing:
            log.info(
                "write queue drained; %d readings were dropped while it was full",
                self._episode_dropped,
            )
            self._overflowing = False
            self._episode_dropped = 0

    def trim(self) -> None:
        """Bound the queue: drop the oldest readings (counted, logged) beyond the limit."""
        excess = max(0, self.readings - self.limit)
        left = excess
        for batch in self.batches:
            if left <= 0:
                break
            cut = min(left, len(batch.readings))
            del batch.readings[:cut]
            left -= cut
        # Poll rows are tiny but still bounded: keep the newest ``limit`` of them.
        extra_batches = len(self.batches) - self.limit
        if extra_batches > 0:
            excess += sum(len(b.readings) for b in self.batches[:extra_batches])
            del self.batches[:extra_batches]
        if excess <= 0:
            return
        self.readings -= excess
        self.dropped += excess
        self._episode_dropped += excess
        if not self._overflowing:
            self._overflowing = True
            log.error(
                "write queue is over its limit of %d readings: dropped the %d oldest"
                " (further drops are counted, not logged one by one)",
                self.limit,
                excess,
            )
        else:
            log.debug("write queue full: dropped %d more readings", excess)
