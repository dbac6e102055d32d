"""The pure half of the Outlook provider: which form a message goes in, and error mapping."""

from __future__ import annotations

import base64
import json

import httpx
import pytest

from xcomm import (
    Address,
    Attachment,
    AuthenticationError,
    EmailMessage,
    MessageError,
    ProviderError,
    RateLimitError,
    ServiceUnavailable,
    ValidationError,
)
from xcomm.email._graph_errors import classify, unknown_mailbox
from xcomm.email._graph_payload import (
    GRAPH_REQUEST_LIMIT,
    UPLOAD_CHUNK,
    UPLOAD_SESSION_MIN,
    plan_send,
    upload_ranges,
)

MiB = 1024 * 1024
SEND_MAIL = "https://graph.microsoft.com/v1.0/users/a@contoso.com/sendMail"
DRAFT = "https://graph.microsoft.com/v1.0/users/a@contoso.com/messages"


def message(**fields: object) -> EmailMessage:
    base: dict[str, object] = {
        "sender": Address(email="a@contoso.com"),
        "to": (Address(email="b@example.org"),),
        "subject": "s",
        "text": "t",
    }
    base.update(fields)
    return EmailMessage(**base)  # type: ignore[arg-type]


def test_plain_message_is_json() -> None:
    plan = plan_send(message(), message_id="<1@contoso.com>")
    assert (plan.kind, plan.content_type) == ("sendMail", "application/json")
    assert json.loads(plan.body)["message"]["internetMessageId"] == "<1@contoso.com>"


def test_both_bodies_too_big_for_mime_fall_back_to_json_html() -> None:
    big = Attachment(filename="a.bin", content=b"\0" * (2 * MiB + MiB // 2))
    plan = plan_send(message(html="<p>h</p>", attachments=(big,)), message_id=None)
    # base64 MIME of 2.5 MiB is over the limit; JSON (base64 once) fits
    assert (plan.kind, plan.content_type) == ("sendMail", "application/json")
    assert json.loads(plan.body)["message"]["body"] == {
        "contentType": "HTML",
        "content": "<p>h</p>",
    }


def test_both_bodies_without_sent_items_copy_use_json() -> None:
    plan = plan_send(message(html="<p>h</p>"), message_id=None, save_to_sent_items=False)
    assert plan.content_type == "application/json"
    assert json.loads(plan.body)["saveToSentItems"] is False


@pytest.mark.parametrize(
    ("fields", "save", "why"),
    [
        ({"sender": None}, True, "no From address"),
        ({}, False, "always saves to Sent Items"),
        (
            {"attachments": (Attachment(filename="a.bin", content=b"\0" * (3 * MiB)),)},
            True,
            "request limit",
        ),
    ],
)
def test_non_x_header_that_cannot_go_as_mime(
    fields: dict[str, object], save: bool, why: str
) -> None:
    headers = (("List-Unsubscribe", "<https://contoso.com/u>"),)
    with pytest.raises(MessageError, match=why):
        plan_send(message(headers=headers, **fields), message_id=None, save_to_sent_items=save)


def test_x_headers_stay_json() -> None:
    plan = plan_send(message(headers=(("x-mailer", "xcomm"),)), message_id=None)
    assert json.loads(plan.body)["message"]["internetMessageHeaders"] == [
        {"name": "x-mailer", "value": "xcomm"}
    ]


def test_mime_form_carries_bcc_and_the_message_id() -> None:
    plan = plan_send(
        message(headers=(("In-Reply-To", "<x@y>"),), bcc=(Address(email="c@example.org"),)),
        message_id="<7@contoso.com>",
    )
    raw = base64.b64decode(plan.body)
    assert plan.content_type == "text/plain"
    assert raw.startswith(b"Bcc: c@example.org\r\n")
    assert b"\r\nMessage-ID: <7@contoso.com>\r\n" in raw and b"\r\nIn-Reply-To: <x@y>\r\n" in raw


def test_draft_plan_splits_attachments() -> None:
    files = (
        Attachment(filename="big.bin", content=b"\0" * UPLOAD_SESSION_MIN),
        Attachment(filename="s1.bin", content=b"\1" * (2 * MiB)),
        Attachment(filename="s2.bin", content=b"\2" * (2 * MiB)),
    )
    plan = plan_send(message(attachments=files), message_id=None)
    assert plan.kind == "draft" and len(plan.body) <= GRAPH_REQUEST_LIMIT
    assert [a["name"] for a in json.loads(plan.body)["attachments"]] == ["s1.bin"]
    assert [a.filename for a in plan.attach] == ["s2.bin"]
    assert [a.filename for a in plan.upload] == ["big.bin"]


def test_line_breaks_are_refused_before_sending() -> None:
    with pytest.raises(ValidationError):
        plan_send(message(subject="a\r\nBcc: x@y"), message_id=None)
    with pytest.raises(ValidationError):
        plan_send(message(to=(Address(email="b@example.org", name="B\nC"),)), message_id=None)


def test_upload_ranges() -> None:
    assert UPLOAD_CHUNK % (320 * 1024) == 0
    assert UPLOAD_CHUNK <= 4 * MiB  # noqa: SIM300
    assert upload_ranges(10, chunk=4) == [(0, 3), (4, 7), (8, 9)]
    assert upload_ranges(8, chunk=4) == [(0, 3), (4, 7)]


# -- error mapping --------------------------------------------------------------------------


def answer(
    status: int, code: str | None = None, *, url: str = SEND_MAIL, **headers: str
) -> httpx.Response:
    content = (
        b"" if code is None else json.dumps({"error": {"code": code, "message": "m"}}).encode()
    )
    return httpx.Response(
        status, content=content, headers=headers, request=httpx.Request("POST", url)
    )


@pytest.mark.parametrize(
    ("response", "cls", "transient"),
    [
        (answer(429, "ApplicationThrottled", **{"Retry-After": "3"}), RateLimitError, True),
        (answer(503, "ErrorServerBusy"), RateLimitError, True),
        (answer(503, "ServiceUnavailable"), ServiceUnavailable, True),
        (answer(504, "GatewayTimeout", **{"Retry-After": "5"}), ServiceUnavailable, True),
        (answer(504, "GatewayTimeout"), ServiceUnavailable, False),
        (answer(500, "ErrorInternalServerError"), ServiceUnavailable, False),
        (answer(401, "InvalidAuthenticationToken"), AuthenticationError, False),
        (answer(403, "Authorization_RequestDenied"), AuthenticationError, False),
        (answer(400, "ErrorMessageSizeExceeded"), MessageError, False),
        (answer(413), MessageError, False),
        (answer(400, "ErrorQuotaExceeded"), MessageError, False),
        (answer(404, "ErrorItemNotFound", url=DRAFT + "/AAMk=/send"), ProviderError, False),
    ],
)
def test_classify(response: httpx.Response, cls: type[ProviderError], transient: bool) -> None:
    error = classify(response, idempotent=False)
    assert type(error) is cls and error.transient is transient
    assert error.provider == "outlook"


def test_retry_after_is_read() -> None:
    error = classify(answer(429, "ApplicationThrottled", **{"Retry-After": "3"}), idempotent=False)
    assert error is not None and error.retry_after == 3.0


def test_500_of_an_idempotent_request_is_transient() -> None:
    error = classify(answer(500, "ErrorInternalServerError"), idempotent=True)
    assert error is not None and error.transient


def test_unknown_mailbox() -> None:
    error = classify(answer(404, "ResourceNotFound"), idempotent=False)
    assert error is not None
    assert "mailbox='user@contoso.com'" in str(unknown_mailbox(error, None))
    assert "'a@contoso.com'" in str(unknown_mailbox(error, "a@contoso.com"))
    assert unknown_mailbox(classify(answer(400, "x"), idempotent=False), "a") is None  # type: ignore[arg-type]
