"""Live monitoring of an IMAP folder: what `IMAPProvider.watch()` runs.

One **dedicated connection** (not from the pool: IDLE blocks a connection) is opened with the
provider's own connect/TLS/login code (`IMAPProvider._open`) and selects the folder. Then:

1. **Find new mail**: `UID SEARCH UID <last+1>:*` (`n:*` always includes the highest UID,
   even below `n`, so UIDs <= last are dropped here); with a query, a second
   `UID SEARCH UID <those> <criteria>` keeps the matching ones.
2. **Fetch and yield** them in UID order, `batch_size` at a time, through the same FETCH
   items and parser as `search()`; an `EmailQuery`'s client-side residual (or a query's
   `matches()`) filters them like `search()` does. `last` advances past every new UID,
   matching or not: a message is considered once, when it arrives.
3. **Wait**: IDLE (`_imap_idle.idle`) until the server pushes something or `idle_timeout`
   passes (RFC 2177: re-issue IDLE before 30 minutes), then back to 1. Without IDLE in
   CAPABILITY (or with `use_idle=False`): sleep `poll_interval`, NOOP, back to 1. An
   untagged NO/BAD pushed meanwhile counts as a transient failure (reconnect, with backoff):
   Dovecot answers every IDLE at once with `* NO Internal error` once the selected folder
   was deleted, which would otherwise spin.

**Exactly once.** `last` (the highest UID handed out or skipped) survives reconnects. If
UIDVALIDITY changed (the folder was deleted and recreated), old UIDs mean nothing: the watch
logs a warning and restarts from the new folder's UIDNEXT, so nothing already in the folder
is yielded again, and mail that arrived while disconnected is not yielded either.

**Reconnects.** The first connection follows the provider's retry policy and raises like any
call. After that, a dropped connection, a timeout or a transient server error (BYE,
`[UNAVAILABLE]`) is logged at WARNING and retried forever, with the policy's exponential
backoff (`backoff * 2**n`, at most `max_backoff`, jittered) reset once a connection has
survived a full wait. `AuthenticationError`, `ConfigurationError` and other refusals (an
unknown folder) are raised. Closing the generator (`aclose()`, leaving an
`async with contextlib.aclosing(...)` block, cancelling the task) LOGs OUT the connection.
Closing the provider (or its `CommManager`) ends a watch at once, even in the middle of an
IDLE or a backoff: the consumer's `async for` raises `LifecycleError`.
"""

from __future__ import annotations

import logging
import random
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING

from xcomm._errors import (
    CommunicationError,
    LifecycleError,
    ProviderError,
    ServiceUnavailable,
    TransportError,
    ValidationError,
)
from xcomm.email._imap_errors import translate
from xcomm.email._imap_fetch import FETCH_ITEMS, messages_from_fetch, uid_set
from xcomm.email._imap_parse import encode_folder, join_lines
from xcomm.email._imap_plan import Keep, plan_search
from xcomm.email._mailbox import SearchQuery
from xcomm.email._message import ReceivedMessage
from xcomm.email._query import EmailQuery

if TYPE_CHECKING:
    from xcomm.email._imap import IMAPProvider
    from xcomm.email._imap_wire import IMAPSession

__all__ = ["start_watch"]

logger = logging.getLogger("xcomm.email.imap.watch")


def start_watch(
    provider: IMAPProvider,
    query: str | SearchQuery | None,
    *,
    folder: str | None,
    idle_timeout: float,
    poll_interval: float,
    since_uid: int | None,
    include_existing: bool,
    use_idle: bool,
) -> AsyncGenerator[ReceivedMessage, None]:
    """Check the arguments and plan the query now; the generator connects when iterated."""
    if isinstance(query, EmailQuery) and (query.order or query.max_results is not None):
        raise ValidationError(
            "watch() yields messages as they arrive: drop sort_by()/limit() from the query"
        )
    criteria, where, keep = plan_search(
        query, folder=folder, default_folder=provider.folder, timeout=None, what="watches"
    )
    for name, value in (("idle_timeout", idle_timeout), ("poll_interval", poll_interval)):
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            raise ValidationError(f"{name} must be a positive number of seconds, got {value!r}")
    if since_uid is not None:
        if isinstance(since_uid, bool) or not isinstance(since_uid, int) or since_uid < 0:
            raise ValidationError(f"since_uid must be a non-negative int, got {since_uid!r}")
        if include_existing:
            raise ValidationError(
                "since_uid already says which existing messages to yield (those above it); "
                "drop include_existing=True"
            )
    last = since_uid if since_uid is not None else (0 if include_existing else None)
    return _watch(
        provider,
        criteria,
        where,
        keep,
        last=last,
        idle_timeout=float(idle_timeout),
        poll_interval=float(poll_interval),
        use_idle=use_idle,
    )


def _reconnectable(exc: CommunicationError) -> bool:
    return isinstance(exc, TransportError) or (isinstance(exc, ProviderError) and exc.transient)


def _uids(lines: list[bytes]) -> list[int]:
    return sorted({int(w) for line in lines for w in bytes(line).split() if w.isdigit()})


class _Watcher:
    """The dedicated session and what survives it: the folder's UIDVALIDITY and `last`."""

    def __init__(
        self,
        provider: IMAPProvider,
        criteria: str,
        folder: str,
        *,
        last: int | None,
        idle_timeout: float,
        poll_interval: float,
        use_idle: bool,
    ) -> None:
        self.provider, self.criteria, self.folder = provider, criteria, folder
        self.last = last  # None: start at the folder's UIDNEXT - 1 once connected
        self.validity: int | None = None
        self.session: IMAPSession | None = None
        self.idle_timeout, self.poll_interval, self.use_idle = idle_timeout, poll_interval, use_idle

    async def _command(
        self, operation: str, name: str, *args: str, prefix: str | None = None, fetch: bool = False
    ) -> list[bytes]:
        """One command on the session, failures translated (`operation` names it in errors)."""
        assert self.session is not None
        try:
            return await self.session.command(name, *args, prefix=prefix, fetch=fetch)
        except Exception as exc:
            raise translate(exc, phase=operation, server=self.provider._server) from exc

    async def connect(self) -> None:
        """Open and log in (the provider's code path, through `_call`), SELECT the folder."""
        from xcomm.email._imap_wire import quote

        provider = self.provider

        async def attempt(_: int) -> IMAPSession:
            session = await provider._open()
            try:
                await session.select(self.folder, quote(encode_folder(self.folder)))
                if self.use_idle and not session.has("IDLE"):
                    await session.refresh_capabilities()  # some servers list it after login only
            except BaseException as exc:
                session.close()
                if isinstance(exc, Exception):
                    raise translate(exc, phase="select", server=provider._server) from exc
                raise
            return session

        session, _, _ = await provider._call("watch", attempt)
        self.session = session
        if self.validity is not None and session.uid_validity != self.validity:
            self.last = None
            logger.warning(
                "IMAP folder %r on %s was recreated (UIDVALIDITY %s -> %s): watching for "
                "messages that arrive from now on; mail received while disconnected is skipped",
                self.folder,
                provider._server,
                self.validity,
                session.uid_validity,
            )
        self.validity = session.uid_validity
        if self.last is None:
            if session.uid_next is not None:
                self.last = session.uid_next - 1
            else:  # UIDNEXT is required by RFC 3501, but be lenient
                self.last = max(
                    _uids(await self._command("search", "SEARCH", "UID *", prefix="UID")), default=0
                )

    async def new_uids(self) -> tuple[list[int], set[int]]:
        """UIDs above `last` (ascending) and those of them the criteria match."""
        assert self.last is not None
        since = self.last
        found = await self._command("search", "SEARCH", f"UID {since + 1}:*", prefix="UID")
        new = [uid for uid in _uids(found) if uid > since]
        if not new or self.criteria.upper() == "ALL":
            return new, set(new)
        charset = () if self.criteria.isascii() else ("CHARSET", "UTF-8")
        matched = await self._command(
            "search", "SEARCH", *charset, f"UID {uid_set(new)} {self.criteria}", prefix="UID"
        )
        return new, set(_uids(matched))

    async def fetch(self, uids: list[int]) -> list[ReceivedMessage]:
        if not uids:
            return []
        assert self.session is not None
        lines = await self._command(
            "fetch", "FETCH", uid_set(uids), FETCH_ITEMS, prefix="UID", fetch=True
        )
        found = messages_from_fetch(
            join_lines(lines), folder=self.folder, uid_validity=self.session.uid_validity
        )
        wanted = set(uids)
        return sorted(
            (m.bind(self.provider) for m in found if m.uid in wanted), key=lambda m: m.uid
        )

    async def wait(self) -> None:
        """Until the server reports a change (IDLE) or for `poll_interval` (polling)."""
        session = self.session
        assert session is not None
        if self.use_idle and session.has("IDLE"):
            from xcomm.email._imap_idle import idle

            try:
                pushed = await idle(session, self.idle_timeout)
            except Exception as exc:
                raise translate(exc, phase="idle", server=self.provider._server) from exc
            logger.debug("IDLE on %r ended with %d pushed lines", self.folder, len(pushed))
        else:
            await self.provider._context.clock.sleep(self.poll_interval)
            pushed = await self._command("noop", "NOOP")
        for line in pushed:
            if line[:3] in (b"NO ", b"BAD"):
                # e.g. Dovecot's "* NO Internal error" at every IDLE once the selected folder
                # was deleted: a fresh connection (and SELECT) tells what happened
                raise ServiceUnavailable(
                    "the server reported a problem with the watched folder",
                    provider="imap",
                    detail=bytes(line).decode("utf-8", "replace"),
                )

    def discard(self) -> None:
        if self.session is not None:
            self.session.close()
            self.session = None

    async def aclose(self) -> None:
        session, self.session = self.session, None
        if session is not None:
            await session.aclose()


async def _watch(
    provider: IMAPProvider,
    criteria: str,
    folder: str,
    keep: Keep | None,
    *,
    last: int | None,
    idle_timeout: float,
    poll_interval: float,
    use_idle: bool,
) -> AsyncGenerator[ReceivedMessage, None]:
    """New messages of `folder`, each once, as they arrive (see the module docstring)."""
    watcher = _Watcher(
        provider,
        criteria,
        folder,
        last=last,
        idle_timeout=idle_timeout,
        poll_interval=poll_interval,
        use_idle=use_idle,
    )
    policy, clock = provider._retry, provider._context.clock
    failures = 0
    try:
        await watcher.connect()
        while True:
            if provider.closed:
                raise LifecycleError("the IMAP provider was closed while watching")
            try:
                if watcher.session is None:
                    await watcher.connect()
                new, wanted = await watcher.new_uids()
                for start in range(0, len(new), provider.batch_size):
                    chunk = new[start : start + provider.batch_size]
                    for message in await watcher.fetch([u for u in chunk if u in wanted]):
                        if keep is None or await keep(message):
                            watcher.last = message.uid  # handed out: never again
                            yield message
                    watcher.last = max(watcher.last or 0, chunk[-1])
                if not new:
                    with provider._until_closed():
                        await watcher.wait()
                    failures = 0
            except CommunicationError as exc:
                if not _reconnectable(exc):
                    raise
                watcher.discard()
                failures += 1
                ceiling = min(policy.max_backoff, policy.backoff * 2 ** (failures - 1))
                delay = random.uniform(ceiling / 2, ceiling) if policy.jitter else ceiling
                logger.warning(
                    "watching IMAP folder %r on %s: %s (%s); reconnecting in %.1fs (attempt %d)",
                    folder,
                    provider._server,
                    type(exc).__name__,
                    exc,
                    delay,
                    failures,
                )
                with provider._until_closed():
                    await clock.sleep(delay)
    finally:
        await watcher.aclose()
