"""Rate limiter: xcomm's `TokenBucket` against `aiolimiter.AsyncLimiter`, side by side.

Run with `python -m benchmarks.bench_limiter [--seconds 5] [--number 200000]`.

1. Overhead: `await limiter.acquire()` on a bucket so large it never waits, next to awaiting
   an empty coroutine (the floor of any async call). Warm-up, then `REPEATS` rounds of
   `--number` calls, interleaved across implementations; the figure is the median µs/call.
2. Accuracy on the real clock: 1,000 acquisitions a second with a burst of 1 for
   `--seconds`, by one task looping and by 8 concurrent tasks; the figure is the achieved
   rate and its error against 1,000/s.

One JSON line per result, then a short table. The default run takes about 30 seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import Awaitable, Callable

from aiolimiter import AsyncLimiter

from benchmarks._report import metadata
from xcomm._limits import TokenBucket

REPEATS = 5
WARMUP = 20_000
RATE = 1_000.0
TASKS = 8

Acquire = Callable[[], Awaitable[None]]


META = metadata("limiter")


def _emit(**fields: object) -> None:
    print(json.dumps({"bench": "limiter", **fields, **META}))


async def _noop() -> None:
    return None


async def _time_calls(acquire: Acquire, number: int) -> float:
    start = time.perf_counter()
    for _ in range(number):
        await acquire()
    return (time.perf_counter() - start) / number * 1e6


async def overhead(number: int) -> dict[str, float]:
    """Median µs per uncontended `await acquire()`, per implementation."""
    impls: dict[str, Acquire] = {
        "empty coroutine": _noop,
        "xcomm": TokenBucket(1e12, burst=1e12).acquire,
        "aiolimiter": AsyncLimiter(1e12, 1.0).acquire,
    }
    rounds: dict[str, list[float]] = {name: [] for name in impls}
    for acquire in impls.values():
        await _time_calls(acquire, WARMUP)
    for _ in range(REPEATS):
        for name, acquire in impls.items():
            rounds[name].append(await _time_calls(acquire, number))
    result = {}
    for name, values in rounds.items():
        result[name] = median = statistics.median(values)
        _emit(
            case="acquire_overhead",
            impl=name,
            median_us=round(median, 4),
            rounds_us=[round(v, 4) for v in values],
            number=number,
        )
    return result


async def accuracy(impl: str, acquire: Acquire, tasks: int, seconds: float) -> float:
    """Run `tasks` loops of `acquire()` for `seconds`; return the achieved rate per second."""
    count = 0
    deadline = time.monotonic() + seconds

    async def loop() -> None:
        nonlocal count
        while time.monotonic() < deadline:
            await acquire()
            count += 1

    start = time.monotonic()
    await asyncio.gather(*(loop() for _ in range(tasks)))
    achieved = count / (time.monotonic() - start)
    _emit(
        case=f"rate_1000_burst1_{tasks}task",
        impl=impl,
        target_per_s=RATE,
        achieved_per_s=round(achieved, 2),
        error_pct=round((achieved - RATE) / RATE * 100, 3),
        seconds=seconds,
        tasks=tasks,
    )
    return achieved


async def main(seconds: float, number: int) -> None:
    cost = await overhead(number)
    rates: list[tuple[int, float, float]] = []
    for tasks in (1, TASKS):
        ours = await accuracy("xcomm", TokenBucket(RATE, burst=1).acquire, tasks, seconds)
        theirs = await accuracy("aiolimiter", AsyncLimiter(1, 1 / RATE).acquire, tasks, seconds)
        rates.append((tasks, ours, theirs))

    print()
    print(f"{'uncontended acquire':<24} {'µs/call':>9} {'vs xcomm':>9}")
    for name, us in cost.items():
        print(f"{name:<24} {us:>9.3f} {us / cost['xcomm']:>8.2f}x")
    print()
    print(f"{'1,000/s, burst 1':<24} {'xcomm /s':>9} {'error':>7} {'aiolim /s':>10} {'error':>7}")
    for tasks, ours, theirs in rates:
        label = f"{tasks} task{'s' if tasks > 1 else ''}, {seconds:g} s"
        print(
            f"{label:<24} {ours:>9.1f} {(ours - RATE) / RATE:>+7.2%} "
            f"{theirs:>10.1f} {(theirs - RATE) / RATE:>+7.2%}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds per accuracy run")
    parser.add_argument("--number", type=int, default=200_000, help="calls per overhead round")
    args = parser.parse_args()
    asyncio.run(main(args.seconds, args.number))
