"""Compiling a query to Microsoft Graph `GET /me/messages` query parameters.

Two modes, because Graph refuses `$search` together with `$filter` or `$orderby`:

- `$filter` (OData) when the query has no full-text condition: `contains(subject,'x')`,
  `from/emailAddress/address eq 'a@b'` (whole addresses only), `toRecipients/any(r: ...)`,
  `receivedDateTime ge 2024-01-01T00:00:00Z`, `isRead`, `flag/flagStatus`, `isDraft`,
  `hasAttachments`, `importance`, `categories/any(c: c eq 'x')`, `internetMessageId`,
  `conversationId`. String literals are single-quoted with `'` doubled.
- `$search` (KQL) when the query needs `body_contains()` or `text()`: the text conditions go to
  KQL (word matching, at most 250 results, Graph's own ordering) and the provider checks
  everything again with `matches()`.

`$orderby` is only sent for a single date sort key. Graph requires the ordered property to
appear first in `$filter`, so the filter then starts with
`receivedDateTime ge 1900-01-01T00:00:00Z` (the documented InefficientFilter workaround).
"""

from __future__ import annotations

from datetime import date

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
    Leaf,
    MessageId,
    Node,
    Not,
    Or,
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

__all__ = [
    "SEARCH_CAP",
    "graph_filter_leaf",
    "graph_search_leaf",
    "needs_search",
    "odata_string",
    "render_filter",
    "render_search",
]

#: `$search` on messages returns at most this many results.
SEARCH_CAP = 250
#: `$top` upper bound for messages.
TOP_CAP = 1000
ORDER_FLOOR = "1900-01-01T00:00:00Z"


def odata_string(value: str) -> str:
    """An OData string literal: single quotes, `'` doubled."""
    return "'" + value.replace("'", "''") + "'"


def _instant(day: date) -> str:
    return f"{day.isoformat()}T00:00:00Z"


def _is_address(value: str) -> bool:
    local, at, domain = value.partition("@")
    return bool(at and local and domain) and not any(c.isspace() for c in value)


def _address(path: str, value: str, *, collection: bool) -> LeafPlan:
    if not _is_address(value):
        return LeafPlan.client("Graph $filter matches whole addresses only")
    test = f"{'r/' if collection else ''}emailAddress/address eq {odata_string(value)}"
    return LeafPlan.exact(
        f"{path}/any(r: {test})" if collection else f"{path}/{test}",
        "Graph compares the whole address",
    )


def graph_filter_leaf(leaf: Leaf) -> LeafPlan:
    """How Graph `$filter` handles one leaf (see the module docstring)."""
    match leaf:
        case From(v):
            return _address("from", v, collection=False)
        case To(v):
            return _address("toRecipients", v, collection=True)
        case Cc(v):
            return _address("ccRecipients", v, collection=True)
        case Subject(v):
            return LeafPlan.exact(f"contains(subject,{odata_string(v)})")
        case Body() | Text():
            return LeafPlan.client("full text needs $search")
        case HasAttachment():
            return LeafPlan.exact("hasAttachments eq true")
        case ReceivedSince(d):
            return LeafPlan.exact(f"receivedDateTime ge {_instant(d)}")
        case ReceivedBefore(d):
            return LeafPlan.exact(f"receivedDateTime lt {_instant(d)}")
        case SentSince(d):
            return LeafPlan.exact(f"sentDateTime ge {_instant(d)}")
        case SentBefore(d):
            return LeafPlan.exact(f"sentDateTime lt {_instant(d)}")
        case Flag("\\Seen"):
            return LeafPlan.exact("isRead eq true")
        case Flag("\\Flagged"):
            return LeafPlan.exact("flag/flagStatus eq 'flagged'")
        case Flag("\\Draft"):
            return LeafPlan.exact("isDraft eq true")
        case Flag(name):
            return LeafPlan.client(f"Graph has no property for {name}")
        case Priority(level):
            return LeafPlan.exact(f"importance eq {odata_string(level)}", "Graph's importance")
        case Label(name):
            return LeafPlan.exact(f"categories/any(c: c eq {odata_string(name)})")
        case MessageId(v):
            return LeafPlan.exact(f"internetMessageId eq {odata_string(f'<{v}>')}")
        case Thread(v):
            return LeafPlan.exact(f"conversationId eq {odata_string(v)}")
        case Folder():
            return LeafPlan.client("a folder is a path: only a top-level folder() is used")
        case AttachmentName():
            return LeafPlan.client("attachment names are not filterable")
        case Larger() | Smaller():
            return LeafPlan.client("message size is not filterable")
        case Header():
            return LeafPlan.client("headers are not filterable")
    raise AssertionError(leaf)  # pragma: no cover


def _kql_value(value: str) -> str:
    words = value.replace('"', " ").split()
    return words[0] if len(words) == 1 else "(" + " ".join(words) + ")"


def graph_search_leaf(leaf: Leaf) -> LeafPlan:
    """How Graph `$search` (KQL) handles one leaf: a candidate pre-filter, re-checked locally."""
    prop = {From: "from", To: "to", Cc: "cc", Subject: "subject", Body: "body",
            AttachmentName: "attachment"}.get(type(leaf))  # fmt: skip
    note = "KQL word match, checked locally"
    if prop is not None and hasattr(leaf, "value"):
        return LeafPlan.superset(Atom(f"{prop}:{_kql_value(leaf.value)}"), note)
    if isinstance(leaf, Text):
        return LeafPlan.superset(Atom(_kql_value(leaf.value)), note)
    if isinstance(leaf, HasAttachment):
        return LeafPlan.superset(Atom("hasattachments:true"), "checked locally")
    return LeafPlan.client("$search cannot be combined with $filter")


def needs_search(node: Node) -> bool:
    """True when the query has a full-text condition (body or text) anywhere."""
    if isinstance(node, Body | Text):
        return True
    if isinstance(node, Not):
        return needs_search(node.item)
    if isinstance(node, And | Or):
        return any(needs_search(i) for i in node.items)
    return False


def render_filter(expr: Expr, *, top: bool = True) -> str:
    """OData `$filter` text of `expr`."""
    if isinstance(expr, Const):
        return "true" if expr.value else "false"
    if isinstance(expr, Atom):
        return str(expr.payload)
    if isinstance(expr, AllOf | AnyOf):
        joiner = " and " if isinstance(expr, AllOf) else " or "
        text = joiner.join(render_filter(i, top=False) for i in expr.items)
        return text if top else f"({text})"
    assert isinstance(expr, Negate)
    inner = render_filter(expr.item)
    if isinstance(expr.item, Atom) and inner.endswith(" eq true"):
        return inner[: -len("true")] + "false"
    return f"not ({inner})"


def render_search(expr: Expr, *, top: bool = True) -> str:
    """KQL text of `expr` (without the outer double quotes)."""
    if isinstance(expr, Const):
        return ""
    if isinstance(expr, Atom):
        return str(expr.payload)
    if isinstance(expr, AllOf | AnyOf):
        joiner = " AND " if isinstance(expr, AllOf) else " OR "
        text = joiner.join(render_search(i, top=False) for i in expr.items)
        return text if top else f"({text})"
    assert isinstance(expr, Negate)
    return f"NOT {render_search(expr.item, top=False)}"
