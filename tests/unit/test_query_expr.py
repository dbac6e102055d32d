"""`EmailQuery.parse()` and `to_expression()`: the Gmail-like query expression language."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

import pytest
from hypothesis import given
from test_query import Msg
from test_query_properties import SETTINGS, messages, queries

from xcomm import EmailQuery, QuerySyntaxError, ValidationError
from xcomm.email import _query_ast as ast

Q = EmailQuery
TODAY = date(2024, 3, 31)


def parse(text: str) -> EmailQuery:
    return Q.parse(text, today=TODAY)


# ---- every field --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("from:bob@x.org", Q().from_sender("bob@x.org")),
        ("to:ann cc:cy", Q().to_recipient("ann").cc("cy")),
        ('subject:"two words"', Q().subject_contains("two words")),
        ('body:"free text"', Q().body_contains("free text")),
        ('body:x "free text"', Q().body_contains("x").text("free text")),
        ("invoice", Q().text("invoice")),
        ("is:unread is:read", Q().is_unread().is_read()),
        ("is:starred is:important", Q().is_starred().is_important()),
        (
            "is:answered is:draft is:deleted",
            Q().has_flag("\\Answered").has_flag("\\Draft").has_flag("\\Deleted"),
        ),
        ("keyword:$Label1", Q().has_flag("$Label1")),
        ("has:attachment filename:report.pdf", Q().has_attachment().attachment_name("report.pdf")),
        ("label:Work in:Archive folder:Sent", Q().label("Work").folder("Archive").folder("Sent")),
        ("larger:1M smaller:10K", Q().larger_than(1024 * 1024).smaller_than(10 * 1024)),
        ("larger:500 smaller:2kb", Q().larger_than(500).smaller_than(2048)),
        ("since:2024-01-01 before:2024-02-01", Q().since("2024-01-01").before("2024-02-01")),
        ("after:2024/1/5", Q().since("2024-01-05")),
        ("on:2024-03-03", Q().on("2024-03-03")),
        (
            "sent_since:2024-01-01 sent_before:2024-01-09",
            Q().sent_since("2024-01-01").sent_before("2024-01-09"),
        ),
        ("newer_than:7d older_than:2w", Q().since("2024-03-24").before("2024-03-17")),
        ("newer_than:1m older_than:1y", Q().since("2024-02-29").before("2023-03-31")),
        ("header:X-Priority=1 header:List-Id", Q().header("X-Priority", "1").header("List-Id")),
        ('header:X-Note="a b=c"', Q().header("X-Note", "a b=c")),
        ("msgid:<a@x.org> rfc822msgid:b@y", Q().message_id("a@x.org").message_id("b@y")),
        ("thread:t1 priority:high", Q().in_thread("t1").priority("high")),
        ("FROM:bob IS:UNREAD", Q().from_sender("bob").is_unread()),
    ],
)
def test_each_field_builds_its_condition(text: str, expected: EmailQuery) -> None:
    assert parse(text) == expected


def test_the_empty_expression_matches_every_message() -> None:
    assert parse("") == parse("   ") == Q() == parse("()")


# ---- operators ----------------------------------------------------------------------------


def test_or_binds_tighter_than_the_implicit_and_as_in_gmail() -> None:
    a, b, c = Q().text("a"), Q().text("b"), Q().text("c")
    assert parse("a b OR c") == a & (b | c)
    assert parse("a OR b c") == (a | b) & c
    assert parse("(a b) OR c") == (a & b) | c
    assert parse("a AND b OR c") == a & (b | c)


def test_negation_with_minus_and_not() -> None:
    a, b = Q().text("a"), Q().text("b")
    assert parse("-a") == parse("NOT a") == ~a
    assert parse("-(a b)") == ~(a & b)
    assert parse("-from:x -is:unread") == ~Q().from_sender("x") & Q().is_read()
    assert parse("NOT NOT a") == a
    assert parse("e-mail") == Q().text("e-mail")


def test_operators_only_in_capitals_and_unquoted() -> None:
    assert parse("a or b") == Q().text("a").text("or").text("b")
    assert parse('a "OR" b') == Q().text("a").text("OR").text("b")


def test_quotes_escape_and_concatenate() -> None:
    assert parse(r'subject:"say \"hi\""') == Q().subject_contains('say "hi"')
    assert parse(r'"back\\slash"') == Q().text("back\\slash")
    assert parse('"from:x"') == Q().text("from:x")
    assert parse('from:"Ada L"ovelace') == Q().from_sender("Ada Lovelace")
    assert parse('"(a)"') == Q().text("(a)")


# ---- errors say where and what ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "column", "message"),
    [
        ("frm:bob", 1, "unknown field 'frm' at column 1; did you mean 'from'?"),
        ("a zzz:1", 3, "unknown field 'zzz' at column 3; use one of from, to, cc,"),
        ("from: bob", 6, "expected a value after 'from:' at column 1 (no space after the colon"),
        ("a OR", 5, "OR at column 3 needs a term after it"),
        ("OR a", 1, "OR at column 1 needs a term before it"),
        ("AND a", 1, "AND at column 1 needs a term before it"),
        ("a NOT", 6, "NOT at column 3 needs a term after it"),
        ("- a", 1, "'-' at column 1 must come right before a term"),
        ("(a b", 5, "the '(' at column 1 is never closed; expected ')' at column 5"),
        ("a b)", 4, "unexpected ')' at column 4: no '(' opens it"),
        ('subject:"open', 9, 'the quote at column 9 is never closed; expected a closing "'),
        ("is:unred", 4, "bad value for 'is:' at column 4: expected one of read, unread, "),
        ("larger:big", 8, "bad value for 'larger:' at column 8: expected a size such as 500"),
        ("since:2024-13-01", 7, "bad value for 'since:' at column 7: expected a date such as"),
        ("newer_than:7x", 12, "bad value for 'newer_than:' at column 12: expected an age"),
        ("has:pdf", 5, "bad value for 'has:' at column 5: expected has:attachment"),
        ("priority:urgent", 10, "bad value for 'priority:' at column 10: expected high, normal"),
        ('from:""', 6, "bad value for 'from:' at column 6: the value needs a non-empty string"),
        ('a ""', 3, "empty quotes at column 3"),
        ("header:a:b=1", 8, "bad value for 'header:' at column 8: header() got the name 'a:b'"),
        ("msgid:<a b>", 7, "bad value for 'msgid:' at column 7: message_id() got"),
    ],
)
def test_errors_name_the_column_and_what_was_expected(text: str, column: int, message: str) -> None:
    with pytest.raises(QuerySyntaxError) as caught:
        parse(text)
    assert str(caught.value).startswith(message)
    assert caught.value.column == column and caught.value.expression == text
    assert isinstance(caught.value, ValidationError)


def test_is_unread_suggests_the_close_value() -> None:
    with pytest.raises(QuerySyntaxError, match="did you mean 'unread'"):
        parse("is:unred")


def test_parse_takes_a_str() -> None:
    with pytest.raises(ValidationError, match="takes a str"):
        Q.parse(b"from:x")  # type: ignore[arg-type]


# ---- rendering ----------------------------------------------------------------------------


def test_to_expression_reads_like_what_a_person_writes() -> None:
    q = (Q().from_sender("billing@example.com") | Q().from_sender("Ada L")) & ~Q().label("Done")
    assert q.to_expression() == '(from:billing@example.com OR from:"Ada L") -label:Done'
    q = Q().is_unread().larger_than(2 * 1024 * 1024).smaller_than(1500).on("2024-05-01")
    assert (
        q.to_expression() == "is:unread larger:2M smaller:1500 since:2024-05-01 before:2024-05-02"
    )
    assert Q().text("OR").text("-x").text("a:b").to_expression() == '"OR" "-x" "a:b"'
    assert Q().message_id("<a@x>").header("X-A", "1").to_expression() == "msgid:<a@x> header:X-A=1"
    assert Q().to_expression() == ""
    assert EmailQuery.any_of().to_expression() == "-()"


def test_a_header_name_with_an_equals_sign_cannot_be_written() -> None:
    with pytest.raises(ValidationError, match="contains '='"):
        Q().header("A=B", "x").to_expression()


@SETTINGS
@given(queries, messages)
def test_parse_of_to_expression_matches_the_same_messages(query: EmailQuery, message: Msg) -> None:
    again = parse(query.to_expression())
    assert again.matches(message) == query.matches(message)


@SETTINGS
@given(queries)
def test_parse_of_to_expression_is_the_same_condition(query: EmailQuery) -> None:
    assert parse(query.to_expression()).condition == query.condition


def test_to_expression_of_a_parsed_query_is_stable() -> None:
    text = '(from:a OR -to:b) subject:"x y" is:unread larger:1M since:2024-01-01 "free text"'
    assert parse(text).to_expression() == text
    assert isinstance(parse(text).condition, ast.And)


def test_the_examples_in_docs_querying_run() -> None:
    page = (Path(__file__).resolve().parents[2] / "docs" / "querying.md").read_text("utf-8")
    section = page.split("## The expression language", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(r"```python\n(.*?)```", section, re.DOTALL)
    exec(compile(block, "docs/querying.md", "exec"), {})
