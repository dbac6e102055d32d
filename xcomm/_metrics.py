"""Counting what providers do: calls, outcomes and durations, by provider and operation.

Every provider call is recorded automatically; user code records its own work with
`metrics.start_operation(...)`. Durations keep a bounded sample per (provider, operation)
for percentiles, so memory stays constant however long the process runs.
"""

from __future__ import annotations

import time
from collections import defaultdict, deque
from collections.abc import Iterable
from types import TracebackType
from typing import Self

import msgspec

__all__ = ["MetricsCollector", "Operation", "OperationStats"]

_SAMPLE = 4096


class OperationStats(msgspec.Struct, frozen=True, kw_only=True):
    """Counters and duration statistics (seconds) for a set of operations."""

    total: int = 0
    successful: int = 0
    failed: int = 0
    success_rate: float = 0.0
    avg_duration: float = 0.0
    p50_duration: float = 0.0
    p99_duration: float = 0.0
    errors: dict[str, int] = msgspec.field(default_factory=dict)


class _Series:
    __slots__ = ("errors", "failed", "samples", "successful", "total_duration")

    def __init__(self) -> None:
        self.successful = 0
        self.failed = 0
        self.total_duration = 0.0
        self.samples: deque[float] = deque(maxlen=_SAMPLE)
        self.errors: dict[str, int] = defaultdict(int)


def percentile(sorted_values: list[float], q: float) -> float:
    """The `q` quantile (0..1) of already sorted values, nearest rank; 0.0 when empty."""
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


def _summarise(series: Iterable[_Series]) -> OperationStats:
    successful = failed = 0
    total_duration = 0.0
    samples: list[float] = []
    errors: dict[str, int] = defaultdict(int)
    for s in series:
        successful += s.successful
        failed += s.failed
        total_duration += s.total_duration
        samples.extend(s.samples)
        for name, count in s.errors.items():
            errors[name] += count
    total = successful + failed
    samples.sort()
    return OperationStats(
        total=total,
        successful=successful,
        failed=failed,
        success_rate=100.0 * successful / total if total else 0.0,
        avg_duration=total_duration / total if total else 0.0,
        p50_duration=percentile(samples, 0.50),
        p99_duration=percentile(samples, 0.99),
        errors=dict(errors),
    )


class Operation:
    """One timed operation; finish it with `complete()` or use it as a context manager."""

    __slots__ = ("_collector", "_done", "_started", "name", "provider")

    def __init__(self, collector: MetricsCollector, name: str, provider: str) -> None:
        self._collector = collector
        self.name = name
        self.provider = provider
        self._started = time.perf_counter()
        self._done = False

    def complete(self, *, success: bool, error: str | BaseException | None = None) -> None:
        """Record the outcome; later calls are ignored."""
        if self._done:
            return
        self._done = True
        if isinstance(error, BaseException):
            error = type(error).__name__
        self._collector.record(
            self.provider,
            self.name,
            duration=time.perf_counter() - self._started,
            success=success,
            error=error,
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.complete(success=exc is None, error=exc)


class MetricsCollector:
    """Counts, success rates and durations per provider and operation.

    Example:
        ```python
        stats = comm.metrics.get_stats(provider="smtp")
        print(stats.success_rate, stats.p99_duration)
        with comm.metrics.start_operation("nightly_digest", "app"):
            ...
        ```
    """

    def __init__(self) -> None:
        self._series: dict[tuple[str, str], _Series] = {}

    def record(
        self,
        provider: str,
        operation: str,
        *,
        duration: float,
        success: bool,
        error: str | None = None,
    ) -> None:
        """Record one finished operation."""
        series = self._series.get((provider, operation))
        if series is None:
            series = self._series[(provider, operation)] = _Series()
        if success:
            series.successful += 1
        else:
            series.failed += 1
            series.errors[error or "error"] += 1
        series.total_duration += duration
        series.samples.append(duration)

    def start_operation(self, name: str, provider: str = "app") -> Operation:
        """Start timing an operation of your own; call `.complete(success=...)` when done."""
        return Operation(self, name, provider)

    def get_stats(
        self, provider: str | None = None, operation: str | None = None
    ) -> OperationStats:
        """Statistics over everything recorded, or one provider and/or operation."""
        return _summarise(
            s
            for (p, op), s in self._series.items()
            if (provider is None or p == provider) and (operation is None or op == operation)
        )

    def get_operation_breakdown(self) -> dict[str, OperationStats]:
        """Statistics per `"provider.operation"`."""
        return {f"{p}.{op}": _summarise([s]) for (p, op), s in sorted(self._series.items())}

    def providers(self) -> list[str]:
        """Providers that have recorded anything, sorted."""
        return sorted({p for p, _ in self._series})

    def reset(self) -> None:
        """Forget everything recorded."""
        self._series.clear()
