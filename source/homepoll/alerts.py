"""Alert files: the one place a person is told that a source needs them (bad credentials).

One file per collector in data/, created once per outage, updated in place while it lasts,
removed by the first successful poll. The file itself is the state: a restarted daemon reads
it back, so a restart neither clears an alert nor raises (and announces) it again.

Methods are synchronous (file writes, fsync); the daemon calls them through
``asyncio.to_thread``. ``alerts.command`` runs on a worker thread of its own, bounded in time
and output, so no command can hold up a poll.
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from datetime import UTC, datetime
from pathlib import Path

from homepoll.fsutil import atomic_write_text
from homepoll.safetext import one_line, redact
from homepoll.timefmt import iso_utc, parse_iso

log = logging.getLogger("homepoll.alerts")

MAX_ERROR_CHARS = 300
MAX_OUTPUT_CHARS = 2000
MAX_OUTPUT_BYTES = 8192
COMMAND_TIMEOUT = 10.0
_POLL_STEP = 0.1  # seconds between checks of the command while it runs

# Environment variables the alert command must not inherit: it gets told what happened,
# not the credentials.
_SECRET_ENV = ("HOMEPOLL_HUE_USERNAME",)

_TITLES = {
    "hue": "the Hue bridge rejects homepoll's key",
    "amazon_aqm": "Amazon rejects homepoll's cookies (token refresh needed)",
}

_LABEL_WIDTH = 18


def sanitize(text: object, limit: int = MAX_ERROR_CHARS) -> str:
    """One redacted line of at most ``limit`` characters: safe to put in a file a person reads."""
    return one_line(text, limit)


def run_alert_command(
    command: Sequence[str],
    event: str,
    collector: str,
    path: Path,
    *,
    timeout: float = COMMAND_TIMEOUT,
    extra_env: dict[str, str] | None = None,
) -> bool:
    """Run ``alerts.command`` without a shell; True when it exited 0 within ``timeout``.

    Safe to call from any thread, and bounded: after ``timeout`` the command's process group
    is killed, and the output pipe is read only while the command runs and closed after it,
    so a process it left behind (``setsid sleep 120 &``) can neither hold us nor fill memory.
    Output (at most MAX_OUTPUT_BYTES) goes to the log; a missing program, a non-zero exit or
    a timeout is logged as a warning and never raised: a broken script must not break polling.
    """
    argv = [str(part) for part in command]
    if not argv:
        return False
    env = {k: v for k, v in os.environ.items() if k not in _SECRET_ENV}
    env.update(extra_env or {})
    env.update(
        HOMEPOLL_ALERT_EVENT=event,
        HOMEPOLL_ALERT_COLLECTOR=collector,
        HOMEPOLL_ALERT_FILE=str(Path(path).absolute()),
    )
    name = argv[0]
    read_fd, write_fd = os.pipe()
    try:
        # A new session so a timeout kills the whole process group.
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=write_fd,
            stderr=write_fd,
            env=env,
            start_new_session=True,
        )
    except OSError as exc:
        os.close(read_fd)
        log.warning("alerts.command %s (%s) could not be started: %s", name, event, exc)
        return False
    finally:
        os.close(write_fd)
    try:
        output, finished = _collect_output(proc, read_fd, time.monotonic() + timeout)
    finally:
        os.close(read_fd)  # whatever the command left behind now writes into a closed pipe
    if not finished:
        log.warning(
            "alerts.command %s (%s) did not finish within %g s and was killed%s",
            name,
            event,
            timeout,
            _output_suffix(output),
        )
        return False
    if proc.returncode != 0:
        log.warning(
            "alerts.command %s (%s) exited with status %s%s",
            name,
            event,
            proc.returncode,
            _output_suffix(output),
        )
        return False
    if output.strip():
        log.info("alerts.command %s (%s)%s", name, event, _output_suffix(output))
    return True


def _collect_output(
    proc: subprocess.Popen[bytes], read_fd: int, deadline: float
) -> tuple[bytes, bool]:
    """Read the command's output (kept up to MAX_OUTPUT_BYTES) until it exits or the deadline.

    Returns the output and whether the command finished in time (else its group is killed).
    Waits on the process, not on the pipe's end: a grandchild may hold the pipe open forever.
    """
    kept = bytearray()
    open_pipe = True
    with selectors.DefaultSelector() as selector:
        selector.register(read_fd, selectors.EVENT_READ)
        while proc.poll() is None:
            left = deadline - time.monotonic()
            if left <= 0:
                _kill_group(proc)
                proc.wait()
                return bytes(kept), False
            if not open_pipe:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=min(left, _POLL_STEP))
                continue
            if selector.select(timeout=min(left, _POLL_STEP)):
                chunk = os.read(read_fd, 65536)
                if not chunk:  # every writer closed it: only the exit is left to wait for
                    open_pipe = False
                    selector.unregister(read_fd)
                kept += chunk[: max(0, MAX_OUTPUT_BYTES - len(kept))]
    if open_pipe:  # what the command wrote just before it exited, without waiting for EOF
        os.set_blocking(read_fd, False)
        with contextlib.suppress(BlockingIOError):
            while len(kept) < MAX_OUTPUT_BYTES and (chunk := os.read(read_fd, 65536)):
                kept += chunk[: MAX_OUTPUT_BYTES - len(kept)]
    return bytes(kept), True


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        proc.kill()


def _output_suffix(output: bytes | None) -> str:
    if not output or not output.strip():
        return ""
    text = redact(output.decode("utf-8", errors="replace").strip())
    if len(text) > MAX_OUTPUT_CHARS:
        text = text[:MAX_OUTPUT_CHARS] + " …(truncated)"
    return ": output: " + text


class AlertFile:
    """The alert of one collector: raise on the first failure, update, clear on success."""

    def __init__(
        self,
        path: Path,
        collector: str,
        remedy: str,
        *,
        command: tuple[str, ...] | None = None,
        title: str | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        command_timeout: float = COMMAND_TIMEOUT,
    ) -> None:
        self.path = Path(path)
        self.collector = collector
        self.remedy = remedy.strip()
        self.command = tuple(command) if command else None
        self.title = title or _TITLES.get(collector, f"{collector} rejects homepoll's credentials")
        self.command_timeout = command_timeout
        self._now = now
        self._commands: ThreadPoolExecutor | None = None
        self._pending: list[Future[bool]] = []
        self.since: datetime | None = None
        self.count = 0
        self.last_failure: datetime | None = None
        self.last_error = ""
        self._load()

    @property
    def is_open(self) -> bool:
        return self.since is not None

    def _load(self) -> None:
        """Continue an outage recorded by an earlier process (restart survival)."""
        try:
            text = self.path.read_text(encoding="utf-8", errors="replace")
        except (FileNotFoundError, NotADirectoryError):
            return
        except OSError as exc:  # exists but unreadable: still an open alert
            log.warning("cannot read alert file %s: %s", self.path, exc)
            text = ""
        fields: dict[str, str] = {}
        for line in text.splitlines():
            label, sep, value = line.partition(":")
            if sep and label.strip() in (
                "First failure",
                "Failed polls",
                "Last failure",
                "Last error",
            ):
                fields.setdefault(label.strip(), value.strip())
        since = parse_iso(fields.get("First failure", "").replace("(UTC)", ""))
        if since is None:  # unreadable or hand-edited: still an open alert, dated by the file
            try:
                since = datetime.fromtimestamp(self.path.stat().st_mtime, UTC)
            except OSError:
                since = self._now()
        self.since = since
        try:
            self.count = max(0, int(fields.get("Failed polls", "0")))
        except ValueError:
            self.count = 0
        self.last_failure = parse_iso(fields.get("Last failure", "").replace("(UTC)", ""))
        self.last_error = fields.get("Last error", "")
        log.info(
            "alert for %s still open since %s (%d failed polls): %s",
            self.collector,
            iso_utc(self.since),
            self.count,
            self.path,
        )

    def render(self) -> str:
        """The file's text: what failed, since when, how often, the last error, what to do."""
        assert self.since is not None

        def row(label: str, value: object) -> str:
            return f"{label + ':':<{_LABEL_WIDTH}}{value}"

        last = self.last_failure or self.since
        lines = [
            f"homepoll: {self.title}",
            row("Collector", self.collector),
            row("First failure", f"{iso_utc(self.since)} (UTC)"),
            row("Failed polls", self.count),
            row("Last failure", f"{iso_utc(last)} (UTC)"),
            row("Last error", self.last_error),
            "",
            "What to do:",
            self.remedy,
            "",
            "homepoll deletes this file by itself after the next successful poll.",
        ]
        return "\n".join(lines) + "\n"

    def report_failure(
        self, error: str, *, since: datetime | None = None, failures: int | None = None
    ) -> None:
        """Record one failed poll: create the file (and announce it) or update it in place.

        ``since``/``failures`` date an alert raised only after a while (a source offline for
        an hour) from the outage's first failed poll instead of this one.
        """
        now = self._now()
        raising = not self.is_open
        if raising:
            self.since = since or now
            self.count = 0
        self.count = failures if failures is not None else self.count + 1
        self.last_failure = now
        self.last_error = sanitize(error)
        self._write()
        if raising:
            log.critical(
                "ALERT %s: %s: %s (see %s)",
                self.collector,
                self.title,
                self.last_error,
                self.path,
            )
            self._run_command("raise")
        else:
            log.debug("alert %s updated: %d failed polls", self.path.name, self.count)

    def clear(self) -> bool:
        """On a successful poll: remove the alert if one is open. True when one was cleared."""
        if not self.is_open:
            self._load()  # raised meanwhile by another process (``homepoll once``)?
        if not self.is_open:
            return False
        count, since = self.count, self.since
        try:
            self.path.unlink(missing_ok=True)
        except OSError as exc:
            log.error("cannot remove alert file %s: %s", self.path, exc)
            return False
        self.since = None
        self.count = 0
        self.last_failure = None
        self.last_error = ""
        assert since is not None
        log.info(
            "alert %s cleared: %s works again (open since %s, %d failed polls)",
            self.path.name,
            self.collector,
            iso_utc(since),
            count,
        )
        self._run_command("clear")
        return True

    def _write(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.path, self.render(), mode=0o640)
        except OSError as exc:  # the CRITICAL log line still tells the person
            log.error("cannot write alert file %s: %s", self.path, exc)

    def _run_command(self, event: str) -> None:
        """Start ``alerts.command`` off the caller's path: a poll never waits for it.

        One worker per alert keeps raise and clear in order; at exit Python waits for the
        worker, which each command's own timeout bounds.
        """
        if not self.command:
            return
        if self._commands is None:
            self._commands = ThreadPoolExecutor(1, thread_name_prefix=f"alert-{self.collector}")
        future = self._commands.submit(
            run_alert_command,
            self.command,
            event,
            self.collector,
            self.path,
            timeout=self.command_timeout,
        )
        self._pending = [f for f in self._pending if not f.done()] + [future]

    def wait_commands(self, timeout: float | None = None) -> bool:
        """Wait for the commands started so far (``homepoll once``, tests); True when done."""
        _, pending = wait(self._pending, timeout=timeout)
        return not pending
