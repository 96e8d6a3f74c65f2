"""The per-collector retry policy: one poll = a few attempts that never outlive a deadline.

Built from tenacity's parts: ``AsyncRetrying`` with ``stop_after_attempt`` or-ed with a stop
at the poll's deadline, ``wait_exponential`` with a proportional jitter, under a wait that
honours a source's Retry-After. Added here: a timeout per attempt, mapping of unexpected
exceptions, and counters private to each poll (tenacity's ``statistics`` are shared between
concurrent calls of one retrying object).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
)
from tenacity.stop import stop_base
from tenacity.wait import wait_base

from homepoll.config import RetrySettings
from homepoll.errors import (
    AuthError,
    CollectorError,
    PermanentError,
    PollTimeout,
    RateLimitedError,
    TransientError,
)

log = logging.getLogger("homepoll.retry")

T = TypeVar("T")

RETRYABLE: tuple[type[CollectorError], ...] = (TransientError, RateLimitedError)
"""Only these are retried; listed explicitly so ``CancelledError`` can never be retried."""

_MAX_UNEXPECTED_MESSAGE = 200


def _retry_in_poll(error: BaseException) -> bool:
    """Retryable within this poll: transient, or throttled by a source that allows a retry."""
    return isinstance(error, RETRYABLE) and getattr(error, "retry_in_poll", True)


@dataclass
class Attempted(Generic[T]):
    """A successful poll's value and how many attempts it took (for the ``polls`` table)."""

    value: T
    attempts: int


class PollFailed(Exception):
    """The poll was given up; carries the last classified error and the attempts used.

    ``retry_after`` is set when the poll ended on a rate-limited answer (its wait did not fit
    the deadline, or attempts ran out): the daemon pushes the next poll back by that much.
    """

    def __init__(
        self, error: CollectorError, attempts: int, retry_after: float | None = None
    ) -> None:
        super().__init__(f"{type(error).__name__}: {error} (after {attempts} attempt(s))")
        self.error = error
        self.attempts = attempts
        self.retry_after = retry_after


@dataclass
class _PollState:
    """Counters for ONE run: never shared between concurrent polls."""

    attempts: int = 0
    out_of_time: bool = False  # the deadline passed before an attempt could start, or a wait
    # would have crossed it


def _fmt(seconds: float) -> str:
    return f"{seconds:.1f}" if seconds >= 0.1 else f"{seconds:.3f}"


class wait_fraction_jitter(wait_base):
    """``inner``'s wait plus up to ``fraction`` of it at random (tenacity's jitters are in
    seconds; ``retry.jitter`` is a fraction of the delay)."""

    def __init__(self, inner: wait_base, fraction: float, rng: random.Random) -> None:
        self.inner = inner
        self.fraction = fraction
        self.rng = rng

    def __call__(self, retry_state: RetryCallState) -> float:
        wait = self.inner(retry_state)
        return wait + wait * self.fraction * self.rng.random() if self.fraction else wait


class wait_retry_after(wait_base):
    """After a throttled answer, the source's Retry-After (else ``default``), exactly;
    after any other failure, ``otherwise``."""

    def __init__(self, otherwise: wait_base, default: float) -> None:
        self.otherwise = otherwise
        self.default = default

    def throttle(self, error: BaseException | None) -> float | None:
        """The wait a rate-limited ``error`` asks for; None for any other error."""
        if not isinstance(error, RateLimitedError):
            return None
        return max(0.0, self.default if error.retry_after is None else error.retry_after)

    def __call__(self, retry_state: RetryCallState) -> float:
        error = retry_state.outcome.exception() if retry_state.outcome else None
        throttled = self.throttle(error)
        return self.otherwise(retry_state) if throttled is None else throttled


class stop_before_deadline(stop_base):
    """tenacity's ``stop_before_delay`` on our clock: stop when the coming wait would end at or
    after ``deadline`` (``stop_before_delay`` reads ``time.monotonic`` itself, so a poll's
    deadline could not be tested with an injected clock)."""

    def __init__(self, deadline: float, clock: Callable[[], float], state: _PollState) -> None:
        self.deadline = deadline
        self.clock = clock
        self.state = state

    def __call__(self, retry_state: RetryCallState) -> bool:
        if self.state.out_of_time or self.clock() + retry_state.upcoming_sleep >= self.deadline:
            self.state.out_of_time = True
        return self.state.out_of_time


class RetryPolicy:
    """Runs one poll of one collector under its ``RetrySettings``.

    ``sleep``, ``clock`` and ``rng`` are injectable so tests run instantly and deterministically.
    """

    def __init__(
        self,
        collector: str,
        settings: RetrySettings,
        *,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        on_retry: Callable[[CollectorError, float], None] | None = None,
    ) -> None:
        self.collector = collector
        self.settings = settings
        self._sleep = sleep
        self._clock = clock
        self._rng = rng if rng is not None else random.Random()
        self.on_retry = on_retry  # told (error, wait) before each sleep: status shows "retrying"

        exponential = wait_exponential(
            multiplier=settings.initial_delay, exp_base=settings.multiplier, max=settings.max_delay
        )
        self._wait = wait_retry_after(
            wait_fraction_jitter(exponential, settings.jitter, self._rng),
            settings.rate_limit_delay,
        )

    # -- one attempt -------------------------------------------------------------------------

    async def _attempt(
        self, call: Callable[[float], Awaitable[T]], state: _PollState, deadline: float
    ) -> T:
        remaining = deadline - self._clock()
        if remaining <= 0:
            state.out_of_time = True
            raise PollTimeout(f"poll deadline passed before attempt {state.attempts + 1}")
        timeout = min(self.settings.attempt_timeout, remaining)
        state.attempts += 1
        try:
            async with asyncio.timeout(timeout):
                return await call(timeout)
        except CollectorError:
            raise
        except TimeoutError as exc:
            raise PollTimeout(f"no answer within {_fmt(timeout)} s") from exc
        except Exception as exc:
            # A collector bug must never kill the daemon; keep the traceback for debugging.
            log.debug(
                "%s: unexpected exception in attempt %d",
                self.collector,
                state.attempts,
                exc_info=True,
            )
            text = str(exc)[:_MAX_UNEXPECTED_MESSAGE]
            raise PermanentError(f"unexpected {type(exc).__name__}: {text}") from exc

    # -- the poll ----------------------------------------------------------------------------

    async def run(self, call: Callable[[float], Awaitable[T]], deadline: float) -> Attempted[T]:
        """Call ``call(timeout)`` until success, a non-retryable error, or time/attempts run out.

        ``deadline`` is an absolute ``clock()`` value. Raises ``PollFailed`` on give-up;
        ``asyncio.CancelledError`` always propagates untouched.
        """
        state = _PollState()

        async def sleep(seconds: float) -> None:
            await self._sleep(float(seconds))

        def before_sleep(retry_state: RetryCallState) -> None:
            error = retry_state.outcome.exception() if retry_state.outcome else None
            log.warning(
                "%s: attempt %d/%d failed (%s: %s); retrying in %s s",
                self.collector,
                retry_state.attempt_number,
                self.settings.max_attempts,
                type(error).__name__,
                error,
                _fmt(retry_state.upcoming_sleep),
            )
            if self.on_retry is not None and isinstance(error, CollectorError):
                self.on_retry(error, retry_state.upcoming_sleep)

        retrying = AsyncRetrying(
            sleep=sleep,
            stop=stop_after_attempt(self.settings.max_attempts)
            | stop_before_deadline(deadline, self._clock, state),
            wait=self._wait,
            retry=retry_if_exception(_retry_in_poll),
            before_sleep=before_sleep,
            reraise=True,
        )
        try:
            value = await retrying(self._attempt, call, state, deadline)
        except CollectorError as error:
            retry_after = self._wait.throttle(error)
            self._log_give_up(error, state, retry_after)
            raise PollFailed(error, state.attempts, retry_after) from error
        return Attempted(value, state.attempts)

    def _log_give_up(
        self, error: CollectorError, state: _PollState, retry_after: float | None
    ) -> None:
        if not _retry_in_poll(error):
            why = "not retryable"
        elif state.out_of_time:
            why = "no time left before the poll deadline"
        else:
            why = "attempts exhausted"
        extra = ""
        if isinstance(error, AuthError):
            extra = "; credentials rejected, a person must act"
        elif retry_after is not None:
            extra = f"; rate limited, next poll pushed back {_fmt(retry_after)} s"
        log.error(
            "%s: poll failed after %d/%d attempt(s), %s (%s: %s)%s",
            self.collector,
            state.attempts,
            self.settings.max_attempts,
            why,
            type(error).__name__,
            error,
            extra,
        )
