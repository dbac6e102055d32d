"""Outbox stores: records/s through the bulk sender's pattern of calls.

Run with `python -m benchmarks.bench_outbox [--records 50000] [--repeats 3] [--preload 0]`.

Per batch of 500 records, as `BulkSender` does: `add(500)` → `claim(the 500 keys)` →
`finish(100)` five times. The figure is records/s through all three (median of `--repeats`
runs, each on a fresh store after a warm-up run), with the share of each phase. SQLite runs in
a temporary directory, with `synchronous=NORMAL` (the default) and `FULL`; building the records
is not timed (the sender does that anyway). `--preload N` first fills each store with another
campaign of N records (untimed), to show the figure holds on a big file. The default run takes
about 10 seconds.

One JSON line per result, then a short table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from benchmarks._report import metadata
from xcomm.outbox import (
    Completion,
    MemoryOutbox,
    OutboxRecord,
    OutboxStatus,
    OutboxStore,
    SQLiteOutbox,
    record_key,
)

BATCH = 500
FINISH_BATCH = 100
WARMUP = 5_000
META = metadata("outbox")


def _emit(**fields: object) -> None:
    print(json.dumps({"bench": "outbox", **fields, **META}))


def build(records: int, campaign: str) -> list[OutboxRecord]:
    """`records` recipients with a little personalisation each, as a campaign would have."""
    now = time.time()
    out = []
    for n in range(records):
        recipient = f"user{n:07d}@example{n % 97}.com"
        out.append(
            OutboxRecord(
                key=record_key(campaign, recipient),
                campaign_id=campaign,
                recipient=recipient,
                variables={"first_name": f"User {n}", "plan": "pro", "visits": n % 31},
                updated_at=now,
            )
        )
    return out


async def run(
    store: OutboxStore, records: list[OutboxRecord], preload: Sequence[OutboxRecord] = ()
) -> dict[str, float]:
    """Seconds spent in add, claim and finish for all `records`, in the sender's batches."""
    spent = {"add": 0.0, "claim": 0.0, "finish": 0.0}
    await store.open()
    try:
        for start in range(0, len(preload), 10_000):  # another campaign already in the store
            await store.add(preload[start : start + 10_000])
        for start in range(0, len(records), BATCH):
            batch = records[start : start + BATCH]
            t0 = time.perf_counter()
            added = await store.add(batch)
            t1 = time.perf_counter()
            claimed = await store.claim(
                [r.key for r in batch], owner="bench", now=time.time(), lease=300.0
            )
            t2 = time.perf_counter()
            for at in range(0, len(claimed), FINISH_BATCH):
                done = [
                    Completion(key=r.key, status=OutboxStatus.SENT, message_id=f"<{r.key}>")
                    for r in claimed[at : at + FINISH_BATCH]
                ]
                await store.finish(done, owner="bench", now=time.time())
            t3 = time.perf_counter()
            assert added == len(batch) == len(claimed), (added, len(claimed))
            spent["add"] += t1 - t0
            spent["claim"] += t2 - t1
            spent["finish"] += t3 - t2
        counts = await store.counts(records[0].campaign_id)
        assert counts[OutboxStatus.SENT] == len(records), counts
    finally:
        await store.aclose()
    return spent


async def measure(
    name: str, make: Callable[[Path], OutboxStore], records: int, repeats: int, preload: int
) -> dict[str, float]:
    """Median records/s of `repeats` runs of `records` through a fresh store each."""
    earlier = build(preload, "earlier")
    with tempfile.TemporaryDirectory(prefix="bench-outbox-") as tmp:
        await run(make(Path(tmp) / "warmup.sqlite3"), build(WARMUP, "warmup"))
        runs = []
        for index in range(repeats):
            data = build(records, f"campaign-{index}")
            runs.append(await run(make(Path(tmp) / f"run-{index}.sqlite3"), data, earlier))
    totals = [sum(spent.values()) for spent in runs]
    median = runs[totals.index(statistics.median_low(totals))]
    total = sum(median.values())
    result = {
        "records_per_s": records / total,
        "add_per_s": records / median["add"],
        "claim_per_s": records / median["claim"],
        "finish_per_s": records / median["finish"],
        "us_per_record": total / records * 1e6,
    }
    rounded = {key: round(value, 1) for key, value in result.items()}
    _emit(store=name, records=records, preload=preload, repeats=repeats, **rounded)
    return result


STORES: dict[str, Callable[[Path], OutboxStore]] = {
    "memory": lambda path: MemoryOutbox(),
    "sqlite (synchronous=NORMAL)": lambda path: SQLiteOutbox(path),
    "sqlite (synchronous=FULL)": lambda path: SQLiteOutbox(path, synchronous="FULL"),
}


async def main(records: int, repeats: int, preload: int) -> None:
    results = {
        name: await measure(name, make, records, repeats, preload) for name, make in STORES.items()
    }
    print()
    print(
        f"{records:,} records: add({BATCH}) → claim({BATCH} keys) → finish({FINISH_BATCH}) x 5"
        + (f", into a store already holding {preload:,}" if preload else "")
    )
    print("| store | records/s | add/s | claim/s | finish/s |")
    print("|---|---|---|---|---|")
    for name, r in results.items():
        print(
            f"| {name} | **{r['records_per_s']:,.0f}** | {r['add_per_s']:,.0f} "
            f"| {r['claim_per_s']:,.0f} | {r['finish_per_s']:,.0f} |"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--preload", type=int, default=0, help="records already in each store")
    args = parser.parse_args()
    asyncio.run(main(args.records, args.repeats, args.preload))
