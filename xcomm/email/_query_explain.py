"""Where each part of an `EmailQuery` runs on IMAP, Gmail and Graph: the query plans.

`plan(provider, ...)` splits a query's condition into what the server can evaluate (compiled
to its request) and the residual the client checks with `matches()`, and says whether sorting
and the limit can run on the server. `EmailQuery.explain()` and the compilers use it.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from xcomm.email import _query_ast as ast
from xcomm.email._query_gmail import gmail_leaf, label_id_of, render_gmail
from xcomm.email._query_graph import (
    ORDER_FLOOR,
    SEARCH_CAP,
    TOP_CAP,
    graph_filter_leaf,
    graph_search_leaf,
    needs_search,
    render_filter,
    render_search,
)
from xcomm.email._query_imap import imap_leaf, imap_search
from xcomm.email._query_plan import TRUE, AnyOf, PlanRow, QueryPlan, Split, row, split

if TYPE_CHECKING:
    from xcomm.email._query import EmailQuery

__all__ = ["SortOrder", "imap_split", "plan"]


class SortOrder(enum.Enum):
    """Ascending (oldest, smallest, A first) or descending."""

    ASC = "asc"
    DESC = "desc"


Order = tuple[tuple[str, SortOrder], ...]


@dataclass(frozen=True, slots=True)
class _Query:
    where: ast.Node
    order: Order
    limit: int | None
    residual: Callable[[Sequence[ast.Node]], EmailQuery | None]


def plan(
    provider: str,
    where: ast.Node,
    order: Order,
    limit: int | None,
    residual: Callable[[Sequence[ast.Node]], EmailQuery | None],
) -> QueryPlan:
    """The plan of a query (its condition, sort and limit) on `provider`."""
    query = _Query(where, order, limit, residual)
    return _PLANNERS[provider](query)


def imap_split(where: ast.Node) -> Split:
    """The IMAP server part of a condition and the client residual (a top-level folder is
    the mailbox to SELECT, not a criterion)."""
    return _split_imap(_Query(where, (), None, lambda parts: None))


def _top_folder(q: _Query) -> str | None:
    items = q.where.items if isinstance(q.where, ast.And) else (q.where,)
    return next((i.name for i in items if isinstance(i, ast.Folder)), None)


def _split_imap(q: _Query) -> Split:
    folder = _top_folder(q)
    skip = None if folder is None else (lambda n: n == ast.Folder(folder))
    return split(q.where, imap_leaf, skip=skip)


def _rows(result: Split, render: Any) -> tuple[PlanRow, ...]:
    return tuple(row(n, w, render(e) if e != TRUE else "", note) for n, w, e, note in result.rows)


def _explain_imap(q: _Query) -> QueryPlan:
    result = _split_imap(q)
    folder = _top_folder(q)
    search = imap_search(result.server)
    notes = []
    if q.order or q.limit is not None:
        notes.append("SEARCH returns every match: the client sorts and applies the limit")
    if search.charset:
        notes.append("non-ASCII strings: sent with CHARSET UTF-8")
    rows = _rows(result, lambda e: imap_search(e).criteria)
    if folder is not None:
        rows = (PlanRow(f"folder {folder!r}", "server", f"SELECT {folder!r}"), *rows)
    return QueryPlan(
        "imap", search.criteria, rows, q.residual(result.residual), folder=folder,
        sort_on_server=not q.order, limit_on_server=q.limit is None,
        notes=tuple(notes),
    )  # fmt: skip


def _explain_gmail(q: _Query) -> QueryPlan:
    items = q.where.items if isinstance(q.where, ast.And) else (q.where,)
    label_ids = [lid for i in items if (lid := label_id_of(i)) is not None]
    result = split(q.where, gmail_leaf, skip=lambda n: label_id_of(n) is not None)
    params: dict[str, Any] = {"q": render_gmail(result.server)}
    if label_ids:
        params["labelIds"] = list(dict.fromkeys(label_ids))
    native_sort = q.order in ((), (("date", SortOrder.DESC),))
    residual = q.residual(result.residual)
    pushable = native_sort and residual is None and q.limit is not None
    if pushable:
        params["maxResults"] = min(q.limit or 500, 500)
    rows = tuple(
        PlanRow(ast.describe(i), "server", f"labelIds={label_id_of(i)}")
        for i in items
        if label_id_of(i) is not None
    ) + _rows(result, render_gmail)
    notes = ["Gmail matches words, not substrings; dates are epoch seconds (UTC midnight)"]
    if not native_sort:
        notes.append("Gmail lists newest first only: other orders are sorted by the client")
    return QueryPlan(
        "gmail", params, rows, residual, sort_on_server=native_sort,
        limit_on_server=pushable or q.limit is None, notes=tuple(notes),
    )  # fmt: skip


def _explain_graph(q: _Query) -> QueryPlan:
    folder = _top_folder(q)
    skip = None if folder is None else (lambda n: n == ast.Folder(folder))
    params: dict[str, Any] = {}
    notes: list[str] = []
    if needs_search(q.where):
        result = split(q.where, graph_search_leaf, skip=skip)
        residual = q.residual(result.residual)
        if result.server != TRUE:
            params["$search"] = '"' + render_search(result.server) + '"'
            params["$top"] = min(q.limit or SEARCH_CAP, SEARCH_CAP)
            notes.append(
                f"$search returns at most {SEARCH_CAP} messages and cannot be combined "
                "with $filter/$orderby: other conditions, sorting and the limit run on "
                "the client"
            )
        else:
            notes.append("nothing is searchable on the server: every message is listed")
        rows = _rows(result, render_search)
        sort_server, limit_server = not q.order, False
    else:
        result = split(q.where, graph_filter_leaf, skip=skip)
        residual = q.residual(result.residual)
        text = render_filter(result.server) if result.server != TRUE else ""
        orderby = _graph_orderby(q.order)
        if orderby is not None and text:
            prop = orderby.split()[0]
            wrap = isinstance(result.server, AnyOf)
            text = f"{prop} ge {ORDER_FLOOR} and " + (f"({text})" if wrap else text)
            notes.append(f"{prop} leads $filter so $orderby is accepted (InefficientFilter)")
        if text:
            params["$filter"] = text
        if orderby is not None:
            params["$orderby"] = orderby
        sort_server = orderby is not None or not q.order
        limit_server = residual is None and sort_server
        if q.limit is not None and limit_server:
            params["$top"] = min(q.limit, TOP_CAP)
        rows = _rows(result, render_filter)
    if folder is not None:
        rows = (PlanRow(f"folder {folder!r}", "server", f"/mailFolders/{folder}"), *rows)
    return QueryPlan(
        "graph", params, rows, residual, folder=folder, sort_on_server=sort_server,
        limit_on_server=limit_server or q.limit is None, notes=tuple(notes),
    )  # fmt: skip


_GRAPH_SORT = {"date": "receivedDateTime", "sent": "sentDateTime"}


def _graph_orderby(order: Order) -> str | None:
    if len(order) != 1 or order[0][0] not in _GRAPH_SORT:
        return None
    field, direction = order[0]
    return f"{_GRAPH_SORT[field]} {direction.value}"


_PLANNERS: dict[str, Callable[[_Query], QueryPlan]] = {
    "imap": _explain_imap,
    "gmail": _explain_gmail,
    "graph": _explain_graph,
}
