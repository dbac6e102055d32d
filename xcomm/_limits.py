"""Rate limiters: platform presets, per-operation costs, and buckets composed by key.

A send passes several buckets at once (its account, its provider, a global one). A
`GlobalRateLimiter` keeps those buckets by name and composes them; a `CompositeLimiter`
acquires every bucket of the composition, in one global order so that no two callers can
hold tokens of each other's buckets while waiting, and gives back what it took if cancelled
halfway.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Self

import anyio

from xcomm._bucket import LimiterStatistics, TokenBucket
from xcomm._bucket_core import _positive
from xcomm._clock import Clock
from xcomm._config import RateLimit
from xcomm._errors import ConfigurationError
from xcomm._presets import PRESETS

__all__ = [
    "CompositeLimiter",
    "GlobalRateLimiter",
    "LimiterStatistics",
    "RateLimiter",
    "TokenBucket",
]


class RateLimiter(TokenBucket):
    """A token bucket that knows its platform and what each operation costs.

    Example:
        ```python
        gmail = RateLimiter.for_platform("gmail")  # 15,000 quota units a minute
        await gmail.acquire_for("messages.send")  # costs 100 units
        ```

    Args:
        rate: tokens added every `per` seconds.
        per: the period, in seconds.
        burst: the most tokens held at once; defaults to `rate`.
        clock: the time source; defaults to the monotonic clock.
        platform: the platform name, for statistics and logs.
        costs: quota cost per operation name; unlisted operations cost 1.0.

    Raises:
        ConfigurationError: a setting or a cost is not a positive number, or a cost exceeds
            `burst`.
    """

    __slots__ = ("costs", "platform")

    def __init__(
        self,
        rate: float,
        per: float = 1.0,
        *,
        burst: float | None = None,
        clock: Clock | None = None,
        platform: str | None = None,
        costs: Mapping[str, float] | None = None,
    ) -> None:
        super().__init__(rate, per, burst=burst, clock=clock)
        name = type(self).__name__
        checked = {
            op: _positive(name, f"costs[{op!r}]", cost) for op, cost in (costs or {}).items()
        }
        too_big = sorted(op for op, cost in checked.items() if cost > self.burst)
        if too_big:
            raise ConfigurationError(
                f"operations {too_big} cost more than the burst of {self.burst:g} and could "
                "never be granted; raise the burst"
            )
        self.platform = platform
        self.costs: Mapping[str, float] = MappingProxyType(checked)

    @classmethod
    def for_platform(cls, name: str, *, clock: Clock | None = None) -> Self:
        """A limiter with the published limit and costs of `name` (see `xcomm.PRESETS`).

        Raises:
            ConfigurationError: `name` is not a known platform; the message lists them.
        """
        preset = PRESETS.get(name.lower()) if isinstance(name, str) else None
        if preset is None:
            raise ConfigurationError(
                f"no rate-limit preset for platform {name!r}; known platforms: "
                f"{', '.join(sorted(PRESETS))}"
            )
        limit = preset.limit
        return cls(
            limit.rate,
            limit.per,
            burst=limit.burst,
            clock=clock,
            platform=preset.name,
            costs=preset.costs,
        )

    def cost_of(self, operation: str) -> float:
        """The quota cost of `operation` (1.0 when the platform does not list it)."""
        return self.costs.get(operation, 1.0)

    async def acquire_for(self, operation: str) -> None:
        """`acquire()` the cost of `operation`."""
        await self.acquire(self.costs.get(operation, 1.0))

    def __repr__(self) -> str:
        text = super().__repr__()
        return text if self.platform is None else f"{text[:-1]} platform={self.platform!r}>"


class CompositeLimiter:
    """Several buckets acquired as one: a call passes only when every bucket allows it.

    Example:
        ```python
        limiter = CompositeLimiter([account_bucket, provider_bucket, global_bucket])
        await limiter.acquire()  # waits for the tightest of the three
        ```

    Buckets are acquired one at a time in their creation order, whatever order they were
    given in, so two composites over the same buckets never wait on each other in a cycle.
    A caller cancelled after taking some buckets gives those tokens back. A bucket given
    twice is acquired once. An empty composite never waits.

    Args:
        buckets: the buckets to acquire together.
    """

    __slots__ = ("_buckets", "_ordered")

    def __init__(self, buckets: Sequence[TokenBucket]) -> None:
        unique = list(dict.fromkeys(buckets))
        for bucket in unique:
            if not isinstance(bucket, TokenBucket):
                raise ConfigurationError(
                    f"CompositeLimiter takes TokenBuckets, got {type(bucket).__name__}"
                )
        self._buckets = tuple(unique)
        self._ordered = tuple(sorted(unique, key=lambda bucket: bucket._seq))

    @property
    def buckets(self) -> tuple[TokenBucket, ...]:
        """The buckets, in the order they were given."""
        return self._buckets

    async def acquire(self, cost: float = 1.0) -> None:
        """Acquire `cost` from every bucket, in the canonical order.

        Raises:
            ValidationError: `cost` is invalid for one of the buckets (nothing is taken).
        """
        ordered = self._ordered
        if len(ordered) == 1:
            await ordered[0].acquire(cost)
            return
        for bucket in ordered:
            bucket._check_cost(cost)
        taken = 0
        try:
            for bucket in ordered:
                await bucket.acquire(cost)
                taken += 1
        except BaseException:
            for bucket in ordered[:taken]:
                bucket.release(cost)
            raise

    def acquire_nowait(self, cost: float = 1.0) -> None:
        """Take `cost` from every bucket now, or from none.

        Raises:
            anyio.WouldBlock: some bucket cannot grant `cost` now.
        """
        if not self.can_proceed(cost):
            raise anyio.WouldBlock
        for bucket in self._ordered:
            bucket.acquire_nowait(cost)

    def release(self, cost: float = 1.0) -> None:
        """Give `cost` back to every bucket."""
        for bucket in self._ordered:
            bucket.release(cost)

    def penalize(self, seconds: float) -> None:
        """Pause every bucket for `seconds` (see `TokenBucket.penalize`)."""
        for bucket in self._ordered:
            bucket.penalize(seconds)

    def can_proceed(self, cost: float = 1.0) -> bool:
        """Whether every bucket could grant `cost` now. Takes nothing."""
        return all(bucket.can_proceed(cost) for bucket in self._ordered)

    def time_until_ready(self, cost: float = 1.0) -> float:
        """Seconds until the slowest bucket could grant `cost` (0.0 if all can now)."""
        return max((bucket.time_until_ready(cost) for bucket in self._ordered), default=0.0)

    def statistics(self) -> tuple[LimiterStatistics, ...]:
        """One snapshot per bucket, in the order the buckets were given."""
        return tuple(bucket.statistics() for bucket in self._buckets)

    def __repr__(self) -> str:
        return f"<CompositeLimiter of {len(self._buckets)} buckets>"


class GlobalRateLimiter:
    """Named buckets, composed per call: per account, per provider and global.

    Example:
        ```python
        limiters = GlobalRateLimiter()
        limiters.add_limiter("twitter", RateLimiter.for_platform("twitter"))
        limiters.get_or_create("global", RateLimit(rate=100))
        await limiters.acquire("twitter", "global")  # limited by the tighter one
        ```

    Args:
        clock: the time source of the buckets `get_or_create()` builds.
    """

    __slots__ = ("_buckets", "_clock")

    def __init__(self, *, clock: Clock | None = None) -> None:
        self._clock = clock
        self._buckets: dict[str, TokenBucket] = {}

    def add_limiter(self, key: str, bucket: TokenBucket) -> TokenBucket:
        """Register `bucket` under `key` and return it.

        Raises:
            ConfigurationError: `key` already names a different bucket (`remove()` it first).
        """
        if not isinstance(bucket, TokenBucket):
            raise ConfigurationError(
                f"add_limiter({key!r}, ...) needs a TokenBucket, got {type(bucket).__name__}"
            )
        existing = self._buckets.setdefault(key, bucket)
        if existing is not bucket:
            raise ConfigurationError(
                f"a limiter is already registered as {key!r}; remove() it before adding another"
            )
        return bucket

    def get(self, key: str) -> TokenBucket | None:
        """The bucket registered as `key`, or None."""
        return self._buckets.get(key)

    def get_or_create(self, key: str, limit: RateLimit) -> TokenBucket:
        """The bucket registered as `key`, created from `limit` if there is none yet.

        The first registration wins: a later call with another limit returns the existing
        bucket unchanged.
        """
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket.from_limit(limit, clock=self._clock)
        return bucket

    def remove(self, key: str) -> TokenBucket | None:
        """Unregister `key`; return its bucket, or None if there was none."""
        return self._buckets.pop(key, None)

    def keys(self) -> tuple[str, ...]:
        """The registered keys, in registration order."""
        return tuple(self._buckets)

    def __contains__(self, key: object) -> bool:
        return key in self._buckets

    def __len__(self) -> int:
        return len(self._buckets)

    def compose(self, *keys: str) -> CompositeLimiter:
        """A limiter that acquires the buckets of all `keys` together.

        Raises:
            ConfigurationError: a key is not registered.
        """
        unknown = [key for key in keys if key not in self._buckets]
        if unknown:
            raise ConfigurationError(
                f"no limiter registered as {', '.join(map(repr, unknown))}; "
                f"registered: {', '.join(map(repr, self._buckets)) or 'none'}"
            )
        return CompositeLimiter([self._buckets[key] for key in keys])

    async def acquire(self, *keys: str, cost: float = 1.0) -> None:
        """Acquire `cost` from every bucket in `keys` (see `CompositeLimiter.acquire`)."""
        await self.compose(*keys).acquire(cost)

    def can_proceed(self, *keys: str, cost: float = 1.0) -> bool:
        """Whether every bucket in `keys` could grant `cost` now. Takes nothing."""
        return self.compose(*keys).can_proceed(cost)

    def time_until_ready(self, *keys: str, cost: float = 1.0) -> float:
        """Seconds until every bucket in `keys` could grant `cost` (the largest wait)."""
        return self.compose(*keys).time_until_ready(cost)

    def statistics(self) -> dict[str, LimiterStatistics]:
        """A snapshot of every registered bucket, by key."""
        return {key: bucket.statistics() for key, bucket in self._buckets.items()}

    def __repr__(self) -> str:
        return f"<GlobalRateLimiter keys={list(self._buckets)}>"
