"""What every provider shares: the context the manager lends it and the one call path.

A provider turns a message into requests and answers into a `SendResult` or an xcomm error.
Everything around that (limiter, retry, metrics, logging) happens in `Provider._call()`, so
no provider writes its own attempt loop.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, TypeVar

import anyio

from xcomm._clock import Clock
from xcomm._config import RetryPolicy, Timeout
from xcomm._errors import CommunicationError, LifecycleError
from xcomm._metrics import MetricsCollector
from xcomm._retry import Limiter, run_attempts

if TYPE_CHECKING:
    import httpx

    from xcomm._limits import GlobalRateLimiter
    from xcomm.outbox import OutboxStore

__all__ = ["HttpPool", "Provider", "ProviderContext"]

T = TypeVar("T")
logger = logging.getLogger("xcomm.provider")


@dataclass(frozen=True, slots=True)
class HttpPool:
    """The HTTP pool a `CommManager` shares: its client, the transport under it (which
    `HttpProvider` drives directly), and the headers every request carries (User-Agent...)."""

    client: httpx.AsyncClient
    transport: httpx.AsyncBaseTransport
    headers: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class ProviderContext:
    """The shared parts a `CommManager` lends to its providers. Providers never close them."""

    limiters: GlobalRateLimiter
    retry: RetryPolicy
    metrics: MetricsCollector
    clock: Clock
    timeout: Timeout
    #: The manager's HTTP pool, made at its first use: a program that only speaks SMTP never
    #: imports httpx nor loads the CA certificates an HTTP client needs.
    http_pool: Callable[[], HttpPool]
    outbox: Callable[[], Awaitable[OutboxStore]] | None = None  # the manager's, opened lazily

    @property
    def http(self) -> httpx.AsyncClient:
        """The shared HTTP client."""
        return self.http_pool().client

    @property
    def transport(self) -> httpx.AsyncBaseTransport:
        """The transport under `http`."""
        return self.http_pool().transport

    @property
    def headers(self) -> tuple[tuple[str, str], ...]:
        """The headers every HTTP request carries."""
        return self.http_pool().headers


class Provider:
    """Base of every provider: holds the borrowed context and runs calls through it.

    Subclasses set `name`, implement their operations with `_call()`, and override
    `aclose()` only to close what they opened themselves (an SMTP pool).
    """

    name: ClassVar[str] = "provider"

    def __init__(
        self,
        context: ProviderContext,
        *,
        limiter: Limiter | None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self._context = context
        self._limiter = limiter
        self._retry = retry or context.retry
        self._closed = False
        self._waits: set[anyio.CancelScope] = set()

    @property
    def limiter(self) -> Limiter | None:
        """The limiter every call of this provider passes (None when unlimited)."""
        return self._limiter

    @property
    def closed(self) -> bool:
        """True once the provider (or its manager) has been closed."""
        return self._closed

    async def _call(
        self,
        operation: str,
        attempt: Callable[[int], Awaitable[T]],
        *,
        cost: float = 1.0,
    ) -> tuple[T, int, float]:
        """Run `attempt(n)` with limiter, retry, metrics and logging.

        Returns the result, the number of attempts, and the duration in seconds.
        """
        if self._closed:
            raise LifecycleError(
                f"this {self.name} provider is closed; create a new one from an open CommManager"
            )
        started = time.perf_counter()
        try:
            result, attempts = await run_attempts(
                attempt,
                policy=self._retry,
                clock=self._context.clock,
                limiter=self._limiter,
                cost=cost,
            )
        except CommunicationError as exc:
            duration = time.perf_counter() - started
            self._context.metrics.record(
                self.name, operation, duration=duration, success=False, error=type(exc).__name__
            )
            logger.info("%s.%s failed in %.3fs: %s", self.name, operation, duration, exc)
            raise
        except BaseException:
            self._context.metrics.record(
                self.name,
                operation,
                duration=time.perf_counter() - started,
                success=False,
                error="cancelled",
            )
            raise
        duration = time.perf_counter() - started
        self._context.metrics.record(self.name, operation, duration=duration, success=True)
        if logger.isEnabledFor(logging.INFO):
            logger.info(
                "%s.%s ok in %.3fs (%d attempt%s)",
                self.name,
                operation,
                duration,
                attempts,
                "" if attempts == 1 else "s",
            )
        return result, attempts, duration

    @contextlib.contextmanager
    def _until_closed(self) -> Iterator[None]:
        """Wrap a long wait (IDLE, a poll interval, a reconnect backoff) that closing the
        provider must end: when `aclose()` runs meanwhile, the wait is cut short and
        `LifecycleError` is raised in the waiting task."""
        if self._closed:
            raise LifecycleError(f"the {self.name} provider was closed")
        with anyio.CancelScope() as scope:
            self._waits.add(scope)
            try:
                yield
            finally:
                self._waits.discard(scope)
        if scope.cancelled_caught:
            raise LifecycleError(f"the {self.name} provider was closed while waiting")

    async def aclose(self) -> None:
        """Close what this provider opened itself, and end its long waits. Idempotent."""
        self._closed = True
        for scope in list(self._waits):
            scope.cancel()
