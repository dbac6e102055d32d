"""Outbox stores: the conformance suite on both built-in stores, then what is specific to each."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import sqlite3
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import msgspec
import pytest

import xcomm.outbox
from xcomm import ConfigurationError, LifecycleError, OutboxError, ValidationError
from xcomm.outbox import (
    Completion,
    DeliveryPolicy,
    MemoryOutbox,
    OutboxRecord,
    OutboxStatus,
    OutboxStore,
    SQLiteOutbox,
    default_outbox_location,
    open_outbox,
    record_key,
)
from xcomm.outbox._location import default_location
from xcomm.testing._outbox import OUTBOX_CHECKS, check_outbox_store

Factory = Callable[[], Awaitable[OutboxStore]]
T0 = 1_700_000_000.0


def record(n: int, campaign: str = "c", **fields: Any) -> OutboxRecord:
    recipient = f"user{n}@example.com"
    key = record_key(campaign, recipient)
    return OutboxRecord(key=key, campaign_id=campaign, recipient=recipient, **fields)


def outbox_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("xcomm-outbox")]


@pytest.fixture(params=["memory", "sqlite"])
def factory(request: pytest.FixtureRequest, tmp_path: Path) -> Factory:
    """Makes fresh, unopened stores of one kind (each SQLite store in a file of its own)."""
    made = iter(range(1_000_000))

    async def make() -> OutboxStore:
        if request.param == "memory":
            return MemoryOutbox()
        return SQLiteOutbox(tmp_path / f"store-{next(made)}" / "outbox.sqlite3")

    return make


# -- the conformance suite ----------------------------------------------------------------------


@pytest.mark.parametrize("check", OUTBOX_CHECKS)
async def test_conformance(factory: Factory, check: str) -> None:
    await check_outbox_store(factory, only=[check])


async def test_whole_suite_by_default(factory: Factory) -> None:
    await check_outbox_store(factory)
    assert outbox_threads() == []


class _StealsLiveLeases(MemoryOutbox):
    def _take(self, record: OutboxRecord, *args: Any) -> OutboxRecord | None:
        expired = msgspec.structs.replace(record, lease_until=None)  # every lease looks expired
        return super()._take(expired, *args)


class _FinishesForAnyone(MemoryOutbox):
    async def finish(self, completions: Sequence[Completion], /, *, owner: str, now: float) -> int:
        owners = {r.key: r.lease_owner for r in self._records.values()}
        changed = 0
        for c in completions:
            changed += await super().finish([c], owner=owners.get(c.key) or owner, now=now)
        return changed


class _CaseSensitiveSuppressions(MemoryOutbox):
    async def suppressed(self, addresses: Sequence[str], /) -> set[str]:
        return {a for a in addresses if a in self._suppressions}


@pytest.mark.parametrize(
    ("broken", "check"),
    [
        (_StealsLiveLeases, "claim_skips_final_and_live_records"),
        (_FinishesForAnyone, "finish_writes_outcomes_of_the_owner_only"),
        (_CaseSensitiveSuppressions, "suppressions_ignore_case"),
    ],
)
async def test_the_suite_catches_a_broken_store(broken: type[MemoryOutbox], check: str) -> None:
    async def make() -> OutboxStore:
        return broken()

    with pytest.raises(AssertionError, match=f"{broken.__name__} fails check '{check}'"):
        await check_outbox_store(make, only=[check])


async def test_the_suite_rejects_unknown_check_names() -> None:
    with pytest.raises(ValueError, match="unknown outbox checks"):
        await check_outbox_store(lambda: asyncio.sleep(0, MemoryOutbox()), only=["nope"])


# -- both stores: misuse ------------------------------------------------------------------------


async def test_use_outside_open_and_close_raises(factory: Factory) -> None:
    store = await factory()
    with pytest.raises(LifecycleError, match="not open"):
        await store.add([record(1)])
    await store.open()
    assert await store.add([record(1)]) == 1
    await store.aclose()
    with pytest.raises(LifecycleError, match="closed"):
        await store.counts("c")
    with pytest.raises(LifecycleError, match="closed"):
        await store.open()
    with pytest.raises(LifecycleError):
        [r async for r in store.records("c")]


async def test_bad_input_is_rejected_before_anything_changes(factory: Factory) -> None:
    store = await factory()
    await store.open()
    try:
        with pytest.raises(ValidationError, match="cannot be stored"):
            await store.add([record(1), record(2, variables={"x": object()})])
        assert (await store.counts("c"))[OutboxStatus.PENDING] == 0
        with pytest.raises(ValidationError, match="lease"):
            await store.claim([record(1).key], owner="w", now=T0, lease=0)
        with pytest.raises(ValidationError, match="limit"):
            await store.claim_due(owner="w", now=T0, lease=1, limit=-1)
        with pytest.raises(ValidationError, match="has status 'done'"):
            bad = Completion(key="k", status="done")  # type: ignore[arg-type]
            await store.finish([bad], owner="w", now=T0)
        with pytest.raises(ValueError):
            await store.claim([], owner="w", now=T0, lease=1, policy="sometimes")  # type: ignore[arg-type]
    finally:
        await store.aclose()


async def test_stored_records_do_not_alias_the_callers_data(factory: Factory) -> None:
    store = await factory()
    await store.open()
    tags = ["a"]
    await store.add([record(1, variables={"tags": tags})])
    tags.append("b")
    [stored] = [r async for r in store.records("c")]
    await store.aclose()
    assert stored.variables == {"tags": ["a"]}


async def test_memory_outbox_repr_and_context_manager() -> None:
    async with MemoryOutbox() as store:
        await store.add([record(1)])
        assert repr(store) == "<MemoryOutbox open, 1 records>"
    assert repr(store) == "<MemoryOutbox closed, 0 records>"


# -- SQLite -------------------------------------------------------------------------------------


async def test_sqlite_creates_the_file_in_wal_mode_with_a_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "outbox.sqlite3"
    store = SQLiteOutbox(path)
    assert repr(store) == f"<SQLiteOutbox {str(path)!r} not open>"
    assert not path.exists()  # nothing happens before open()
    async with store:
        assert outbox_threads() != []
        assert repr(store).endswith(" open>")
    assert outbox_threads() == []
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (
            "1",
        )
    conn.close()


async def test_sqlite_processes_opening_a_new_file_at_once_all_open_it(tmp_path: Path) -> None:
    # Helper processes, or `xcomm worker --processes N`, open one new outbox together. Only
    # one of them can switch the file to WAL; SQLite tells the others "database is locked"
    # at once, without waiting: they must wait their turn, not fail.
    for attempt in range(40):
        path = tmp_path / f"new-{attempt}" / "outbox.sqlite3"
        stores = [SQLiteOutbox(path) for _ in range(6)]  # a connection and a thread each
        try:
            await asyncio.gather(*(store.open() for store in stores))
            await stores[0].add([record(1)])
            assert [(await store.counts("c"))[OutboxStatus.PENDING] for store in stores] == [1] * 6
        finally:
            for store in stores:
                await store.aclose()
        with contextlib.closing(sqlite3.connect(path)) as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
async def test_sqlite_file_is_private(tmp_path: Path) -> None:
    path = tmp_path / "new" / "outbox.sqlite3"
    async with SQLiteOutbox(path) as store:
        await store.add([record(1)])
        for made in (path, path.parent, path.with_name(path.name + "-wal")):
            assert made.stat().st_mode & 0o077 == 0, made


@pytest.mark.parametrize("theirs", ["pending", "sending"])
async def test_sqlite_add_claimed_when_another_process_adds_a_key_meanwhile(
    tmp_path: Path, theirs: str
) -> None:
    """add_claimed reads which keys exist, then inserts the new ones in one statement. A key
    another process adds in between is not ours: taken if due (pending), left alone if that
    process is sending it; the rest are ours as inserted."""
    path = tmp_path / "outbox.sqlite3"
    mine = [record(n) for n in range(3)]
    async with SQLiteOutbox(path) as store:
        other = sqlite3.connect(path, timeout=0, isolation_level=None, check_same_thread=False)
        meddled: list[str] = []

        def meddle(sql: str) -> None:  # runs as the store starts a statement
            if sql.startswith("INSERT OR IGNORE INTO records") and not meddled:
                meddled.append(sql)
                lease = (None, None) if theirs == "pending" else ("them", T0 + 60)
                other.execute(
                    "INSERT INTO records (key, campaign_id, recipient, status, lease_owner, "
                    "lease_until) VALUES (?, 'c', ?, ?, ?, ?)",
                    (mine[1].key, mine[1].recipient, theirs, *lease),
                )

        await store._call(store._db.set_trace_callback, meddle)
        claimed = await store.add_claimed(mine, owner="me", now=T0, lease=60)
        await store._call(store._db.set_trace_callback, None)
        other.close()
        assert meddled
        expected = [0, 1, 2] if theirs == "pending" else [0, 2]
        assert [r.key for r in claimed] == [mine[n].key for n in expected]
        assert all(r.status is OutboxStatus.SENDING and r.lease_owner == "me" for r in claimed)
        rows = {r.key: r async for r in store.records("c")}
        assert rows[mine[1].key].lease_owner == ("me" if theirs == "pending" else "them")
        assert [rows[r.key].lease_owner for r in (mine[0], mine[2])] == ["me", "me"]


async def test_sqlite_every_query_uses_an_index(tmp_path: Path) -> None:
    """No statement the store runs scans a table or sorts, whatever the batch size."""
    path = tmp_path / "outbox.sqlite3"
    statements: set[str] = set()
    async with SQLiteOutbox(path) as store:
        await store._call(store._db.set_trace_callback, statements.add)
        batch = [record(n, not_before=T0 - n % 3 if n % 2 else None) for n in range(1200)]
        await store.add(batch)
        await store.add([record(n, "other") for n in range(10)])
        for policy in DeliveryPolicy:
            keys = [r.key for r in batch]
            await store.claim(keys, owner="w", now=T0, lease=1, policy=policy)
            for campaign in ("c", None):
                await store.claim_due(
                    owner="w", now=T0 + 5, lease=1, limit=500, campaign_id=campaign, policy=policy
                )
        done = [Completion(key=r.key, status=OutboxStatus.SENT) for r in batch]
        await store.finish(done, owner="w", now=T0)
        await store.counts("c")
        for campaign in ("c", None):
            await store.next_due(campaign_id=campaign)
        assert len([r async for r in store.records("c")]) == 1200
        assert [r async for r in store.records("c", status=OutboxStatus.FAILED)] == []
        await store.suppress("a@example.com", reason="x", now=T0)
        await store.suppressed([f"{n}@example.com" for n in range(600)])
        assert len([s async for s in store.suppressions()]) == 1
        await store.unsuppress("a@example.com")
        await store._call(store._db.set_trace_callback, None)
    plans = {}
    with sqlite3.connect(path) as conn:
        for sql in statements:
            if sql.split()[0] in ("UPDATE", "SELECT", "DELETE"):
                explained = conn.execute(f"EXPLAIN QUERY PLAN {sql}").fetchall()
                plans[sql] = " | ".join(row[3] for row in explained)
    conn.close()
    assert len(plans) >= 12
    for sql, plan in plans.items():
        # a batch written in one statement scans its own VALUES list, never the table
        plan = re.sub(r"MATERIALIZE v \| SCAN \d+ CONSTANT ROWS \| SCAN v \| ", "", plan)
        assert "SEARCH" in plan and "SCAN" not in plan, (sql[:200], plan)
        assert "TEMP B-TREE" not in plan, (sql[:200], plan)
        if " key IN (" in sql:
            assert plan == "SEARCH records USING PRIMARY KEY (key=?)", (sql[:200], plan)


async def test_sqlite_indexes_hold_open_records_and_replace_the_old_ones(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    async with SQLiteOutbox(path) as store:
        await store.add([record(n) for n in range(4)])
    with sqlite3.connect(path) as conn:  # an outbox written by an xcomm that indexed it all
        conn.execute("DROP INDEX records_pending")
        conn.execute("CREATE INDEX records_due ON records (status, not_before)")
        conn.execute(
            "CREATE INDEX records_campaign_due ON records (campaign_id, status, not_before)"
        )
    conn.close()
    async with SQLiteOutbox(path) as store:
        taken = await store.claim([record(0).key, record(1).key], owner="w", now=T0, lease=60)
        await store.finish(
            [Completion(key=taken[0].key, status=OutboxStatus.SENT)], owner="w", now=T0
        )
        assert (await store.counts("c"))[OutboxStatus.PENDING] == 2
    with sqlite3.connect(path) as conn:
        found = dict(conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index'"))
    conn.close()
    assert {"records_due", "records_campaign_due"}.isdisjoint(found)
    # a record leaves these once sent: only records_campaign (counts, pages) holds them all
    for name, status in [
        ("records_pending", "pending"),
        ("records_campaign_pending", "pending"),
        ("records_sending", "sending"),
    ]:
        assert found[name].endswith(f"WHERE status = '{status}'"), found[name]
    assert "WHERE" not in found["records_campaign"]


async def test_sqlite_records_and_suppressions_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    async with SQLiteOutbox(path) as store:
        await store.add([record(n, variables={"n": n}) for n in range(3)])
        await store.claim([record(0).key], owner="w", now=T0, lease=60)
        await store.suppress("Gone@Example.com", reason="bounced", now=T0)
    async with SQLiteOutbox(str(path)) as again:
        counts = await again.counts("c")
        assert (counts[OutboxStatus.PENDING], counts[OutboxStatus.SENDING]) == (2, 1)
        assert [r.variables async for r in again.records("c")] == [{"n": 0}, {"n": 1}, {"n": 2}]
        assert await again.suppressed(["gone@example.com"]) == {"gone@example.com"}


async def test_sqlite_expands_the_home_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    store = SQLiteOutbox("~/xcomm/outbox.sqlite3")
    assert store.path == tmp_path / "xcomm" / "outbox.sqlite3"


async def test_sqlite_refuses_a_file_from_a_newer_version(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    async with SQLiteOutbox(path):
        pass
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    conn.close()
    store = SQLiteOutbox(path)
    with pytest.raises(ConfigurationError, match="schema version 99, written by a newer xcomm"):
        await store.open()
    await store.aclose()
    for _ in range(100):  # the failed open's thread exits on its own
        if not outbox_threads():
            break
        await asyncio.sleep(0.01)
    assert outbox_threads() == []


async def test_sqlite_options(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="synchronous"):
        SQLiteOutbox(tmp_path / "o.db", synchronous="OFF")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="busy_timeout"):
        SQLiteOutbox(tmp_path / "o.db", busy_timeout=-1)
    async with SQLiteOutbox(tmp_path / "o.db", synchronous="FULL", busy_timeout=2.5) as store:
        assert await store._call(store._fetch, "PRAGMA synchronous", ()) == [(2,)]
        assert await store._call(store._fetch, "PRAGMA busy_timeout", ()) == [(2500,)]


async def test_sqlite_waits_for_a_lock_without_blocking_the_loop(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    async with SQLiteOutbox(path) as store:
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        asyncio.get_running_loop().call_later(0.3, other.execute, "COMMIT")
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        ticker = asyncio.create_task(tick())
        started = time.perf_counter()
        try:
            assert await store.add([record(1)]) == 1
        finally:
            ticker.cancel()
            other.close()
        with contextlib.suppress(asyncio.CancelledError):
            await ticker
        assert time.perf_counter() - started >= 0.25
        assert ticks >= 10, "the event loop was blocked while SQLite waited for the lock"


async def test_sqlite_gives_up_after_busy_timeout(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    async with SQLiteOutbox(path, busy_timeout=0.05) as store:
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(OutboxError, match="locked") as info:
                await store.add([record(1)])
            assert isinstance(info.value.__cause__, sqlite3.OperationalError)
        finally:
            other.close()
        assert await store.add([record(1)]) == 1  # and it works again afterwards


async def test_sqlite_cancelled_claim_puts_its_records_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with SQLiteOutbox(tmp_path / "outbox.sqlite3") as store:
        await store.add([record(n) for n in range(5)])
        committed, proceed = threading.Event(), threading.Event()
        claim = store._claim

        def slow_claim(*args: Any) -> list[OutboxRecord]:
            taken = claim(*args)  # committed
            committed.set()
            proceed.wait(5)
            return taken

        monkeypatch.setattr(store, "_claim", slow_claim)
        keys = [record(n).key for n in range(5)]
        task = asyncio.create_task(store.claim(keys, owner="w", now=T0, lease=60))
        assert await asyncio.to_thread(committed.wait, 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        proceed.set()
        counts = await store.counts("c")  # the next job puts them back first
        assert counts[OutboxStatus.PENDING] == 5, counts
        assert {r.attempts async for r in store.records("c")} == {0}
        monkeypatch.undo()
        assert len(await store.claim(keys, owner="w2", now=T0, lease=60)) == 5


async def test_sqlite_cancelled_finish_still_writes(tmp_path: Path) -> None:
    async with SQLiteOutbox(tmp_path / "outbox.sqlite3") as store:
        await store.add([record(1)])
        await store.claim([record(1).key], owner="w", now=T0, lease=60)
        task = asyncio.create_task(
            store.finish(
                [Completion(key=record(1).key, status=OutboxStatus.SENT)], owner="w", now=T0
            )
        )
        await asyncio.sleep(0)  # submitted to the thread
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert (await store.counts("c"))[OutboxStatus.SENT] == 1


async def test_sqlite_claim_due_prefers_unscheduled_then_oldest(tmp_path: Path) -> None:
    async with SQLiteOutbox(tmp_path / "outbox.sqlite3") as store, MemoryOutbox() as memory:
        batch = [record(0, not_before=T0 - 5), record(1), record(2, not_before=T0 - 9)]
        for s in (store, memory):
            await s.add(batch)
            await s.claim([record(3).key], owner="x", now=T0, lease=1)
            got = await s.claim_due(owner="w", now=T0, lease=60, limit=3)
            assert [r.recipient for r in got] == [f"user{n}@example.com" for n in (1, 2, 0)]


# -- locations ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("location", "path"),
    [
        ("sqlite:///var/lib/app/outbox.db", "/var/lib/app/outbox.db"),
        ("SQLite://relative/outbox.db", "relative/outbox.db"),
        ("some/dir/outbox.sqlite3", "some/dir/outbox.sqlite3"),
        (Path("/tmp/x/outbox.db"), "/tmp/x/outbox.db"),
        ("C://Users/me/outbox.db", "C://Users/me/outbox.db"),  # a drive letter, not a scheme
    ],
)
def test_open_outbox_sqlite_locations(location: str | os.PathLike[str], path: str) -> None:
    store = open_outbox(location)
    assert isinstance(store, SQLiteOutbox)
    assert store.path == Path(path)


def test_open_outbox_memory_and_instances() -> None:
    assert isinstance(open_outbox("memory://"), MemoryOutbox)
    assert isinstance(open_outbox(" MEMORY:// "), MemoryOutbox)
    store = MemoryOutbox()
    assert open_outbox(store) is store


@pytest.mark.parametrize(
    "location", ["redis://localhost:6379/0", "memory://elsewhere", "sqlite://", "", "  ", 42]
)
def test_open_outbox_rejects_what_it_does_not_support(location: Any) -> None:
    with pytest.raises(ConfigurationError, match="memory://") as caught:
        open_outbox(location)
    assert "sqlite:///" in str(caught.value)


def test_default_location_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setenv("XCOMM_OUTBOX", "memory://")
    assert default_outbox_location() == "memory://"
    monkeypatch.delenv("XCOMM_OUTBOX")
    monkeypatch.setenv("XDG_DATA_HOME", "/data/me")
    assert default_outbox_location() == str(Path("/data/me/xcomm/outbox.sqlite3"))
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", "/home/me")
    assert default_outbox_location() == str(Path("/home/me/.local/share/xcomm/outbox.sqlite3"))


@pytest.mark.parametrize(
    ("platform", "env", "expected"),
    [
        ("linux", {"HOME": "/home/me"}, "/home/me/.local/share/xcomm/outbox.sqlite3"),
        ("linux", {"HOME": "/home/me", "XDG_DATA_HOME": "/xdg"}, "/xdg/xcomm/outbox.sqlite3"),
        ("linux", {"HOME": "/h", "XDG_DATA_HOME": "rel"}, "/h/.local/share/xcomm/outbox.sqlite3"),
        ("freebsd14", {"HOME": "/home/me"}, "/home/me/.local/share/xcomm/outbox.sqlite3"),
        ("darwin", {"HOME": "/Users/me"},
         "/Users/me/Library/Application Support/xcomm/outbox.sqlite3"),
        ("win32", {"LOCALAPPDATA": "/appdata"}, "/appdata/xcomm/outbox.sqlite3"),
    ],
)  # fmt: skip
def test_default_location_per_platform(platform: str, env: dict[str, str], expected: str) -> None:
    assert default_location(platform, env) == str(Path(expected))
    assert default_location(platform, {**env, "XCOMM_OUTBOX": "sqlite:///o.db"}) == "sqlite:///o.db"


def test_public_names() -> None:
    assert xcomm.outbox.__all__ == sorted(xcomm.outbox.__all__)
    public = {n for n in vars(xcomm.outbox) if not n.startswith("_")} - {"annotations"}
    assert set(xcomm.outbox.__all__) <= public
    for name in xcomm.outbox.__all__:
        assert getattr(xcomm.outbox, name).__doc__, name


def test_records_are_plain_msgspec_values() -> None:
    # Old records (fewer fields) still decode: every field but the identity has a default.
    old = msgspec.json.encode({"key": "k", "campaign_id": "c", "recipient": "r"})
    assert msgspec.json.decode(old, type=OutboxRecord).status is OutboxStatus.PENDING
    assert DeliveryPolicy("at-most-once") is DeliveryPolicy.AT_MOST_ONCE
