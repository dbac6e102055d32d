"""SMTPProvider against real aiosmtpd servers: TLS, AUTH, recipients, pooling, SMTPUTF8."""

from __future__ import annotations

import asyncio
import email
import email.policy
import logging
import ssl
import time
from collections.abc import Callable
from typing import Any

import pytest

from xcomm import (
    Address,
    AuthenticationError,
    CommManager,
    ConfigurationError,
    DeliveryUnknown,
    EmailMessage,
    LifecycleError,
    MessageError,
    PoolStatistics,
    PoolTimeout,
    RecipientRejected,
    RequestNotSent,
    ResponseTimeout,
    RetryPolicy,
    Timeout,
)
from xcomm.testing._clock import FakeClock

Smtpd = Callable[[str], Any]  # the `smtpd` fixture: profile name -> conftest.SMTPServer
FAST_RETRY = RetryPolicy(max_attempts=3, backoff=0.01, max_backoff=0.01, jitter=False)
TEST_TIMEOUT = Timeout(connect=2.0, read=2.0, write=2.0, pool=2.0)


def message(*to: str, subject: str = "Hello", sender: str = "sender@example.com") -> EmailMessage:
    return EmailMessage(
        sender=Address.parse(sender),
        to=tuple(Address.parse(a) for a in to),
        subject=subject,
        text="Hello from the xcomm test suite.\n.\nA line with a lone dot above.\n",
    )


async def eventually(condition: Callable[[], bool], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def parsed(content: bytes) -> email.message.EmailMessage:
    msg = email.message_from_string(content.decode("utf-8"), policy=email.policy.default)
    assert isinstance(msg, email.message.EmailMessage)
    return msg


# -- TLS and AUTH ------------------------------------------------------------------------------


@pytest.mark.parametrize("profile", ["starttls-auth", "starttls-login-only"])
async def test_starttls_required_and_password_login(
    manager: CommManager, smtpd: Smtpd, client_tls: ssl.SSLContext, profile: str
) -> None:
    server = smtpd(profile)
    smtp = manager.smtp(
        server.host,
        server.port,
        start_tls=True,
        tls_context=client_tls,
        username=server.user,
        password=server.password,
    )
    result = await smtp.send(message("bob@example.org"))

    assert result.ok and result.status == 250 and result.attempts == 1
    (delivery,) = server.recorder.messages
    assert delivery.tls and delivery.login == server.user.encode()
    assert delivery.rcpt_tos == ["bob@example.org"]
    expected = "LOGIN" if profile == "starttls-login-only" else "PLAIN"
    assert server.recorder.auth_attempts == [expected]
    assert parsed(delivery.content)["Message-ID"] == result.message_id


async def test_wrong_password_is_an_authentication_error_without_retry(
    manager: CommManager, smtpd: Smtpd, client_tls: ssl.SSLContext, caplog: pytest.LogCaptureFixture
) -> None:
    server = smtpd("starttls-auth")
    smtp = manager.smtp(
        server.host, server.port, tls_context=client_tls, username=server.user, password="wrong!"
    )
    caplog.set_level(logging.DEBUG, logger="xcomm")
    with pytest.raises(AuthenticationError) as info:
        await smtp.send(message("bob@example.org"))

    assert info.value.status == 535 and not info.value.transient
    assert server.recorder.transactions == 0
    # Each offered mechanism is tried once (PLAIN, then LOGIN); the policy never retries.
    assert server.recorder.auth_attempts == ["PLAIN", "LOGIN"]
    assert "wrong!" not in str(info.value) + repr(info.value) + caplog.text
    assert "wrong!" not in repr(smtp)


@pytest.mark.parametrize("as_callable", [False, True])
async def test_xoauth2_good_token(
    manager: CommManager, smtpd: Smtpd, client_tls: ssl.SSLContext, as_callable: bool
) -> None:
    server = smtpd("starttls-auth")

    async def token() -> str:
        return server.good_token

    smtp = manager.smtp(
        server.host,
        server.port,
        tls_context=client_tls,
        username=server.user,
        oauth_token=token if as_callable else server.good_token,
    )
    await smtp.send(message("bob@example.org"))

    assert server.recorder.auth_attempts == ["XOAUTH2"]
    assert server.recorder.messages[0].login == server.user.encode()


async def test_xoauth2_bad_token(
    manager: CommManager, smtpd: Smtpd, client_tls: ssl.SSLContext, caplog: pytest.LogCaptureFixture
) -> None:
    server = smtpd("starttls-auth")
    caplog.set_level(logging.DEBUG)
    smtp = manager.smtp(
        server.host,
        server.port,
        tls_context=client_tls,
        username=server.user,
        oauth_token="expired-token-7f3a9",
    )
    with pytest.raises(AuthenticationError) as info:
        await smtp.send(message("bob@example.org"))
    assert info.value.status == 535 and not info.value.transient
    assert server.recorder.auth_attempts == ["XOAUTH2"] and not server.recorder.messages
    assert "7f3a9" not in str(info.value) + caplog.text + repr(smtp)


async def test_certificates_are_verified_by_default(manager: CommManager, smtpd: Smtpd) -> None:
    server = smtpd("starttls-auth")
    smtp = manager.smtp(server.host, server.port, username=server.user, password=server.password)
    with pytest.raises(ConfigurationError, match="certificate verification failed"):
        await smtp.send(message("bob@example.org"))
    assert server.recorder.auth_attempts == [] and server.recorder.transactions == 0


async def test_validate_certs_false_accepts_an_unknown_ca(
    manager: CommManager, smtpd: Smtpd
) -> None:
    server = smtpd("starttls-auth")
    smtp = manager.smtp(
        server.host,
        server.port,
        validate_certs=False,
        username=server.user,
        password=server.password,
    )
    await smtp.send(message("bob@example.org"))
    assert server.recorder.messages[0].tls


@pytest.fixture
def contexts_made(monkeypatch: pytest.MonkeyPatch) -> list[ssl.SSLContext]:
    """Every TLS context `ssl.create_default_context()` makes during the test."""
    made: list[ssl.SSLContext] = []
    original = ssl.create_default_context

    def counted(*args: Any, **kwargs: Any) -> ssl.SSLContext:
        made.append(original(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(ssl, "create_default_context", counted)
    return made


async def test_concurrent_opens_load_the_ca_certificates_once(
    manager: CommManager, smtpd: Smtpd, contexts_made: list[ssl.SSLContext]
) -> None:
    # Loading the system's CA certificates holds the GIL for tens of milliseconds: a pool
    # opening its connections together must not load them once per connection.
    server = smtpd("starttls-auth")
    smtp = manager.smtp(
        server.host,
        server.port,
        validate_certs=False,
        username=server.user,
        password=server.password,
        pool_size=4,
    )
    await asyncio.gather(*(smtp.send(message(f"user{i}@example.org")) for i in range(8)))
    assert len(contexts_made) == 1
    assert server.recorder.connections > 1
    assert len(server.recorder.messages) == 8 and all(m.tls for m in server.recorder.messages)


async def test_a_server_without_starttls_needs_no_tls_context(
    manager: CommManager, smtpd: Smtpd, contexts_made: list[ssl.SSLContext]
) -> None:
    server = smtpd("plain")
    smtp = manager.smtp(server.host, server.port, pool_size=2)
    await asyncio.gather(*(smtp.send(message(f"user{i}@example.org")) for i in range(4)))
    assert contexts_made == [] and len(server.recorder.messages) == 4


async def test_required_starttls_missing_sends_nothing_in_plaintext(
    manager: CommManager, smtpd: Smtpd
) -> None:
    server = smtpd("plain")
    smtp = manager.smtp(server.host, server.port, start_tls=True)
    with pytest.raises(ConfigurationError, match="does not offer STARTTLS"):
        await smtp.send(message("bob@example.org"))
    assert server.recorder.transactions == 0
    assert server.recorder.connections == 1  # one try: a configuration error is not retried


async def test_credentials_over_plaintext_to_loopback_are_allowed(
    manager: CommManager, smtpd: Smtpd
) -> None:
    server = smtpd("plain-auth")
    for host in ("127.0.0.1", "localhost"):
        smtp = manager.smtp(host, server.port, username=server.user, password=server.password)
        await smtp.send(message("bob@example.org"))
    assert [m.login for m in server.recorder.messages] == [server.user.encode()] * 2


async def test_credentials_over_plaintext_to_another_host_are_refused(
    manager: CommManager, smtpd: Smtpd, public_address: str
) -> None:
    server = smtpd("public-auth")  # listens on every interface and offers AUTH without TLS
    smtp = manager.smtp(public_address, server.port, username=server.user, password=server.password)
    with pytest.raises(ConfigurationError, match="without TLS"):
        await smtp.send(message("bob@example.org"))
    assert server.recorder.auth_attempts == [] and server.recorder.connections == 1

    trusting = manager.smtp(
        public_address,
        server.port,
        username=server.user,
        password=server.password,
        allow_plaintext_auth=True,
    )
    await trusting.send(message("bob@example.org"))
    assert server.recorder.auth_attempts == ["PLAIN"]


async def test_implicit_tls(manager: CommManager, smtpd: Smtpd, client_tls: ssl.SSLContext) -> None:
    server = smtpd("implicit-tls")
    smtp = manager.smtp(
        server.host,
        server.port,
        use_tls=True,
        tls_context=client_tls,
        username=server.user,
        password=server.password,
    )
    await smtp.send(message("bob@example.org"))
    assert server.recorder.messages[0].tls


# -- recipients --------------------------------------------------------------------------------


async def test_partial_recipients(manager: CommManager, smtpd: Smtpd) -> None:
    server = smtpd("plain")
    smtp = manager.smtp(server.host, server.port)
    result = await smtp.send(
        message("good@example.org", "tempfail@example.org", "nosuch@example.org")
    )

    assert result.accepted == ("good@example.org",)
    assert [(r.address, r.code, r.transient) for r in result.rejected] == [
        ("tempfail@example.org", 451, True),
        ("nosuch@example.org", 550, False),
    ]
    assert result.rejected[1].reason == "5.1.1 no such user"
    assert not result.ok and result.status == 250
    (delivery,) = server.recorder.messages
    assert delivery.rcpt_tos == ["good@example.org"]
    # The header still names everyone; only the envelope decides who receives it.
    assert "tempfail@example.org" in parsed(delivery.content)["To"]


async def test_all_refused_permanently_is_not_retried(manager: CommManager, smtpd: Smtpd) -> None:
    server = smtpd("plain")
    smtp = manager.smtp(server.host, server.port, pool_size=1)
    with pytest.raises(RecipientRejected) as info:
        await smtp.send(message("nosuch@example.org", "nosuch@example.net"))

    assert not info.value.transient and info.value.status == 550
    assert [r.address for r in info.value.rejected] == ["nosuch@example.org", "nosuch@example.net"]
    assert server.recorder.transactions == 1 and not server.recorder.messages

    # The transaction was reset (RSET), so the same connection carries the next message.
    await smtp.send(message("good@example.org"))
    assert server.recorder.connections == 1
    assert smtp.statistics().connections_opened == 1


async def test_all_refused_temporarily_is_retried(smtpd: Smtpd) -> None:
    server = smtpd("plain")
    retry = RetryPolicy(max_attempts=4, backoff=0.01, max_backoff=0.01, jitter=False)
    async with CommManager(retry=retry, timeout=TEST_TIMEOUT) as comm:
        smtp = comm.smtp(server.host, server.port)
        with pytest.raises(RecipientRejected) as info:
            await smtp.send(message("tempfail@example.org"))
    assert info.value.transient and info.value.rejected[0].code == 451
    assert server.recorder.transactions == 4


# -- pool --------------------------------------------------------------------------------------


async def test_pool_reuses_at_most_pool_size_connections(
    manager: CommManager, smtpd: Smtpd
) -> None:
    server = smtpd("plain")
    smtp = manager.smtp(server.host, server.port, pool_size=2)
    results = await asyncio.gather(
        *(smtp.send(message(f"user{i}@example.org", subject=f"#{i}")) for i in range(10))
    )

    assert all(r.ok for r in results) and len(server.recorder.messages) == 10
    assert server.recorder.connections <= 2
    stats = smtp.statistics()
    assert isinstance(stats, PoolStatistics)
    assert stats.connections_opened <= 2 and stats.messages_sent == 10
    assert stats.in_use == 0 and stats.waiting == 0 and stats.max_size == 2
    assert stats.idle == stats.size == stats.connections_opened


async def test_max_messages_per_connection(manager: CommManager, smtpd: Smtpd) -> None:
    server = smtpd("plain")
    smtp = manager.smtp(server.host, server.port, max_messages_per_connection=3)
    for i in range(7):
        await smtp.send(message(f"user{i}@example.org"))

    assert server.recorder.connections == 3  # 3 + 3 + 1
    stats = smtp.statistics()
    assert (stats.connections_opened, stats.connections_closed, stats.size) == (3, 2, 1)


async def test_idle_connections_expire_lazily(smtpd: Smtpd) -> None:
    server = smtpd("plain")
    clock = FakeClock()
    async with CommManager(clock=clock, retry=FAST_RETRY, timeout=TEST_TIMEOUT) as comm:
        smtp = comm.smtp(server.host, server.port, idle_timeout=30)
        await smtp.send(message("a@example.org"))
        await clock.advance(29)
        await smtp.send(message("b@example.org"))
        assert smtp.statistics().connections_opened == 1
        await clock.advance(31)
        assert smtp.statistics().idle == 1  # nothing runs in the background
        await smtp.send(message("c@example.org"))
        stats = smtp.statistics()
    assert (stats.connections_opened, stats.connections_closed) == (2, 1)
    assert server.recorder.connections == 2


async def test_a_dropped_idle_connection_is_retried_on_a_fresh_one(
    manager: CommManager, smtpd: Smtpd
) -> None:
    server = smtpd("plain-short-idle")  # the server hangs up after 0.2 s of silence
    smtp = manager.smtp(server.host, server.port)
    await smtp.send(message("a@example.org"))
    # Block the event loop (no await) so the client has not yet seen the server's EOF when the
    # next send takes the idle connection: the drop is discovered at MAIL FROM.
    time.sleep(0.4)  # noqa: ASYNC251
    result = await smtp.send(message("b@example.org"))

    assert result.attempts == 2
    assert len(server.recorder.messages) == 2 and server.recorder.connections == 2


async def test_pool_timeout(manager: CommManager, smtpd: Smtpd) -> None:
    server = smtpd("plain")
    server.recorder.data_delay = 0.5
    smtp = manager.smtp(
        server.host,
        server.port,
        pool_size=1,
        timeout=Timeout(connect=2, read=2, pool=0.05),
        retry=RetryPolicy.none(),
    )
    slow = asyncio.create_task(smtp.send(message("a@example.org")))
    try:
        await eventually(lambda: server.recorder.data_started == 1)
        assert smtp.statistics().in_use == 1
        with pytest.raises(PoolTimeout):
            await smtp.send(message("b@example.org"))
        assert smtp.statistics().waiting == 0
    finally:
        assert (await slow).ok


async def test_cancelled_send_does_not_leak_its_connection(
    manager: CommManager, smtpd: Smtpd
) -> None:
    server = smtpd("plain")
    server.recorder.data_delay = 0.5
    smtp = manager.smtp(server.host, server.port, pool_size=1)
    task = asyncio.create_task(smtp.send(message("a@example.org")))
    await eventually(lambda: server.recorder.data_started == 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    stats = smtp.statistics()
    assert (stats.in_use, stats.idle, stats.connections_closed) == (0, 0, 1)  # discarded
    server.recorder.data_delay = 0
    assert (await smtp.send(message("b@example.org"))).ok


async def test_send_timeout_after_the_body_is_delivery_unknown(
    manager: CommManager, smtpd: Smtpd
) -> None:
    server = smtpd("plain")
    server.recorder.data_delay = 0.5
    smtp = manager.smtp(server.host, server.port)
    with pytest.raises(ResponseTimeout) as info:
        await smtp.send(message("a@example.org"), timeout=0.2)
    assert isinstance(info.value, DeliveryUnknown) and isinstance(info.value, TimeoutError)
    assert smtp.statistics().size == 0  # the connection's state was unknown: discarded


async def test_send_timeout_before_the_body_is_request_not_sent(
    manager: CommManager, smtpd: Smtpd
) -> None:
    server = smtpd("plain")
    server.recorder.rcpt_delay = 0.5
    smtp = manager.smtp(server.host, server.port)
    with pytest.raises(RequestNotSent, match="before the message was sent"):
        await smtp.send(message("a@example.org"), timeout=0.2)
    assert not server.recorder.messages


async def test_statistics_and_close(manager: CommManager, smtpd: Smtpd) -> None:
    server = smtpd("plain")
    smtp = manager.smtp(server.host, server.port, pool_size=3)
    await asyncio.gather(*(smtp.send(message(f"u{i}@example.org")) for i in range(3)))
    before = smtp.statistics()
    assert before.size == before.idle == before.connections_opened

    await smtp.aclose()
    await smtp.aclose()  # idempotent
    after = smtp.statistics()
    assert (after.size, after.idle, after.in_use) == (0, 0, 0)
    assert after.connections_closed == after.connections_opened
    with pytest.raises(LifecycleError):
        await smtp.send(message("late@example.org"))


async def test_manager_closes_the_pool(smtpd: Smtpd) -> None:
    server = smtpd("plain")
    async with CommManager(retry=FAST_RETRY, timeout=TEST_TIMEOUT) as comm:
        smtp = comm.smtp(server.host, server.port)
        draft = smtp.compose().from_("x@example.com").to("a@example.org").subject("Hi")
        result = await draft.body("Hello").send()
        assert result.ok
    assert smtp.closed and smtp.statistics().size == 0
    assert server.recorder.messages[0].mail_from == "x@example.com"


# -- size and SMTPUTF8 -------------------------------------------------------------------------


async def test_max_message_size_comes_from_ehlo_size(manager: CommManager, smtpd: Smtpd) -> None:
    server = smtpd("plain-small")  # SIZE 4000
    smtp = manager.smtp(server.host, server.port)
    await smtp.send(message("a@example.org"))
    assert smtp.max_message_size == 4000
    assert any(o.startswith("SIZE=") for o in server.recorder.messages[0].mail_options)

    big = EmailMessage(
        sender=Address.parse("s@example.com"), to=(Address.parse("a@example.org"),), text="x" * 5000
    )
    with pytest.raises(MessageError, match="4000"):
        await smtp.send(big)
    assert server.recorder.transactions == 1


async def test_smtputf8_for_a_non_ascii_local_part(manager: CommManager, smtpd: Smtpd) -> None:
    server = smtpd("plain")
    smtp = manager.smtp(server.host, server.port)
    result = await smtp.send(message("jörg@example.org", subject="Grüße", sender="zoë@example.com"))

    (delivery,) = server.recorder.messages
    assert delivery.rcpt_tos == ["jörg@example.org"] and delivery.mail_from == "zoë@example.com"
    assert "SMTPUTF8" in delivery.mail_options
    received = parsed(delivery.content)
    assert received["Subject"] == "Grüße" and received["To"].addresses[0].username == "jörg"
    assert received["Message-ID"] == result.message_id


async def test_unicode_domain_goes_out_as_idna_without_smtputf8(
    manager: CommManager, smtpd: Smtpd
) -> None:
    server = smtpd("plain-no-utf8")
    smtp = manager.smtp(server.host, server.port)
    await smtp.send(message("user@bücher.example"))
    assert server.recorder.messages[0].rcpt_tos == ["user@xn--bcher-kva.example"]


async def test_non_ascii_local_part_needs_a_server_with_smtputf8(
    manager: CommManager, smtpd: Smtpd
) -> None:
    server = smtpd("plain-no-utf8")
    smtp = manager.smtp(server.host, server.port)
    with pytest.raises(MessageError, match="SMTPUTF8") as info:
        await smtp.send(message("jörg@example.org"))
    assert not info.value.transient
    assert server.recorder.transactions == 0
    assert smtp.statistics().idle == 1  # nothing went wrong with the connection itself
