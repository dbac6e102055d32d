"""The token bucket every xcomm limiter is built from: weighted, FIFO-fair, cancellation-safe.

A caller that finds enough tokens and no queue takes them without awaiting anything; others
join a FIFO queue, and one clock timer wakes the head of the queue when its tokens are due.
"""

from __future__ import annotations

import math
from typing import Self

import anyio
import msgspec

from xcomm._bucket_core import BucketCore, _check_number, _positive
from xcomm._clock import Clock
from xcomm._config import RateLimit

__all__ = ["LimiterStatistics", "TokenBucket"]


class LimiterStatistics(msgspec.Struct, frozen=True, kw_only=True):
    """A snapshot of one bucket, from `TokenBucket.statistics()`.

    Attributes:
        rate: tokens added every `per` seconds.
        per: the period of `rate`, in seconds.
        burst: the most tokens the bucket holds.
        tokens: tokens available now (0.0 while paused).
        tasks_waiting: callers queued in `acquire()`.
        acquired: grants made since the bucket was created.
        total_wait: seconds spent queued, summed over the callers that had to wait.
        paused_until: clock time a `penalize()` pause ends, or None when not paused.
    """

    rate: float
    per: float
    burst: float
    tokens: float
    tasks_waiting: int
    acquired: int
    total_wait: float
    paused_until: float | None = None


class TokenBucket(BucketCore):
    """An asyncio token bucket: `rate` tokens per `per` seconds, holding up to `burst`.

    Example:
        ```python
        bucket = TokenBucket(10, burst=5)  # 10 a second, 5 at once
        await bucket.acquire()  # one token
        await bucket.acquire(3)  # a weighted call
        bucket.penalize(30.0)  # the provider said "Retry-After: 30"
        ```

    Callers are served first come, first served: once anyone is queued, a newcomer queues
    behind them even if tokens are available, so small requests never starve a large one. A
    caller cancelled while queued leaves the queue; one cancelled after its grant but before
    it resumed gives its tokens back.

    **Catch-up while backlogged.** From the first queued caller until the last granted one
    has resumed (one event-loop turn after the queue empties), the bucket is backlogged and
    its refill is not capped at `burst`: when the loop wakes the timer late, the lateness is
    credited to the queue, and a caller looping straight back to `acquire()` still counts as
    queued. So a busy bucket delivers its set rate, not the rate minus timer overshoot. Time
    in which no one waited is capped as usual, and tokens are cut back to `burst` when the
    backlog ends. The price: after a stalled loop, a queue's worth may be granted at once.

    **Pauses.** `penalize(seconds)` empties the bucket and grants nothing before the
    deadline. At the deadline the first caller goes straight through (the provider said it
    may), and the rest follow at the steady rate, with no burst.

    Args:
        rate: tokens added every `per` seconds.
        per: the period, in seconds (`TokenBucket(100, 60)` is 100 a minute).
        burst: the most tokens held (the bucket starts full) and the largest single `cost`;
            defaults to `rate`.
        clock: the time source (a `xcomm.testing.FakeClock` in tests); defaults to the
            monotonic clock.

    Raises:
        ConfigurationError: a setting is not a positive, finite number.
    """

    __slots__ = ()

    @classmethod
    def from_limit(cls, limit: RateLimit, *, clock: Clock | None = None) -> Self:
        """Build a bucket from a `RateLimit` value."""
        return cls(limit.rate, limit.per, burst=limit.burst, clock=clock)

    @property
    def burst(self) -> float:
        """The most tokens the bucket holds, and the largest single cost."""
        return self._burst

    async def acquire(self, cost: float = 1.0) -> None:
        """Wait until `cost` tokens are granted to this caller, in arrival order.

        Raises:
            ValidationError: `cost` is not positive, or exceeds `burst` (never grantable).
        """
        if not self._busy:
            now = self._now()
            tokens = self._tokens + (now - self._last) * self._fill
            if tokens > self._burst:
                tokens = self._burst
            if 0.0 < cost <= tokens + self._gate:
                self._tokens = tokens - cost
                self._last = now
                self._acquired += 1
                return
        self._check_cost(cost)
        now = self._now()
        self._refill(now)
        if not self._waiters and self._grantable(now, cost):
            self._take(cost)
        else:
            await self._wait(cost, now)

    def acquire_nowait(self, cost: float = 1.0) -> None:
        """Take `cost` tokens now, or raise.

        Raises:
            anyio.WouldBlock: not enough tokens, a pause, or callers already queued.
            ValidationError: `cost` is not positive or exceeds `burst`.
        """
        self._check_cost(cost)
        now = self._now()
        self._refill(now)
        if self._waiters or not self._grantable(now, cost):
            raise anyio.WouldBlock
        self._take(cost)

    def try_acquire(self, cost: float = 1.0) -> bool:
        """Take `cost` tokens if that is possible now; return whether it was."""
        ok = self.can_proceed(cost)
        if ok:
            self.acquire_nowait(cost)
        return ok

    def can_proceed(self, cost: float = 1.0) -> bool:
        """Whether `acquire_nowait(cost)` would succeed now. Takes nothing."""
        self._check_cost(cost)
        now = self._now()
        return not self._pending() and self._grantable(now, cost, self._peek(now))

    def time_until_ready(self, cost: float = 1.0) -> float:
        """Seconds until a caller arriving now with `cost` would be granted (0.0 if now).

        Counts the callers already queued ahead and any `penalize()` pause.
        """
        self._check_cost(cost)
        now = self._now()
        tokens = self._peek(now)
        queued = [entry[0] for entry in self._waiters if not entry[1].done()]
        needed = math.fsum(queued) + cost
        start = max(now, self._paused_until)
        if self._resume:  # the first grant after a pause is free and leaves the bucket empty
            first = queued[0] if queued else cost
            needed, tokens = needed - first, max(0.0, tokens - first)
        deficit = needed - tokens
        wait = start - now + (deficit / self._fill if deficit > self._slack else 0.0)
        return max(0.0, wait)

    def release(self, cost: float = 1.0) -> None:
        """Give back `cost` tokens taken but not used (never above `burst`).

        Composite limiters call this when a caller is cancelled between buckets. Nothing is
        given back during a pause: the pause already emptied the bucket.
        """
        _check_number("release() cost", cost, positive=True)
        self._give_back(cost)

    def penalize(self, seconds: float) -> None:
        """Grant nothing for `seconds`, to anyone sharing this bucket (a `Retry-After`).

        The bucket is emptied now and does not refill during the pause, so no burst fires
        when it ends; the first caller at the deadline is granted, the rest at the steady
        rate. A pause is only ever extended, never shortened. Zero or less does nothing.

        Raises:
            ValidationError: `seconds` is not a finite number.
        """
        _check_number("penalize() seconds", seconds, positive=False)
        if seconds <= 0:
            return
        self._pause(self._now(), seconds)

    def set_rate(
        self, rate: float, per: float | None = None, *, burst: float | None = None
    ) -> None:
        """Change the rate (and optionally `per` and `burst`) from now on.

        Tokens already accrued are kept, up to the new `burst`; queued callers are re-timed.

        Raises:
            ConfigurationError: a value is not a positive, finite number.
        """
        name = type(self).__name__
        new_rate = _positive(name, "rate", rate)
        new_per = self._per if per is None else _positive(name, "per", per)
        new_burst = self._burst if burst is None else _positive(name, "burst", burst)
        self._refill(self._now())
        self._set_rate(new_rate, new_per, new_burst)
        self._tokens = min(self._tokens, new_burst)
        if self._waiters:
            self._dispatch()

    def statistics(self) -> LimiterStatistics:
        """A snapshot of the bucket: settings, tokens now, queue and totals."""
        now = self._now()
        return LimiterStatistics(
            rate=self._rate,
            per=self._per,
            burst=self._burst,
            tokens=max(0.0, self._peek(now)),
            tasks_waiting=self._pending(),
            acquired=self._acquired,
            total_wait=self._total_wait,
            paused_until=self._paused_until if now < self._paused_until else None,
        )

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} {self._rate:g}/{self._per:g}s burst={self._burst:g} "
            f"tokens={max(0.0, self._peek(self._now())):.3g} waiting={self._pending()}>"
        )
