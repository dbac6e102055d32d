"""The two dialogues of a pooled SMTP session, above the wire: opening it and sending mail.

`SMTPConnector.open()` (the pool's opener) connects, greets, says EHLO, upgrades to TLS
(STARTTLS, or implicit TLS) and logs in (AUTH PLAIN, LOGIN or XOAUTH2, RFC 4954). It does
not decide what a failure means: the provider hands it `translate`, the one function that
turns the wire client's exceptions into xcomm errors (`xcomm.email._smtp.translate`).

`run_transaction()` sends one message: MAIL, one RCPT per recipient, DATA, the message.
When the server offers PIPELINING (RFC 2920) the envelope leaves in one write (MAIL, every
RCPT and DATA) and the replies are read in order; otherwise each command waits for its reply.
Both paths read the same replies and decide the same way, so they give the same outcome:

- a 421 at any step is the error at once: the server is closing, the connection is discarded;
- a refused MAIL, or a RCPT answered 530, is the error (the rest of a pipelined envelope's
  replies are read first, so the connection stays in step for RSET);
- other RCPT refusals are collected; when no recipient is accepted, `RecipientRejected`;
- DATA answered with anything but 354 is the error. A 354 that cannot be used (MAIL refused
  or no recipient accepted: a pipelining server should answer 503/554) closes the connection,
  since a DATA can only end by sending a message;
- after the 354 the message is written and its reply is the outcome. With a task waiting for
  the pool, the connection goes to it first (`ConnectionPool.hand_over`): its envelope leaves
  in the same packet as this message, and this reply still comes here.

Phases, for `translate` and for `send(timeout=...)` (`stage[0]`): "mail", "rcpt" and "data"
until the 354 (a failure there means nothing was sent), then "body" once the message is
written (a link lost before the message could leave is still "data"). A pipelined envelope
that gets no reply is reported as "mail/rcpt/data" (or "rcpt/data"): servers hold their
replies back until the end of a batch. After a failure on a connection still in step, RSET
makes it reusable; otherwise it is closed.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import re
import socket
import ssl
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from xcomm._config import Timeout
from xcomm._errors import (
    CommunicationError,
    ConfigurationError,
    RecipientRejected,
    RejectedRecipient,
)
from xcomm._models import Address
from xcomm.email._pool import Lease, SMTPSession, _bad, _whole
from xcomm.email._wire import (
    SMTPConnection,
    SMTPError,
    SMTPNotSupported,
    SMTPReplyError,
    UnsafeArgument,
    check_arguments,
)

__all__ = [
    "SMTPConnector",
    "auth_login",
    "auth_plain",
    "auth_xoauth2",
    "dot_stuff",
    "envelope",
    "run_transaction",
]

logger = logging.getLogger(__name__)

#: Maps an exception raised in a phase ("connect", ..., "body") to an xcomm error.
Translate = Callable[[BaseException, str], CommunicationError]

_FQDN: list[str] = []
_DATA = b"DATA\r\n"
_END = b".\r\n"
_PENDING = {"mail": "mail/rcpt/data", "rcpt": "rcpt/data"}
_LINE_ENDINGS = re.compile(rb"\r\n|\n|\r")
_LEADING_DOT = re.compile(rb"(?m)^\.")


# -- opening a session -----------------------------------------------------------------------


@dataclass(kw_only=True, slots=True)
class SMTPConnector:
    """Opens `SMTPSession`s to one server with one login; the pool's opener.

    `plaintext_auth_ok` says whether credentials may cross a connection without TLS (the
    provider decides: a loopback host, or `allow_plaintext_auth=True`).
    """

    host: str
    port: int
    translate: Translate
    timeout: Timeout
    use_tls: bool = False
    start_tls: bool | None = None
    tls_context: ssl.SSLContext | None = None
    validate_certs: bool = True
    local_hostname: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    oauth_token: str | Callable[[], Awaitable[str]] | None = field(default=None, repr=False)
    plaintext_auth_ok: bool = False
    _making_context: asyncio.Lock = field(default_factory=asyncio.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        """Refuse connection settings that cannot work, saying how to fix them."""
        host, user, password, token = self.host, self.username, self.password, self.oauth_token
        if not isinstance(host, str) or not host.strip() or any(c.isspace() for c in host.strip()):
            raise _bad(f"host must be a host name or an IP address, got {host!r}")
        self.host = host.strip()
        if not _whole(self.port) or self.port > 65535:
            raise _bad(f"port must be an int from 1 to 65535, got {self.port!r}")
        name = self.local_hostname
        if name is not None and not (
            isinstance(name, str) and name.isprintable() and name.split() == [name]
        ):
            raise _bad("local_hostname must be a name without spaces or control characters")
        if user is not None and not (isinstance(user, str) and user):
            raise _bad("username must be a non-empty str")
        if password is not None and not isinstance(password, str):
            raise _bad("password must be a str")
        if token is not None and not (isinstance(token, str) or callable(token)):
            raise _bad("oauth_token must be a str or an async function that returns one")
        if password is not None and token is not None:
            raise _bad("pass either password= or oauth_token=, not both")
        credentials = password is not None or token is not None
        if credentials and user is None:
            raise _bad("username= is required with password= or oauth_token=")
        if self.start_tls not in (None, True, False) or not isinstance(self.use_tls, bool):
            raise _bad("start_tls must be None, True or False, and use_tls a bool")
        if self.use_tls and self.start_tls:
            raise _bad("use_tls=True is implicit TLS (port 465); it excludes start_tls=True")
        if self.tls_context is not None and not self.validate_certs:
            raise _bad(
                "validate_certs=False has no effect with tls_context=; configure the context"
            )
        if (
            credentials
            and self.start_tls is False
            and not self.use_tls
            and not self.plaintext_auth_ok
        ):
            raise _bad(
                "start_tls=False would send the credentials in plaintext; use TLS, or "
                "allow_plaintext_auth=True only on a trusted network"
            )

    async def open(self) -> SMTPSession:
        """Connect, EHLO, STARTTLS (as configured), EHLO again, AUTH (when configured)."""
        server = f"{self.host}:{self.port}"
        context = await self._context() if self.use_tls else None
        name = self.local_hostname or await _local_fqdn()
        timeout = self.timeout
        conn: SMTPConnection | None = None
        phase = "connect"
        try:
            conn = await SMTPConnection.open(
                self.host, self.port, tls=context if self.use_tls else None, timeout=timeout.connect
            )
            await conn.greeting(timeout=timeout.connect)
            phase = "ehlo"
            await conn.hello(name, timeout=timeout.read)
            encrypted = self.use_tls
            if not encrypted and self.start_tls is not False:
                if conn.supports("starttls"):
                    phase = "starttls"
                    context = await self._context()
                    await conn.starttls(context, server_hostname=self.host, timeout=timeout.connect)
                    phase = "ehlo"
                    await conn.hello(name, timeout=timeout.read)
                    encrypted = True
                elif self.start_tls:
                    raise ConfigurationError(
                        f"start_tls=True but {server} does not offer STARTTLS; nothing was sent. "
                        "Use use_tls=True for implicit TLS (port 465), or start_tls=None"
                    )
            if self.password is not None or self.oauth_token is not None:
                phase = "auth"
                await self._login(conn, encrypted=encrypted)
        except BaseException as exc:
            if conn is not None:
                conn.abort()
            if isinstance(exc, SMTPError | OSError | ValueError):
                raise self.translate(exc, phase) from exc
            raise
        logger.debug("smtp: connected to %s (encrypted=%s)", server, encrypted)
        return SMTPSession(conn, encrypted=encrypted, quit_timeout=timeout.read)

    async def _login(self, conn: SMTPConnection, *, encrypted: bool) -> None:
        server = f"{self.host}:{self.port}"
        if not encrypted and not self.plaintext_auth_ok:
            raise ConfigurationError(
                f"refusing to send credentials to {server} without TLS (it offers no STARTTLS); "
                "use use_tls=True, or allow_plaintext_auth=True only on a trusted network"
            )
        assert self.username is not None
        timeout = self.timeout.read
        if self.oauth_token is not None:
            if "XOAUTH2" not in conn.auth_mechanisms:
                raise ConfigurationError(f"oauth_token= is set but {server} does not offer XOAUTH2")
            token = self.oauth_token
            token = token if isinstance(token, str) else await token()
            await auth_xoauth2(conn, self.username, token, timeout=timeout)
            return
        # Each offered mechanism once, PLAIN first; a 5xx refusal moves on to the next one.
        offered = [m for m in ("PLAIN", "LOGIN") if m in conn.auth_mechanisms]
        if not offered:
            raise SMTPNotSupported(f"{server} offers no AUTH mechanism xcomm has (PLAIN, LOGIN)")
        for mechanism in offered:
            login = auth_plain if mechanism == "PLAIN" else auth_login
            try:
                await login(conn, self.username, self.password or "", timeout=timeout)
                return
            except SMTPReplyError as exc:
                if mechanism == offered[-1] or not 500 <= exc.code < 600:
                    raise

    async def _context(self) -> ssl.SSLContext:
        """The TLS context, made once when first needed (a server without STARTTLS never
        needs it). Loading the system's CA certificates takes tens of milliseconds holding
        the GIL: the pool's concurrent opens wait for one load instead of each doing its own."""
        async with self._making_context:
            if self.tls_context is None:
                context = await asyncio.to_thread(ssl.create_default_context)
                if not self.validate_certs:
                    context.check_hostname = False
                    context.verify_mode = ssl.CERT_NONE
                self.tls_context = context
        return self.tls_context


async def _local_fqdn() -> str:
    """The name sent in EHLO, looked up once per process (it may need DNS)."""
    if not _FQDN:
        _FQDN.append(await asyncio.to_thread(socket.getfqdn))
    return _FQDN[0]


async def auth_plain(
    conn: SMTPConnection, username: str, password: str, *, timeout: float | None
) -> None:
    """AUTH PLAIN with an initial response (RFC 4616); anything but 235 raises."""
    blob = base64.b64encode(b"\0" + username.encode() + b"\0" + password.encode())
    code, text = await conn.command(b"AUTH", b"PLAIN", blob, timeout=timeout)
    if code == 334:  # a server that wants the response on its own line
        code, text = await conn.command(blob, timeout=timeout)
    _expect_235(code, text)


async def auth_login(
    conn: SMTPConnection, username: str, password: str, *, timeout: float | None
) -> None:
    """AUTH LOGIN: the user name and the password, each after a 334; then 235 or raise."""
    code, text = await conn.command(b"AUTH", b"LOGIN", timeout=timeout)
    for secret in (username, password):
        if code != 334:
            break
        code, text = await conn.command(base64.b64encode(secret.encode()), timeout=timeout)
    _expect_235(code, text)


async def auth_xoauth2(
    conn: SMTPConnection, username: str, token: str, *, timeout: float | None
) -> None:
    """AUTH XOAUTH2. A refused token comes back as a 334 with a JSON challenge; the client
    must answer with an empty line to get the final (5xx) reply."""
    blob = base64.b64encode(f"user={username}\x01auth=Bearer {token}\x01\x01".encode())
    code, text = await conn.command(b"AUTH", b"XOAUTH2", blob, timeout=timeout)
    if code == 334:
        code, text = await conn.command(timeout=timeout)
    _expect_235(code, text)


def _expect_235(code: int, text: str) -> None:
    if code != 235:
        raise SMTPReplyError(code, text)


# -- sending a message ----------------------------------------------------------------------


def dot_stuff(data: bytes, *, canonical: bool = False) -> bytes:
    """The message as DATA sends it (RFC 5321 4.5.2): CRLF line endings, a final CRLF, and a
    dot doubled at the start of every line. The terminating ".\\r\\n" is not included.

    `canonical` says `data` has CRLF line endings only and ends with one, as `render_message`
    writes it: only the dots are looked at (two scans of the message fewer).
    """
    if not canonical:
        crlf = data.count(b"\r\n")
        if data.count(b"\n") != crlf or data.count(b"\r") != crlf:  # a bare LF or CR
            data = _LINE_ENDINGS.sub(b"\r\n", data)
        if not data.endswith(b"\r\n"):
            data += b"\r\n"
    if data.startswith(b".") or b"\n." in data:
        data = _LEADING_DOT.sub(b"..", data)
    return data


def envelope(sender: bytes, options: Sequence[bytes], addresses: Sequence[bytes]) -> bytes:
    """MAIL, one RCPT per address and DATA in one pipelined write (RFC 2920).

    Raises:
        UnsafeArgument: an argument holds CR, LF or NUL.
    """
    check_arguments(sender, *addresses, *options)
    return _pipelined(sender, options, addresses)


def _mail(sender: bytes, options: Sequence[bytes]) -> bytes:
    return b" ".join([b"MAIL FROM:<" + sender + b">", *options]) + b"\r\n"


def _rcpt(address: bytes) -> bytes:
    return b"RCPT TO:<" + address + b">\r\n"


def _pipelined(sender: bytes, options: Sequence[bytes], addresses: Sequence[bytes]) -> bytes:
    return b"".join([_mail(sender, options), *map(_rcpt, addresses), _DATA])


async def run_transaction(
    lease: Lease[SMTPSession],
    *,
    sender: bytes,
    options: Sequence[bytes],
    recipients: Sequence[Address],
    addresses: Sequence[bytes],
    payload: bytes,
    timeout: float | None,
    stage: list[str],
    translate: Translate,
    hand_over: Callable[[], bool] | None = None,
    written: bool = False,
    follow: Callable[[], bytes | None] | None = None,
) -> tuple[int, list[str], list[RejectedRecipient]]:
    """Send `payload` (from `dot_stuff()`) from `sender` to `addresses`.

    `recipients` are the addresses as the caller knows them (for `accepted`/`rejected`),
    `addresses` their envelope forms, `options` the MAIL parameters (`SIZE=...`). Each read
    waits at most `timeout` seconds. `stage[0]` follows the phase.

    `hand_over()`, called once the 354 came on a pipelining connection, may give the lease
    back to the pool for a waiting task (see `ConnectionPool.hand_over`); when it did, this
    transaction no longer touches the lease and only waits for its own reply.

    A caller sending several messages on one lease (`SMTPProvider.send_many`) rides each
    envelope on the previous message instead: `follow()`, called once the 354 came on a
    pipelining connection, returns the next message's envelope (`envelope()`) to write right
    after this message, or None; that next transaction then runs with `written=True`. A
    refusal of this message's body after an envelope followed leaves the connection in step
    (no RSET: the server is reading the next envelope).

    Returns:
        The final reply code, the accepted and the refused recipients.

    Raises:
        RecipientRejected: no recipient was accepted.
        CommunicationError: what `translate` makes of any other failure.
    """
    conn = lease.conn.wire
    try:
        check_arguments(sender, *addresses, *options)
    except UnsafeArgument as exc:
        raise translate(exc, "mail") from exc
    pipelined = conn.pipelining
    accepted: list[str] = []
    rejected: list[RejectedRecipient] = []
    refused: tuple[str, int, str] | None = None  # the phase and reply that end the transaction
    handed = followed = False
    mark = 0  # where the message ends in the connection's output
    lease.reusable = False
    phase = stage[0] = "mail"
    try:
        if not (written and pipelined):
            conn.write(
                _pipelined(sender, options, addresses) if pipelined else _mail(sender, options)
            )
        code, text = await conn.read_reply(timeout=timeout)
        if code != 250:
            _check_421(code, text)
            refused = ("mail", code, text)
        phase = stage[0] = "rcpt"
        if refused is None or pipelined:
            for rcpt, address in zip(recipients, addresses, strict=True):
                if not pipelined:
                    conn.write(_rcpt(address))
                code, text = conn.next_reply() or await conn.read_reply(timeout=timeout)
                if code in (250, 251):
                    accepted.append(rcpt.email)
                elif code == 530:  # not about this recipient: the session needs AUTH
                    refused = refused or ("rcpt", code, text)
                    if not pipelined:
                        break
                else:
                    _check_421(code, text)
                    rejected.append(RejectedRecipient(address=rcpt.email, code=code, reason=text))
        phase = stage[0] = "data"
        usable = refused is None and bool(accepted)
        if pipelined or usable:
            if not pipelined:
                conn.write(_DATA)
            code, text = conn.next_reply() or await conn.read_reply(timeout=timeout)
            if code == 354 and not usable:
                conn.abort()  # out of DATA only by sending a message: close instead
            elif code != 354:
                _check_421(code, text)
                if usable:
                    refused = ("data", code, text)
        if refused is not None:
            phase = refused[0]
            raise SMTPReplyError(refused[1], refused[2])
        if not accepted:
            await _reset(lease, timeout)
            codes = {r.code for r in rejected}
            raise RecipientRejected(
                f"all {len(rejected)} recipients were refused",
                provider="smtp",
                rejected=rejected,
                status=codes.pop() if len(codes) == 1 else None,
            )
        handed = pipelined and hand_over is not None and hand_over()
        after = follow() if pipelined and follow is not None and not handed else None
        if handed:  # the next task's envelope is written first: both leave in one packet
            conn.write_soon(payload + _END)
        elif after:  # the next message's envelope rides in the same packet
            conn.write(b"".join([payload, _END, after]))
            followed = True
        else:
            conn.write(payload + _END)  # raises, with nothing sent, if the link is gone
        mark = conn.queued - (len(after) if followed and after else 0)
        claim = conn.claim_reply(timeout=timeout)  # before the next task can claim its own
        phase = stage[0] = "body"
        code, text = await conn.reply(claim)
        if code != 250:
            raise SMTPReplyError(code, text)
    except (SMTPError, OSError) as exc:
        if phase == "body" and conn.sent < mark:
            phase = stage[0] = "data"  # the link was lost before the message could leave
        if handed:
            pass  # another task has the connection now; whatever broke, it will see it
        elif followed and isinstance(exc, SMTPReplyError) and exc.code != 421:
            lease.reusable = True  # in step: the next envelope's replies come next
        elif isinstance(exc, SMTPReplyError) and exc.code == 421:
            lease.conn.close()
        else:
            await _reset(lease, timeout)
        if pipelined and not isinstance(exc, SMTPReplyError):
            # No reply (or a drop) while reading a pipelined envelope's replies: a server may
            # hold them back until the last one, so it may be stuck on any later command too.
            phase = _PENDING.get(phase, phase)
        raise translate(exc, phase) from exc
    if not handed:
        lease.reusable = True
        lease.messages += 1
    return code, accepted, rejected


def _check_421(code: int, text: str) -> None:
    """421 means the server is closing the connection: stop reading, whatever comes next."""
    if code == 421:
        raise SMTPReplyError(code, text)


async def _reset(lease: Lease[SMTPSession], timeout: float | None) -> None:
    """RSET after a failed transaction so the connection can be reused; else drop it."""
    if lease.conn.alive:
        try:
            await lease.conn.wire.rset(timeout=timeout)
            lease.reusable = True
        except (SMTPError, OSError):
            lease.conn.close()
