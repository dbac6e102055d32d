"""The pure compilers: IMAP SEARCH, Gmail q/labelIds, Graph $filter/$search, and explain()."""

from __future__ import annotations

import pytest

from xcomm import EmailQuery, SortOrder

Q = EmailQuery


# ---- IMAP -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "criteria"),
    [
        (Q(), "ALL"),
        (~Q(), "NOT ALL"),
        (Q().from_sender("ada@example.com"), 'FROM "ada@example.com"'),
        (Q().to_recipient("b"), 'TO "b"'),
        (Q().cc("c"), 'CC "c"'),
        (Q().subject_contains('say "hi" \\o/'), 'SUBJECT "say \\"hi\\" \\\\o/"'),
        (Q().body_contains("x y"), 'BODY "x y"'),
        (Q().text("t"), 'TEXT "t"'),
        (Q().header("List-Id", "news"), 'HEADER "List-Id" "news"'),
        (Q().header("List-Id"), 'HEADER "List-Id" ""'),
        (Q().since("2024-05-01"), "SINCE 1-May-2024"),
        (Q().before("2024-12-25"), "BEFORE 25-Dec-2024"),
        (Q().on("2024-02-29"), "SINCE 29-Feb-2024 BEFORE 1-Mar-2024"),
        (Q().date_range("2024-01-01", "2024-01-31"), "SINCE 1-Jan-2024 BEFORE 1-Feb-2024"),
        (Q().sent_since("2024-01-02"), "SENTSINCE 2-Jan-2024"),
        (Q().sent_before("2024-01-02"), "SENTBEFORE 2-Jan-2024"),
        (Q().larger_than(1000).smaller_than(5000), "LARGER 1000 SMALLER 5000"),
        (Q().is_read(), "SEEN"),
        (Q().is_unread(), "NOT SEEN"),
        (Q().is_starred(), "FLAGGED"),
        (
            Q().has_flag("\\Answered").has_flag("\\Deleted").has_flag("\\Draft"),
            "ANSWERED DELETED DRAFT",
        ),
        (Q().is_important(), "KEYWORD $Important"),
        (Q().from_sender("a") | Q().from_sender("b"), 'OR FROM "a" FROM "b"'),
        (
            Q.any_of(Q().from_sender("a"), Q().from_sender("b"), Q().from_sender("c")),
            'OR FROM "a" OR FROM "b" FROM "c"',
        ),
        (
            (Q().from_sender("a").is_read()) | Q().subject_contains("s"),
            'OR (FROM "a" SEEN) SUBJECT "s"',
        ),
        # NOT over a list is sent as an OR of NOTs: Dovecot 2.3 loses a NOT before "(...)"
        (~(Q().from_sender("a").is_read()), 'OR NOT FROM "a" NOT SEEN'),
        (~(Q().from_sender("a") | Q().is_read()), 'NOT OR FROM "a" SEEN'),
        # superset rule: inexpressible parts become ALL outside NOT and vanish safely inside it
        (Q().from_sender("a").has_attachment(), 'FROM "a"'),
        (Q().from_sender("a") | Q().has_attachment(), "ALL"),
        (~Q().has_attachment(), "ALL"),
        (Q().from_sender("a") & ~Q().label("x"), 'FROM "a"'),
        (~(Q().from_sender("a") & Q().has_attachment()), "ALL"),
        (~(Q().from_sender("a") | Q().has_attachment()), 'NOT FROM "a"'),
        # over-approximations: a server pre-filter, still a superset
        (Q().message_id("<id@x>"), 'HEADER "Message-ID" "id@x"'),
        (~Q().message_id("id@x"), "ALL"),
        (
            Q().priority("low"),
            'OR HEADER "X-Priority" "4" OR HEADER "X-Priority" "5" OR HEADER "Importance" "low" '
            'HEADER "X-MSMail-Priority" "low"',
        ),
        (Q().priority("normal"), "ALL"),
        (Q().folder("Archive").is_unread(), "NOT SEEN"),  # the folder is SELECTed instead
    ],
)
def test_imap_criteria(query: EmailQuery, criteria: str) -> None:
    assert query.to_imap() == criteria


def test_imap_non_ascii_needs_charset_and_strict_wire_uses_literals() -> None:
    search = Q().from_sender("a").subject_contains("Grüße").to_imap_search()
    assert search.args == ('FROM "a"', 'SUBJECT "Grüße"')
    assert search.charset == "UTF-8"
    data = "Grüße".encode()
    assert search.wire() == [b'CHARSET UTF-8 FROM "a" SUBJECT {7}\r\n', data]
    assert search.wire(literal_plus=True) == [b'CHARSET UTF-8 FROM "a" SUBJECT {7+}\r\n' + data]
    ascii_only = Q().subject_contains("plain").to_imap_search()
    assert ascii_only.charset is None
    assert ascii_only.wire() == [b'SUBJECT "plain"']


def test_imap_wire_with_two_literals() -> None:
    search = (Q().subject_contains("é") | Q().body_contains("ü")).to_imap_search()
    assert search.wire() == [
        b"CHARSET UTF-8 OR SUBJECT {2}\r\n",
        "é".encode() + b" BODY {2}\r\n",
        "ü".encode(),
    ]


def test_imap_explain() -> None:
    q = Q().folder("Archive").from_sender("a").has_attachment().sort_by("date").limit(5)
    plan = q.explain("imap")
    assert plan.request == 'FROM "a"'
    assert plan.folder == "Archive"
    assert [(r.condition, r.where) for r in plan.rows] == [
        ("folder 'Archive'", "server"),
        ("from ~ 'a'", "server"),
        ("has attachment", "client"),
    ]
    assert plan.client == Q().has_attachment()
    assert not plan.exact and not plan.sort_on_server and not plan.limit_on_server
    text = str(plan)
    assert "has attachment" in text and "IMAP SEARCH cannot see attachments" in text
    assert "the client sorts" in text
    assert Q().from_sender("a").explain("imap").exact


def test_imap_server_plus_client_row() -> None:
    plan = (Q().message_id("a@b") | Q().subject_contains("x")).explain("imap")
    assert plan.rows[0].where == "server+client"
    assert plan.request == 'OR HEADER "Message-ID" "a@b" SUBJECT "x"'
    assert plan.client is not None


# ---- Gmail ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "q"),
    [
        (Q(), ""),
        (Q().from_sender("ada@example.com"), "from:ada@example.com"),
        (Q().from_sender("Ada Lovelace"), 'from:"Ada Lovelace"'),
        (Q().to_recipient("b").cc("c"), "to:b cc:c"),
        (Q().subject_contains("dinner plans"), 'subject:"dinner plans"'),
        (Q().subject_contains("OR"), 'subject:"OR"'),
        (Q().text("movie"), "movie"),
        (Q().body_contains("movie"), "movie"),  # no body-only operator: a superset
        (Q().has_attachment().attachment_name("report.pdf"), "has:attachment filename:report.pdf"),
        (Q().since("2024-01-01"), "after:1704067200"),
        (Q().before("2024-01-02"), "before:1704153600"),
        (Q().is_unread(), "is:unread"),
        (Q().is_read(), "is:read"),
        (Q().is_starred().is_important(), "is:starred is:important"),
        (Q().has_flag("\\Draft"), "in:drafts"),
        (Q().label("My Label"), 'label:"My Label"'),
        (Q().folder("sent"), "in:sent"),
        (Q().larger_than(1000).smaller_than(9000), "larger:1000 smaller:9000"),
        (Q().message_id("<a.b@x>"), "rfc822msgid:a.b@x"),
        (Q().from_sender("a") | Q().from_sender("b"), "from:a OR from:b"),
        ((Q().from_sender("a").is_read()) | Q().to_recipient("b"), "(from:a is:read) OR to:b"),
        (
            Q().is_read() & (Q().from_sender("a") | Q().from_sender("b")),
            "is:read (from:a OR from:b)",
        ),
        (~Q().from_sender("a"), "-from:a"),
        (~(Q().from_sender("a") | Q().from_sender("b")), "-(from:a OR from:b)"),
        (Q().header("List-Id", "x").from_sender("a"), "from:a"),  # header: client-side
        (Q().subject_contains('say "hi"'), 'subject:"say hi"'),
        (~Q().subject_contains('say "hi"'), ""),  # under NOT a superset term cannot be used
    ],
)
def test_gmail_q(query: EmailQuery, q: str) -> None:
    assert query.to_gmail() == q


def test_gmail_params_move_system_labels_to_label_ids() -> None:
    q = Q().folder("inbox").label("Work").is_starred().from_sender("a").limit(10)
    params = q.to_gmail_params()
    assert params == {
        "q": "label:Work from:a",
        "labelIds": ["INBOX", "STARRED"],
        "maxResults": 10,
    }
    assert q.to_gmail() == "in:inbox label:Work is:starred from:a"
    plan = q.explain("gmail")
    assert plan.exact and plan.limit_on_server
    # a client-side residual means the limit cannot be pushed down
    assert "maxResults" not in q.header("X-A").to_gmail_params()
    # an order Gmail cannot produce is sorted by the client
    plan = Q().sort_by("size").limit(3).explain("gmail")
    assert not plan.sort_on_server and not plan.limit_on_server
    assert Q().sort_by("date", SortOrder.DESC).limit(700).to_gmail_params()["maxResults"] == 500


def test_gmail_explain_table() -> None:
    text = str(Q().from_sender("a").sent_since("2024-01-01").explain("gmail"))
    assert "from:a" in text
    assert "Gmail filters on the received date only" in text


# ---- Graph ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "params"),
    [
        (Q(), {}),
        (
            Q().from_sender("a@b.com"),
            {"$filter": "from/emailAddress/address eq 'a@b.com'"},
        ),
        (
            Q().to_recipient("o'neil@x.com"),
            {"$filter": "toRecipients/any(r: r/emailAddress/address eq 'o''neil@x.com')"},
        ),
        (
            Q().cc("c@x.com"),
            {"$filter": "ccRecipients/any(r: r/emailAddress/address eq 'c@x.com')"},
        ),
        (Q().subject_contains("it's"), {"$filter": "contains(subject,'it''s')"}),
        (
            Q().date_range("2024-01-01", "2024-01-31"),
            {
                "$filter": "receivedDateTime ge 2024-01-01T00:00:00Z and "
                "receivedDateTime lt 2024-02-01T00:00:00Z"
            },
        ),
        (Q().sent_since("2024-01-01"), {"$filter": "sentDateTime ge 2024-01-01T00:00:00Z"}),
        (Q().is_unread(), {"$filter": "isRead eq false"}),
        (Q().is_starred(), {"$filter": "flag/flagStatus eq 'flagged'"}),
        (Q().has_flag("\\Draft"), {"$filter": "isDraft eq true"}),
        (Q().has_attachment(), {"$filter": "hasAttachments eq true"}),
        (Q().priority("high"), {"$filter": "importance eq 'high'"}),
        (Q().label("Blue"), {"$filter": "categories/any(c: c eq 'Blue')"}),
        (Q().message_id("a@b"), {"$filter": "internetMessageId eq '<a@b>'"}),
        (Q().in_thread("AAQ="), {"$filter": "conversationId eq 'AAQ='"}),
        (
            Q().is_read() | Q().is_starred().has_attachment(),
            {
                "$filter": "isRead eq true or "
                "(flag/flagStatus eq 'flagged' and hasAttachments eq true)"
            },
        ),
        (~Q().subject_contains("x"), {"$filter": "not (contains(subject,'x'))"}),
        (Q().from_sender("Ada"), {}),  # a name fragment: client-side
        (Q().larger_than(5).header("X-A"), {}),
    ],
)
def test_graph_filter(query: EmailQuery, params: dict[str, object]) -> None:
    assert query.to_graph() == params


def test_graph_orderby_leads_filter_with_the_sorted_property() -> None:
    q = Q().is_unread().sort_by("date", SortOrder.DESC).limit(25)
    assert q.to_graph() == {
        "$filter": "receivedDateTime ge 1900-01-01T00:00:00Z and isRead eq false",
        "$orderby": "receivedDateTime desc",
        "$top": 25,
    }
    either = (Q().is_read() | Q().is_starred()).sort_by("sent")
    assert either.to_graph() == {
        "$filter": "sentDateTime ge 1900-01-01T00:00:00Z and "
        "(isRead eq true or flag/flagStatus eq 'flagged')",
        "$orderby": "sentDateTime asc",
    }
    assert Q().sort_by("date").limit(5000).to_graph() == {
        "$orderby": "receivedDateTime asc",
        "$top": 1000,
    }
    # only a single date key is pushed; everything else is sorted locally, limit too
    plan = Q().is_read().sort_by("subject").limit(3).explain("graph")
    assert plan.request == {"$filter": "isRead eq true"}
    assert not plan.sort_on_server and not plan.limit_on_server


def test_graph_full_text_uses_search_and_moves_the_rest_client_side() -> None:
    q = Q().body_contains("quarterly report").from_sender("a@b.com").is_unread().limit(10)
    plan = q.explain("graph")
    assert plan.request == {"$search": '"body:(quarterly report) AND from:a@b.com"', "$top": 10}
    assert (
        plan.client
        == q.__class__().body_contains("quarterly report").from_sender("a@b.com").is_unread()
    )
    assert any("250" in n for n in plan.notes)
    assert not plan.limit_on_server
    assert Q().text("x").limit(900).to_graph() == {"$search": '"x"', "$top": 250}
    everything = (Q().text("x") | ~Q().body_contains("y")).explain("graph")
    assert everything.request == {}
    assert everything.client is not None


def test_graph_folder_is_a_path() -> None:
    plan = Q().folder("Inbox").is_read().explain("graph")
    assert plan.folder == "Inbox"
    assert plan.request == {"$filter": "isRead eq true"}
    assert plan.rows[0].server == "/mailFolders/Inbox"
    assert plan.exact


def test_explain_str_lists_every_row() -> None:
    text = str(Q().explain("graph"))
    assert "every message" in text
    text = str(Q().from_sender("x").explain("imap"))
    assert text.splitlines()[1].split() == [
        "condition",
        "runs",
        "on",
        "server",
        "form",
        "/",
        "note",
    ]
