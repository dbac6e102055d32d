"""Batch mode for IMAP flag changes, and the `UID STORE` every flag change is sent with.

Inside `async with imap.batch_mode():` flag and label changes wait in a `FlagBatch`, found
through a context variable: a task sees the batch of the block it runs in (tasks started
inside the block share it; other tasks never do). At the end of the block they go out as
one `UID STORE` per folder, operation (+/-) and flag set. Copy, move and delete inside the
block first send the changes waiting for their folder, then run at once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING

from xcomm._errors import LifecycleError, ProviderError
from xcomm.email._imap_fetch import uid_set

if TYPE_CHECKING:
    from xcomm.email._imap import IMAPProvider
    from xcomm.email._imap_wire import IMAPSession

__all__ = ["FlagBatch", "batch_mode", "check_validity", "current_batch", "store"]


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


# -- batch mode ---------------------------------------------------------------------------------

_Group = tuple[str, int | None]  # (folder, uid_validity)
_batches: ContextVar[tuple[FlagBatch, ...]] = ContextVar("xcomm_imap_batches", default=())


class FlagBatch:
    """Flag and label changes collected by `async with mailbox.batch_mode() as batch:`.

    Each change is recorded per message and flag (the last change to a flag wins); at the
    end of the block they go out as one `UID STORE` per folder, operation (+/-) and set of
    flags. If the block raises, nothing collected is sent.
    """

    def __init__(self, provider: IMAPProvider) -> None:
        self.provider = provider
        self.closed = False
        self._changes: dict[_Group, dict[int, dict[str, bool]]] = {}

    @property
    def pending(self) -> int:
        """How many (message, flag) changes wait to be sent."""
        return sum(len(flags) for group in self._changes.values() for flags in group.values())

    def add(self, group: _Group, uids: list[int], add: list[str], remove: list[str]) -> None:
        messages = self._changes.setdefault(group, {})
        for uid in uids:
            changes = messages.setdefault(uid, {})
            for flag in add:
                changes[flag] = True
            for flag in remove:
                changes[flag] = False

    def plan(
        self, folder: str | None = None
    ) -> dict[_Group, list[tuple[str, tuple[str, ...], list[int]]]]:
        """What `flush()` sends, by folder: `(op, flags, uids)`, one per STORE command."""
        out: dict[_Group, list[tuple[str, tuple[str, ...], list[int]]]] = {}
        for group, messages in self._changes.items():
            if folder is not None and group[0] != folder:
                continue
            stores: dict[tuple[str, tuple[str, ...]], list[int]] = {}
            for uid, changes in messages.items():
                for op, value in (("+", True), ("-", False)):
                    flags = tuple(sorted(f for f, v in changes.items() if v is value))
                    if flags:
                        stores.setdefault((op, flags), []).append(uid)
            out[group] = [(op, flags, uids) for (op, flags), uids in stores.items()]
        return out

    async def flush(self, *, folder: str | None = None, timeout: float | None = None) -> int:
        """Send what is waiting (for `folder` only, when given); returns the STOREs sent."""
        sent = 0
        for group, stores in self.plan(folder).items():
            await self._send(group, stores, timeout)
            del self._changes[group]
            sent += len(stores)
        return sent

    async def _send(
        self,
        group: _Group,
        stores: list[tuple[str, tuple[str, ...], list[int]]],
        timeout: float | None,
    ) -> None:
        folder, validity = group

        async def work(session: IMAPSession) -> None:
            check_validity(session, folder, validity)
            for op, flags, uids in stores:
                await store(session, uids, op, flags)

        await self.provider._run("store", folder, work, timeout)


def current_batch(provider: IMAPProvider) -> FlagBatch | None:
    """The open batch of `provider` in this task's context, if any."""
    for batch in _batches.get():
        if batch.provider is provider and not batch.closed:
            return batch
    return None


@asynccontextmanager
async def batch_mode(provider: IMAPProvider) -> AsyncIterator[FlagBatch]:
    """Collect flag changes and send them at the end of the block (see `FlagBatch`).

    Nested blocks for the same provider join the outer batch.
    """
    if provider.closed:
        raise LifecycleError("this imap provider is closed")
    outer = current_batch(provider)
    if outer is not None:
        yield outer
        return
    batch = FlagBatch(provider)
    token = _batches.set((*_batches.get(), batch))
    try:
        yield batch
    except BaseException:
        batch.closed = True
        raise
    finally:
        _batches.reset(token)
    batch.closed = True
    await batch.flush()
