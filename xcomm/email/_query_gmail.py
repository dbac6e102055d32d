"""Compiling a query to a Gmail `q` string (users.messages.list) and `labelIds`.

Gmail matches words, not substrings: `subject:(dinner)` finds "Dinner tonight" but `din` does
not. Its text operators are used as Gmail means them (server-side, not re-checked). Dates are
sent as epoch seconds of UTC midnight (`after:1704067200`), because `after:2024/01/01` means
midnight Pacific time. Gmail's `OR` binds tighter than the implicit AND, so every compound
operand is parenthesised.

Server: from:, to:, cc:, subject:, bare terms (text; body is over-approximated by a bare term),
has:attachment, filename:, after:/before:, is:read/is:starred/is:important, in:drafts, label:,
in:<folder>, larger:/smaller:, rfc822msgid:. Client: sent-date bounds, other flags and
keywords, header(), priority(), in_thread() (use users.threads.get).
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time

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
    Node,
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
from xcomm.email._query_plan import AllOf, AnyOf, Atom, Const, Expr, LeafPlan, Negate

__all__ = ["SYSTEM_LABELS", "gmail_leaf", "render_gmail", "system_label"]

#: Gmail system label ids usable in `labelIds`.
SYSTEM_LABELS = frozenset(
    {
        "INBOX", "SENT", "DRAFT", "SPAM", "TRASH", "UNREAD", "STARRED", "IMPORTANT",
        "CHAT", "CATEGORY_PERSONAL", "CATEGORY_SOCIAL", "CATEGORY_PROMOTIONS",
        "CATEGORY_UPDATES", "CATEGORY_FORUMS",
    }
)  # fmt: skip
_BARE = re.compile(r"[\w@.+\-']+")
_FLAGS = {"\\Seen": "is:read", "\\Flagged": "is:starred", "$important": "is:important",
          "\\Draft": "in:drafts"}  # fmt: skip


def system_label(name: str) -> str | None:
    """The system label id for `name` (case-insensitive), or None for a user label."""
    upper = name.upper()
    return upper if upper in SYSTEM_LABELS else None


def term(value: str) -> str:
    """A bare word when safe, else a quoted phrase (Gmail has no escape for `"`)."""
    if _BARE.fullmatch(value) and value.upper() not in ("OR", "AND", "AROUND"):
        return value
    return '"' + " ".join(value.replace('"', " ").split()) + '"'


def _epoch(day: date) -> int:
    return int(datetime.combine(day, time(), UTC).timestamp())


def _op(name: str, value: str) -> LeafPlan:
    text = f"{name}{term(value)}"
    if '"' in value or not value.strip():
        return LeafPlan.superset(Atom(text), "Gmail cannot search for '\"'; checked locally")
    return LeafPlan.exact(text, "Gmail word match")


def gmail_leaf(leaf: Leaf) -> LeafPlan:
    """How a Gmail `q` handles one leaf (see the module docstring)."""
    match leaf:
        case From(v):
            return _op("from:", v)
        case To(v):
            return _op("to:", v)
        case Cc(v):
            return _op("cc:", v)
        case Subject(v):
            return _op("subject:", v)
        case Text(v):
            return _op("", v)
        case Body(v):
            return LeafPlan.superset(Atom(term(v)), "Gmail has no body-only operator")
        case HasAttachment():
            return LeafPlan.exact("has:attachment")
        case AttachmentName(v):
            return _op("filename:", v)
        case ReceivedSince(d):
            return LeafPlan.exact(f"after:{_epoch(d)}")
        case ReceivedBefore(d):
            return LeafPlan.exact(f"before:{_epoch(d)}")
        case SentSince() | SentBefore():
            return LeafPlan.client("Gmail filters on the received date only")
        case Flag(name):
            op = _FLAGS.get(name) or _FLAGS.get(name.lower())
            if op is None:
                return LeafPlan.client(f"Gmail has no operator for {name}")
            return LeafPlan.exact(op)
        case Label(name):
            return LeafPlan.exact(f"label:{term(name)}")
        case Folder(name):
            return LeafPlan.exact(f"in:{term(name)}")
        case Larger(n):
            return LeafPlan.exact(f"larger:{n}")
        case Smaller(n):
            return LeafPlan.exact(f"smaller:{n}")
        case MessageId(v):
            return LeafPlan.exact(f"rfc822msgid:{term(v)}")
        case Header():
            return LeafPlan.client("Gmail cannot search arbitrary headers")
        case Priority():
            return LeafPlan.client("Gmail cannot search priority headers")
        case Thread():
            return LeafPlan.client("use users.threads.get for a thread")
    raise AssertionError(leaf)  # pragma: no cover


def render_gmail(expr: Expr, *, top: bool = True) -> str:
    """The `q` text of `expr` ("" for every message)."""
    if isinstance(expr, Const):
        return "" if expr.value else "-in:anywhere"
    if isinstance(expr, Atom):
        return str(expr.payload)
    if isinstance(expr, AllOf):
        text = " ".join(render_gmail(i, top=False) for i in expr.items)
        return text if top else f"({text})"
    if isinstance(expr, AnyOf):
        text = " OR ".join(render_gmail(i, top=False) for i in expr.items)
        return text if top else f"({text})"
    assert isinstance(expr, Negate)
    if expr.item == Atom("is:read"):
        return "is:unread"
    return "-" + render_gmail(expr.item, top=False)


def label_id_of(node: Node) -> str | None:
    """The system label id a top-level condition can become (`labelIds`), if any."""
    if isinstance(node, Label | Folder):
        return system_label(node.name)
    if isinstance(node, Flag) and node.name == "\\Flagged":
        return "STARRED"
    return None
