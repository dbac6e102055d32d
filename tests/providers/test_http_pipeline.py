"""The HTTP pipeline drives the manager's transport directly: what it must still do.

`HttpProvider` hands its `httpx.Request`s to `transport.handle_async_request` instead of going
through `httpx.AsyncClient`, so everything the client used to add is checked here, on both
built-in pools against a real aiohttp server on loopback, and through respx: the default
headers, the timeout extension, no redirects, no cookies, and the error mapping. Also: which
transport a manager picks.
"""

from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import AsyncIterator

import httpx
import pytest
import respx
from aiohttp import web
from aiohttp.test_utils import TestServer

from xcomm import (
    AuthenticationError,
    CommManager,
    ConfigurationError,
    ConnectError,
    ProviderError,
    RateLimitError,
    ResponseTimeout,
    RetryPolicy,
    ServiceUnavailable,
    Timeout,
)
from xcomm.transports import AiohttpTransport

NO_RETRY = RetryPolicy(max_attempts=1)


class Server:
    """Records every request's headers; answers by path."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, str]]] = []
        app = web.Application()
        app.router.add_post("/{name}", self.handle)
        self.server = TestServer(app, host="127.0.0.1")

    def url(self, path: str) -> str:
        return str(self.server.make_url(path))

    async def handle(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        name = request.match_info["name"]
        self.seen.append((name, {k.lower(): v for k, v in request.headers.items()}))
        if name == "ok":
            response = web.json_response({"id": "m-1"})
            response.set_cookie("session", "s3cr3t")
            return response
        if name == "redirect":
            raise web.HTTPFound(self.url("/ok"))
        if name == "limited":
            return web.json_response({"message": "slow"}, status=429, headers={"Retry-After": "7"})
        if name == "auth":
            return web.json_response({"message": "bad token"}, status=401)
        if name == "down":
            return web.json_response({"message": "down"}, status=503)
        if name == "slow":
            await asyncio.sleep(5)
        return web.json_response({"message": "?"}, status=404)


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    served = Server()
    await served.server.start_server()
    try:
        yield served
    finally:
        await served.server.close()


@pytest.fixture(params=["aiohttp", "httpx"])
async def comm(request: pytest.FixtureRequest) -> AsyncIterator[CommManager]:
    async with CommManager(transport=request.param, retry=NO_RETRY) as manager:
        yield manager


# -- transport selection ----------------------------------------------------------------------


async def test_aiohttp_installed_means_the_aiohttp_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XCOMM_HTTP_TRANSPORT", raising=False)
    async with CommManager() as comm:
        assert isinstance(comm.transport, AiohttpTransport)


async def test_without_aiohttp_the_httpx_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XCOMM_HTTP_TRANSPORT", raising=False)
    monkeypatch.setitem(sys.modules, "aiohttp", None)  # `import aiohttp` fails
    async with CommManager() as comm:
        assert isinstance(comm.transport, httpx.AsyncHTTPTransport)


async def test_forced_by_argument_or_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    async with CommManager(transport="httpx") as comm:
        assert isinstance(comm.transport, httpx.AsyncHTTPTransport)
    monkeypatch.setenv("XCOMM_HTTP_TRANSPORT", "httpx")
    async with CommManager() as comm:
        assert isinstance(comm.transport, httpx.AsyncHTTPTransport)
    async with CommManager(transport="aiohttp") as comm:  # the argument wins
        assert isinstance(comm.transport, AiohttpTransport)


async def test_a_given_transport_is_used_as_is_and_shared_with_comm_http() -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json={"id": "x"}))
    async with CommManager(transport=transport) as comm:
        assert comm.transport is transport
        assert (await comm.http.get("https://example.com/")).json() == {"id": "x"}


def test_bad_choices_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigurationError, match="'aiohttp', 'httpx'"):
        CommManager(transport="requests")  # type: ignore[arg-type]
    monkeypatch.setenv("XCOMM_HTTP_TRANSPORT", "curl")
    with pytest.raises(ConfigurationError, match="XCOMM_HTTP_TRANSPORT"):
        CommManager()


async def test_the_built_in_pools_get_the_managers_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    from xcomm import Limits

    async with CommManager(transport="aiohttp", limits=Limits(max_connections=7)) as comm:
        assert "max_connections=7" in repr(comm.transport)


# -- what the client used to add, on both pools --------------------------------------------------


async def test_default_headers_and_no_cookies(comm: CommManager, server: Server) -> None:
    hook = comm.webhook(server.url("/ok"), headers={"X-Env": "prod"})
    first = await hook.send({"n": 1})
    await hook.send({"n": 2}, headers={"X-Extra": "1"})
    assert first.message_id == "m-1"
    (_, one), (_, two) = server.seen
    for headers in (one, two):
        assert headers["user-agent"].startswith("xcomm/")
        assert headers["accept-encoding"]
        assert headers["content-type"] == "application/json"
        assert headers["x-env"] == "prod"
        assert headers["host"] == server.url("/").split("/")[2]
        assert "cookie" not in headers  # the Set-Cookie of the first reply is not replayed
    assert "x-extra" not in one
    assert two["x-extra"] == "1"


async def test_redirects_are_not_followed(comm: CommManager, server: Server) -> None:
    with pytest.raises(ProviderError) as info:
        await comm.webhook(server.url("/redirect")).send({})
    assert info.value.status == 302
    assert [name for name, _ in server.seen] == ["redirect"]


@pytest.mark.parametrize(
    ("path", "error"),
    [("limited", RateLimitError), ("auth", AuthenticationError), ("down", ServiceUnavailable)],
)
async def test_statuses_are_mapped(
    comm: CommManager, server: Server, path: str, error: type[ProviderError]
) -> None:
    with pytest.raises(error) as info:
        await comm.webhook(server.url(f"/{path}")).send({})
    if path == "limited":
        assert info.value.retry_after == 7.0


async def test_a_read_timeout_is_delivery_unknown(comm: CommManager, server: Server) -> None:
    hook = comm.webhook(server.url("/slow"), timeout=Timeout(read=0.2))
    with pytest.raises(ResponseTimeout):
        await hook.send({})


async def test_a_refused_connection_is_not_sent(comm: CommManager) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ConnectError):
        await comm.webhook(f"http://127.0.0.1:{port}/hook").send({})


# -- through respx (the transport seam tests use) ------------------------------------------------


async def test_the_timeout_extension_is_set_per_request(router: respx.MockRouter) -> None:
    route = router.post("https://hooks.example.com/h").respond(200, json={})
    async with CommManager(
        transport=httpx.MockTransport(router.async_handler),
        timeout=Timeout(connect=1.0, read=2.0, write=3.0, pool=4.0),
    ) as comm:
        hook = comm.webhook("https://hooks.example.com/h")
        await hook.send({})
        await hook.send({}, timeout=9.0)
    first, second = (call.request for call in route.calls)
    assert first.extensions["timeout"] == {"connect": 1.0, "read": 2.0, "write": 3.0, "pool": 4.0}
    assert second.extensions["timeout"]["read"] == 9.0
    assert first.headers["user-agent"].startswith("xcomm/")
    assert first.headers["content-length"] == "2"


async def test_a_transport_error_from_respx_is_mapped(router: respx.MockRouter) -> None:
    router.post("https://hooks.example.com/h").mock(side_effect=httpx.ConnectError("refused"))
    async with CommManager(
        transport=httpx.MockTransport(router.async_handler), retry=NO_RETRY
    ) as comm:
        with pytest.raises(ConnectError):
            await comm.webhook("https://hooks.example.com/h").send({})
