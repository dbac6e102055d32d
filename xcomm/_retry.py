"""Retrying what is safe to retry, through tenacity, with every attempt passing the limiter.

The one attempt loop every provider uses is `run_attempts()`. It is deliberately small:
classification lives on the exceptions (`RequestNotSent`, `ProviderError.transient`), time
comes from the injected clock, and limiter feedback (`penalize`) happens here once for all.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Protocol, TypeVar

from xcomm._clock import Clock
from xcomm._config import RetryPolicy
from xcomm._errors import ProviderError, RateLimitError, RequestNotSent

if TYPE_CHECKING:
    import tenacity

__all__ = ["Limiter", "backoff_delay", "is_retryable", "run_attempts", "tenacity_policy"]

T = TypeVar("T")
logger = logging.getLogger("xcomm.retry")


class Limiter(Protocol):
    """What the attempt loop needs from a rate limiter (a `TokenBucket` or a composition)."""

    async def acquire(self, cost: float = 1.0) -> None: ...

    def acquire_nowait(self, cost: float = 1.0) -> None: ...

    def penalize(self, seconds: float) -> None: ...


def is_retryable(exc: BaseException, policy: RetryPolicy) -> bool:
    """True for errors that are safe and useful to retry under `policy`.

    `RequestNotSent` (nothing reached the provider) and transient `ProviderError`s are; a
    `DeliveryUnknown` never is, nor is a throttle whose `retry_after` exceeds the policy's
    `max_retry_after` (sleeping an hour inside a send call helps nobody).
    """
    if isinstance(exc, RequestNotSent):
        return True
    if isinstance(exc, ProviderError) and exc.transient:
        return exc.retry_after is None or exc.retry_after <= policy.max_retry_after
    return False


def backoff_delay(policy: RetryPolicy, attempt: int) -> float:
    """Seconds to wait before attempt `attempt + 1`: exponential, capped, jittered."""
    ceiling = min(policy.max_backoff, policy.backoff * 2 ** (attempt - 1))
    return random.uniform(0.0, ceiling) if policy.jitter else ceiling


def tenacity_policy(policy: RetryPolicy, clock: Clock) -> tenacity.AsyncRetrying:
    """The tenacity form of `policy`: safe-only retries, backoff or `retry_after`, clock sleeps.

    tenacity is imported here, at the first retry: a first attempt runs without it.
    """
    import tenacity

    def wait(state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, ProviderError) and exc.retry_after is not None:
            return max(0.0, exc.retry_after)
        return backoff_delay(policy, state.attempt_number)

    def before_sleep(state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        logger.debug(
            "attempt %d failed with %s; retrying in %.3fs",
            state.attempt_number,
            type(exc).__name__,
            state.upcoming_sleep,
        )

    return tenacity.AsyncRetrying(
        stop=tenacity.stop_after_attempt(policy.max_attempts),
        wait=wait,
        retry=tenacity.retry_if_exception(lambda e: is_retryable(e, policy)),
        sleep=clock.sleep,
        before_sleep=before_sleep,
        reraise=True,
    )


async def run_attempts(
    attempt: Callable[[int], Awaitable[T]],
    *,
    policy: RetryPolicy,
    clock: Clock,
    limiter: Limiter | None = None,
    cost: float = 1.0,
) -> tuple[T, int]:
    """Run `attempt(n)` until it succeeds or the error is not retryable.

    Each attempt first acquires `cost` from `limiter` (`cost=0`: the attempt takes what it
    needs itself, such as a token per message of a batch). A `RateLimitError` with `retry_after`
    pauses the limiter for everyone sharing it before the retry decision is made.
    Returns the result and the number of attempts made.

    The first attempt runs directly (most calls succeed at once, and setting up tenacity costs
    about a tenth of a loopback SMTP send); if it fails retryably, its error is replayed to
    tenacity as attempt 1, so waits, numbering and the stop rule are tenacity's throughout.
    """
    try:
        if limiter is not None and cost:
            await limiter.acquire(cost)
        return await attempt(1), 1
    except BaseException as exc:
        _feed_back(exc, limiter)
        if policy.max_attempts == 1 or not is_retryable(exc, policy):
            raise
        first_error = exc
    number = 0
    async for state in tenacity_policy(policy, clock):
        with state:
            number = state.retry_state.attempt_number
            if number == 1:
                raise first_error
            result = await _attempt_once(attempt, number, limiter, cost)
        if not state.retry_state.outcome or not state.retry_state.outcome.failed:
            return result, number
    raise AssertionError("unreachable: tenacity either returns or reraises")  # pragma: no cover


async def _attempt_once(
    attempt: Callable[[int], Awaitable[T]], number: int, limiter: Limiter | None, cost: float
) -> T:
    if limiter is not None and cost:
        await limiter.acquire(cost)
    try:
        return await attempt(number)
    except RateLimitError as exc:
        _feed_back(exc, limiter)
        raise


def _feed_back(exc: BaseException, limiter: Limiter | None) -> None:
    """A throttle's `retry_after` pauses the limiter for everyone sharing it."""
    if limiter is not None and isinstance(exc, RateLimitError) and exc.retry_after:
        limiter.penalize(exc.retry_after)
