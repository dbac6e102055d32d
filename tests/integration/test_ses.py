"""The SES provider against a real moto server (SESv2 over HTTP through aiobotocore), plus a
tiny aiohttp server speaking SES's error and GetAccount JSON for what moto cannot produce.

moto enforces verified senders, keeps every raw message it accepted (read back over
`/moto-api/data.json`) and does not implement SESv2 `GetAccount`, hence the stub for quotas.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import logging
import os
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
from aiobotocore.session import get_session
from aiohttp import web
from botocore.exceptions import ClientError
from conftest import free_port

from xcomm import (
    AuthenticationError,
    CommManager,
    ConfigurationError,
    ConnectError,
    MessageError,
    RateLimit,
    RateLimitError,
    ResponseTimeout,
    RetryPolicy,
    SendQuota,
    ServiceUnavailable,
    SESProvider,
    Timeout,
)
from xcomm._templates import Template
from xcomm.email._ses_errors import error_for, translate

SENDER = "news@example.com"
REGION = "us-east-1"
KEYS = {"access_key_id": "testing", "secret_access_key": "testing"}
FAST = RetryPolicy(max_attempts=3, backoff=0.001, max_backoff=0.001, jitter=False)


def _moto_server() -> Any:
    try:
        from moto.server import ThreadedMotoServer
    except ImportError:
        reason = "moto is missing; install it with `pip install -e '.[dev]'` (moto, flask)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason} (CI=true: required services must be present)")
        pytest.skip(reason)
    return ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """One moto server for the session, on a free port."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = _moto_server()
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def _http(method: str, url: str) -> Any:
    with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=5) as r:
        return json.loads(r.read() or b"null")


@pytest.fixture
async def moto(moto_endpoint: str) -> str:
    """The moto endpoint, reset, with `SENDER` verified (SES sends only from verified ones)."""
    await asyncio.to_thread(_http, "POST", f"{moto_endpoint}/moto-api/reset")
    async with get_session().create_client(
        "sesv2",
        region_name=REGION,
        endpoint_url=moto_endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    ) as client:
        await client.create_email_identity(EmailIdentity=SENDER)
    return moto_endpoint


async def raw_sent(endpoint: str) -> list[dict[str, Any]]:
    """The raw messages moto accepted: `source`, `destinations`, `raw_data`, `id`."""
    data = await asyncio.to_thread(_http, "GET", f"{endpoint}/moto-api/data.json")
    messages: list[dict[str, Any]] = data["ses"]["RawMessage"]
    return messages


@pytest.fixture
async def comm() -> AsyncIterator[CommManager]:
    async with CommManager(
        retry=FAST, timeout=Timeout(connect=2, read=2, write=2, pool=2), outbox="memory://"
    ) as manager:
        yield manager


def ses_on(comm: CommManager, endpoint: str, **kw: Any) -> SESProvider:
    options: dict[str, Any] = {"endpoint_url": endpoint, "sender": SENDER, **KEYS, **kw}
    return comm.ses(REGION, **options)


# -- sending through moto ---------------------------------------------------------------------


async def test_send_raw_message_with_html_attachment_headers_and_bcc(
    comm: CommManager, moto: str
) -> None:
    ses = ses_on(comm, moto)
    result = await (
        ses.compose()
        .to("ada@example.org")
        .cc("bob@example.org")
        .bcc("hidden@example.org")
        .subject("Quarterly report")
        .body("plain text")
        .html_body("<p>html <b>text</b></p>")
        .attach(b"%PDF-1.4 fake", filename="report.pdf", content_type="application/pdf")
        .header("X-Campaign", "q3")
        .send()
    )
    [sent] = await raw_sent(moto)
    assert result.provider == "ses" and result.message_id == sent["id"]
    assert set(result.accepted) == {"ada@example.org", "bob@example.org", "hidden@example.org"}
    assert sent["source"] == SENDER
    # moto adds the header recipients to Destination's; SES sends to Destination only
    assert {"ada@example.org", "bob@example.org", "hidden@example.org"} <= {
        d.rpartition("<")[2].rstrip(">") for d in sent["destinations"]
    }
    parsed = email.message_from_string(sent["raw_data"], policy=email.policy.default)
    assert parsed["Subject"] == "Quarterly report" and parsed["X-Campaign"] == "q3"
    assert parsed["Bcc"] is None and "hidden@example.org" not in sent["raw_data"]
    assert parsed.get_body(("plain",)).get_content().strip() == "plain text"  # type: ignore[union-attr]
    assert "<b>text</b>" in parsed.get_body(("html",)).get_content()  # type: ignore[union-attr]
    [attachment] = parsed.iter_attachments()
    assert attachment.get_filename() == "report.pdf"
    assert attachment.get_content() == b"%PDF-1.4 fake"


async def test_unverified_sender_is_a_message_error_and_not_retried(
    comm: CommManager, moto: str
) -> None:
    ses = ses_on(comm, moto, sender="stranger@example.net")
    with pytest.raises(MessageError) as info:
        await ses.send_message("ada@example.org", "hi", "body")
    assert info.value.error_code == "MessageRejected" and info.value.status == 400
    assert not info.value.transient
    assert await raw_sent(moto) == []


async def test_email_factory_and_spec_rebuild_without_secrets(
    comm: CommManager, moto: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    ses = comm.email("ses", region=REGION, endpoint_url=moto, sender=SENDER)
    spec = ses.spec()
    assert spec == {"kind": "ses", "region": REGION, "endpoint_url": moto, "sender": SENDER}
    assert comm.provider_for(spec) is ses
    await ses.send_message("ada@example.org", "from the chain", "body")
    assert len(await raw_sent(moto)) == 1
    keyed = ses_on(comm, moto)
    assert keyed.spec()["custom"] is True and "testing" not in json.dumps(keyed.spec())


async def test_bulk_campaign_through_ses_lands_in_moto(comm: CommManager, moto: str) -> None:
    ses = ses_on(comm, moto)
    bulk = comm.create_bulk_sender(ses, max_concurrent=4)
    template = Template(subject="Hello {{ name }}", text="Dear {{ name }}.")
    people = [{"email": f"user{i}@example.org", "name": f"User {i}"} for i in range(5)]
    result = await bulk.send_campaign(template=template, recipients=people, campaign_id="ses-1")
    assert (result.total, result.sent, result.failed) == (5, 5, 0)
    sent = await raw_sent(moto)
    subjects = sorted(
        str(email.message_from_string(m["raw_data"], policy=email.policy.default)["Subject"])
        for m in sent
    )
    assert subjects == [f"Hello User {i}" for i in range(5)]
    outcomes = [o async for o in bulk.results("ses-1")]
    assert {o.message_id for o in outcomes} == {m["id"] for m in sent}


async def test_connection_refused_is_connect_error(comm: CommManager) -> None:
    ses = ses_on(comm, f"http://127.0.0.1:{free_port()}")
    with pytest.raises(ConnectError):
        await ses.send_message("ada@example.org", "hi", "body")


async def test_closed_manager_closes_the_client(moto: str) -> None:
    async with CommManager(retry=FAST, outbox="memory://") as comm:
        ses = ses_on(comm, moto)
        await ses.send_message("ada@example.org", "hi", "body")
    assert ses.closed
    await ses.aclose()  # idempotent


# -- what moto cannot say: a stub speaking SES's JSON, through real aiobotocore ------------------


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@pytest.fixture
async def stub() -> AsyncIterator[Callable[[Handler], Awaitable[str]]]:
    """Start an aiohttp server with one handler for every path; returns its endpoint."""
    runners: list[web.AppRunner] = []

    async def start(handler: Handler) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handler)
        runner = web.AppRunner(app)
        await runner.setup()
        runners.append(runner)
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        return f"http://127.0.0.1:{port}"

    yield start
    for runner in runners:
        await runner.cleanup()


def ses_error(status: int, code: str, message: str) -> web.Response:
    """An SES API v2 error as AWS sends it (rest-json: `x-amzn-ErrorType` and a JSON body)."""
    return web.json_response(
        {"__type": code, "message": message},
        status=status,
        headers={
            "x-amzn-ErrorType": f"{code}:http://internal.amazon.com/coral/",
            "x-amzn-RequestId": "r-1",
        },
    )


async def test_throttling_is_retried_by_xcomm_only(
    comm: CommManager, stub: Callable[[Handler], Awaitable[str]]
) -> None:
    calls: list[str] = []

    async def throttled(request: web.Request) -> web.Response:
        calls.append(request.path)
        return ses_error(429, "TooManyRequestsException", "Maximum sending rate exceeded.")

    ses = ses_on(comm, await stub(throttled))
    with pytest.raises(RateLimitError) as info:
        await ses.send_message("ada@example.org", "hi", "body")
    assert info.value.transient and info.value.error_code == "TooManyRequestsException"
    assert info.value.status == 429
    # botocore's retries are off: FAST's three attempts are three requests
    assert calls == ["/v2/email/outbound-emails"] * 3


async def test_daily_quota_exceeded_is_not_retried(
    comm: CommManager, stub: Callable[[Handler], Awaitable[str]]
) -> None:
    calls = 0

    async def exhausted(request: web.Request) -> web.Response:
        nonlocal calls
        calls += 1
        return ses_error(400, "Throttling", "Daily message quota exceeded.")

    ses = ses_on(comm, await stub(exhausted))
    with pytest.raises(RateLimitError) as info:
        await ses.send_message("ada@example.org", "hi", "body")
    assert not info.value.transient and calls == 1


async def test_throttled_then_accepted(
    comm: CommManager, stub: Callable[[Handler], Awaitable[str]]
) -> None:
    calls = 0

    async def once(request: web.Request) -> web.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            return ses_error(429, "TooManyRequestsException", "Maximum sending rate exceeded.")
        return web.json_response({"MessageId": "0100-abc"})

    result = await ses_on(comm, await stub(once)).send_message("ada@example.org", "hi", "x")
    assert (result.message_id, result.attempts, result.status) == ("0100-abc", 2, 200)


async def test_no_answer_in_time_is_delivery_unknown(
    stub: Callable[[Handler], Awaitable[str]],
) -> None:
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(0.5)
        return web.json_response({"MessageId": "late"})

    endpoint = await stub(slow)
    async with CommManager(retry=FAST, timeout=Timeout(connect=1, read=0.2)) as comm:
        ses = ses_on(comm, endpoint)
        with pytest.raises(ResponseTimeout):
            await ses.send_message("ada@example.org", "hi", "body")


@pytest.mark.parametrize("rate_limit", [None, RateLimit(rate=1, per=1.0)])
async def test_send_quota_and_apply_quota(
    comm: CommManager, stub: Callable[[Handler], Awaitable[str]], rate_limit: RateLimit | None
) -> None:
    async def account(request: web.Request) -> web.Response:
        assert request.path == "/v2/email/account"
        return web.json_response(
            {
                "DedicatedIpAutoWarmupEnabled": False,
                "EnforcementStatus": "HEALTHY",
                "ProductionAccessEnabled": True,
                "SendQuota": {
                    "Max24HourSend": 50000.0,
                    "MaxSendRate": 14.0,
                    "SentLast24Hours": 1200.0,
                },
                "SendingEnabled": True,
            }
        )

    ses = ses_on(comm, await stub(account), rate_limit=rate_limit)
    assert ses.daily_cap is None
    quota = await ses.apply_quota()
    assert quota == SendQuota(
        max_24_hour_send=50000.0,
        max_send_rate=14.0,
        sent_last_24_hours=1200.0,
        production_access=True,
        sending_enabled=True,
    )
    assert quota.remaining == 48800.0 and ses.daily_cap == 50000
    [stats] = [v for k, v in comm.limiters.statistics().items() if k.startswith("ses:")]
    assert (stats.rate, stats.per) == (14.0, 1.0)
    assert ses.limiter is not None
    # the bulk planner takes the cap as a number
    assert comm.create_bulk_sender(ses, daily_cap=ses.daily_cap) is not None


def test_unlimited_quota_reads_as_none() -> None:
    quota = SendQuota.from_account({"SendQuota": {"Max24HourSend": -1.0, "MaxSendRate": 500.0}})
    assert quota.max_24_hour_send is None and quota.remaining is None and quota.daily_cap is None


# -- the mapping, on real botocore error shapes ---------------------------------------------------


def client_error(code: str, message: str, status: int) -> ClientError:
    return ClientError(
        {
            "Error": {"Code": code, "Message": message},
            "ResponseMetadata": {"HTTPStatusCode": status},
        },
        "SendEmail",
    )


@pytest.mark.parametrize(
    ("code", "message", "status", "cls", "transient"),
    [
        ("Throttling", "Maximum sending rate exceeded.", 400, RateLimitError, True),
        ("ThrottlingException", "Daily message quota exceeded.", 400, RateLimitError, False),
        ("TooManyRequestsException", "Too many requests", 429, RateLimitError, True),
        ("LimitExceededException", "Too many instances", 400, RateLimitError, False),
        ("MessageRejected", "Email address is not verified.", 400, MessageError, False),
        ("MailFromDomainNotVerifiedException", "not verified", 400, MessageError, False),
        ("BadRequestException", "Invalid", 400, MessageError, False),
        ("AccountSuspendedException", "suspended", 400, ServiceUnavailable, False),
        ("SendingPausedException", "paused", 400, ServiceUnavailable, False),
        ("UnrecognizedClientException", "bad token", 400, AuthenticationError, False),
        ("InvalidClientTokenId", "bad key", 403, AuthenticationError, False),
        ("SignatureDoesNotMatch", "bad secret", 403, AuthenticationError, False),
        ("AccessDeniedException", "no ses:SendEmail", 403, AuthenticationError, False),
        ("InternalFailure", "oops", 500, ServiceUnavailable, True),
        ("ServiceUnavailable", "busy", 503, ServiceUnavailable, True),
        ("SomethingNew", "?", 502, ServiceUnavailable, True),
    ],
)
def test_client_error_mapping(
    code: str, message: str, status: int, cls: type[Exception], transient: bool
) -> None:
    exc = client_error(code, message, status)
    error = translate(exc)
    assert type(error) is cls
    assert error.transient is transient  # type: ignore[attr-defined]
    assert error.error_code == code and error.status == status  # type: ignore[attr-defined]
    assert str(error) == str(error_for(code, message, status=status))


def test_not_found_is_a_configuration_error() -> None:
    error = translate(client_error("NotFoundException", "Configuration set nope not found", 404))
    assert isinstance(error, ConfigurationError) and "nope" in str(error)


def test_transport_errors() -> None:
    from botocore import exceptions as bx

    from xcomm import ConnectionLost, ConnectTimeout, ValidationError

    url = "https://email.us-east-1.amazonaws.com/v2/email/outbound-emails"
    assert isinstance(translate(bx.EndpointConnectionError(endpoint_url=url)), ConnectError)
    assert isinstance(translate(bx.ConnectTimeoutError(endpoint_url=url)), ConnectTimeout)
    assert isinstance(translate(bx.ReadTimeoutError(endpoint_url=url)), ResponseTimeout)
    assert isinstance(translate(bx.ConnectionClosedError(endpoint_url=url)), ConnectionLost)
    assert isinstance(translate(bx.NoCredentialsError()), ConfigurationError)
    assert isinstance(translate(bx.NoRegionError()), ConfigurationError)
    assert isinstance(translate(bx.ParamValidationError(report="Invalid type")), ValidationError)


async def test_send_timeout_while_waiting_for_ses_is_delivery_unknown(
    comm: CommManager, stub: Callable[[Handler], Awaitable[str]]
) -> None:
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(0.5)
        return web.json_response({"MessageId": "late"})

    ses = ses_on(comm, await stub(slow))
    with pytest.raises(ResponseTimeout, match="may have been accepted"):
        await ses.send_message("ada@example.org", "hi", "body", timeout=0.2)


async def test_a_worker_rebuilds_the_provider_from_its_spec(
    moto: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    async with CommManager(retry=FAST, outbox="memory://") as app:
        spec = app.ses(REGION, endpoint_url=moto, sender=SENDER, tags={"c": "1"}).spec()
    async with CommManager(retry=FAST, outbox="memory://") as worker:
        rebuilt = worker.provider_for(spec)
        assert isinstance(rebuilt, SESProvider) and rebuilt.spec() == spec
        await rebuilt.send_message("ada@example.org", "from a worker", "body")
    assert len(await raw_sent(moto)) == 1
