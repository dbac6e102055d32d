"""Batch mode for any mailbox: flag and label changes collected, then sent together.

Inside `async with mailbox.batch_mode():` flag and label changes wait in a `FlagBatch`,
found through a context variable: a task sees the batch of the block it runs in (tasks
started inside the block share it; other tasks never do). Each change is recorded per
message and flag (the last change to a flag wins), in groups the provider chooses (IMAP: a
folder and its UIDVALIDITY; Gmail: one group). At the end of the block the provider's
`send` turns each group into as few requests as its protocol allows (IMAP: one `UID STORE`
per operation and flag set; Gmail: one `messages.batchModify` per identical change).
If the block raises, nothing collected is sent.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from xcomm._errors import LifecycleError

if TYPE_CHECKING:
    from xcomm._provider import Provider

__all__ = ["Changes", "FlagBatch", "Group", "batch_mode", "current_batch", "split_changes"]

#: Where changes are sent together: `(folder, anything else the provider needs)`.
Group = tuple[str, Any]
#: Per message key (an IMAP UID, a Gmail id), each flag's last change: True adds, False removes.
Changes = dict[Hashable, dict[str, bool]]
#: How a provider sends one group's changes; returns how many requests it made.
Sender = Callable[[Group, Changes, "float | None"], Awaitable[int]]

_batches: ContextVar[tuple[FlagBatch, ...]] = ContextVar("xcomm_flag_batches", default=())


class FlagBatch:
    """Flag and label changes collected by `async with mailbox.batch_mode() as batch:`.

    Each change is recorded per message and flag (the last change to a flag wins); at the
    end of the block they go out grouped as the provider can send them (see
    `docs/reading.md`). If the block raises, nothing collected is sent.
    """

    def __init__(self, provider: Provider, send: Sender) -> None:
        self.provider = provider
        self.closed = False
        self._send = send
        self._changes: dict[Group, Changes] = {}

    @property
    def pending(self) -> int:
        """How many (message, flag) changes wait to be sent."""
        return sum(len(flags) for group in self._changes.values() for flags in group.values())

    def add(self, group: Group, keys: list[Any], add: list[str], remove: list[str]) -> None:
        """Record adding `add` and removing `remove` on the messages `keys` of `group`."""
        messages = self._changes.setdefault(group, {})
        for key in keys:
            changes = messages.setdefault(key, {})
            for flag in add:
                changes[flag] = True
            for flag in remove:
                changes[flag] = False

    def groups(self, folder: str | None = None) -> dict[Group, Changes]:
        """What waits, by group (of `folder` only, when given)."""
        return {
            group: messages
            for group, messages in self._changes.items()
            if folder is None or group[0] == folder
        }

    async def flush(self, *, folder: str | None = None, timeout: float | None = None) -> int:
        """Send what is waiting (for `folder` only, when given); returns the requests sent."""
        sent = 0
        for group, messages in self.groups(folder).items():
            sent += await self._send(group, messages, timeout)
            del self._changes[group]
        return sent


def split_changes(changes: dict[str, bool]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(flags added, flags removed) of one message's changes, each sorted."""
    added = tuple(sorted(f for f, on in changes.items() if on))
    removed = tuple(sorted(f for f, on in changes.items() if not on))
    return added, removed


def current_batch(provider: Provider) -> FlagBatch | None:
    """The open batch of `provider` in this task's context, if any."""
    for batch in _batches.get():
        if batch.provider is provider and not batch.closed:
            return batch
    return None


@asynccontextmanager
async def batch_mode(provider: Provider, send: Sender) -> AsyncIterator[FlagBatch]:
    """Collect flag changes and send them with `send` at the end of the block.

    Nested blocks for the same provider join the outer batch.
    """
    if provider.closed:
        raise LifecycleError(f"this {provider.name} provider is closed")
    outer = current_batch(provider)
    if outer is not None:
        yield outer
        return
    batch = FlagBatch(provider, send)
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
