"""EmailQuery as a value: chaining, combining, validation, and matches() semantics."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from xcomm import Address, EmailQuery, QueryableMessage, SortOrder, ValidationError
from xcomm.email import _query_ast as ast


@dataclass(frozen=True)
class Headers:
    pairs: tuple[tuple[str, str], ...] = ()

    def get_all(self, name: str, /) -> Sequence[str] | None:
        return [v for n, v in self.pairs if n.lower() == name.lower()]

    def items(self) -> list[tuple[str, str]]:
        return list(self.pairs)


@dataclass(frozen=True)
class Msg:
    """A tiny read-only message implementing QueryableMessage."""

    sender: Address | str | None = None
    to: tuple[Address | str, ...] = ()
    cc: tuple[Address | str, ...] = ()
    subject: str | None = None
    text: str | None = None
    html: str | None = None
    headers: Headers = field(default_factory=Headers)
    date: datetime | None = None
    internal_date: datetime | None = None
    size: int | None = None
    flags: frozenset[str] = frozenset()
    labels: frozenset[str] = frozenset()
    attachments: tuple[str, ...] = ()
    folder: str | None = None
    message_id: str | None = None
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()
    thread_id: str | None = None


def _typed(m: QueryableMessage) -> QueryableMessage:  # mypy: Msg implements the protocol
    return m


Q = EmailQuery
ADA = Address(email="ada@example.com", name="Ada Lovelace")
MSG = Msg(
    sender=ADA,
    to=("bob@example.org", Address(email="cy@example.net")),
    cc=(Address(email="dee@example.com", name="Dee"),),
    subject="Invoice #42 for Café",
    text="Please pay the invoice.",
    html="<p>Please <b>pay</b></p>",
    headers=Headers(
        (
            ("From", "Ada Lovelace <ada@example.com>"),
            ("Subject", "Invoice #42 for Café"),
            ("X-Priority", "1 (Highest)"),
            ("List-Id", "<billing.example.com>"),
        )
    ),
    date=datetime(2024, 5, 31, 23, 30, tzinfo=timezone(timedelta(hours=-7))),
    internal_date=datetime(2024, 6, 1, 6, 31, tzinfo=UTC),
    size=2048,
    flags=frozenset({"\\Seen", "$Important"}),
    labels=frozenset({"Work"}),
    attachments=("report.PDF",),
    folder="INBOX",
    message_id="<abc@mail.example.com>",
    thread_id="t-1",
)


def test_message_class_is_queryable() -> None:
    assert _typed(MSG) is MSG


# ---- value semantics ----------------------------------------------------------------------


def test_chaining_returns_new_queries_and_never_mutates() -> None:
    base = Q()
    one = base.from_sender("ada")
    two = one.is_unread()
    assert base == Q() and base.condition == ast.TRUE
    assert one.condition == ast.From("ada")
    assert two.condition == ast.And((ast.From("ada"), ast.Not(ast.Flag("\\Seen"))))
    assert one != two
    with pytest.raises(AttributeError):
        one._where = ast.TRUE  # type: ignore[misc]


def test_queries_are_hashable_and_comparable() -> None:
    assert len({Q().subject_contains("x"), Q().subject_contains("x")}) == 1
    assert Q().limit(3) != Q()
    assert Q().__eq__(3) is NotImplemented


@pytest.mark.parametrize(
    ("query", "node"),
    [
        (Q().from_sender("a"), ast.From("a")),
        (Q().to_recipient("b"), ast.To("b")),
        (Q().cc("c"), ast.Cc("c")),
        (Q().subject_contains("s"), ast.Subject("s")),
        (Q().body_contains("b"), ast.Body("b")),
        (Q().text("t"), ast.Text("t")),
        (Q().header("List-Id", "x"), ast.Header("List-Id", "x")),
        (Q().header("List-Id"), ast.Header("List-Id", "")),
        (Q().has_attachment(), ast.HasAttachment()),
        (Q().attachment_name(".pdf"), ast.AttachmentName(".pdf")),
        (Q().since(date(2024, 1, 2)), ast.ReceivedSince(date(2024, 1, 2))),
        (Q().before("2024-01-02"), ast.ReceivedBefore(date(2024, 1, 2))),
        (Q().sent_since("2024-01-02"), ast.SentSince(date(2024, 1, 2))),
        (Q().sent_before("2024-01-02"), ast.SentBefore(date(2024, 1, 2))),
        (
            Q().on("2024-02-28"),
            ast.And((ast.ReceivedSince(date(2024, 2, 28)), ast.ReceivedBefore(date(2024, 2, 29)))),
        ),
        (
            Q().date_range("2024-01-01", "2024-01-31"),
            ast.And((ast.ReceivedSince(date(2024, 1, 1)), ast.ReceivedBefore(date(2024, 2, 1)))),
        ),
        (Q().is_read(), ast.Flag("\\Seen")),
        (Q().is_unread(), ast.Not(ast.Flag("\\Seen"))),
        (Q().is_starred(), ast.Flag("\\Flagged")),
        (Q().is_important(), ast.Flag("$Important")),
        (Q().has_flag("\\answered"), ast.Flag("\\Answered")),
        (Q().has_flag("$Label1"), ast.Flag("$Label1")),
        (Q().priority("HIGH"), ast.Priority("high")),
        (Q().label("Work"), ast.Label("Work")),
        (Q().folder("Archive"), ast.Folder("Archive")),
        (Q().larger_than(0), ast.Larger(0)),
        (Q().smaller_than(10), ast.Smaller(10)),
        (Q().message_id(" <a@b> "), ast.MessageId("a@b")),
        (Q().in_thread("t-1"), ast.Thread("t-1")),
    ],
)
def test_every_method_builds_its_condition(query: EmailQuery, node: ast.Node) -> None:
    assert query.condition == node


def test_dates_accept_date_datetime_and_iso_strings() -> None:
    late = datetime(2024, 1, 1, 23, 0, tzinfo=timezone(timedelta(hours=-5)))
    assert Q().since(late).condition == ast.ReceivedSince(date(2024, 1, 2))  # its UTC day
    assert Q().since("2024-01-01T23:00:00-05:00") == Q().since(late)
    assert Q().since("2024-01-01T10:00:00Z").condition == ast.ReceivedSince(date(2024, 1, 1))
    assert Q().since(datetime(2024, 1, 1, tzinfo=UTC)) == Q().since(date(2024, 1, 1))


def test_combinators() -> None:
    a, b, c = Q().from_sender("a"), Q().from_sender("b"), Q().from_sender("c")
    assert (a & b & c).condition == ast.And((ast.From("a"), ast.From("b"), ast.From("c")))
    assert (a | b | c).condition == ast.Or((ast.From("a"), ast.From("b"), ast.From("c")))
    assert (~a).condition == ast.Not(ast.From("a"))
    assert ~~a == a
    assert Q.any_of(a, b) == a | b
    assert Q.all_of(a, b) == a & b
    assert Q.not_(a) == ~a
    assert Q.any_of().condition == ast.FALSE
    assert Q.all_of() == Q()
    assert (Q() & a) == a


def test_sort_and_limit_apply_after_combining() -> None:
    q = Q().from_sender("a").sort_by("date", SortOrder.DESC).sort_by("subject").limit(5)
    assert q.order == (("date", SortOrder.DESC), ("subject", SortOrder.ASC))
    assert q.max_results == 5
    assert q.is_unread().max_results == 5  # chaining keeps them
    with pytest.raises(ValidationError, match="combine queries first"):
        _ = q | Q().from_sender("b")
    with pytest.raises(TypeError):
        _ = Q() & "from:a"  # type: ignore[operator]
    assert "sort_by('date', SortOrder.DESC)" in repr(q) and "limit(5)" in repr(q)


def test_json_round_trip() -> None:
    q = (Q().from_sender("a") | ~Q().since("2024-01-01").has_flag("$X")) & Q().priority("low")
    assert EmailQuery.from_json(q.to_json()) == q
    with pytest.raises(ValidationError):
        EmailQuery.from_json(b'{"op": "nope"}')


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Q().from_sender(""), "non-empty"),
        (lambda: Q().subject_contains("a\r\nBCC: x"), "line breaks"),
        (lambda: Q().text("nul\x00"), "control"),
        (lambda: Q().cc(42), "takes a str"),
        (lambda: Q().header("Bad Name", "x"), "header"),
        (lambda: Q().header("X-A:", "x"), "header"),
        (lambda: Q().header("X-A", "v\nX-B: y"), "line breaks"),
        (lambda: Q().larger_than(-1), "negative"),
        (lambda: Q().smaller_than(1.5), "int"),
        (lambda: Q().larger_than(True), "int"),
        (lambda: Q().date_range("2024-02-01", "2024-01-01"), "after end"),
        (lambda: Q().priority("urgent"), "high"),
        (lambda: Q().limit(0), "positive"),
        (lambda: Q().limit(2.0), "positive"),
        (lambda: Q().since("yesterday"), "ISO date"),
        (lambda: Q().since("2024-13-01"), "ISO date"),
        (lambda: Q().since(datetime(2024, 1, 1)), "naive"),
        (lambda: Q().since("2024-01-01T10:00:00"), "naive"),
        (lambda: Q().before(20240101), "takes a date"),
        (lambda: Q().sort_by("colour"), "unknown field"),  # type: ignore[arg-type]
        (lambda: Q().sort_by("date", "desc"), "SortOrder"),  # type: ignore[arg-type]
        (lambda: Q().has_flag("\\Recent"), "unknown system flag"),
        (lambda: Q().has_flag("has space"), "atom"),
        (lambda: Q().has_flag(""), "non-empty"),
        (lambda: Q().message_id("<>"), "expected"),
        (lambda: Q().explain("pop3"), "unknown provider"),  # type: ignore[arg-type]
    ],
)
def test_bad_input_raises_validation_error(build: object, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        build()  # type: ignore[operator]


# ---- matches(): the reference semantics ---------------------------------------------------


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (Q(), True),
        (~Q(), False),
        (Q().from_sender("LOVELACE"), True),  # display name, case-insensitive
        (Q().from_sender("ada@example.com"), True),
        (Q().from_sender("bob"), False),
        (Q().to_recipient("cy@example"), True),
        (Q().to_recipient("org, cy"), True),  # the joined rendering, like the header
        (Q().cc("dee <dee@"), True),
        (Q().subject_contains("café"), True),
        (Q().subject_contains("CAFÉ"), True),
        (Q().subject_contains("tea"), False),
        (Q().body_contains("PAY"), True),
        (Q().body_contains("<b>"), True),  # HTML is searched as written
        (Q().body_contains("Invoice #42"), False),  # the subject is not the body
        (Q().text("Invoice #42"), True),  # TEXT includes headers
        (Q().text("list-id: <billing"), True),
        (Q().header("x-priority", "highest"), True),
        (Q().header("List-Id"), True),
        (Q().header("Reply-To"), False),
        (Q().has_attachment(), True),
        (Q().attachment_name(".pdf"), True),
        (Q().attachment_name(".doc"), False),
        # internal date 2024-06-01 06:31 UTC
        (Q().since("2024-06-01"), True),
        (Q().since("2024-06-02"), False),
        (Q().before("2024-06-01"), False),
        (Q().before("2024-06-02"), True),
        (Q().on("2024-06-01"), True),
        (Q().date_range("2024-05-01", "2024-05-31"), False),
        # Date header 2024-05-31 23:30 -07:00: its own day is May 31 (UTC would be June 1)
        (Q().sent_since("2024-05-31"), True),
        (Q().sent_since("2024-06-01"), False),
        (Q().sent_before("2024-06-01"), True),
        (Q().is_read(), True),
        (Q().is_unread(), False),
        (Q().is_starred(), False),
        (Q().is_important(), True),
        (Q().has_flag("$important"), True),
        (Q().label("work"), True),
        (Q().label("home"), False),
        (Q().folder("inbox"), True),
        (Q().folder("Archive"), False),
        (Q().larger_than(2047), True),
        (Q().larger_than(2048), False),  # strict
        (Q().smaller_than(2048), False),  # strict
        (Q().smaller_than(2049), True),
        (Q().priority("high"), True),
        (Q().priority("normal"), False),
        (Q().message_id("abc@mail.example.com"), True),
        (Q().message_id("<ABC@mail.example.com>"), False),  # ids are case-sensitive
        (Q().in_thread("t-1"), True),
        (Q().from_sender("ada") & Q().is_unread(), False),
        (Q().from_sender("bob") | Q().is_read(), True),
        (~(Q().from_sender("bob") | Q().is_unread()), True),
    ],
)
def test_matches(query: EmailQuery, expected: bool) -> None:
    assert query.matches(MSG) is expected


def test_missing_values_never_satisfy_comparisons() -> None:
    empty = Msg()
    for q in [
        Q().since("2000-01-01"),
        Q().before("2999-01-01"),
        Q().sent_since("2000-01-01"),
        Q().sent_before("2999-01-01"),
        Q().larger_than(0),
        Q().smaller_than(10**9),
        Q().subject_contains("a"),
        Q().from_sender("a"),
        Q().folder("INBOX"),
        Q().message_id("a@b"),
    ]:
        assert not q.matches(empty), q
    assert (~Q().since("2000-01-01")).matches(empty)


@pytest.mark.parametrize(
    ("headers", "level"),
    [
        ((("X-Priority", "2"),), "high"),
        ((("Importance", " High "),), "high"),
        ((("X-MSMail-Priority", "high"),), "high"),
        ((("X-Priority", "5 (Lowest)"),), "low"),
        ((("Importance", "low"),), "low"),
        ((("X-Priority", "3"),), "normal"),
        ((), "normal"),
        ((("X-Priority", "5"), ("Importance", "high")), "high"),  # any high signal wins
    ],
)
def test_priority_rule(headers: tuple[tuple[str, str], ...], level: str) -> None:
    message = Msg(headers=Headers(headers))
    assert [lv for lv in ("high", "normal", "low") if Q().priority(lv).matches(message)] == [level]  # type: ignore[arg-type]


def test_apply_filters_sorts_and_limits() -> None:
    day = datetime(2024, 1, 1, tzinfo=UTC)
    messages = [
        replace(MSG, subject=s, internal_date=day + timedelta(days=i), size=size)
        for i, (s, size) in enumerate([("b", 3), ("a", 1), ("c", 2), ("a", 9)])
    ]
    q = Q().larger_than(1)
    assert [m.size for m in q.apply(messages)] == [3, 2, 9]
    by_subject = q.sort_by("subject").sort_by("date", SortOrder.DESC)
    assert [(m.subject, m.size) for m in by_subject.apply(messages)] == [
        ("a", 9),
        ("b", 3),
        ("c", 2),
    ]
    assert [m.size for m in q.sort_by("size", SortOrder.DESC).limit(2).apply(messages)] == [9, 3]
    assert len(Q().sort_by("sent").sort_by("from").apply(messages)) == 4
