"""`comm.suppressions`: the validating view of the outbox's suppression list, on both stores.

Campaigns skipping suppressed addresses (against a real SMTP server) are in
`tests/integration/test_bulk_suppressions.py`.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from xcomm import Address, CommManager, LifecycleError, Suppressions, ValidationError
from xcomm.outbox import Suppression


@pytest.fixture(params=["memory", "sqlite"])
def outbox(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return "memory://" if request.param == "memory" else str(tmp_path / "outbox.sqlite3")


@pytest.fixture
async def comm(outbox: str) -> AsyncIterator[CommManager]:
    async with CommManager(outbox=outbox) as manager:
        yield manager


async def test_add_contains_remove(comm: CommManager) -> None:
    listed = comm.suppressions
    assert isinstance(listed, Suppressions)
    assert comm.suppressions is listed  # one cheap object per manager

    await listed.add("Ada@Example.ORG", reason="unsubscribed")
    assert await listed.contains("ada@example.org")
    assert await listed.contains("ADA@EXAMPLE.ORG")
    assert not await listed.contains("bob@example.org")

    assert await listed.remove("ada@EXAMPLE.org") is True
    assert not await listed.contains("ada@example.org")
    assert await listed.remove("ada@example.org") is False


async def test_entries_are_lower_cased_with_reason_and_time() -> None:
    times = iter([1_000.0, 2_000.0, 3_000.0])
    async with CommManager(outbox="memory://") as comm:
        listed = Suppressions(comm.outbox, now=lambda: next(times))
        await listed.add("Zed <Zed@Example.org>", reason="unsubscribed")
        await listed.add(Address(email="Amy@Example.org", name="Amy"))
        await listed.add("zed@example.org", reason="complaint")  # listed: first reason kept
        entries = await listed.list()
        streamed = [entry async for entry in listed]
    assert (
        entries
        == streamed
        == [
            Suppression(address="amy@example.org", reason="manual", created_at=2_000.0),
            Suppression(address="zed@example.org", reason="unsubscribed", created_at=1_000.0),
        ]
    )


async def test_reasons_match_what_the_bulk_sender_records(comm: CommManager) -> None:
    # The sender suppresses a permanently refused recipient with "rejected: <server reply>".
    store = await comm.outbox()
    await store.suppress("gone@example.org", reason="rejected: 550 5.1.1 no such user", now=1.0)
    assert await comm.suppressions.contains("Gone@example.org")
    [entry] = await comm.suppressions.list()
    assert entry.reason == "rejected: 550 5.1.1 no such user"


async def test_a_malformed_address_is_refused_with_a_clear_message(comm: CommManager) -> None:
    with pytest.raises(ValidationError) as info:
        await comm.suppressions.add("not-an-address")
    message = str(info.value)
    assert "cannot add 'not-an-address' to the suppression list" in message
    assert "missing '@'" in message
    with pytest.raises(ValidationError, match="cannot remove 'a@@b' from the suppression list"):
        await comm.suppressions.remove("a@@b")
    with pytest.raises(ValidationError, match=re.escape(r"cannot look up 'x\r\n@b.c' in")):
        await comm.suppressions.contains("x\r\n@b.c")
    with pytest.raises(ValidationError, match="not int"):
        await comm.suppressions.add(42)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="reason must be a non-empty string"):
        await comm.suppressions.add("ada@example.org", reason=" ")
    assert await comm.suppressions.list() == []


async def test_add_many_imports_a_list(comm: CommManager) -> None:
    addresses = [f"User{n}@Example.org" for n in range(1_200)]
    given = await comm.suppressions.add_many([*addresses, "user0@example.org"], reason="import")
    assert given == 1_201
    entries = await comm.suppressions.list()
    assert len(entries) == 1_200  # more than one page of the SQLite store
    assert {e.reason for e in entries} == {"import"}
    assert await comm.suppressions.contains("user1199@example.org")


async def test_add_many_writes_nothing_when_an_entry_is_malformed(comm: CommManager) -> None:
    entries = ["ada@example.org", "oops", "bob@example.org", *(f"bad{n}" for n in range(6))]
    with pytest.raises(ValidationError) as info:
        await comm.suppressions.add_many(entries)
    message = str(info.value)
    assert message.startswith("7 of 9 addresses are malformed, so none was suppressed")
    assert "#1: cannot add 'oops'" in message and "(and 2 more)" in message
    assert await comm.suppressions.list() == []


async def test_the_list_survives_the_manager(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    async with CommManager(outbox=path) as comm:
        await comm.suppressions.add("ada@example.org", reason="unsubscribed")
    async with CommManager(outbox=path) as comm:
        assert await comm.suppressions.contains("ada@example.org")


async def test_getting_the_property_does_no_io(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    comm = CommManager(outbox=path)
    listed = comm.suppressions  # before open: fine, nothing is touched
    with pytest.raises(LifecycleError, match="open the CommManager"):
        await listed.contains("ada@example.org")
    async with comm:
        assert comm.suppressions is listed
        assert not path.exists()  # the outbox opens on first use, not on attribute access
        await listed.add("ada@example.org")
        assert path.exists()
    with pytest.raises(LifecycleError, match="closed"):
        await listed.list()
