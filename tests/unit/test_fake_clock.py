"""FakeClock: virtual time that moves only when the test says so (or autojumps when idle)."""

from __future__ import annotations

import asyncio
import contextvars
import re

import pytest

import xcomm.testing
from xcomm._clock import Clock
from xcomm.testing._clock import FakeClock

EXACT = 1e-9


def test_it_is_a_clock() -> None:
    clock: Clock = FakeClock(start=100.0)
    assert clock.now() == 100.0
    assert "now=100" in repr(clock)


async def test_sleep_wakes_exactly_at_its_deadline() -> None:
    clock = FakeClock()
    sleeper = asyncio.create_task(clock.sleep(5.0))
    await asyncio.sleep(0)
    await clock.advance(4.9)
    assert not sleeper.done()
    await clock.advance(0.1)
    assert sleeper.done()
    assert clock.now() == pytest.approx(5.0, abs=EXACT)
    await sleeper


async def test_sleep_zero_only_yields() -> None:
    clock = FakeClock()
    await clock.sleep(0)
    await clock.sleep(-1)
    assert clock.timers_pending == 0
    assert clock.now() == 0.0


async def test_call_at_fires_in_deadline_order_including_timers_set_inside_the_window() -> None:
    clock = FakeClock()
    fired: list[tuple[str, float]] = []

    def record(name: str) -> None:
        fired.append((name, clock.now()))
        if name == "first":  # scheduled at 1.0 for 1.5: still inside advance(2.0)
            clock.call_at(1.5, lambda: record("nested"))

    clock.call_at(2.0, lambda: record("last"))
    clock.call_at(1.0, lambda: record("first"))
    clock.call_at(3.0, lambda: record("later"))
    await clock.advance(2.0)
    assert fired == [("first", 1.0), ("nested", 1.5), ("last", 2.0)]
    assert clock.now() == 2.0
    assert clock.timers_pending == 1


async def test_woken_tasks_run_before_the_next_deadline() -> None:
    clock = FakeClock()
    woke: list[float] = []

    async def chain() -> None:
        for _ in range(3):
            await clock.sleep(1.0)
            woke.append(clock.now())

    task = asyncio.create_task(chain())
    await asyncio.sleep(0)
    await clock.advance(3.0)
    assert woke == [1.0, 2.0, 3.0]
    await task


async def test_cancelled_timers_and_sleepers_never_fire() -> None:
    clock = FakeClock()
    fired: list[str] = []
    handle = clock.call_at(1.0, lambda: fired.append("timer"))
    sleeper = asyncio.create_task(clock.sleep(1.0))
    await asyncio.sleep(0)
    assert clock.timers_pending == 2
    handle.cancel()
    sleeper.cancel()
    with pytest.raises(asyncio.CancelledError):
        await sleeper
    assert clock.timers_pending == 0
    await clock.advance(5.0)
    assert fired == []


async def test_callbacks_run_in_the_context_they_were_scheduled_from() -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    clock = FakeClock()
    seen: list[str] = []
    var.set("scheduled")
    clock.call_at(1.0, lambda: seen.append(var.get()))
    var.set("changed")
    await clock.advance(1.0)
    assert seen == ["scheduled"]


async def test_advance_rejects_negative_time() -> None:
    with pytest.raises(ValueError, match="seconds >= 0"):
        await FakeClock().advance(-1.0)


async def test_autojump_block_skips_idle_time_and_leaves_no_task_behind() -> None:
    clock = FakeClock()
    async with clock.autojump():
        await clock.sleep(3600.0)
        await asyncio.gather(clock.sleep(10.0), clock.sleep(20.0))
    assert clock.now() == pytest.approx(3620.0, abs=EXACT)
    others = asyncio.all_tasks() - {asyncio.current_task()}
    assert not [task for task in others if not task.done()]


async def test_autojump_waits_for_running_tasks_before_jumping() -> None:
    clock = FakeClock(autojump=True)
    steps: list[float] = []

    async def busy() -> None:
        for _ in range(50):  # runnable the whole time: the clock must not jump meanwhile
            steps.append(clock.now())
            await asyncio.sleep(0)

    await asyncio.gather(busy(), clock.sleep(1.0))
    assert steps == [0.0] * 50
    assert clock.now() == 1.0


async def test_autojump_constructor_mode_driver_stops_when_nothing_is_pending() -> None:
    clock = FakeClock(autojump=True)
    await clock.sleep(2.5)
    assert clock.now() == 2.5
    await asyncio.sleep(0)
    others = asyncio.all_tasks() - {asyncio.current_task()}
    assert not [task for task in others if not task.done()]


def test_the_docstring_example_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    # the example imports the public name; it resolves whether or not it is re-exported yet
    monkeypatch.setattr(xcomm.testing, "FakeClock", FakeClock, raising=False)
    doc = FakeClock.__doc__ or ""
    match = re.search(r"```python\n(.*?)```", doc, re.S)
    assert match is not None
    code = "\n".join(line[8:] for line in match.group(1).splitlines())
    exec(compile(code, "FakeClock example", "exec"), {"__name__": "example"})
