"""How a campaign's outcomes reach the outbox: in batches written beside the sends, with at
most two buffers of them unwritten at any time (what a crash can leave to resend or doubt)."""

from __future__ import annotations

from collections.abc import Sequence

import anyio

from xcomm.bulk._run import _FLUSH_SIZE, _Completions
from xcomm.outbox import Completion, OutboxStatus


class GatedStore:
    """The part of an outbox `_Completions` uses: each write waits until the test opens it."""

    def __init__(self) -> None:
        self.written: list[list[str]] = []
        self.gate = anyio.Event()
        self.writing = 0

    async def finish(self, completions: Sequence[Completion], /, *, owner: str, now: float) -> int:
        self.writing += 1
        await self.gate.wait()
        self.gate = anyio.Event()  # the next write waits for the next opening
        self.writing -= 1
        self.written.append([c.key for c in completions])
        return len(completions)


def done(n: int) -> Completion:
    return Completion(key=f"k{n}", status=OutboxStatus.SENT)


async def test_a_worker_waits_only_while_two_buffers_are_unwritten() -> None:
    store = GatedStore()
    completions = _Completions(store, "me")  # type: ignore[arg-type]
    async with anyio.create_task_group() as tg:
        completions.background = tg
        for n in range(_FLUSH_SIZE):  # a full buffer: written in the background
            await completions.add(done(n))
        await anyio.sleep(0.01)
        assert store.writing == 1
        for n in range(_FLUSH_SIZE, 2 * _FLUSH_SIZE - 1):  # the next buffer fills meanwhile
            with anyio.fail_after(1):
                await completions.add(done(n))
        blocked = anyio.Event()

        async def last() -> None:
            await completions.add(done(2 * _FLUSH_SIZE - 1))  # two buffers unwritten: waits
            blocked.set()

        tg.start_soon(last)
        await anyio.sleep(0.05)
        assert not blocked.is_set() and store.written == []
        store.gate.set()  # the first write ends: the worker goes on, the second is written
        with anyio.fail_after(1):
            await blocked.wait()
        await anyio.sleep(0.01)
        assert store.written == [[f"k{n}" for n in range(_FLUSH_SIZE)]]
        assert store.writing == 1  # the second buffer, in the background
        store.gate.set()
        completions.background = None
    assert store.written[1] == [f"k{n}" for n in range(_FLUSH_SIZE, 2 * _FLUSH_SIZE)]
    await completions.flush()  # nothing left
    assert len(store.written) == 2
