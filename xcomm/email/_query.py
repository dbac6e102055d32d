"""`EmailQuery`: one immutable search value for every email backend.

Build it by chaining (each call returns a new query), combine with `&`, `|`, `~`, then compile
it (`to_imap()`, `to_gmail()`, `to_graph()`), evaluate it locally (`matches(message)`) or ask
where each part runs (`explain("imap")`). Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime
from functools import partial
from typing import Any, Literal, TypeAlias, TypeVar

import msgspec

from xcomm._errors import ValidationError
from xcomm.email import _query_ast as ast
from xcomm.email._query_explain import SortOrder, imap_split, plan
from xcomm.email._query_expr import parse_expression, render_expression
from xcomm.email._query_gmail import gmail_leaf, render_gmail
from xcomm.email._query_imap import ImapSearch, imap_search
from xcomm.email._query_match import QueryableMessage, evaluate
from xcomm.email._query_plan import QueryPlan, split

__all__ = ["EmailQuery", "SortOrder"]

DateLike: TypeAlias = date | datetime | str
SortField: TypeAlias = Literal["date", "sent", "size", "subject", "from"]
M = TypeVar("M", bound=QueryableMessage)
_MIN = datetime.min.replace(tzinfo=UTC)


class EmailQuery:
    """An immutable email search: chain conditions, combine queries, compile or evaluate.

    ```python
    from xcomm import EmailQuery, SortOrder

    q = (
        EmailQuery()
        .from_sender("billing@example.com")
        .since("2024-05-01")
        .is_unread()
        .sort_by("date", SortOrder.DESC)
        .limit(20)
    )
    q.to_imap()   # 'FROM "billing@example.com" SINCE 1-May-2024 NOT SEEN'
    q.to_gmail()  # 'from:billing@example.com after:1714521600 is:unread'
    urgent = q & (EmailQuery().priority("high") | EmailQuery().subject_contains("urgent"))
    ```

    Chained conditions are ANDed. `EmailQuery()` alone matches every message. Every condition's
    exact meaning is the one `matches()` implements (RFC 3501 SEARCH semantics; see
    `xcomm.email._query_match`). Bad input raises `ValidationError`.
    """

    __slots__ = ("_limit", "_order", "_where")

    _where: ast.Node
    _order: tuple[tuple[SortField, SortOrder], ...]
    _limit: int | None

    def __init__(self) -> None:
        object.__setattr__(self, "_where", ast.TRUE)
        object.__setattr__(self, "_order", ())
        object.__setattr__(self, "_limit", None)

    @classmethod
    def _make(
        cls,
        where: ast.Node,
        order: tuple[tuple[SortField, SortOrder], ...] = (),
        limit: int | None = None,
    ) -> EmailQuery:
        query = cls.__new__(cls)
        object.__setattr__(query, "_where", where)
        object.__setattr__(query, "_order", order)
        object.__setattr__(query, "_limit", limit)
        return query

    @classmethod
    def from_condition(cls, condition: ast.Node) -> EmailQuery:
        """A query from a condition tree (e.g. one decoded from JSON by `condition_from_json`)."""
        return cls._make(condition)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("EmailQuery is immutable: every method returns a new query")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, EmailQuery):
            return NotImplemented
        return (self._where, self._order, self._limit) == (other._where, other._order, other._limit)

    def __hash__(self) -> int:
        return hash((self._where, self._order, self._limit))

    def __repr__(self) -> str:
        extra = "".join(f".sort_by({f!r}, SortOrder.{o.name})" for f, o in self._order)
        if self._limit is not None:
            extra += f".limit({self._limit})"
        return f"<EmailQuery {ast.describe(self._where)}{extra}>"

    # ---- inspection ----------------------------------------------------------------------

    @property
    def condition(self) -> ast.Node:
        """The condition tree (frozen msgspec Structs)."""
        return self._where

    @property
    def order(self) -> tuple[tuple[SortField, SortOrder], ...]:
        """Sort keys, most significant first."""
        return self._order

    @property
    def max_results(self) -> int | None:
        """The limit set by `limit()`, or None."""
        return self._limit

    @classmethod
    def parse(cls, text: str, /, *, today: date | None = None) -> EmailQuery:
        """A query from a Gmail-like expression (see `docs/querying.md`).

        ```python
        q = EmailQuery.parse('from:billing@example.com subject:"your invoice" is:unread')
        q == EmailQuery().from_sender("billing@example.com").subject_contains(
            "your invoice").is_unread()                                   # True
        EmailQuery.parse("(from:ada OR from:bob) -label:Done larger:1M since:2024-01-01")
        ```

        `today` (default: today's UTC date) is the day `newer_than:7d` and `older_than:1y`
        count back from.

        Raises:
            QuerySyntaxError: a `ValidationError` whose message names the column and what
                was expected (`unknown field 'frm' at column 1; did you mean 'from'?`).
        """
        day = today if today is not None else datetime.now(UTC).date()
        return cls._make(parse_expression(text, today=day))

    def to_expression(self) -> str:
        """The expression `EmailQuery.parse()` reads back as this condition (sort and limit
        are not included): `EmailQuery().from_sender("bob").is_unread()` gives
        `'from:bob is:unread'`.

        Raises:
            ValidationError: a header name containing `=`, which `header:` cannot write.
        """
        return render_expression(self._where)

    def to_json(self) -> bytes:
        """The condition tree as JSON (sort and limit are not included)."""
        return msgspec.json.encode(self._where)

    @classmethod
    def from_json(cls, data: bytes | str) -> EmailQuery:
        """The inverse of `to_json()`; raise `ValidationError` on malformed input."""
        try:
            return cls._make(ast.NODE_DECODER.decode(data))
        except msgspec.DecodeError as exc:
            raise ValidationError(f"not an EmailQuery condition: {exc}") from exc

    # ---- chaining ------------------------------------------------------------------------

    def where(self, condition: ast.Node) -> EmailQuery:
        """AND a raw condition node onto this query."""
        return self._make(ast.and_(self._where, condition), self._order, self._limit)

    def from_sender(self, value: str) -> EmailQuery:
        """From contains `value` (address or name; case-insensitive substring)."""
        return self.where(ast.From(ast.check_text("from_sender()", value)))

    def to_recipient(self, value: str) -> EmailQuery:
        """To contains `value`."""
        return self.where(ast.To(ast.check_text("to_recipient()", value)))

    def cc(self, value: str) -> EmailQuery:
        """Cc contains `value`."""
        return self.where(ast.Cc(ast.check_text("cc()", value)))

    def subject_contains(self, value: str) -> EmailQuery:
        """Subject contains `value`."""
        return self.where(ast.Subject(ast.check_text("subject_contains()", value)))

    def body_contains(self, value: str) -> EmailQuery:
        """The text or HTML body contains `value`."""
        return self.where(ast.Body(ast.check_text("body_contains()", value)))

    def text(self, value: str) -> EmailQuery:
        """Any header line or the body contains `value` (IMAP TEXT)."""
        return self.where(ast.Text(ast.check_text("text()", value)))

    def header(self, name: str, value: str = "") -> EmailQuery:
        """Header `name` contains `value`; with `value=""` the header is merely present."""
        return self.where(ast.Header(*ast.check_header(name, value)))

    def has_attachment(self) -> EmailQuery:
        """The message has at least one attachment."""
        return self.where(ast.HasAttachment())

    def attachment_name(self, value: str) -> EmailQuery:
        """An attachment's file name contains `value` (e.g. ".pdf")."""
        return self.where(ast.AttachmentName(ast.check_text("attachment_name()", value)))

    def since(self, when: DateLike) -> EmailQuery:
        """Received on or after the day of `when` (UTC day; an aware datetime counts by day)."""
        return self.where(ast.ReceivedSince(ast.to_day("since()", when)))

    def before(self, when: DateLike) -> EmailQuery:
        """Received before the day of `when` (that day excluded)."""
        return self.where(ast.ReceivedBefore(ast.to_day("before()", when)))

    def on(self, when: DateLike) -> EmailQuery:
        """Received on the day of `when`."""
        day = ast.to_day("on()", when)
        return self.where(ast.and_(ast.ReceivedSince(day), ast.ReceivedBefore(ast.next_day(day))))

    def date_range(self, start: DateLike, end: DateLike) -> EmailQuery:
        """Received from the day of `start` to the day of `end`, both included."""
        first, last = ast.to_day("date_range()", start), ast.to_day("date_range()", end)
        if first > last:
            raise ValidationError(f"date_range(): start {first} is after end {last}")
        return self.where(
            ast.and_(ast.ReceivedSince(first), ast.ReceivedBefore(ast.next_day(last)))
        )

    def sent_since(self, when: DateLike) -> EmailQuery:
        """The Date header's day (as written, in its own offset) is on or after `when`'s day."""
        return self.where(ast.SentSince(ast.to_day("sent_since()", when)))

    def sent_before(self, when: DateLike) -> EmailQuery:
        """The Date header's day is before `when`'s day."""
        return self.where(ast.SentBefore(ast.to_day("sent_before()", when)))

    def has_flag(self, flag: str) -> EmailQuery:
        """Carries a system flag (`\\Seen`, `\\Answered`, ...) or a keyword (`$Label1`)."""
        return self.where(ast.Flag(ast.check_flag(flag)))

    def is_read(self) -> EmailQuery:
        """Has `\\Seen`."""
        return self.where(ast.Flag("\\Seen"))

    def is_unread(self) -> EmailQuery:
        """Lacks `\\Seen`."""
        return self.where(ast.Not(ast.Flag("\\Seen")))

    def is_starred(self) -> EmailQuery:
        """Has `\\Flagged` (Gmail star, Graph follow-up flag)."""
        return self.where(ast.Flag("\\Flagged"))

    def is_important(self) -> EmailQuery:
        """Has the `$Important` keyword (RFC 8457; Gmail's IMPORTANT label)."""
        return self.where(ast.Flag("$Important"))

    def priority(self, level: Literal["high", "normal", "low"]) -> EmailQuery:
        """The priority headers say `level`; see `priority_of` for the exact rule."""
        if not isinstance(level, str) or level.lower() not in ("high", "normal", "low"):
            raise ValidationError(f"priority() takes 'high', 'normal' or 'low', not {level!r}")
        return self.where(ast.Priority(level.lower()))  # type: ignore[arg-type]

    def label(self, name: str) -> EmailQuery:
        """Carries label `name` (Gmail label or Graph category; case-insensitive)."""
        return self.where(ast.Label(ast.check_text("label()", name)))

    def folder(self, name: str) -> EmailQuery:
        """Is in folder `name` (IMAP mailbox, Gmail `in:`, Graph mail folder)."""
        return self.where(ast.Folder(ast.check_text("folder()", name)))

    def larger_than(self, size: int) -> EmailQuery:
        """RFC822.SIZE is strictly greater than `size` bytes."""
        return self.where(ast.Larger(ast.check_size("larger_than()", size)))

    def smaller_than(self, size: int) -> EmailQuery:
        """RFC822.SIZE is strictly less than `size` bytes."""
        return self.where(ast.Smaller(ast.check_size("smaller_than()", size)))

    def message_id(self, value: str) -> EmailQuery:
        """Message-ID equals `value` (angle brackets optional)."""
        return self.where(ast.MessageId(ast.check_message_id(value)))

    def in_thread(self, thread_id: str) -> EmailQuery:
        """Belongs to the provider's thread / conversation `thread_id`."""
        return self.where(ast.Thread(ast.check_text("in_thread()", thread_id)))

    def sort_by(self, field: SortField, order: SortOrder = SortOrder.ASC) -> EmailQuery:
        """Add a sort key (later calls break ties): "date", "sent", "size", "subject", "from"."""
        if field not in ast.SORT_FIELDS:
            raise ValidationError(
                f"sort_by(): unknown field {field!r}; use one of {', '.join(ast.SORT_FIELDS)}"
            )
        if not isinstance(order, SortOrder):
            raise ValidationError(f"sort_by(): order must be a SortOrder, not {order!r}")
        return self._make(self._where, (*self._order, (field, order)), self._limit)

    def limit(self, n: int) -> EmailQuery:
        """Return at most `n` messages (after filtering and sorting)."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValidationError(f"limit() takes a positive int, not {n!r}")
        return self._make(self._where, self._order, n)

    # ---- combining -----------------------------------------------------------------------

    def _plain(self, other: object) -> ast.Node:
        if not isinstance(other, EmailQuery):
            raise TypeError(f"cannot combine EmailQuery with {type(other).__name__}")
        if other._order or other._limit is not None:
            raise ValidationError("combine queries first, then call sort_by()/limit()")
        return other._where

    def __and__(self, other: EmailQuery) -> EmailQuery:
        return self._make(ast.and_(self._plain(self), self._plain(other)))

    def __or__(self, other: EmailQuery) -> EmailQuery:
        return self._make(ast.or_(self._plain(self), self._plain(other)))

    def __invert__(self) -> EmailQuery:
        return self._make(ast.not_(self._plain(self)))

    @classmethod
    def all_of(cls, *queries: EmailQuery) -> EmailQuery:
        """Every query holds (`EmailQuery()` when none is given)."""
        query = cls()
        return cls._make(ast.and_(query._where, *(query._plain(q) for q in queries)))

    @classmethod
    def any_of(cls, *queries: EmailQuery) -> EmailQuery:
        """At least one query holds (no message when none is given)."""
        return cls._make(ast.or_(ast.FALSE, *(cls()._plain(q) for q in queries)))

    @classmethod
    def not_(cls, query: EmailQuery) -> EmailQuery:
        """The query does not hold."""
        return ~query

    # ---- local evaluation ----------------------------------------------------------------

    def matches(self, message: QueryableMessage) -> bool:
        """Whether `message` satisfies the conditions (sort and limit do not apply)."""
        return evaluate(self._where, message)

    def apply(self, messages: Iterable[M]) -> list[M]:
        """Filter, sort and limit `messages` locally, exactly as the query says.

        Sorting is stable; a message without the sorted value sorts as the smallest.
        """
        return self.sort_and_limit([m for m in messages if self.matches(m)])

    def sort_and_limit(self, messages: Iterable[M]) -> list[M]:
        """Sort and limit messages that already match (a provider's last step)."""
        found = list(messages)
        for field, order in reversed(self._order):
            found.sort(key=partial(_sort_key, field=field), reverse=order is SortOrder.DESC)
        return found if self._limit is None else found[: self._limit]

    def reads_bodies(self) -> bool:
        """Whether matching needs the message bodies (`body_contains`, `text`)."""
        return ast.mentions(self._where, ast.Body, ast.Text)

    # ---- compilers -----------------------------------------------------------------------

    def _plan(self, provider: str) -> QueryPlan:
        return plan(
            provider, self._where, self._order, self._limit,
            lambda parts: self._make(ast.and_(*parts)) if parts else None,
        )  # fmt: skip

    def to_imap(self) -> str:
        """RFC 3501 SEARCH criteria, e.g. `OR FROM "a" FROM "b" NOT SEEN` (see `explain`)."""
        return self.to_imap_search().criteria

    def to_imap_search(self) -> ImapSearch:
        """The IMAP criteria as arguments plus the CHARSET they need."""
        return imap_search(imap_split(self._where).server)

    def to_gmail(self) -> str:
        """The Gmail `q` string (system labels stay in it; see `to_gmail_params`)."""
        return render_gmail(split(self._where, gmail_leaf).server)

    def to_gmail_params(self) -> dict[str, Any]:
        """users.messages.list parameters: `q`, `labelIds`, `maxResults` (when pushable)."""
        return self._plan("gmail").request  # type: ignore[return-value]

    def to_graph(self) -> dict[str, Any]:
        """Graph list-messages parameters: `$filter`/`$orderby`/`$top`, or `$search`/`$top`."""
        return self._plan("graph").request  # type: ignore[return-value]

    def explain(self, provider: Literal["imap", "gmail", "graph"]) -> QueryPlan:
        """Which conditions run on the server, which on the client, and caveats."""
        if provider == "imap":
            return self._plan("imap")
        if provider == "gmail":
            return self._plan("gmail")
        if provider == "graph":
            return self._plan("graph")
        raise ValidationError(f"explain(): unknown provider {provider!r}; use imap/gmail/graph")


def _sort_key(message: QueryableMessage, field: SortField) -> Any:
    if field == "date":
        return message.internal_date or _MIN
    if field == "sent":
        return message.date or _MIN
    if field == "size":
        return message.size or 0
    if field == "subject":
        return (message.subject or "").casefold()
    return str(message.sender or "").casefold()
