"""The data that crosses xcomm's boundaries: frozen, keyword-only msgspec Structs.

New fields always get defaults, so records persisted by an older version still decode.
Tags (`kind`) are public and never renamed.
"""

from __future__ import annotations

from datetime import datetime

import msgspec

from xcomm._errors import RejectedRecipient

__all__ = [
    "Address",
    "Attachment",
    "Contact",
    "EmailMessage",
    "RejectedRecipient",
    "SendResult",
]


class Address(msgspec.Struct, frozen=True, kw_only=True):
    """An email address with an optional display name.

    Build one from user text with `Address.parse("Ada <ada@example.com>")`, which validates
    it; the constructor itself trusts its input.
    """

    email: str
    name: str | None = None

    @classmethod
    def parse(cls, value: str | Address) -> Address:
        """Parse `"addr"`, `"Name <addr>"` or `'"Last, First" <addr>'`; raise `ValidationError`."""
        from xcomm._validation import parse_address

        return value if isinstance(value, Address) else parse_address(value)

    @property
    def domain(self) -> str:
        """The part after the last "@"."""
        return self.email.rpartition("@")[2]

    def __str__(self) -> str:
        if not self.name:
            return self.email
        from xcomm._validation import quote_display_name

        return f"{quote_display_name(self.name)} <{self.email}>"


class Attachment(msgspec.Struct, frozen=True, kw_only=True):
    """A file carried by a message: its bytes, or a path read when the message is sent.

    `inline=True` with a `content_id` makes it an inline part that HTML refers to as
    `cid:<content_id>`.
    """

    filename: str
    content_type: str = "application/octet-stream"
    content: bytes | None = None
    path: str | None = None
    size: int = 0
    inline: bool = False
    content_id: str | None = None


class EmailMessage(msgspec.Struct, frozen=True, kw_only=True, tag="email", tag_field="kind"):
    """An outgoing email, validated and ready to render. Built by `provider.compose()`.

    `thread_id` is the sending provider's conversation id (Gmail's `threadId`): Gmail files
    the message in that thread when its References/In-Reply-To and subject match it too.
    Providers that thread by headers alone (SMTP, SES) ignore it. Replies set it.
    """

    sender: Address | None = None
    to: tuple[Address, ...] = ()
    cc: tuple[Address, ...] = ()
    bcc: tuple[Address, ...] = ()
    reply_to: tuple[Address, ...] = ()
    subject: str = ""
    text: str | None = None
    html: str | None = None
    attachments: tuple[Attachment, ...] = ()
    headers: tuple[tuple[str, str], ...] = ()
    message_id: str | None = None
    date: datetime | None = None
    thread_id: str | None = None

    @property
    def recipients(self) -> tuple[Address, ...]:
        """Every envelope recipient (to, cc and bcc), without duplicates, in order."""
        seen: set[str] = set()
        out: list[Address] = []
        for addr in (*self.to, *self.cc, *self.bcc):
            key = addr.email.lower()
            if key not in seen:
                seen.add(key)
                out.append(addr)
        return tuple(out)


class SendResult(msgspec.Struct, frozen=True, kw_only=True):
    """What a successful send returns.

    Attributes:
        message_id: the provider's id for the message (SMTP: the Message-ID header).
        provider: the provider name.
        accepted: recipients the provider accepted.
        rejected: recipients it refused (the message still went to the accepted ones).
        attempts: how many attempts it took (1 when the first one worked).
        duration: seconds from the first attempt to the answer, limiter waits included.
        status: the provider's status code for the final answer (HTTP status, SMTP reply).
        scheduled_for: for a draft sent with `.schedule(when)`: when it will go out (it is in
            the outbox, not sent yet; `accepted` is empty).
    """

    message_id: str | None
    provider: str
    accepted: tuple[str, ...] = ()
    rejected: tuple[RejectedRecipient, ...] = ()
    attempts: int = 1
    duration: float = 0.0
    status: int | None = None
    scheduled_for: datetime | None = None

    @property
    def ok(self) -> bool:
        """True when nobody was rejected."""
        return not self.rejected


class Contact(msgspec.Struct, frozen=True):
    """A person reachable on one or more channels.

    Example:
        `Contact("Jane Smith", "jane@example.com", "+15555550100")`
    """

    name: str
    email: str | None = None
    phone: str | None = None
    socket_id: str | None = None
    groups: tuple[str, ...] = ()
    metadata: dict[str, str] = msgspec.field(default_factory=dict)
