"""Retry policy: only what is safe, backoff or retry_after, every attempt through the limiter."""

from __future__ import annotations

import pytest

from xcomm import (
    AuthenticationError,
    ConnectError,
    ConnectionLost,
    MessageError,
    RateLimitError,
    RetryPolicy,
    ServiceUnavailable,
    TokenBucket,
)
from xcomm._retry import is_retryable, run_attempts
from xcomm.testing import FakeClock

NO_JITTER = RetryPolicy(max_attempts=4, backoff=1.0, max_backoff=3.0, jitter=False)


class Script:
    """Raises the given errors in turn, then returns "ok"; records the clock at each attempt."""

    def __init__(self, clock: FakeClock, *errors: BaseException) -> None:
        self.clock = clock
        self.errors = list(errors)
        self.times: list[float] = []

    async def __call__(self, attempt: int) -> str:
        self.times.append(self.clock.now())
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


def _not_sent() -> ConnectError:
    return ConnectError("refused", provider="p")


async def test_request_not_sent_is_retried_with_exponential_backoff() -> None:
    clock = FakeClock()
    script = Script(clock, _not_sent(), _not_sent(), _not_sent())
    async with clock.autojump():
        result, attempts = await run_attempts(script, policy=NO_JITTER, clock=clock)
    assert (result, attempts) == ("ok", 4)
    # waits 1, 2, then 3 (capped at max_backoff)
    assert script.times == pytest.approx([0.0, 1.0, 3.0, 6.0])


async def test_gives_up_after_max_attempts_and_reraises_the_last_error() -> None:
    clock = FakeClock()
    errors = [ServiceUnavailable(f"down {i}", provider="p") for i in range(5)]
    script = Script(clock, *errors)
    async with clock.autojump():
        with pytest.raises(ServiceUnavailable, match="down 3"):
            await run_attempts(script, policy=NO_JITTER, clock=clock)
    assert len(script.times) == 4


@pytest.mark.parametrize(
    "error",
    [
        ConnectionLost("dropped after DATA", provider="p"),
        AuthenticationError("bad password", provider="p"),
        MessageError("too big", provider="p"),
        ServiceUnavailable("500 on a POST", provider="p", transient=False),
    ],
)
async def test_unsafe_or_permanent_errors_are_not_retried(error: Exception) -> None:
    clock = FakeClock()
    script = Script(clock, error)
    with pytest.raises(type(error)):
        await run_attempts(script, policy=NO_JITTER, clock=clock)
    assert len(script.times) == 1


async def test_retry_after_replaces_backoff_and_pauses_the_limiter() -> None:
    clock = FakeClock()
    bucket = TokenBucket(100, clock=clock)
    script = Script(clock, RateLimitError("slow down", provider="p", retry_after=12.0))
    async with clock.autojump():
        result, attempts = await run_attempts(script, policy=NO_JITTER, clock=clock, limiter=bucket)
    assert (result, attempts) == ("ok", 2)
    assert script.times == pytest.approx([0.0, 12.0])
    assert bucket.statistics().acquired == 2


async def test_every_attempt_passes_the_limiter() -> None:
    clock = FakeClock()
    bucket = TokenBucket(1, per=10.0, burst=1, clock=clock)  # one token every 10 s
    script = Script(clock, _not_sent(), _not_sent())
    policy = RetryPolicy(max_attempts=3, backoff=0.5, jitter=False)
    async with clock.autojump():
        await run_attempts(script, policy=policy, clock=clock, limiter=bucket)
    # attempt 1 at 0; backoff 0.5 then wait for the next token at 10; backoff 1.0 then 20
    assert script.times == pytest.approx([0.0, 10.0, 20.0])


def test_jittered_backoff_stays_within_bounds() -> None:
    from xcomm._retry import backoff_delay

    policy = RetryPolicy(backoff=0.8, max_backoff=5.0, jitter=True)
    for attempt in range(1, 10):
        ceiling = min(5.0, 0.8 * 2 ** (attempt - 1))
        for _ in range(50):
            assert 0.0 <= backoff_delay(policy, attempt) <= ceiling


def test_is_retryable_respects_max_retry_after() -> None:
    policy = RetryPolicy(max_retry_after=60.0)
    assert is_retryable(RateLimitError("x", provider="p", retry_after=30), policy)
    assert not is_retryable(RateLimitError("x", provider="p", retry_after=3600), policy)
    assert is_retryable(_not_sent(), policy)
    assert not is_retryable(ValueError("bug"), policy)
