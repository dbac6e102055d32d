"""An asyncio SMTP client connection, written from the RFCs: the pooled provider's wire.

`SMTPConnection` is an `asyncio.Protocol` with a small async API: `open()` (TCP, or implicit
TLS), `greeting()`, `hello()` (EHLO, or HELO after a 5xx to EHLO), `starttls()` (RFC 3207),
`rset()`, `noop()`, `quit()`, `command()`, and the pieces the dialogues of `_transaction.py`
(AUTH, the mail transaction with PIPELINING) are built from: `write()` / `write_soon()` and
`read_reply()` / `claim_reply()`.

Replies are parsed as they arrive (RFC 5321 4.2) and go, in order, to the claims waiting for
them (`claim_reply()` takes the next place in the order, so a task can hand the connection
on and still get its own reply) or into a queue, however the bytes were split into chunks.
A line longer than `MAX_LINE`, a reply longer than `MAX_REPLY` or a line that is not
`ddd[ -]text` is a `SMTPProtocolError` and closes the connection. Once it is closed (EOF,
reset, protocol error, a read timing out), every read after the queued replies raises.

This module only moves bytes and raises its own exceptions (`SMTPError` and below, plus
`OSError`/`TimeoutError`); `xcomm.email._smtp.translate` says what they mean. Commands refuse
CR, LF and NUL in their arguments (`UnsafeArgument`): no argument can smuggle in a command.
"""

from __future__ import annotations

import asyncio
import math
import re
import ssl
from collections import deque

__all__ = [
    "MAX_LINE",
    "MAX_REPLY",
    "Reply",
    "SMTPConnection",
    "SMTPDisconnected",
    "SMTPError",
    "SMTPNotSupported",
    "SMTPProtocolError",
    "SMTPReplyError",
    "UnsafeArgument",
    "check_arguments",
    "command_line",
    "parse_ehlo",
]

#: The longest reply line accepted, line end excluded (RFC 5321 says 512; EHLO lines run longer).
MAX_LINE = 8192
#: The longest reply accepted, all its lines together.
MAX_REPLY = 65536

#: A reply: its code and its text, the lines of a multi-line reply joined with "\n".
Reply = tuple[int, str]

_CRLF = b"\r\n"
_Reader = tuple["asyncio.Future[Reply]", float, float | None]  # claim, deadline, timeout
_CLOCK_SLACK = 1e-3  # a timer may fire this early (the loop's clock resolution)
_UNSAFE = re.compile(rb"[\r\n\x00]")
_FIRST_DIGITS = (b"2", b"3", b"4", b"5")
_REPLY_LINE = re.compile(rb"([2-5][0-9][0-9])(?:([ -])(.*))?", re.DOTALL)


class SMTPError(Exception):
    """Base of the wire client's errors."""


class SMTPReplyError(SMTPError):
    """The server answered with a reply the step does not accept."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(f"{code} {text}")
        self.code = code
        self.text = text


class SMTPProtocolError(SMTPError):
    """The server sent something that is not an SMTP reply (or too much of it)."""


class SMTPDisconnected(SMTPError, ConnectionError):
    """The connection is closed: EOF, reset, or closed by this side."""


class SMTPNotSupported(SMTPError):
    """The server does not offer what the configuration needs (an AUTH mechanism...)."""


class UnsafeArgument(SMTPError, ValueError):
    """A command argument holds CR, LF or NUL (it could smuggle in another command)."""


def check_arguments(*parts: bytes) -> None:
    """Refuse CR, LF and NUL in command arguments: they could end the line and smuggle in
    another command (`UnsafeArgument`)."""
    if _UNSAFE.search(b"".join(parts)):
        raise UnsafeArgument("an SMTP command argument contains CR, LF or NUL")


def command_line(*parts: bytes) -> bytes:
    """`parts` joined with spaces and ended with CRLF; CR, LF or NUL in them is refused."""
    check_arguments(*parts)
    return b" ".join(parts) + _CRLF


def parse_ehlo(text: str) -> tuple[dict[str, str], frozenset[str]]:
    """The extensions of an EHLO reply's text (keyword in lower case -> parameters) and the
    AUTH mechanisms (upper case), from both `AUTH PLAIN` and the old `AUTH=PLAIN` form."""
    extensions: dict[str, str] = {}
    mechanisms: set[str] = set()
    for line in text.split("\n")[1:]:  # the first line is the server's name and greeting
        keyword, _, params = line.strip().partition(" ")
        if keyword.upper().startswith("AUTH="):
            keyword, params = "AUTH", f"{keyword[5:]} {params}"
        if not keyword:
            continue
        keyword = keyword.lower()
        extensions[keyword] = params.strip() if keyword not in extensions else extensions[keyword]
        if keyword == "auth":
            mechanisms.update(m.upper() for m in params.split())
    return extensions, frozenset(mechanisms)


class SMTPConnection(asyncio.Protocol):
    """One SMTP client connection: the reply reader, the writer and the commands.

    Example: `conn = await SMTPConnection.open("127.0.0.1", 25, timeout=10)`, then
    `await conn.greeting(timeout=10)`, `await conn.hello("me.example.com", timeout=10)`, ...
    """

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        # The loop the connection was made on (asking for it is a system call on 3.11).
        self._loop: asyncio.AbstractEventLoop | None = None
        #: EHLO keywords (lower case) -> parameters; empty after HELO.
        self.extensions: dict[str, str] = {}
        #: AUTH mechanisms the server offers (upper case).
        self.auth_mechanisms: frozenset[str] = frozenset()
        #: Whether the server offers PIPELINING (RFC 2920).
        self.pipelining = False
        #: The largest message the server takes (EHLO SIZE), when it says.
        self.size_limit: int | None = None
        #: Bytes given to `write()`/`write_soon()`, and those handed on to the transport.
        self.queued = self.sent = 0
        self._replies: deque[Reply] = deque()  # replies nobody has claimed yet
        self._readers: deque[_Reader] = deque()  # claims waiting for their reply, in order
        self._partial = b""  # an incomplete line
        self._lines: list[bytes] = []  # the texts of an incomplete multi-line reply
        self._reply_size = 0
        self._pending: list[bytes] = []  # written with write_soon(), not yet sent
        self._flusher: asyncio.Handle | None = None  # sends them at the end of the turn
        self._timer: asyncio.TimerHandle | None = None
        self._closing = False  # close() once the live readers have their replies
        self._lost: tuple[type[SMTPError], str, BaseException | None] | None = None

    @classmethod
    async def open(
        cls, host: str, port: int, *, tls: ssl.SSLContext | None = None, timeout: float | None
    ) -> SMTPConnection:
        """Connect to `host:port` (implicit TLS when `tls` is given), within `timeout`."""
        conn = cls()
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                await loop.create_connection(
                    lambda: conn, host, port, ssl=tls, server_hostname=host if tls else None
                )
        except BaseException:
            conn.abort()  # in case the connection was made just as the time ran out
            raise
        return conn

    async def greeting(self, *, timeout: float | None) -> Reply:
        """The server's greeting; anything but 220 raises `SMTPReplyError`."""
        return self._expect(await self.read_reply(timeout=timeout), 220)

    async def hello(self, name: str, *, timeout: float | None) -> None:
        """EHLO, and HELO when the server refuses EHLO with a 5xx; records the extensions."""
        self._forget_extensions()
        encoded = name.encode() if name.isascii() else name.encode("idna")
        code, text = await self.command(b"EHLO", encoded, timeout=timeout)
        if code == 250:
            self.extensions, self.auth_mechanisms = parse_ehlo(text)
            self.pipelining = "pipelining" in self.extensions
            size = self.extensions.get("size", "")
            self.size_limit = int(size) if size.isdigit() and int(size) > 0 else None
            return
        if not 500 <= code < 600:
            raise SMTPReplyError(code, text)
        self._expect(await self.command(b"HELO", encoded, timeout=timeout), 250)

    def supports(self, extension: str) -> bool:
        """Whether the last EHLO listed `extension` (case-insensitive)."""
        return extension.lower() in self.extensions

    async def starttls(
        self, context: ssl.SSLContext, *, server_hostname: str, timeout: float | None
    ) -> None:
        """STARTTLS, the handshake (within `timeout`), then forget the plaintext extensions:
        the caller says EHLO again."""
        self._expect(await self.command(b"STARTTLS", timeout=timeout), 220)
        if self._replies or self._partial or self._lines:
            # Bytes sent after the 220 but before the handshake would be read as if they
            # had come over TLS (the STARTTLS injection attack): refuse them.
            raise SMTPProtocolError("the server sent data right after its STARTTLS reply")
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(timeout):
            tls = await loop.start_tls(
                self.transport, self, context, server_hostname=server_hostname
            )
        assert tls is not None  # None only for transports that cannot do TLS
        self.transport = tls
        self._forget_extensions()

    async def rset(self, *, timeout: float | None) -> Reply:
        """RSET: abort the mail transaction; anything but 250 raises."""
        return self._expect(await self.command(b"RSET", timeout=timeout), 250)

    async def noop(self, *, timeout: float | None) -> Reply:
        """NOOP; anything but 250 raises."""
        return self._expect(await self.command(b"NOOP", timeout=timeout), 250)

    async def quit(self, *, timeout: float | None) -> None:
        """QUIT, wait for the reply (whatever it is), then close."""
        try:
            await self.command(b"QUIT", timeout=timeout)
        finally:
            self.abort()

    async def command(self, *parts: bytes, timeout: float | None) -> Reply:
        """Send one command line (`parts` joined with spaces) and read its reply."""
        self.write(command_line(*parts))
        return await self.read_reply(timeout=timeout)

    # -- reading and writing -------------------------------------------------------------------

    @property
    def alive(self) -> bool:
        """Open, not closing, and holding no reply that nobody asked for."""
        return self._lost is None and not (self._closing or self._replies) and bool(self.transport)

    def write(self, data: bytes) -> None:
        """Send `data` (after what `write_soon()` queued); raises `SMTPDisconnected` once the
        connection is closed."""
        if self._lost is not None or self.transport is None or self.transport.is_closing():
            raise self._failure()
        self.queued += len(data)
        if self._pending:
            self._pending.append(data)
            if self._flusher is not None:
                self._flusher.cancel()  # sent now, with `data`
            self._flush()
        else:
            self.sent += len(data)
            self.transport.write(data)

    def write_soon(self, data: bytes) -> None:
        """Send `data` at the end of this turn of the event loop, with whatever is written
        meanwhile (the next message's envelope): one packet instead of two."""
        if self._lost is not None or self.transport is None or self.transport.is_closing():
            raise self._failure()
        self.queued += len(data)
        if not self._pending:
            self._flusher = (self._loop or asyncio.get_running_loop()).call_soon(self._flush)
        self._pending.append(data)

    def claim_reply(self, *, timeout: float | None) -> asyncio.Future[Reply]:
        """The next place in the reply order: the future gets the first reply not claimed
        before it, or fails (closed connection, `TimeoutError` after `timeout` seconds).
        Await it with `reply()`. A claim taken before the connection is handed to another
        task keeps its reply: that task's claims come after it."""
        loop = self._loop or asyncio.get_running_loop()
        future: asyncio.Future[Reply] = loop.create_future()
        if self._replies:
            future.set_result(self._replies.popleft())
        elif self._lost is not None:
            future.set_exception(self._failure())
        else:
            deadline = math.inf if timeout is None else loop.time() + timeout
            self._readers.append((future, deadline, timeout))
            if timeout is not None and (self._timer is None or self._timer.when() > deadline):
                if self._timer is not None:
                    self._timer.cancel()
                self._timer = loop.call_at(deadline, self._on_timer, loop)
        return future

    async def reply(self, claim: asyncio.Future[Reply]) -> Reply:
        """Wait for a claimed reply. No reply in time closes the connection (a late reply
        would be taken for the next one). A cancelled wait keeps its place: its reply is
        dropped when it comes, so the others still get theirs."""
        try:
            return await claim
        except TimeoutError:
            self.abort()
            raise

    def next_reply(self) -> Reply | None:
        """The next reply if it has come already (replies to a pipelined batch come together)."""
        return self._replies.popleft() if self._replies else None

    async def read_reply(self, *, timeout: float | None) -> Reply:
        """The next reply, within `timeout` seconds (else `TimeoutError`, and the connection
        is closed); `SMTPDisconnected` / `SMTPProtocolError` once it closed or sent garbage."""
        if self._replies:
            return self._replies.popleft()
        return await self.reply(self.claim_reply(timeout=timeout))

    def close(self) -> None:
        """Close once the replies already claimed have come (they may belong to a task the
        connection was handed on from), or at once when none is awaited. Idempotent."""
        self._closing = True
        if not any(not reader[0].done() for reader in self._readers):
            self.abort()

    def abort(self) -> None:
        """Close at once, after sending what `write_soon()` queued, without QUIT or a TLS
        goodbye (which may never come). Idempotent."""
        if self._pending and self._lost is None:
            self._flush()
        if self._lost is None:
            self._lost = (SMTPDisconnected, "the connection was closed by the client", None)
        if self.transport is not None:
            self.transport.abort()
        self._fail_readers()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # -- asyncio.Protocol ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a stream transport
        self._loop = asyncio.get_running_loop()

    def data_received(self, data: bytes) -> None:
        if self._lost is not None:
            return
        if self._partial:
            data = self._partial + data
        lines = data.split(b"\n")
        self._partial = lines.pop()
        replies = self._replies
        try:
            for line in lines:
                if (  # the common case inline: a one-line reply, "250 text\r"
                    line[3:4] == b" "
                    and not self._lines
                    and line[:3].isdigit()
                    and line[:1] in _FIRST_DIGITS
                    and len(line) <= MAX_LINE
                ):
                    text = line[4:-1] if line[-1:] == b"\r" else line[4:]
                    replies.append((int(line[:3]), text.decode("utf-8", "replace")))
                else:
                    self._parse(line)
            if len(self._partial) > MAX_LINE:
                raise SMTPProtocolError(f"a reply line is longer than {MAX_LINE} bytes")
        except SMTPProtocolError as exc:
            self._lost = (SMTPProtocolError, str(exc), None)
            if self.transport is not None:
                self.transport.abort()
        if self._readers:
            self._deliver()
        if self._lost is not None:
            self._fail_readers()

    def eof_received(self) -> bool:
        return False  # close our side too; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        if self._lost is None:
            self._lost = (SMTPDisconnected, "the server closed the connection", exc)
        self._pending.clear()  # never sent: `sent` tells the writer
        self.abort()  # fails the readers, drops the timer

    # -- internals -------------------------------------------------------------------------

    def _parse(self, line: bytes) -> None:
        """Take one reply line (without its LF); queue the reply when it is complete."""
        if len(line) > MAX_LINE:
            raise SMTPProtocolError(f"a reply line is longer than {MAX_LINE} bytes")
        if line.endswith(b"\r"):
            line = line[:-1]
        match = _REPLY_LINE.fullmatch(line)
        if match is None:
            raise SMTPProtocolError(f"malformed SMTP reply line: {line[:40]!r}")
        code, more, text = match.groups()
        lines = self._lines
        if lines and lines[0] != code:
            raise SMTPProtocolError("the lines of a multi-line reply have different codes")
        self._reply_size += len(line)
        if self._reply_size > MAX_REPLY:
            raise SMTPProtocolError(f"a reply is longer than {MAX_REPLY} bytes")
        if more == b"-":
            lines.extend((code, text) if not lines else (text,))
            return
        if lines:
            text = b"\n".join([*lines[1:], text or b""])
            lines.clear()
        self._reply_size = 0
        self._replies.append((int(code), (text or b"").decode("utf-8", "replace")))

    def _on_timer(self, loop: asyncio.AbstractEventLoop) -> None:
        """Fail the oldest live claim once its time is up (its `reply()` then closes the
        connection). One timer per connection, re-armed lazily: in steady state it fires once
        per timeout and finds the replies came, instead of one timer per read."""
        self._timer = None
        for future, deadline, timeout in self._readers:
            if future.done():
                continue  # cancelled: still owed a reply (to drop), but no deadline to keep
            if loop.time() + _CLOCK_SLACK < deadline:
                self._timer = loop.call_at(deadline, self._on_timer, loop)
            else:
                future.set_exception(TimeoutError(f"no reply from the server within {timeout:g}s"))
            return

    def _forget_extensions(self) -> None:
        self.extensions, self.auth_mechanisms = {}, frozenset()
        self.pipelining, self.size_limit = False, None

    def _deliver(self) -> None:
        """Hand the queued replies to the claims, in order; a cancelled claim's is dropped."""
        replies, readers = self._replies, self._readers
        while replies and readers:
            future = readers.popleft()[0]
            reply = replies.popleft()
            if not future.done():
                future.set_result(reply)
        if self._closing and not any(not reader[0].done() for reader in readers):
            self.abort()

    def _fail_readers(self) -> None:
        readers = self._readers
        while readers:
            future = readers.popleft()[0]
            if not future.done():
                future.set_exception(self._failure())

    def _flush(self) -> None:
        self._flusher = None
        pending = self._pending
        if pending and self._lost is None and self.transport is not None:
            data = b"".join(pending)
            pending.clear()
            self.sent += len(data)
            self.transport.write(data)

    def _failure(self) -> SMTPError:
        """A fresh exception for a read or write on a closed connection."""
        cls, message, cause = self._lost or (SMTPDisconnected, "the connection is closed", None)
        error = cls(message)
        error.__cause__ = cause
        return error

    @staticmethod
    def _expect(reply: Reply, code: int) -> Reply:
        if reply[0] != code:
            raise SMTPReplyError(*reply)
        return reply
