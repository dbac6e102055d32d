"""The condition tree behind `EmailQuery`: frozen msgspec Structs, validated on the way in.

A condition is a leaf (`From`, `Subject`, `Flag`, `ReceivedSince`, ...) or a combination
(`And`, `Or`, `Not`). `And(())` is "every message" and `Or(())` is "no message". The tree is
plain data: it encodes to JSON with `msgspec.json.encode` and decodes back with `NODE_DECODER`,
so rules built from queries can be stored.

Every constructor helper here checks its input and raises `ValidationError` with a message that
says how to fix it; the Structs themselves trust their fields.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Literal, TypeAlias

import msgspec

from xcomm._errors import ValidationError

__all__ = [
    "And",
    "AttachmentName",
    "Body",
    "Cc",
    "Flag",
    "Folder",
    "From",
    "HasAttachment",
    "Header",
    "Label",
    "Larger",
    "Leaf",
    "MessageId",
    "Node",
    "Not",
    "Or",
    "Priority",
    "ReceivedBefore",
    "ReceivedSince",
    "SentBefore",
    "SentSince",
    "Smaller",
    "Subject",
    "Text",
    "Thread",
    "To",
    "and_",
    "describe",
    "not_",
    "or_",
]

PriorityLevel: TypeAlias = Literal["high", "normal", "low"]


class _Cond(msgspec.Struct, frozen=True, tag_field="op", tag=str.lower):
    pass


class From(_Cond, frozen=True):
    """From header contains `value` (case-insensitive substring)."""

    value: str


class To(_Cond, frozen=True):
    """To header contains `value`."""

    value: str


class Cc(_Cond, frozen=True):
    """Cc header contains `value`."""

    value: str


class Subject(_Cond, frozen=True):
    """Subject contains `value`."""

    value: str


class Body(_Cond, frozen=True):
    """The text or HTML body contains `value`."""

    value: str


class Text(_Cond, frozen=True):
    """A header line or the body contains `value`."""

    value: str


class Header(_Cond, frozen=True):
    """Header `name` is present and contains `value` ("" means present)."""

    name: str
    value: str = ""


class HasAttachment(_Cond, frozen=True):
    """The message has at least one attachment."""


class AttachmentName(_Cond, frozen=True):
    """An attachment's file name contains `value`."""

    value: str


class ReceivedSince(_Cond, frozen=True):
    """Internal (received) date, as a UTC day, is on or after `day`."""

    day: date


class ReceivedBefore(_Cond, frozen=True):
    """Internal (received) date, as a UTC day, is before `day`."""

    day: date


class SentSince(_Cond, frozen=True):
    """Date header, as the day written in it, is on or after `day`."""

    day: date


class SentBefore(_Cond, frozen=True):
    """Date header, as the day written in it, is before `day`."""

    day: date


class Flag(_Cond, frozen=True):
    """The message carries the flag (`\\Seen`, `\\Flagged`, ...) or keyword (`$Important`)."""

    name: str


class Label(_Cond, frozen=True):
    """The message carries the label (Gmail label, Graph category)."""

    name: str


class Folder(_Cond, frozen=True):
    """The message is in the folder (IMAP mailbox, Gmail `in:`, Graph mail folder)."""

    name: str


class Larger(_Cond, frozen=True):
    """RFC822.SIZE is strictly greater than `size` bytes."""

    size: int


class Smaller(_Cond, frozen=True):
    """RFC822.SIZE is strictly less than `size` bytes."""

    size: int


class Priority(_Cond, frozen=True):
    """The priority headers say `level` (see `EmailQuery.priority`)."""

    level: PriorityLevel


class MessageId(_Cond, frozen=True):
    """Message-ID equals `value` (without angle brackets)."""

    value: str


class Thread(_Cond, frozen=True):
    """The provider's thread/conversation id equals `value`."""

    value: str


class And(_Cond, frozen=True):
    """Every item holds; `And(())` holds for every message."""

    items: tuple[Node, ...] = ()


class Or(_Cond, frozen=True):
    """At least one item holds; `Or(())` holds for no message."""

    items: tuple[Node, ...] = ()


class Not(_Cond, frozen=True):
    """The item does not hold."""

    item: Node


Leaf: TypeAlias = (
    From
    | To
    | Cc
    | Subject
    | Body
    | Text
    | Header
    | HasAttachment
    | AttachmentName
    | ReceivedSince
    | ReceivedBefore
    | SentSince
    | SentBefore
    | Flag
    | Label
    | Folder
    | Larger
    | Smaller
    | Priority
    | MessageId
    | Thread
)
Node: TypeAlias = Leaf | And | Or | Not

NODE_DECODER: msgspec.json.Decoder[Node] = msgspec.json.Decoder(Node)

TRUE = And(())
FALSE = Or(())


def and_(*items: Node) -> Node:
    """Conjunction, flattened; a single item is returned as it is."""
    flat: list[Node] = []
    for item in items:
        flat.extend(item.items if isinstance(item, And) else (item,))
    return flat[0] if len(flat) == 1 else And(tuple(flat))


def or_(*items: Node) -> Node:
    """Disjunction, flattened; a single item is returned as it is."""
    flat: list[Node] = []
    for item in items:
        flat.extend(item.items if isinstance(item, Or) else (item,))
    return flat[0] if len(flat) == 1 else Or(tuple(flat))


def not_(item: Node) -> Node:
    """Negation; a double negation cancels."""
    return item.item if isinstance(item, Not) else Not(item)


# ---- validation -------------------------------------------------------------------------

_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f]")
_HEADER_NAME = re.compile(r"[!-9;-~]{1,76}")  # printable ASCII without ':' and space
_ATOM_SPECIALS = re.compile(r'[(){ %*"\\\]\x00-\x1f\x7f-\U0010ffff]')
SYSTEM_FLAGS = {
    "\\seen": "\\Seen",
    "\\answered": "\\Answered",
    "\\flagged": "\\Flagged",
    "\\deleted": "\\Deleted",
    "\\draft": "\\Draft",
}
SORT_FIELDS = ("date", "sent", "size", "subject", "from")


def check_text(what: str, value: object) -> str:
    """A search string: a non-empty str without line breaks or control characters."""
    if not isinstance(value, str):
        raise ValidationError(f"{what} takes a str, not {type(value).__name__}")
    if not value:
        raise ValidationError(f"{what} needs a non-empty string")
    if _CONTROL.search(value):
        raise ValidationError(
            f"{what} got {value!r}: search strings cannot contain line breaks or control "
            "characters (tabs are fine)"
        )
    return value


def check_header(name: object, value: object) -> tuple[str, str]:
    if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
        raise ValidationError(
            f"header() got the name {name!r}: use 1 to 76 printable ASCII characters without "
            "':' or spaces, e.g. 'X-Campaign-Id'"
        )
    if not isinstance(value, str):
        raise ValidationError(f"header() takes a str value, not {type(value).__name__}")
    if _CONTROL.search(value):
        raise ValidationError(f"header() got the value {value!r}: no line breaks or controls")
    return name, value


def check_size(what: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(f"{what} takes a size in bytes (an int), not {value!r}")
    if value < 0:
        raise ValidationError(f"{what} got {value}: a size cannot be negative")
    return value


def check_flag(value: object) -> str:
    """A system flag (`\\Seen`, case-insensitive, returned canonical) or an IMAP keyword atom."""
    if not isinstance(value, str) or not value:
        raise ValidationError(f"has_flag() takes a non-empty str, not {value!r}")
    if value.startswith("\\"):
        canonical = SYSTEM_FLAGS.get(value.lower())
        if canonical is None:
            raise ValidationError(
                f"unknown system flag {value!r}: use one of {', '.join(SYSTEM_FLAGS.values())} "
                "or a keyword such as '$Important'"
            )
        return canonical
    if _ATOM_SPECIALS.search(value):
        raise ValidationError(
            f"keyword {value!r} is not an IMAP atom: use ASCII letters, digits and '$-_.' only"
        )
    return value


def check_message_id(value: object) -> str:
    text = check_text("message_id()", value).strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1].strip()
    if not text or any(c.isspace() or c in "<>" for c in text):
        raise ValidationError(f"message_id() got {value!r}: expected e.g. '<id@example.com>'")
    return text


def to_day(what: str, value: object) -> date:
    """A `date`, an aware `datetime` (taken as its UTC day) or an ISO 8601 string."""
    if isinstance(value, str):
        text = value.strip()
        try:
            parsed: date = (
                date.fromisoformat(text)
                if len(text) == 10
                else datetime.fromisoformat(text.replace("Z", "+00:00"))
            )
        except ValueError:
            raise ValidationError(
                f"{what} got {value!r}: use an ISO date like '2024-05-31' or an ISO time "
                "with an offset like '2024-05-31T09:00:00+00:00'"
            ) from None
        value = parsed
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValidationError(
                f"{what} got the naive datetime {value!r}: attach a timezone, e.g. "
                "datetime.now(timezone.utc), or pass a date"
            )
        return value.astimezone(UTC).date()
    if isinstance(value, date):
        return value
    raise ValidationError(f"{what} takes a date, an aware datetime or an ISO string, not {value!r}")


def next_day(day: date) -> date:
    return day + timedelta(days=1)


# ---- description ------------------------------------------------------------------------


def describe(node: Node) -> str:
    """One readable line for a condition, e.g. `from ~ "alice" and not flag \\Seen`."""
    return _describe(node, top=True)


def _describe(node: Node, *, top: bool) -> str:
    if isinstance(node, And):
        if not node.items:
            return "every message"
        text = " and ".join(_describe(i, top=False) for i in node.items)
        return text if top else f"({text})"
    if isinstance(node, Or):
        if not node.items:
            return "no message"
        text = " or ".join(_describe(i, top=False) for i in node.items)
        return text if top else f"({text})"
    if isinstance(node, Not):
        return f"not {_describe(node.item, top=False)}"
    return describe_leaf(node)


def describe_leaf(leaf: Leaf) -> str:
    match leaf:
        case From(v) | To(v) | Cc(v) | Subject(v) | Body(v) | Text(v):
            return f"{type(leaf).__name__.lower()} ~ {v!r}"
        case Header(name, ""):
            return f"header {name} present"
        case Header(name, value):
            return f"header {name} ~ {value!r}"
        case HasAttachment():
            return "has attachment"
        case AttachmentName(v):
            return f"attachment name ~ {v!r}"
        case ReceivedSince(d):
            return f"received >= {d.isoformat()}"
        case ReceivedBefore(d):
            return f"received < {d.isoformat()}"
        case SentSince(d):
            return f"sent >= {d.isoformat()}"
        case SentBefore(d):
            return f"sent < {d.isoformat()}"
        case Flag(name):
            return f"flag {name}"
        case Label(name):
            return f"label {name!r}"
        case Folder(name):
            return f"folder {name!r}"
        case Larger(n):
            return f"size > {n}"
        case Smaller(n):
            return f"size < {n}"
        case Priority(level):
            return f"priority {level}"
        case MessageId(v):
            return f"message-id <{v}>"
        case Thread(v):
            return f"thread {v!r}"
    raise AssertionError(leaf)  # pragma: no cover


def mentions(node: Node, *kinds: type) -> bool:
    """Whether `node` or any condition under it is one of `kinds`."""
    if isinstance(node, kinds):
        return True
    children = getattr(node, "items", None)
    if children is None:
        inner = getattr(node, "item", None)
        children = () if inner is None else (inner,)
    return any(mentions(child, *kinds) for child in children)
