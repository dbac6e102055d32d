"""Small immutable settings values, shaped like `httpx.Timeout` and `httpx.Limits`.

Each value checks itself when built and raises `ConfigurationError` with a message that says
which setting is wrong and what it accepts.
"""

from __future__ import annotations

import math
import os

import msgspec

from xcomm._errors import ConfigurationError

__all__ = [
    "DEFAULT_LIMITS",
    "DEFAULT_RETRY",
    "DEFAULT_TIMEOUT",
    "Limits",
    "RateLimit",
    "RetryPolicy",
    "Timeout",
    "secret_from_env",
]


def secret_from_env(name: str, what: str, *, hint: str = "") -> str:
    """The secret in environment variable `name` (a password, a signing key): what stored
    settings name instead of holding the secret. Missing or empty: `ConfigurationError`."""
    if not isinstance(name, str) or not name:
        raise ConfigurationError(f"the environment variable for {what} must be a name")
    value = os.environ.get(name)
    if not value:
        raise ConfigurationError(
            f"{what} is read from the environment variable {name}, which is not set{hint}"
        )
    return value


def _check_positive(owner: str, name: str, value: float | None, *, allow_none: bool) -> None:
    if value is None:
        if not allow_none:
            raise ConfigurationError(f"{owner}.{name} must be a number, not None")
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigurationError(f"{owner}.{name} must be a number, got {type(value).__name__}")
    if not math.isfinite(value) or value <= 0:
        raise ConfigurationError(f"{owner}.{name} must be a positive number, got {value!r}")


class Timeout(msgspec.Struct, frozen=True, kw_only=True):
    """Per-phase timeouts in seconds; `None` disables that phase's timeout.

    Example:
        `CommManager(timeout=Timeout(connect=5.0, read=30.0))`, or just `timeout=10.0` for all.
    """

    connect: float | None = 10.0
    read: float | None = 30.0
    write: float | None = 30.0
    pool: float | None = 10.0

    def __post_init__(self) -> None:
        for name in ("connect", "read", "write", "pool"):
            _check_positive("Timeout", name, getattr(self, name), allow_none=True)

    @classmethod
    def coerce(cls, value: Timeout | float | None) -> Timeout:
        """Turn `10.0` into `Timeout(connect=10.0, read=10.0, ...)`; `None` disables all."""
        if isinstance(value, Timeout):
            return value
        if value is None or isinstance(value, int | float):
            v = None if value is None else float(value)
            return cls(connect=v, read=v, write=v, pool=v)
        raise ConfigurationError(
            f"timeout must be a number of seconds, a Timeout or None, got {type(value).__name__}"
        )


class Limits(msgspec.Struct, frozen=True, kw_only=True):
    """Connection limits of the shared HTTP pool (same meaning as `httpx.Limits`)."""

    max_connections: int = 100
    max_keepalive_connections: int = 20
    keepalive_expiry: float = 5.0

    def __post_init__(self) -> None:
        _check_positive("Limits", "max_connections", self.max_connections, allow_none=False)
        _check_positive(
            "Limits", "max_keepalive_connections", self.max_keepalive_connections, allow_none=False
        )
        _check_positive("Limits", "keepalive_expiry", self.keepalive_expiry, allow_none=False)


class RateLimit(msgspec.Struct, frozen=True, kw_only=True):
    """`rate` units per `per` seconds, with up to `burst` units at once.

    `burst` defaults to `rate` (one period's worth). Units are messages for most providers
    and quota units where the provider counts them (Gmail: `messages.send` costs 100).

    Example:
        `RateLimit(rate=100, per=60)` is 100 per minute; `RateLimit(rate=1000, burst=1)` is
        1,000 per second, evenly spaced.
    """

    rate: float
    per: float = 1.0
    burst: float | None = None

    def __post_init__(self) -> None:
        _check_positive("RateLimit", "rate", self.rate, allow_none=False)
        _check_positive("RateLimit", "per", self.per, allow_none=False)
        _check_positive("RateLimit", "burst", self.burst, allow_none=True)

    @property
    def capacity(self) -> float:
        """The effective burst size."""
        return self.rate if self.burst is None else self.burst

    @property
    def per_second(self) -> float:
        """The sustained rate in units per second."""
        return self.rate / self.per

    @classmethod
    def per_minute(cls, rate: float, *, burst: float | None = None) -> RateLimit:
        """`rate` per minute (the unit the seed documents use for campaigns)."""
        return cls(rate=rate, per=60.0, burst=burst)

    @classmethod
    def coerce(
        cls, value: RateLimit | float | None, *, what: str = "rate_limit"
    ) -> RateLimit | None:
        """Accept a `RateLimit`, a number of messages per minute, or `None` (no limit)."""
        if value is None or isinstance(value, RateLimit):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            _check_positive("", what, value, allow_none=False)
            return cls.per_minute(float(value))
        raise ConfigurationError(
            f"{what} must be a RateLimit, a number of messages per minute, or None; "
            f"got {type(value).__name__}"
        )


class RetryPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """How failed attempts are retried: exponential backoff with full jitter.

    Only `RequestNotSent` and transient `ProviderError`s are retried; `DeliveryUnknown` never
    is. A `retry_after` from the provider replaces the backoff for that attempt.

    Example:
        `RetryPolicy(max_attempts=5, backoff=0.5, max_backoff=30.0)`; `RetryPolicy.none()`.
    """

    max_attempts: int = 4
    backoff: float = 0.8
    max_backoff: float = 60.0
    jitter: bool = True
    max_retry_after: float = 300.0

    def __post_init__(self) -> None:
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int):
            raise ConfigurationError("RetryPolicy.max_attempts must be an int")
        if self.max_attempts < 1:
            raise ConfigurationError("RetryPolicy.max_attempts must be at least 1")
        _check_positive("RetryPolicy", "backoff", self.backoff, allow_none=False)
        _check_positive("RetryPolicy", "max_backoff", self.max_backoff, allow_none=False)
        _check_positive("RetryPolicy", "max_retry_after", self.max_retry_after, allow_none=False)

    @classmethod
    def none(cls) -> RetryPolicy:
        """A policy that makes exactly one attempt."""
        return cls(max_attempts=1)


DEFAULT_TIMEOUT = Timeout()
DEFAULT_LIMITS = Limits()
DEFAULT_RETRY = RetryPolicy()
