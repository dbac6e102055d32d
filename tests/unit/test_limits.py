"""Token buckets, presets and composed limiters, on virtual time with exact expectations."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import anyio
import pytest

from xcomm import (
    PRESETS,
    CompositeLimiter,
    ConfigurationError,
    GlobalRateLimiter,
    LimiterStatistics,
    RateLimit,
    RateLimiter,
    TokenBucket,
    ValidationError,
)
from xcomm._clock import TimerHandle
from xcomm._retry import Limiter
from xcomm.testing._clock import FakeClock

EXACT = 1e-9


def approx(value: object) -> object:
    return pytest.approx(value, abs=EXACT)


async def grant_times(
    clock: FakeClock, acquire: Callable[[float], Awaitable[None]], costs: list[float]
) -> list[float]:
    """Start one task per cost, in order; return the virtual time each was granted."""
    times = [-1.0] * len(costs)

    async def one(index: int, cost: float) -> None:
        await acquire(cost)
        times[index] = clock.now()

    async with clock.autojump():
        await asyncio.gather(*(one(i, cost) for i, cost in enumerate(costs)))
    return times


async def started(*coros: Coroutine[Any, Any, None]) -> list[asyncio.Task[None]]:
    """Start tasks and let each run up to its first wait."""
    tasks = [asyncio.create_task(coro) for coro in coros]
    await asyncio.sleep(0)
    return tasks


# -- rate, burst and weights -----------------------------------------------------------------


async def test_25_acquires_at_10_per_second_with_burst_5_take_exactly_2_seconds() -> None:
    clock = FakeClock()
    bucket = TokenBucket(10, burst=5, clock=clock)
    async with clock.autojump():
        for _ in range(25):
            await bucket.acquire()
    assert clock.now() == approx(2.0)


async def test_burst_is_granted_at_once_then_the_steady_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(10, burst=5, clock=clock)
    times = await grant_times(clock, bucket.acquire, [1.0] * 8)
    assert times == approx([0.0] * 5 + [0.1, 0.2, 0.3])


async def test_weighted_gmail_sends_cost_100_units_each() -> None:
    clock = FakeClock()
    gmail = RateLimiter.for_platform("gmail", clock=clock)  # 250 units/s, burst 1,500
    times = await grant_times(clock, gmail.acquire, [gmail.cost_of("messages.send")] * 18)
    assert times == approx([0.0] * 15 + [0.4, 0.8, 1.2])
    assert gmail.statistics().acquired == 18


async def test_acquire_for_charges_the_operation_cost() -> None:
    clock = FakeClock()
    gmail = RateLimiter.for_platform("gmail", clock=clock)
    await gmail.acquire_for("messages.send")
    await gmail.acquire_for("labels.list")
    await gmail.acquire_for("not.listed")  # unknown operations cost 1
    assert gmail.statistics().tokens == approx(1500 - 100 - 1 - 1)


async def test_fifo_a_large_request_at_the_head_is_not_overtaken() -> None:
    clock = FakeClock()
    bucket = TokenBucket(10, burst=10, clock=clock)
    bucket.acquire_nowait(10)
    times = await grant_times(clock, bucket.acquire, [1, 8, 1, 1])
    # without FIFO the two small ones behind the 8 would go at 0.2 and 0.3
    assert times == approx([0.1, 0.9, 1.0, 1.1])


async def test_a_newcomer_queues_behind_waiters_even_when_tokens_are_there() -> None:
    clock = FakeClock()
    bucket = TokenBucket(10, burst=10, clock=clock)
    bucket.acquire_nowait(10)
    [big] = await started(bucket.acquire(8))
    await clock.advance(0.5)  # 5 tokens: enough for 1, not for the 8 queued first
    assert bucket.statistics().tokens == approx(5.0)
    assert not bucket.can_proceed(1)
    assert not bucket.try_acquire(1)
    with pytest.raises(anyio.WouldBlock):
        bucket.acquire_nowait(1)
    assert bucket.time_until_ready(1) == approx(0.4)  # 8 + 1 needed, 5 there
    await clock.advance(0.3)
    assert big.done()
    await big


@pytest.mark.parametrize(("rate", "per", "cost"), [(3, 7, 1.0), (0.7, 1.3, 0.3), (10, 3, 0.7)])
async def test_fractional_rates_finish_at_the_exact_time(
    rate: float, per: float, cost: float
) -> None:
    # the float-livelock regression: (t2 - t1) * rate comes out a hair short of the cost
    clock = FakeClock()
    bucket = TokenBucket(rate, per, clock=clock)
    async with asyncio.timeout(10), clock.autojump():  # a livelock spins in loop callbacks,
        for _ in range(50):  # where pytest-timeout's signal cannot stop it
            await bucket.acquire(cost)
    assert clock.now() == approx((50 * cost - bucket.burst) / (rate / per))


class LateClock(FakeClock):
    """A busy event loop: every timer wakes `lateness` seconds after its deadline."""

    def __init__(self, lateness: float) -> None:
        super().__init__()
        self.lateness = lateness

    def call_at(self, when: float, callback: Callable[[], None]) -> TimerHandle:
        return super().call_at(when + self.lateness, callback)


async def test_catch_up_credits_late_timers_to_the_queue() -> None:
    clock = LateClock(0.03)
    bucket = TokenBucket(10, burst=1, clock=clock)
    async with clock.autojump():
        for _ in range(21):  # one task looping: 2.6 s if every lateness were lost
            await bucket.acquire()
    assert clock.now() == approx(2.03)

    clock = LateClock(0.03)
    bucket = TokenBucket(10, burst=1, clock=clock)
    times = await grant_times(clock, bucket.acquire, [1.0] * 40)
    assert max(times) == approx(3.93)
    assert bucket.statistics().tokens <= 1.0


async def test_a_caller_looping_back_still_counts_as_queued() -> None:
    # a wake-up 2.5 tokens late: the credit above the burst of 1 goes to the caller that
    # comes straight back, instead of being capped away when the queue empties
    clock = LateClock(0.25)
    bucket = TokenBucket(10, burst=1, clock=clock)
    times = []
    async with clock.autojump():
        for _ in range(21):
            await bucket.acquire()
            times.append(clock.now())
    assert times[:7] == approx([0.0, 0.35, 0.35, 0.35, 0.65, 0.65, 0.65])
    assert clock.now() == approx(2.15)
    await clock.advance(10.0)
    assert bucket.statistics().tokens == 1.0  # the cap is back once nobody is waiting


# -- cancellation ----------------------------------------------------------------------------


@pytest.mark.parametrize("victim", [0, 1])
async def test_a_cancelled_waiter_leaves_the_queue(victim: int) -> None:
    clock = FakeClock()
    bucket = TokenBucket(10, burst=1, clock=clock)
    await bucket.acquire()
    tasks = await started(*(bucket.acquire() for _ in range(3)))
    assert bucket.statistics().tasks_waiting == 3
    await clock.advance(0.05)
    tasks[victim].cancel()
    with pytest.raises(asyncio.CancelledError):
        await tasks[victim]
    granted: list[float] = []
    for task in tasks:
        if not task.done():
            task.add_done_callback(lambda _: granted.append(clock.now()))
    await clock.advance(1.0)
    assert granted == approx([0.1, 0.2])  # the other two, on schedule
    stats = bucket.statistics()
    assert (stats.acquired, stats.tasks_waiting) == (3, 0)
    assert stats.tokens == approx(1.0)  # back to the burst, nothing more: none over-granted
    bucket.acquire_nowait()
    assert not bucket.try_acquire()
    await asyncio.gather(*(t for i, t in enumerate(tasks) if i != victim))


async def test_cancelling_a_large_head_lets_the_small_ones_behind_it_go_sooner() -> None:
    clock = FakeClock()
    bucket = TokenBucket(10, burst=10, clock=clock)
    bucket.acquire_nowait(10)
    big, small1, small2 = await started(bucket.acquire(5), bucket.acquire(1), bucket.acquire(1))
    await clock.advance(0.05)
    big.cancel()
    await asyncio.sleep(0)
    await clock.advance(0.05)
    assert small1.done() and not small2.done()
    await clock.advance(0.1)
    assert small2.done()
    assert clock.timers_pending == 0
    await asyncio.gather(small1, small2, return_exceptions=True)
    assert big.cancelled()


async def test_a_waiter_cancelled_after_its_grant_gives_the_tokens_back() -> None:
    clock = FakeClock()
    bucket = TokenBucket(1, burst=1, clock=clock)
    await bucket.acquire()
    first, second = await started(bucket.acquire(), bucket.acquire())
    bucket.release(1)  # grants `first` right now; its task has not resumed yet
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    await second  # got the token `first` gave back, at once
    assert clock.now() == 0.0
    stats = bucket.statistics()
    assert (stats.acquired, stats.tokens, stats.tasks_waiting) == (2, approx(0.0), 0)


# -- penalize --------------------------------------------------------------------------------


async def test_penalize_blocks_everyone_then_resumes_at_rate_without_a_burst() -> None:
    clock = FakeClock()
    bucket = TokenBucket(10, burst=5, clock=clock)
    bucket.penalize(3.0)
    assert not bucket.can_proceed()
    assert bucket.time_until_ready() == approx(3.0)
    assert bucket.time_until_ready(2) == approx(3.0)
    assert bucket.statistics().paused_until == approx(3.0)
    times = await grant_times(clock, bucket.acquire, [1.0] * 5)
    assert times == approx([3.0, 3.1, 3.2, 3.3, 3.4])
    assert bucket.statistics().paused_until is None


async def test_penalize_applies_to_callers_arriving_during_and_after_the_pause() -> None:
    clock = FakeClock()
    bucket = TokenBucket(10, burst=5, clock=clock)
    bucket.penalize(1.0)
    await clock.advance(2.0)  # nobody came during the pause: refill starts at its end
    assert bucket.statistics().tokens == approx(5.0)
    times = await grant_times(clock, bucket.acquire, [1.0] * 6)
    assert times == approx([2.0] * 5 + [2.1])


async def test_penalize_extends_and_never_shortens() -> None:
    clock = FakeClock()
    bucket = TokenBucket(10, clock=clock)
    bucket.penalize(5.0)
    bucket.penalize(2.0)
    assert bucket.time_until_ready() == approx(5.0)
    await clock.advance(1.0)
    bucket.penalize(6.0)  # until 7.0
    bucket.penalize(0)  # Retry-After: 0 changes nothing
    times = await grant_times(clock, bucket.acquire, [1.0, 1.0])
    assert times == approx([7.0, 7.1])


async def test_penalize_rejects_non_numbers() -> None:
    bucket = TokenBucket(10)
    with pytest.raises(ValidationError, match="finite"):
        bucket.penalize(float("inf"))
    with pytest.raises(ValidationError, match="number"):
        bucket.penalize("5")  # type: ignore[arg-type]


# -- non-blocking API, statistics, validation --------------------------------------------------


async def test_nowait_api_and_time_until_ready() -> None:
    clock = FakeClock()
    bucket = TokenBucket(2, burst=2, clock=clock)
    assert bucket.can_proceed(2) and bucket.time_until_ready(2) == 0.0
    assert bucket.try_acquire() and bucket.try_acquire()
    assert not bucket.try_acquire()
    with pytest.raises(anyio.WouldBlock):
        bucket.acquire_nowait()
    assert bucket.time_until_ready() == approx(0.5)
    assert bucket.time_until_ready(2) == approx(1.0)
    await clock.advance(0.25)
    assert bucket.time_until_ready() == approx(0.25)
    assert bucket.statistics().tokens == approx(0.5)
    await clock.advance(0.25)
    bucket.acquire_nowait()
    assert bucket.statistics().acquired == 3


async def test_release_gives_tokens_back_up_to_the_burst() -> None:
    bucket = TokenBucket(1, burst=3, clock=FakeClock())
    bucket.acquire_nowait(2)
    bucket.release(5)
    assert bucket.statistics().tokens == 3.0
    with pytest.raises(ValidationError):
        bucket.release(0)


async def test_statistics_and_repr() -> None:
    clock = FakeClock()
    bucket = TokenBucket(10, burst=1, clock=clock)
    tasks = await started(*(bucket.acquire() for _ in range(3)))
    stats = bucket.statistics()
    assert isinstance(stats, LimiterStatistics)
    assert (stats.rate, stats.per, stats.burst, stats.acquired, stats.tasks_waiting) == (
        10.0,
        1.0,
        1.0,
        1,
        2,
    )
    assert "waiting=2" in repr(bucket) and len(repr(bucket)) < 100
    await clock.advance(0.2)
    await asyncio.gather(*tasks)
    stats = bucket.statistics()
    assert (stats.acquired, stats.tasks_waiting) == (3, 0)
    assert stats.total_wait == approx(0.1 + 0.2)
    assert stats.paused_until is None


async def test_set_rate_retimes_queued_callers() -> None:
    clock = FakeClock()
    bucket = TokenBucket(1, burst=1, clock=clock)
    await bucket.acquire()
    [task] = await started(bucket.acquire())
    await clock.advance(0.5)  # half a token so far
    bucket.set_rate(10)  # the other half now takes 0.05 s
    await clock.advance(0.05)
    assert task.done()
    await task
    assert bucket.statistics().rate == 10.0


@pytest.mark.parametrize("cost", [0, -1, float("nan"), float("inf"), 6])
async def test_bad_costs_raise_validation_errors(cost: float) -> None:
    bucket = TokenBucket(10, burst=5, clock=FakeClock())
    with pytest.raises(ValidationError, match="cost"):
        await bucket.acquire(cost)
    with pytest.raises(ValidationError, match="cost"):
        bucket.acquire_nowait(cost)


async def test_a_cost_above_the_burst_says_why() -> None:
    bucket = TokenBucket(10, burst=5)
    with pytest.raises(ValidationError, match=r"exceeds this bucket's burst of 5.*never"):
        await bucket.acquire(6)


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((0,), {}, "TokenBucket.rate must be a positive number"),
        ((10, 0), {}, "TokenBucket.per must be a positive number"),
        ((10,), {"burst": -1}, "TokenBucket.burst must be a positive number"),
        (("10",), {}, "TokenBucket.rate must be a number"),
        ((float("inf"),), {}, "TokenBucket.rate must be a positive number"),
    ],
)
def test_bad_settings_raise_configuration_errors(
    args: tuple[object, ...], kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        TokenBucket(*args, **kwargs)  # type: ignore[arg-type]


def test_from_limit() -> None:
    bucket = TokenBucket.from_limit(RateLimit(rate=100, per=60.0, burst=10))
    stats = bucket.statistics()
    assert (stats.rate, stats.per, stats.burst) == (100.0, 60.0, 10.0)


async def test_real_clock_short_burst_completes() -> None:
    bucket = TokenBucket(1000, burst=5)
    async with asyncio.timeout(10):  # a hang guard, not a timing assertion
        await asyncio.gather(*(bucket.acquire() for _ in range(20)))
    assert bucket.statistics().acquired == 20


# -- presets ---------------------------------------------------------------------------------


def test_presets_encode_the_published_limits() -> None:
    def limit(name: str) -> tuple[float, float]:
        return (PRESETS[name].limit.rate, PRESETS[name].limit.per)

    assert limit("gmail") == (15_000, 60.0)
    assert PRESETS["gmail"].costs["messages.send"] == 100
    assert PRESETS["gmail"].costs["history.list"] == 2
    assert limit("graph") == (10_000, 600.0)
    assert limit("exchange") == (30, 60.0)
    assert PRESETS["twilio"].limit.per_second == 1.0
    assert PRESETS["discord"].limit.per_second == 50.0
    assert PRESETS["teams"].limit.per_second == 4.0
    assert limit("azure_sms") == (200, 60.0)
    assert limit("twitter") == (300, 900.0)
    assert [limit(f"slack_tier{n}")[0] for n in (1, 2, 3, 4)] == [1, 20, 50, 100]
    assert PRESETS["email"].limit == PRESETS["smtp"].limit
    for name, preset in PRESETS.items():
        assert preset.name == name and preset.note
        assert all(cost <= preset.limit.capacity for cost in preset.costs.values())


def test_for_platform_builds_the_preset_and_rejects_unknown_names() -> None:
    twilio = RateLimiter.for_platform("Twilio")
    assert (twilio.platform, twilio.statistics().rate) == ("twilio", 1.0)
    assert twilio.cost_of("anything") == 1.0
    assert "platform='twilio'" in repr(twilio)
    with pytest.raises(ConfigurationError, match=r"'myspace'.*known platforms: azure_sms"):
        RateLimiter.for_platform("myspace")


def test_rate_limiter_validates_its_costs() -> None:
    with pytest.raises(ConfigurationError, match="more than the burst"):
        RateLimiter(10, costs={"huge": 11})
    with pytest.raises(ConfigurationError, match=r"costs\['bad'\]"):
        RateLimiter(10, costs={"bad": -1})


# -- composition -----------------------------------------------------------------------------


async def test_a_call_is_limited_by_the_tightest_of_account_provider_and_global() -> None:
    clock = FakeClock()
    limiters = GlobalRateLimiter(clock=clock)
    limiters.get_or_create("account", RateLimit(rate=5, burst=1))
    limiters.get_or_create("provider", RateLimit(rate=10, burst=1))
    limiters.get_or_create("global", RateLimit(rate=100, burst=1))
    keys = ("account", "provider", "global")
    times = await grant_times(clock, lambda cost: limiters.acquire(*keys, cost=cost), [1.0] * 4)
    assert times == approx([0.0, 0.2, 0.4, 0.6])
    assert not limiters.can_proceed(*keys)
    assert limiters.time_until_ready(*keys) == approx(0.2)
    assert limiters.time_until_ready("global") == approx(0.01)
    assert {key: s.acquired for key, s in limiters.statistics().items()} == dict.fromkeys(keys, 4)


async def test_opposite_key_orders_do_not_deadlock() -> None:
    clock = FakeClock()
    limiters = GlobalRateLimiter(clock=clock)
    limiters.get_or_create("a", RateLimit(rate=10, burst=1))
    limiters.get_or_create("b", RateLimit(rate=10, burst=1))

    async def worker(*keys: str) -> None:
        for _ in range(10):
            await limiters.acquire(*keys)

    async with asyncio.timeout(10), clock.autojump():
        await asyncio.gather(worker("a", "b"), worker("b", "a"))
    assert clock.now() == approx(1.9)


async def test_cancelled_midway_gives_back_the_buckets_already_taken() -> None:
    clock = FakeClock()
    limiters = GlobalRateLimiter(clock=clock)
    fast = limiters.get_or_create("fast", RateLimit(rate=10, burst=1))
    slow = limiters.get_or_create("slow", RateLimit(rate=1, burst=1))
    slow.acquire_nowait()
    [task] = await started(limiters.acquire("slow", "fast"))  # canonical order: fast, slow
    assert not fast.can_proceed()
    assert slow.statistics().tasks_waiting == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert fast.can_proceed()
    assert fast.statistics().tokens == approx(1.0)
    assert slow.statistics().tasks_waiting == 0


async def test_composite_limiter_is_a_limiter() -> None:
    clock = FakeClock()
    a = TokenBucket(10, burst=2, clock=clock)
    b = TokenBucket(5, burst=1, clock=clock)
    composite: Limiter = CompositeLimiter([b, a, b])  # duplicates are acquired once
    await composite.acquire()
    composite.penalize(2.0)
    assert a.statistics().paused_until == b.statistics().paused_until == approx(2.0)
    assert isinstance(composite, CompositeLimiter)
    assert composite.buckets == (b, a)
    assert composite.time_until_ready() == approx(2.0)
    assert not composite.can_proceed()
    with pytest.raises(ValidationError):  # b's burst is 1: nothing is taken from a
        await composite.acquire(2)
    assert len(composite.statistics()) == 2
    await CompositeLimiter([]).acquire()  # nothing to wait for


async def test_global_registry_bookkeeping() -> None:
    limiters = GlobalRateLimiter()
    twitter = limiters.add_limiter("twitter", RateLimiter.for_platform("twitter"))
    assert limiters.get("twitter") is twitter and "twitter" in limiters
    assert limiters.add_limiter("twitter", twitter) is twitter  # same bucket: fine
    with pytest.raises(ConfigurationError, match="already registered"):
        limiters.add_limiter("twitter", TokenBucket(1))
    first = limiters.get_or_create("smtp", RateLimit(rate=10))
    assert limiters.get_or_create("smtp", RateLimit(rate=99)) is first
    assert limiters.keys() == ("twitter", "smtp") and len(limiters) == 2
    with pytest.raises(ConfigurationError, match=r"'nope'.*registered: 'twitter', 'smtp'"):
        limiters.compose("smtp", "nope")
    assert limiters.can_proceed("twitter")
    assert limiters.remove("twitter") is twitter
    assert limiters.get("twitter") is None and limiters.remove("twitter") is None


def test_presets_carry_the_published_daily_caps() -> None:
    caps = {name: preset.daily_cap for name, preset in PRESETS.items() if preset.daily_cap}
    assert caps == {
        "gmail": 2_000,
        "gmail_trial": 500,
        "gmail_consumer": 500,
        "graph": 10_000,
        "exchange": 10_000,
        "ses": 200,
    }
    for name in caps:
        assert PRESETS[name].daily_cap_note, f"{name}: a daily cap needs its source"
    assert "UNVERIFIED" in PRESETS["gmail_consumer"].daily_cap_note
    assert "GetSendQuota" in PRESETS["ses"].daily_cap_note
    assert PRESETS["smtp"].daily_cap is None  # no common figure for SMTP servers
    # The per-minute limit stays what it was; for_platform builds the same bucket.
    assert RateLimiter.for_platform("gmail_consumer").costs == PRESETS["gmail"].costs
