"""The SMTP wire client's pure parts: the reply reader, command safety, dot-stuffing, EHLO,
AUTH exchanges.

Bytes are fed to `SMTPConnection.data_received` as the event loop would; writes go to a fake
transport. No server, no sockets.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from xcomm.email._transaction import auth_login, auth_xoauth2, dot_stuff
from xcomm.email._wire import (
    MAX_LINE,
    MAX_REPLY,
    SMTPConnection,
    SMTPDisconnected,
    SMTPProtocolError,
    SMTPReplyError,
    UnsafeArgument,
    check_arguments,
    command_line,
    parse_ehlo,
)


class FakeTransport(asyncio.Transport):
    """Records what the client writes; closing it tells the protocol, as asyncio would."""

    def __init__(self, protocol: SMTPConnection) -> None:
        super().__init__()
        self.protocol = protocol
        self.written: list[bytes] = []
        self.closed = False

    def write(self, data: Any) -> None:
        assert not self.closed, "write on a closed transport"
        self.written.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def abort(self) -> None:
        if not self.closed:
            self.closed = True
            asyncio.get_running_loop().call_soon(self.protocol.connection_lost, None)

    def close(self) -> None:
        self.abort()


def connected() -> tuple[SMTPConnection, FakeTransport]:
    conn = SMTPConnection()
    transport = FakeTransport(conn)
    conn.connection_made(transport)
    return conn, transport


async def replies(conn: SMTPConnection, count: int) -> list[tuple[int, str]]:
    return [await conn.read_reply(timeout=1) for _ in range(count)]


# -- the reply reader ------------------------------------------------------------------------


async def test_one_line_reply() -> None:
    conn, _ = connected()
    conn.data_received(b"250 2.1.0 Ok\r\n")
    assert await conn.read_reply(timeout=1) == (250, "2.1.0 Ok")


async def test_multi_line_reply() -> None:
    conn, _ = connected()
    conn.data_received(b"250-mail.example.com Hello\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n")
    conn.data_received(b"250 ENHANCEDSTATUSCODES\r\n")
    code, text = await conn.read_reply(timeout=1)
    assert code == 250
    assert text.split("\n") == [
        "mail.example.com Hello",
        "PIPELINING",
        "SIZE 10240000",
        "ENHANCEDSTATUSCODES",
    ]


async def test_several_replies_in_one_chunk_are_kept_in_order() -> None:
    conn, _ = connected()
    conn.data_received(
        b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n550 5.1.1 No such user\r\n"
        b"354 End data with <CR><LF>.<CR><LF>\r\n250-one\r\n250 two\r\n"
    )
    assert await replies(conn, 5) == [
        (250, "2.1.0 Ok"),
        (250, "2.1.5 Ok"),
        (550, "5.1.1 No such user"),
        (354, "End data with <CR><LF>.<CR><LF>"),
        (250, "one\ntwo"),
    ]
    assert conn.alive  # nothing unread is left


async def test_replies_split_anywhere_across_chunks() -> None:
    stream = b"220-hello\r\n220 there\r\n250 2.0.0 Ok\r\n354 go\r\n"
    conn, _ = connected()
    for i in range(len(stream)):
        conn.data_received(stream[i : i + 1])
    assert await replies(conn, 3) == [(220, "hello\nthere"), (250, "2.0.0 Ok"), (354, "go")]


async def test_a_waiting_read_gets_the_reply_when_it_completes() -> None:
    conn, _ = connected()
    loop = asyncio.get_running_loop()
    loop.call_later(0.01, conn.data_received, b"250-first part\r\n")
    loop.call_later(0.02, conn.data_received, b"250 sec")
    loop.call_later(0.03, conn.data_received, b"ond part\r\n")
    assert await conn.read_reply(timeout=1) == (250, "first part\nsecond part")


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"250\r\n", (250, "")),  # a code alone is a complete reply
        (b"250 \r\n", (250, "")),
        (b"221 Bye\n", (221, "Bye")),  # bare LF line endings are tolerated
        ("250 Grüße\r\n".encode(), (250, "Grüße")),
        (b"250 bad \xff byte\r\n", (250, "bad \ufffd byte")),
        (b"250-a\r\n250-\r\n250 c\r\n", (250, "a\n\nc")),
    ],
)
async def test_reply_forms(data: bytes, expected: tuple[int, str]) -> None:
    conn, _ = connected()
    conn.data_received(data)
    assert await conn.read_reply(timeout=1) == expected


@pytest.mark.parametrize(
    "garbage",
    [
        b"hello there\r\n",
        b"25 short\r\n",
        b"2500 too many digits\r\n",
        b"250x no separator\r\n",
        b"199 not a reply code\r\n",
        b"650 not a reply code\r\n",
        b"+OK this is POP3\r\n",
        b"250-first\r\n354 other code\r\n",  # the lines of one reply must share its code
    ],
)
async def test_a_malformed_reply_is_a_protocol_error(garbage: bytes) -> None:
    conn, transport = connected()
    conn.data_received(garbage)
    with pytest.raises(SMTPProtocolError):
        await conn.read_reply(timeout=1)
    assert transport.closed and not conn.alive
    with pytest.raises(SMTPProtocolError):  # and for every read after it
        await conn.read_reply(timeout=1)


async def test_replies_before_the_garbage_are_still_read() -> None:
    conn, _ = connected()
    conn.data_received(b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n\x00\x01garbage\r\n")
    assert await replies(conn, 2) == [(250, "2.1.0 Ok"), (250, "2.1.5 Ok")]
    with pytest.raises(SMTPProtocolError, match="malformed"):
        await conn.read_reply(timeout=1)


async def test_a_line_too_long_is_refused_without_waiting_for_its_end() -> None:
    conn, transport = connected()
    conn.data_received(b"250 " + b"x" * MAX_LINE)  # no line end yet: still refused
    with pytest.raises(SMTPProtocolError, match="longer than"):
        await conn.read_reply(timeout=1)
    assert transport.closed


async def test_a_long_line_within_the_limit_is_fine() -> None:
    conn, _ = connected()
    text = b"x" * (MAX_LINE - 6)
    conn.data_received(b"250 " + text + b"\r\n")
    assert await conn.read_reply(timeout=1) == (250, text.decode())


async def test_a_reply_too_long_is_refused() -> None:
    conn, _ = connected()
    line = b"250-" + b"x" * 1000 + b"\r\n"
    conn.data_received(line * (MAX_REPLY // 1000 + 1) + b"250 end\r\n")
    with pytest.raises(SMTPProtocolError, match="reply is longer"):
        await conn.read_reply(timeout=1)


async def test_eof_fails_the_pending_read_and_every_later_one() -> None:
    conn, _ = connected()
    reader = asyncio.create_task(conn.read_reply(timeout=1))
    await asyncio.sleep(0)
    conn.data_received(b"250 last words\r\n")
    conn.data_received(b"421 4.3.2 closing")  # incomplete when the link drops: never a reply
    conn.eof_received()
    conn.connection_lost(None)
    assert await reader == (250, "last words")
    for _ in range(2):
        with pytest.raises(SMTPDisconnected, match="closed the connection"):
            await conn.read_reply(timeout=1)
    with pytest.raises(SMTPDisconnected):
        conn.write(b"NOOP\r\n")


async def test_a_reset_is_the_cause_of_the_disconnect() -> None:
    conn, _ = connected()
    reader = asyncio.create_task(conn.read_reply(timeout=1))
    await asyncio.sleep(0)
    conn.connection_lost(ConnectionResetError(104, "Connection reset by peer"))
    with pytest.raises(SMTPDisconnected) as info:
        await reader
    assert isinstance(info.value, ConnectionError)
    assert isinstance(info.value.__cause__, ConnectionResetError)


async def test_a_reply_queued_before_the_drop_is_read_first() -> None:
    # A 421 and then the hang-up: the reader must see the 421, not just a dropped link.
    conn, _ = connected()
    conn.data_received(b"421 4.4.2 timeout, closing\r\n")
    conn.connection_lost(None)
    assert await conn.read_reply(timeout=1) == (421, "4.4.2 timeout, closing")
    with pytest.raises(SMTPDisconnected):
        await conn.read_reply(timeout=1)


async def test_a_read_timeout_closes_the_connection() -> None:
    conn, transport = connected()
    with pytest.raises(TimeoutError, match=r"within 0\.05s"):
        await conn.read_reply(timeout=0.05)
    assert transport.closed and not conn.alive
    conn.data_received(b"250 too late\r\n")  # would be taken for the next reply: ignored
    with pytest.raises(SMTPDisconnected):
        await conn.read_reply(timeout=1)


async def test_one_timer_serves_reads_with_different_timeouts() -> None:
    conn, _ = connected()
    loop = asyncio.get_running_loop()
    # a long timeout, answered at once: the timer stays armed far ahead
    loop.call_soon(conn.data_received, b"250 one\r\n")
    assert await conn.read_reply(timeout=30) == (250, "one")
    # a short one must still fire in time
    started = loop.time()
    with pytest.raises(TimeoutError):
        await conn.read_reply(timeout=0.05)
    assert loop.time() - started < 1


async def test_an_early_timer_does_not_cut_a_later_read_short() -> None:
    conn, _ = connected()
    loop = asyncio.get_running_loop()
    loop.call_soon(conn.data_received, b"250 one\r\n")
    assert await conn.read_reply(timeout=0.05) == (250, "one")  # arms a timer at +0.05
    loop.call_later(0.15, conn.data_received, b"250 two\r\n")
    assert await conn.read_reply(timeout=1) == (250, "two")  # it fires meanwhile: re-armed


async def test_a_cancelled_read_keeps_its_place() -> None:
    # Its reply is dropped when it comes, so the stream stays in step for the next reader.
    conn, transport = connected()
    reader = asyncio.create_task(conn.read_reply(timeout=1))
    await asyncio.sleep(0)
    reader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reader
    assert not transport.closed
    asyncio.get_running_loop().call_soon(conn.data_received, b"250 late\r\n250 next\r\n")
    assert await conn.read_reply(timeout=1) == (250, "next")


async def test_a_cancelled_claim_keeps_its_place_when_the_timer_fires() -> None:
    conn, _ = connected()
    first = asyncio.create_task(conn.read_reply(timeout=0.05))
    await asyncio.sleep(0)
    first.cancel()
    second = asyncio.create_task(conn.read_reply(timeout=1))
    await asyncio.sleep(0.1)  # the first claim's deadline passes: nothing to time out
    conn.data_received(b"250 for the first\r\n250 for the second\r\n")
    assert await second == (250, "for the second")
    assert first.cancelled()


async def test_claims_get_their_replies_in_order() -> None:
    # A task claims its reply, then hands the connection on; the next task's reads come after.
    conn, _ = connected()
    first = conn.claim_reply(timeout=1)
    second = asyncio.create_task(conn.read_reply(timeout=1))
    third = asyncio.create_task(conn.read_reply(timeout=1))
    await asyncio.sleep(0)
    conn.data_received(b"250 2.0.0 queued as A\r\n250 2.1.0 Ok\r\n")
    conn.data_received(b"354 go ahead\r\n")
    assert await third == (354, "go ahead")  # awaited first, still gets its own
    assert await second == (250, "2.1.0 Ok")
    assert await conn.reply(first) == (250, "2.0.0 queued as A")


async def test_close_waits_for_the_claimed_replies() -> None:
    conn, transport = connected()
    claim = conn.claim_reply(timeout=1)
    conn.close()
    assert not conn.alive and not transport.closed  # a reply is still owed to `claim`
    conn.data_received(b"250 2.0.0 Ok\r\n")
    assert await conn.reply(claim) == (250, "2.0.0 Ok")
    assert transport.closed


async def test_close_without_claims_is_immediate() -> None:
    conn, transport = connected()
    conn.close()
    conn.close()
    assert transport.closed and not conn.alive


async def test_a_timeout_fails_every_claim() -> None:
    conn, transport = connected()
    first = conn.claim_reply(timeout=0.05)
    second = conn.claim_reply(timeout=5)
    with pytest.raises(TimeoutError):
        await conn.reply(first)
    assert transport.closed
    with pytest.raises(SMTPDisconnected):
        await conn.reply(second)


async def test_write_soon_joins_what_is_written_in_the_same_turn() -> None:
    conn, transport = connected()
    conn.write_soon(b"body\r\n.\r\n")
    conn.write(b"MAIL FROM:<a@example.com>\r\n")
    assert transport.written == [b"body\r\n.\r\nMAIL FROM:<a@example.com>\r\n"]
    conn.write_soon(b"alone\r\n.\r\n")
    assert len(transport.written) == 1
    await asyncio.sleep(0)  # sent at the end of the turn anyway
    assert transport.written[1] == b"alone\r\n.\r\n"
    assert conn.sent == conn.queued == sum(map(len, transport.written))


async def test_abort_sends_what_write_soon_queued_first() -> None:
    conn, transport = connected()
    conn.write_soon(b"body\r\n.\r\n")
    conn.abort()
    assert transport.written == [b"body\r\n.\r\n"] and conn.sent == conn.queued


async def test_a_lost_connection_drops_what_write_soon_queued() -> None:
    conn, transport = connected()
    conn.write_soon(b"body\r\n.\r\n")
    conn.connection_lost(ConnectionResetError(104, "reset"))
    await asyncio.sleep(0)
    assert transport.written == [] and conn.sent < conn.queued  # the writer can tell


async def test_an_unasked_reply_makes_the_connection_unusable() -> None:
    conn, _ = connected()
    assert conn.alive
    conn.data_received(b"421 4.4.2 idle too long\r\n")
    assert not conn.alive


async def test_abort_is_idempotent() -> None:
    conn, transport = connected()
    conn.abort()
    conn.abort()
    await asyncio.sleep(0)
    assert transport.closed and not conn.alive
    with pytest.raises(SMTPDisconnected, match="closed by the client"):
        await conn.read_reply(timeout=1)


# -- commands --------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [b"a@b.c\r\nRCPT TO:<x@y.z>", b"a@b.c\n", b"a@b.c\r", b"a\x00@b.c"])
def test_command_arguments_cannot_smuggle_a_command(bad: bytes) -> None:
    with pytest.raises(UnsafeArgument):
        command_line(b"MAIL", b"FROM:<" + bad + b">")
    with pytest.raises(UnsafeArgument):
        check_arguments(b"good@example.com", bad)
    assert issubclass(UnsafeArgument, ValueError)


def test_command_line() -> None:
    assert command_line(b"RCPT", b"TO:<a@example.com>") == b"RCPT TO:<a@example.com>\r\n"
    assert command_line() == b"\r\n"  # the empty line that answers an XOAUTH2 challenge
    check_arguments(b"a@example.com", b"SIZE=100", b"SMTPUTF8")


async def test_an_unsafe_command_writes_nothing() -> None:
    conn, transport = connected()
    with pytest.raises(UnsafeArgument):
        await conn.command(b"HELO", b"evil\r\nMAIL FROM:<x@y.z>", timeout=1)
    assert transport.written == []


async def test_command_and_reply() -> None:
    conn, transport = connected()
    asyncio.get_running_loop().call_soon(conn.data_received, b"250 2.0.0 Ok\r\n")
    assert await conn.rset(timeout=1) == (250, "2.0.0 Ok")
    assert transport.written == [b"RSET\r\n"]
    asyncio.get_running_loop().call_soon(conn.data_received, b"500 5.5.1 what?\r\n")
    with pytest.raises(SMTPReplyError) as info:
        await conn.noop(timeout=1)
    assert (info.value.code, info.value.text) == (500, "5.5.1 what?")


async def test_hello_falls_back_to_helo_on_a_5xx() -> None:
    conn, transport = connected()
    loop = asyncio.get_running_loop()
    loop.call_soon(conn.data_received, b"502 5.5.2 EHLO not implemented\r\n")
    loop.call_later(0.01, conn.data_received, b"250 old.example.com\r\n")
    await conn.hello("client.example.com", timeout=1)
    assert transport.written == [b"EHLO client.example.com\r\n", b"HELO client.example.com\r\n"]
    assert conn.extensions == {} and not conn.pipelining and conn.size_limit is None


async def test_hello_does_not_fall_back_on_a_4xx() -> None:
    conn, transport = connected()
    asyncio.get_running_loop().call_soon(conn.data_received, b"421 4.3.2 shutting down\r\n")
    with pytest.raises(SMTPReplyError) as info:
        await conn.hello("client.example.com", timeout=1)
    assert info.value.code == 421 and len(transport.written) == 1


async def test_hello_records_the_extensions() -> None:
    conn, _ = connected()
    asyncio.get_running_loop().call_soon(
        conn.data_received,
        b"250-sink.example.com\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-8BITMIME\r\n"
        b"250-AUTH PLAIN LOGIN\r\n250-STARTTLS\r\n250 \r\n",
    )
    await conn.hello("client.example.com", timeout=1)
    assert conn.pipelining and conn.size_limit == 10240000
    assert conn.supports("STARTTLS") and conn.supports("8bitmime") and not conn.supports("smtputf8")
    assert conn.auth_mechanisms == {"PLAIN", "LOGIN"}


async def test_xoauth2_answers_the_error_challenge_with_an_empty_line() -> None:
    conn, transport = connected()
    loop = asyncio.get_running_loop()
    loop.call_soon(conn.data_received, b"334 eyJzdGF0dXMiOiI0MDEifQ==\r\n")
    loop.call_later(0.01, conn.data_received, b"535 5.7.8 Token not accepted\r\n")
    with pytest.raises(SMTPReplyError) as info:
        await auth_xoauth2(conn, "me@example.com", "expired", timeout=1)
    assert info.value.code == 535
    assert transport.written[0].startswith(b"AUTH XOAUTH2 ") and transport.written[1] == b"\r\n"


async def test_auth_login_sends_user_then_password() -> None:
    conn, transport = connected()
    loop = asyncio.get_running_loop()
    loop.call_soon(conn.data_received, b"334 VXNlcm5hbWU6\r\n")
    loop.call_later(0.01, conn.data_received, b"334 UGFzc3dvcmQ6\r\n")
    loop.call_later(0.02, conn.data_received, b"235 2.7.0 Authentication successful\r\n")
    await auth_login(conn, "alice", "s3cret", timeout=1)
    assert transport.written == [b"AUTH LOGIN\r\n", b"YWxpY2U=\r\n", b"czNjcmV0\r\n"]


# -- the message body ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"a\r\nb\r\n", b"a\r\nb\r\n"),
        (b"a\r\nb", b"a\r\nb\r\n"),  # a final line end is added
        (b"", b"\r\n"),
        (b".hidden\r\n", b"..hidden\r\n"),
        (b"a\r\n.\r\nb\r\n", b"a\r\n..\r\nb\r\n"),  # a lone dot cannot end the message early
        (b"a\r\n..\r\n", b"a\r\n...\r\n"),
        (b"a\nb\n", b"a\r\nb\r\n"),  # bare LF
        (b"a\rb\r", b"a\r\nb\r\n"),  # bare CR
        (b"a\r\n.\n.\r.\r\n", b"a\r\n..\r\n..\r\n..\r\n"),  # SMTP smuggling: every form
        (b"a.b\r\n x.\r\n", b"a.b\r\n x.\r\n"),  # dots elsewhere are left alone
    ],
)
def test_dot_stuff(data: bytes, expected: bytes) -> None:
    assert dot_stuff(data) == expected


def test_parse_ehlo() -> None:
    extensions, mechanisms = parse_ehlo(
        "mx.example.com greets you\nPIPELINING\nsize 35882577\nAUTH=LOGIN\n"
        "AUTH PLAIN XOAUTH2\nSMTPUTF8\nENHANCEDSTATUSCODES\n"
    )
    assert extensions == {
        "pipelining": "",
        "size": "35882577",
        "auth": "LOGIN",
        "smtputf8": "",
        "enhancedstatuscodes": "",
    }
    assert mechanisms == {"LOGIN", "PLAIN", "XOAUTH2"}
