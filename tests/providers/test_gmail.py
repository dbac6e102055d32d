"""The Gmail provider against respx, with response shapes from the Gmail API reference.

Every test ends by validating each request it made against Gmail's discovery document.
"""

from __future__ import annotations

import base64
import email
import email.policy
import json
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import respx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from gmail_discovery import gmail_calls, validate, validate_all
from gmail_shapes import NO_SCOPE, gmail_error

from xcomm import (
    Address,
    Attachment,
    AuthenticationError,
    CommManager,
    ConfigurationError,
    EmailMessage,
    GmailProvider,
    MessageError,
    RateLimit,
    RateLimitError,
    ServiceUnavailable,
)
from xcomm.auth import GOOGLE_TOKEN_URI

SEND = "https://gmail.googleapis.com/gmail/v1/users/me/messages/send"
UPLOAD = "https://gmail.googleapis.com/upload/gmail/v1/users/me/messages/send"
LIST = "https://gmail.googleapis.com/gmail/v1/users/me/messages"
SENT = {"id": "18c2f0a9b1d2e3f4", "threadId": "18c2f0a9b1d2e3f4", "labelIds": ["SENT"]}
TOKEN_OK = {
    "access_token": "ya29.fresh",
    "expires_in": 3599,
    "scope": "https://www.googleapis.com/auth/gmail.send",
    "token_type": "Bearer",
}


RATE_LIMITED = gmail_error(403, "rateLimitExceeded", "Rate Limit Exceeded", "PERMISSION_DENIED")
DAILY = gmail_error(403, "dailyLimitExceeded", "Daily Limit Exceeded", "PERMISSION_DENIED")


def sent_message(request: httpx.Request) -> email.message.EmailMessage:
    raw = base64.urlsafe_b64decode(json.loads(request.content)["raw"])
    return email.message_from_bytes(raw, policy=email.policy.default)  # type: ignore[return-value]


def message(subject: str, size: int) -> EmailMessage:
    return EmailMessage(
        sender=Address(email="me@example.com"),
        to=(Address(email="you@example.org"),),
        subject=subject,
        text="see attached",
        attachments=(Attachment(filename="big.bin", content=b"x" * size),),
    )


# -- send ------------------------------------------------------------------------------------


async def test_send_posts_the_raw_message(gmail: GmailProvider, router: respx.MockRouter) -> None:
    route = router.post(SEND).respond(200, json=SENT)
    result = await (
        gmail.compose()
        .to("you@example.org")
        .cc("cc@example.org")
        .bcc("hidden@example.org")
        .subject("Hello")
        .body("Hi there")
        .attach(b"abc", filename="a.txt")
        .send()
    )
    assert result.message_id == "18c2f0a9b1d2e3f4"
    assert result.provider == "gmail"
    assert set(result.accepted) == {"you@example.org", "cc@example.org", "hidden@example.org"}
    request = route.calls.last.request
    assert request.headers["Authorization"] == "Bearer ya29.stale"
    assert request.headers["Content-Type"] == "application/json"
    parsed = sent_message(request)
    assert parsed["Subject"] == "Hello"
    assert parsed["From"] == "me@example.com"
    assert parsed["Bcc"] == "hidden@example.org"  # Gmail takes blind copies from it
    names = [part.get_filename() for part in parsed.iter_attachments()]
    assert names == ["a.txt"]
    assert validate_all(gmail_calls(router)) == ["gmail.users.messages.send"]


async def test_large_message_uses_media_upload(
    gmail: GmailProvider, router: respx.MockRouter
) -> None:
    route = router.post(UPLOAD).respond(200, json=SENT)
    result = await gmail.send(message("Big", 6 * 1024 * 1024))
    assert result.message_id == SENT["id"]
    request = route.calls.last.request
    assert parse_qs(urlsplit(str(request.url)).query) == {"uploadType": ["media"]}
    assert request.headers["Content-Type"] == "message/rfc822"
    assert b"Subject: Big" in request.content
    assert validate_all(gmail_calls(router)) == ["gmail.users.messages.send"]


async def test_oversize_message_is_refused_before_sending(
    gmail: GmailProvider, router: respx.MockRouter
) -> None:
    with pytest.raises(MessageError, match="Gmail accepts"):
        await gmail.send(message("Huge", 36 * 1024 * 1024))
    assert not router.calls


# -- errors and retries ----------------------------------------------------------------------


async def test_429_with_retry_after_is_retried(
    gmail: GmailProvider, router: respx.MockRouter
) -> None:
    route = router.post(SEND)
    route.side_effect = [
        httpx.Response(
            429,
            headers={"Retry-After": "0"},
            json=gmail_error(429, "rateLimitExceeded", "Too many requests", "RESOURCE_EXHAUSTED"),
        ),
        httpx.Response(200, json=SENT),
    ]
    result = await gmail.send_message("you@example.org", "Hi", "Body")
    assert result.attempts == 2
    assert validate_all(gmail_calls(router)) == ["gmail.users.messages.send"] * 2


async def test_403_rate_limit_exceeded_is_retried(
    gmail: GmailProvider, router: respx.MockRouter
) -> None:
    route = router.post(SEND)
    route.side_effect = [httpx.Response(403, json=RATE_LIMITED), httpx.Response(200, json=SENT)]
    result = await gmail.send_message("you@example.org", "Hi", "Body")
    assert result.attempts == 2


async def test_daily_limit_is_not_retried(gmail: GmailProvider, router: respx.MockRouter) -> None:
    route = router.post(SEND).respond(403, json=DAILY)
    with pytest.raises(RateLimitError) as info:
        await gmail.send_message("you@example.org", "Hi", "Body")
    assert info.value.transient is False
    assert info.value.error_code == "dailyLimitExceeded"
    assert route.call_count == 1


async def test_insufficient_permissions_names_the_scope(
    gmail: GmailProvider, router: respx.MockRouter
) -> None:
    router.post(SEND).respond(403, json=NO_SCOPE)
    with pytest.raises(AuthenticationError, match=r"auth/gmail\.send"):
        await gmail.send_message("you@example.org", "Hi", "Body")


async def test_bad_request_is_a_message_error(
    gmail: GmailProvider, router: respx.MockRouter
) -> None:
    router.post(SEND).respond(
        400, json=gmail_error(400, "invalidArgument", "Invalid To header", "INVALID_ARGUMENT")
    )
    with pytest.raises(MessageError) as info:
        await gmail.send_message("you@example.org", "Hi", "Body")
    assert info.value.error_code == "invalidArgument"


async def test_503_is_retried_then_unavailable(
    gmail: GmailProvider, router: respx.MockRouter
) -> None:
    route = router.post(SEND).respond(
        503, json=gmail_error(503, "backendError", "Backend Error", "UNAVAILABLE")
    )
    with pytest.raises(ServiceUnavailable):
        await gmail.send_message("you@example.org", "Hi", "Body")
    assert route.call_count == 3


async def test_401_refreshes_once_then_succeeds(
    gmail: GmailProvider, router: respx.MockRouter
) -> None:
    token = router.post(GOOGLE_TOKEN_URI).respond(200, json=TOKEN_OK)
    route = router.post(SEND)
    route.side_effect = [httpx.Response(401, json={}), httpx.Response(200, json=SENT)]
    result = await gmail.send_message("you@example.org", "Hi", "Body")
    assert result.message_id == SENT["id"]
    assert token.call_count == 1
    assert route.calls.last.request.headers["Authorization"] == "Bearer ya29.fresh"


async def test_second_401_is_an_authentication_error(
    gmail: GmailProvider, router: respx.MockRouter
) -> None:
    token = router.post(GOOGLE_TOKEN_URI).respond(200, json=TOKEN_OK)
    route = router.post(SEND).respond(401, json={})
    with pytest.raises(AuthenticationError):
        await gmail.send_message("you@example.org", "Hi", "Body")
    assert token.call_count == 1
    assert route.call_count == 2


# -- quota -----------------------------------------------------------------------------------


async def test_send_charges_100_quota_units(
    comm: CommManager, token_file: Path, router: respx.MockRouter
) -> None:
    gmail = comm.gmail(token_file, sender="me@example.com")
    router.post(SEND).respond(200, json=SENT)
    limiter = gmail.limiter
    assert limiter is not None
    (before,) = limiter.statistics()
    assert before.rate == 15_000
    await gmail.send_message("you@example.org", "Hi", "Body")
    (after,) = limiter.statistics()
    assert before.tokens - after.tokens == pytest.approx(100, abs=1)


async def test_rate_limit_overrides_the_preset(comm: CommManager, token_file: Path) -> None:
    gmail = comm.gmail(token_file, rate_limit=RateLimit(rate=500, per=60.0, burst=500))
    assert gmail.limiter is not None
    (stats,) = gmail.limiter.statistics()
    assert stats.rate == 500


# -- credentials and settings ------------------------------------------------------------------


async def test_client_file_alone_asks_to_sign_in(comm: CommManager, tmp_path: Path) -> None:
    path = tmp_path / "client_secret.json"
    path.write_text(
        json.dumps({"installed": {"client_id": "123.apps", "client_secret": "GOCSPX-x"}})
    )
    with pytest.raises(ConfigurationError, match="xcomm auth gmail"):
        comm.gmail(path)


async def test_service_account_with_subject(
    comm: CommManager, tmp_path: Path, router: respx.MockRouter
) -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    path = tmp_path / "sa.json"
    path.write_text(
        json.dumps(
            {
                "type": "service_account",
                "client_email": "sender@proj.iam.gserviceaccount.com",
                "private_key": pem,
                "private_key_id": "kid1",
                "token_uri": GOOGLE_TOKEN_URI,
            }
        )
    )
    token = router.post(GOOGLE_TOKEN_URI).respond(
        200, json={"access_token": "ya29.c.SA", "expires_in": 3599, "token_type": "Bearer"}
    )
    send = router.post(SEND).respond(200, json=SENT)
    gmail = comm.email(
        "gmail", credentials_path=path, subject="alice@example.com", sender="alice@example.com"
    )
    assert isinstance(gmail, GmailProvider)
    await gmail.send_message("you@example.org", "Hi", "Body")
    form = parse_qs(token.calls.last.request.content.decode())
    assertion = form["assertion"][0]
    claims = json.loads(base64.urlsafe_b64decode(assertion.split(".")[1] + "=="))
    assert claims["sub"] == "alice@example.com"
    assert "gmail.send" in claims["scope"]
    assert send.calls.last.request.headers["Authorization"] == "Bearer ya29.c.SA"
    assert gmail.spec() == {
        "kind": "gmail",
        "credentials_path": str(path),
        "user_id": "me",
        "subject": "alice@example.com",
        "sender": "alice@example.com",
    }


async def test_needs_credentials(comm: CommManager) -> None:
    with pytest.raises(ConfigurationError, match="credentials"):
        comm.gmail()


async def test_spec_has_no_secrets(gmail: GmailProvider, token_file: Path) -> None:
    spec = gmail.spec()
    assert spec["kind"] == "gmail" and spec["credentials_path"] == str(token_file)
    assert "1//0refresh" not in json.dumps(spec)


def test_validator_rejects_undeclared_parameters() -> None:
    bad = httpx.Request("GET", f"{LIST}?q=x&sort=date")
    with pytest.raises(AssertionError, match="sort"):
        validate(bad)
    wrong_body = httpx.Request("POST", SEND, json={"raw": "eA", "body": "x"})
    with pytest.raises(AssertionError, match="body"):
        validate(wrong_body)
    bad_enum = httpx.Request("GET", f"{LIST}/m1?format=headers")
    with pytest.raises(AssertionError, match="format"):
        validate(bad_enum)
