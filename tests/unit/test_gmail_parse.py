"""The pure parts of the Gmail provider: labels as flags, Gmail JSON into `ReceivedMessage`,
the query view, batch planning, method names and the send request."""

from __future__ import annotations

import base64
import json

import httpx
import pytest

from xcomm import EmailQuery
from xcomm.email._gmail_actions import plan_batch
from xcomm.email._gmail_errors import method_of
from xcomm.email._gmail_parse import (
    GmailView,
    b64url_decode,
    flags_of,
    label_ids_of,
    parse_message,
)
from xcomm.email._gmail_send import GMAIL_UPLOAD_THRESHOLD, send_request

NAMES = {"Label_7": "Boss", "INBOX": "INBOX"}


def test_labels_become_imap_style_flags_and_back() -> None:
    flags = flags_of(["INBOX", "UNREAD", "STARRED", "IMPORTANT", "Label_7", "Label_9"], NAMES)
    assert flags == ("INBOX", "\\Flagged", "$Important", "Boss", "Label_9")
    assert flags_of(["DRAFT"], {}) == ("\\Seen", "\\Draft")
    assert label_ids_of(flags) == {"UNREAD", "STARRED", "IMPORTANT"}
    assert label_ids_of(("\\Seen", "\\Draft")) == {"DRAFT"}


def test_base64url_with_or_without_padding() -> None:
    data = "Olá ✓".encode()
    text = base64.urlsafe_b64encode(data).decode()
    assert b64url_decode(text) == b64url_decode(text.rstrip("=")) == data
    assert b64url_decode("not base64!") == b""


def single_part(**body: object) -> dict[str, object]:
    return {
        "id": "abc",
        "threadId": "abc",
        "labelIds": ["INBOX"],
        "internalDate": "nonsense",
        "payload": {
            "partId": "",
            "mimeType": "text/plain",
            "filename": "",
            "headers": [
                {"name": "Subject", "value": "=?UTF-8?B?Q2Fmw6k=?="},
                {"name": "From", "value": "Ann <ann@example.com>"},
                {"name": "Content-Type", "value": "text/plain; charset=iso-8859-1"},
                {"name": "Subject", "value": "second subject is ignored"},
            ],
            "body": body,
        },
    }


def test_a_single_part_message_is_its_own_text_part() -> None:
    parsed = parse_message(single_part(size=4, data=b64(b"caf\xe9")), names={})
    m = parsed.message
    assert m.subject == "Café" and m.sender == "ann@example.com"
    assert m.text_part is not None and m.text_part.section == ""
    assert m.text_part.charset == "iso-8859-1" and not m.attachments
    assert m.received_at is None and m.size == 0 and m.flags == ("\\Seen", "INBOX")
    assert parsed.data == {"": b"caf\xe9"}
    assert m.__dict__["_text"] == "café"  # the body came inline: cached for text()
    masked = parse_message(single_part(size=4), names={})
    assert masked.data == {} and "_text" not in masked.message.__dict__


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def test_a_forwarded_message_is_one_attachment() -> None:
    answer = {
        "id": "f1",
        "payload": {
            "partId": "",
            "mimeType": "multipart/mixed",
            "headers": [],
            "parts": [
                {
                    "partId": "0",
                    "mimeType": "text/plain",
                    "filename": "",
                    "headers": [],
                    "body": {"size": 2, "data": b64(b"hi")},
                },
                {
                    "partId": "1",
                    "mimeType": "message/rfc822",
                    "filename": "",
                    "headers": [{"name": "Content-Type", "value": "message/rfc822"}],
                    "body": {"attachmentId": "ANGj_fwd", "size": 900},
                    "parts": [{"partId": "1.0", "mimeType": "text/plain", "body": {"size": 1}}],
                },
            ],
        },
    }
    parsed = parse_message(answer, names={})
    (forwarded,) = parsed.message.attachments
    assert (forwarded.section, forwarded.content_type) == ("1", "message/rfc822")
    assert parsed.attachment_ids == {"1": "ANGj_fwd"}
    assert parsed.message.thread_id is None and parsed.message.preview == ""


def test_the_view_reads_labels_and_folders_as_gmail_does() -> None:
    m = parse_message(
        {"id": "x", "labelIds": ["UNREAD", "STARRED", "CATEGORY_UPDATES", "Label_7", "DRAFT"]},
        names=NAMES,
        folder="Boss",
    ).message
    view = GmailView(m)
    assert {"UNREAD", "STARRED", "DRAFT", "Boss", "CATEGORY_UPDATES"} <= view.labels
    assert view.in_folder("boss") and view.in_folder("drafts") and view.in_folder("anywhere")
    assert not view.in_folder("inbox")
    assert EmailQuery().label("unread").matches(view)
    assert EmailQuery().folder("category_updates").matches(view)
    assert not EmailQuery().is_read().matches(view)


def test_batch_plan_groups_identical_changes() -> None:
    plan = plan_batch(
        {
            "a": {"UNREAD": False, "Label_7": True},
            "b": {"Label_7": True, "UNREAD": False},
            "c": {"UNREAD": False},
        }
    )
    assert plan == {(("Label_7",), ("UNREAD",)): ["a", "b"], ((), ("UNREAD",)): ["c"]}


@pytest.mark.parametrize(
    ("verb", "path", "method"),
    [
        ("GET", "messages", "messages.list"),
        ("GET", "messages/abc", "messages.get"),
        ("DELETE", "messages/abc", "messages.delete"),
        ("POST", "messages/abc/modify", "messages.modify"),
        ("POST", "messages/abc/untrash", "messages.untrash"),
        ("POST", "messages/batchModify", "messages.batchModify"),
        ("GET", "messages/abc/attachments/ANGj", "messages.attachments.get"),
        ("GET", "labels", "labels.list"),
        ("POST", "labels", "labels.create"),
        ("GET", "threads/t1", "threads.get"),
        ("GET", "history", "history.list"),
        ("GET", "profile", "getProfile"),
    ],
)
def test_method_names_from_paths(verb: str, path: str, method: str) -> None:
    url = f"https://gmail.googleapis.com/gmail/v1/users/alice@example.com/{path}"
    assert method_of(httpx.Request(verb, url)) == method


def test_send_request_picks_json_media_or_multipart() -> None:
    small = b"Subject: hi\r\n\r\nbody"
    _, url, body, kind = send_request(small, thread_id="t1")
    assert url.endswith("/messages/send") and kind == "application/json"
    assert json.loads(body)["threadId"] == "t1"
    big = b"Subject: big\r\n\r\n" + b"x" * GMAIL_UPLOAD_THRESHOLD
    _, url, body, kind = send_request(big)
    assert url.endswith("uploadType=media") and kind == "message/rfc822" and body == big
    _, url, body, kind = send_request(big, thread_id="t1")
    assert url.endswith("uploadType=multipart") and kind.startswith("multipart/related")
    boundary = kind.split('boundary="')[1].rstrip('"').encode()
    assert body.startswith(b"--" + boundary + b"\r\n") and body.endswith(
        b"--" + boundary + b"--\r\n"
    )
    assert body.count(b"--" + boundary) == 3 and big in body
