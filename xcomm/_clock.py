"""Time as an injectable dependency.

Limiters, retry sleeps and pool idle expiry read time only through a `Clock`, so tests can
run them on virtual time (`xcomm.testing.FakeClock`) and get exact, instant results.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol

__all__ = ["Clock", "MonotonicClock", "TimerHandle"]


class TimerHandle(Protocol):
    """What `Clock.call_at` returns: something that can be cancelled."""

    def cancel(self) -> None: ...


class Clock(Protocol):
    """Monotonic time, sleeping and timers.

    `now()` is in seconds on an arbitrary monotonic scale; wall-clock time is never used for
    rates or timeouts.
    """

    def now(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...

    def call_at(self, when: float, callback: Callable[[], None]) -> TimerHandle: ...


class MonotonicClock:
    """The real clock: `time.monotonic()` and the running event loop's timers."""

    # A plain reference to the C function: no Python frame on the limiter's hot path.
    now = staticmethod(time.monotonic)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    def call_at(self, when: float, callback: Callable[[], None]) -> TimerHandle:
        loop = asyncio.get_running_loop()
        return loop.call_later(max(0.0, when - time.monotonic()), callback)


MONOTONIC = MonotonicClock()
