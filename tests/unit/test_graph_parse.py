"""Graph message JSON → ReceivedMessage, flag PATCHes, category edits and $batch bodies (pure)."""

from __future__ import annotations

import pytest

from xcomm import EmailQuery, ValidationError
from xcomm.email._graph_actions import CATEGORY, apply_categories, plan_patches
from xcomm.email._graph_batch import (
    Answer,
    SubRequest,
    batch_body,
    query_string,
    read_answers,
    sub_error,
)
from xcomm.email._graph_parse import GraphView, flag_patch, flags_of, parse_message


def test_a_sparse_or_odd_message_still_parses() -> None:
    m = parse_message(
        {
            "id": "AAMk=",
            "from": {"emailAddress": {"address": ""}},
            "sender": {"emailAddress": {"name": "Bob", "address": "bob@example.org"}},
            "toRecipients": [{"emailAddress": {}}, "junk", {"emailAddress": {"address": "a@b.c"}}],
            "receivedDateTime": "not a date",
            "categories": ["A", "A", 3, ""],
            "attachments": [
                {"@odata.type": "#microsoft.graph.itemAttachment", "id": "x", "name": "mail"},
                {"@odata.type": "#microsoft.graph.fileAttachment", "id": "f", "size": True},
            ],
            "singleValueExtendedProperties": [{"id": "Integer 0xe08", "value": "n/a"}],
        },
        folder="",
    )
    assert m.sender == "bob@example.org" and m.sender_name == "Bob"
    assert [a.email for a in m.to] == ["a@b.c"]
    assert m.received_at is None and m.flags == ("A",) and m.size == 0
    (only,) = m.attachments
    assert only.section == "f" and only.size == 0 and only.filename is None
    with pytest.raises(ValueError):
        parse_message({"subject": "no id"}, folder="")


def test_flags_and_their_patches_agree() -> None:
    data = {"isRead": True, "flag": {"flagStatus": "complete"}, "importance": "low",
            "isDraft": True}  # fmt: skip
    assert flags_of(data) == ("\\Seen", "\\Draft")
    assert flag_patch({"\\Seen": False, "\\FLAGGED": True, "$important": False}) == {
        "isRead": False,
        "flag": {"flagStatus": "flagged"},
        "importance": "normal",
    }
    with pytest.raises(ValidationError, match="no \\\\Answered flag"):
        flag_patch({"\\Answered": True})


def test_the_query_view_reads_categories_and_importance() -> None:
    low = parse_message({"id": "1", "importance": "low", "categories": ["Boss"]}, folder="")
    high = parse_message({"id": "2", "importance": "high"}, folder="")
    assert EmailQuery().priority("low").matches(GraphView(low))
    assert EmailQuery().priority("high").matches(GraphView(high))
    assert EmailQuery().label("boss").matches(GraphView(low))
    assert not EmailQuery().label("$Important").matches(GraphView(high))


def test_category_edits_and_patch_plans() -> None:
    assert apply_categories(["Q4", "Boss"], {"boss": False, "New": True, "q4": True}) == [
        "Q4",
        "New",
    ]
    plans = plan_patches(
        {"m1": {"\\Seen": True, CATEGORY + "X": True}, "m2": {"\\Flagged": False}},
        {"m1": ["Y"]},
    )
    assert plans == {
        "m1": {"isRead": True, "categories": ["Y", "X"]},
        "m2": {"flag": {"flagStatus": "notFlagged"}},
    }


def test_batch_bodies_and_answers() -> None:
    requests = [
        SubRequest("PATCH", "https://graph.microsoft.com/v1.0/me/messages/a", {"isRead": True}),
        SubRequest("DELETE", "/me/messages/b"),
    ]
    assert batch_body(requests, ["1", "2"]) == {
        "requests": [
            {"id": "1", "method": "PATCH", "url": "/me/messages/a", "body": {"isRead": True},
             "headers": {"Content-Type": "application/json"}},
            {"id": "2", "method": "DELETE", "url": "/me/messages/b"},
        ]
    }  # fmt: skip
    with pytest.raises(ValueError):
        batch_body([requests[1]] * 21, [str(i) for i in range(21)])
    answers = read_answers({"responses": [{"id": "1", "status": 204}, {"id": "2"}, "junk"]})
    assert list(answers) == ["1"] and answers["1"].headers == {}
    throttled = sub_error(requests[1], Answer(status=429, headers={"Retry-After": "7"}, body=None))
    assert throttled is not None and throttled.retry_after == 7.0
    assert sub_error(requests[1], Answer(status=204, headers={}, body=None)) is None


def test_query_strings_keep_odata_dollars() -> None:
    text = query_string({"$filter": "subject eq 'a&b' and x", "$top": 5, "$search": '"a+b"'})
    assert text == "$filter=subject%20eq%20'a%26b'%20and%20x&$top=5&$search=%22a%2Bb%22"
