"""The embedding examples in docs/examples, driven in-process against real SMTP servers.

The servers are the session fixtures of tests/integration/conftest.py: `smtpd("plain")`
(aiosmtpd, refuses `nosuch@` with 550) and `smtp_sink(...)` (Postfix smtp-sink, used here to
throttle every MAIL with a 454).
"""

from __future__ import annotations

import email
import email.policy
import importlib.util
import sys
from collections.abc import Callable
from email.message import EmailMessage as MIMEMessage
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
from aiohttp.test_utils import TestClient, TestServer

from xcomm import RetryPolicy

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"
NO_RETRY = RetryPolicy(max_attempts=1)
THROTTLE = ("-r", "MAIL", "-b", "454 4.7.0 Too many messages, try again in 42 seconds")

Smtpd = Callable[[str], Any]  # the `smtpd` fixture: profile name -> conftest.SMTPServer
SmtpSink = Callable[..., Any]  # the `smtp_sink` fixture: options -> conftest.Sink


def load_example(name: str) -> ModuleType:
    """Import docs/examples/<name>.py under a private module name."""
    module_name = f"_xcomm_example_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # pydantic resolves the models' annotations through it
    spec.loader.exec_module(module)
    return module


fastapi_app = load_example("fastapi_app")
aiohttp_app = load_example("aiohttp_app")


def parsed(server: Any) -> list[MIMEMessage]:
    """What the aiosmtpd server received, parsed."""
    out = []
    for delivery in server.recorder.messages:
        msg = email.message_from_bytes(delivery.content, policy=email.policy.default)
        assert isinstance(msg, MIMEMessage)
        out.append(msg)
    return out


NOTE = {"to": "Ada <ada@example.com>", "subject": "Build finished", "body": "All green."}
BAD = {"to": "ada at example dot com", "subject": "x", "body": "y"}


# -- FastAPI ---------------------------------------------------------------------------------


def fastapi_client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app")


async def test_fastapi_notify_sends_through_one_manager(smtpd: Smtpd) -> None:
    server = smtpd("plain")
    app = fastapi_app.create_app(server.host, server.port, sender="app@example.com")
    async with app.router.lifespan_context(app):
        comm, smtp = app.state.comm, app.state.smtp
        assert comm.is_open
        async with fastapi_client(app) as client:
            first = await client.post("/notify", json=NOTE)
            second = await client.post("/notify", json={**NOTE, "subject": "Again"})
        assert smtp.statistics().connections_opened == 1  # both requests shared the pool

    assert first.status_code == 200, first.text
    assert first.json()["accepted"] == ["ada@example.com"]
    assert second.status_code == 200, second.text
    messages = parsed(server)
    assert [m["subject"] for m in messages] == ["Build finished", "Again"]
    delivery = server.recorder.messages[0]
    assert (delivery.mail_from, delivery.rcpt_tos) == ("app@example.com", ["ada@example.com"])
    assert messages[0]["message-id"] == first.json()["message_id"]
    assert messages[0]["to"].addresses[0].display_name == "Ada"
    assert messages[0].get_content().strip() == "All green."
    assert not comm.is_open  # the lifespan closed the manager and its pool
    assert smtp.closed


async def test_fastapi_bad_address_is_422_and_nothing_is_sent(smtpd: Smtpd) -> None:
    server = smtpd("plain")
    app = fastapi_app.create_app(server.host, server.port, sender="app@example.com")
    async with app.router.lifespan_context(app), fastapi_client(app) as client:
        response = await client.post("/notify", json=BAD)
        missing = await client.post("/notify", json={"to": "ada@example.com"})
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "ValidationError"
    assert "ada at example dot com" in body["detail"]
    assert missing.status_code == 422  # pydantic's own validation of the body
    assert server.recorder.messages == []
    assert server.recorder.transactions == 0  # not even a MAIL FROM


async def test_fastapi_rejected_recipient_is_422(smtpd: Smtpd) -> None:
    server = smtpd("plain")
    app = fastapi_app.create_app(server.host, server.port, sender="app@example.com")
    async with app.router.lifespan_context(app), fastapi_client(app) as client:
        response = await client.post("/notify", json={**NOTE, "to": "nosuch@example.com"})
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "RecipientRejected"
    assert body["rejected"][0]["address"] == "nosuch@example.com"
    assert body["rejected"][0]["code"] == 550
    assert server.recorder.messages == []


async def test_fastapi_throttled_is_429_with_retry_after(smtp_sink: SmtpSink) -> None:
    sink = smtp_sink(*THROTTLE)
    app = fastapi_app.create_app(
        "127.0.0.1", sink.port, sender="app@example.com", start_tls=False, retry=NO_RETRY
    )
    async with app.router.lifespan_context(app), fastapi_client(app) as client:
        response = await client.post("/notify", json=NOTE)
    assert response.status_code == 429, response.text
    assert response.headers["retry-after"] == "42"
    assert response.json()["error"] == "RateLimitError"


async def test_fastapi_unreachable_server_is_503(closed_port: int) -> None:
    app = fastapi_app.create_app("127.0.0.1", closed_port, sender="app@example.com", retry=NO_RETRY)
    async with app.router.lifespan_context(app), fastapi_client(app) as client:
        response = await client.post("/notify", json=NOTE)
    assert response.status_code == 503
    assert response.json()["error"] == "ConnectError"


# -- aiohttp ---------------------------------------------------------------------------------


async def test_aiohttp_notify_sends_through_one_manager(smtpd: Smtpd) -> None:
    server = smtpd("plain")
    app = aiohttp_app.create_app(server.host, server.port, sender="app@example.com")
    async with TestClient(TestServer(app)) as client:
        comm = app[aiohttp_app.COMM]
        assert comm.is_open
        response = await client.post("/notify", json=NOTE)
        assert response.status == 200, await response.text()
        body = await response.json()
        bad = await client.post("/notify", json=BAD)
        assert bad.status == 422
        bad_body = await bad.json()

    assert body["accepted"] == ["ada@example.com"]
    messages = parsed(server)
    assert len(messages) == 1  # the bad address sent nothing
    assert messages[0]["message-id"] == body["message_id"]
    assert messages[0]["subject"] == "Build finished"
    assert bad_body["error"] == "ValidationError"
    assert "ada at example dot com" in bad_body["detail"]
    assert not comm.is_open  # the cleanup context closed the manager and its pool
    assert app[aiohttp_app.SMTP].closed


async def test_aiohttp_maps_errors(smtpd: Smtpd, smtp_sink: SmtpSink, closed_port: int) -> None:
    server = smtpd("plain")
    app = aiohttp_app.create_app(server.host, server.port, sender="app@example.com")
    async with TestClient(TestServer(app)) as client:
        rejected = await client.post("/notify", json={**NOTE, "to": "nosuch@example.com"})
        assert rejected.status == 422
        assert (await rejected.json())["rejected"][0]["code"] == 550
        not_json = await client.post("/notify", data=b"{")
        assert not_json.status == 400
        missing = await client.post("/notify", json={"to": "ada@example.com"})
        assert missing.status == 422
        assert "required" in (await missing.json())["detail"]
    assert server.recorder.messages == []

    throttling = smtp_sink(*THROTTLE)
    for port, status in ((throttling.port, 429), (closed_port, 503)):
        app = aiohttp_app.create_app(
            "127.0.0.1", port, sender="app@example.com", start_tls=False, retry=NO_RETRY
        )
        async with TestClient(TestServer(app)) as client:
            response = await client.post("/notify", json=NOTE)
            assert response.status == status, await response.text()
            if status == 429:
                assert response.headers["Retry-After"] == "42"
