"""SMTP sessions, and the pool that keeps them (one pool per host, port and login).

Sessions are opened by `xcomm.email._transaction.SMTPConnector`, the pool's opener (IMAP
sessions by `xcomm.email._imap`: the pool holds anything `PooledConnection`).
`ConnectionPool` lends them one task at a time and guarantees:

- at most `max_size` connections are open; waiting for one is bounded by `pool_timeout`
  (then `PoolTimeout`);
- idle connections are reused newest first (LIFO);
- one idle longer than `idle_timeout` is closed at the next checkout (no background task);
- after `max_messages_per_connection` messages a connection says QUIT and is replaced;
- a connection goes back only when the borrower marks it clean (`lease.reusable = True`);
  an error, a cancelled task or a dropped link closes it, because its state is unknown;
- a pipelining connection whose message is written may go to a waiting task before the
  reply comes (`hand_over()`), so the next envelope leaves in the same packet; the reply
  still goes to the task that sent the message.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Generic, Protocol, TypeVar

import msgspec

from xcomm._clock import Clock
from xcomm._errors import ConfigurationError, LifecycleError, PoolTimeout
from xcomm.email._wire import SMTPConnection, SMTPError

__all__ = ["ConnectionPool", "Lease", "PoolStatistics", "PooledConnection", "SMTPSession"]

_CLOCK_SLACK = 1e-3  # a timer may fire this early (the loop's clock resolution)


class SMTPSession:
    """One open SMTP connection: greeted, upgraded to TLS and logged in as configured."""

    __slots__ = ("encrypted", "quit_timeout", "wire")

    def __init__(self, wire: SMTPConnection, *, encrypted: bool, quit_timeout: float | None):
        self.wire = wire
        self.encrypted = encrypted
        self.quit_timeout = quit_timeout

    @property
    def alive(self) -> bool:
        """False once either side has closed the connection (or it holds an unasked reply)."""
        return self.wire.alive

    @property
    def size_limit(self) -> int | None:
        """The largest message the server takes (EHLO SIZE), when it says."""
        return self.wire.size_limit

    def close(self) -> None:
        """Close without QUIT or a TLS goodbye (the state may be unknown): at once, or as
        soon as the replies claimed by a task it was handed on from have come."""
        self.wire.close()

    async def aclose(self) -> None:
        """QUIT (errors ignored), then close; closes even when cancelled."""
        try:
            if self.wire.alive:
                await self.wire.quit(timeout=self.quit_timeout)
        except (SMTPError, OSError):
            pass
        finally:
            self.wire.abort()


class PooledConnection(Protocol):
    """What the pool needs from a connection (an SMTP or IMAP session)."""

    @property
    def alive(self) -> bool: ...

    def close(self) -> None: ...

    async def aclose(self) -> None: ...


C = TypeVar("C", bound=PooledConnection)


def _bad(problem: str, provider: str = "smtp") -> ConfigurationError:
    return ConfigurationError(f"{provider.upper()} provider: {problem}")


def _whole(value: object) -> bool:
    """An int (not a bool) of at least 1."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


class PoolStatistics(msgspec.Struct, frozen=True, kw_only=True):
    """A snapshot of a connection pool.

    Attributes:
        size: open connections (idle plus in use).
        idle: connections waiting to be reused.
        in_use: connections lent to a task right now.
        max_size: the most connections the pool opens at once.
        connections_opened: connections opened since the pool was created.
        connections_closed: connections closed since the pool was created.
        messages_sent: messages sent over the pool's connections.
        waiting: tasks waiting for a free connection.
    """

    size: int
    idle: int
    in_use: int
    max_size: int
    connections_opened: int = 0
    connections_closed: int = 0
    messages_sent: int = 0
    waiting: int = 0


class Lease(Generic[C]):
    """A pooled connection and its bookkeeping, lent to one task at a time.

    The borrower sets `reusable = True` when it leaves the connection clean (transaction
    finished or reset); otherwise the pool closes it when the lease ends.
    """

    __slots__ = ("conn", "counted", "last_used", "messages", "reusable")

    def __init__(self, conn: C, now: float) -> None:
        self.conn = conn
        self.last_used = now
        self.messages = 0
        self.counted = 0  # messages already in the pool's `messages_sent`
        self.reusable = False


class ConnectionPool(Generic[C]):
    """Sessions to one server, opened on demand by `opener` and reused (see the module doc)."""

    def __init__(
        self,
        opener: Callable[[], Awaitable[C]],
        *,
        provider: str,
        clock: Clock,
        max_size: int = 4,
        max_messages_per_connection: int = 100,
        idle_timeout: float = 30.0,
        pool_timeout: float | None = 10.0,
    ) -> None:
        for setting, value in (
            ("pool_size", max_size),
            ("max_messages_per_connection", max_messages_per_connection),
        ):
            if not _whole(value):
                raise _bad(f"{setting} must be an int of at least 1, got {value!r}", provider)
        if (
            isinstance(idle_timeout, bool)
            or not isinstance(idle_timeout, int | float)
            or not idle_timeout > 0
        ):
            raise _bad(
                f"idle_timeout must be a positive number of seconds, got {idle_timeout!r}", provider
            )
        self._opener = opener
        self._provider = provider
        self._clock = clock
        self._max_size = max_size
        self._max_messages = max_messages_per_connection
        self._idle_timeout = idle_timeout
        self._pool_timeout = pool_timeout
        self._free = max_size  # slots nobody holds; never > 0 while a live waiter queues
        self._queue: deque[tuple[asyncio.Future[Lease[C] | None], float]] = deque()  # oldest 1st
        self._timer: asyncio.TimerHandle | None = None
        self._idle: list[Lease[C]] = []
        self._in_use: set[Lease[C]] = set()
        self._waiting = self._opened = self._closed_count = self._messages_sent = 0
        self._closed = False

    def statistics(self) -> PoolStatistics:
        """A snapshot of the pool's size and counters."""
        return PoolStatistics(
            size=len(self._idle) + len(self._in_use),
            idle=len(self._idle),
            in_use=len(self._in_use),
            max_size=self._max_size,
            connections_opened=self._opened,
            connections_closed=self._closed_count,
            messages_sent=self._messages_sent,
            waiting=self._waiting,
        )

    @asynccontextmanager
    async def connection(
        self, *, on_open: Callable[[], None] | None = None
    ) -> AsyncIterator[Lease[C]]:
        """Borrow a connection for the `async with` block (`checkout()`, then `checkin()`)."""
        lease = await self.checkout(on_open=on_open)
        try:
            yield lease
        finally:
            await self.checkin(lease)

    async def checkout(self, *, on_open: Callable[[], None] | None = None) -> Lease[C]:
        """Borrow a connection; give it back with `checkin()` in a `finally` block.

        `on_open` is called just before a new connection is opened (no idle one was usable),
        so the caller can tell waiting for the pool from connecting.

        Raises:
            LifecycleError: the pool is closed.
            PoolTimeout: no connection became free within the pool timeout.
            Whatever the opener raises when a new connection cannot be opened.
        """
        self._check_open()
        handed = await self._acquire_slot()  # with a connection, when one was handed over
        try:
            self._check_open()
            if handed is not None and not handed.conn.alive:
                self._discard(handed)
                handed = None
            lease = handed or self._take_idle()
            if lease is None:
                if on_open is not None:
                    on_open()
                lease = Lease(await self._opener(), self._clock.now())
                self._opened += 1
        except BaseException:
            if handed is not None:
                self._discard(handed)
            self._release_slot()
            raise
        lease.reusable = False
        self._in_use.add(lease)
        return lease

    async def checkin(self, lease: Lease[C]) -> None:
        """Give back a connection `checkout()` lent: kept when the borrower marked it
        reusable, else closed. Safe in a cancelled task."""
        self._in_use.discard(lease)
        self._messages_sent += lease.messages - lease.counted
        lease.counted = lease.messages
        try:
            await self._give_back(lease)
        finally:
            self._release_slot()

    def hand_over(self, lease: Lease[C]) -> bool:
        """Give `lease` back before its last message is answered, to the task that has waited
        longest: that task's envelope then follows the message on the same connection, in
        the same packet (RFC 2920 lets commands follow the end of data unanswered; the
        connection's reply order keeps each reply for its task).

        Only when a task is waiting, the pool is open and the connection is not due for
        replacement; returns whether it was given back. The message counts toward
        `max_messages_per_connection` at once, and toward `messages_sent` when the borrower
        calls `count_sent()` after a 250.
        """
        queue = self._queue
        while queue and queue[0][0].done():  # cancelled or timed out
            queue.popleft()
        if not queue or self._closed or lease.messages + 1 >= self._max_messages:
            return False
        lease.messages += 1  # still in use: lent to the waiting task from now on
        lease.counted = lease.messages
        lease.last_used = self._clock.now()
        self._release_slot(lease)  # to that very task: it writes on this connection next
        return True

    def worn(self, lease: Lease[C], *, after: int = 0) -> bool:
        """Whether `lease` is due for replacement once it carries `after` more messages
        (`max_messages_per_connection`)."""
        return lease.messages + after >= self._max_messages

    def count_sent(self) -> None:
        """One more message accepted on a connection given back early (`hand_over()`)."""
        self._messages_sent += 1

    async def aclose(self) -> None:
        """QUIT idle connections and close them. Idempotent.

        Connections lent out at that moment are closed when they come back.
        """
        if self._closed:
            return
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        idle, self._idle = self._idle, []
        self._closed_count += len(idle)
        await asyncio.gather(*(lease.conn.aclose() for lease in idle))

    def _discard(self, lease: Lease[C]) -> None:
        self._in_use.discard(lease)
        self._closed_count += 1
        lease.conn.close()

    def _check_open(self) -> None:
        if self._closed:
            raise LifecycleError(
                f"this {self._provider} connection pool is closed; "
                "create a new provider from an open CommManager"
            )

    async def _acquire_slot(self) -> Lease[C] | None:
        """A free slot, or the next one released (first come, first served), within the pool
        timeout; with the connection `hand_over()` passed on, if any. One lazy timer for the
        whole queue, not one scheduled per wait."""
        if self._free:
            self._free -= 1
            return None
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[Lease[C] | None] = loop.create_future()
        limit = self._pool_timeout
        self._queue.append((waiter, math.inf if limit is None else loop.time() + limit))
        if limit is not None and self._timer is None:
            self._timer = loop.call_at(loop.time() + limit, self._expire, loop)
        self._waiting += 1
        try:
            return await waiter
        except TimeoutError as exc:
            raise PoolTimeout(
                f"no connection became free within {self._pool_timeout:g}s",
                provider=self._provider,
                detail=f"all {self._max_size} pooled connections are in use",
            ) from exc
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self._release_slot(waiter.result())  # got one as it was cancelled: pass it on
            raise
        finally:
            self._waiting -= 1

    def _release_slot(self, lease: Lease[C] | None = None) -> None:
        """Pass the slot (and `lease`, handed over) to the oldest live waiter; else keep the
        slot free and the lease idle."""
        queue = self._queue
        while queue:
            waiter = queue.popleft()[0]
            if not waiter.done():
                waiter.set_result(lease)
                return
        self._free += 1
        if lease is not None:
            self._in_use.discard(lease)
            self._idle.append(lease)

    def _expire(self, loop: asyncio.AbstractEventLoop) -> None:
        """Fail the waiters whose time is up; re-arm for the oldest one left."""
        self._timer = None
        queue, now = self._queue, loop.time()
        while queue:
            waiter, deadline = queue[0]
            if not waiter.done() and deadline > now + _CLOCK_SLACK:
                self._timer = loop.call_at(deadline, self._expire, loop)
                return
            queue.popleft()
            if not waiter.done():
                waiter.set_exception(TimeoutError())

    def _take_idle(self) -> Lease[C] | None:
        """The newest idle connection; expired or dropped ones are closed on the way."""
        now, keep = self._clock.now(), []
        for lease in self._idle:
            if lease.conn.alive and now - lease.last_used <= self._idle_timeout:
                keep.append(lease)
            else:
                self._closed_count += 1
                lease.conn.close()
        self._idle = keep
        return keep.pop() if keep else None

    async def _give_back(self, lease: Lease[C]) -> None:
        if not lease.reusable or not lease.conn.alive:
            self._closed_count += 1
            lease.conn.close()  # no goodbye and no await: safe in a cancelled task
        elif self._closed or lease.messages >= self._max_messages:
            self._closed_count += 1
            await lease.conn.aclose()
        else:
            lease.last_used = self._clock.now()
            self._idle.append(lease)
