"""SQLiteOutbox across processes: several workers drain one file, and a sender killed mid-claim.

The workers are `multiprocessing` processes started with the spawn context (as on macOS and
Windows): each opens its own `SQLiteOutbox` on the shared file.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import signal
import sqlite3
import sys
import time
from collections.abc import Sequence
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Barrier, Event
from pathlib import Path

import pytest

from xcomm.outbox import (
    Completion,
    DeliveryPolicy,
    OutboxRecord,
    OutboxStatus,
    SQLiteOutbox,
    record_key,
)

SPAWN = multiprocessing.get_context("spawn")
RECORDS = 5_000
WORKERS = 4
T0 = 1_700_000_000.0
LEASE = 60.0


def keys_of(campaign: str, count: int) -> list[str]:
    return [record_key(campaign, f"user{n}@example.com") for n in range(count)]


async def seed(path: Path, campaign: str, count: int) -> None:
    records = [
        OutboxRecord(key=key, campaign_id=campaign, recipient=f"user{n}@example.com")
        for n, key in enumerate(keys_of(campaign, count))
    ]
    async with SQLiteOutbox(path) as store:
        assert await store.add(records) == count


async def join(processes: Sequence[BaseProcess], within: float) -> None:
    """Wait for the processes without blocking the loop; kill what is still running."""
    deadline = time.monotonic() + within
    try:
        for process in processes:
            await asyncio.to_thread(process.join, max(0.0, deadline - time.monotonic()))
    finally:
        for process in processes:
            if process.is_alive():
                process.kill()
                process.join()


# -- several workers, one file --------------------------------------------------------------


def drain(path: str, owner: str, start: Barrier, out: str) -> None:
    """A worker process: claim_due + finish until nothing is left; write down what it claimed."""
    Path(out).write_text(json.dumps(asyncio.run(_drain(path, owner, start))))


async def _drain(path: str, owner: str, start: Barrier) -> dict[str, object]:
    claimed: list[str] = []
    finished = 0
    async with SQLiteOutbox(path) as store:
        await asyncio.to_thread(start.wait, 30)  # everybody open, then go at once
        while batch := await store.claim_due(owner=owner, now=time.time(), lease=LEASE, limit=25):
            claimed += [record.key for record in batch]
            done = [Completion(key=r.key, status=OutboxStatus.SENT) for r in batch]
            finished += await store.finish(done, owner=owner, now=time.time())
    return {"claimed": claimed, "finished": finished}


async def test_worker_processes_never_claim_a_record_twice(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    await seed(path, "c", RECORDS)
    start = SPAWN.Barrier(WORKERS)
    outs = [tmp_path / f"worker-{n}.json" for n in range(WORKERS)]
    workers = [
        SPAWN.Process(target=drain, args=(str(path), f"worker-{n}", start, str(out)))
        for n, out in enumerate(outs)
    ]
    for worker in workers:
        worker.start()
    await join(workers, within=60)
    assert [w.exitcode for w in workers] == [0] * WORKERS

    results = [json.loads(out.read_text()) for out in outs]
    claimed = [set(result["claimed"]) for result in results]
    assert sum(len(result["claimed"]) for result in results) == RECORDS  # none twice ...
    assert set().union(*claimed) == set(keys_of("c", RECORDS))  # ... and none missed
    for i, mine in enumerate(claimed):
        for theirs in claimed[i + 1 :]:
            assert not mine & theirs
    assert sum(result["finished"] for result in results) == RECORDS
    assert sum(1 for keys in claimed if keys) >= 2, "the workers did not run concurrently"
    async with SQLiteOutbox(path) as store:
        assert (await store.counts("c"))[OutboxStatus.SENT] == RECORDS


# -- a sender killed while it holds leases --------------------------------------------------


def claim_until_killed(path: str, claimed: Event) -> None:
    """A sender that claims batch after batch, never finishes, and waits to be SIGKILLed."""
    asyncio.run(_claim_until_killed(path, claimed))


async def _claim_until_killed(path: str, claimed: Event) -> None:
    keys = keys_of("c", RECORDS)
    async with SQLiteOutbox(path) as store:
        for start in range(0, len(keys), 50):
            await store.claim(keys[start : start + 50], owner="doomed", now=T0, lease=LEASE)
            claimed.set()
        await asyncio.sleep(3600)


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
@pytest.mark.parametrize("policy", list(DeliveryPolicy))
async def test_leases_of_a_killed_sender_expire(tmp_path: Path, policy: DeliveryPolicy) -> None:
    path = tmp_path / "outbox.sqlite3"
    await seed(path, "c", RECORDS)
    claimed = SPAWN.Event()
    sender = SPAWN.Process(target=claim_until_killed, args=(str(path), claimed))
    sender.start()
    try:
        assert await asyncio.to_thread(claimed.wait, 30), "the sender claimed nothing"
        assert sender.pid is not None
        os.kill(sender.pid, signal.SIGKILL)  # most likely in the middle of a claim
    finally:
        await join([sender], within=10)
    assert sender.exitcode == -signal.SIGKILL

    with sqlite3.connect(path) as conn:  # the WAL is recovered: nothing torn
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    conn.close()
    keys = keys_of("c", RECORDS)
    async with SQLiteOutbox(path) as store:
        counts = await store.counts("c")
        leased = counts[OutboxStatus.SENDING]
        assert leased >= 50 and leased % 50 == 0, counts  # whole transactions only
        assert counts[OutboxStatus.PENDING] == RECORDS - leased, counts
        doomed = {r.key async for r in store.records("c", status=OutboxStatus.SENDING)}

        # While the dead sender's leases are live, only the records it never claimed are free.
        early = await store.claim(keys, owner="rescuer", now=T0 + LEASE - 1, lease=LEASE,
                                  policy=policy)  # fmt: skip
        assert {r.key for r in early} == set(keys) - doomed

        late = await store.claim(keys, owner="rescuer", now=T0 + LEASE, lease=LEASE, policy=policy)
        counts = await store.counts("c")
        if policy is DeliveryPolicy.AT_LEAST_ONCE:  # claimed again: maybe sent twice, never lost
            assert {r.key for r in late} == doomed
            assert {r.attempts for r in late} == {2}
            assert {r.lease_owner for r in late} == {"rescuer"}
            assert counts[OutboxStatus.SENDING] == RECORDS
        else:  # never resent: reported in doubt
            assert late == []
            assert counts[OutboxStatus.IN_DOUBT] == len(doomed)
            in_doubt = [r async for r in store.records("c", status=OutboxStatus.IN_DOUBT)]
            assert {r.key for r in in_doubt} == doomed
            assert all("doomed" in (r.error or "") for r in in_doubt)
