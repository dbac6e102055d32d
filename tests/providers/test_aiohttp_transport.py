"""`AiohttpTransport` under the webhook provider, against real sockets on loopback.

Well-behaved answers come from an `aiohttp.web` app; misbehaving servers (silent, hanging up,
truncating, resetting, never accepting) are raw `asyncio` servers. Every failure is produced
by a real socket, never by raising an aiohttp exception by hand, so the tests pin down which
phase each aiohttp error really comes from and whether xcomm retries it.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import socket
import ssl
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import httpx
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from xcomm import (
    CommManager,
    ConfigurationError,
    ConnectError,
    ConnectionLost,
    ConnectTimeout,
    DeliveryUnknown,
    MessageError,
    PoolTimeout,
    RequestNotSent,
    ResponseTimeout,
    RetryPolicy,
    Timeout,
)
from xcomm._httpx_objects import body_request
from xcomm.transports import AiohttpTransport

FAST_RETRY = RetryPolicy(max_attempts=3, backoff=0.001, jitter=False)


class CountingTransport(AiohttpTransport):
    """An `AiohttpTransport` that counts the requests handed to it (one per attempt)."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.calls = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        return await super().handle_async_request(request)


# -- a well-behaved server ---------------------------------------------------------------------


class App:
    """An aiohttp app on a free loopback port that records what it receives."""

    def __init__(self) -> None:
        self.requests: list[tuple[list[tuple[bytes, bytes]], bytes]] = []
        self.limited = 0
        app = web.Application()
        app.router.add_post("/hook", self.hook)
        app.router.add_post("/limited", self.limited_hook)
        app.router.add_post("/bad", self.bad)
        app.router.add_get("/dup", self.dup)
        app.router.add_get("/gzip", self.gzipped)
        app.router.add_get("/big", self.big)
        self.server = TestServer(app, host="127.0.0.1")

    def url(self, path: str) -> str:
        return str(self.server.make_url(path))

    async def hook(self, request: web.Request) -> web.Response:
        self.requests.append((list(request.raw_headers), await request.read()))
        return web.json_response({"id": "evt_42", "ok": True})

    async def limited_hook(self, request: web.Request) -> web.Response:
        await request.read()
        self.limited += 1
        if self.limited == 1:
            return web.json_response(
                {"message": "slow down"}, status=429, headers={"Retry-After": "0"}
            )
        return web.json_response({"id": "after-429"})

    async def bad(self, request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"error": "invalid_payload"}, status=400)

    async def dup(self, request: web.Request) -> web.Response:
        response = web.Response(text="ok")
        for value in ("a=1; Path=/", "b=2; Path=/"):
            response.headers.add("Set-Cookie", value)
        response.headers.add("X-Dup", "first")
        response.headers.add("X-Dup", "second")
        return response

    async def gzipped(self, request: web.Request) -> web.Response:
        body = gzip.compress(json.dumps({"id": "zipped"}).encode())
        return web.Response(
            body=body, headers={"Content-Encoding": "gzip", "Content-Type": "application/json"}
        )

    async def big(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.content_length = 4 * 1024 * 1024
        await response.prepare(request)
        with contextlib.suppress(ConnectionError):
            for _ in range(64):
                await response.write(b"x" * 65536)
        return response


@pytest.fixture
async def app() -> AsyncIterator[App]:
    served = App()
    await served.server.start_server()
    try:
        yield served
    finally:
        await served.server.close()


# -- misbehaving servers -------------------------------------------------------------------------

Respond = Callable[[asyncio.StreamWriter, asyncio.Event], Awaitable[None]]


async def _read_request(reader: asyncio.StreamReader) -> bytes | None:
    """One HTTP/1.1 request (head and Content-Length body), or None at EOF."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return head + await reader.readexactly(length)


class RawServer:
    """An asyncio server that reads each request, then does whatever `respond` does.

    On exit it stops, and waits for every connection handler, so no task outlives the test.
    """

    def __init__(self, respond: Respond) -> None:
        self.respond = respond
        self.requests: list[bytes] = []
        self.arrived = asyncio.Event()
        self._stop = asyncio.Event()
        self._handlers: set[asyncio.Task[Any]] = set()
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/hook"

    async def __aenter__(self) -> RawServer:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._stop.set()
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()
        if self._handlers:
            _, pending = await asyncio.wait(self._handlers, timeout=2)
            for task in pending:
                task.cancel()
            await asyncio.gather(*self._handlers, return_exceptions=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            request = await _read_request(reader)
            if request is not None:
                self.requests.append(request)
                self.arrived.set()
                await self.respond(writer, self._stop)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


async def never_answer(writer: asyncio.StreamWriter, stop: asyncio.Event) -> None:
    await stop.wait()


async def hang_up(writer: asyncio.StreamWriter, stop: asyncio.Event) -> None:
    """Close the connection right after reading the request, without a response."""


async def truncated_body(writer: asyncio.StreamWriter, stop: asyncio.Event) -> None:
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nContent-Type: text/plain\r\n\r\n")
    writer.write(b"only ten b")
    await writer.drain()


async def garbage(writer: asyncio.StreamWriter, stop: asyncio.Event) -> None:
    writer.write(b"SMTP/1.0 220 hello there\r\n\r\n")
    await writer.drain()


async def reset(writer: asyncio.StreamWriter, stop: asyncio.Event) -> None:
    """Abort with a TCP RST (SO_LINGER 0) instead of a FIN."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def unaccepting_port() -> Any:
    """A port whose accept queue is full: a new connection's SYN goes unanswered."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(3):
            filler = socket.socket()
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect(("127.0.0.1", port))
            fillers.append(filler)
        yield port
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


# -- the provider path: successes and provider answers ------------------------------------------


async def test_send_returns_the_json_id(app: App) -> None:
    transport = CountingTransport()
    async with CommManager(transport=transport, retry=FAST_RETRY) as comm:
        result = await comm.webhook(app.url("/hook")).send({"text": "deploy finished"})
    assert result.message_id == "evt_42"
    assert result.status == 200
    assert result.attempts == 1
    assert transport.calls == 1


async def test_request_headers_and_body_arrive_intact(app: App) -> None:
    payload = {"text": "héllo ✓", "n": [1, 2, 3]}
    async with CommManager(transport=AiohttpTransport(), retry=FAST_RETRY) as comm:
        hook = comm.webhook(app.url("/hook"), headers={"X-Env": "test", "X-Token": "abc"})
        await hook.send(payload, headers={"X-Trace": "t-1"}, idempotency_key="key-9")
    [(raw, body)] = app.requests
    names = [name.decode().lower() for name, _ in raw]
    headers = {name.decode().lower(): value.decode() for name, value in raw}
    assert json.loads(body) == payload
    assert headers["content-type"] == "application/json"
    assert headers["content-length"] == str(len(body))
    assert headers["x-env"] == "test"
    assert headers["x-token"] == "abc"
    assert headers["x-trace"] == "t-1"
    assert headers["idempotency-key"] == "key-9"
    assert headers["accept"] == "application/json, */*"
    assert names.count("host") == 1
    assert len(names) == len(set(names))  # aiohttp added no second copy of anything
    assert "aiohttp" not in headers.get("user-agent", "")
    if "user-agent" in headers:
        assert headers["user-agent"].startswith("xcomm/")


async def test_429_with_retry_after_is_retried_then_succeeds(app: App) -> None:
    transport = CountingTransport()
    async with CommManager(transport=transport, retry=FAST_RETRY) as comm:
        result = await comm.webhook(app.url("/limited")).send({})
    assert result.message_id == "after-429"
    assert result.attempts == 2
    assert transport.calls == 2


async def test_400_is_a_message_error_and_not_retried(app: App) -> None:
    transport = CountingTransport()
    async with CommManager(transport=transport, retry=FAST_RETRY) as comm:
        with pytest.raises(MessageError) as info:
            await comm.webhook(app.url("/bad")).send({})
    assert info.value.status == 400
    assert info.value.error_code == "invalid_payload"
    assert transport.calls == 1


async def test_duplicate_response_headers_are_preserved(app: App) -> None:
    async with CommManager(transport=AiohttpTransport()) as comm:
        response = await comm.http.get(app.url("/dup"))
    assert response.headers.get_list("x-dup") == ["first", "second"]
    assert response.headers.get_list("set-cookie") == ["a=1; Path=/", "b=2; Path=/"]
    assert response.reason_phrase == "OK"
    assert response.http_version == "HTTP/1.1"


async def test_gzip_is_decoded_once_by_httpx(app: App) -> None:
    async with CommManager(transport=AiohttpTransport()) as comm:
        response = await comm.http.get(app.url("/gzip"))
    assert response.headers["content-encoding"] == "gzip"
    assert response.json() == {"id": "zipped"}


@pytest.mark.parametrize("path", ["/hook", "/gzip", "/dup"])
async def test_a_small_reply_comes_back_read_as_httpx_would_build_it(app: App, path: str) -> None:
    method = "POST" if path == "/hook" else "GET"
    async with AiohttpTransport() as transport:
        response = await transport.handle_async_request(httpx.Request(method, app.url(path)))
    expected = httpx.Response(
        response.status_code,
        headers=response.headers.raw,
        content=response.content if path != "/gzip" else gzip.compress(response.content),
    )
    assert response.is_closed and response.is_stream_consumed
    assert response.content == expected.content
    assert response.text == expected.text
    assert response.headers.raw == expected.headers.raw
    assert await response.aread() == expected.content
    assert [chunk async for chunk in response.aiter_bytes()] == [expected.content]
    assert response.http_version == "HTTP/1.1"
    await response.aclose()


async def test_requests_to_different_urls_on_one_transport(app: App) -> None:
    async with AiohttpTransport() as transport:
        for path in ["/dup", "/hook", "/dup", "/gzip", "/hook"]:
            method = "POST" if path == "/hook" else "GET"
            response = await transport.handle_async_request(httpx.Request(method, app.url(path)))
            assert response.status_code == 200
            if path == "/hook":
                assert response.json() == {"id": "evt_42", "ok": True}
            if path == "/dup":
                assert response.text == "ok"
        with pytest.raises(httpx.UnsupportedProtocol):  # checked again, not taken from a cache
            await transport.handle_async_request(httpx.Request("GET", "ftp://127.0.0.1/x"))
        hook, dup = httpx.URL(app.url("/hook")), httpx.URL(app.url("/dup"))
        for url in [hook, dup, hook, hook, dup]:  # the same URL objects, as providers keep them
            request = body_request("POST" if url is hook else "GET", url, httpx.Headers(), b"")
            response = await transport.handle_async_request(request)
            assert response.content == (b'{"id": "evt_42", "ok": true}' if url is hook else b"ok")


async def test_the_transport_keeps_no_cookies(app: App) -> None:
    """Cookies are the client's business; the transport must not replay them on its own."""
    async with AiohttpTransport() as transport:
        first = await transport.handle_async_request(httpx.Request("GET", app.url("/dup")))
        await first.aread()
        await first.aclose()
        second = await transport.handle_async_request(
            httpx.Request("POST", app.url("/hook"), content=b"{}")
        )
        await second.aread()
        await second.aclose()
    raw, _ = app.requests[-1]
    assert b"cookie" not in {name.lower() for name, _ in raw}


async def test_streaming_request_body_is_sent_chunked(app: App) -> None:
    async def body() -> AsyncIterator[bytes]:
        yield b'{"part": '
        yield b'"one"}'

    async with CommManager(transport=AiohttpTransport()) as comm:
        response = await comm.http.post(app.url("/hook"), content=body())
    assert response.status_code == 200
    [(raw, received)] = app.requests
    assert received == b'{"part": "one"}'
    assert (b"Transfer-Encoding", b"chunked") in raw


async def _stream(*chunks: bytes) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


@pytest.mark.parametrize(
    "body",
    [lambda: b"payload", lambda: _stream(b"pay", b"load")],
    ids=["bytes", "stream"],
)
async def test_aiohttp_adds_no_headers_of_its_own(
    app: App, body: Callable[[], bytes | AsyncIterator[bytes]]
) -> None:
    """As httpx's transport: no User-Agent, Accept, Accept-Encoding or Content-Type unless
    the request has them."""
    async with AiohttpTransport() as transport:
        response = await transport.handle_async_request(
            httpx.Request("POST", app.url("/hook"), content=body())
        )
        await response.aread()
    [(raw, received)] = app.requests
    names = {name.decode().lower() for name, _ in raw}
    assert received == b"payload"
    assert not names & {"user-agent", "accept", "accept-encoding", "content-type"}


async def test_the_requests_own_headers_are_sent_once_each(app: App) -> None:
    headers = {
        "User-Agent": "agent/1",
        "Accept": "text/plain",
        "Accept-Encoding": "identity",
        "Content-Type": "text/csv",
    }
    async with AiohttpTransport() as transport:
        request = httpx.Request("POST", app.url("/hook"), headers=headers, content=b"a,b")
        await (await transport.handle_async_request(request)).aread()
    [(raw, _)] = app.requests
    sent = [(name.decode().lower(), value.decode()) for name, value in raw]
    for name, value in headers.items():
        assert [v for n, v in sent if n == name.lower()] == [value]


async def test_a_streamed_response_releases_its_slot_when_closed(app: App) -> None:
    transport = AiohttpTransport(limits=httpx.Limits(max_connections=1))
    async with CommManager(transport=transport, timeout=Timeout(pool=1.0)) as comm:
        async with comm.http.stream("GET", app.url("/big")) as response:
            async for chunk in response.aiter_raw():
                assert chunk
                break  # leave most of the body unread
        # the only slot is free again, so this does not wait for the pool
        result = await comm.webhook(app.url("/hook")).send({})
    assert result.status == 200


async def test_many_concurrent_sends_share_a_small_pool(app: App) -> None:
    transport = AiohttpTransport(limits=httpx.Limits(max_connections=4))
    async with CommManager(transport=transport) as comm:
        hook = comm.webhook(app.url("/hook"))
        results = await asyncio.gather(*(hook.send({"n": n}) for n in range(50)))
    assert {r.message_id for r in results} == {"evt_42"}
    assert len(app.requests) == 50


# -- the provider path: nothing was sent (retried) ---------------------------------------------


async def test_a_closed_port_is_connect_error_and_retried() -> None:
    transport = CountingTransport()
    async with CommManager(transport=transport, retry=FAST_RETRY) as comm:
        with pytest.raises(ConnectError) as info:
            await comm.webhook(f"http://127.0.0.1:{closed_port()}/hook").send({})
    assert isinstance(info.value, RequestNotSent)
    assert isinstance(info.value.__cause__, httpx.ConnectError)
    assert isinstance(info.value.__cause__.__cause__, aiohttp.ClientConnectorError)
    assert transport.calls == FAST_RETRY.max_attempts


async def test_an_unresolvable_host_is_connect_error() -> None:
    transport = CountingTransport()
    async with CommManager(transport=transport, retry=FAST_RETRY, timeout=5.0) as comm:
        with pytest.raises(ConnectError) as info:
            await comm.webhook("http://no-such-host.invalid/hook").send({})
    assert isinstance(info.value.__cause__, httpx.ConnectError)
    assert transport.calls == FAST_RETRY.max_attempts


async def test_a_connect_timeout_is_connect_timeout_and_retried() -> None:
    transport = CountingTransport()
    with unaccepting_port() as port:
        async with CommManager(transport=transport, retry=FAST_RETRY) as comm:
            hook = comm.webhook(
                f"http://127.0.0.1:{port}/hook",
                timeout=Timeout(connect=0.1, read=5.0, write=5.0, pool=5.0),
            )
            with pytest.raises(ConnectTimeout) as info:
                await hook.send({})
    assert isinstance(info.value, RequestNotSent)
    assert isinstance(info.value.__cause__, httpx.ConnectTimeout)
    assert transport.calls == FAST_RETRY.max_attempts


async def test_waiting_too_long_for_a_pool_slot_is_pool_timeout() -> None:
    async with RawServer(never_answer) as server:
        transport = CountingTransport(limits=httpx.Limits(max_connections=1))
        async with CommManager(transport=transport, retry=RetryPolicy(max_attempts=1)) as comm:
            hook = comm.webhook(server.url, timeout=Timeout(connect=1.0, read=5.0, pool=0.1))
            first = asyncio.create_task(hook.send({"n": 1}))
            await asyncio.wait_for(server.arrived.wait(), 5)  # it holds the only slot
            with pytest.raises(PoolTimeout) as info:
                await hook.send({"n": 2})
            assert isinstance(info.value, RequestNotSent)
            assert isinstance(info.value.__cause__, httpx.PoolTimeout)
            assert len(server.requests) == 1  # the second never reached the server
            first.cancel()
            with pytest.raises(asyncio.CancelledError):
                await first


@pytest.mark.parametrize("respond", [hang_up, truncated_body, garbage, reset])
async def test_a_failed_request_gives_its_slot_back(respond: Respond) -> None:
    transport = AiohttpTransport(limits=httpx.Limits(max_connections=1))
    async with RawServer(respond) as server, transport:
        for _ in range(3):  # with a lost slot, the second would wait out the pool timeout
            request = httpx.Request("POST", server.url, content=b"{}")
            request.extensions["timeout"] = {"connect": 1.0, "read": 1.0, "pool": 0.2}
            with pytest.raises(httpx.TransportError) as info:
                await transport.handle_async_request(request)
            assert not isinstance(info.value, httpx.PoolTimeout)


async def test_a_waiter_that_gives_up_takes_no_slot_with_it(app: App) -> None:
    async with (
        RawServer(never_answer) as server,
        AiohttpTransport(limits=httpx.Limits(max_connections=1)) as transport,
    ):

        def request(url: str, pool: float) -> httpx.Request:
            built = httpx.Request("POST", url, content=b"{}")
            built.extensions["timeout"] = {"connect": 1.0, "read": 5.0, "pool": pool}
            return built

        holder = asyncio.create_task(transport.handle_async_request(request(server.url, 1.0)))
        await asyncio.wait_for(server.arrived.wait(), 5)  # it holds the only slot
        with pytest.raises(httpx.PoolTimeout):
            await transport.handle_async_request(request(app.url("/hook"), 0.05))
        waiter = asyncio.create_task(transport.handle_async_request(request(app.url("/hook"), 5)))
        await asyncio.sleep(0.05)
        cancelled = asyncio.create_task(
            transport.handle_async_request(request(app.url("/hook"), 5))
        )
        await asyncio.sleep(0.05)
        cancelled.cancel()  # queued behind `waiter`: leaves the queue without a slot
        holder.cancel()  # frees the slot for `waiter`
        response = await asyncio.wait_for(waiter, 5)
        assert response.json() == {"id": "evt_42", "ok": True}
        with pytest.raises(asyncio.CancelledError):
            await holder
        with pytest.raises(asyncio.CancelledError):
            await cancelled
        # and the slot came back once more: a fresh request passes straight through
        again = await transport.handle_async_request(request(app.url("/hook"), 0.2))
        assert again.status_code == 200


# -- the provider path: delivery unknown (never retried) ----------------------------------------


async def test_a_silent_server_is_response_timeout_after_one_attempt() -> None:
    transport = CountingTransport()
    async with (
        RawServer(never_answer) as server,
        CommManager(transport=transport, retry=FAST_RETRY) as comm,
    ):
        with pytest.raises(ResponseTimeout) as info:
            await comm.webhook(server.url, timeout=0.2).send({"x": 1})
    assert isinstance(info.value, DeliveryUnknown)
    assert isinstance(info.value.__cause__, httpx.ReadTimeout)
    assert transport.calls == 1
    assert len(server.requests) == 1


async def test_a_hang_up_after_the_request_is_connection_lost_after_one_attempt() -> None:
    """The case httpx-aiohttp gets wrong: it calls this a ConnectTimeout, so it is resent."""
    transport = CountingTransport()
    async with (
        RawServer(hang_up) as server,
        CommManager(transport=transport, retry=FAST_RETRY) as comm,
    ):
        with pytest.raises(ConnectionLost) as info:
            await comm.webhook(server.url).send({"x": 1})
    assert isinstance(info.value, DeliveryUnknown)
    assert not isinstance(info.value, RequestNotSent)
    assert isinstance(info.value.__cause__, httpx.RemoteProtocolError)
    assert isinstance(info.value.__cause__.__cause__, aiohttp.ServerDisconnectedError)
    assert transport.calls == 1
    assert len(server.requests) == 1


@pytest.mark.parametrize(
    ("respond", "httpx_error"),
    [
        (truncated_body, httpx.RemoteProtocolError),
        (garbage, httpx.RemoteProtocolError),
        (reset, httpx.TransportError),
    ],
    ids=["truncated-body", "not-http", "tcp-reset"],
)
async def test_broken_answers_are_delivery_unknown_after_one_attempt(
    respond: Respond, httpx_error: type[httpx.TransportError]
) -> None:
    transport = CountingTransport()
    async with (
        RawServer(respond) as server,
        CommManager(transport=transport, retry=FAST_RETRY) as comm,
    ):
        with pytest.raises(ConnectionLost) as info:
            await comm.webhook(server.url).send({"x": 1})
    assert isinstance(info.value.__cause__, httpx_error)
    assert not isinstance(info.value.__cause__, httpx.ConnectError | httpx.TimeoutException)
    assert transport.calls == 1
    assert len(server.requests) == 1


# -- TLS -----------------------------------------------------------------------------------------


@pytest.fixture
async def tls_app() -> AsyncIterator[tuple[str, ssl.SSLContext]]:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)

    async def hook(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"id": "tls"})

    application = web.Application()
    application.router.add_post("/hook", hook)
    runner = web.AppRunner(application)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ctx)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"https://127.0.0.1:{port}/hook", client_ctx
    finally:
        await runner.cleanup()


async def test_tls_with_a_trusted_ca(tls_app: tuple[str, ssl.SSLContext]) -> None:
    url, trusted = tls_app
    async with CommManager(transport=AiohttpTransport(verify=trusted)) as comm:
        result = await comm.webhook(url).send({})
    assert result.message_id == "tls"


async def test_an_untrusted_certificate_is_connect_error(
    tls_app: tuple[str, ssl.SSLContext],
) -> None:
    url, _ = tls_app
    transport = CountingTransport()
    async with CommManager(transport=transport, retry=RetryPolicy(max_attempts=1)) as comm:
        with pytest.raises(ConnectError) as info:
            await comm.webhook(url).send({})
    assert isinstance(info.value.__cause__, httpx.ConnectError)
    assert isinstance(info.value.__cause__.__cause__, aiohttp.ClientConnectorCertificateError)


# -- the transport itself ------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/x", "ws+unix://sock/x"])
async def test_unsupported_schemes_are_refused_before_connecting(url: str) -> None:
    async with AiohttpTransport() as transport:
        with pytest.raises(httpx.UnsupportedProtocol):
            await transport.handle_async_request(httpx.Request("GET", url))


async def test_the_manager_closes_the_transport(app: App) -> None:
    transport = AiohttpTransport()
    async with CommManager(transport=transport) as comm:
        await comm.webhook(app.url("/hook")).send({})
    assert "closed" in repr(transport)
    with pytest.raises(RuntimeError, match="closed"):
        await transport.handle_async_request(httpx.Request("GET", app.url("/dup")))
    await transport.aclose()  # idempotent


async def test_closing_an_unused_transport_is_a_no_op() -> None:
    transport = AiohttpTransport()
    await transport.aclose()
    await transport.aclose()
    assert "closed" in repr(transport)


@pytest.mark.parametrize(
    ("options", "match"),
    [({"limits": {"max_connections": 4}}, "httpx.Limits"), ({"verify": "yes"}, "verify")],
)
def test_bad_options_are_configuration_errors(options: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        AiohttpTransport(**options)


def test_without_aiohttp_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from xcomm.transports import _aiohttp

    monkeypatch.setattr(_aiohttp, "_HAVE_AIOHTTP", False)
    with pytest.raises(ConfigurationError, match=r"xcomm\[fast\]"):
        AiohttpTransport()


async def test_an_idempotent_method_is_not_resent_behind_the_callers_back() -> None:
    """aiohttp on its own resends a PUT once when the server hangs up; xcomm must see one try."""
    transport = CountingTransport()
    async with (
        RawServer(hang_up) as server,
        CommManager(transport=transport, retry=FAST_RETRY) as comm,
    ):
        with pytest.raises(ConnectionLost):
            await comm.webhook(server.url, method="PUT").send({"x": 1})
    assert transport.calls == 1
    assert len(server.requests) == 1


@pytest.mark.parametrize("respond", [garbage, never_answer], ids=["not-http", "silent"])
async def test_error_messages_do_not_carry_the_url(respond: Respond) -> None:
    """Webhook URLs hold secrets: aiohttp puts the URL in some messages, httpx's must not."""
    async with (
        RawServer(respond) as server,
        CommManager(transport=AiohttpTransport(), retry=FAST_RETRY) as comm,
    ):
        with pytest.raises(DeliveryUnknown) as info:
            await comm.webhook(server.url + "/SECRETTOKEN", timeout=0.2).send({})
    assert isinstance(info.value.__cause__, httpx.TransportError)
    assert "SECRETTOKEN" not in str(info.value)
    assert "SECRETTOKEN" not in str(info.value.__cause__)


async def test_a_connect_timeout_message_does_not_carry_the_url() -> None:
    with unaccepting_port() as port:
        async with AiohttpTransport() as transport:
            request = httpx.Request("POST", f"http://127.0.0.1:{port}/SECRETTOKEN", content=b"{}")
            request.extensions["timeout"] = {"connect": 0.1, "read": 1, "write": 1, "pool": 1}
            with pytest.raises(httpx.ConnectTimeout) as info:
                await transport.handle_async_request(request)
    assert "SECRETTOKEN" not in str(info.value)
