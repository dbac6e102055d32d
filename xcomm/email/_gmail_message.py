"""A message found by a Gmail search (`users.messages.get`, `format=metadata`), and its codec.

`parse_message(answer)` is pure: it turns Gmail's JSON into a `GmailMessage`. `GmailView`
is how `EmailQuery.matches()` reads one (labels become IMAP-style flags).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec

from xcomm._models import Address
from xcomm.email._headers import decode_words, message_ids, parse_addresses, parse_date

__all__ = ["METADATA_HEADERS", "GmailMessage", "GmailView", "parse_message"]

#: Headers a search asks for when the query needs no others.
METADATA_HEADERS = ("From", "To", "Cc", "Subject", "Date", "Message-ID")


class GmailMessage(msgspec.Struct, frozen=True, kw_only=True):
    """One Gmail message's metadata: ids, labels, snippet and headers (no bodies).

    Example:
        ```python
        for message in await gmail.search(EmailQuery.from_("bob@example.com").unread()):
            print(message.id, message.sender, message.subject, message.date, message.snippet)
        ```

    Attributes:
        id: Gmail's message id (what `users.messages.*` calls take).
        thread_id: the conversation it belongs to.
        label_ids: `INBOX`, `UNREAD`, `STARRED`, user label ids (`Label_12`), ...
        snippet: a short plain-text extract Gmail computed.
        size: Gmail's `sizeEstimate` in bytes.
        received_at: Gmail's `internalDate` (when it was received), aware UTC.
        headers: the header fields returned, as (name, raw value) in order.
    """

    id: str
    thread_id: str = ""
    label_ids: tuple[str, ...] = ()
    snippet: str = ""
    size: int = 0
    received_at: datetime | None = None
    headers: tuple[tuple[str, str], ...] = ()

    def header(self, name: str) -> str | None:
        """The first value of header `name` (case-insensitive), decoded; None when absent."""
        wanted = name.lower()
        for key, value in self.headers:
            if key.lower() == wanted:
                return decode_words(value)
        return None

    @property
    def sender(self) -> Address | None:
        """The From address, when present and readable."""
        found = parse_addresses(self.header("From"))
        return found[0] if found else None

    @property
    def to(self) -> tuple[Address, ...]:
        return parse_addresses(self.header("To"))

    @property
    def cc(self) -> tuple[Address, ...]:
        return parse_addresses(self.header("Cc"))

    @property
    def subject(self) -> str:
        return self.header("Subject") or ""

    @property
    def date(self) -> datetime | None:
        """The Date header, aware; None when missing or garbled."""
        return parse_date(self.header("Date"))

    @property
    def message_id(self) -> str | None:
        return self.header("Message-ID")

    @property
    def unread(self) -> bool:
        return "UNREAD" in self.label_ids


def parse_message(answer: dict[str, Any]) -> GmailMessage:
    """A `GmailMessage` from a `users.messages.get` answer (format `metadata` or `full`)."""
    payload = answer.get("payload") or {}
    headers = tuple(
        (str(h.get("name", "")), str(h.get("value", "")))
        for h in payload.get("headers") or ()
        if isinstance(h, dict)
    )
    received = None
    internal = answer.get("internalDate")
    if isinstance(internal, str) and internal.isdigit():
        received = datetime.fromtimestamp(int(internal) / 1000, UTC)
    size = answer.get("sizeEstimate")
    return GmailMessage(
        id=str(answer["id"]),
        thread_id=str(answer.get("threadId") or ""),
        label_ids=tuple(str(label) for label in answer.get("labelIds") or ()),
        snippet=str(answer.get("snippet") or ""),
        size=size if isinstance(size, int) else 0,
        received_at=received,
        headers=headers,
    )


_FLAG_LABELS = {"STARRED": "\\Flagged", "IMPORTANT": "$Important", "DRAFT": "\\Draft"}


class _Headers:
    __slots__ = ("_message",)

    def __init__(self, message: GmailMessage) -> None:
        self._message = message

    def get_all(self, name: str, /) -> list[str]:
        wanted = name.lower()
        return [decode_words(v) for k, v in self._message.headers if k.lower() == wanted]

    def items(self) -> list[tuple[str, str]]:
        return [(k, decode_words(v)) for k, v in self._message.headers]


class GmailView:
    """A `GmailMessage` as `EmailQuery.matches()` reads it (`QueryableMessage`).

    Bodies are not fetched by a metadata search: they read as empty.
    """

    __slots__ = ("message",)

    text = ""
    html = ""
    attachments: tuple[str, ...] = ()
    folder = None

    def __init__(self, message: GmailMessage) -> None:
        self.message = message

    @property
    def sender(self) -> Address | None:
        return self.message.sender

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
        return _Headers(self.message)

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
        labels = self.message.label_ids
        flags = {_FLAG_LABELS[label] for label in labels if label in _FLAG_LABELS}
        if "UNREAD" not in labels:
            flags.add("\\Seen")
        return frozenset(flags)

    @property
    def labels(self) -> frozenset[str]:
        return frozenset(self.message.label_ids)

    @property
    def message_id(self) -> str | None:
        return self.message.message_id

    @property
    def thread_id(self) -> str | None:
        return self.message.thread_id or None

    @property
    def in_reply_to(self) -> str | None:
        return self.message.header("In-Reply-To")

    @property
    def references(self) -> tuple[str, ...]:
        return message_ids(self.message.header("References"))
