"""The per-collector retry policy: one poll = a few attempts that never outlive a deadline.

Built on tenacity's ``AsyncRetrying`` (stop / wait / retry callables) rather than a hand-rolled
loop. What tenacity does not give us is added here: Retry-After handling, a hard per-poll
deadline that is never crossed by a sleep, a timeout per attempt, mapping of unexpected
exceptions, and counters private to each poll (tenacity's ``statistics`` are shared between
concurrent calls of one retrying object).
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt
from tenacity.stop import stop_base

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

    deadline: float
    attempts: int = 0
    waits: dict[int, float] = field(default_factory=dict)  # attempt number -> wait after it
    out_of_time: bool = False  # the deadline had passed before an attempt could start
    deadline_stop: bool = False  # the next wait would have crossed the deadline
    retry_after: float | None = None


def _fmt(seconds: float) -> str:
    return f"{seconds:.1f}" if seconds >= 0.1 else f"{seconds:.3f}"


class _StopAtDeadline(stop_base):
    """Stop now when the upcoming wait would end at or after the deadline.

    Computes the wait itself (cached per attempt, so jitter is drawn once) instead of reading
    ``retry_state.upcoming_sleep``: tenacity < 8.3 ran stop before wait, so that attribute
    is not reliably set for stop callables across the versions pyproject allows.
    """

    def __init__(self, policy: RetryPolicy, state: _PollState) -> None:
        self.policy = policy
        self.state = state

    def __call__(self, retry_state: RetryCallState) -> bool:
        state = self.state
        if state.out_of_time:
            return True
        wait = self.policy._wait_for(state, retry_state)
        if self.policy._clock() + wait < state.deadline:
            return False
        state.deadline_stop = True
        error = retry_state.outcome.exception() if retry_state.outcome else None
        if isinstance(error, RateLimitedError):
            state.retry_after = wait
        return True


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

    # -- delays ------------------------------------------------------------------------------

    def backoff_delay(self, failed_attempt: int) -> float:
        """Exponential delay after the n-th failed attempt (n >= 1), capped, before jitter."""
        s = self.settings
        try:
            delay = s.initial_delay * s.multiplier ** (failed_attempt - 1)
        except OverflowError:
            delay = math.inf
        return min(delay, s.max_delay)

    def _wait_for(self, state: _PollState, retry_state: RetryCallState) -> float:
        """The wait after the attempt just failed; drawn once per attempt (jitter is random)."""
        number = retry_state.attempt_number
        if number not in state.waits:
            error = retry_state.outcome.exception() if retry_state.outcome else None
            if isinstance(error, RateLimitedError):
                # The source told us how long; no exponential growth, no jitter.
                hint = error.retry_after
                wait = self.settings.rate_limit_delay if hint is None else hint
            else:
                wait = self.backoff_delay(number)
                wait += wait * self.settings.jitter * self._rng.random()
            state.waits[number] = max(0.0, float(wait))
        return state.waits[number]

    # -- one attempt -------------------------------------------------------------------------

    async def _attempt(self, call: Callable[[float], Awaitable[T]], state: _PollState) -> T:
        remaining = state.deadline - self._clock()
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

        The first attempt is awaited directly: almost every poll succeeds at once, and setting
        up tenacity for it would be pure per-poll CPU. Only when it fails with a retryable
        error does tenacity take over, replaying that failure as its attempt 1, so waits,
        stops, logging and attempt counts are exactly what tenacity alone would do.
        """
        state = _PollState(deadline=deadline)
        try:
            first: CollectorError | None = None
            try:
                value = await self._attempt(call, state)
            except RETRYABLE as error:
                first = error
            if first is not None:  # outside the except block: no implicit exception chaining
                value = await self._retry(call, state, first)
        except CollectorError as error:
            if isinstance(error, RateLimitedError) and state.retry_after is None:
                # Attempts ran out on a throttled answer: the source still asked us to slow down.
                hint = error.retry_after
                state.retry_after = self.settings.rate_limit_delay if hint is None else hint
            self._log_give_up(error, state)
            raise PollFailed(error, state.attempts, state.retry_after) from error
        return Attempted(value, state.attempts)

    async def _retry(
        self, call: Callable[[float], Awaitable[T]], state: _PollState, first: CollectorError
    ) -> T:
        """The rest of the poll under tenacity, after attempt 1 failed with ``first``.

        Tenacity's attempt 1 re-raises ``first`` (not counted again in ``state.attempts``), so
        its wait, stop and before-sleep logging see exactly the outcome of the real attempt 1.
        """
        replay: list[CollectorError] = [first]

        async def attempt() -> T:
            if replay:
                raise replay.pop()
            return await self._attempt(call, state)

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
                _fmt(self._wait_for(state, retry_state)),
            )
            if self.on_retry is not None and isinstance(error, CollectorError):
                self.on_retry(error, self._wait_for(state, retry_state))

        retrying = AsyncRetrying(
            sleep=sleep,
            stop=stop_after_attempt(self.settings.max_attempts) | _StopAtDeadline(self, state),
            wait=lambda retry_state: self._wait_for(state, retry_state),
            retry=retry_if_exception_type(RETRYABLE),
            before_sleep=before_sleep,
            reraise=True,
        )
        return await retrying(attempt)

    def _log_give_up(self, error: CollectorError, state: _PollState) -> None:
        if not isinstance(error, RETRYABLE):
            why = "not retryable"
        elif state.out_of_time or state.deadline_stop:
            why = "no time left before the poll deadline"
        else:
            why = "attempts exhausted"
        extra = ""
        if isinstance(error, AuthError):
            extra = "; credentials rejected, a person must act"
        elif state.retry_after is not None:
            extra = f"; rate limited, next poll pushed back {_fmt(state.retry_after)} s"
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
