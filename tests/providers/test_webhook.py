"""The generic webhook provider over the shared HTTP pipeline (respx behind the transport)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest
import respx

from xcomm import (
    AuthenticationError,
    CommManager,
    ConfigurationError,
    ConnectError,
    ConnectTimeout,
    DeliveryUnknown,
    MessageError,
    ProviderError,
    RateLimit,
    RateLimitError,
    RequestNotSent,
    ResponseTimeout,
    RetryPolicy,
    ServiceUnavailable,
    ValidationError,
)
from xcomm.testing import FakeClock

URL = "https://hooks.example.com/services/T000/B000/SECRETTOKEN"


async def test_posts_json_and_returns_result(comm: CommManager, router: respx.MockRouter) -> None:
    route = router.post(URL).respond(200, json={"id": "evt_42", "ok": True})
    hook = comm.webhook(URL, headers={"X-Env": "test"})

    result = await hook.send({"text": "deploy finished", "n": 3})

    assert route.call_count == 1
    request = route.calls.last.request
    assert json.loads(request.content) == {"text": "deploy finished", "n": 3}
    assert request.headers["content-type"] == "application/json"
    assert request.headers["x-env"] == "test"
    assert request.headers["user-agent"].startswith("xcomm/")
    assert result.message_id == "evt_42"
    assert result.provider == "webhook"
    assert result.status == 200
    assert result.attempts == 1
    assert "SECRETTOKEN" not in repr(result)


async def test_request_id_header_used_when_body_has_no_id(
    comm: CommManager, router: respx.MockRouter
) -> None:
    router.post(URL).respond(204, headers={"X-Request-Id": "req-7"})
    result = await comm.webhook(URL).send({"a": 1})
    assert result.message_id == "req-7"
    assert result.status == 204


@pytest.mark.parametrize(
    ("status", "body", "error", "code"),
    [
        (400, {"error": "invalid_payload"}, MessageError, "invalid_payload"),
        (401, {"message": "bad token", "code": 50014}, AuthenticationError, "50014"),
        (403, "forbidden", AuthenticationError, None),
        (413, {"error": {"code": "TooLarge", "message": "28 KB max"}}, MessageError, "TooLarge"),
        (404, "no_service", ProviderError, None),
    ],
)
async def test_client_errors_are_not_retried(
    comm: CommManager,
    router: respx.MockRouter,
    status: int,
    body: object,
    error: type[ProviderError],
    code: str | None,
) -> None:
    kwargs = {"json": body} if not isinstance(body, str) else {"text": body}
    route = router.post(URL).respond(status, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(error) as info:
        await comm.webhook(URL).send({"x": 1})
    assert type(info.value) is error
    assert route.call_count == 1
    assert info.value.status == status
    assert info.value.error_code == code
    assert info.value.provider == "webhook"
    assert not info.value.transient
    assert "SECRETTOKEN" not in str(info.value)


async def test_429_retry_after_seconds_waits_then_succeeds(router: respx.MockRouter) -> None:
    clock = FakeClock()
    route = router.post(URL)
    route.side_effect = [
        httpx.Response(429, headers={"Retry-After": "7"}, json={"message": "slow down"}),
        httpx.Response(200, json={"id": "ok"}),
    ]
    async with (
        clock.autojump(),
        CommManager(transport=httpx.MockTransport(router.async_handler), clock=clock) as comm,
    ):
        started = clock.now()
        result = await comm.webhook(URL).send({"x": 1})
        elapsed = clock.now() - started
    assert result.attempts == 2
    assert route.call_count == 2
    assert elapsed == pytest.approx(7.0, abs=1e-6)


async def test_429_http_date_is_measured_against_the_response_date(
    router: respx.MockRouter,
) -> None:
    clock = FakeClock()
    server_now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    route = router.post(URL)
    route.side_effect = [
        httpx.Response(
            429,
            headers={
                "Date": format_datetime(server_now, usegmt=True),
                "Retry-After": format_datetime(server_now + timedelta(seconds=30), usegmt=True),
            },
        ),
        httpx.Response(200),
    ]
    async with (
        clock.autojump(),
        CommManager(transport=httpx.MockTransport(router.async_handler), clock=clock) as comm,
    ):
        result = await comm.webhook(URL).send({})
    assert result.attempts == 2
    assert clock.now() == pytest.approx(30.0, abs=1e-6)


async def test_429_exhausting_attempts_raises_rate_limit_error(
    comm: CommManager, router: respx.MockRouter
) -> None:
    route = router.post(URL).respond(429, headers={"Retry-After": "0.001"})
    with pytest.raises(RateLimitError) as info:
        await comm.webhook(URL).send({})
    assert route.call_count == 3  # FAST_RETRY.max_attempts
    assert info.value.retry_after == pytest.approx(0.001)
    assert info.value.transient


async def test_429_with_a_very_long_retry_after_is_not_slept_through(
    comm: CommManager, router: respx.MockRouter
) -> None:
    route = router.post(URL).respond(429, headers={"Retry-After": "86400"})
    with pytest.raises(RateLimitError) as info:
        await comm.webhook(URL).send({})
    assert route.call_count == 1
    assert info.value.retry_after == 86400


async def test_429_pauses_the_shared_bucket_for_everyone(router: respx.MockRouter) -> None:
    clock = FakeClock()
    router.post(URL).side_effect = [
        httpx.Response(429, headers={"Retry-After": "5"}),
        httpx.Response(200),
    ]
    other = router.post("https://hooks.example.com/other").respond(200)
    async with (
        clock.autojump(),
        CommManager(
            transport=httpx.MockTransport(router.async_handler),
            clock=clock,
            rate_limits={"webhook": RateLimit(rate=100, per=1.0)},
            retry=RetryPolicy(max_attempts=1),
        ) as comm,
    ):
        with pytest.raises(RateLimitError):
            await comm.webhook(URL).send({})
        await comm.webhook("https://hooks.example.com/other").send({})
        # the second webhook shares the provider bucket, which the 429 paused for 5 s
        assert clock.now() >= 5.0
    assert other.call_count == 1


async def test_remaining_zero_headers_pause_the_bucket(router: respx.MockRouter) -> None:
    clock = FakeClock()
    router.post(URL).respond(
        200, headers={"X-RateLimit-Remaining": "0", "X-RateLimit-Reset-After": "2.5"}
    )
    async with (
        clock.autojump(),
        CommManager(
            transport=httpx.MockTransport(router.async_handler),
            clock=clock,
            rate_limits={"webhook": RateLimit(rate=1000)},
        ) as comm,
    ):
        hook = comm.webhook(URL)
        await hook.send({})
        await hook.send({})
        assert clock.now() == pytest.approx(2.5, abs=1e-3)


async def test_503_is_retried(comm: CommManager, router: respx.MockRouter) -> None:
    route = router.post(URL)
    route.side_effect = [httpx.Response(503), httpx.Response(502), httpx.Response(200)]
    result = await comm.webhook(URL).send({})
    assert result.attempts == 3


async def test_500_on_a_non_idempotent_post_is_not_retried(
    comm: CommManager, router: respx.MockRouter
) -> None:
    route = router.post(URL).respond(500, text="boom")
    with pytest.raises(ServiceUnavailable) as info:
        await comm.webhook(URL).send({})
    assert route.call_count == 1
    assert not info.value.transient
    assert info.value.detail == "boom"


async def test_500_with_an_idempotency_key_is_retried(
    comm: CommManager, router: respx.MockRouter
) -> None:
    route = router.post(URL)
    route.side_effect = [httpx.Response(500), httpx.Response(200)]
    result = await comm.webhook(URL).send({}, idempotency_key="campaign-1:user-9")
    assert result.attempts == 2
    keys = {c.request.headers["idempotency-key"] for c in route.calls}
    assert keys == {"campaign-1:user-9"}


async def test_connect_error_is_request_not_sent_and_retried(
    comm: CommManager, router: respx.MockRouter
) -> None:
    route = router.post(URL).mock(side_effect=httpx.ConnectError("refused"))
    with pytest.raises(ConnectError) as info:
        await comm.webhook(URL).send({})
    assert isinstance(info.value, RequestNotSent)
    assert isinstance(info.value, ConnectionError)
    assert route.call_count == 3


async def test_connect_timeout_then_success(comm: CommManager, router: respx.MockRouter) -> None:
    route = router.post(URL)
    route.side_effect = [httpx.ConnectTimeout("slow"), httpx.Response(200)]
    result = await comm.webhook(URL).send({})
    assert result.attempts == 2
    assert issubclass(ConnectTimeout, TimeoutError)


async def test_read_timeout_is_delivery_unknown_and_never_retried(
    comm: CommManager, router: respx.MockRouter
) -> None:
    route = router.post(URL).mock(side_effect=httpx.ReadTimeout("no answer"))
    with pytest.raises(ResponseTimeout) as info:
        await comm.webhook(URL).send({})
    assert isinstance(info.value, DeliveryUnknown)
    assert isinstance(info.value, TimeoutError)
    assert route.call_count == 1


async def test_dropped_connection_mid_request_is_delivery_unknown(
    comm: CommManager, router: respx.MockRouter
) -> None:
    route = router.post(URL).mock(side_effect=httpx.RemoteProtocolError("server hung up"))
    with pytest.raises(DeliveryUnknown):
        await comm.webhook(URL).send({})
    assert route.call_count == 1


async def test_real_read_timeout_through_a_slow_transport() -> None:
    """A real socket server that never answers: the read timeout fires as ResponseTimeout."""
    import asyncio

    stop = asyncio.Event()
    handlers: list[asyncio.Task[None]] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handlers.append(asyncio.current_task())  # type: ignore[arg-type]
        await reader.read(65536)
        await stop.wait()
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with CommManager(retry=RetryPolicy(max_attempts=2, backoff=0.001)) as comm:
            hook = comm.webhook(f"http://127.0.0.1:{port}/hook", timeout=0.2)
            with pytest.raises(ResponseTimeout):
                await hook.send({"x": 1})
    finally:
        stop.set()
        server.close()
        await server.wait_closed()
        await asyncio.gather(*handlers, return_exceptions=True)


async def test_real_connection_refused_is_connect_error() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with CommManager(retry=RetryPolicy(max_attempts=2, backoff=0.001)) as comm:
        with pytest.raises(ConnectError):
            await comm.webhook(f"http://127.0.0.1:{port}/hook").send({})
        stats = comm.metrics.get_stats(provider="webhook")
    assert stats.failed == 1
    assert stats.errors == {"ConnectError": 1}


@pytest.mark.parametrize(
    "url",
    ["", "ftp://example.com/x", "hooks.example.com/x", "https:///nohost", "https://a b.com/"],
)
async def test_bad_urls_are_configuration_errors(comm: CommManager, url: str) -> None:
    with pytest.raises(ConfigurationError):
        comm.webhook(url)


async def test_bad_method_is_a_configuration_error(comm: CommManager) -> None:
    with pytest.raises(ConfigurationError, match="method"):
        comm.webhook(URL, method="GET")


async def test_header_injection_is_rejected_before_sending(
    comm: CommManager, router: respx.MockRouter
) -> None:
    route = router.post(URL).respond(200)
    with pytest.raises(ValidationError):
        comm.webhook(URL, headers={"X-Evil": "a\r\nInjected: yes"})
    hook = comm.webhook(URL)
    with pytest.raises(ValidationError):
        await hook.send({}, headers={"X-Ok": "fine\nInjected: 1"})
    with pytest.raises(ValidationError):
        await hook.send({}, idempotency_key="k\r\n")
    assert route.call_count == 0


async def test_unencodable_payload_is_a_validation_error(
    comm: CommManager, router: respx.MockRouter
) -> None:
    route = router.post(URL).respond(200)
    with pytest.raises(ValidationError, match="JSON"):
        await comm.webhook(URL).send({"when": object()})
    assert route.call_count == 0


async def test_calls_are_counted_in_metrics(comm: CommManager, router: respx.MockRouter) -> None:
    router.post(URL).side_effect = [httpx.Response(200), httpx.Response(400)]
    hook = comm.webhook(URL)
    await hook.send({})
    with pytest.raises(MessageError):
        await hook.send({})
    stats = comm.metrics.get_stats(provider="webhook", operation="send")
    assert (stats.total, stats.successful, stats.failed) == (2, 1, 1)
    assert stats.success_rate == 50.0
    assert "webhook.send" in comm.metrics.get_operation_breakdown()


async def test_provider_is_closed_with_its_manager(router: respx.MockRouter) -> None:
    from xcomm import LifecycleError

    router.post(URL).respond(200)
    async with CommManager(transport=httpx.MockTransport(router.async_handler)) as comm:
        hook = comm.webhook(URL)
    with pytest.raises(LifecycleError):
        await hook.send({})


async def test_secret_in_url_never_reaches_logs(
    comm: CommManager, router: respx.MockRouter, caplog: pytest.LogCaptureFixture
) -> None:
    router.post(URL).respond(400, json={"error": "nope"})
    caplog.set_level("DEBUG", logger="xcomm")
    with pytest.raises(MessageError):
        await comm.webhook(URL, headers={"Authorization": "Bearer sk-live-123"}).send({})
    text = caplog.text
    assert "webhook" in text
    assert "SECRETTOKEN" not in text
    assert "sk-live-123" not in text


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        (httpx.UnsupportedProtocol("no such scheme"), ConfigurationError),
        (httpx.LocalProtocolError("illegal header"), ValidationError),
        (httpx.PoolTimeout("pool"), RequestNotSent),
        (httpx.WriteTimeout("stalled upload"), ResponseTimeout),
        (httpx.ReadError("reset"), DeliveryUnknown),
    ],
)
async def test_transport_failures_map_by_phase(
    comm: CommManager,
    router: respx.MockRouter,
    raised: Exception,
    expected: type[Exception],
) -> None:
    route = router.post(URL).mock(side_effect=raised)
    with pytest.raises(expected):
        await comm.webhook(URL).send({})
    # only "not sent" failures are retried
    assert route.call_count == (3 if expected is RequestNotSent else 1)
