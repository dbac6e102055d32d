"""Splitting a query between the server and the client: the superset rule and `QueryPlan`.

Each backend describes every leaf condition as a pair `(over, under)` of backend expressions:
`over` selects a superset of the messages the leaf matches and `under` a subset (`TRUE` and
`FALSE` are the trivial ones; an exact leaf has `over == under`). Then

    over(A and B) = over(A) and over(B)      under(A and B) = under(A) and under(B)
    over(A or B)  = over(A) or over(B)       under(A or B)  = under(A) or under(B)
    over(not A)   = not under(A)             under(not A)   = not over(A)

so `over(query)` is always a superset of `query.matches()`: under a NOT an inexpressible
condition becomes FALSE (so `not FALSE` keeps everything), never silently dropped. The server
runs `over(query)`; every top-level conjunct whose `over` differs from its `under` is checked
again on the client with `matches()`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, TypeAlias

from xcomm.email._query_ast import And, Leaf, Node, Not, Or, describe

if TYPE_CHECKING:
    from xcomm.email._query import EmailQuery

__all__ = [
    "FALSE",
    "TRUE",
    "AllOf",
    "AnyOf",
    "Atom",
    "Const",
    "Expr",
    "LeafPlan",
    "Negate",
    "PlanRow",
    "QueryPlan",
    "Split",
    "all_of",
    "any_of",
    "approximate",
    "negate",
    "split",
]

Provider: TypeAlias = Literal["imap", "gmail", "graph"]
Where: TypeAlias = Literal["server", "client", "server+client"]


@dataclass(frozen=True, slots=True)
class Const:
    value: bool


TRUE = Const(True)
FALSE = Const(False)


@dataclass(frozen=True, slots=True)
class Atom:
    """One backend search term; `payload` is whatever that backend renders."""

    payload: object


@dataclass(frozen=True, slots=True)
class AllOf:
    items: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class AnyOf:
    items: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class Negate:
    item: Expr


Expr: TypeAlias = Const | Atom | AllOf | AnyOf | Negate


def all_of(items: list[Expr]) -> Expr:
    flat: list[Expr] = []
    for item in items:
        if item == FALSE:
            return FALSE
        if item == TRUE:
            continue
        for sub in item.items if isinstance(item, AllOf) else (item,):
            if sub not in flat:
                flat.append(sub)
    if not flat:
        return TRUE
    return flat[0] if len(flat) == 1 else AllOf(tuple(flat))


def any_of(items: list[Expr]) -> Expr:
    flat: list[Expr] = []
    for item in items:
        if item == TRUE:
            return TRUE
        if item == FALSE:
            continue
        for sub in item.items if isinstance(item, AnyOf) else (item,):
            if sub not in flat:
                flat.append(sub)
    if not flat:
        return FALSE
    return flat[0] if len(flat) == 1 else AnyOf(tuple(flat))


def negate(item: Expr) -> Expr:
    if isinstance(item, Const):
        return Const(not item.value)
    return item.item if isinstance(item, Negate) else Negate(item)


@dataclass(frozen=True, slots=True)
class LeafPlan:
    """How a backend handles one leaf: bounds, and why it is not exact (when it is not)."""

    over: Expr
    under: Expr
    note: str = ""

    @classmethod
    def exact(cls, atom: object, note: str = "") -> LeafPlan:
        return cls(Atom(atom), Atom(atom), note)

    @classmethod
    def client(cls, note: str) -> LeafPlan:
        return cls(TRUE, FALSE, note)

    @classmethod
    def superset(cls, over: Expr, note: str) -> LeafPlan:
        return cls(over, FALSE, note)


LeafFn: TypeAlias = Callable[[Leaf], LeafPlan]


def approximate(node: Node, leaf: LeafFn) -> tuple[Expr, Expr]:
    """`(over, under)` of a whole tree, by the rules in the module docstring."""
    if isinstance(node, And):
        pairs = [approximate(i, leaf) for i in node.items]
        return all_of([o for o, _ in pairs]), all_of([u for _, u in pairs])
    if isinstance(node, Or):
        pairs = [approximate(i, leaf) for i in node.items]
        return any_of([o for o, _ in pairs]), any_of([u for _, u in pairs])
    if isinstance(node, Not):
        over, under = approximate(node.item, leaf)
        return negate(under), negate(over)
    plan = leaf(node)
    return plan.over, plan.under


@dataclass(frozen=True, slots=True)
class PlanRow:
    """One top-level condition of the query and where it runs."""

    condition: str
    where: Where
    server: str = ""
    note: str = ""


@dataclass(frozen=True, slots=True)
class Split:
    """A backend-neutral split of a query: the server expression and the client residual."""

    server: Expr
    rows: list[tuple[Node, Where, Expr, str]]
    residual: list[Node]


def split(node: Node, leaf: LeafFn, *, skip: Callable[[Node], bool] | None = None) -> Split:
    """Split the top-level conjuncts of `node` between server and client (`skip` ones aside)."""
    conjuncts = node.items if isinstance(node, And) else (node,)
    server: list[Expr] = []
    rows: list[tuple[Node, Where, Expr, str]] = []
    residual: list[Node] = []
    for conjunct in conjuncts:
        if skip is not None and skip(conjunct):
            continue
        over, under = approximate(conjunct, leaf)
        where: Where
        if over == under:
            where = "server"
            note = leaf(conjunct).note if not isinstance(conjunct, And | Or | Not) else ""
        else:
            residual.append(conjunct)
            where = "client" if over == TRUE else "server+client"
            note = _inexact_note(conjunct, leaf)
        server.append(over)
        rows.append((conjunct, where, over, note))
    return Split(all_of(server), rows, residual)


def _inexact_note(node: Node, leaf: LeafFn) -> str:
    """The note of the first leaf in `node` that the backend cannot express exactly."""
    stack = [node]
    while stack:
        item = stack.pop(0)
        if isinstance(item, And | Or):
            stack[:0] = item.items
        elif isinstance(item, Not):
            stack.insert(0, item.item)
        else:
            plan = leaf(item)
            if plan.over != plan.under:
                return f"{describe(item)}: {plan.note}" if item is not node else plan.note
    return ""  # pragma: no cover


@dataclass(frozen=True, slots=True)
class QueryPlan:
    """What `EmailQuery.explain(provider)` returns: which parts run where.

    Attributes:
        provider: "imap", "gmail" or "graph".
        request: the compiled server request (IMAP criteria string, Gmail params, Graph params).
        rows: one row per top-level condition: where it runs and its server form.
        client: the part the provider must check with `client.matches(message)` on every
            candidate the server returns, or None when the server result is exact.
        folder: the folder the provider searches in, when the query names one at top level.
        sort_on_server / limit_on_server: whether ordering and the limit are done by the server;
            when not, the provider sorts / truncates after client-side filtering.
        notes: caveats (result caps, provider matching rules).
    """

    provider: Provider
    request: str | dict[str, object]
    rows: tuple[PlanRow, ...]
    client: EmailQuery | None
    folder: str | None = None
    sort_on_server: bool = True
    limit_on_server: bool = True
    notes: tuple[str, ...] = field(default=())

    @property
    def exact(self) -> bool:
        """True when the server alone returns exactly the matching messages."""
        return self.client is None

    def __str__(self) -> str:
        header = ("condition", "runs on", "server form / note")
        body = [
            (row.condition, row.where, " | ".join(p for p in (row.server, row.note) if p))
            for row in self.rows
        ] or [("every message", "server", "")]
        widths = [max(len(r[i]) for r in [header, *body]) for i in range(2)]
        lines = [f"{self.provider} plan: {self.request!r}"]
        for cells in [header, *body]:
            lines.append(f"{cells[0]:<{widths[0]}}  {cells[1]:<{widths[1]}}  {cells[2]}".rstrip())
        if self.folder is not None:
            lines.append(f"folder: searched in {self.folder!r}")
        lines.append(
            f"sort: {'server' if self.sort_on_server else 'client'}; "
            f"limit: {'server' if self.limit_on_server else 'client'}"
        )
        lines.extend(f"note: {n}" for n in self.notes)
        return "\n".join(lines)


def row(node: Node, where: Where, server: str, note: str) -> PlanRow:
    return PlanRow(describe(node), where, server if where != "client" else "", note)
