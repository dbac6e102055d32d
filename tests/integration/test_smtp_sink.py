"""SMTPProvider against Postfix's smtp-sink: throughput and injected SMTP faults.

Each fault profile is its own smtp-sink process (see `conftest.smtp_sink`). Attempts are
counted from the retry loop's DEBUG log ("attempt N failed ...; retrying"), which is what a
user sees too.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from xcomm import (
    Address,
    CommManager,
    ConnectError,
    ConnectionLost,
    DeliveryUnknown,
    EmailMessage,
    MessageError,
    RecipientRejected,
    RequestNotSent,
    ResponseTimeout,
    RetryPolicy,
    ServiceUnavailable,
    Timeout,
)
from xcomm.email._wire import SMTPConnection

pytestmark = pytest.mark.service("smtp-sink")

Sinks = Callable[..., Any]  # conftest.smtp_sink / fresh_sink: options -> conftest.Sink
ATTEMPTS = 3
RETRY = RetryPolicy(max_attempts=ATTEMPTS, backoff=0.01, max_backoff=0.01, jitter=False)
TIMEOUT = Timeout(connect=2.0, read=2.0, write=2.0, pool=2.0)


def message(i: int = 0, *to: str) -> EmailMessage:
    return EmailMessage(
        sender=Address.parse("sender@example.com"),
        to=tuple(Address.parse(a) for a in (to or (f"user{i}@example.org",))),
        subject=f"message {i}",
        text=f"body of message {i}\n",
    )


@pytest.fixture
async def comm() -> AsyncIterator[CommManager]:
    async with CommManager(retry=RETRY, timeout=TIMEOUT) as manager:
        yield manager


@pytest.fixture
def retries(caplog: pytest.LogCaptureFixture) -> Callable[[], int]:
    """How many times the retry loop decided to try again so far."""
    caplog.set_level(logging.DEBUG, logger="xcomm.retry")

    def count() -> int:
        return sum("retrying" in r.getMessage() for r in caplog.records if r.name == "xcomm.retry")

    return count


async def test_many_messages_over_a_small_pool(comm: CommManager, fresh_sink: Sinks) -> None:
    sink = fresh_sink(dump=True)
    smtp = comm.smtp("127.0.0.1", sink.port, pool_size=4)
    results = await asyncio.gather(*(smtp.send(message(i)) for i in range(60)))

    assert all(r.ok and r.status == 250 and r.attempts == 1 for r in results)
    assert len({r.message_id for r in results}) == 60
    stats = smtp.statistics()
    assert stats.messages_sent == 60 and stats.connections_opened <= 4
    await smtp.aclose()
    assert len(sink.dumped()) == 60
    dumped = sink.dumped()[0].read_text()
    assert "X-Mail-Args: <sender@example.com>" in dumped


async def test_pipelined_transactions_all_arrive(
    comm: CommManager, fresh_sink: Sinks, monkeypatch: pytest.MonkeyPatch
) -> None:
    # smtp-sink offers PIPELINING: each envelope (MAIL, every RCPT, DATA) is one write.
    envelopes: list[bytes] = []
    write = SMTPConnection.write

    def spy(self: SMTPConnection, data: bytes) -> None:
        if data.startswith(b"MAIL "):
            envelopes.append(data)
        write(self, data)

    monkeypatch.setattr(SMTPConnection, "write", spy)
    sink = fresh_sink(dump=True)
    smtp = comm.smtp("127.0.0.1", sink.port, pool_size=3)
    to = [[f"r{i}.{n}@example.org" for n in range(3)] for i in range(40)]
    results = await asyncio.gather(*(smtp.send(message(i, *to[i])) for i in range(40)))

    assert [r.accepted for r in results] == [tuple(rcpts) for rcpts in to]
    assert all(r.ok and r.status == 250 and r.attempts == 1 for r in results)
    assert len(envelopes) == 40
    assert all(e.count(b"RCPT TO:") == 3 and e.endswith(b"\r\nDATA\r\n") for e in envelopes)
    await smtp.aclose()
    dumped = [path.read_text() for path in sink.dumped()]
    assert len(dumped) == 40  # every message arrived, each with its three recipients
    arrived = sorted(
        sorted(
            line.split("<", 1)[1].rstrip(">")
            for line in text.splitlines()
            if line.startswith("X-Rcpt-Args: ")
        )
        for text in dumped
    )
    assert arrived == sorted(to)


async def test_soft_rcpt_rejection_is_retried_then_raised(
    comm: CommManager, smtp_sink: Sinks, retries: Callable[[], int]
) -> None:
    smtp = comm.smtp("127.0.0.1", smtp_sink("-r", "RCPT").port)
    with pytest.raises(RecipientRejected) as info:
        await smtp.send(message(0, "a@example.org", "b@example.org"))
    assert info.value.transient and info.value.status == 450
    assert [r.code for r in info.value.rejected] == [450, 450]
    assert retries() == ATTEMPTS - 1
    assert smtp.statistics().connections_opened == 1  # RSET kept the connection usable


async def test_hard_rcpt_rejection_is_not_retried(
    comm: CommManager, smtp_sink: Sinks, retries: Callable[[], int]
) -> None:
    smtp = comm.smtp("127.0.0.1", smtp_sink("-f", "RCPT").port)
    with pytest.raises(RecipientRejected) as info:
        await smtp.send(message())
    assert not info.value.transient and info.value.rejected[0].code == 500
    assert retries() == 0


async def test_sender_refused_for_policy_is_a_message_error(
    comm: CommManager, smtp_sink: Sinks, retries: Callable[[], int]
) -> None:
    smtp = comm.smtp("127.0.0.1", smtp_sink("-B", "554 5.7.1 Spam detected", "-f", "MAIL").port)
    with pytest.raises(MessageError) as info:
        await smtp.send(message())
    assert (info.value.status, info.value.error_code) == (554, "5.7.1")
    assert info.value.detail == "5.7.1 Spam detected" and not info.value.transient
    assert retries() == 0


async def test_soft_rejection_after_data_is_retried(
    comm: CommManager, smtp_sink: Sinks, retries: Callable[[], int]
) -> None:
    smtp = comm.smtp("127.0.0.1", smtp_sink("-r", ".").port)
    with pytest.raises(ServiceUnavailable) as info:
        await smtp.send(message())
    assert info.value.status == 450 and info.value.transient
    assert retries() == ATTEMPTS - 1


async def test_421_at_rcpt_discards_the_connection(
    comm: CommManager, smtp_sink: Sinks, retries: Callable[[], int]
) -> None:
    smtp = comm.smtp("127.0.0.1", smtp_sink("-Q", "RCPT").port)
    with pytest.raises(ServiceUnavailable) as info:
        await smtp.send(message())
    assert info.value.status == 421 and info.value.transient
    assert retries() == ATTEMPTS - 1
    stats = smtp.statistics()
    assert stats.size == 0 and stats.connections_opened == stats.connections_closed == ATTEMPTS


async def test_421_greeting(
    comm: CommManager, smtp_sink: Sinks, retries: Callable[[], int]
) -> None:
    smtp = comm.smtp("127.0.0.1", smtp_sink("-Q", "CONNECT").port)
    with pytest.raises(ServiceUnavailable) as info:
        await smtp.send(message())
    assert info.value.status == 421
    assert retries() == ATTEMPTS - 1


async def test_silent_disconnect_at_data_is_not_sent(
    comm: CommManager, smtp_sink: Sinks, retries: Callable[[], int]
) -> None:
    # smtp-sink hangs up on the DATA command itself, before its 354: the body never left.
    smtp = comm.smtp("127.0.0.1", smtp_sink("-q", "DATA").port)
    with pytest.raises(RequestNotSent, match="DATA"):
        await smtp.send(message())
    assert retries() == ATTEMPTS - 1


async def test_silent_disconnect_after_the_body_is_connection_lost(
    comm: CommManager, smtp_sink: Sinks, retries: Callable[[], int]
) -> None:
    smtp = comm.smtp("127.0.0.1", smtp_sink("-q", ".").port)
    with pytest.raises(ConnectionLost) as info:
        await smtp.send(message())
    assert isinstance(info.value, DeliveryUnknown)
    assert retries() == 0  # the server may have the message: never retried blindly


async def test_abort_right_after_354_is_reported_honestly(
    comm: CommManager, smtp_sink: Sinks, retries: Callable[[], int]
) -> None:
    # -A 0: smtp-sink answers DATA with 354, then at once "550 This violates SMTP" and hangs
    # up, racing the client. Seen before the message is written: nothing was sent
    # (RequestNotSent, retried). Written first: the 550 is read as the reply (MessageError),
    # or only the hang-up is seen (ConnectionLost, outcome unknown). Only the first retries.
    smtp = comm.smtp("127.0.0.1", smtp_sink("-A", "0").port)
    with pytest.raises((RequestNotSent, ConnectionLost, MessageError)) as info:
        await smtp.send(message())
    if isinstance(info.value, RequestNotSent):
        assert "before the message was sent" in str(info.value)
        assert retries() == ATTEMPTS - 1
    else:
        assert retries() == 0
        assert isinstance(info.value, ConnectionLost) or info.value.status == 550


async def test_no_reply_after_the_body_is_a_response_timeout(
    smtp_sink: Sinks, retries: Callable[[], int]
) -> None:
    async with CommManager(retry=RETRY, timeout=Timeout(connect=2, read=0.5)) as comm:
        smtp = comm.smtp("127.0.0.1", smtp_sink("-W", ".:2").port)
        with pytest.raises(ResponseTimeout) as info:
            await smtp.send(message())
        assert isinstance(info.value, DeliveryUnknown)
        assert smtp.statistics().size == 0
    assert retries() == 0


async def test_slow_354_is_a_timeout_before_anything_was_sent(
    smtp_sink: Sinks, retries: Callable[[], int]
) -> None:
    # -w 2 delays the reply to the DATA command (the 354), not the one after the message.
    retry = RetryPolicy(max_attempts=2, backoff=0.01, jitter=False)
    async with CommManager(retry=retry, timeout=Timeout(connect=2, read=0.5)) as comm:
        smtp = comm.smtp("127.0.0.1", smtp_sink("-w", "2").port)
        with pytest.raises(RequestNotSent, match="DATA"):
            await smtp.send(message())
    assert retries() == 1


async def test_connection_refused(
    comm: CommManager, closed_port: int, retries: Callable[[], int]
) -> None:
    smtp = comm.smtp("127.0.0.1", closed_port)
    with pytest.raises(ConnectError):
        await smtp.send(message())
    assert retries() == ATTEMPTS - 1


async def test_server_exits_mid_run(comm: CommManager, fresh_sink: Sinks) -> None:
    sink = fresh_sink("-M", "3")  # exits after the 3rd message, which gets no reply
    smtp = comm.smtp("127.0.0.1", sink.port, pool_size=1)
    assert (await smtp.send(message(1))).ok
    assert (await smtp.send(message(2))).ok
    with pytest.raises(ConnectionLost):
        await smtp.send(message(3))
    with pytest.raises(ConnectError):
        await smtp.send(message(4))
    assert sink.process.wait(2) == 0
    stats = smtp.statistics()
    assert stats.messages_sent == 2 and stats.size == 0


def test_a_missing_binary_skips_locally_and_fails_under_ci(
    require: Callable[[Path, str], Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    missing = tmp_path / "smtp-sink"
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="install_postfix_tools"):
        require(missing, "bash benchmarks/install_postfix_tools.sh")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        require(missing, "bash benchmarks/install_postfix_tools.sh")
