"""`hold()`: a request that the server runs as several holds several places of a bound."""

from __future__ import annotations

import anyio

from xcomm._http import hold


async def test_hold_takes_the_places_asked_for_at_most_all() -> None:
    bound = anyio.CapacityLimiter(4)
    async with hold(bound, 3):
        assert bound.borrowed_tokens == 3
    async with hold(bound, 20):
        assert bound.borrowed_tokens == 4
    assert bound.borrowed_tokens == 0


async def test_several_takers_never_pass_the_bound_nor_wait_on_each_other() -> None:
    bound = anyio.CapacityLimiter(4)
    peak = 0
    done = 0

    async def take(slots: int) -> None:
        nonlocal peak, done
        async with hold(bound, slots):
            peak = max(peak, int(bound.borrowed_tokens))
            await anyio.sleep(0.001)
        done += 1

    async def single() -> None:
        nonlocal peak, done
        async with bound:
            peak = max(peak, int(bound.borrowed_tokens))
            await anyio.sleep(0.001)
        done += 1

    with anyio.fail_after(5):
        async with anyio.create_task_group() as group:
            for slots in (3, 3, 4, 2, 3):
                group.start_soon(take, slots)
            for _ in range(6):
                group.start_soon(single)
    assert done == 11 and peak <= 4
    assert bound.borrowed_tokens == 0


async def test_a_cancelled_taker_gives_back_what_it_took() -> None:
    bound = anyio.CapacityLimiter(4)
    async with bound:  # one place is busy: a taker of 4 waits with 3 taken
        with anyio.move_on_after(0.01):
            async with hold(bound, 4):
                raise AssertionError("cannot get all four")
        assert bound.borrowed_tokens == 1
