"""The IMAP provider: search and read a mailbox through a small pool of logged-in sessions.

Sessions come from the shared `ConnectionPool` (one task per session at a time; a session
that failed mid-command is closed, one that got a NO/BAD is kept). The wire is in
`_imap_wire.py`, parsing in `_imap_parse.py`/`_imap_fetch.py`, and every failure is mapped
to an xcomm error by `_imap_errors.translate()` (its module docstring has the table).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

from xcomm._config import RetryPolicy, Timeout
from xcomm._errors import (
    CommunicationError,
    ConfigurationError,
    ProviderError,
    ResponseTimeout,
    ValidationError,
)
from xcomm._provider import ProviderContext
from xcomm._retry import Limiter
from xcomm.email._headers import decode_transfer
from xcomm.email._imap_actions import IMAPActions
from xcomm.email._imap_errors import translate
from xcomm.email._imap_fetch import (
    FETCH_ITEMS,
    body_groups,
    body_items,
    body_section,
    fill_bodies,
    messages_from_fetch,
    part_content,
    uid_set,
)
from xcomm.email._imap_parse import encode_folder, join_lines, parse_list
from xcomm.email._imap_plan import check_folder, plan_search
from xcomm.email._mailbox import FolderStatus, MailboxProvider, SearchQuery
from xcomm.email._message import Folder, MessageView, ReceivedMessage
from xcomm.email._pool import ConnectionPool, PoolStatistics
from xcomm.email._query import EmailQuery
from xcomm.email._smtp import plaintext_auth_allowed

if TYPE_CHECKING:
    from xcomm.email._imap_wire import IMAPSession

__all__ = ["IMAPProvider"]

T = TypeVar("T")


class IMAPProvider(IMAPActions, MailboxProvider):
    """Read a mailbox over IMAP through a small pool of logged-in, encrypted connections.

    Example:
        ```python
        async with CommManager() as comm:
            imap = comm.imap("imap.example.com", username="me@example.com", password="...")
            for message in await imap.search("UNSEEN"):
                print(message.uid, message.sender, message.subject)
                print(await message.text())
        ```

    TLS: `use_tls=True` (the default, port 993) is implicit TLS; with `use_tls=False`,
    `start_tls=True` requires STARTTLS (a server without it raises `ConfigurationError`
    before any credential is sent), `None` upgrades when offered and `False` never does.
    Certificates are verified unless `validate_certs=False`. Credentials never cross an
    unencrypted connection unless `allow_plaintext_auth=True` or the host is loopback.

    Log in with `password=` (AUTHENTICATE PLAIN when offered, else LOGIN) or
    `oauth_token=` (XOAUTH2; a string or an async callable returning a fresh token).

    Acting on messages (`set_flags`, `set_labels`, `copy`, `move`, `delete`, `batch_mode`)
    is in `_imap_actions.py`.
    """

    name = "imap"

    def __init__(
        self,
        context: ProviderContext,
        *,
        limiter: Limiter | None,
        retry: RetryPolicy | None = None,
        host: str,
        port: int = 993,
        username: str,
        password: str | None = None,
        oauth_token: str | Callable[[], Awaitable[str]] | None = None,
        use_tls: bool = True,
        start_tls: bool | None = False,
        tls_context: ssl.SSLContext | None = None,
        validate_certs: bool = True,
        folder: str = "INBOX",
        pool_size: int = 2,
        idle_timeout: float = 60.0,
        batch_size: int = 100,
        timeout: Timeout | float | None = None,
        allow_plaintext_auth: bool = False,
    ) -> None:
        super().__init__(context, limiter=limiter, retry=retry)
        if not isinstance(host, str) or not host.strip():
            raise ConfigurationError("IMAP provider: host must be a host name or address")
        if not isinstance(username, str) or not username:
            raise ConfigurationError("IMAP provider: username is required")
        if (password is None) == (oauth_token is None):
            raise ConfigurationError("IMAP provider: give password= or oauth_token= (one)")
        if use_tls and start_tls:
            raise ConfigurationError(
                "IMAP provider: use_tls=True is implicit TLS already; use start_tls=True "
                "with use_tls=False (usually port 143)"
            )
        if not (isinstance(batch_size, int) and 1 <= batch_size <= 1000):
            raise ConfigurationError("IMAP provider: batch_size must be an int in 1..1000")
        check_folder(folder)
        self.host, self.port, self.username, self.folder = host.strip(), port, username, folder
        self.batch_size = batch_size
        self._password, self._oauth_token = password, oauth_token
        self._use_tls, self._start_tls = use_tls, start_tls
        if tls_context is None:
            tls_context = ssl.create_default_context()
            if not validate_certs:
                tls_context.check_hostname = False
                tls_context.verify_mode = ssl.CERT_NONE
        self._tls_context = tls_context
        self._plaintext_ok = plaintext_auth_allowed(host, allow_plaintext_auth=allow_plaintext_auth)
        self._timeout = context.timeout if timeout is None else Timeout.coerce(timeout)
        self._server = f"{self.host}:{port}"
        self._pool: ConnectionPool[IMAPSession] = ConnectionPool(
            self._open,
            provider=self.name,
            clock=context.clock,
            max_size=pool_size,
            max_messages_per_connection=1 << 30,
            idle_timeout=idle_timeout,
            pool_timeout=self._timeout.pool,
        )

    def __repr__(self) -> str:
        tls = (
            "implicit"
            if self._use_tls
            else {True: "starttls", None: "opportunistic"}.get(self._start_tls, "off")
        )
        return (
            f"IMAPProvider(host={self.host!r}, port={self.port}, "
            f"username={self.username!r}, tls={tls!r})"
        )

    def statistics(self) -> PoolStatistics:
        """A snapshot of the connection pool."""
        return self._pool.statistics()

    async def aclose(self) -> None:
        """LOGOUT idle connections and close the pool. Idempotent."""
        await super().aclose()
        await self._pool.aclose()

    # -- connections ---------------------------------------------------------------------------

    async def _open(self) -> IMAPSession:
        """A new logged-in session (the pool's opener); raises xcomm errors only."""
        try:
            from xcomm.email._imap_wire import open_session
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ConfigurationError(
                'IMAP needs aioimaplib: pip install "xcomm[imap]" (aioimaplib is GPL-3.0)'
            ) from exc
        phase = "connect"
        session: IMAPSession | None = None
        try:
            async with asyncio.timeout(self._timeout.connect):
                session, _ = await open_session(
                    self.host,
                    self.port,
                    tls=self._tls_context if self._use_tls else None,
                    server_hostname=self.host,
                    connect_timeout=self._timeout.connect,
                    timeout=self._timeout.read,
                )
                if not self._use_tls and self._start_tls is not False:
                    phase = "starttls"
                    if session.has("STARTTLS"):
                        await session.starttls(self._tls_context, self.host)
                    elif self._start_tls:
                        raise ConfigurationError(
                            f"{self._server} does not offer STARTTLS and start_tls=True "
                            "requires it; nothing was sent"
                        )
                if session.protocol.state != "AUTH":
                    phase = "auth"
                    await self._login(session)
            return session
        except BaseException as exc:
            if session is not None:
                session.close()
            if isinstance(exc, CommunicationError | ValidationError):
                raise
            if isinstance(exc, Exception):
                raise translate(exc, phase=phase, server=self._server) from exc
            raise

    async def _login(self, session: IMAPSession) -> None:
        if not session.encrypted and not self._plaintext_ok:
            raise ConfigurationError(
                f"refusing to send credentials to {self._server} over an unencrypted "
                "connection; use use_tls=True, start_tls=True, or allow_plaintext_auth=True"
            )
        user = self.username
        if self._oauth_token is not None:
            token = self._oauth_token
            value = token if isinstance(token, str) else await token()
            sasl = f"user={user}\x01auth=Bearer {value}\x01\x01".encode()
            await session.authenticate("XOAUTH2", sasl)
        elif session.has("AUTH=PLAIN"):
            assert self._password is not None
            await session.authenticate("PLAIN", f"\0{user}\0{self._password}".encode())
        else:
            assert self._password is not None
            await session.login(user, self._password)

    async def _run(
        self,
        operation: str,
        folder: str | None,
        work: Callable[[IMAPSession], Awaitable[T]],
        timeout: float | None = None,
    ) -> T:
        """`work(session)` on a pooled session with `folder` selected, through `_call`."""
        from xcomm.email._imap_parse import encode_folder
        from xcomm.email._imap_wire import IMAPReplyError, quote

        async def attempt(_: int) -> T:
            lease = await self._pool.checkout()
            session = lease.conn
            try:
                if folder is not None and session.selected != folder:
                    await session.select(folder, quote(encode_folder(folder)))
                result = await work(session)
                lease.reusable = True
                return result
            except IMAPReplyError as exc:
                lease.reusable = session.alive  # a NO/BAD leaves the session usable
                raise translate(exc, phase=operation, server=self._server) from exc
            except Exception as exc:
                raise translate(exc, phase=operation, server=self._server) from exc
            finally:
                await self._pool.checkin(lease)

        if timeout is None:
            result, _, _ = await self._call(operation, attempt)
            return result
        deadline = asyncio.timeout(timeout)
        try:
            async with deadline:
                result, _, _ = await self._call(operation, attempt)
        except TimeoutError as exc:
            if not deadline.expired():
                raise
            raise ResponseTimeout(
                f"{operation}() timed out after {timeout:g}s", provider=self.name
            ) from exc
        return result

    # -- reading -------------------------------------------------------------------------------

    async def _search_uids(self, criteria: str, folder: str, timeout: float | None) -> list[int]:
        async def work(session: IMAPSession) -> list[int]:
            args = (criteria,) if criteria.isascii() else ("CHARSET", "UTF-8", criteria)
            lines = await session.command("SEARCH", *args, prefix="UID")
            return sorted({int(w) for line in lines for w in bytes(line).split() if w.isdigit()})

        return await self._run("search", folder, work, timeout)

    async def _fetch(
        self,
        uids: list[int],
        folder: str,
        timeout: float | None,
        *,
        bodies: bool = False,
        sync: bool = False,
    ) -> list[ReceivedMessage]:
        async def work(session: IMAPSession) -> list[ReceivedMessage]:
            lines = await session.command(
                "FETCH", uid_set(uids), FETCH_ITEMS, prefix="UID", fetch=True
            )
            if sync and not any(b" FETCH " in bytes(line) for line in lines):
                # A pooled session learns of new mail only when the server tells it (RFC
                # 3501 §5.2): NOOP lets it, then look again.
                await session.command("NOOP")
                lines = await session.command(
                    "FETCH", uid_set(uids), FETCH_ITEMS, prefix="UID", fetch=True
                )
            found = messages_from_fetch(
                join_lines(lines), folder=folder, uid_validity=session.uid_validity
            )
            wanted = set(uids)
            batch = sorted((m.bind(self) for m in found if m.uid in wanted), key=lambda m: m.uid)
            if bodies:  # one FETCH per layout of parts, not two round trips per message
                for sections, group in body_groups(batch).items():
                    lines = await session.command(
                        "FETCH",
                        uid_set([m.uid for m in group]),
                        body_items(sections),
                        prefix="UID",
                        fetch=True,
                    )
                    fill_bodies(join_lines(lines), group)
            return batch

        return await self._run("fetch", folder, work, timeout)

    async def search(
        self,
        query: str | SearchQuery = "ALL",
        /,
        *,
        folder: str | None = None,
        limit: int | None = None,
        bodies: bool = False,
        timeout: float | None = None,
    ) -> list[ReceivedMessage]:
        """Messages matching `query` (IMAP criteria such as `'UNSEEN FROM "bob"'`, or an
        `EmailQuery`), oldest first; with `limit`, the newest `limit` of them.

        A query with `matches(message)` also filters the fetched messages with it.
        `bodies=True` reads every message's text and HTML in the same batches (a few FETCH
        commands per batch instead of a round trip per `text()`/`html()` call).
        """
        found = [m async for m in self._iter(query, folder, None, limit, timeout, bodies)]
        if isinstance(query, EmailQuery):  # its own sort and limit, after the client filter
            views = query.sort_and_limit([MessageView(m) for m in found])
            return [view.message for view in views]
        return found

    def iter_search(
        self,
        query: str | SearchQuery = "ALL",
        /,
        *,
        folder: str | None = None,
        batch_size: int | None = None,
        bodies: bool = False,
    ) -> AsyncIterator[ReceivedMessage]:
        """Like `search()`, but yields messages as each batch of `batch_size` UIDs arrives
        (default: the provider's `batch_size`, 100)."""
        return self._iter(query, folder, batch_size, None, None, bodies)

    async def _iter(
        self,
        query: str | SearchQuery,
        folder: str | None,
        batch_size: int | None,
        limit: int | None,
        timeout: float | None,
        bodies: bool = False,
    ) -> AsyncIterator[ReceivedMessage]:
        if batch_size is not None and isinstance(query, EmailQuery) and query.order:
            raise ValidationError(
                "iter_search() streams in UID order; a sorted query needs search()"
            )
        criteria, where, keep = plan_search(
            query, folder=folder, default_folder=self.folder, timeout=timeout
        )
        size = self.batch_size if batch_size is None else batch_size
        if not (isinstance(size, int) and size >= 1):
            raise ValidationError("batch_size must be a positive int")
        if limit is not None and not (isinstance(limit, int) and limit >= 0):
            raise ValidationError("limit must be a non-negative int")
        uids = await self._search_uids(criteria, where, timeout)
        if limit is not None:
            uids = uids[len(uids) - limit :] if limit else []
        for start in range(0, len(uids), size):
            batch = uids[start : start + size]
            for message in await self._fetch(batch, where, timeout, bodies=bodies):
                if keep is None or await keep(message):
                    yield message

    async def get(
        self, key: int | str, /, *, folder: str | None = None, timeout: float | None = None
    ) -> ReceivedMessage | None:
        """The message with UID `key` (a number, or `message.id`'s text) in `folder`
        (default: the provider's), or None."""
        uid = int(key) if isinstance(key, str) and key.isdigit() else key
        if isinstance(uid, bool) or not isinstance(uid, int) or uid < 1:
            raise ValidationError(f"uid must be a positive int, got {key!r}")
        where = folder or self.folder
        check_folder(where)
        found = await self._fetch([uid], where, timeout, sync=True)
        return found[0] if found else None

    async def fetch_part(
        self,
        message: ReceivedMessage,
        section: str,
        encoding: str,
        /,
        *,
        timeout: float | None = None,
    ) -> bytes:
        """One part of `message` (`BODY.PEEK[section]`: the \\Seen flag is left alone),
        transfer encoding undone."""
        item = body_section(section)

        async def work(session: IMAPSession) -> bytes:
            if message.uid_validity is not None and session.uid_validity not in (
                None,
                message.uid_validity,
            ):
                raise ProviderError(
                    f"folder {message.folder!r} was recreated (UIDVALIDITY changed); search again",
                    provider=self.name,
                )
            lines = await session.command("FETCH", str(message.uid), item, prefix="UID", fetch=True)
            return part_content(join_lines(lines), section)

        raw = await self._run("fetch", message.folder, work, timeout)
        return decode_transfer(raw, encoding)

    # -- folders -------------------------------------------------------------------------------

    async def folders(self, *, timeout: float | None = None) -> list[Folder]:
        """Every folder (LIST), names decoded from modified UTF-7."""

        async def work(session: IMAPSession) -> list[Folder]:
            lines = await session.command("LIST", '""', '"*"')
            return [
                Folder(name=name, delimiter=delimiter, flags=flags)
                for flags, delimiter, name in parse_list(join_lines(lines))
            ]

        return await self._run("list", None, work, timeout)

    async def create_folder(self, name: str, /, *, timeout: float | None = None) -> None:
        """Create folder `name` (any Unicode; sent in modified UTF-7)."""
        check_folder(name)
        from xcomm.email._imap_wire import quote

        async def work(session: IMAPSession) -> None:
            await session.command("CREATE", quote(encode_folder(name)))

        await self._run("create", None, work, timeout)

    async def select(self, folder: str, /, *, timeout: float | None = None) -> FolderStatus:
        """Make `folder` the default for later calls; returns its message count."""
        check_folder(folder)
        from xcomm.email._imap_wire import quote

        async def work(session: IMAPSession) -> FolderStatus:
            count = await session.select(folder, quote(encode_folder(folder)))
            return FolderStatus(name=folder, messages=count, uid_validity=session.uid_validity)

        status = await self._run("select", None, work, timeout)
        self.folder = folder
        return status

    # -- monitoring ----------------------------------------------------------------------------

    def watch(
        self,
        query: str | SearchQuery | None = None,
        *,
        folder: str | None = None,
        idle_timeout: float = 29 * 60,
        poll_interval: float = 30.0,
        since_uid: int | None = None,
        include_existing: bool = False,
        use_idle: bool = True,
    ) -> AsyncGenerator[ReceivedMessage, None]:
        """New messages of `folder` (matching `query`, if given) as they arrive, each once,
        in UID order, over a dedicated connection: IDLE (re-issued every `idle_timeout`
        seconds), or a check every `poll_interval` seconds when the server lacks IDLE or
        `use_idle=False`. Reconnects with backoff; see `docs/monitoring.md`.

        Starts after the newest message, or after `since_uid`; `include_existing=True`
        yields what the folder holds first. Close it with `contextlib.aclosing()`.
        """
        from xcomm.email._imap_watch import start_watch

        return start_watch(self, query, folder=folder, idle_timeout=idle_timeout,
                           poll_interval=poll_interval, since_uid=since_uid,
                           include_existing=include_existing, use_idle=use_idle)  # fmt: skip
