"""SMTP sessions, and the pool that keeps them (one pool per host, port and login).

`SMTPConnector.open()` connects, greets, upgrades to TLS and logs in. It does not decide
what a failure means: the provider hands it `translate`, the one function that turns
aiosmtplib's exceptions into xcomm errors (`xcomm.email._smtp.translate`).

`ConnectionPool` lends connections one task at a time and guarantees:

- at most `max_size` connections are open; waiting for one is bounded by `pool_timeout`
  (then `PoolTimeout`);
- idle connections are reused newest first (LIFO);
- one idle longer than `idle_timeout` is closed at the next checkout (no background task);
- after `max_messages_per_connection` messages a connection says QUIT and is replaced;
- a connection goes back only when the borrower marks it clean (`lease.reusable = True`);
  an error, a cancelled task or a dropped link closes it, because its state is unknown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import msgspec

from xcomm._clock import Clock
from xcomm._config import Timeout
from xcomm._errors import CommunicationError, ConfigurationError, LifecycleError, PoolTimeout

with contextlib.suppress(ImportError):  # the provider reports a missing `xcomm[smtp]`
    import aiosmtplib

__all__ = ["ConnectionPool", "Lease", "PoolStatistics", "SMTPConnector", "SMTPSession"]

logger = logging.getLogger(__name__)

#: Maps an exception raised in a phase ("connect", "ehlo", "starttls", "auth") to an xcomm error.
Translate = Callable[[BaseException, str], CommunicationError]
_FQDN: list[str] = []


class SMTPSession:
    """One open SMTP connection: greeted, upgraded to TLS and logged in as configured."""

    __slots__ = ("encrypted", "quit_timeout", "smtp", "transport")

    def __init__(self, smtp: aiosmtplib.SMTP, *, encrypted: bool, quit_timeout: float | None):
        self.smtp = smtp
        self.encrypted = encrypted
        self.quit_timeout = quit_timeout
        self.transport = smtp.transport  # the final one (TLS, after STARTTLS)

    @property
    def alive(self) -> bool:
        """False once either side has closed the connection."""
        return self.smtp.is_connected

    @property
    def size_limit(self) -> int | None:
        """The largest message the server takes (EHLO SIZE), when it says."""
        size = self.smtp.esmtp_extensions.get("size", "")
        return int(size) if size.isdigit() and int(size) > 0 else None

    def close(self) -> None:
        """Close at once, without QUIT or a TLS goodbye (the state may be unknown)."""
        _abort(self.smtp, self.transport)

    async def aclose(self) -> None:
        """QUIT (errors ignored), then close; closes even when cancelled."""
        try:
            if self.smtp.is_connected:
                await self.smtp.quit(timeout=self.quit_timeout)
        except (aiosmtplib.SMTPException, OSError):
            pass
        finally:
            _abort(self.smtp, self.transport)

    def write_body(self, payload: bytes) -> None:
        """After a 354: write the dot-stuffed message and its end mark (raises if closed)."""
        protocol = self.smtp.protocol
        if protocol is None:
            raise aiosmtplib.SMTPServerDisconnected("Connection lost")
        protocol.write(payload + b".\r\n")

    async def read_reply(self, *, timeout: float | None) -> tuple[int, str]:
        """The reply to the message; no reply (timeout or drop) closes the connection."""
        protocol = self.smtp.protocol
        try:
            if protocol is None:
                raise aiosmtplib.SMTPServerDisconnected("Connection lost")
            reply = await protocol.read_response(timeout=timeout)
        except BaseException:
            self.close()
            raise
        return reply.code, reply.message


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
        context = await self._context() if self.use_tls or self.start_tls is not False else None
        smtp = aiosmtplib.SMTP(
            hostname=self.host,
            port=self.port,
            use_tls=self.use_tls,
            start_tls=False,
            tls_context=context if self.use_tls else None,
            local_hostname=self.local_hostname or await _local_fqdn(),
            timeout=self.timeout.read,
        )
        phase = "connect"
        try:
            await smtp.connect(timeout=self.timeout.connect)
            phase = "ehlo"
            await _hello(smtp)
            encrypted = self.use_tls
            if not encrypted and self.start_tls is not False:
                if smtp.supports_extension("starttls"):
                    phase = "starttls"
                    await smtp.starttls(
                        server_hostname=self.host,
                        tls_context=context,
                        timeout=self.timeout.connect,
                    )
                    phase = "ehlo"
                    await _hello(smtp)
                    encrypted = True
                elif self.start_tls:
                    raise ConfigurationError(
                        f"start_tls=True but {server} does not offer STARTTLS; nothing was sent. "
                        "Use use_tls=True for implicit TLS (port 465), or start_tls=None"
                    )
            if self.password is not None or self.oauth_token is not None:
                phase = "auth"
                await self._login(smtp, encrypted=encrypted)
        except BaseException as exc:
            _abort(smtp, smtp.transport)
            if isinstance(exc, aiosmtplib.SMTPException | OSError | ValueError):
                raise self.translate(exc, phase) from exc
            raise
        logger.debug("smtp: connected to %s (encrypted=%s)", server, encrypted)
        return SMTPSession(smtp, encrypted=encrypted, quit_timeout=self.timeout.read)

    async def _login(self, smtp: aiosmtplib.SMTP, *, encrypted: bool) -> None:
        server = f"{self.host}:{self.port}"
        if not encrypted and not self.plaintext_auth_ok:
            raise ConfigurationError(
                f"refusing to send credentials to {server} without TLS (it offers no STARTTLS); "
                "use use_tls=True, or allow_plaintext_auth=True only on a trusted network"
            )
        assert self.username is not None
        if self.oauth_token is None:
            await smtp.login(self.username, self.password or "")
            return
        if "xoauth2" not in smtp.server_auth_methods:
            raise ConfigurationError(f"oauth_token= is set but {server} does not offer XOAUTH2")
        token = self.oauth_token
        await smtp.auth_xoauth2(self.username, token if isinstance(token, str) else await token())

    async def _context(self) -> ssl.SSLContext:
        if self.tls_context is None:
            context = await asyncio.to_thread(ssl.create_default_context)
            if not self.validate_certs:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            self.tls_context = context
        return self.tls_context


def _bad(problem: str) -> ConfigurationError:
    return ConfigurationError(f"SMTP provider: {problem}")


def _whole(value: object) -> bool:
    """An int (not a bool) of at least 1."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _abort(smtp: aiosmtplib.SMTP, transport: asyncio.BaseTransport | None) -> None:
    """Drop the socket now. A plain close() of a TLS transport waits for the peer's goodbye,
    which may never come; an event loop closed meanwhile would leak the socket."""
    if isinstance(transport, asyncio.WriteTransport):
        transport.abort()
    smtp.close()


async def _hello(smtp: aiosmtplib.SMTP) -> None:
    try:
        await smtp.ehlo()
    except aiosmtplib.SMTPHeloError:
        if not smtp.is_connected:
            raise
        await smtp.helo()


async def _local_fqdn() -> str:
    """The name sent in EHLO, looked up once per process (it may need DNS)."""
    if not _FQDN:
        _FQDN.append(await asyncio.to_thread(socket.getfqdn))
    return _FQDN[0]


class PoolStatistics(msgspec.Struct, frozen=True, kw_only=True):
    """A snapshot of a connection pool.

    Attributes:
        size: open connections (idle plus in use).
        idle: connections waiting to be reused.
        in_use: connections lent to a task right now.
        max_size: the most connections the pool opens at once.
        connections_opened: connections opened since the pool was created.
        connections_closed: connections closed since the pool was created.
        messages_sent: messages sent over the pool's connections.
        waiting: tasks waiting for a free connection.
    """

    size: int
    idle: int
    in_use: int
    max_size: int
    connections_opened: int = 0
    connections_closed: int = 0
    messages_sent: int = 0
    waiting: int = 0


class Lease:
    """A pooled connection and its bookkeeping, lent to one task at a time.

    The borrower sets `reusable = True` when it leaves the connection clean (transaction
    finished or reset); otherwise the pool closes it when the lease ends.
    """

    __slots__ = ("conn", "last_used", "messages", "reusable")

    def __init__(self, conn: SMTPSession, now: float) -> None:
        self.conn = conn
        self.last_used = now
        self.messages = 0
        self.reusable = False


class ConnectionPool:
    """Sessions to one server, opened on demand by `opener` and reused (see the module doc)."""

    def __init__(
        self,
        opener: Callable[[], Awaitable[SMTPSession]],
        *,
        provider: str,
        clock: Clock,
        max_size: int = 4,
        max_messages_per_connection: int = 100,
        idle_timeout: float = 30.0,
        pool_timeout: float | None = 10.0,
    ) -> None:
        for setting, value in (
            ("pool_size", max_size),
            ("max_messages_per_connection", max_messages_per_connection),
        ):
            if not _whole(value):
                raise _bad(f"{setting} must be an int of at least 1, got {value!r}")
        if (
            isinstance(idle_timeout, bool)
            or not isinstance(idle_timeout, int | float)
            or not idle_timeout > 0
        ):
            raise _bad(f"idle_timeout must be a positive number of seconds, got {idle_timeout!r}")
        self._opener = opener
        self._provider = provider
        self._clock = clock
        self._max_size = max_size
        self._max_messages = max_messages_per_connection
        self._idle_timeout = idle_timeout
        self._pool_timeout = pool_timeout
        self._slots = asyncio.Semaphore(max_size)
        self._idle: list[Lease] = []
        self._in_use: set[Lease] = set()
        self._waiting = self._opened = self._closed_count = self._messages_sent = 0
        self._closed = False

    def statistics(self) -> PoolStatistics:
        """A snapshot of the pool's size and counters."""
        return PoolStatistics(
            size=len(self._idle) + len(self._in_use),
            idle=len(self._idle),
            in_use=len(self._in_use),
            max_size=self._max_size,
            connections_opened=self._opened,
            connections_closed=self._closed_count,
            messages_sent=self._messages_sent,
            waiting=self._waiting,
        )

    @asynccontextmanager
    async def connection(
        self, *, on_open: Callable[[], None] | None = None
    ) -> AsyncIterator[Lease]:
        """Borrow a connection for the `async with` block.

        `on_open` is called just before a new connection is opened (no idle one was usable),
        so the caller can tell waiting for the pool from connecting.

        Raises:
            LifecycleError: the pool is closed.
            PoolTimeout: no connection became free within the pool timeout.
            Whatever the opener raises when a new connection cannot be opened.
        """
        self._check_open()
        await self._acquire_slot()
        try:
            self._check_open()
            lease = self._take_idle()
            if lease is None:
                if on_open is not None:
                    on_open()
                lease = Lease(await self._opener(), self._clock.now())
                self._opened += 1
        except BaseException:
            self._slots.release()
            raise
        lease.reusable = False
        sent_before = lease.messages
        self._in_use.add(lease)
        try:
            yield lease
        finally:
            self._in_use.discard(lease)
            self._messages_sent += lease.messages - sent_before
            try:
                await self._give_back(lease)
            finally:
                self._slots.release()

    async def aclose(self) -> None:
        """QUIT idle connections and close them. Idempotent.

        Connections lent out at that moment are closed when they come back.
        """
        if self._closed:
            return
        self._closed = True
        idle, self._idle = self._idle, []
        self._closed_count += len(idle)
        await asyncio.gather(*(lease.conn.aclose() for lease in idle))

    def _check_open(self) -> None:
        if self._closed:
            raise LifecycleError(
                f"this {self._provider} connection pool is closed; "
                "create a new provider from an open CommManager"
            )

    async def _acquire_slot(self) -> None:
        if not self._slots.locked():
            await self._slots.acquire()
            return
        self._waiting += 1
        try:
            async with asyncio.timeout(self._pool_timeout):
                await self._slots.acquire()
        except TimeoutError as exc:
            raise PoolTimeout(
                f"no connection became free within {self._pool_timeout:g}s",
                provider=self._provider,
                detail=f"all {self._max_size} pooled connections are in use",
            ) from exc
        finally:
            self._waiting -= 1

    def _take_idle(self) -> Lease | None:
        """The newest idle connection; expired or dropped ones are closed on the way."""
        now, keep = self._clock.now(), []
        for lease in self._idle:
            if lease.conn.alive and now - lease.last_used <= self._idle_timeout:
                keep.append(lease)
            else:
                self._closed_count += 1
                lease.conn.close()
        self._idle = keep
        return keep.pop() if keep else None

    async def _give_back(self, lease: Lease) -> None:
        if not lease.reusable or not lease.conn.alive:
            self._closed_count += 1
            lease.conn.close()  # no goodbye and no await: safe in a cancelled task
        elif self._closed or lease.messages >= self._max_messages:
            self._closed_count += 1
            await lease.conn.aclose()
        else:
            lease.last_used = self._clock.now()
            self._idle.append(lease)
