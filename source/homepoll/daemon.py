"""The long-running daemon: one APScheduler job per collector, signals, reload, watchdog.

The event loop is the only place that decides anything; SQLite runs in the writer
thread and every network call is asyncio, so a slow disk or bridge never stalls the loop
(and with it the systemd watchdog).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED
from apscheduler.triggers.interval import IntervalTrigger

from homepoll import __version__, lifecycle, notify, web
from homepoll import mqtt as mqtt_feature
from homepoll.clock_schedule import ClockAwareScheduler, ClockWatch, schedule_jitter
from homepoll.collectors.base import build_collector, enabled_collectors
from homepoll.config import Config, ConfigError, load_config
from homepoll.hardening import warn_if_open_to_others
from homepoll.logs import setup_logging
from homepoll.poller import CollectorRunner, NextPoll, StorageWriter, build_runner
from homepoll.status_file import RUNNING, STOPPED, StatusFile, place_status_file
from homepoll.timefmt import duration_text

log = logging.getLogger("homepoll.daemon")

SHUTDOWN_GRACE = 7.0
"""Seconds an in-flight poll may take to finish after SIGTERM; the rest of 10 s is for flushing."""

PRUNE_EVERY = 6 * 3600.0


class Daemon:
    """Runs the enabled collectors on their schedules until SIGTERM/SIGINT."""

    def __init__(self, config: Config, *, on_report=None) -> None:
        self.config = config
        self.on_report = on_report
        self.runners: dict[str, CollectorRunner] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._inflight: set[asyncio.Task] = set()
        self._stop = asyncio.Event()
        self._scheduler: ClockAwareScheduler | None = None
        self._writer: StorageWriter | None = None
        self._status: StatusFile | None = None
        self._reloading: asyncio.Task | None = None
        self._watchdog: asyncio.Task | None = None
        self._clock_watch = ClockWatch()
        self._mqtt = None  # homepoll.mqtt.service.MqttService when mqtt.enabled
        self._web = None  # homepoll.web.server.WebServer while the web face runs
        self._exit_code = 0

    @property
    def writer(self) -> StorageWriter | None:
        return self._writer

    @property
    def web_url(self) -> str | None:
        """The dashboard's address while the web face serves."""
        return self._web.url if self._web is not None else None

    @property
    def started_at(self) -> str | None:
        return self._status.started_at if self._status else None

    # -- life cycle ---------------------------------------------------------------------

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.request_stop)
        loop.add_signal_handler(signal.SIGHUP, self.request_reload)
        self.config.data_dir.mkdir(parents=True, exist_ok=True)
        warn_if_open_to_others(self.config.data_dir)
        status_path = place_status_file(self.config.data_dir, os.environ.get("RUNTIME_DIRECTORY"))
        self._status = StatusFile(status_path, pid=os.getpid(), version=__version__)
        self._writer = StorageWriter(lifecycle.open_storage(self.config))
        await self._writer.open()
        self._status.update_extra(
            state=RUNNING,
            previous_exit=lifecycle.report_previous_run(
                self._writer.storage.recovered, self.config.storage.commit_interval
            ),
        )
        self._status.update_storage(**self._writer.stats())
        self._mqtt = await mqtt_feature.start(self.config, self._mqtt_changed)  # before polls
        self._web = await web.start(self)  # its imports, too, before polls have a cadence
        self._clock_watch.check()  # start from the clock as it is now
        self._scheduler = ClockAwareScheduler(
            before_processing=self._absorb_clock_jump, event_loop=loop, timezone=UTC
        )
        self._scheduler.add_listener(
            self._on_scheduler_event, EVENT_JOB_ERROR | EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES
        )
        names = enabled_collectors(self.config)
        for name in names:
            self._add_collector(name)
        if self.config.storage.retention_days > 0:
            self._add_prune_job()
        self._scheduler.start()
        if not names:
            log.warning("no collector is enabled in %s: nothing to poll", self.config.path)
        log.info(
            "homepoll %s started (pid %d): %s; database %s",
            __version__,
            os.getpid(),
            ", ".join(f"{n} every {self.runners[n].interval:g} s" for n in names) or "idle",
            self.config.storage.path,
        )
        await asyncio.to_thread(self._status.write)
        notify.notify("READY=1\nSTATUS=started, first polls running")
        self._watchdog = asyncio.create_task(self._watchdog_loop())
        await self._stop.wait()
        await self._shutdown()
        return self._exit_code

    def request_stop(self) -> None:
        if not self._stop.is_set():
            log.info("stopping (signal received)")
            self._stop.set()

    def request_reload(self) -> None:
        if self._reloading is None or self._reloading.done():
            self._reloading = asyncio.get_running_loop().create_task(self.reload())

    async def _shutdown(self) -> None:
        if self._watchdog:
            self._watchdog.cancel()
        notify.notify("STOPPING=1")
        if self._web is not None:
            await self._web.stop()
        assert self._scheduler is not None and self._writer is not None
        self._scheduler.pause()
        pending = {t for t in self._inflight if not t.done()}
        if pending:
            log.info("waiting up to %g s for %d poll(s) in flight", SHUTDOWN_GRACE, len(pending))
            _, still = await asyncio.wait(pending, timeout=SHUTDOWN_GRACE)
            for task in still:
                task.cancel()
            if still:
                await asyncio.wait(still, timeout=1.0)
        self._scheduler.shutdown(wait=False)
        for runner in self.runners.values():
            try:
                await runner.collector.aclose()
            except Exception:
                log.exception("%s: closing the collector failed", runner.name)
        lost = await self._writer.close()
        if self._mqtt is not None:
            await self._mqtt.stop()
        assert self._status is not None
        for name in self.runners:
            self._status.update_collector(name, next_poll=None)
        self._status.update_storage(**self._writer.stats())
        self._status.update_extra(state=STOPPED, stopped_at=datetime.now(UTC))
        await asyncio.to_thread(self._status.write)
        if lost:
            log.error("stopped; %d readings were not saved (see above)", lost)
            self._exit_code = 1
        else:
            lifecycle.mark_clean_stop()
            kept = self._writer.storage.queued
            log.info(
                "stopped" + (f"; {kept} readings kept for the next start" if kept else " cleanly")
            )

    @property
    def mqtt_status(self):
        """The broker link for /metrics and the dashboard (``MqttStatus``), None with MQTT off."""
        return self._mqtt.status if self._mqtt is not None else None

    # -- polling ------------------------------------------------------------------------

    def _absorb_clock_jump(self) -> None:
        """Move every job by a wall-clock step, so each poll keeps its place in real time.

        Runs before the scheduler compares jobs with "now" and before the daemon computes a
        new run time, so every run time the scheduler holds is in the same clock frame.
        """
        step = self._clock_watch.check()
        if not step or self._scheduler is None:
            return
        log.warning(
            "the wall clock jumped %s by %s; moving the poll schedule with it",
            "forward" if step > 0 else "back",
            duration_text(step),
        )
        for job in self._scheduler.get_jobs():
            if job.next_run_time is not None:
                job.modify(next_run_time=job.next_run_time + timedelta(seconds=step))

    def _add_collector(self, name: str) -> None:
        assert self._scheduler is not None
        self._absorb_clock_jump()
        runner = build_runner(name, self.config, writer=self._writer, status=self._status)
        self.runners[name] = runner
        self._locks[name] = asyncio.Lock()
        self._scheduler.add_job(
            self._poll_job,
            trigger=self._trigger(runner.interval),
            args=[name],
            id=name,
            name=f"poll {name}",
            max_instances=1,
            coalesce=True,
            misfire_grace_time=max(1, int(runner.interval)),
            next_run_time=datetime.now(UTC),
        )

    @staticmethod
    def _trigger(interval: float) -> IntervalTrigger:
        return IntervalTrigger(seconds=interval, jitter=schedule_jitter(interval), timezone=UTC)

    async def _poll_job(self, name: str) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._inflight.add(task)
        try:
            async with self._locks[name]:
                runner = self.runners.get(name)
                if runner is None or self._stop.is_set():
                    return
                report = await runner.poll()
                if self._mqtt is not None and self._status is not None:
                    self._mqtt.after_poll(report)  # no I/O: a dead broker never slows a poll
                    self._status.update_section("mqtt", self._mqtt.status.as_dict())
                self._apply_plan(name, runner.next_poll_plan(report))
                await runner.publish_status(self._next_poll(name))
                self._notify_status()
                if self.on_report is not None:
                    self.on_report(report)
        except asyncio.CancelledError:
            log.warning("%s: poll cancelled at shutdown; it will be redone next start", name)
            raise
        except Exception:  # the scheduler must never lose a job to a bug in one poll
            log.exception("%s: poll failed unexpectedly", name)
        finally:
            self._inflight.discard(task)

    def _apply_plan(self, name: str, plan: NextPoll) -> None:
        """The one place a poll job's schedule changes: it follows the runner's decision."""
        assert self._scheduler is not None
        self._absorb_clock_jump()
        job = self._scheduler.get_job(name)
        if job is None:
            return
        if job.trigger.interval_length != plan.interval:
            job.reschedule(trigger=self._trigger(plan.interval))
        if plan.not_before:
            later = datetime.now(UTC) + timedelta(seconds=plan.not_before)
            if job.next_run_time is None or job.next_run_time < later:
                job.modify(next_run_time=later)
                log.info("%s: throttled by the source; next poll in %g s", name, plan.not_before)

    def _next_poll(self, name: str) -> float | None:
        job = self._scheduler.get_job(name) if self._scheduler else None
        if job is None or job.next_run_time is None:
            return None
        return job.next_run_time.timestamp()

    async def _mqtt_changed(self, status) -> None:
        """The broker link came up or went down: status.json says so now, not a poll later."""
        if self._status is not None:
            self._status.update_section("mqtt", status.as_dict())
            await asyncio.to_thread(self._status.write)

    def _notify_status(self) -> None:
        parts = [f"{r.name} {r.state}" for r in self.runners.values()]
        assert self._writer is not None
        notify.notify(f"STATUS={lifecycle.systemd_status(parts, self._writer.storage)}")

    def _on_scheduler_event(self, event) -> None:
        if event.code == EVENT_JOB_ERROR:
            log.error("job %s raised: %s", event.job_id, event.exception)
        elif event.code == EVENT_JOB_MISSED:
            log.warning("job %s missed its run time (the system was busy or asleep)", event.job_id)
        elif event.code == EVENT_JOB_MAX_INSTANCES:
            log.warning("job %s skipped a run: the previous poll is still running", event.job_id)

    def _add_prune_job(self) -> None:
        assert self._scheduler is not None
        # Test switch: the clock-jump test cannot wait 6 h for a prune.
        every = float(os.environ.get("HOMEPOLL_TEST_PRUNE_EVERY") or 0) or PRUNE_EVERY
        self._scheduler.add_job(
            self._prune_job,
            trigger=IntervalTrigger(seconds=every, timezone=UTC),
            id="prune",
            max_instances=1,
            coalesce=True,
            next_run_time=datetime.now(UTC) + timedelta(seconds=min(60.0, every)),
        )

    async def _prune_job(self) -> None:
        assert self._writer is not None
        days = self.config.storage.retention_days
        if days > 0:
            removed = await self._writer.prune(days)
            if removed:
                log.info("pruned %d reading(s) older than %g days", removed, days)

    async def _watchdog_loop(self) -> None:
        """Pings from the event loop itself: a frozen loop stops them, so systemd restarts us."""
        interval = notify.watchdog_interval()
        if interval is None:
            return
        freeze = float(os.environ.get("HOMEPOLL_TEST_FREEZE_LOOP_AFTER", "0") or 0)
        started = time.monotonic()
        while True:
            notify.notify("WATCHDOG=1")
            await asyncio.sleep(interval)
            if freeze and time.monotonic() - started >= freeze:
                log.warning("test switch: freezing the event loop")
                time.sleep(3600)  # deliberately blocking: proves the pings stop

    # -- reload -------------------------------------------------------------------------

    async def reload(self) -> None:
        """SIGHUP: re-read the config; apply it if valid, else keep the old one and say why."""
        try:
            new = await asyncio.to_thread(load_config, self.config.path)
        except ConfigError as exc:
            log.error("reload: %s is invalid; keeping the running configuration:", self.config.path)
            for problem in exc.problems:
                log.error("reload: %s", problem)
            return
        old = self.config
        self.config = new
        if new.log != old.log:
            setup_logging(new.log)
        if new.storage.path != old.storage.path or new.data_dir != old.data_dir:
            log.warning("reload: data_dir and storage.path changes take effect after a restart")
        if new.mqtt != old.mqtt:
            log.warning("reload: mqtt changes take effect after a restart")
        for name in set(enabled_collectors(old)) | set(enabled_collectors(new)):
            await self._reload_collector(name, old, new)
        if self._writer is not None:
            await self._writer.flush()  # a reload is a moment users expect the data on disk
        for warning in new.credential_warnings:
            log.warning("reload: %s", warning)
        log.info("reload: configuration from %s applied", new.path)

    async def _reload_collector(self, name: str, old: Config, new: Config) -> None:
        assert self._scheduler is not None
        enabled = getattr(new, name).enabled
        if name not in self.runners:
            if enabled:
                self._add_collector(name)
                log.info("reload: %s enabled", name)
            return
        async with self._locks[name]:
            runner = self.runners[name]
            if not enabled:
                self._scheduler.remove_job(name)
                del self.runners[name]
                await runner.collector.aclose()
                if self._status is not None:
                    self._status.update_collector(name, state="disabled", next_poll=None)
                    await asyncio.to_thread(self._status.write)
                log.info("reload: %s disabled", name)
                return
            if runner.alert is not None:
                runner.alert.command = new.alerts.command
            if getattr(new, name) == getattr(old, name) and new.backoff == old.backoff:
                return
            settings = getattr(new, name)
            old_collector = runner.collector
            runner.collector = build_collector(name, new)
            await old_collector.aclose()
            runner.interval = settings.interval
            runner.retry = settings.retry
            runner.backoff = new.backoff
            runner.policy = runner.make_policy(settings.retry)
            self._apply_plan(name, runner.next_poll_plan())
            log.info("reload: %s now every %g s", name, runner.current_interval())


def run_daemon(config: Config, *, on_report=None) -> int:
    """Run the daemon to a clean stop; returns the exit code.

    Plain ``asyncio.run``: every network call is asyncio (httpx), so no worker thread can be
    left in a socket read for the executor join to wait on.
    """
    return asyncio.run(Daemon(config, on_report=on_report).run())


def data_dir_problem(path: Path) -> str | None:
    """A config-style problem line when the data folder cannot be created or written."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return f"data_dir: cannot create {path}: {exc.strerror}"
    if not os.access(path, os.W_OK):
        return f"data_dir: {path} is not writable by this user"
    return None
