"""IMAP sessions on top of aioimaplib's protocol, with what it lacks.

aioimaplib (GPL-3.0, the `xcomm[imap]` extra) is imported here only; `_imap.py` imports this
module when the first connection opens. Its `IMAP4ClientProtocol` parses responses; this
module adds, in a subclass:

- **STARTTLS**: the command, then `loop.start_tls()` on the same protocol, then a fresh
  CAPABILITY (what the server said before the upgrade is discarded);
- **SASL continuations**: for AUTHENTICATE, a `+` line is answered (the initial response
  when the server has no SASL-IR, else an empty line). A failed XOAUTH2 token makes the
  server send `+ <base64 JSON error>` and wait: aioimaplib never answers, so the login
  hangs until a timeout; answering makes the server say `NO [AUTHENTICATIONFAILED]`;
- **dropped connections**: pending commands fail at once (aioimaplib leaves them waiting);
- a hook for commands that handle `+` themselves (`continued()`: IDLE, in `_imap_idle.py`);
- linear FETCH parsing (aioimaplib rescans every line of the response after each new
  line, and recurses once per line); the greeting read without a background task.

Every command is bounded by a timeout; a timed-out or dropped session is never reused.
Errors are raised as `IMAPReplyError` (NO/BAD/BYE), `OSError`/`TimeoutError`/`ssl` errors;
`_imap.translate()` maps them to xcomm errors.
"""

from __future__ import annotations

import asyncio
import base64
import re
import ssl
from typing import Any

from aioimaplib.aioimaplib import (
    AUTH,
    CONNECTED,
    CRLF,
    NONAUTH,
    SELECTED,
    Command,
    FetchCommand,
    IMAP4ClientProtocol,
    IncompleteRead,
    literal_data_re,
    message_data_re,
    tagged_status_response_re,
)

__all__ = ["IMAPReplyError", "IMAPSession", "open_session", "quote"]

_CODE = re.compile(rb"^\[([A-Z-]+)")
_UID_CODE = re.compile(rb"\[(UIDVALIDITY|UIDNEXT) (\d+)\]")
_CAPS = re.compile(rb"\[CAPABILITY ([^\]]*)\]", re.IGNORECASE)


class IMAPReplyError(Exception):
    """The server answered NO, BAD (or BYE) to `command`."""

    def __init__(self, command: str, result: str, text: bytes) -> None:
        self.command = command
        self.result = result
        self.text = text.decode("utf-8", "replace").strip()
        found = _CODE.match(text.strip())
        self.code = found.group(1).decode() if found else None  # AUTHENTICATIONFAILED, ...
        self.challenge: str | None = None  # a SASL error the server sent before its NO
        super().__init__(f"{command}: {result} {self.text}")


def quote(value: str) -> str:
    """An IMAP quoted string."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class _Fetch(FetchCommand):  # type: ignore[misc]
    """FETCH, read at the pace of a bulk download:

    - "is the record complete?" is O(1) per line (parentheses counted as lines arrive,
      literals excluded) instead of a rescan of all lines so far;
    - a literal that arrived in one read is kept as the bytes it came in, not copied into
      a buffer and out again;
    - no per-line timer: `IMAPSession.command` bounds the whole command instead.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._open = 0

    def append_to_resp(self, line: bytes, result: str = "Pending") -> None:
        if type(line) is bytes:  # literals arrive as bytearray
            if self.FETCH_MESSAGE_DATA_RE.match(line):
                self._open = 0
            self._open += line.count(b"(") - line.count(b")")
        self._resp_result = result
        self._resp_lines.append(line)

    def begin_literal_data(self, expected_size: int, literal_data: bytes = b"") -> bytes:
        self._expected_size = expected_size
        return self.append_literal_data(literal_data) if literal_data or not expected_size else b""

    def append_literal_data(self, data: bytes) -> bytes:
        need = self._expected_size - len(self._resp_literal_data)
        if not self._resp_literal_data and len(data) >= need:
            self._resp_lines.append(data[:need])  # bytes: not counted as a line
            self._expected_size = 0
            return data[need:]
        rest: bytes = super().append_literal_data(data)
        return rest

    def _reset_timer(self) -> None:
        pass

    def wait_data(self) -> bool:
        return self._open > 0


class _Protocol(IMAP4ClientProtocol):  # type: ignore[misc]
    pending_sync_command: Any  # aioimaplib's attributes this class writes
    transport: Any
    incomplete_line: bytes
    current_command: Command | None

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop, None)
        self.greeting: asyncio.Future[bytes] = loop.create_future()
        self.greeting.add_done_callback(lambda f: f.cancelled() or f.exception())
        self.lost = False
        self.challenges: list[bytes] = []
        self.sasl_reply: bytes | None = None

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        error = exc or ConnectionResetError("the server closed the connection")
        if not self.greeting.done():
            self.greeting.set_exception(error)
        pending = [self.pending_sync_command, *self.pending_async_commands.values()]
        self.pending_sync_command = None
        self.pending_async_commands.clear()
        for command in pending:
            if command is not None:
                command._exception = error
                command.close(b"", "KO")

    def _handle_line(self, line: bytes, current_cmd: Command | None) -> Command | None:
        """aioimaplib's dispatch of one line, in one call for the lines of a FETCH (untagged,
        or the rest of a line after a literal); the greeting is read here, not in a
        background task."""
        if not line:
            return None
        if self.state == CONNECTED:
            if not self.greeting.done():
                self.greeting.set_result(line)
            return None
        if line[0] == 0x2A:  # "*": never a tagged status
            if current_cmd is None:
                return self._untagged_response(line)
        elif tagged_status_response_re.match(line):
            self._response_done(line)
            return None
        if current_cmd is not None:
            current_cmd.append_to_resp(line)
            return current_cmd
        result: Command | None = super()._handle_line(line, current_cmd)  # "+", or unknown
        return result

    def _untagged_response(self, line: bytes) -> Command | None:
        """aioimaplib's routing of an untagged line to its command, except that only the
        "* " prefix is removed (aioimaplib removes every "* ", file names included)."""
        line = line[2:] if line.startswith(b"* ") else line
        command: Command | None = self.pending_sync_command
        if command is not None:
            command.append_to_resp(line)
            return command
        match = message_data_re.match(line)
        if match:
            name, text = match.group(1), line
        else:
            name, _, text = line.partition(b" ")
        command = self.pending_async_commands.get(name.decode("ascii", "replace").upper())
        if command is not None:
            command.append_to_resp(text)
        return command

    def _continuation(self, line: bytes) -> None:
        command = self.pending_sync_command
        if command is not None and command.name == "AUTHENTICATE":
            reply, self.sasl_reply = self.sasl_reply, None
            if reply is None:  # a challenge after the credentials: an error, answer it
                self.challenges.append(line[1:].strip())
            self.transport.write((reply or b"") + CRLF)
            return
        if command is not None and hasattr(command, "continued"):  # IDLE: `_imap_idle.py`
            command.continued()
            return
        super()._continuation(line)

    def data_received(self, data: bytes) -> None:
        """aioimaplib's, without formatting every chunk received into a debug message
        (a repr of each read, about 7% of a bulk fetch even with logging off)."""
        if self.incomplete_line:
            data = self.incomplete_line + data
        try:
            self._handle_responses(data, self._handle_line, self.current_command)
            self.incomplete_line = b""
            self.current_command = None
        except IncompleteRead as incomplete:
            self.current_command = incomplete.cmd
            self.incomplete_line = incomplete.data

    def _handle_responses(
        self, data: bytes, line_handler: Any, current_cmd: Command | None = None
    ) -> None:
        """aioimaplib's loop without recursion (one level per line) and without copying the
        rest of the buffer for each line."""
        pos, n = 0, len(data)
        while True:
            if current_cmd is not None and current_cmd.wait_literal_data():
                need = current_cmd._expected_size - len(current_cmd._resp_literal_data)
                current_cmd.append_literal_data(data[pos : pos + need])
                pos = min(n, pos + need)
                if current_cmd.wait_literal_data():
                    raise IncompleteRead(current_cmd)
            elif pos >= n:
                if self.pending_sync_command is not None:
                    self.pending_sync_command.flush()
                if current_cmd is not None and current_cmd.wait_data():
                    raise IncompleteRead(current_cmd)
                return
            end = data.find(CRLF, pos)
            if end < 0:
                raise IncompleteRead(current_cmd, data[pos:])
            line = data[pos:end]
            pos = end + 2
            cmd = line_handler(line, current_cmd)
            literal = literal_data_re.match(line) if line.endswith(b"}") else None
            if literal:
                cmd = cmd if cmd is not None else Command("NIL", "unused", loop=self.loop)
                cmd.begin_literal_data(int(literal.group("size")))
                current_cmd = cmd
            elif cmd is not None and cmd.wait_data():
                current_cmd = cmd
            else:
                current_cmd = None


class IMAPSession:
    """One logged-in IMAP connection (lent by the pool to one task at a time)."""

    def __init__(self, protocol: _Protocol, *, encrypted: bool, timeout: float | None) -> None:
        self.protocol = protocol
        self.encrypted = encrypted
        self.timeout = timeout
        self.capabilities: set[str] = set()
        self.selected: str | None = None
        self.uid_validity: int | None = None
        self.uid_next: int | None = None  # from the last SELECT, when the server said it
        self.broken = False
        self.last_status = b""  # the text of the last tagged OK (its response codes)

    @property
    def alive(self) -> bool:
        """False once the connection dropped, timed out or was closed."""
        transport = self.protocol.transport
        return not (
            self.broken or self.protocol.lost or transport is None or transport.is_closing()
        )

    def has(self, capability: str) -> bool:
        return capability.upper() in self.capabilities

    async def command(
        self,
        name: str,
        *args: str,
        prefix: str | None = None,
        untagged: str | None = None,
        fetch: bool = False,
        timeout: float | None = None,
        secret: str | None = None,
    ) -> list[bytes]:
        """Run one command; its untagged lines (and literals) on OK, else `IMAPReplyError`."""
        protocol = self.protocol
        tag = protocol.new_tag()
        if fetch:
            command = _Fetch(tag, *args, prefix=prefix, loop=protocol.loop)
        else:
            command = Command(
                name, tag, *args, prefix=prefix, untagged_resp_name=untagged, loop=protocol.loop
            )
        try:
            async with asyncio.timeout(timeout if timeout is not None else self.timeout):
                response = await protocol.execute(command, scrub=secret)
        except BaseException:
            self.broken = True  # a reply may still come: the session's state is unknown
            raise
        lines: list[bytes] = response.lines
        if response.result != "OK":
            raise IMAPReplyError(" ".join(filter(None, (prefix, name))), response.result, lines[-1])
        self.last_status = bytes(lines[-1])
        self._update_capabilities(lines[-1])
        return lines[:-1]

    def _update_capabilities(self, text: bytes) -> None:
        found = _CAPS.search(text) if b"[" in text else None
        if found:
            self.capabilities = set(found.group(1).decode("ascii", "replace").upper().split())

    async def refresh_capabilities(self) -> None:
        lines = await self.command("CAPABILITY")
        words = b" ".join(bytes(x) for x in lines).decode("ascii", "replace").upper().split()
        self.capabilities = set(words)

    async def starttls(self, context: ssl.SSLContext, server_hostname: str | None) -> None:
        """Upgrade this plaintext connection to TLS, then ask for capabilities again."""
        await self.command("STARTTLS")
        protocol = self.protocol
        protocol.incomplete_line = b""  # nothing sent before the handshake may be trusted
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(self.timeout):
            transport = await loop.start_tls(
                protocol.transport, protocol, context, server_hostname=server_hostname
            )
        if transport is None:
            raise ConnectionResetError("the connection closed during the TLS handshake")
        protocol.transport = transport
        self.encrypted = True
        self.capabilities = set()
        await self.refresh_capabilities()

    async def authenticate(self, mechanism: str, initial: bytes) -> None:
        """AUTHENTICATE with one SASL message (PLAIN, XOAUTH2); errors carry the server's
        SASL challenge (`IMAPReplyError.challenge`, decoded)."""
        encoded = base64.b64encode(initial)
        protocol = self.protocol
        protocol.challenges.clear()
        if self.has("SASL-IR"):
            args: tuple[str, ...] = (mechanism, encoded.decode("ascii"))
            protocol.sasl_reply = None
        else:
            args, protocol.sasl_reply = (mechanism,), encoded
        try:
            await self.command("AUTHENTICATE", *args, secret=encoded.decode("ascii"))
        except IMAPReplyError as exc:
            if protocol.challenges:
                exc.challenge = _decode_challenge(protocol.challenges[-1])
            raise
        finally:
            protocol.sasl_reply = None
        self.protocol.state = AUTH

    async def login(self, username: str, password: str) -> None:
        await self.command("LOGIN", quote(username), quote(password), secret=quote(password))
        self.protocol.state = AUTH

    async def select(self, folder: str, encoded: str) -> int:
        """SELECT `folder` (`encoded`: its quoted mUTF-7 form); returns the message count."""
        self.selected = None
        try:
            lines = await self.command("SELECT", encoded)
        except IMAPReplyError:
            self.protocol.state = AUTH  # a failed SELECT leaves no folder selected
            raise
        self.protocol.state = SELECTED
        exists, validity, uid_next = 0, None, None
        for line in lines:
            if line.endswith(b" EXISTS") and line[:-7].isdigit():
                exists = int(line[:-7])
            found = _UID_CODE.search(line)
            if found and found.group(1) == b"UIDVALIDITY":
                validity = int(found.group(2))
            elif found:
                uid_next = int(found.group(2))
        self.selected, self.uid_validity, self.uid_next = folder, validity, uid_next
        return exists

    def close(self) -> None:
        """Drop the connection now (no LOGOUT)."""
        self.broken = True
        if self.protocol.transport is not None:
            self.protocol.transport.abort()

    async def aclose(self) -> None:
        """LOGOUT (errors ignored), then close; closes even when cancelled."""
        try:
            if self.alive:
                async with asyncio.timeout(min(self.timeout or 1.0, 1.0)):
                    await self.protocol.execute(
                        Command("LOGOUT", self.protocol.new_tag(), loop=self.protocol.loop)
                    )
        except (Exception, asyncio.CancelledError):
            pass
        finally:
            self.close()


def _decode_challenge(raw: bytes) -> str:
    try:
        return base64.b64decode(raw + b"=" * (-len(raw) % 4), validate=False).decode(
            "utf-8", "replace"
        )
    except ValueError:
        return raw.decode("ascii", "replace")


async def open_session(
    host: str,
    port: int,
    *,
    tls: ssl.SSLContext | None,
    server_hostname: str | None,
    connect_timeout: float | None,
    timeout: float | None,
) -> tuple[IMAPSession, bytes]:
    """Connect (with implicit TLS when `tls` is given) and read the greeting.

    Returns the session (not logged in unless the server said PREAUTH) and the greeting.
    """
    loop = asyncio.get_running_loop()
    protocol = _Protocol(loop)
    async with asyncio.timeout(connect_timeout):
        transport, _ = await loop.create_connection(
            lambda: protocol,
            host,
            port,
            ssl=tls,
            server_hostname=server_hostname if tls is not None else None,
        )
        try:
            greeting = await protocol.greeting
        except BaseException:
            transport.abort()
            raise
    session = IMAPSession(protocol, encrypted=tls is not None, timeout=timeout)
    status = greeting.split(b" ", 2)[1:2]
    if status == [b"PREAUTH"]:
        protocol.state = AUTH
    elif status == [b"OK"]:
        protocol.state = NONAUTH
    else:
        session.close()
        raise IMAPReplyError(
            "greeting",
            status[0].decode("ascii", "replace") if status else "?",
            greeting.split(b" ", 2)[-1],
        )
    session._update_capabilities(greeting)
    if not session.capabilities:
        await session.refresh_capabilities()
    return session, greeting
