"""A virtual clock for tests: limiters, retries and timeouts run in no real time, exactly."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import heapq
import itertools
import math
from collections.abc import AsyncIterator, Callable, Sized

from xcomm._clock import TimerHandle

__all__ = ["FakeClock"]

# The loop has settled when nothing else was runnable for this many consecutive yields.
_QUIET_ROUNDS = 3
# On an event loop whose ready queue cannot be inspected, just yield this many times.
_BLIND_ROUNDS = 20
# advance() moves on after this many yields per deadline even if something keeps running.
_MAX_ROUNDS = 1_000
# Coroutines currently settling (their own wake-ups do not count as "something runnable").
_settling = 0


class _Timer:
    """A pending `call_at()` or `sleep()`: cancellable, fired at most once."""

    __slots__ = ("callback", "cancelled", "context", "when")

    def __init__(self, when: float, callback: Callable[[], None]) -> None:
        self.when = when
        self.callback = callback
        self.context = contextvars.copy_context()
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True

    def run(self) -> None:
        if not self.cancelled:
            self.cancelled = True
            self.callback()


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def _settle(max_rounds: int | None) -> None:
    """Yield to the event loop until nothing else is runnable (or `max_rounds` is reached)."""
    global _settling
    ready: Sized | None = getattr(asyncio.get_running_loop(), "_ready", None)
    needed = _QUIET_ROUNDS if ready is not None else _BLIND_ROUNDS
    _settling += 1
    try:
        quiet = rounds = 0
        while quiet < needed and (max_rounds is None or rounds < max_rounds):
            await asyncio.sleep(0)
            rounds += 1
            quiet = quiet + 1 if ready is None or len(ready) < _settling else 0
    finally:
        _settling -= 1


class FakeClock:
    """A `Clock` on virtual time: `sleep()` and `call_at()` wait for the test to move time.

    Example:
        ```python
        import asyncio
        from xcomm import TokenBucket
        from xcomm.testing import FakeClock


        async def main() -> None:
            clock = FakeClock()
            bucket = TokenBucket(10, burst=5, clock=clock)
            async with clock.autojump():
                for _ in range(25):
                    await bucket.acquire()
            assert abs(clock.now() - 2.0) < 1e-9  # 5 at once, then 20 at 10/s


        asyncio.run(main())
        ```

    Time moves only when the test says so: `await clock.advance(seconds)` fires every timer
    and sleeper due within `seconds`, in deadline order, letting woken tasks run before the
    next deadline (so timers they set within the window fire too). In autojump mode
    (`FakeClock(autojump=True)` or `async with clock.autojump():`) the clock jumps to the
    next deadline whenever the event loop has settled, so code that waits for a minute
    finishes at once and `clock.now()` says exactly when it would have finished.

    Autojump only sees virtual timers: while a task waits on real I/O the loop looks idle
    and the clock may jump ahead. Its driver task exists only while timers are pending,
    and leaving `autojump()` cancels it.

    Args:
        start: the initial `now()`.
        autojump: jump to the next deadline whenever the loop is idle.
    """

    __slots__ = ("_autojump", "_driver", "_now", "_queue", "_sequence")

    def __init__(self, start: float = 0.0, *, autojump: bool = False) -> None:
        self._now = float(start)
        self._autojump = autojump
        self._queue: list[tuple[float, int, _Timer]] = []
        self._sequence = itertools.count()
        self._driver: asyncio.Task[None] | None = None

    def now(self) -> float:
        """The current virtual time, in seconds."""
        return self._now

    @property
    def timers_pending(self) -> int:
        """How many timers and sleepers are waiting for virtual time to reach them."""
        return sum(1 for _, _, timer in self._queue if not timer.cancelled)

    async def sleep(self, seconds: float) -> None:
        """Wait until virtual time has moved on by `seconds`; `sleep(0)` only yields."""
        if math.isnan(seconds):
            raise ValueError("FakeClock.sleep() needs a number of seconds, got nan")
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future = asyncio.get_running_loop().create_future()
        timer = self._schedule(self._now + seconds, lambda: _wake(future))
        try:
            await future
        finally:
            timer.cancel()

    def call_at(self, when: float, callback: Callable[[], None]) -> TimerHandle:
        """Run `callback` on the event loop once virtual time reaches `when`."""
        return self._schedule(when, callback)

    async def advance(self, seconds: float) -> None:
        """Move time forward by `seconds`, firing what falls due, in deadline order.

        At each deadline `now()` is set to it, the timer fires, and the woken tasks run
        until the loop settles before the next deadline is considered.
        """
        if not seconds >= 0:
            raise ValueError(f"FakeClock.advance() needs seconds >= 0, got {seconds!r}")
        target = self._now + seconds
        while (timer := self._pop_due(target)) is not None:
            self._fire(timer)
            await _settle(_MAX_ROUNDS)
        self._now = max(self._now, target)

    @contextlib.asynccontextmanager
    async def autojump(self) -> AsyncIterator[None]:
        """Within the block, jump to the next deadline whenever the loop is idle."""
        previous, self._autojump = self._autojump, True
        self._kick()
        try:
            yield
        finally:
            self._autojump = previous
            driver = self._driver
            if not previous and driver is not None:
                driver.cancel()
                await asyncio.wait([driver])

    def __repr__(self) -> str:
        return f"<FakeClock now={self._now:g} timers_pending={self.timers_pending}>"

    # -- internals --------------------------------------------------------------------------

    def _schedule(self, when: float, callback: Callable[[], None]) -> _Timer:
        timer = _Timer(when, callback)
        heapq.heappush(self._queue, (when, next(self._sequence), timer))
        self._kick()
        return timer

    def _pop_due(self, limit: float) -> _Timer | None:
        queue = self._queue
        while queue and queue[0][2].cancelled:
            heapq.heappop(queue)
        if queue and queue[0][0] <= limit:
            return heapq.heappop(queue)[2]
        return None

    def _fire(self, timer: _Timer) -> None:
        self._now = max(self._now, timer.when)
        asyncio.get_running_loop().call_soon(timer.run, context=timer.context)

    def _kick(self) -> None:
        if not self._autojump or (self._driver is not None and not self._driver.done()):
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # scheduled outside the loop: the next schedule starts it
            return
        self._driver = loop.create_task(self._drive(), name="xcomm-fakeclock-autojump")

    async def _drive(self) -> None:
        """Autojump: once the loop settles, fire the earliest timer; stop when none is left."""
        while self._autojump and self.timers_pending:
            await _settle(None)
            timer = self._pop_due(math.inf) if self._autojump else None
            if timer is None:
                return
            self._fire(timer)
