"""`EmailQuery.matches()`: the query evaluated locally, with RFC 3501 SEARCH semantics.

The provider-side compilers return a *superset* of what `matches()` accepts wherever they cannot
express a condition exactly, and the provider filters the candidates with `matches()`; so this
module is the reference meaning of every condition:

- FROM / TO / CC / SUBJECT / BODY / TEXT / HEADER: case-insensitive substring with the
  `i;unicode-casemap` collation of RFC 5051/5255 (`_casemap.py`: simple titlecase, then
  decomposition; so "CAFE" is in "café", but "ss" is not in "ß"). Addresses are matched
  against their rendering `Name <addr>` (or `addr`), joined with `", "` when there are
  several. BODY looks in the text and HTML bodies; TEXT also looks in every header line
  `Name: value`. `HEADER name ""` holds when the header is present.
- SINCE / BEFORE (received): the message's internal date converted to UTC, taken as a day;
  SINCE is `>=`, BEFORE is `<`. (An IMAP server compares in its own timezone: run it in UTC.)
- SENTSINCE / SENTBEFORE: the Date header's day *as written in it* (its own offset), which is
  what RFC 3501 means by "disregarding time and timezone".
- LARGER / SMALLER: strict `>` / `<` on the RFC822.SIZE.
- Flags and keywords: case-insensitive membership in `flags`; labels: case-insensitive
  membership in `labels`; folder: equality (`INBOX` in any case), or the view's own
  `in_folder(name)` when it has one (Gmail: a label the message has).
- A missing value (no internal date, no size, no Date header) never satisfies a comparison.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence, Set
from datetime import UTC, date, datetime
from typing import Protocol

from xcomm._models import Address
from xcomm.email._casemap import casemap
from xcomm.email._query_ast import (
    And,
    AttachmentName,
    Body,
    Cc,
    Flag,
    Folder,
    From,
    HasAttachment,
    Header,
    Label,
    Larger,
    MessageId,
    Node,
    Not,
    Or,
    Priority,
    PriorityLevel,
    ReceivedBefore,
    ReceivedSince,
    SentBefore,
    SentSince,
    Smaller,
    Subject,
    Text,
    Thread,
    To,
)

__all__ = ["HeaderLookup", "QueryableMessage", "evaluate", "priority_of"]


class HeaderLookup(Protocol):
    """Read access to a message's decoded headers (names case-insensitive)."""

    def get_all(self, name: str, /) -> Sequence[str] | None:
        """Every value of header `name`, in order; empty or None when absent."""
        ...

    def items(self) -> Iterable[tuple[str, str]]:
        """Every header as `(name, decoded value)`, in order."""
        ...


class QueryableMessage(Protocol):
    """What a received message exposes to `EmailQuery.matches()`.

    Providers' message models implement it. Flags are IMAP-style: `\\Seen`, `\\Answered`,
    `\\Flagged`, `\\Deleted`, `\\Draft`, and keywords such as `$Important` (Gmail and Graph
    models map their read/starred/important state onto these).
    """

    @property
    def sender(self) -> Address | str | None: ...
    @property
    def to(self) -> Sequence[Address | str]: ...
    @property
    def cc(self) -> Sequence[Address | str]: ...
    @property
    def subject(self) -> str | None: ...
    @property
    def text(self) -> str | None: ...
    @property
    def html(self) -> str | None: ...
    @property
    def headers(self) -> HeaderLookup: ...
    @property
    def date(self) -> datetime | None: ...
    @property
    def internal_date(self) -> datetime | None: ...
    @property
    def size(self) -> int | None: ...
    @property
    def flags(self) -> Set[str]: ...
    @property
    def labels(self) -> Set[str]: ...
    @property
    def attachments(self) -> Sequence[str]: ...
    @property
    def folder(self) -> str | None: ...
    @property
    def message_id(self) -> str | None: ...
    @property
    def in_reply_to(self) -> str | None: ...
    @property
    def references(self) -> Sequence[str]: ...
    @property
    def thread_id(self) -> str | None: ...


def _has(haystack: str | None, needle: str) -> bool:
    return haystack is not None and casemap(needle) in casemap(haystack)


def _addresses(values: Iterable[Address | str | None]) -> str:
    return ", ".join(str(v) for v in values if v is not None)


def _received_day(message: QueryableMessage) -> date | None:
    when = message.internal_date
    if when is None:
        return None
    if when.tzinfo is not None:
        when = when.astimezone(UTC)
    return when.date()


def _sent_day(message: QueryableMessage) -> date | None:
    when = message.date
    return None if when is None else when.date()


def _header_values(message: QueryableMessage, name: str) -> Sequence[str]:
    return message.headers.get_all(name) or ()


def priority_of(message: QueryableMessage) -> PriorityLevel:
    """The priority the headers state.

    High when `X-Priority` starts with 1 or 2, or `Importance` / `X-MSMail-Priority` is
    `high`; otherwise low when `X-Priority` starts with 4 or 5, or one of those is `low`;
    otherwise normal.
    """
    x_priority = [v.strip()[:1] for v in _header_values(message, "X-Priority")]
    words = [
        v.strip().casefold()
        for name in ("Importance", "X-MSMail-Priority")
        for v in _header_values(message, name)
    ]
    if any(d in ("1", "2") for d in x_priority) or "high" in words:
        return "high"
    if any(d in ("4", "5") for d in x_priority) or "low" in words:
        return "low"
    return "normal"


def _norm_id(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    if value.startswith("<") and value.endswith(">"):
        value = value[1:-1].strip()
    return value


def _in_folder(message: QueryableMessage, name: str) -> bool:
    """Whether the message is in folder `name`. A view of a mailbox where a message sits in
    several folders at once (Gmail's labels) answers with its own `in_folder(name)`."""
    check = getattr(message, "in_folder", None)
    if check is not None:
        return bool(check(name))
    folder = message.folder
    if folder is None:
        return False
    if name.upper() == "INBOX":
        return folder.upper() == "INBOX"
    return folder == name


def evaluate(node: Node, message: QueryableMessage) -> bool:
    """Whether `message` satisfies the condition tree, with the semantics above."""
    match node:
        case And(items):
            return all(evaluate(i, message) for i in items)
        case Or(items):
            return any(evaluate(i, message) for i in items)
        case Not(item):
            return not evaluate(item, message)
        case From(v):
            return _has(_addresses([message.sender]), v)
        case To(v):
            return _has(_addresses(message.to), v)
        case Cc(v):
            return _has(_addresses(message.cc), v)
        case Subject(v):
            return _has(message.subject, v)
        case Body(v):
            return _has(message.text, v) or _has(message.html, v)
        case Text(v):
            return (
                _has(message.text, v)
                or _has(message.html, v)
                or any(_has(f"{n}: {value}", v) for n, value in message.headers.items())
            )
        case Header(name, value):
            values = _header_values(message, name)
            return any(_has(h, value) for h in values) if value else bool(values)
        case HasAttachment():
            return bool(message.attachments)
        case AttachmentName(v):
            return any(_has(name, v) for name in message.attachments)
        case ReceivedSince(d):
            day = _received_day(message)
            return day is not None and day >= d
        case ReceivedBefore(d):
            day = _received_day(message)
            return day is not None and day < d
        case SentSince(d):
            day = _sent_day(message)
            return day is not None and day >= d
        case SentBefore(d):
            day = _sent_day(message)
            return day is not None and day < d
        case Flag(name):
            wanted = name.casefold()
            return any(f.casefold() == wanted for f in message.flags)
        case Label(name):
            wanted = name.casefold()
            return any(label.casefold() == wanted for label in message.labels)
        case Folder(name):
            return _in_folder(message, name)
        case Larger(n):
            return message.size is not None and message.size > n
        case Smaller(n):
            return message.size is not None and message.size < n
        case Priority(level):
            return priority_of(message) == level
        case MessageId(v):
            return _norm_id(message.message_id) == v
        case Thread(v):
            return message.thread_id == v
    raise AssertionError(node)  # pragma: no cover
