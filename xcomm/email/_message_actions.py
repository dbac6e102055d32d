"""What you can do with a received message: `ReceivedMessage`'s awaitable actions.

`ReceivedMessage` stays a frozen value. Each action asks the mailbox the message is bound
to (`message.mailbox`) to act through its message hooks (`change_flags`, `transfer`,
`discard`, `fetch_part`: each provider maps them to its own API), and:

- flag and label changes return a new `ReceivedMessage` with the flags as they now are
  (`message = await message.mark_as_read()`); the old value is unchanged;
- `move_to()`, `copy_to()` and `trash()` return the message in its new folder when the
  provider says where it is (IMAP UIDPLUS, Gmail's and Graph's answers), else None;
  `delete()` returns None;
- `download_attachments()` and `save_attachment()` return the paths written;
- `reply()`, `reply_all()` and `forward()` return an `EmailDraft` of the sending provider
  you pass, ready to change or `send()`.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import anyio.to_thread
import msgspec

from xcomm.email._safe_names import (
    attachment_names,
    check_free,
    destination,
    safe_filename,
    target_directory,
    write_file,
)

if TYPE_CHECKING:
    from xcomm.email._base import EmailProvider
    from xcomm.email._compose import AddressLike, EmailDraft
    from xcomm.email._message import AttachmentInfo, ReceivedMessage

__all__ = ["MessageActions"]


class MessageActions:
    """Awaitable actions of `ReceivedMessage` (a mixin; see the module docstring)."""

    __slots__ = ()

    @property
    def _message(self) -> ReceivedMessage:
        return cast("ReceivedMessage", self)

    @property
    def labels(self) -> tuple[str, ...]:
        """The message's labels: over IMAP, its keywords (flags without a leading `\\`)."""
        return tuple(f for f in self._message.flags if not f.startswith("\\"))

    # -- flags and labels ------------------------------------------------------------------

    async def mark_as_read(self, *, timeout: float | None = None) -> ReceivedMessage:
        """Add `\\Seen`; returns the message with its new flags."""
        return await self._flags(["\\Seen"], [], labels=False, timeout=timeout)

    async def mark_as_unread(self, *, timeout: float | None = None) -> ReceivedMessage:
        """Remove `\\Seen`; returns the message with its new flags."""
        return await self._flags([], ["\\Seen"], labels=False, timeout=timeout)

    async def mark_as_important(self, *, timeout: float | None = None) -> ReceivedMessage:
        """Add `\\Flagged` (a star in most clients); returns the message with its new flags."""
        return await self._flags(["\\Flagged"], [], labels=False, timeout=timeout)

    async def mark_as_unimportant(self, *, timeout: float | None = None) -> ReceivedMessage:
        """Remove `\\Flagged`; returns the message with its new flags."""
        return await self._flags([], ["\\Flagged"], labels=False, timeout=timeout)

    async def add_label(self, name: str, /, *, timeout: float | None = None) -> ReceivedMessage:
        """Add a label (over IMAP, the keyword `name`: ASCII, no spaces; a name IMAP cannot
        store raises `ValidationError` suggesting one it can)."""
        return await self._flags([name], [], labels=True, timeout=timeout)

    async def remove_label(self, name: str, /, *, timeout: float | None = None) -> ReceivedMessage:
        """Remove a label; returns the message with its new flags."""
        return await self._flags([], [name], labels=True, timeout=timeout)

    async def _flags(
        self, add: list[str], remove: list[str], *, labels: bool, timeout: float | None
    ) -> ReceivedMessage:
        m = self._message
        await m._require_mailbox().change_flags(
            m, add=add, remove=remove, labels=labels, timeout=timeout
        )
        gone = {f.lower() for f in remove}
        kept = [f for f in m.flags if f.lower() not in gone]
        have = {f.lower() for f in kept}
        flags = (*kept, *(f for f in add if f.lower() not in have))
        return self.replace(flags=flags)

    def replace(self, **changes: Any) -> ReceivedMessage:
        """A copy with `changes` to its fields, bound to the same mailbox, with what was
        already fetched kept (bodies, a provider's cached parts): what providers return
        after an action changes a message."""
        m = self._message
        new = msgspec.structs.replace(m, **changes)
        new.__dict__.update(m.__dict__)  # the same content: keep what was fetched
        return new

    # -- folders -------------------------------------------------------------------------

    async def move_to(
        self, folder: str, /, *, timeout: float | None = None
    ) -> ReceivedMessage | None:
        """Move the message into `folder`; returns it there when the server reports its new
        UID, else None. An unknown folder raises `ProviderError` and nothing moves."""
        return await self._transfer("move", folder, timeout)

    async def copy_to(
        self, folder: str, /, *, timeout: float | None = None
    ) -> ReceivedMessage | None:
        """Copy the message into `folder`; returns the copy when the server reports its UID."""
        return await self._transfer("copy", folder, timeout)

    async def _transfer(
        self, operation: str, folder: str, timeout: float | None
    ) -> ReceivedMessage | None:
        m = self._message
        return await m._require_mailbox().transfer(
            m, folder, move=operation == "move", timeout=timeout
        )

    async def delete(self, *, expunge: bool = True, timeout: float | None = None) -> None:
        """Delete the message for good (IMAP: `\\Deleted` and UID EXPUNGE of this message
        only, `expunge=False` only flags it; Gmail: `messages.delete`). To keep it in the
        trash, `trash()` instead."""
        m = self._message
        await m._require_mailbox().discard(m, expunge=expunge, timeout=timeout)

    async def trash(self, *, timeout: float | None = None) -> ReceivedMessage | None:
        """Move the message to the mailbox's trash (IMAP: the `\\Trash` special-use
        folder, or one named Trash; Gmail: `messages.trash`); returns it there when the
        provider says where, else None."""
        m = self._message
        return await m._require_mailbox().trash(m, timeout=timeout)

    # -- attachments -----------------------------------------------------------------------

    async def download_attachments(
        self,
        directory: str | os.PathLike[str],
        /,
        *,
        overwrite: bool = False,
        include_inline: bool = False,
        timeout: float | None = None,
    ) -> list[Path]:
        """Save the attachments into `directory` (created if missing) under safe names.

        Sender-chosen names are made safe (`../../etc/passwd` → `passwd`, `CON.txt` →
        `_CON.txt`, none → `attachment-1.pdf`); repeats get ` (1)`, ` (2)`. Files are only
        ever written inside `directory`, never through a symbolic link. Inline images are
        skipped unless `include_inline=True`.

        Returns:
            The paths written, in the order of `message.attachments`.

        Raises:
            FileAlreadyExists: a file of that name is there and `overwrite` is False; this
                is checked for every attachment before anything is fetched or written.
        """
        m = self._message
        chosen = [a for a in m.attachments if include_inline or not a.inline]
        names = attachment_names(chosen)
        folder = await anyio.to_thread.run_sync(target_directory, directory)
        if not overwrite:
            await anyio.to_thread.run_sync(check_free, folder, names)
        written = []
        for attachment, name in zip(chosen, names, strict=True):
            data = await m.attachment_content(attachment, timeout=timeout)
            write = functools.partial(write_file, folder, name, data, overwrite=overwrite)
            written.append(await anyio.to_thread.run_sync(write))
        return written

    async def save_attachment(
        self,
        attachment: AttachmentInfo,
        path: str | os.PathLike[str],
        /,
        *,
        overwrite: bool = False,
        timeout: float | None = None,
    ) -> Path:
        """Save one attachment: into `path` when it is a folder (or ends with `/`), under
        its safe name; else as the file `path` names (your choice of name, used as given).

        Raises:
            FileAlreadyExists: the file exists and `overwrite` is False.
        """
        m = self._message
        data = await m.attachment_content(attachment, timeout=timeout)
        index = 1 + m.attachments.index(attachment)
        name = safe_filename(attachment.filename, index=index, content_type=attachment.content_type)
        where = functools.partial(destination, path, name)
        folder, name = await anyio.to_thread.run_sync(where)
        write = functools.partial(write_file, folder, name, data, overwrite=overwrite)
        return await anyio.to_thread.run_sync(write)

    # -- replying and forwarding ---------------------------------------------------------

    async def reply(
        self,
        via: EmailProvider,
        body: str = "",
        /,
        *,
        html: str | None = None,
        quote: bool = True,
        timeout: float | None = None,
    ) -> EmailDraft:
        """A reply draft sent through `via`: To = Reply-To or From, `Re:` subject,
        In-Reply-To and References, and (with `quote`) the original text quoted below
        `body`. Change it like any draft, then `await draft.send()`."""
        from xcomm.email._reply import reply_draft

        return await reply_draft(self._message, via, body, html=html, include_quote=quote,
                                 reply_all=False, timeout=timeout)  # fmt: skip

    async def reply_all(
        self,
        via: EmailProvider,
        body: str = "",
        /,
        *,
        html: str | None = None,
        quote: bool = True,
        timeout: float | None = None,
    ) -> EmailDraft:
        """Like `reply()`, also to the original To and Cc, less the sending account (the
        provider's default sender and the mailbox's user name)."""
        from xcomm.email._reply import reply_draft

        return await reply_draft(self._message, via, body, html=html, include_quote=quote,
                                 reply_all=True, timeout=timeout)  # fmt: skip

    async def forward(
        self,
        via: EmailProvider,
        to: AddressLike | Iterable[AddressLike],
        body: str = "",
        /,
        *,
        html: str | None = None,
        attachments: bool = True,
        timeout: float | None = None,
    ) -> EmailDraft:
        """A draft forwarding the message to `to` through `via`: `Fwd:` subject, the
        original's headers and text below `body`, its attachments attached again."""
        from xcomm.email._reply import forward_draft

        return await forward_draft(self._message, via, to, body, html=html,
                                   attachments=attachments, timeout=timeout)  # fmt: skip
