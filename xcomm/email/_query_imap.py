"""Compiling a query to RFC 3501 SEARCH criteria.

Strings are always sent as quoted strings (`"..."`, with `\\` and `"` escaped). A string with
non-ASCII characters needs `CHARSET UTF-8`; `ImapSearch.charset` says so. Line breaks never
reach here (the query refuses them), so no string needs a literal for CR/LF; for servers that
refuse 8-bit quoted strings, `ImapSearch.wire()` renders non-ASCII strings as RFC 3501
literals (`{n}` + CRLF + bytes, or non-synchronizing `{n+}` with LITERAL+).

Exact on the server: FROM, TO, CC, SUBJECT, BODY, TEXT, HEADER, SINCE/BEFORE (received),
SENTSINCE/SENTBEFORE, LARGER/SMALLER, flags and keywords. Over-approximated (the server
pre-filters, `matches()` decides): message_id (HEADER Message-ID substring), priority high/low
(HEADER X-Priority / Importance / X-MSMail-Priority substrings). Client only: attachments,
labels, thread ids, priority normal; a folder is a mailbox to SELECT when it is a top-level
condition.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date

import msgspec

from xcomm.email._query_ast import (
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
    Leaf,
    MessageId,
    Priority,
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
from xcomm.email._query_plan import (
    TRUE,
    AllOf,
    AnyOf,
    Atom,
    Const,
    Expr,
    LeafPlan,
    Negate,
    any_of,
)

__all__ = ["ImapSearch", "imap_leaf", "imap_search", "render_imap"]

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_SYSTEM = {"\\Seen": "SEEN", "\\Answered": "ANSWERED", "\\Flagged": "FLAGGED",
           "\\Deleted": "DELETED", "\\Draft": "DRAFT"}  # fmt: skip


class _Str(msgspec.Struct, frozen=True):
    """A string argument: rendered quoted, or as a literal on the strict wire."""

    value: str


_Token = str | _Str


def imap_date(day: date) -> str:
    """RFC 3501 `date`: `1-Feb-2024`."""
    return f"{day.day}-{_MONTHS[day.month - 1]}-{day.year}"


def quote(value: str) -> str:
    """An IMAP quoted string, `\\` and `"` escaped (non-ASCII kept as UTF-8)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _key(*tokens: _Token) -> LeafPlan:
    return LeafPlan.exact(tuple(tokens))


def _atom(*tokens: _Token) -> Expr:
    return Atom(tuple(tokens))


def imap_leaf(leaf: Leaf) -> LeafPlan:
    """How IMAP SEARCH handles one leaf (see the module docstring)."""
    match leaf:
        case From(v):
            return _key("FROM", _Str(v))
        case To(v):
            return _key("TO", _Str(v))
        case Cc(v):
            return _key("CC", _Str(v))
        case Subject(v):
            return _key("SUBJECT", _Str(v))
        case Body(v):
            return _key("BODY", _Str(v))
        case Text(v):
            return _key("TEXT", _Str(v))
        case Header(name, value):
            return _key("HEADER", _Str(name), _Str(value))
        case ReceivedSince(d):
            return _key("SINCE", imap_date(d))
        case ReceivedBefore(d):
            return _key("BEFORE", imap_date(d))
        case SentSince(d):
            return _key("SENTSINCE", imap_date(d))
        case SentBefore(d):
            return _key("SENTBEFORE", imap_date(d))
        case Larger(n):
            return _key("LARGER", str(n))
        case Smaller(n):
            return _key("SMALLER", str(n))
        case Flag(name):
            system = _SYSTEM.get(name)
            return _key(system) if system else _key("KEYWORD", name)
        case MessageId(v):
            return LeafPlan.superset(
                _atom("HEADER", _Str("Message-ID"), _Str(v)),
                "HEADER is a substring match; the exact id is checked locally",
            )
        case Priority("high" | "low" as level):
            digits, word = (("1", "2"), "high") if level == "high" else (("4", "5"), "low")
            over = any_of(
                [_atom("HEADER", _Str("X-Priority"), _Str(d)) for d in digits]
                + [
                    _atom("HEADER", _Str(h), _Str(word))
                    for h in ("Importance", "X-MSMail-Priority")
                ]
            )
            return LeafPlan.superset(over, "priority headers are pre-filtered by substring")
        case Priority():
            return LeafPlan.client("'normal' is the absence of high/low markers")
        case HasAttachment() | AttachmentName():
            return LeafPlan.client("IMAP SEARCH cannot see attachments")
        case Label():
            return LeafPlan.client("IMAP has no labels (use has_flag() for IMAP keywords)")
        case Folder():
            return LeafPlan.client("a folder is a mailbox: only a top-level folder() is SELECTed")
        case Thread():
            return LeafPlan.client("IMAP SEARCH has no thread ids")
    raise AssertionError(leaf)  # pragma: no cover


def render_imap(expr: Expr, string: Callable[[str], str] = quote) -> list[str]:
    """The search keys of `expr`, one per top-level conjunct; `string` renders each string."""
    if isinstance(expr, AllOf):
        return [_render(i, string) for i in expr.items]
    return [_render(expr, string)]


def _render(expr: Expr, string: Callable[[str], str]) -> str:
    if isinstance(expr, Const):
        return "ALL" if expr.value else "NOT ALL"
    if isinstance(expr, Atom):
        tokens: tuple[_Token, ...] = expr.payload  # type: ignore[assignment]
        return " ".join(t if isinstance(t, str) else string(t.value) for t in tokens)
    if isinstance(expr, AllOf):
        return "(" + " ".join(_render(i, string) for i in expr.items) + ")"
    if isinstance(expr, AnyOf):
        first, *rest = expr.items
        second = rest[0] if len(rest) == 1 else AnyOf(tuple(rest))
        return f"OR {_render(first, string)} {_render(second, string)}"
    assert isinstance(expr, Negate)
    if isinstance(expr.item, AllOf) and len(expr.item.items) > 1:
        # NOT (A B) as OR NOT A NOT B: Dovecot 2.3 drops a NOT in front of a parenthesised
        # list when it simplifies a search (found by tests/integration/test_query_dovecot.py).
        return _render(AnyOf(tuple(Negate(item) for item in expr.item.items)), string)
    return f"NOT {_render(expr.item, string)}"


@dataclass(frozen=True, slots=True, kw_only=True)
class ImapSearch:
    """IMAP SEARCH criteria ready for a client.

    ```python
    search = EmailQuery().subject_contains("café").to_imap_search()
    # aioimaplib: await client.uid_search(*search.args, charset=search.charset)
    ```

    Attributes:
        args: the search keys, one per top-level condition (quoted strings inside).
        charset: "UTF-8" when a string is non-ASCII, else None (plain US-ASCII).
    """

    args: tuple[str, ...]
    charset: str | None = None
    expr: Expr = field(default=TRUE, repr=False)

    @property
    def criteria(self) -> str:
        """The criteria as one string (what `EmailQuery.to_imap()` returns)."""
        return " ".join(self.args)

    def wire(self, *, literal_plus: bool = False) -> list[bytes]:
        """Strict RFC 3501 bytes for `[UID] SEARCH <here>`: non-ASCII strings as literals.

        Each chunk but the last ends with a literal announcement `{n}\\r\\n`; a client sends
        the next chunk after the server's `+` continuation. With `literal_plus=True`
        (server advertises LITERAL+) literals are `{n+}` and everything is one chunk.
        """
        chunks: list[bytes] = []
        current = bytearray(b"CHARSET UTF-8 " if self.charset else b"")
        literals: list[bytes] = []

        def string(value: str) -> str:
            if value.isascii():
                return quote(value)
            literals.append(value.encode("utf-8"))
            return f"\x00{len(literals) - 1}\x00"

        text = " ".join(render_imap(self.expr, string))
        parts = text.split("\x00")
        for index, part in enumerate(parts):
            if index % 2 == 0:
                current += part.encode("ascii")
                continue
            data = literals[int(part)]
            current += f"{{{len(data)}{'+' if literal_plus else ''}}}\r\n".encode("ascii")
            if not literal_plus:
                chunks.append(bytes(current))
                current = bytearray()
            current += data
        chunks.append(bytes(current))
        return chunks


def imap_search(expr: Expr) -> ImapSearch:
    args = tuple(render_imap(expr))
    non_ascii = not all(a.isascii() for a in args)
    return ImapSearch(args=args, charset="UTF-8" if non_ascii else None, expr=expr)
