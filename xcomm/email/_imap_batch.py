"""Batch mode for IMAP flag changes, and the `UID STORE` every flag change is sent with.

Inside `async with imap.batch_mode():` flag and label changes wait in a `FlagBatch`
(`_batch.py`: collected per message and flag, in a context variable, grouped by folder and
UIDVALIDITY). At the end of the block they go out as one `UID STORE` per folder, operation
(+/-) and flag set. Copy, move and delete inside the block first send the changes waiting
for their folder, then run at once.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING

from xcomm._errors import ProviderError
from xcomm.email._batch import Changes, FlagBatch, Group, batch_mode, split_changes
from xcomm.email._imap_fetch import uid_set

if TYPE_CHECKING:
    from xcomm.email._imap import IMAPProvider
    from xcomm.email._imap_wire import IMAPSession

__all__ = ["check_validity", "imap_batch_mode", "plan_stores", "store"]


def _flag_list(flags: Iterable[str]) -> str:
    return "(" + " ".join(flags) + ")"


def check_validity(session: IMAPSession, folder: str, expected: int | None) -> None:
    """Refuse to act on UIDs of a folder that was recreated since they were read."""
    if expected is not None and session.uid_validity not in (None, expected):
        raise ProviderError(
            f"folder {folder!r} was recreated (UIDVALIDITY changed), so these UIDs may now be "
            "other messages; nothing was changed: search again",
            provider="imap",
        )


async def store(session: IMAPSession, uids: list[int], op: str, flags: Iterable[str]) -> None:
    """`UID STORE <uids> <op>FLAGS.SILENT (flags)`; `op` is "+" or "-"."""
    await session.command("STORE", uid_set(uids), f"{op}FLAGS.SILENT", _flag_list(flags),
                          prefix="UID")  # fmt: skip


def plan_stores(messages: Changes) -> list[tuple[str, tuple[str, ...], list[int]]]:
    """`(op, flags, uids)` for one folder's changes: one STORE per operation and flag set."""
    stores: dict[tuple[str, tuple[str, ...]], list[int]] = {}
    for uid, changes in messages.items():
        assert isinstance(uid, int)
        for op, flags in zip(("+", "-"), split_changes(changes), strict=True):
            if flags:
                stores.setdefault((op, flags), []).append(uid)
    return [(op, flags, uids) for (op, flags), uids in stores.items()]


def imap_batch_mode(provider: IMAPProvider) -> AbstractAsyncContextManager[FlagBatch]:
    """`batch_mode()` of an IMAP provider: changes go out as `UID STORE`s per folder."""

    async def send(group: Group, messages: Changes, timeout: float | None) -> int:
        folder, validity = group
        stores = plan_stores(messages)

        async def work(session: IMAPSession) -> None:
            check_validity(session, folder, validity)
            for op, flags, uids in stores:
                await store(session, uids, op, flags)

        await provider._run("store", folder, work, timeout)
        return len(stores)

    return batch_mode(provider, send)
