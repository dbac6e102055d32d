"""Received messages: what a mailbox search returns, with bodies fetched on demand.

`ReceivedMessage` is a frozen msgspec Struct (it encodes to JSON and back); the mailbox it
came from is bound outside its fields, so `await message.text()` can fetch the text part
and nothing about the connection is ever serialised. A decoded message has no mailbox:
its lazy methods raise `LifecycleError` saying so.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

import msgspec

from xcomm._errors import LifecycleError
from xcomm._models import Address
from xcomm.email._message_actions import MessageActions

if TYPE_CHECKING:
    from xcomm.email._mailbox import MailboxProvider

__all__ = ["AttachmentInfo", "Folder", "MessageView", "PartRef", "ReceivedMessage"]


class AttachmentInfo(msgspec.Struct, frozen=True, kw_only=True):
    """An attachment's metadata, from the message structure (the content is not fetched).

    Attributes:
        filename: the sender's file name (decoded), or None when it gave none.
        content_type: the MIME type, lower case (`application/pdf`).
        size: bytes as stored on the server, transfer-encoded (base64 is about 4/3 of the
            file); a hint for listing, not the file's exact size.
        section: where the part is in the message (IMAP section, e.g. "2" or "1.3").
        encoding: its Content-Transfer-Encoding.
        content_id: the Content-ID of an inline part (`<logo@x>`), when it has one.
        inline: True for parts shown in the body (inline images) rather than attached.
    """

    filename: str | None = None
    content_type: str = "application/octet-stream"
    size: int = 0
    section: str = ""
    encoding: str = ""
    content_id: str | None = None
    inline: bool = False


class Folder(msgspec.Struct, frozen=True, kw_only=True):
    """A mailbox folder: its name (decoded), hierarchy delimiter and flags (`\\HasChildren`,
    `\\Sent`, `\\Noselect`, ...)."""

    name: str
    delimiter: str | None = None
    flags: tuple[str, ...] = ()

    @property
    def selectable(self) -> bool:
        """False for folders that only hold other folders (`\\Noselect`, `\\NonExistent`)."""
        return not {f.lower() for f in self.flags} & {"\\noselect", "\\nonexistent"}


class PartRef(msgspec.Struct, frozen=True, kw_only=True):
    """Where a body part is in its message and how it is encoded (to fetch it later)."""

    section: str
    encoding: str = "7bit"
    charset: str | None = None
    size: int = 0


class ReceivedMessage(msgspec.Struct, MessageActions, frozen=True, kw_only=True, dict=True):
    """A message in a mailbox. Headers and structure are read at search time; the text and
    HTML bodies are fetched only when asked for (`await message.text()`).

    Example:
        ```python
        for message in await imap.search("UNSEEN"):
            print(message.uid, message.sender, message.subject, message.date)
            if message.has_html:
                html = await message.html()
            names = [a.filename for a in message.attachments]
            await message.add_label("Boss")
            await message.download_attachments("downloads/")
            message = await message.mark_as_read()   # the same message, flags updated
        ```

    It stays a frozen value: actions (`mark_as_read`, `add_label`, `move_to`, `delete`,
    `download_attachments`, `reply`, `forward`, ...) are in `_message_actions.py`. Every
    mailbox (IMAP, Gmail, Outlook) returns this one model, so code written against one works
    with the others.

    Attributes:
        id: the provider's id of the message: the UID as text over IMAP, Gmail's message id,
            Graph's message id. Pass it to `provider.get(id)`.
        uid: over IMAP, the message's UID in `folder` (stable while `uid_validity` is
            unchanged); 0 for providers without UIDs.
        thread_id: the provider's conversation id (Gmail `threadId`, Graph `conversationId`);
            None over IMAP.
        preview: a short plain-text extract when the provider computes one (Gmail
            `snippet`, Graph `bodyPreview`); "" over IMAP.
        folder: the folder it was found in (Gmail: "" unless a label was searched).
        uid_validity: the folder's UIDVALIDITY when the message was read.
        message_id: the Message-ID header (`<...>`), when present.
        in_reply_to: Message-IDs of the message this one answers.
        references: Message-IDs of the thread, oldest first.
        sender: the From address ("" when missing or unreadable).
        sender_name: the From display name, decoded.
        to, cc, reply_to: the addresses of those headers.
        subject: the decoded Subject ("" when missing).
        date: the Date header as an aware datetime; None when missing or garbled.
        received_at: when the server got it (IMAP INTERNALDATE), aware.
        flags: IMAP flags and keywords (`\\Seen`, `\\Flagged`, `$Important`, ...).
        size: the whole message in bytes (RFC822.SIZE).
        attachments: attachment metadata from the structure.
        headers: every header field read, by lower-case name (first occurrence; raw values).
    """

    uid: int = 0
    id: str = ""
    thread_id: str | None = None
    preview: str = ""
    folder: str = "INBOX"
    uid_validity: int | None = None
    message_id: str | None = None
    in_reply_to: tuple[str, ...] = ()
    references: tuple[str, ...] = ()
    sender: str = ""
    sender_name: str | None = None
    to: tuple[Address, ...] = ()
    cc: tuple[Address, ...] = ()
    reply_to: tuple[Address, ...] = ()
    subject: str = ""
    date: datetime | None = None
    received_at: datetime | None = None
    flags: tuple[str, ...] = ()
    size: int = 0
    attachments: tuple[AttachmentInfo, ...] = ()
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    text_part: PartRef | None = None
    html_part: PartRef | None = None

    def __post_init__(self) -> None:
        if not self.id and self.uid:
            msgspec.structs.force_setattr(self, "id", str(self.uid))

    @property
    def is_read(self) -> bool:
        """True when the message has the `\\Seen` flag."""
        return any(f.lower() == "\\seen" for f in self.flags)

    @property
    def is_flagged(self) -> bool:
        """True when the message has the `\\Flagged` flag."""
        return any(f.lower() == "\\flagged" for f in self.flags)

    @property
    def has_text(self) -> bool:
        """True when the message has a plain-text body part."""
        return self.text_part is not None

    @property
    def has_html(self) -> bool:
        """True when the message has an HTML body part."""
        return self.html_part is not None

    @property
    def mailbox(self) -> MailboxProvider | None:
        """The provider this message was read from (None for a decoded copy)."""
        found: MailboxProvider | None = self.__dict__.get("_mailbox")
        return found

    def bind(self, mailbox: MailboxProvider) -> ReceivedMessage:
        """Attach the provider that lazy methods fetch through; returns the message."""
        self.__dict__["_mailbox"] = mailbox
        return self

    async def text(self, *, timeout: float | None = None) -> str:
        """The plain-text body, fetched on first use ("" when the message has none)."""
        return await self._body("text", self.text_part, timeout)

    async def html(self, *, timeout: float | None = None) -> str:
        """The HTML body, fetched on first use ("" when the message has none)."""
        return await self._body("html", self.html_part, timeout)

    async def attachment_content(
        self, attachment: AttachmentInfo, /, *, timeout: float | None = None
    ) -> bytes:
        """The decoded bytes of one of this message's attachments (fetched now)."""
        if attachment not in self.attachments:
            raise ValueError("that attachment is not one of this message's attachments")
        return await self._require_mailbox().fetch_part(
            self, attachment.section, attachment.encoding, timeout=timeout
        )

    def cache_body(self, kind: str, value: str) -> None:
        """Keep a body the provider fetched in bulk (`search(bodies=True)`), so `text()` or
        `html()` returns it without a round trip. `kind` is "text" or "html"."""
        self.__dict__[f"_{kind}"] = value

    async def _body(self, kind: str, part: PartRef | None, timeout: float | None) -> str:
        cache: dict[str, Any] = self.__dict__
        if part is None:
            return ""
        key = f"_{kind}"
        if key not in cache:
            raw = await self._require_mailbox().fetch_part(
                self, part.section, part.encoding, timeout=timeout
            )
            from xcomm.email._headers import decode_text

            cache[key] = decode_text(raw, part.charset)
        value: str = cache[key]
        return value

    def _require_mailbox(self) -> MailboxProvider:
        mailbox = self.mailbox
        if mailbox is None:
            raise LifecycleError(
                "this message is not bound to a mailbox (it was decoded or built by hand); "
                "fetch it again with provider.get(message.id) to read its bodies or act on it"
            )
        return mailbox


class _Headers:
    """`HeaderLookup` over a message's headers (lower-case names, first occurrence), values
    decoded from RFC 2047 as the protocol says (IMAP SEARCH HEADER/TEXT match decoded text)."""

    __slots__ = ("_headers",)

    def __init__(self, headers: dict[str, str]) -> None:
        self._headers = headers

    def get_all(self, name: str, /) -> list[str] | None:
        from xcomm.email._headers import decode_words

        value = self._headers.get(name.lower())
        return None if value is None else [decode_words(value)]

    def items(self) -> list[tuple[str, str]]:
        from xcomm.email._headers import decode_words

        return [(name, decode_words(value)) for name, value in self._headers.items()]


class MessageView:
    """A `ReceivedMessage` as `EmailQuery.matches()` reads it (`QueryableMessage`).

    Bodies are fetched lazily on the message, so the caller passes them in when the query
    looks into bodies (`EmailQuery.reads_bodies()`); otherwise they read as empty.
    """

    __slots__ = ("html", "message", "text")

    def __init__(self, message: ReceivedMessage, *, text: str = "", html: str = "") -> None:
        self.message, self.text, self.html = message, text, html

    @property
    def sender(self) -> Address | None:
        m = self.message
        return Address(email=m.sender, name=m.sender_name) if m.sender else None

    @property
    def to(self) -> tuple[Address, ...]:
        return self.message.to

    @property
    def cc(self) -> tuple[Address, ...]:
        return self.message.cc

    @property
    def subject(self) -> str:
        return self.message.subject

    @property
    def headers(self) -> _Headers:
        return _Headers(self.message.headers)

    @property
    def date(self) -> datetime | None:
        return self.message.date

    @property
    def internal_date(self) -> datetime | None:
        return self.message.received_at

    @property
    def size(self) -> int:
        return self.message.size

    @property
    def flags(self) -> frozenset[str]:
        return frozenset(self.message.flags)

    @property
    def labels(self) -> frozenset[str]:
        """IMAP has no labels beyond keywords: the flags that are not system flags."""
        return frozenset(f for f in self.message.flags if not f.startswith("\\"))

    @property
    def attachments(self) -> tuple[str, ...]:
        return tuple(a.filename for a in self.message.attachments if a.filename)

    @property
    def folder(self) -> str:
        return self.message.folder

    @property
    def message_id(self) -> str | None:
        return self.message.message_id

    @property
    def in_reply_to(self) -> str | None:
        return self.message.in_reply_to[0] if self.message.in_reply_to else None

    @property
    def references(self) -> tuple[str, ...]:
        return self.message.references

    @property
    def thread_id(self) -> str | None:
        return self.message.thread_id
