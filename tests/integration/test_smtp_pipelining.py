"""SMTPProvider's pipelined transaction (RFC 2920) against a tiny in-test SMTP server.

aiosmtpd does not offer PIPELINING and smtp-sink refuses only whole commands, so this server
is written here: it refuses recipients by name (`nosuch@` 550, `tempfail@` 451, `closing@`
421) and senders (`blocked@` 550), and can misbehave on purpose. With `pipelining=True` it
holds back its MAIL and RCPT replies until it has read DATA, so a client that waited for
each reply would hang: passing tests prove the envelope went out in one write. Every
outcome is compared with the same server without PIPELINING (the step-by-step path).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest

from xcomm import (
    Address,
    AuthenticationError,
    CommManager,
    CommunicationError,
    ConnectError,
    ConnectionLost,
    EmailMessage,
    MessageError,
    RateLimit,
    RecipientRejected,
    RequestNotSent,
    ResponseTimeout,
    RetryPolicy,
    SendResult,
    ServiceUnavailable,
    Timeout,
    ValidationError,
)
from xcomm.email._wire import SMTPConnection

RETRY = RetryPolicy(max_attempts=3, backoff=0.01, max_backoff=0.01, jitter=False)
TIMEOUT = Timeout(connect=2.0, read=2.0, write=2.0, pool=2.0)


@dataclass
class Stored:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes


@dataclass
class TinySMTP:
    """A small SMTP server; its knobs choose the faults. One per test."""

    pipelining: bool = True
    data_reply: bytes = b"354 End data with <CR><LF>.<CR><LF>"
    final_reply: bytes = b"250 2.0.0 Ok: queued"
    final_replies: list[bytes] = field(default_factory=list)  # used first, one per message
    final_delay: float = 0.0  # seconds before the reply to a message
    rcpt_530: bool = False  # RCPT answered 530 (as if AUTH were required)
    always_354: bool = False  # broken: 354 even with no valid recipient
    drop_at_data: bool = False  # hang up on DATA, before any reply to the batch
    drop_after_body: bool = False  # hang up after the message, without a reply
    silent_at_data: bool = False  # read DATA, then say nothing
    starttls_injection: bool = False
    port: int = 0
    connections: int = 0
    transactions: int = 0
    bodies: int = 0
    body_seen: asyncio.Event = field(default_factory=asyncio.Event)
    messages: list[Stored] = field(default_factory=list)
    lines: list[bytes] = field(default_factory=list)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)
    _stopping: asyncio.Event = field(default_factory=asyncio.Event)
    _server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        self._stopping.set()
        for writer in self._writers:
            writer.close()  # the handlers see EOF and end
        await asyncio.gather(*self._tasks)
        await self._server.wait_closed()

    def ehlo(self) -> bytes:
        lines = [b"tiny.example.com", b"SIZE 100000", b"8BITMIME", b"ENHANCEDSTATUSCODES"]
        if self.pipelining:
            lines.append(b"PIPELINING")
        if self.starttls_injection:
            lines.append(b"STARTTLS")
        return b"".join(b"250-" + x + b"\r\n" for x in lines[:-1]) + b"250 " + lines[-1]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        self.connections += 1
        held: list[bytes] = []  # replies held back until DATA, as a pipelining server may

        async def reply(line: bytes, *, hold: bool = False) -> None:
            held.append(line + b"\r\n")
            if not (hold and self.pipelining):
                writer.write(b"".join(held))
                held.clear()
                await writer.drain()

        try:
            await reply(b"220-tiny.example.com ESMTP\r\n220 ready")
            sender: str | None = None
            rcpts: list[str] = []
            while line := await reader.readline():
                self.lines.append(line)
                verb, _, arg = line.strip().partition(b" ")
                verb = verb.upper()
                address = arg.partition(b"<")[2].partition(b">")[0].decode()
                if verb == b"EHLO":
                    await reply(self.ehlo())
                elif verb == b"HELO":
                    await reply(b"250 tiny.example.com")
                elif verb == b"STARTTLS":
                    await reply(b"220 2.0.0 go ahead\r\n250 injected before the handshake")
                elif verb == b"MAIL":
                    self.transactions += 1
                    sender, rcpts = None, []
                    if address.startswith("blocked@"):
                        await reply(b"550 5.7.1 sender blocked", hold=True)
                    else:
                        sender = address
                        await reply(b"250 2.1.0 Ok", hold=True)
                elif verb == b"RCPT":
                    if sender is None:
                        await reply(b"503 5.5.1 Error: need MAIL command", hold=True)
                    elif self.rcpt_530:
                        await reply(b"530 5.7.0 Authentication required", hold=True)
                    elif address.startswith("nosuch@"):
                        await reply(b"550 5.1.1 no such user", hold=True)
                    elif address.startswith("tempfail@"):
                        await reply(b"451 4.3.0 try again later", hold=True)
                    elif address.startswith("closing@"):
                        await reply(b"421 4.3.2 shutting down")
                        break
                    else:
                        rcpts.append(address)
                        await reply(b"250 2.1.5 Ok", hold=True)
                elif verb == b"DATA":
                    if self.drop_at_data:
                        break
                    if self.silent_at_data:
                        await self._stopping.wait()
                        break
                    if sender is None or not (rcpts or self.always_354):
                        await reply(b"554 5.5.1 Error: no valid recipients")
                        continue
                    await reply(self.data_reply)
                    if not self.data_reply.startswith(b"354"):
                        continue
                    data = await reader.readuntil(b"\r\n.\r\n")
                    self.bodies += 1
                    self.body_seen.set()
                    if self.drop_after_body:
                        break
                    if self.final_delay:
                        await asyncio.sleep(self.final_delay)
                    final = self.final_replies.pop(0) if self.final_replies else self.final_reply
                    if rcpts and final.startswith(b"250"):
                        lines = data[:-5].split(b"\r\n")  # un-stuff the dots (RFC 5321 4.5.2)
                        text = b"\r\n".join(x[1:] if x.startswith(b".") else x for x in lines)
                        self.messages.append(Stored(sender, rcpts, text + b"\r\n"))
                    await reply(final)
                    sender, rcpts = None, []
                elif verb == b"RSET":
                    sender, rcpts = None, []
                    await reply(b"250 2.0.0 Ok")
                elif verb == b"QUIT":
                    await reply(b"221 2.0.0 Bye")
                    break
                else:
                    await reply(b"502 5.5.2 Error: command not recognized")
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            self._writers.discard(writer)
            self._tasks.discard(task)


@pytest.fixture
async def tiny() -> AsyncIterator[Callable[..., TinySMTP]]:
    """`tiny(pipelining=False, ...)`: start a TinySMTP; all are stopped after the test."""
    started: list[TinySMTP] = []

    async def start(**knobs: object) -> TinySMTP:
        server = TinySMTP(**knobs)  # type: ignore[arg-type]
        await server.start()
        started.append(server)
        return server

    yield start  # type: ignore[misc]
    for server in started:
        await server.stop()


def message(*to: str, sender: str = "sender@example.com") -> EmailMessage:
    return EmailMessage(
        sender=Address.parse(sender),
        to=tuple(Address.parse(a) for a in to),
        subject="Pipelined",
        text="Hello.\n.\nA line with a lone dot above.\n",
    )


async def outcome(
    tiny: Callable[..., object], send: Callable[[CommManager, int], object], **knobs: object
) -> dict[bool, tuple[object, TinySMTP]]:
    """Run `send(comm, port)` against a pipelining and a step-by-step server with the same
    knobs; return {pipelining: (result or error, server)}."""
    out: dict[bool, tuple[object, TinySMTP]] = {}
    for pipelining in (True, False):
        server = await tiny(pipelining=pipelining, **knobs)  # type: ignore[misc]
        async with CommManager(retry=RETRY, timeout=TIMEOUT) as comm:
            try:
                result = await send(comm, server.port)  # type: ignore[misc]
            except CommunicationError as exc:
                result = exc
        out[pipelining] = (result, server)
    return out


def same_error(a: object, b: object) -> None:
    assert type(a) is type(b) and isinstance(a, CommunicationError)
    assert str(a) == str(b)
    assert getattr(a, "rejected", None) == getattr(b, "rejected", None)


# -- the envelope goes out in one write ----------------------------------------------------


async def test_the_envelope_is_pipelined(
    tiny: Callable[..., TinySMTP], monkeypatch: pytest.MonkeyPatch
) -> None:
    writes: list[bytes] = []
    original = SMTPConnection.write

    def spy(self: SMTPConnection, data: bytes) -> None:
        writes.append(data)
        original(self, data)

    monkeypatch.setattr(SMTPConnection, "write", spy)
    server = await tiny()
    async with CommManager(retry=RETRY, timeout=TIMEOUT) as comm:
        smtp = comm.smtp("127.0.0.1", server.port)
        result = await smtp.send(message("a@example.org", "b@example.org", "c@example.org"))
        assert result.ok and result.accepted == ("a@example.org", "b@example.org", "c@example.org")
        assert writes[0].startswith(b"EHLO ")
        envelope, body = writes[1:]  # the whole envelope, then the message
        assert envelope.startswith(b"MAIL FROM:<sender@example.com> SIZE=")
        assert envelope.count(b"RCPT TO:") == 3 and envelope.endswith(b"DATA\r\n")
        assert body.endswith(b"\r\n.\r\n") and b"\r\n..\r\n" in body  # dot-stuffed
    (stored,) = server.messages
    assert stored.rcpt_tos == ["a@example.org", "b@example.org", "c@example.org"]
    assert b"\r\n.\r\nA line with a lone dot above." in stored.data  # un-stuffed by the server


async def test_partial_refusal_gives_the_same_result_both_ways(
    tiny: Callable[..., TinySMTP],
) -> None:
    async def send(comm: CommManager, port: int) -> SendResult:
        return await comm.smtp("127.0.0.1", port).send(
            message("good@example.org", "nosuch@example.org", "tempfail@example.org", "ok@x.org")
        )

    results = await outcome(tiny, send)
    (piped, piped_server), (stepped, stepped_server) = results[True], results[False]
    assert isinstance(piped, SendResult) and isinstance(stepped, SendResult)
    assert piped.accepted == stepped.accepted == ("good@example.org", "ok@x.org")
    assert piped.rejected == stepped.rejected
    assert [(r.address, r.code, r.reason) for r in piped.rejected] == [
        ("nosuch@example.org", 550, "5.1.1 no such user"),
        ("tempfail@example.org", 451, "4.3.0 try again later"),
    ]
    assert (piped.status, piped.attempts, piped.ok) == (stepped.status, stepped.attempts, False)
    assert piped_server.messages[0].rcpt_tos == stepped_server.messages[0].rcpt_tos


async def test_all_refused_gives_the_same_error_and_keeps_the_connection(
    tiny: Callable[..., TinySMTP],
) -> None:
    async def send(comm: CommManager, port: int) -> object:
        smtp = comm.smtp("127.0.0.1", port, pool_size=1)
        with pytest.raises(RecipientRejected) as info:
            await smtp.send(message("nosuch@example.org", "nosuch@example.net"))
        assert not info.value.transient and info.value.status == 550
        await smtp.send(message("good@example.org"))  # RSET made the connection reusable
        assert smtp.statistics().connections_opened == 1
        return info.value

    results = await outcome(tiny, send)
    same_error(results[True][0], results[False][0])
    for _, server in results.values():
        assert server.connections == 1 and len(server.messages) == 1
        assert server.lines.count(b"RSET\r\n") == 1
    # the pipelined client sent DATA with the envelope (answered 554); the other did not
    assert (
        b"DATA\r\n" in results[True][1].lines[:6] and b"DATA\r\n" not in results[False][1].lines[:5]
    )


async def test_all_refused_temporarily_is_retried_both_ways(
    tiny: Callable[..., TinySMTP],
) -> None:
    async def send(comm: CommManager, port: int) -> object:
        return await comm.smtp("127.0.0.1", port).send(message("tempfail@example.org"))

    results = await outcome(tiny, send)
    same_error(results[True][0], results[False][0])
    error = results[True][0]
    assert isinstance(error, RecipientRejected) and error.transient
    assert results[True][1].transactions == results[False][1].transactions == RETRY.max_attempts


async def test_refused_sender_gives_the_same_error(tiny: Callable[..., TinySMTP]) -> None:
    async def send(comm: CommManager, port: int) -> object:
        smtp = comm.smtp("127.0.0.1", port, pool_size=1)
        with pytest.raises(MessageError) as info:
            await smtp.send(message("a@example.org", sender="blocked@example.com"))
        await smtp.send(message("a@example.org"))  # the connection was reset, not dropped
        assert smtp.statistics().connections_opened == 1
        return info.value

    results = await outcome(tiny, send)
    same_error(results[True][0], results[False][0])
    error = results[True][0]
    assert isinstance(error, MessageError) and (error.status, error.error_code) == (550, "5.7.1")
    assert "MAIL" in str(error)


async def test_530_at_rcpt_gives_the_same_error(tiny: Callable[..., TinySMTP]) -> None:
    async def send(comm: CommManager, port: int) -> object:
        return await comm.smtp("127.0.0.1", port).send(message("a@example.org"))

    results = await outcome(tiny, send, rcpt_530=True)
    same_error(results[True][0], results[False][0])
    assert isinstance(results[True][0], AuthenticationError)


async def test_421_at_rcpt_discards_the_connection_both_ways(
    tiny: Callable[..., TinySMTP],
) -> None:
    async def send(comm: CommManager, port: int) -> object:
        smtp = comm.smtp("127.0.0.1", port)
        with pytest.raises(ServiceUnavailable) as info:
            await smtp.send(message("closing@example.org"))
        stats = smtp.statistics()
        assert stats.size == 0 and stats.connections_closed == RETRY.max_attempts
        return info.value

    results = await outcome(tiny, send)
    same_error(results[True][0], results[False][0])
    error = results[True][0]
    assert isinstance(error, ServiceUnavailable) and error.status == 421 and error.transient


@pytest.mark.parametrize(
    ("data_reply", "cls", "status"),
    [
        (b"451 4.3.0 queue file write error", ServiceUnavailable, 451),
        (b"554 5.7.1 policy rejection", MessageError, 554),
    ],
)
async def test_data_refused_gives_the_same_error(
    tiny: Callable[..., TinySMTP], data_reply: bytes, cls: type, status: int
) -> None:
    async def send(comm: CommManager, port: int) -> object:
        return await comm.smtp("127.0.0.1", port).send(message("a@example.org"))

    results = await outcome(tiny, send, data_reply=data_reply)
    same_error(results[True][0], results[False][0])
    error = results[True][0]
    assert type(error) is cls and getattr(error, "status", None) == status
    assert not results[True][1].messages


async def test_refused_after_the_message_gives_the_same_error(
    tiny: Callable[..., TinySMTP],
) -> None:
    async def send(comm: CommManager, port: int) -> object:
        smtp = comm.smtp("127.0.0.1", port, pool_size=1)
        with pytest.raises(MessageError) as info:
            await smtp.send(message("a@example.org"))
        assert smtp.statistics().idle == 1  # a final reply ends the transaction cleanly
        return info.value

    results = await outcome(tiny, send, final_reply=b"550 5.7.1 content rejected")
    same_error(results[True][0], results[False][0])


# -- phases: nothing was sent before the 354 ------------------------------------------------


async def test_a_drop_before_the_354_is_not_sent_and_retried(
    tiny: Callable[..., TinySMTP],
) -> None:
    async def send(comm: CommManager, port: int) -> object:
        return await comm.smtp("127.0.0.1", port).send(message("a@example.org"))

    results = await outcome(tiny, send, drop_at_data=True)
    for pipelining, (error, server) in results.items():
        assert isinstance(error, RequestNotSent) and not isinstance(error, ConnectError)
        assert "before the message was sent" in str(error) and "DATA" in str(error)
        assert server.connections == RETRY.max_attempts, pipelining  # retried
        assert not server.messages


async def test_no_reply_to_a_pipelined_envelope_is_not_sent(
    tiny: Callable[..., TinySMTP],
) -> None:
    server = await tiny(silent_at_data=True)
    retry = RetryPolicy(max_attempts=2, backoff=0.01, jitter=False)
    async with CommManager(retry=retry, timeout=Timeout(connect=2, read=0.2)) as comm:
        with pytest.raises(RequestNotSent, match="MAIL/RCPT/DATA, before the message was sent"):
            await comm.smtp("127.0.0.1", server.port).send(message("a@example.org"))
    assert server.connections == 2 and not server.messages


async def test_a_drop_after_the_message_is_connection_lost(tiny: Callable[..., TinySMTP]) -> None:
    async def send(comm: CommManager, port: int) -> object:
        smtp = comm.smtp("127.0.0.1", port)
        with pytest.raises(ConnectionLost) as info:
            await smtp.send(message("a@example.org"))
        assert smtp.statistics().size == 0
        return info.value

    results = await outcome(tiny, send, drop_after_body=True)
    same_error(results[True][0], results[False][0])
    for _, server in results.values():
        assert server.connections == 1  # never retried


async def test_send_timeout_while_the_envelope_is_unanswered(
    tiny: Callable[..., TinySMTP],
) -> None:
    server = await tiny(silent_at_data=True)
    async with CommManager(retry=RETRY, timeout=TIMEOUT) as comm:
        smtp = comm.smtp("127.0.0.1", server.port)
        with pytest.raises(RequestNotSent, match="before the message was sent") as info:
            await smtp.send(message("a@example.org"), timeout=0.2)
        assert not isinstance(info.value, ResponseTimeout)
        assert smtp.statistics().size == 0


async def test_a_354_without_recipients_closes_the_connection(
    tiny: Callable[..., TinySMTP],
) -> None:
    # A broken server that starts DATA although it accepted nobody: the only way out of
    # DATA is to send a message, so the client hangs up instead.
    server = await tiny(always_354=True)
    async with CommManager(retry=RETRY, timeout=TIMEOUT) as comm:
        smtp = comm.smtp("127.0.0.1", server.port)
        with pytest.raises(RecipientRejected):
            await smtp.send(message("nosuch@example.org"))
        stats = smtp.statistics()
        assert (stats.size, stats.connections_closed) == (0, 1)
    assert not server.messages and b"RSET\r\n" not in server.lines


# -- safety ------------------------------------------------------------------------------


async def test_an_address_with_a_line_break_is_refused_before_mail(
    tiny: Callable[..., TinySMTP],
) -> None:
    server = await tiny()
    sneaky = EmailMessage(  # built directly, skipping Address.parse's validation
        sender=Address(email="sender@example.com"),
        to=(Address(email="a@example.org>\r\nRCPT TO:<victim@example.net"),),
        subject="x",
        text="x",
    )
    async with CommManager(retry=RETRY, timeout=TIMEOUT) as comm:
        with pytest.raises(ValidationError):
            await comm.smtp("127.0.0.1", server.port).send(sneaky)
    assert server.transactions == 0 and not any(b"victim" in line for line in server.lines)


async def test_data_injected_after_the_starttls_reply_is_refused(
    tiny: Callable[..., TinySMTP],
) -> None:
    server = await tiny(starttls_injection=True)
    async with CommManager(retry=RetryPolicy.none(), timeout=TIMEOUT) as comm:
        smtp = comm.smtp("127.0.0.1", server.port)
        with pytest.raises(ConnectError, match="starttls") as info:
            await smtp.send(message("a@example.org"))
    assert "STARTTLS reply" in str(info.value)
    assert server.transactions == 0


async def test_helo_fallback_and_a_multi_line_greeting(tiny: Callable[..., TinySMTP]) -> None:
    server = await tiny(pipelining=False)
    server.ehlo = lambda: b"502 5.5.2 Error: command not recognized"  # type: ignore[method-assign]
    async with CommManager(retry=RETRY, timeout=TIMEOUT) as comm:
        result = await comm.smtp("127.0.0.1", server.port).send(message("a@example.org"))
    assert result.ok
    assert any(line.startswith(b"HELO ") for line in server.lines)
    # no extensions after HELO: no SIZE=, and one command at a time
    assert b"MAIL FROM:<sender@example.com>\r\n" in server.lines


async def test_many_concurrent_sends_over_pipelining(tiny: Callable[..., TinySMTP]) -> None:
    server = await tiny()
    async with CommManager(retry=RETRY, timeout=TIMEOUT) as comm:
        smtp = comm.smtp("127.0.0.1", server.port, pool_size=3)
        results = await asyncio.gather(
            *(smtp.send(message(f"u{i}@example.org", "nosuch@example.org")) for i in range(30))
        )
        assert all(r.accepted == (f"u{i}@example.org",) for i, r in enumerate(results))
        assert smtp.statistics().messages_sent == 30
    assert len(server.messages) == 30 and server.connections <= 3


# -- the next envelope follows the previous message in the same packet ---------------------


class WireSpy:
    """Counts what SMTPConnection hands to its transport: packets with a message's end and
    the next envelope together are the ones `hand_over()` made."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.packets: list[bytes] = []
        flush, write = SMTPConnection._flush, SMTPConnection.write

        def spy_flush(conn: SMTPConnection) -> None:
            if conn._pending:
                self.packets.append(b"".join(conn._pending))
            flush(conn)

        def spy_write(conn: SMTPConnection, data: bytes) -> None:
            if not conn._pending:
                self.packets.append(data)
            write(conn, data)

        monkeypatch.setattr(SMTPConnection, "_flush", spy_flush)
        monkeypatch.setattr(SMTPConnection, "write", spy_write)

    @property
    def joined(self) -> int:
        return sum(b"\r\n.\r\nMAIL FROM:<" in packet for packet in self.packets)


async def test_a_waiting_send_writes_its_envelope_with_the_previous_message(
    tiny: Callable[..., TinySMTP], monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = WireSpy(monkeypatch)
    server = await tiny()
    async with CommManager(retry=RETRY, timeout=TIMEOUT) as comm:
        smtp = comm.smtp("127.0.0.1", server.port, pool_size=1)
        results = await asyncio.gather(*(smtp.send(message(f"u{i}@example.org")) for i in range(6)))
        assert all(r.ok and r.attempts == 1 for r in results)
        assert [r.accepted for r in results] == [(f"u{i}@example.org",) for i in range(6)]
        stats = smtp.statistics()
        assert (stats.connections_opened, stats.messages_sent) == (1, 6)
        assert (stats.in_use, stats.idle, stats.waiting) == (0, 1, 0)
    assert spy.joined == 5  # every message but the first rode behind the one before
    assert [m.rcpt_tos for m in server.messages] == [[f"u{i}@example.org"] for i in range(6)]


async def test_no_hand_over_without_a_waiting_send(
    tiny: Callable[..., TinySMTP], monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = WireSpy(monkeypatch)
    server = await tiny()
    async with CommManager(retry=RETRY, timeout=TIMEOUT) as comm:
        smtp = comm.smtp("127.0.0.1", server.port, pool_size=1)
        for i in range(3):
            assert (await smtp.send(message(f"u{i}@example.org"))).ok
        assert smtp.statistics().messages_sent == 3
    assert spy.joined == 0 and len(server.messages) == 3


async def test_a_drop_after_a_handed_over_message(tiny: Callable[..., TinySMTP]) -> None:
    # The first message and the second envelope leave together; the server takes the
    # message and hangs up. The first may have been delivered: ConnectionLost, never
    # retried. The second never got its 354: RequestNotSent, retried on a new connection.
    server = await tiny(drop_after_body=True)
    async with CommManager(retry=RETRY, timeout=TIMEOUT) as comm:
        smtp = comm.smtp("127.0.0.1", server.port, pool_size=1)
        first = asyncio.create_task(smtp.send(message("first@example.org")))
        second = asyncio.create_task(smtp.send(message("second@example.org")))
        await server.body_seen.wait()
        server.drop_after_body = False
        with pytest.raises(ConnectionLost):
            await first
        result = await second
        assert result.ok and result.attempts == 2
        stats = smtp.statistics()
        assert (stats.connections_opened, stats.messages_sent) == (2, 1)
    assert server.bodies == 2
    assert [m.rcpt_tos for m in server.messages] == [["second@example.org"]]


async def test_a_refusal_after_a_handed_over_message(tiny: Callable[..., TinySMTP]) -> None:
    # A final reply ends the transaction either way: the next one goes on, no RSET needed.
    server = await tiny(final_replies=[b"554 5.7.1 content rejected"])
    async with CommManager(retry=RETRY, timeout=TIMEOUT) as comm:
        smtp = comm.smtp("127.0.0.1", server.port, pool_size=1)
        first, second = await asyncio.gather(
            smtp.send(message("first@example.org")),
            smtp.send(message("second@example.org")),
            return_exceptions=True,
        )
        assert isinstance(first, MessageError) and first.status == 554
        assert isinstance(second, SendResult) and second.ok and second.attempts == 1
        stats = smtp.statistics()
        assert (stats.connections_opened, stats.messages_sent) == (1, 1)
    assert b"RSET\r\n" not in server.lines


async def test_cancelling_the_next_send_keeps_the_previous_reply(
    tiny: Callable[..., TinySMTP],
) -> None:
    server = await tiny(final_delay=0.2)
    async with CommManager(retry=RETRY, timeout=TIMEOUT) as comm:
        smtp = comm.smtp("127.0.0.1", server.port, pool_size=1)
        first = asyncio.create_task(smtp.send(message("first@example.org")))
        second = asyncio.create_task(smtp.send(message("second@example.org")))
        await server.body_seen.wait()  # the second envelope came with it
        second.cancel()
        with pytest.raises(asyncio.CancelledError):
            await second
        result = await first  # its reply still came, though the connection is being closed
        assert result.ok and result.accepted == ("first@example.org",)
        stats = smtp.statistics()
        assert (stats.size, stats.connections_closed, stats.messages_sent) == (0, 1, 1)
    assert [m.rcpt_tos for m in server.messages] == [["first@example.org"]]


async def test_hand_over_respects_max_messages_per_connection(
    tiny: Callable[..., TinySMTP], monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = WireSpy(monkeypatch)
    server = await tiny()
    async with CommManager(retry=RETRY, timeout=TIMEOUT) as comm:
        smtp = comm.smtp("127.0.0.1", server.port, pool_size=1, max_messages_per_connection=3)
        results = await asyncio.gather(*(smtp.send(message(f"u{i}@example.org")) for i in range(7)))
        assert all(r.ok and r.attempts == 1 for r in results)
        stats = smtp.statistics()
        assert (stats.connections_opened, stats.connections_closed) == (3, 2)  # 3 + 3 + 1
        assert stats.messages_sent == 7
    assert server.connections == 3 and len(server.messages) == 7
    assert spy.joined == 4  # two per connection of three messages
    assert server.lines.count(b"QUIT\r\n") == 3


# -- send_many: several messages on one connection, each envelope riding on the one before ---


async def test_send_many_rides_each_envelope_on_the_message_before(
    tiny: Callable[..., TinySMTP], monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = WireSpy(monkeypatch)
    server = await tiny()
    async with CommManager(retry=RETRY, timeout=TIMEOUT) as comm:
        smtp = comm.smtp("127.0.0.1", server.port, pool_size=1)
        results = await smtp.send_many([message(f"u{i}@example.org") for i in range(6)])
        assert all(isinstance(r, SendResult) and r.ok and r.attempts == 1 for r in results)
        assert [r.accepted for r in results] == [  # type: ignore[union-attr]
            (f"u{i}@example.org",) for i in range(6)
        ]
        stats = smtp.statistics()
        assert (stats.connections_opened, stats.messages_sent, stats.in_use) == (1, 6, 0)
    assert spy.joined == 5  # every envelope but the first left with the message before it
    assert [m.rcpt_tos for m in server.messages] == [[f"u{i}@example.org"] for i in range(6)]


async def test_send_many_settles_each_message_on_its_own(
    tiny: Callable[..., TinySMTP], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Refusals of one message (all recipients, the sender) leave the others going, on the
    # same connection, in order; a refused envelope is reset before the next one goes.
    for pipelining in (True, False):
        server = await tiny(pipelining=pipelining)
        async with CommManager(retry=RETRY, timeout=TIMEOUT) as comm:
            smtp = comm.smtp("127.0.0.1", server.port, pool_size=1)
            no_recipient = EmailMessage(sender=Address.parse("a@example.com"), subject="x")
            results = await smtp.send_many(
                [
                    message("one@example.org"),
                    message("nosuch@example.org"),
                    message("two@example.org", "nosuch@example.org"),
                    message("three@example.org", sender="blocked@example.com"),
                    no_recipient,
                    message("four@example.org"),
                ]
            )
            assert smtp.statistics().connections_opened == 1
        ok, refused, partial, blocked, invalid, last = results
        assert isinstance(ok, SendResult) and ok.accepted == ("one@example.org",)
        assert isinstance(refused, RecipientRejected) and not refused.transient
        assert isinstance(partial, SendResult) and partial.accepted == ("two@example.org",)
        assert [r.address for r in partial.rejected] == ["nosuch@example.org"]
        assert isinstance(blocked, MessageError) and blocked.status == 550
        assert isinstance(invalid, ValidationError)
        assert isinstance(last, SendResult) and last.accepted == ("four@example.org",)
        delivered = [m.rcpt_tos for m in server.messages]
        assert delivered == [["one@example.org"], ["two@example.org"], ["four@example.org"]]


async def test_send_many_a_refusal_after_a_ridden_envelope_needs_no_reset(
    tiny: Callable[..., TinySMTP],
) -> None:
    server = await tiny(final_replies=[b"250 ok", b"554 5.7.1 content rejected"])
    async with CommManager(retry=RETRY, timeout=TIMEOUT) as comm:
        smtp = comm.smtp("127.0.0.1", server.port, pool_size=1)
        results = await smtp.send_many([message(f"u{i}@example.org") for i in range(4)])
        first, second, *rest = results
        assert isinstance(first, SendResult) and first.ok
        assert isinstance(second, MessageError) and second.status == 554
        assert all(isinstance(r, SendResult) and r.attempts == 1 for r in rest)
        assert smtp.statistics().connections_opened == 1
    assert b"RSET\r\n" not in server.lines
    assert len(server.messages) == 3


async def test_send_many_after_a_drop_the_rest_go_on_a_new_connection(
    tiny: Callable[..., TinySMTP],
) -> None:
    # The first message and the second envelope leave together; the server takes the
    # message and hangs up. The first may have been delivered: ConnectionLost, never sent
    # again. The others never got their 354: sent on a new connection (attempt 2).
    server = await tiny(drop_after_body=True)
    async with CommManager(retry=RETRY, timeout=TIMEOUT) as comm:
        smtp = comm.smtp("127.0.0.1", server.port, pool_size=1)
        batch = asyncio.create_task(
            smtp.send_many([message(f"u{i}@example.org") for i in range(3)])
        )
        await server.body_seen.wait()
        server.drop_after_body = False
        first, *rest = await batch
        assert isinstance(first, ConnectionLost)
        assert all(isinstance(r, SendResult) and r.ok and r.attempts == 2 for r in rest)
        assert smtp.statistics().connections_opened == 2
    assert server.bodies == 3
    assert [m.rcpt_tos for m in server.messages] == [["u1@example.org"], ["u2@example.org"]]


async def test_send_many_retries_a_transient_refusal_under_the_policy(
    tiny: Callable[..., TinySMTP],
) -> None:
    server = await tiny()
    async with CommManager(retry=RETRY, timeout=TIMEOUT) as comm:
        smtp = comm.smtp("127.0.0.1", server.port, pool_size=1)
        before, later, after = await smtp.send_many(
            [message("a@example.org"), message("tempfail@example.org"), message("b@example.org")]
        )
    assert isinstance(later, RecipientRejected) and later.transient
    assert isinstance(before, SendResult) and before.attempts == 1
    assert isinstance(after, SendResult) and after.attempts == 1
    tried = [line for line in server.lines if line.startswith(b"RCPT TO:<tempfail@")]
    assert len(tried) == RETRY.max_attempts  # the refused message alone, three times
    assert [m.rcpt_tos for m in server.messages] == [["a@example.org"], ["b@example.org"]]


async def test_send_many_respects_max_messages_per_connection(
    tiny: Callable[..., TinySMTP], monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = WireSpy(monkeypatch)
    server = await tiny()
    async with CommManager(retry=RETRY, timeout=TIMEOUT) as comm:
        smtp = comm.smtp("127.0.0.1", server.port, pool_size=1, max_messages_per_connection=3)
        results = await smtp.send_many([message(f"u{i}@example.org") for i in range(7)])
        assert all(isinstance(r, SendResult) and r.attempts == 1 for r in results)
        stats = smtp.statistics()
        assert (stats.connections_opened, stats.messages_sent) == (3, 7)  # 3 + 3 + 1
    assert server.lines.count(b"QUIT\r\n") == 3
    assert spy.joined == 4  # two per connection of three messages


async def test_send_many_timeout_settles_every_message(tiny: Callable[..., TinySMTP]) -> None:
    server = await tiny(silent_at_data=True)
    async with CommManager(retry=RETRY, timeout=TIMEOUT) as comm:
        smtp = comm.smtp("127.0.0.1", server.port, pool_size=1)
        results = await smtp.send_many(
            [message(f"u{i}@example.org") for i in range(3)], timeout=0.3
        )
    assert all(isinstance(r, RequestNotSent) for r in results)
    assert "timed out" in str(results[0])
    assert server.bodies == 0


async def test_send_many_passes_the_limiter_once_per_message(
    tiny: Callable[..., TinySMTP],
) -> None:
    server = await tiny()
    async with CommManager(retry=RETRY, timeout=TIMEOUT) as comm:
        smtp = comm.smtp("127.0.0.1", server.port, pool_size=1, rate_limit=RateLimit(rate=1000))
        results = await smtp.send_many([message(f"u{i}@example.org") for i in range(5)])
        assert all(isinstance(r, SendResult) for r in results)
        (account,) = comm.limiters.statistics().values()
        assert account.acquired == 5
    assert len(server.messages) == 5


async def test_send_many_on_an_empty_list_sends_nothing(tiny: Callable[..., TinySMTP]) -> None:
    server = await tiny()
    async with CommManager(retry=RETRY, timeout=TIMEOUT) as comm:
        smtp = comm.smtp("127.0.0.1", server.port)
        assert await smtp.send_many([]) == []
        with pytest.raises(ValidationError, match="timeout"):
            await smtp.send_many([message("a@example.org")], timeout=0)
    assert server.connections == 0
