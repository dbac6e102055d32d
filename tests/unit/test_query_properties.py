"""Property tests: random queries never break a compiler, and the IMAP superset rule holds.

The IMAP criteria are parsed back into a condition tree by a tiny RFC 3501 SEARCH parser and
evaluated with the same local semantics; so for every query and message:

- a message the query matches is in the server's result (the superset rule);
- server result AND the plan's client residual (AND the SELECTed folder) == matches();
- an exact plan's criteria mean exactly the query, and round-trip to the same structure.
"""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, date, datetime, timedelta, timezone

from hypothesis import HealthCheck, given, settings, strategies as st
from test_query import Headers, Msg

from xcomm import Address, EmailQuery
from xcomm.email import _query_ast as ast
from xcomm.email._query_match import evaluate

Q = EmailQuery
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
SYSTEM = {"SEEN": "\\Seen", "ANSWERED": "\\Answered", "FLAGGED": "\\Flagged",
          "DELETED": "\\Deleted", "DRAFT": "\\Draft"}  # fmt: skip

# ---- a tiny SEARCH criteria parser --------------------------------------------------------

TOKEN = re.compile(r'\s*(?:(\()|(\))|"((?:[^"\\]|\\.)*)"|([^\s()"]+))')


def tokenize(text: str) -> list[tuple[str, str]]:
    tokens, pos = [], 0
    while pos < len(text):
        match = TOKEN.match(text, pos)
        assert match, text[pos:]
        pos = match.end()
        if match.group(1):
            tokens.append(("(", "("))
        elif match.group(2):
            tokens.append((")", ")"))
        elif match.group(3) is not None:
            tokens.append(("str", re.sub(r"\\(.)", r"\1", match.group(3))))
        else:
            tokens.append(("atom", match.group(4)))
    return tokens


def parse_criteria(text: str) -> ast.Node:
    tokens = tokenize(text)
    keys = []
    while tokens:
        keys.append(_key(tokens))
    return ast.and_(*keys) if len(keys) != 1 else keys[0]


def _day(value: str) -> date:
    d, mon, y = value.split("-")
    return date(int(y), MONTHS.index(mon) + 1, int(d))


def _key(tokens: list[tuple[str, str]]) -> ast.Node:
    kind, value = tokens.pop(0)
    if kind == "(":
        items = []
        while tokens[0][0] != ")":
            items.append(_key(tokens))
        tokens.pop(0)
        return ast.And(tuple(items))
    assert kind == "atom", (kind, value)
    name = value.upper()
    strings = {"FROM": ast.From, "TO": ast.To, "CC": ast.Cc, "SUBJECT": ast.Subject,
               "BODY": ast.Body, "TEXT": ast.Text}  # fmt: skip
    days = {"SINCE": ast.ReceivedSince, "BEFORE": ast.ReceivedBefore,
            "SENTSINCE": ast.SentSince, "SENTBEFORE": ast.SentBefore}  # fmt: skip
    if name == "ALL":
        return ast.TRUE
    if name == "NOT":
        return ast.Not(_key(tokens))
    if name == "OR":
        return ast.Or((_key(tokens), _key(tokens)))
    if name in strings:
        return strings[name](tokens.pop(0)[1])
    if name == "HEADER":
        return ast.Header(tokens.pop(0)[1], tokens.pop(0)[1])
    if name in days:
        return days[name](_day(tokens.pop(0)[1]))
    if name in ("LARGER", "SMALLER"):
        size = int(tokens.pop(0)[1])
        return ast.Larger(size) if name == "LARGER" else ast.Smaller(size)
    if name in SYSTEM:
        return ast.Flag(SYSTEM[name])
    if name == "KEYWORD":
        return ast.Flag(tokens.pop(0)[1])
    raise AssertionError(f"unknown search key {value}")


def normal(node: ast.Node) -> ast.Node:
    """Negation normal form (NOT only on leaves; the IMAP compiler writes NOT over a list as
    an OR of NOTs, for Dovecot), nested And/Or flattened, duplicates dropped."""
    if isinstance(node, ast.Not):
        return _negated(node.item)
    if isinstance(node, ast.And | ast.Or):
        kind = type(node)
        items: list[ast.Node] = []
        for item in map(normal, node.items):
            for sub in item.items if isinstance(item, kind) else (item,):
                if sub not in items:
                    items.append(sub)
        return items[0] if len(items) == 1 else kind(tuple(items))
    return node


def _negated(node: ast.Node) -> ast.Node:
    if isinstance(node, ast.Not):
        return normal(node.item)
    if isinstance(node, ast.And):
        return normal(ast.Or(tuple(ast.Not(item) for item in node.items)))
    if isinstance(node, ast.Or):
        return normal(ast.And(tuple(ast.Not(item) for item in node.items)))
    return ast.Not(node)


# ---- strategies ------------------------------------------------------------------------------

WORDS = ["ada", "Bob", "café", "invoice", 'say "hi"', "back\\slash", "x", "Grüße", "42", "OR"]
text = st.one_of(
    st.sampled_from(WORDS),
    st.text(
        st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="\u2028\u2029"),
        min_size=1,
        max_size=8,
    ),
)
DAYS = [date(2024, 5, 30), date(2024, 5, 31), date(2024, 6, 1), date(2024, 6, 2)]
day = st.sampled_from(DAYS)
HEADER_NAMES = ["X-Priority", "Importance", "List-Id", "Message-ID", "X-Custom"]
FLAGS = ["\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft", "$Important", "$Label1"]
LABELS = ["Work", "INBOX", "STARRED", "home"]
FOLDERS = ["INBOX", "Archive", "Sent"]

leaf = st.one_of(
    text.map(lambda v: Q().from_sender(v)),
    text.map(lambda v: Q().to_recipient(v)),
    text.map(lambda v: Q().cc(v)),
    text.map(lambda v: Q().subject_contains(v)),
    text.map(lambda v: Q().body_contains(v)),
    text.map(lambda v: Q().text(v)),
    st.builds(lambda n, v: Q().header(n, v), st.sampled_from(HEADER_NAMES), st.just("") | text),
    st.just(Q().has_attachment()),
    text.map(lambda v: Q().attachment_name(v)),
    day.map(lambda d: Q().since(d)),
    day.map(lambda d: Q().before(d)),
    day.map(lambda d: Q().on(d)),
    day.map(lambda d: Q().sent_since(d)),
    day.map(lambda d: Q().sent_before(d)),
    st.sampled_from(FLAGS).map(lambda f: Q().has_flag(f)),
    st.sampled_from(LABELS).map(lambda v: Q().label(v)),
    st.sampled_from(FOLDERS).map(lambda v: Q().folder(v)),
    st.integers(0, 4000).map(lambda n: Q().larger_than(n)),
    st.integers(0, 4000).map(lambda n: Q().smaller_than(n)),
    st.sampled_from(["high", "normal", "low"]).map(lambda v: Q().priority(v)),  # type: ignore[arg-type]
    st.sampled_from(["a@x", "b@y.example"]).map(lambda v: Q().message_id(v)),
    st.sampled_from(["t1", "t2"]).map(lambda v: Q().in_thread(v)),
)
queries = st.recursive(
    leaf,
    lambda children: st.one_of(
        st.lists(children, min_size=2, max_size=3).map(lambda qs: Q.all_of(*qs)),
        st.lists(children, min_size=2, max_size=3).map(lambda qs: Q.any_of(*qs)),
        children.map(lambda q: ~q),
    ),
    max_leaves=8,
)
EXACT_IMAP = (
    ast.From, ast.To, ast.Cc, ast.Subject, ast.Body, ast.Text, ast.Header, ast.ReceivedSince,
    ast.ReceivedBefore, ast.SentSince, ast.SentBefore, ast.Flag, ast.Larger, ast.Smaller,
)  # fmt: skip


def leaves(node: ast.Node) -> list[ast.Node]:
    if isinstance(node, ast.And | ast.Or):
        return [leaf for item in node.items for leaf in leaves(item)]
    if isinstance(node, ast.Not):
        return leaves(node.item)
    return [node]


def _address(name: str | None, email: str) -> Address:
    return Address(email=email, name=name)


addresses = st.builds(
    _address,
    st.sampled_from([None, "Ada", "Bob Café"]),
    st.sampled_from(["ada@example.com", "bob@x.org", "or@42.net"]),
)
_messages = st.builds(
    Msg,
    sender=st.none() | addresses,
    to=st.lists(addresses, max_size=2).map(tuple),
    cc=st.lists(addresses, max_size=2).map(tuple),
    subject=st.none() | st.sampled_from(WORDS) | text,
    text=st.none() | st.sampled_from(WORDS) | text,
    html=st.none() | st.sampled_from(WORDS).map(lambda w: f"<p>{w}</p>"),
    headers=st.lists(
        st.tuples(st.sampled_from(HEADER_NAMES), st.sampled_from(["1", "5 (low)", "high", "a@x"]))
    ).map(lambda pairs: Headers(tuple(pairs))),
    date=st.none()
    | st.builds(
        lambda d, h, off: datetime(
            d.year, d.month, d.day, h, tzinfo=timezone(timedelta(hours=off))
        ),
        day,
        st.integers(0, 23),
        st.integers(-12, 14),
    ),
    internal_date=st.none()
    | st.builds(
        lambda d, h: datetime(d.year, d.month, d.day, h, tzinfo=UTC), day, st.integers(0, 23)
    ),
    size=st.none() | st.integers(0, 4001),
    flags=st.frozensets(st.sampled_from([*FLAGS, "\\seen", "$important"])),
    labels=st.frozensets(st.sampled_from(LABELS)),
    attachments=st.lists(st.sampled_from(["a.pdf", "Grüße.txt"]), max_size=2).map(tuple),
    folder=st.none() | st.sampled_from([*FOLDERS, "inbox"]),
    message_id=st.none() | st.sampled_from(["<a@x>", "b@y.example", "<A@x>"]),
    thread_id=st.none() | st.sampled_from(["t1", "t2"]),
)


def _consistent(message: Msg) -> Msg:
    """Its Message-ID header and `message_id` agree, as on a real server (the IMAP form of
    `message_id()` is a HEADER search)."""
    pairs = [pair for pair in message.headers.pairs if pair[0].lower() != "message-id"]
    if message.message_id is not None:
        pairs.append(("Message-ID", message.message_id))
    return dataclasses.replace(message, headers=Headers(tuple(pairs)))


messages = _messages.map(_consistent)

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ---- properties ------------------------------------------------------------------------------


@SETTINGS
@given(queries)
def test_no_compiler_crashes_and_output_is_clean(query: EmailQuery) -> None:
    criteria = query.to_imap()
    search = query.to_imap_search()
    assert search.charset == (None if criteria.isascii() else "UTF-8")
    chunks = search.wire()
    assert all(c.endswith(b"}\r\n") for c in chunks[:-1])
    assert len(search.wire(literal_plus=True)) == 1
    assert b"".join(chunks).count(b"\n") == len(chunks) - 1
    gmail = query.to_gmail()
    assert "\n" not in gmail and "\r" not in gmail
    query.to_gmail_params()
    graph = query.to_graph()
    if "$filter" in graph:
        assert str(graph["$filter"]).count("'") % 2 == 0
        assert "$search" not in graph
    if "$search" in graph:
        assert "$orderby" not in graph and int(graph["$top"]) <= 250  # type: ignore[call-overload]
    for provider in ("imap", "gmail", "graph"):
        assert str(query.explain(provider))  # type: ignore[arg-type]


@SETTINGS
@given(queries, messages)
def test_imap_superset_rule_and_pipeline(query: EmailQuery, message: Msg) -> None:
    plan = query.explain("imap")
    server = parse_criteria(str(plan.request))
    matched = query.matches(message)
    on_server = evaluate(server, message)
    if matched:
        assert on_server, (query, plan.request)
    in_folder = plan.folder is None or Q().folder(plan.folder).matches(message)
    client = plan.client is None or plan.client.matches(message)
    assert (on_server and client and in_folder) == matched


@SETTINGS
@given(queries, st.lists(messages, min_size=1, max_size=5))
def test_exact_imap_criteria_round_trip(query: EmailQuery, sample: list[Msg]) -> None:
    if not all(isinstance(leaf, EXACT_IMAP) for leaf in leaves(query.condition)):
        return
    plan = query.explain("imap")
    assert plan.exact and plan.folder is None
    parsed = parse_criteria(str(plan.request))
    for message in sample:
        assert evaluate(parsed, message) == query.matches(message)
    if query.condition not in (ast.TRUE, ast.FALSE):
        assert normal(parsed) == normal(query.condition)


@SETTINGS
@given(queries)
def test_json_round_trip(query: EmailQuery) -> None:
    assert EmailQuery.from_json(query.to_json()) == query


@SETTINGS
@given(queries, messages)
def test_algebra_matches_boolean_logic(query: EmailQuery, message: Msg) -> None:
    other = Q().is_read()
    assert (~query).matches(message) is not query.matches(message)
    assert (query & other).matches(message) == (query.matches(message) and other.matches(message))
    assert (query | other).matches(message) == (query.matches(message) or other.matches(message))


def test_parser_reads_what_the_compiler_writes() -> None:
    q = (Q().from_sender('a "b"') | ~Q().since("2024-06-01")) & Q().has_flag("$X")
    assert normal(parse_criteria(q.to_imap())) == normal(q.condition)
