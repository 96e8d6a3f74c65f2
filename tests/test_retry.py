"""RetryPolicy: delays, rate limits, deadlines, error mapping, cancellation and logging.

Most tests inject a fake clock whose sleep advances it instantly and records each delay;
one test runs for real (sub-second) to prove a poll never outlives its deadline.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import replace

import pytest

from homepoll.config import RetrySettings
from homepoll.errors import (
    AuthError,
    PermanentError,
    PollTimeout,
    RateLimitedError,
    TransientError,
)
from homepoll.retry import Attempted, PollFailed, RetryPolicy

START = 1000.0


class FakeTime:
    """A clock that only moves when slept on (or advanced by a fake call)."""

    def __init__(self) -> None:
        self.now = START
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)  # let concurrent polls interleave


class Script:
    """A collector call that plays a list of outcomes: exceptions are raised, values returned."""

    def __init__(
        self, outcomes: list[object], fake: FakeTime | None = None, takes: float = 0.0
    ) -> None:
        self.outcomes = list(outcomes)
        self.fake = fake
        self.takes = takes
        self.timeouts: list[float] = []

    async def __call__(self, timeout: float) -> object:
        self.timeouts.append(timeout)
        if self.fake is not None:
            self.fake.now += min(self.takes, timeout)
        outcome = self.outcomes.pop(0) if len(self.outcomes) > 1 else self.outcomes[0]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome


def make(fake: FakeTime, seed: int = 1, **overrides: object) -> tuple[RetryPolicy, RetrySettings]:
    settings = replace(RetrySettings(), **overrides)  # type: ignore[arg-type]
    policy = RetryPolicy(
        "hue", settings, sleep=fake.sleep, clock=fake.clock, rng=random.Random(seed)
    )
    return policy, settings


def run(policy: RetryPolicy, call: Callable, deadline: float) -> Attempted:
    return asyncio.run(policy.run(call, deadline))


def fail(policy: RetryPolicy, call: Callable, deadline: float) -> PollFailed:
    with pytest.raises(PollFailed) as info:
        run(policy, call, deadline)
    return info.value


def test_default_delays_without_jitter_are_exact() -> None:
    fake = FakeTime()
    policy, _ = make(fake, jitter=0)
    call = Script([TransientError("HTTP 503 from bridge")])
    failed = fail(policy, call, START + 1000)
    assert fake.sleeps == [1.0, 2.0, 4.0]
    assert failed.attempts == 4 == len(call.timeouts)
    assert isinstance(failed.error, TransientError)
    assert failed.retry_after is None


def test_delays_are_capped_at_max_delay_even_for_huge_exponents() -> None:
    fake = FakeTime()
    policy, _ = make(fake, jitter=0, multiplier=10.0, max_delay=5.0, max_attempts=5)
    fail(policy, Script([TransientError("x")]), START + 1000)
    assert fake.sleeps == [1.0, 5.0, 5.0, 5.0]

    fake = FakeTime()  # 10 ** 400 overflows a float: must still cap, not crash
    policy, _ = make(fake, jitter=0, multiplier=10.0, max_delay=0.5, max_attempts=402)
    failed = fail(policy, Script([TransientError("x")]), START + 10_000)
    assert failed.attempts == 402
    assert fake.sleeps[-1] == 0.5


def test_jitter_stays_within_its_fraction_and_varies() -> None:
    bases = [1.0, 2.0, 4.0]
    seen: set[tuple[float, ...]] = set()
    for seed in range(60):
        fake = FakeTime()
        policy, _ = make(fake, seed=seed, jitter=0.3)
        fail(policy, Script([TransientError("x")]), START + 1000)
        assert len(fake.sleeps) == 3
        for base, delay in zip(bases, fake.sleeps, strict=True):
            assert base <= delay <= base * 1.3
        seen.add(tuple(fake.sleeps))
    assert len(seen) > 1
    assert any(d != b for d, b in zip(fake.sleeps, bases, strict=True))


def test_rate_limit_waits_retry_after_exactly_without_jitter() -> None:
    fake = FakeTime()
    policy, _ = make(fake, jitter=0.3)
    result = run(policy, Script([RateLimitedError("429", retry_after=2), "ok"]), START + 100)
    assert fake.sleeps == [2.0]
    assert result == Attempted("ok", 2)


def test_rate_limit_without_hint_waits_rate_limit_delay() -> None:
    fake = FakeTime()
    policy, _ = make(fake, rate_limit_delay=7.5)
    result = run(policy, Script([RateLimitedError("Rate exceeded"), "ok"]), START + 100)
    assert fake.sleeps == [7.5]
    assert result.attempts == 2


@pytest.mark.parametrize(("hint", "expected"), [(120.0, 120.0), (None, 60.0)])
def test_rate_limit_wait_that_does_not_fit_gives_up_at_once(
    hint: float | None, expected: float
) -> None:
    fake = FakeTime()
    policy, _ = make(fake)  # rate_limit_delay 60
    call = Script([RateLimitedError("429", retry_after=hint)])
    failed = fail(policy, call, START + 30)
    assert fake.sleeps == []
    assert failed.attempts == 1
    assert isinstance(failed.error, RateLimitedError)
    assert failed.retry_after == expected
    assert fake.now == START


def test_transient_giving_up_at_deadline_sets_no_retry_after() -> None:
    fake = FakeTime()
    policy, _ = make(fake, jitter=0, initial_delay=10)
    failed = fail(policy, Script([TransientError("x")]), START + 5)
    assert fake.sleeps == []
    assert failed.retry_after is None


@pytest.mark.parametrize("error", [AuthError("unauthorized user"), PermanentError("bad shape")])
def test_auth_and_permanent_errors_are_attempted_once(error: Exception) -> None:
    fake = FakeTime()
    policy, _ = make(fake)
    call = Script([error, "ok"])
    failed = fail(policy, call, START + 1000)
    assert len(call.timeouts) == 1
    assert failed.attempts == 1
    assert failed.error is error
    assert fake.sleeps == []


def test_poll_never_outlives_deadline_with_fake_clock() -> None:
    fake = FakeTime()
    policy, _ = make(fake, jitter=0, max_attempts=10, attempt_timeout=10)
    call = Script([PollTimeout("slow")], fake=fake, takes=3.0)
    failed = fail(policy, call, START + 10)
    # a1 0..3, sleep 1, a2 4..7 (6 s left), sleep 2, a3 9..10 (1 s left), wait 4 would cross
    assert call.timeouts == [10.0, 6.0, 1.0]
    assert fake.sleeps == [1.0, 2.0]
    assert fake.now <= START + 10
    assert failed.attempts == 3


def test_deadline_already_passed_makes_no_attempt() -> None:
    fake = FakeTime()
    policy, _ = make(fake)
    call = Script(["ok"])
    failed = fail(policy, call, START - 1)
    assert call.timeouts == []
    assert failed.attempts == 0
    assert isinstance(failed.error, PollTimeout)


def test_real_slow_call_is_cut_at_attempt_timeout_and_deadline() -> None:
    settings = RetrySettings(
        max_attempts=10, initial_delay=0.05, multiplier=1.0, jitter=0, attempt_timeout=0.3
    )
    policy = RetryPolicy("hue", settings)
    timeouts: list[float] = []

    async def hang(timeout: float) -> None:
        timeouts.append(timeout)
        await asyncio.sleep(5)

    started = time.monotonic()
    deadline = started + 0.75
    with pytest.raises(PollFailed) as info:
        asyncio.run(policy.run(hang, deadline))
    elapsed = time.monotonic() - started
    assert elapsed < 0.75 + 0.1
    assert isinstance(info.value.error, PollTimeout)
    assert "no answer within" in str(info.value.error)
    # the last attempt got only what was left of the poll, not the full attempt_timeout
    assert timeouts[0] == 0.3
    assert len(timeouts) >= 2
    assert timeouts[-1] < 0.3


def test_unexpected_exception_becomes_permanent_and_is_not_retried(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="homepoll.retry")
    fake = FakeTime()
    policy, _ = make(fake)
    call = Script([ValueError("x" * 500), "ok"])
    failed = fail(policy, call, START + 1000)
    assert isinstance(failed.error, PermanentError)
    assert str(failed.error) == "unexpected ValueError: " + "x" * 200
    assert failed.attempts == 1
    assert fake.sleeps == []
    debug = [r for r in caplog.records if r.levelno == logging.DEBUG]
    assert len(debug) == 1 and debug[0].exc_info is not None


def test_cancelled_error_from_call_propagates() -> None:
    fake = FakeTime()
    policy, _ = make(fake)
    call = Script([asyncio.CancelledError(), "ok"])
    with pytest.raises(asyncio.CancelledError):
        run(policy, call, START + 1000)
    assert len(call.timeouts) == 1
    assert fake.sleeps == []


def test_cancelling_the_poll_task_propagates_and_is_not_a_timeout() -> None:
    policy = RetryPolicy("hue", RetrySettings(attempt_timeout=5))
    calls: list[float] = []

    async def hang(timeout: float) -> None:
        calls.append(timeout)
        await asyncio.sleep(5)

    async def main() -> None:
        task = asyncio.create_task(policy.run(hang, time.monotonic() + 5))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert len(calls) == 1


def test_each_retry_logs_one_warning_and_success_logs_no_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="homepoll.retry")
    fake = FakeTime()
    policy, _ = make(fake, jitter=0)
    error = TransientError("HTTP 503 from bridge")
    result = run(policy, Script([error, error, "ok"]), START + 1000)
    assert result == Attempted("ok", 3)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "hue: attempt 1/4 failed (TransientError: HTTP 503 from bridge); retrying in 1.0 s",
        "hue: attempt 2/4 failed (TransientError: HTTP 503 from bridge); retrying in 2.0 s",
    ]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_give_up_logs_one_error_after_the_warnings(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="homepoll.retry")
    fake = FakeTime()
    policy, _ = make(fake, jitter=0)
    fail(policy, Script([TransientError("HTTP 503 from bridge")]), START + 1000)
    levels = [r.levelno for r in caplog.records]
    assert levels == [logging.WARNING] * 3 + [logging.ERROR]
    message = caplog.records[-1].getMessage()
    assert "4/4 attempt" in message
    assert "TransientError: HTTP 503 from bridge" in message


def test_auth_give_up_says_a_person_must_act(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="homepoll.retry")
    fake = FakeTime()
    policy, _ = make(fake)
    fail(policy, Script([AuthError("unauthorized user")]), START + 1000)
    assert [r.levelno for r in caplog.records] == [logging.ERROR]
    message = caplog.records[0].getMessage()
    assert "AuthError: unauthorized user" in message
    assert "person must act" in message
    assert "1/4 attempt" in message


def test_success_on_third_attempt_reports_three() -> None:
    fake = FakeTime()
    policy, _ = make(fake, jitter=0)
    call = Script([TransientError("a"), PollTimeout("b"), {"sensors": 3}])
    result = run(policy, call, START + 1000)
    assert result.value == {"sensors": 3}
    assert result.attempts == 3
    assert fake.sleeps == [1.0, 2.0]


def test_concurrent_polls_keep_their_own_counters() -> None:
    fake = FakeTime()
    policy, _ = make(fake, jitter=0)
    quick = Script([TransientError("a"), "quick"])
    slow = Script([TransientError("a"), TransientError("b"), TransientError("c"), "slow"])

    async def main() -> tuple[Attempted, Attempted]:
        return await asyncio.gather(policy.run(quick, START + 1000), policy.run(slow, START + 1000))

    first, second = asyncio.run(main())
    assert first == Attempted("quick", 2)
    assert second == Attempted("slow", 4)


def test_attempts_exhausted_on_rate_limit_still_pushes_next_poll_back() -> None:
    fake = FakeTime()
    policy, _ = make(fake, max_attempts=1, rate_limit_delay=45.0)
    failed = fail(policy, Script([RateLimitedError("429")]), START + 1000)
    assert failed.attempts == 1
    assert failed.retry_after == 45.0
    assert fake.sleeps == []


def test_on_retry_hears_each_failure_and_its_wait() -> None:
    fake = FakeTime()
    heard: list[tuple[str, float]] = []
    settings = replace(RetrySettings(), jitter=0)
    policy = RetryPolicy(
        "hue",
        settings,
        sleep=fake.sleep,
        clock=fake.clock,
        on_retry=lambda error, wait: heard.append((str(error), wait)),
    )
    first, second = RateLimitedError("429", retry_after=3), TransientError("503")
    last = TransientError("still 503")
    failed = fail(policy, Script([first, second, second, last]), START + 1000)
    assert heard == [("429", 3.0), ("503", 2.0), ("503", 4.0)]
    assert fake.sleeps == [3.0, 2.0, 4.0]
    assert failed.error is last and failed.attempts == 4
