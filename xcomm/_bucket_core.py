"""The mechanics under `TokenBucket`: token arithmetic, the FIFO of waiters, one timer.

State is plain floats behind `__slots__`. `_peek(now)` is the whole refill rule: no refill
during a pause, and no cap at `burst` while the bucket is backlogged (`_busy`: from the
first queued caller until the callers granted last have resumed). `_dispatch()` grants the
head of the queue while tokens last, in order, then arms one clock timer for the new head.
"""

from __future__ import annotations

import asyncio
import itertools
import math
from collections import deque
from typing import TypeAlias

from xcomm._clock import MONOTONIC, Clock, TimerHandle
from xcomm._config import _check_positive
from xcomm._errors import ValidationError

__all__ = ["BucketCore"]

# Grants may come this much earlier than exact arithmetic says: it absorbs float rounding and
# timers firing a tick early. Without it a bucket re-arms a timer for 1e-17 s that the float
# clock never reaches (a livelock under a fake clock). The long-run rate is unchanged: tokens
# granted early are missing from the next refill.
_EARLY_SECONDS = 1e-7
_MIN_SLACK = 1e-9
_SEQUENCE = itertools.count()

Waiter: TypeAlias = tuple[float, asyncio.Future[None], float]  # cost, grant, time queued


def _positive(owner: str, name: str, value: float) -> float:
    _check_positive(owner, name, value, allow_none=False)
    return float(value)


def _check_number(what: str, value: float, *, positive: bool) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValidationError(f"{what} must be a number, got {type(value).__name__}")
    if not math.isfinite(value) or (positive and value <= 0):
        raise ValidationError(f"{what} must be a {'positive, ' * positive}finite number: {value!r}")


class BucketCore:
    """State and mechanics of a token bucket; `TokenBucket` is the public API on top."""

    __slots__ = (
        "_acquired",
        "_burst",
        "_busy",
        "_clock",
        "_fill",
        "_gate",
        "_grace_loop",
        "_last",
        "_now",
        "_paused_until",
        "_per",
        "_rate",
        "_resume",
        "_seq",
        "_slack",
        "_timer",
        "_timer_when",
        "_tokens",
        "_total_wait",
        "_waiters",
    )

    def __init__(
        self,
        rate: float,
        per: float = 1.0,
        *,
        burst: float | None = None,
        clock: Clock | None = None,
    ) -> None:
        name = type(self).__name__
        self._clock: Clock = MONOTONIC if clock is None else clock
        self._now = self._clock.now  # MonotonicClock.now is time.monotonic itself
        self._rate = _positive(name, "rate", rate)
        self._per = _positive(name, "per", per)
        self._burst = self._rate if burst is None else _positive(name, "burst", burst)
        self._fill = self._slack = self._gate = 0.0  # set by _set_rate()
        self._tokens = self._burst
        self._last = self._now()
        self._waiters: deque[Waiter] = deque()
        self._busy = False  # backlogged: refill is not capped
        self._grace_loop: asyncio.AbstractEventLoop | None = None  # runs _end_backlog()
        self._timer: TimerHandle | None = None
        self._timer_when = 0.0
        self._paused_until = -math.inf
        self._resume = False  # the grant a pause's deadline allows is still to be made
        self._acquired = 0
        self._total_wait = 0.0
        self._seq = next(_SEQUENCE)  # a canonical order for acquiring several buckets
        self._set_rate(self._rate, self._per, self._burst)

    def _set_rate(self, rate: float, per: float, burst: float) -> None:
        self._rate, self._per, self._burst = rate, per, burst
        self._fill = rate / per
        self._slack = max(_MIN_SLACK, self._fill * _EARLY_SECONDS)
        if not self._resume:
            self._gate = self._slack

    async def _wait(self, cost: float, now: float) -> None:
        """Queue for `cost` tokens and wait for the grant; clean up if cancelled."""
        entry = (cost, asyncio.get_running_loop().create_future(), now)
        self._waiters.append(entry)
        self._busy = True
        if len(self._waiters) == 1:
            self._dispatch()
        try:
            await entry[1]
        except asyncio.CancelledError:
            self._abandon(entry)
            raise

    def _give_back(self, cost: float) -> None:
        now = self._now()
        self._refill(now)
        if now >= self._paused_until:  # a pause has emptied the bucket since: nothing to return
            self._tokens = min(self._tokens + cost, max(self._tokens, self._burst))
        if self._waiters:
            self._dispatch()

    def _pause(self, now: float, seconds: float) -> None:
        self._refill(now)
        self._paused_until = max(self._paused_until, now + seconds)
        self._tokens = 0.0
        self._resume = True
        self._gate = -math.inf  # keep the fast path out until the resume grant is made
        if self._waiters:
            self._dispatch()

    def _check_cost(self, cost: float) -> None:
        _check_number("cost", cost, positive=True)
        if cost > self._burst:
            raise ValidationError(
                f"cost {cost:g} exceeds this bucket's burst of {self._burst:g}, so it could "
                "never be granted; raise the burst or split the request"
            )

    def _pending(self) -> int:
        return sum(1 for entry in self._waiters if not entry[1].done())

    def _backlogged(self) -> bool:
        if self._waiters:
            return True
        # granted callers have yet to resume, unless their loop closed before _end_backlog ran
        return self._busy and not (self._grace_loop is None or self._grace_loop.is_closed())

    def _peek(self, now: float) -> float:
        """Tokens at `now`: no refill during a pause; capped unless the bucket is backlogged."""
        start = max(self._last, self._paused_until)
        if now <= start:
            return self._tokens
        tokens = self._tokens + (now - start) * self._fill
        return tokens if tokens <= self._burst or self._backlogged() else self._burst

    def _refill(self, now: float) -> None:
        self._tokens = self._peek(now)
        self._last = now
        if self._busy and not self._backlogged():  # its loop closed before it could end
            self._busy = False

    def _grantable(self, now: float, cost: float, tokens: float | None = None) -> bool:
        if now + _EARLY_SECONDS < self._paused_until:
            return False
        if tokens is None:
            tokens = self._tokens
        if tokens + self._slack >= cost or self._resume:
            return True
        # a wait too small to move the clock would never end
        return now + (cost - tokens) / self._fill <= now

    def _take(self, cost: float) -> None:
        tokens = self._tokens - cost
        if self._resume:  # the grant a pause's deadline allows: the bucket restarts empty
            self._resume = False
            self._gate = self._slack
            tokens = max(tokens, 0.0)
        self._tokens = tokens
        self._acquired += 1

    def _dispatch(self) -> None:
        """Grant queued callers in order while tokens last; then time the head's wake-up."""
        now = self._now()
        self._refill(now)  # backlogged: uncapped, the queue is credited for a late timer
        waiters = self._waiters
        granted: asyncio.Future[None] | None = None
        while waiters:
            cost, future, since = waiters[0]
            if future.done():  # cancelled; its task has not run its handler yet
                waiters.popleft()
                continue
            if not self._grantable(now, cost):
                if now + _EARLY_SECONDS < self._paused_until:
                    when = self._paused_until
                else:
                    when = now + (cost - self._tokens) / self._fill
                self._arm(when)
                return
            waiters.popleft()
            self._take(cost)
            self._total_wait += now - since
            future.set_result(None)
            granted = future
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if granted is None:
            self._end_backlog()
        else:  # after the granted callers resumed, and maybe came straight back
            self._grace_loop = granted.get_loop()
            self._grace_loop.call_soon(self._end_backlog)

    def _end_backlog(self) -> None:
        if self._waiters:  # a new backlog began; it ends on its own
            return
        self._refill(self._now())
        self._busy = False
        if self._tokens > self._burst:
            self._tokens = self._burst

    def _arm(self, when: float) -> None:
        if self._timer is not None and self._timer_when == when:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_when = when
        self._timer = self._clock.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._dispatch()

    def _abandon(self, entry: Waiter) -> None:
        """Clean up after a caller cancelled inside `acquire()`."""
        cost, future, _ = entry
        if future.cancelled() or not future.done():
            was_head = bool(self._waiters) and self._waiters[0] is entry
            try:
                self._waiters.remove(entry)
            except ValueError:  # already dropped by _dispatch
                return
            if was_head:
                self._dispatch()
        else:  # granted, but cancelled before it could resume: give the tokens back
            self._acquired -= 1
            self._give_back(cost)
