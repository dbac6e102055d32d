"""The Outlook (Microsoft Graph) provider against respx, with Graph's documented shapes.

Every test ends by validating each Graph request it made against the published resource
shapes (`graph_schema.py`). Error bodies are Graph's:
`{"error": {"code": ..., "message": ..., "innerError": {"date", "request-id", ...}}}`.
"""

from __future__ import annotations

import base64
import email
import email.policy
import json
from pathlib import Path
from urllib.parse import parse_qs

import anyio
import httpx
import pytest
import respx
from graph_schema import validate_all
from graph_shapes import (
    BASE,
    CLIENT_ID,
    GRAPH,
    MAILBOX,
    TENANT,
    TOKEN_OK,
    app_only,
    graph_error,
)

from xcomm import (
    Attachment,
    AuthenticationError,
    CommManager,
    ConfigurationError,
    EmailMessage,
    GraphProvider,
    MessageError,
    ProviderError,
    RateLimitError,
    ServiceUnavailable,
    Template,
    ValidationError,
)
from xcomm._models import Address
from xcomm.auth import Token, TokenManager

SEND_MAIL = f"{BASE}/sendMail"
DRAFT_ID = "AAMkADI5MAAIT3drCAAA="
DRAFT = f"{BASE}/messages/{DRAFT_ID}"
UPLOAD_URL = (
    "https://outlook.office.com/api/v2.0/Users('a8e8e219-4931-95c1-b73d-62626fd79c32@"
    "72aa88bf-76f0-494f-91ab-2d7cd730db47')/Messages('AAMkADI5MAAIT3drCAAA=')/"
    "AttachmentSessions('AAMkADI5MAAIT3k0tAAA=')?authtoken=eyJhbGciOiJSUzI1NiIsImtpZCI6Ik"
)
MiB = 1024 * 1024


THROTTLED = graph_error("ApplicationThrottled", "Application is over its MailboxConcurrency limit.")
ACCESS_DENIED = graph_error(
    "ErrorAccessDenied", "Access is denied. Check credentials and try again."
)
BAD_RECIPIENTS = graph_error(
    "ErrorInvalidRecipients",
    "At least one recipient is not valid., Recipient 'nobody@' is not resolved. All recipients "
    "must be resolved before a message can be submitted.",
)
EXPIRED = graph_error(
    "InvalidAuthenticationToken", "Lifetime validation failed, the token is expired."
)
UNKNOWN_USER = graph_error("ErrorInvalidUser", f"The requested user '{MAILBOX}' is invalid.")
# POST /users/{id}/messages answers 201 with the new draft (shortened as in the docs).
DRAFT_CREATED = {
    "@odata.context": f"{GRAPH}/$metadata#users('{MAILBOX}')/messages/$entity",
    "id": DRAFT_ID,
    "isDraft": True,
    "internetMessageId": "<MWHPR1301MB2141.namprd13.prod.outlook.com>",
    "subject": "Report",
}
# createUploadSession answers 201 with an uploadSession.
SESSION = {
    "@odata.context": f"{GRAPH}/$metadata#microsoft.graph.uploadSession",
    "uploadUrl": UPLOAD_URL,
    "expirationDateTime": "2019-09-25T01:09:30.7671707Z",
    "nextExpectedRanges": ["0-"],
}


def graph_calls(router: respx.MockRouter) -> list[httpx.Request]:
    return [c.request for c in router.calls if c.request.url.host != "login.microsoftonline.com"]


def body(request: httpx.Request) -> dict[str, object]:
    return json.loads(request.content)  # type: ignore[no-any-return]


def mime(request: httpx.Request) -> email.message.EmailMessage:
    raw = base64.b64decode(request.content, validate=True)
    return email.message_from_bytes(raw, policy=email.policy.default)  # type: ignore[return-value]


def big_message(*attachments: Attachment, subject: str = "Report") -> EmailMessage:
    return EmailMessage(
        sender=Address(email=MAILBOX),
        to=(Address(email="ada@example.org"),),
        subject=subject,
        text="see attached",
        attachments=attachments,
    )


# -- sendMail, JSON form ----------------------------------------------------------------------


async def test_send_posts_the_json_message(
    outlook: GraphProvider, router: respx.MockRouter
) -> None:
    route = router.post(SEND_MAIL).respond(202)
    result = await (
        outlook.compose()
        .to("Ada Lovelace <ada@example.org>")
        .cc("ops@example.org")
        .bcc("audit@example.org")
        .reply_to("replies@contoso.com")
        .subject("Q4 report")
        .body("Figures attached.")
        .header("X-Campaign", "q4")
        .attach(b"a,b\n1,2\n", filename="q4.csv", content_type="text/csv")
        .send()
    )
    assert result.provider == "outlook" and result.status == 202 and result.attempts == 1
    assert set(result.accepted) == {"ada@example.org", "ops@example.org", "audit@example.org"}
    request = route.calls.last.request
    assert request.headers["Authorization"] == f"Bearer {TOKEN_OK['access_token']}"
    assert request.headers["Content-Type"] == "application/json"
    sent = body(request)
    assert "saveToSentItems" not in sent  # documented: give it only when false
    message = sent["message"]
    assert isinstance(message, dict)
    assert message["subject"] == "Q4 report"
    assert message["body"] == {"contentType": "Text", "content": "Figures attached."}
    assert message["toRecipients"] == [
        {"emailAddress": {"address": "ada@example.org", "name": "Ada Lovelace"}}
    ]
    assert message["ccRecipients"] == [{"emailAddress": {"address": "ops@example.org"}}]
    assert message["bccRecipients"] == [{"emailAddress": {"address": "audit@example.org"}}]
    assert message["replyTo"] == [{"emailAddress": {"address": "replies@contoso.com"}}]
    assert message["from"] == {"emailAddress": {"address": MAILBOX}}  # the mailbox by default
    assert message["internetMessageHeaders"] == [{"name": "X-Campaign", "value": "q4"}]
    assert message["attachments"] == [
        {
            "@odata.type": "#microsoft.graph.fileAttachment",
            "name": "q4.csv",
            "contentType": "text/csv",
            "contentBytes": base64.b64encode(b"a,b\n1,2\n").decode(),
        }
    ]
    # sendMail answers 202 with no body: the id returned is the Message-ID xcomm set
    assert result.message_id == message["internetMessageId"]
    assert str(result.message_id).startswith("<") and str(result.message_id).endswith(
        "@contoso.com>"
    )
    assert validate_all(graph_calls(router)) == ["user.sendMail"]


async def test_html_and_inline_image(outlook: GraphProvider, router: respx.MockRouter) -> None:
    route = router.post(SEND_MAIL).respond(202)
    await (
        outlook.compose()
        .to("ada@example.org")
        .subject("Logo")
        .html_body('<p><img src="cid:logo"></p>')
        .inline_image(b"\x89PNG", cid="logo", filename="logo.png", content_type="image/png")
        .send()
    )
    message = body(route.calls.last.request)["message"]
    assert isinstance(message, dict)
    assert message["body"] == {"contentType": "HTML", "content": '<p><img src="cid:logo"></p>'}
    (attachment,) = message["attachments"]
    assert attachment["isInline"] is True and attachment["contentId"] == "logo"


async def test_save_to_sent_items_false(
    comm: CommManager, token: respx.Route, router: respx.MockRouter
) -> None:
    outlook = app_only(comm, save_to_sent_items=False)
    route = router.post(SEND_MAIL).respond(202)
    await outlook.send_message("ada@example.org", "Hi", "Body")
    assert body(route.calls.last.request)["saveToSentItems"] is False


async def test_client_credentials_token_request(
    outlook: GraphProvider, token: respx.Route, router: respx.MockRouter
) -> None:
    router.post(SEND_MAIL).respond(202)
    await outlook.send_message("ada@example.org", "Hi", "Body")
    await outlook.send_message("bob@example.org", "Hi", "Body")
    assert token.call_count == 1  # one app-only token for both
    request = token.calls.last.request
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    form = parse_qs(request.content.decode())
    assert form == {
        "grant_type": ["client_credentials"],
        "scope": ["https://graph.microsoft.com/.default"],
        "client_id": [CLIENT_ID],
        "client_secret": ["Wq8Q~client.secret.value"],
    }


# -- sendMail, MIME form ------------------------------------------------------------------------


async def test_text_and_html_go_as_mime(outlook: GraphProvider, router: respx.MockRouter) -> None:
    route = router.post(SEND_MAIL).respond(202)
    result = await (
        outlook.compose()
        .to("ada@example.org")
        .bcc("audit@example.org")
        .subject("Both")
        .body("plain words")
        .html_body("<p>html words</p>")
        .send()
    )
    request = route.calls.last.request
    assert request.headers["Content-Type"] == "text/plain"
    parsed = mime(request)
    assert parsed["Message-ID"] == result.message_id
    assert parsed["Bcc"] == "audit@example.org"  # Exchange takes the envelope from it
    assert parsed.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in parsed.iter_parts()] == ["text/plain", "text/html"]
    assert validate_all(graph_calls(router)) == ["user.sendMail"]


async def test_a_header_json_cannot_carry_goes_as_mime(
    outlook: GraphProvider, router: respx.MockRouter
) -> None:
    route = router.post(SEND_MAIL).respond(202)
    await (
        outlook.compose()
        .to("ada@example.org")
        .subject("News")
        .body("text")
        .list_unsubscribe(url="https://contoso.com/unsub?u=42")
        .send()
    )
    parsed = mime(route.calls.last.request)
    assert parsed["List-Unsubscribe"] == "<https://contoso.com/unsub?u=42>"


async def test_mime_only_header_without_a_from_is_refused(
    comm: CommManager, router: respx.MockRouter
) -> None:
    outlook = comm.outlook(token_manager=TokenManager(static_token))  # /me, no sender
    message = EmailMessage(
        to=(Address(email="ada@example.org"),),
        subject="x",
        text="x",
        headers=(("List-Id", "<news.contoso.com>"),),
    )
    with pytest.raises(MessageError, match="no From address"):
        await outlook.send(message)
    assert not router.calls


# -- delegated access -------------------------------------------------------------------------


async def static_token(previous: Token | None) -> Token:
    return Token(access_token="delegated-token", expires_at=None)


async def test_token_manager_without_mailbox_sends_as_me(
    comm: CommManager, router: respx.MockRouter
) -> None:
    route = router.post(f"{GRAPH}/me/sendMail").respond(202)
    outlook = comm.outlook(token_manager=TokenManager(static_token))
    message = EmailMessage(to=(Address(email="ada@example.org"),), subject="Hi", text="Yo")
    result = await outlook.send(message)
    assert route.calls.last.request.headers["Authorization"] == "Bearer delegated-token"
    assert result.message_id is None  # no domain known; Exchange picks the Message-ID
    assert "internetMessageId" not in body(route.calls.last.request)["message"]  # type: ignore[operator]
    assert outlook.spec()["custom"] is True


async def test_credentials_path_from_xcomm_auth_outlook(
    comm: CommManager, router: respx.MockRouter, tmp_path: Path
) -> None:
    path = tmp_path / "outlook-token.json"
    path.write_text(
        json.dumps(
            {
                "type": "authorized_user",
                "client_id": CLIENT_ID,
                "refresh_token": "0.AXoA-refresh",
                "token_uri": "https://login.microsoftonline.com/common/oauth2/v2.0/token",
                "scopes": ["offline_access", "https://graph.microsoft.com/Mail.Send"],
                "token": "eyJ0.delegated",
                "expiry": "2999-01-01T00:00:00Z",
            }
        )
    )
    route = router.post(f"{GRAPH}/me/sendMail").respond(202)
    outlook = comm.outlook(credentials_path=path, sender="me@contoso.com")
    await outlook.send_message("ada@example.org", "Hi", "Body")
    assert route.calls.last.request.headers["Authorization"] == "Bearer eyJ0.delegated"
    assert outlook.spec() == {
        "kind": "outlook",
        "credentials_path": str(path),
        "sender": "me@contoso.com",
        "save_to_sent_items": True,
    }


# -- large messages: draft, upload session, send ------------------------------------------------


async def test_large_attachment_goes_through_an_upload_session(
    outlook: GraphProvider, router: respx.MockRouter
) -> None:
    create = router.post(f"{BASE}/messages").respond(201, json=DRAFT_CREATED)
    session = router.post(f"{DRAFT}/attachments/createUploadSession").respond(201, json=SESSION)
    size = 8 * MiB
    data = bytes(range(256)) * (size // 256)
    ranges = [(0, 3932159), (3932160, 7864319), (7864320, size - 1)]
    put = router.put(UPLOAD_URL)
    put.side_effect = [
        httpx.Response(
            200,
            json={
                "@odata.context": "https://outlook.office.com/api/v2.0/$metadata#Users/$entity",
                "ExpirationDateTime": "2019-09-25T01:09:30.7671707Z",
                "nextExpectedRanges": [str(end + 1)],
            },
        )
        for _, end in ranges[:-1]
    ] + [httpx.Response(201, headers={"Location": f"{DRAFT}/attachments('AAMk=')"})]
    send = router.post(f"{DRAFT}/send").respond(202)
    small = Attachment(filename="notes.txt", content_type="text/plain", content=b"notes")
    big = Attachment(filename="video.mp4", content_type="video/mp4", content=data)
    result = await outlook.send(big_message(small, big))
    draft = body(create.calls.last.request)
    assert [a["name"] for a in draft["attachments"]] == ["notes.txt"]  # type: ignore[union-attr]
    assert result.message_id == draft["internetMessageId"]
    assert body(session.calls.last.request) == {
        "AttachmentItem": {
            "attachmentType": "file",
            "name": "video.mp4",
            "size": size,
            "contentType": "video/mp4",
        }
    }
    puts = [c.request for c in put.calls]
    assert [p.headers["Content-Range"] for p in puts] == [
        f"bytes {start}-{end}/{size}" for start, end in ranges
    ]
    assert all("authorization" not in p.headers for p in puts)  # pre-authenticated URL
    assert all(len(p.content) % (320 * 1024) == 0 for p in puts[:-1])
    assert b"".join(p.content for p in puts) == data
    assert send.call_count == 1
    assert validate_all(graph_calls(router)) == [
        "user.messages.create",
        "attachment.createUploadSession",
        "uploadSession.put",
        "uploadSession.put",
        "uploadSession.put",
        "message.send",
    ]


async def test_small_attachments_that_do_not_fit_are_added_one_by_one(
    outlook: GraphProvider, router: respx.MockRouter
) -> None:
    draft_id = "AAMkAD/x+y="  # a Graph id may hold '/' and '+': one path segment, encoded
    draft_url = f"{BASE}/messages/AAMkAD%2Fx%2By="
    create = router.post(f"{BASE}/messages").respond(201, json={**DRAFT_CREATED, "id": draft_id})
    attach = router.post(f"{draft_url}/attachments").respond(201, json={"id": "AAMkAtt="})
    router.post(f"{draft_url}/send").respond(202)
    files = [Attachment(filename=f"part{i}.bin", content=bytes([i]) * (2 * MiB)) for i in range(3)]
    await outlook.send(big_message(*files))
    packed = body(create.calls.last.request)["attachments"]
    assert [a["name"] for a in packed] == ["part0.bin"]  # type: ignore[union-attr]
    added = [body(c.request)["name"] for c in attach.calls]
    assert added == ["part1.bin", "part2.bin"]
    assert validate_all(graph_calls(router)) == [
        "user.messages.create",
        "message.attachments.create",
        "message.attachments.create",
        "message.send",
    ]


async def test_failed_upload_deletes_the_draft(
    outlook: GraphProvider, router: respx.MockRouter
) -> None:
    router.post(f"{BASE}/messages").respond(201, json=DRAFT_CREATED)
    router.post(f"{DRAFT}/attachments/createUploadSession").respond(201, json=SESSION)
    put = router.put(UPLOAD_URL)
    put.side_effect = [
        httpx.Response(200, json={"nextExpectedRanges": ["3932160"]}),
        httpx.Response(403, json=graph_error("ErrorAccessDenied", "Access is denied.")),
    ]
    delete = router.delete(DRAFT).respond(204)
    send = router.post(f"{DRAFT}/send").respond(202)
    big = Attachment(filename="big.bin", content=b"\0" * (5 * MiB))
    with pytest.raises(AuthenticationError):
        await outlook.send(big_message(big))
    assert delete.call_count == 1
    assert send.call_count == 0
    assert validate_all(graph_calls(router))[-1] == "message.delete"


async def test_failed_cleanup_still_raises_the_upload_error(
    outlook: GraphProvider, router: respx.MockRouter
) -> None:
    router.post(f"{BASE}/messages").respond(201, json=DRAFT_CREATED)
    router.post(f"{DRAFT}/attachments/createUploadSession").respond(
        400, json=graph_error("ErrorAttachmentSizeShouldNotBeLessThanMinimumSize", "too small")
    )
    delete = router.delete(DRAFT).respond(
        404,
        json=graph_error("ErrorItemNotFound", "The specified object was not found in the store."),
    )
    big = Attachment(filename="big.bin", content=b"\0" * (4 * MiB))
    with pytest.raises(MessageError) as info:
        await outlook.send(big_message(big))
    assert info.value.error_code == "ErrorAttachmentSizeShouldNotBeLessThanMinimumSize"
    assert delete.call_count == 1


async def test_draft_403_names_mail_readwrite(
    outlook: GraphProvider, router: respx.MockRouter
) -> None:
    router.post(f"{BASE}/messages").respond(403, json=ACCESS_DENIED)
    big = Attachment(filename="big.bin", content=b"\0" * (4 * MiB))
    with pytest.raises(AuthenticationError, match=r"Mail\.ReadWrite"):
        await outlook.send(big_message(big))


async def test_oversize_message_is_refused_before_any_request(
    outlook: GraphProvider, router: respx.MockRouter
) -> None:
    huge = Attachment(filename="huge.bin", content=b"\0" * (150 * MiB + 1))
    with pytest.raises(MessageError, match="Outlook accepts"):
        await outlook.send(big_message(huge))
    assert not router.calls


async def test_more_than_500_recipients_is_refused(
    outlook: GraphProvider, router: respx.MockRouter
) -> None:
    message = EmailMessage(
        sender=Address(email=MAILBOX),
        bcc=tuple(Address(email=f"user{i}@example.org") for i in range(501)),
        subject="x",
        text="x",
    )
    with pytest.raises(MessageError, match="500 recipients"):
        await outlook.send(message)
    assert not router.calls


# -- errors and retries ----------------------------------------------------------------------


async def test_429_with_retry_after_is_retried(
    outlook: GraphProvider, router: respx.MockRouter
) -> None:
    route = router.post(SEND_MAIL)
    route.side_effect = [
        httpx.Response(429, headers={"Retry-After": "0"}, json=THROTTLED),
        httpx.Response(202),
    ]
    result = await outlook.send_message("ada@example.org", "Hi", "Body")
    assert result.attempts == 2
    assert validate_all(graph_calls(router)) == ["user.sendMail"] * 2


async def test_throttled_until_retries_run_out(
    outlook: GraphProvider, router: respx.MockRouter
) -> None:
    route = router.post(SEND_MAIL).respond(503, headers={"Retry-After": "0"}, json=THROTTLED)
    with pytest.raises(RateLimitError) as info:
        await outlook.send_message("ada@example.org", "Hi", "Body")
    assert info.value.error_code == "ApplicationThrottled" and info.value.retry_after == 0
    assert route.call_count == 3  # FAST_RETRY: three attempts


async def test_401_refreshes_the_token_once(
    outlook: GraphProvider, token: respx.Route, router: respx.MockRouter
) -> None:
    token.side_effect = [
        httpx.Response(200, json=TOKEN_OK),
        httpx.Response(200, json={**TOKEN_OK, "access_token": "eyJ0.fresh"}),
    ]
    route = router.post(SEND_MAIL)
    route.side_effect = [httpx.Response(401, json=EXPIRED), httpx.Response(202)]
    await outlook.send_message("ada@example.org", "Hi", "Body")
    assert token.call_count == 2
    assert route.calls.last.request.headers["Authorization"] == "Bearer eyJ0.fresh"


async def test_second_401_is_an_authentication_error(
    outlook: GraphProvider, token: respx.Route, router: respx.MockRouter
) -> None:
    route = router.post(SEND_MAIL).respond(401, json=EXPIRED)
    with pytest.raises(AuthenticationError) as info:
        await outlook.send_message("ada@example.org", "Hi", "Body")
    assert info.value.error_code == "InvalidAuthenticationToken"
    assert route.call_count == 2 and token.call_count == 2


async def test_403_says_which_permission_to_grant(
    outlook: GraphProvider, router: respx.MockRouter
) -> None:
    route = router.post(SEND_MAIL).respond(403, json=ACCESS_DENIED)
    with pytest.raises(AuthenticationError) as info:
        await outlook.send_message("ada@example.org", "Hi", "Body")
    text = str(info.value)
    assert "Mail.Send" in text and "admin consent" in text and "application access policy" in text
    assert info.value.error_code == "ErrorAccessDenied"
    assert route.call_count == 1


async def test_invalid_recipients_is_a_message_error_not_retried(
    outlook: GraphProvider, router: respx.MockRouter
) -> None:
    route = router.post(SEND_MAIL).respond(400, json=BAD_RECIPIENTS)
    with pytest.raises(MessageError) as info:
        await outlook.send_message("ada@example.org", "Hi", "Body")
    assert info.value.error_code == "ErrorInvalidRecipients" and not info.value.transient
    assert info.value.detail is not None
    assert "request-id 0f7c4a52-3e7b-4f5a-9d3e-1b2c3d4e5f60" in info.value.detail
    assert route.call_count == 1


async def test_send_as_denied_is_about_the_from_address(
    outlook: GraphProvider, router: respx.MockRouter
) -> None:
    router.post(SEND_MAIL).respond(
        403,
        json=graph_error(
            "ErrorSendAsDenied",
            "The user account which was used to submit this request does not have the right "
            "to send mail on behalf of the specified sending account.",
        ),
    )
    with pytest.raises(MessageError, match="Send As"):
        await outlook.send_message("ada@example.org", "Hi", "Body")


async def test_500_after_a_post_is_not_retried(
    outlook: GraphProvider, router: respx.MockRouter
) -> None:
    route = router.post(SEND_MAIL).respond(
        500, json=graph_error("ErrorInternalServerError", "An internal server error occurred.")
    )
    with pytest.raises(ServiceUnavailable) as info:
        await outlook.send_message("ada@example.org", "Hi", "Body")
    assert info.value.transient is False  # Exchange may have sent it: no second copy
    assert route.call_count == 1


async def test_malformed_error_bodies(outlook: GraphProvider, router: respx.MockRouter) -> None:
    route = router.post(SEND_MAIL)
    route.side_effect = [
        httpx.Response(502, text="<html><body>Bad Gateway</body></html>"),
        httpx.Response(400, content=b'{"error": {"code": 42'),
    ]
    with pytest.raises(MessageError) as info:
        await outlook.send_message("ada@example.org", "Hi", "Body")
    assert info.value.status == 400 and info.value.error_code is None
    assert route.call_count == 2  # the 502 was retried


async def test_unknown_mailbox_is_a_configuration_error(
    outlook: GraphProvider, router: respx.MockRouter
) -> None:
    router.post(SEND_MAIL).respond(404, json=UNKNOWN_USER)
    with pytest.raises(ConfigurationError, match=f"no mailbox '{MAILBOX}'"):
        await outlook.send_message("ada@example.org", "Hi", "Body")


async def test_malformed_draft_answer(outlook: GraphProvider, router: respx.MockRouter) -> None:
    router.post(f"{BASE}/messages").respond(201, text="<html>proxy</html>")
    big = Attachment(filename="big.bin", content=b"\0" * (4 * MiB))
    with pytest.raises(ProviderError, match="not JSON"):
        await outlook.send(big_message(big))


# -- concurrency per mailbox ----------------------------------------------------------------


async def test_at_most_four_requests_in_flight_per_mailbox(
    comm: CommManager, token: respx.Route, router: respx.MockRouter
) -> None:
    release = anyio.Event()
    in_flight = {MAILBOX: 0, "other@contoso.com": 0}
    peak = dict(in_flight)

    async def hold(request: httpx.Request) -> httpx.Response:
        mailbox = request.url.path.split("/")[3]
        in_flight[mailbox] += 1
        peak[mailbox] = max(peak[mailbox], in_flight[mailbox])
        try:
            await release.wait()
        finally:
            in_flight[mailbox] -= 1
        return httpx.Response(202)

    router.post(SEND_MAIL).mock(side_effect=hold)
    router.post(f"{GRAPH}/users/other@contoso.com/sendMail").mock(side_effect=hold)
    first, second = app_only(comm), app_only(comm, sender="alerts@contoso.com")
    other = app_only(comm, mailbox="other@contoso.com")
    async with anyio.create_task_group() as group:
        for i in range(6):
            group.start_soon(first.send_message, f"a{i}@example.org", "Hi", "x")
            group.start_soon(second.send_message, f"b{i}@example.org", "Hi", "x")
        group.start_soon(other.send_message, "c@example.org", "Hi", "x")
        await anyio.wait_all_tasks_blocked()
        assert in_flight == {MAILBOX: 4, "other@contoso.com": 1}
        release.set()
    assert peak == {MAILBOX: 4, "other@contoso.com": 1}
    assert len(graph_calls(router)) == 13


# -- settings, spec, campaigns ---------------------------------------------------------------


async def test_spec_names_the_secret_variable_only(outlook: GraphProvider) -> None:
    spec = outlook.spec()
    assert spec == {
        "kind": "outlook",
        "mailbox": MAILBOX,
        "tenant_id": TENANT,
        "client_id": CLIENT_ID,
        "client_secret_env": "GRAPH_CLIENT_SECRET",
        "save_to_sent_items": True,
    }
    assert "Wq8Q" not in json.dumps(spec) and "Wq8Q" not in repr(outlook)


async def test_provider_for_rebuilds_from_the_spec(
    outlook: GraphProvider, token: respx.Route, router: respx.MockRouter
) -> None:
    assert outlook.spec() and (outlook.spec() == dict(outlook.spec()))
    async with CommManager(transport=httpx.MockTransport(router.async_handler)) as other:
        rebuilt = other.provider_for(outlook.spec())
        assert isinstance(rebuilt, GraphProvider) and rebuilt.spec() == outlook.spec()
        router.post(SEND_MAIL).respond(202)
        await rebuilt.send_message("ada@example.org", "Hi", "Body")


async def test_secret_in_code_cannot_be_rebuilt(comm: CommManager, token: respx.Route) -> None:
    outlook = app_only(comm, client_secret="in-code", client_secret_env=None)
    assert outlook.spec()["custom"] is True and "in-code" not in json.dumps(outlook.spec())
    assert comm.provider_for(outlook.spec()) is outlook
    async with CommManager() as other:
        with pytest.raises(ConfigurationError, match="cannot be rebuilt"):
            other.provider_for(outlook.spec())


async def test_email_factory_names(comm: CommManager, token: respx.Route) -> None:
    settings = {
        "tenant_id": TENANT,
        "client_id": CLIENT_ID,
        "client_secret_env": "GRAPH_CLIENT_SECRET",
        "mailbox": MAILBOX,
    }
    assert isinstance(comm.email("outlook", **settings), GraphProvider)
    assert isinstance(comm.email("graph", **settings), GraphProvider)


async def test_limiter_is_the_graph_preset_per_mailbox(
    comm: CommManager, token: respx.Route
) -> None:
    first, second = app_only(comm), app_only(comm, sender="alerts@contoso.com")
    other = app_only(comm, mailbox="other@contoso.com")
    assert first.limiter is not None and second.limiter is not None and other.limiter is not None
    (stats,) = first.limiter.statistics()
    assert (stats.rate, stats.per) == (10_000, 600.0)
    assert second.limiter.statistics() == first.limiter.statistics()
    assert first._limiter is not other._limiter


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "tenant_id=, client_id=, client_secret="),
        ({"tenant_id": TENANT, "client_id": CLIENT_ID}, "client_secret= .or client_secret_env"),
        (
            {"tenant_id": TENANT, "client_id": CLIENT_ID, "client_secret": "s"},
            "missing mailbox=",
        ),
        (
            {"client_id": CLIENT_ID, "client_secret": "s", "mailbox": MAILBOX},
            "missing tenant_id=",
        ),
        (
            {"tenant_id": TENANT, "client_id": CLIENT_ID, "client_secret": "s",
             "client_secret_env": "GRAPH_CLIENT_SECRET", "mailbox": MAILBOX},
            "not both",
        ),
        (
            {"tenant_id": TENANT, "client_id": CLIENT_ID, "client_secret_env": "NOT_SET_XYZ",
             "mailbox": MAILBOX},
            "NOT_SET_XYZ, which is not set",
        ),
        ({"token_manager": TokenManager(static_token), "client_id": CLIENT_ID}, "exactly one"),
        ({"token_manager": TokenManager(static_token), "mailbox": "a/b"}, "user principal name"),
        ({"token_manager": TokenManager(static_token), "sender": "not an address"}, "sender="),
    ],
)  # fmt: skip
async def test_bad_settings(comm: CommManager, options: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        comm.outlook(**options)  # type: ignore[arg-type]


async def test_google_token_file_is_refused(comm: CommManager, tmp_path: Path) -> None:
    path = tmp_path / "gmail-token.json"
    path.write_text(
        json.dumps({"type": "authorized_user", "client_id": "1.apps", "refresh_token": "1//0r"})
    )
    with pytest.raises(ConfigurationError, match="xcomm auth outlook"):
        comm.outlook(credentials_path=path)


async def test_unread_attachment_is_a_validation_error(
    outlook: GraphProvider, router: respx.MockRouter
) -> None:
    message = big_message(Attachment(filename="later.pdf", path="/nonexistent/later.pdf"))
    with pytest.raises(ValidationError, match="has not been read"):
        await outlook.send(message)
    assert not graph_calls(router)


async def test_bulk_campaign_through_outlook(
    comm: CommManager, outlook: GraphProvider, router: respx.MockRouter
) -> None:
    route = router.post(SEND_MAIL).respond(202)
    bulk = comm.create_bulk_sender(outlook, max_concurrent=8, daily_cap="graph")
    template = Template(subject="Hello {{ name }}", text="Dear {{ name }}.")
    people = [{"email": f"user{i}@example.org", "name": f"User {i}"} for i in range(5)]
    result = await bulk.send_campaign(template=template, recipients=people, campaign_id="o-1")
    assert (result.total, result.sent, result.failed) == (5, 5, 0)
    messages = [body(c.request)["message"] for c in route.calls]
    subjects = sorted(m["subject"] for m in messages)  # type: ignore[index]
    assert subjects == [f"Hello User {i}" for i in range(5)]
    outcomes = [o async for o in bulk.results("o-1")]
    assert {o.message_id for o in outcomes} == {m["internetMessageId"] for m in messages}  # type: ignore[index]
