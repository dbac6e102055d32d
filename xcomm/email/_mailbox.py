"""The reading side of email providers: search a mailbox, read messages, list folders.

`EmailProvider` sends; `MailboxProvider` reads. IMAP, Gmail and Graph implement the same
methods and return the same `ReceivedMessage`, so code written against one mailbox works with
another. Message actions go through the message hooks (`change_flags`, `transfer`,
`discard`, `trash`, `fetch_part`), which each provider maps to its own API.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Iterable
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol, runtime_checkable

import msgspec

from xcomm._errors import ProviderError, ValidationError
from xcomm._provider import Provider
from xcomm.email._message import Folder, ReceivedMessage

__all__ = ["FolderStatus", "MailboxProvider", "SearchQuery", "criteria_of", "trash_folder"]


@runtime_checkable
class SearchQuery(Protocol):
    """Anything a mailbox can search with: `to_imap()` gives IMAP SEARCH criteria. When
    the query also has `matches(message) -> bool`, fetched messages are filtered with it
    (for conditions the server cannot evaluate exactly). `EmailQuery` is one."""

    def to_imap(self) -> str: ...


class FolderStatus(msgspec.Struct, frozen=True, kw_only=True):
    """A folder as SELECT saw it: how many messages it holds and its UIDVALIDITY."""

    name: str
    messages: int = 0
    uid_validity: int | None = None


def criteria_of(query: str | SearchQuery) -> str:
    """The IMAP criteria of `query`: the string itself, or `query.to_imap()`."""
    if isinstance(query, str):
        criteria = query.strip() or "ALL"
    elif hasattr(query, "to_imap"):
        criteria = str(query.to_imap()).strip() or "ALL"
    else:
        raise ValidationError(
            "search criteria must be an IMAP criteria string (e.g. 'UNSEEN') or a query "
            f"with to_imap(), such as EmailQuery; got {type(query).__name__}"
        )
    if any(c in criteria for c in "\r\n\x00"):
        raise ValidationError("search criteria must not contain CR, LF or NUL")
    return criteria


_TRASH_NAMES = ("trash", "deleted items", "deleted messages", "[gmail]/trash")


def trash_folder(folders: Iterable[Folder]) -> str | None:
    """The trash among `folders`: flagged `\\Trash`, else named like one (any case)."""
    found = list(folders)
    for folder in found:
        if any(flag.lower() == "\\trash" for flag in folder.flags):
            return folder.name
    by_name = {folder.name.lower(): folder.name for folder in found if folder.selectable}
    return next((by_name[n] for n in _TRASH_NAMES if n in by_name), None)


class MailboxProvider(Provider):
    """Base of providers that read a mailbox (IMAP, Gmail, Outlook).

    Subclasses implement the methods below with `Provider._call()`; each returns
    `ReceivedMessage`s bound to the provider, so `await message.text()` works.
    """

    name = "mailbox"

    async def search(
        self,
        query: str | SearchQuery = "ALL",
        /,
        *,
        folder: str | None = None,
        limit: int | None = None,
        bodies: bool = False,
        timeout: float | None = None,
    ) -> list[ReceivedMessage]:
        """Every message matching `query` in `folder` (the provider's folder when None),
        oldest first; at most `limit` (the newest ones) when given. `bodies=True` reads the
        text and HTML bodies with the messages instead of on first `text()`/`html()`."""
        raise NotImplementedError

    def iter_search(
        self,
        query: str | SearchQuery = "ALL",
        /,
        *,
        folder: str | None = None,
        batch_size: int | None = None,
        bodies: bool = False,
    ) -> AsyncIterator[ReceivedMessage]:
        """Messages matching `query`, oldest first, fetched `batch_size` at a time."""
        raise NotImplementedError

    async def get(
        self, key: int | str, /, *, folder: str | None = None, timeout: float | None = None
    ) -> ReceivedMessage | None:
        """The message with this id (`message.id`; over IMAP the UID, as a number or text),
        or None when there is none."""
        raise NotImplementedError

    async def folders(self, *, timeout: float | None = None) -> list[Folder]:
        """Every folder of the mailbox."""
        raise NotImplementedError

    async def create_folder(self, name: str, /, *, timeout: float | None = None) -> None:
        """Create a folder (any Unicode name)."""
        raise NotImplementedError

    async def select(self, folder: str, /, *, timeout: float | None = None) -> FolderStatus:
        """Make `folder` the default of later calls; returns what it holds."""
        raise NotImplementedError

    async def fetch_part(
        self,
        message: ReceivedMessage,
        section: str,
        encoding: str,
        /,
        *,
        timeout: float | None = None,
    ) -> bytes:
        """One part of `message`, transfer encoding undone (what `message.text()` uses)."""
        raise NotImplementedError

    # -- acting on messages (ReceivedMessage's actions call these) ----------------------------

    async def set_flags(
        self,
        uids: int | Iterable[int],
        /,
        *,
        add: Iterable[str] = (),
        remove: Iterable[str] = (),
        folder: str | None = None,
        uid_validity: int | None = None,
        timeout: float | None = None,
    ) -> None:
        """Add and remove flags (`\\Seen`, `\\Flagged`, ...) on messages of `folder`.
        With `uid_validity`, nothing changes if the folder was recreated since."""
        raise NotImplementedError

    async def set_labels(
        self,
        uids: int | Iterable[int],
        /,
        *,
        add: Iterable[str] = (),
        remove: Iterable[str] = (),
        folder: str | None = None,
        uid_validity: int | None = None,
        timeout: float | None = None,
    ) -> None:
        """Add and remove labels (IMAP: keywords; Gmail and Graph: labels, categories)."""
        raise NotImplementedError

    async def copy(
        self,
        uids: int | Iterable[int],
        folder: str,
        /,
        *,
        source: str | None = None,
        uid_validity: int | None = None,
        timeout: float | None = None,
    ) -> dict[int, int]:
        """Copy messages into `folder`; returns `{uid: new_uid}` when the server says."""
        raise NotImplementedError

    async def move(
        self,
        uids: int | Iterable[int],
        folder: str,
        /,
        *,
        source: str | None = None,
        uid_validity: int | None = None,
        timeout: float | None = None,
    ) -> dict[int, int]:
        """Move messages into `folder`; returns `{uid: new_uid}` when the server says."""
        raise NotImplementedError

    async def delete(
        self,
        uids: int | Iterable[int],
        /,
        *,
        folder: str | None = None,
        expunge: bool = True,
        uid_validity: int | None = None,
        timeout: float | None = None,
    ) -> None:
        """Delete messages for good (not "move to Trash": use `move()` for that)."""
        raise NotImplementedError

    # -- message hooks: what `ReceivedMessage`'s actions call ------------------------------
    # The defaults use the UID-based methods above (IMAP); Gmail and Graph override them.

    async def change_flags(
        self,
        message: ReceivedMessage,
        /,
        *,
        add: Iterable[str] = (),
        remove: Iterable[str] = (),
        labels: bool = False,
        timeout: float | None = None,
    ) -> None:
        """Add and remove IMAP-style flags (`\\Seen`, `\\Flagged`, `$Important`) or, with
        `labels=True`, labels by name, on `message`."""
        call = self.set_labels if labels else self.set_flags
        await call(message.uid, add=add, remove=remove, folder=message.folder,
                   uid_validity=message.uid_validity, timeout=timeout)  # fmt: skip

    async def mark_answered(
        self, message: ReceivedMessage, /, *, timeout: float | None = None
    ) -> None:
        """Record that `message` was answered (IMAP: the `\\Answered` flag), after a reply
        to it was sent. Providers without such a mark do nothing."""
        await self.change_flags(message, add=["\\Answered"], timeout=timeout)

    async def transfer(
        self, message: ReceivedMessage, folder: str, /, *, move: bool, timeout: float | None = None
    ) -> ReceivedMessage | None:
        """Move (or copy) `message` into `folder`; the message there when the provider says
        where it is, else None."""
        run = self.move if move else self.copy
        moved = await run(message.uid, folder, source=message.folder,
                          uid_validity=message.uid_validity, timeout=timeout)  # fmt: skip
        uid = moved.get(message.uid)
        if uid is None:
            return None
        return message.replace(uid=uid, id=str(uid), folder=folder, uid_validity=None)

    async def discard(
        self, message: ReceivedMessage, /, *, expunge: bool = True, timeout: float | None = None
    ) -> None:
        """Delete `message` for good."""
        await self.delete(message.uid, folder=message.folder, expunge=expunge,
                          uid_validity=message.uid_validity, timeout=timeout)  # fmt: skip

    async def trash(
        self, message: ReceivedMessage, /, *, timeout: float | None = None
    ) -> ReceivedMessage | None:
        """Move `message` to the mailbox's trash: the folder with the special-use flag
        `\\Trash` (RFC 6154), else the one named like a trash folder ("Trash", "Deleted
        Items", "Deleted Messages"); the message there when the provider says where."""
        target = trash_folder(await self.folders(timeout=timeout))
        if target is None:
            raise ProviderError(
                "this mailbox has no trash folder (none flagged \\Trash, none named Trash); "
                "move_to() the folder you use instead",
                provider=self.name,
            )
        return await self.transfer(message, target, move=True, timeout=timeout)

    def batch_mode(self) -> AbstractAsyncContextManager[Any]:
        """`async with mailbox.batch_mode():` send the block's flag changes together."""
        raise NotImplementedError

    def watch(
        self,
        query: str | SearchQuery | None = None,
        *,
        folder: str | None = None,
        idle_timeout: float = 29 * 60,
        poll_interval: float = 30.0,
        since_uid: int | None = None,
        include_existing: bool = False,
        use_idle: bool = True,
    ) -> AsyncGenerator[ReceivedMessage, None]:
        """New messages matching `query` as they arrive, each once, oldest first; runs until
        closed (`contextlib.aclosing()`), reconnecting on drops. `include_existing=True`
        yields the folder's current messages first; `since_uid` starts after that UID.
        Push (IMAP IDLE) when the provider has it, else a check every `poll_interval`."""
        raise NotImplementedError
