"""CommManager lifecycle: open once, idempotent close, unwinding, no leaks, factories."""

from __future__ import annotations

import asyncio
import gc
import subprocess
import sys

import httpx
import pytest
import respx

from xcomm import (
    CommManager,
    ConfigurationError,
    LifecycleError,
    Limits,
    RateLimit,
    RetryPolicy,
    Timeout,
)


async def test_open_twice_is_an_error() -> None:
    comm = CommManager()
    async with comm:
        with pytest.raises(LifecycleError, match="only once"):
            await comm.open()
    with pytest.raises(LifecycleError, match="only once"):
        async with comm:
            pass


async def test_close_is_idempotent_and_closes_the_shared_client() -> None:
    comm = await CommManager().open()
    client = comm.http
    assert comm.is_open
    await comm.aclose()
    await comm.aclose()
    assert not comm.is_open
    assert client.is_closed
    with pytest.raises(LifecycleError, match="closed"):
        _ = comm.http


async def test_close_without_open_is_fine() -> None:
    comm = CommManager()
    await comm.aclose()
    with pytest.raises(LifecycleError):
        await comm.open()


async def test_factories_need_an_open_manager() -> None:
    comm = CommManager()
    with pytest.raises(LifecycleError, match="async with CommManager"):
        comm.webhook("https://example.com/hook")
    with pytest.raises(LifecycleError):
        comm.smtp("localhost")


class _ExplodingTransport(httpx.AsyncBaseTransport):
    closed = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        raise AssertionError("not used")

    async def aclose(self) -> None:
        self.closed = True


async def test_failure_while_opening_unwinds(monkeypatch: pytest.MonkeyPatch) -> None:
    comm = CommManager(transport=_ExplodingTransport())

    def boom(self: object, *args: object) -> None:
        raise RuntimeError("push failed")

    monkeypatch.setattr("contextlib.AsyncExitStack.push_async_callback", boom)
    with pytest.raises(RuntimeError, match="push failed"):
        await comm.open()
    monkeypatch.undo()
    assert not comm.is_open
    with pytest.raises(LifecycleError):
        _ = comm.http


async def test_the_http_pool_is_made_at_first_use_and_closed_with_the_manager() -> None:
    transport = _ExplodingTransport()
    async with CommManager(transport=transport) as comm:
        comm.smtp("localhost")  # no HTTP: the pool is not made
        await comm.outbox()
    assert not transport.closed
    async with CommManager(transport=transport) as comm:
        assert comm.transport is transport
        assert comm.http is comm.http
        hook = comm.webhook("https://example.com/hook")
    assert transport.closed
    with pytest.raises(LifecycleError, match="closed"):
        _ = comm.transport
    with pytest.raises(LifecycleError, match="webhook provider is closed"):
        await hook.send({})


def test_a_program_that_only_speaks_smtp_never_imports_httpx() -> None:
    code = """
import asyncio, sys
from xcomm import CommManager

async def main() -> None:
    async with CommManager(outbox="memory://") as comm:
        comm.smtp("localhost", sender="news@example.com")
        await comm.outbox()
    print(sorted(m for m in sys.modules if m.startswith("httpx")))

asyncio.run(main())
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


async def test_the_transport_seam_carries_every_request(router: respx.MockRouter) -> None:
    seen: list[str] = []

    class Recording(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            seen.append(request.url.host)
            return httpx.Response(200)

    async with CommManager(transport=Recording()) as comm:
        await comm.webhook("https://a.example.com/x").send({})
        await comm.webhook("https://b.example.com/y").send({})
    assert seen == ["a.example.com", "b.example.com"]


async def test_no_connection_or_task_outlives_the_manager() -> None:
    """Real sockets to a real local HTTP server: after close, nothing is left open."""
    requests = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal requests
        while await reader.readuntil(b"\r\n\r\n"):
            requests += 1
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            await writer.drain()
            if reader.at_eof():
                break
        writer.close()

    async def safe_handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await handle(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(safe_handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    before = asyncio.all_tasks()
    async with CommManager() as comm:
        hook = comm.webhook(f"http://127.0.0.1:{port}/hook")
        await asyncio.gather(*(hook.send({"i": i}) for i in range(20)))
    server.close()
    await server.wait_closed()
    for _ in range(5):
        await asyncio.sleep(0)
    gc.collect()  # a leaked socket would raise ResourceWarning (an error under our pytest config)
    assert requests == 20
    assert all(t.done() for t in asyncio.all_tasks() - before - {asyncio.current_task()})


@pytest.mark.parametrize(
    "kwargs",
    [
        {"timeout": -1},
        {"timeout": "10"},
        {"limits": {"max_connections": 5}},
        {"retry": 3},
        {"rate_limits": {"smtp": -5}},
        {"rate_limits": {"smtp": "fast"}},
        {"transport": object()},
    ],
)
def test_bad_constructor_options_are_configuration_errors(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError):
        CommManager(**kwargs)  # type: ignore[arg-type]


def test_settings_values_validate_themselves() -> None:
    with pytest.raises(ConfigurationError, match="rate"):
        RateLimit(rate=0)
    with pytest.raises(ConfigurationError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ConfigurationError, match="max_connections"):
        Limits(max_connections=0)
    with pytest.raises(ConfigurationError, match="connect"):
        Timeout(connect=-1)
    assert Timeout.coerce(5) == Timeout(connect=5.0, read=5.0, write=5.0, pool=5.0)
    assert RateLimit.coerce(120) == RateLimit(rate=120, per=60.0)
    assert RateLimit(rate=10).capacity == 10
    assert RateLimit(rate=100, per=60, burst=5).per_second == pytest.approx(100 / 60)


async def test_email_factory_dispatches_and_rejects_unknown(comm: CommManager) -> None:
    with pytest.raises(ConfigurationError, match=r"unknown email provider 'carrier-pigeon'.*smtp"):
        comm.email("carrier-pigeon")
    with pytest.raises(ConfigurationError, match="bad settings"):
        comm.email("smtp", hostname="x")
    smtp = comm.email("smtp", host="127.0.0.1", port=2525)
    assert smtp.name == "smtp"


async def test_rate_limits_compose_account_provider_and_global() -> None:
    async with CommManager(
        rate_limits={"global": RateLimit(rate=1000), "smtp": RateLimit(rate=100)}
    ) as comm:
        comm.smtp("127.0.0.1", 2525, rate_limit=RateLimit(rate=10))
        keys = set(comm.limiters.keys())
    assert {"global", "smtp", "smtp:@127.0.0.1:2525"} <= keys


def test_the_aiohttp_transport_without_aiohttp_is_refused_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("xcomm._manager._have_aiohttp", lambda: False)
    with pytest.raises(ConfigurationError, match=r"pip install 'xcomm\[fast\]'"):
        CommManager(transport="aiohttp")
    monkeypatch.setenv("XCOMM_HTTP_TRANSPORT", "aiohttp")
    with pytest.raises(ConfigurationError, match="needs aiohttp"):
        CommManager()
    CommManager(transport="httpx")  # the other one is fine
