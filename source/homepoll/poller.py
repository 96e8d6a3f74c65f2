"""One poll of one collector, end to end: retry policy -> storage -> alert -> status.

This is where a poll starts. The daemon's scheduled job and ``homepoll once`` both call
``CollectorRunner.poll``, so what ``once`` shows a user is exactly what the daemon does.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeVar

from homepoll.alerts import AlertFile
from homepoll.collectors.base import Collector, build_collector
from homepoll.config import BackoffSettings, Config, RetrySettings
from homepoll.errors import AuthError, CollectorError
from homepoll.model import Reading
from homepoll.retry import PollFailed, RetryPolicy
from homepoll.safetext import redact
from homepoll.status_file import StatusFile
from homepoll.storage import PollRecord, Storage, WriteResult
from homepoll.timefmt import iso_or_none
from homepoll.watch import PollWatch

log = logging.getLogger("homepoll.poller")

T = TypeVar("T")


class StorageWriter:
    """Owns the Storage and the one thread that talks to SQLite: the loop never blocks on disk."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="homepoll-writer")

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def open(self) -> None:
        await self._call(self.storage.open)

    async def write(self, readings: list[Reading], polled_at: int, poll: PollRecord) -> WriteResult:
        return await self._call(self.storage.write, readings, polled_at, poll)

    async def flush(self) -> WriteResult:
        return await self._call(self.storage.flush)

    async def prune(self, retention_days: float) -> int:
        return await self._call(self.storage.prune, retention_days, int(time.time() * 1000))

    async def close(self) -> int:
        """Flush and close; the number of readings not saved anywhere (see Storage.close)."""
        try:
            return await self._call(self.storage.close)
        finally:
            self._executor.shutdown(wait=True)

    def stats(self) -> dict[str, Any]:
        """status.json's storage entry: what is stored, what waits for the next commit."""
        storage = self.storage
        return {
            "path": str(storage.path),
            "stored": sum(storage.stored_by.values()),
            "queued": storage.queued,
            "next_commit": iso_or_none(storage.next_commit()),
            "spool": None if storage.spool_path is None else str(storage.spool_path),
            "dropped": storage.dropped,
            "last_error": storage.last_error,
        }


@dataclass
class PollReport:
    """What one poll did; the demo and ``once`` print it, the daemon schedules from it."""

    collector: str
    outcome: str
    attempts: int
    duration_ms: int
    readings: list[Reading] = field(default_factory=list)
    stored: int = 0
    skipped: int = 0
    notes: list[str] = field(default_factory=list)  # each skipped value and why, for `once`
    error: str | None = None
    retry_after: float | None = None

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"


class NextPoll(NamedTuple):
    """The runner's decision after a poll, which the daemon's scheduler carries out."""

    interval: float
    """Seconds between polls from now on (slowed while the source keeps failing)."""
    not_before: float = 0.0
    """Seconds from now before which the next poll must not start (a Retry-After), 0 for none."""


class CollectorRunner:
    """Runs polls of one collector and keeps its health between polls."""

    def __init__(
        self,
        collector: Collector,
        *,
        interval: float,
        retry: RetrySettings,
        backoff: BackoffSettings,
        writer: StorageWriter | None,
        alert: AlertFile | None,
        status: StatusFile | None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.collector = collector
        self.name = collector.name
        self.interval = interval
        self.retry = retry
        self.backoff = backoff
        self.writer = writer
        self.alert = alert
        self.status = status
        self._clock = clock
        self._wall = wall
        self.policy = self.make_policy(retry)
        self.consecutive_failures = 0
        self.state = "ok"
        self.last_success: float | None = None
        self.last_attempt: float | None = None
        self.last_error: str | None = None
        self.readings_stored = 0
        self.polls = 0
        self.retries = 0
        self.outcomes: dict[str, int] = {}
        self.next_poll: float | None = None
        self.watch: PollWatch | None = None  # offline and battery alerts (homepoll.watch)
        self.throttled_polls = 0  # throttled polls in a row
        self.throttled_until: float | None = None  # wall time of the pushed-back next poll
        self._background: set[asyncio.Task] = set()

    def make_policy(self, retry: RetrySettings) -> RetryPolicy:
        """The retry policy for ``retry`` settings, reporting its retries to this runner."""
        return RetryPolicy(self.name, retry, clock=self._clock, on_retry=self._on_retry)

    def _on_retry(self, error: CollectorError, wait: float) -> None:
        """Between attempts: say "retrying" in status.json, so a long wait is visible."""
        self.retries += 1
        self.state = "retrying"
        self.last_error = redact(str(error))
        if self.status is not None and wait >= 1.0:
            task = asyncio.get_running_loop().create_task(self.publish_status(self.next_poll))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    def current_interval(self) -> float:
        """The cadence now: the configured interval, doubled per failed poll past the threshold."""
        excess = self.consecutive_failures - self.backoff.failure_threshold
        if excess < 0:
            return self.interval
        slowed = self.interval * 2 ** (excess + 1)
        return max(self.interval, min(slowed, self.backoff.max_interval))

    def next_poll_plan(self, report: PollReport | None = None) -> NextPoll:
        """When to poll next, decided here only: the cadence, and the source's Retry-After."""
        wait = report.retry_after if report is not None and report.retry_after else 0.0
        if wait and self.throttled_polls:
            # Throttled: one interval plus the wait, the wait doubling with each throttled poll
            # in a row, never further than backoff.max_interval (issue 13).
            longest = max(self.backoff.max_interval, self.interval)
            doubled = wait * 2 ** min(self.throttled_polls - 1, 30)
            wait = min(self.interval + doubled, longest)
            self.throttled_until = self._wall() + wait
        return NextPoll(self.current_interval(), wait)

    async def poll(self, *, store: bool = True) -> PollReport:
        """One poll through the retry policy; stores, alerts and records the outcome."""
        started_wall = self._wall()
        started = self._clock()
        deadline = started + self.interval * self.retry.poll_budget
        try:
            attempted = await self.policy.run(self.collector.collect, deadline)
        except PollFailed as failed:
            report = PollReport(
                self.name,
                failed.error.outcome,
                failed.attempts,
                self._elapsed_ms(started),
                error=redact(str(failed.error)),  # stored, printed, shown: never a secret
                retry_after=failed.retry_after,
            )
            if failed.retry_after:
                self.throttled_polls += 1
            else:
                self.throttled_polls, self.throttled_until = 0, None
            await self._record(report, started_wall, store)
            await self._on_failure(report, isinstance(failed.error, AuthError), store)
            return report
        result = attempted.value
        report = PollReport(
            self.name,
            "ok",
            attempted.attempts,
            self._elapsed_ms(started),
            readings=result.readings,
            skipped=result.skipped,
            notes=result.notes,
        )
        await self._record(report, started_wall, store)
        await self._on_success(report, store)
        return report

    def _elapsed_ms(self, started: float) -> int:
        return max(0, int((self._clock() - started) * 1000))

    async def _record(self, report: PollReport, started_wall: float, store: bool) -> None:
        self.polls += 1
        self.last_attempt = started_wall
        self.outcomes[report.outcome] = self.outcomes.get(report.outcome, 0) + 1
        if not store or self.writer is None:
            return
        poll = PollRecord(
            collector=self.name,
            started_at=int(started_wall * 1000),
            duration_ms=report.duration_ms,
            attempts=report.attempts,
            outcome=report.outcome,
            error=report.error,
        )
        try:
            result = await self.writer.write(report.readings, int(self._wall() * 1000), poll)
        except Exception:  # a storage bug must not stop polling; the batch stays with Storage
            log.exception("%s: storing the poll failed unexpectedly", self.name)
            return
        report.stored = result.stored
        # A commit may carry other collectors' polls too: storage counts per collector.
        self.readings_stored = self.writer.storage.stored_by.get(self.name, 0)

    async def _on_success(self, report: PollReport, store: bool) -> None:
        recovered = self.consecutive_failures > 0
        self.consecutive_failures = 0
        self.throttled_polls, self.throttled_until = 0, None
        self.state = "ok"
        self.last_success = self.last_attempt
        self.last_error = None
        if recovered:
            log.info("%s: poll succeeded again; back to every %g s", self.name, self.interval)
        if store and self.alert is not None and (self.alert.is_open or self.alert.path.exists()):
            # No thread hop on the usual alert-free poll; the stat catches an alert that another
            # process (``homepoll once``) raised.
            await asyncio.to_thread(self.alert.clear)
        if store and self.watch is not None:
            await self.watch.after_success(report.readings)

    async def _on_failure(self, report: PollReport, auth: bool, store: bool) -> None:
        self.consecutive_failures += 1
        self.last_error = report.error
        self.state = "auth_failed" if auth else "failing"
        if auth and store and self.alert is not None:
            await asyncio.to_thread(self.alert.report_failure, report.error or "rejected")
        if store and self.watch is not None:
            await self.watch.after_failure(report.error or "failed", auth)
        if self.consecutive_failures == self.backoff.failure_threshold:
            log.warning(
                "%s: %d polls failed in a row; slowing to every %g s at most until it recovers",
                self.name,
                self.consecutive_failures,
                self.backoff.max_interval,
            )

    async def publish_status(self, next_poll: float | None) -> None:
        """Write this collector's health into status.json (atomically, off the event loop)."""
        self.next_poll = next_poll
        if self.status is None:
            return
        self.status.update_collector(
            self.name,
            state=self.state,
            last_success=iso_or_none(self.last_success),
            last_attempt=iso_or_none(self.last_attempt),
            last_error=self.last_error,
            consecutive_failures=self.consecutive_failures,
            next_poll=iso_or_none(next_poll),
            readings_stored=self.readings_stored,
            interval=self.current_interval(),
            polls=self.polls,
            outcomes=dict(self.outcomes),
            alert_open=bool(self.alert and self.alert.is_open),
            throttled_until=iso_or_none(self.throttled_until),
            throttled_by=(
                getattr(self.collector, "vendor", self.name) if self.throttled_until else None
            ),
        )
        if self.writer is not None:
            self.status.update_storage(**self.writer.stats())
        await asyncio.to_thread(self.status.write)


def build_runner(
    name: str,
    config: Config,
    *,
    writer: StorageWriter | None,
    status: StatusFile | None,
) -> CollectorRunner:
    """A runner for collector ``name`` wired to its alert file; the daemon and ``once`` share it."""
    collector = build_collector(name, config)
    settings = getattr(config, name)
    alert = AlertFile(
        config.data_dir / collector.alert_file,
        name,
        collector.alert_remedy,
        command=config.alerts.command,
    )
    runner = CollectorRunner(
        collector,
        interval=settings.interval,
        retry=settings.retry,
        backoff=config.backoff,
        writer=writer,
        alert=alert,
        status=status,
    )
    runner.watch = PollWatch.for_collector(name, config)
    return runner
