"""Following an Outlook folder with Graph delta queries: what `GraphProvider.watch()` runs.

1. **Start** from `delta_link=`, else the checkpoint in `state`, else a first round of
   `GET .../mailFolders/{folder}/messages/delta?changeType=created` (with the listing's
   `$select`/`$expand`, `Prefer: odata.maxpagesize=100`), which lists the folder's current
   messages page by page (`@odata.nextLink`) and ends with an `@odata.deltaLink`: new mail
   only, unless `include_existing=True` yields those messages first.
2. **Poll** the saved deltaLink every `poll_interval` seconds: Graph answers the messages
   created in the folder since (moved in or arrived; `changeType=created` leaves updates and
   deletions out, and `@removed` entries are skipped), all pages, then a new deltaLink.
   Each message is checked with the query (`query.matches()`: delta has no search), and
   yielded, oldest first.
3. **Each message once.** The checkpoint (`GraphCheckpoint`) keeps the deltaLink, the newest
   `receivedDateTime` handed out and the ids of the last `SEEN_LIMIT` messages handed out.
   With `state`, it is saved after the consumer comes back for the next message, at the end
   of each round and when the watch is closed: after a crash, the round is read again and
   only the message being handled then is yielded twice; after a clean stop, none is.
4. **Expired deltaLink** (410 Gone, or `syncStateNotFound` / `resyncRequired`): a warning,
   then a new first round; its messages received since the newest one handed out, less
   those already seen, are yielded.
5. **Failures.** The first call raises like any call. After that, transport errors and
   transient Graph errors (5xx, throttling) that outlast the retry policy are logged at
   WARNING and retried with the policy's backoff, forever; others (auth, a folder that is
   gone) are raised. Closing the provider (or its manager) ends the wait at once.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import AsyncGenerator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import anyio
import msgspec

from xcomm._errors import CommunicationError, ProviderError, ValidationError
from xcomm.email._graph_batch import segment
from xcomm.email._graph_mailbox import graph_check
from xcomm.email._graph_parse import EXPAND, MESSAGE_FIELDS
from xcomm.email._imap_plan import Keep
from xcomm.email._mailbox import SearchQuery
from xcomm.email._message import ReceivedMessage
from xcomm.email._watch import (
    SEEN_LIMIT,
    CheckpointStore,
    checkpoint_store,
    handed_out,
    pause_after_failure,
    watch_check,
)

if TYPE_CHECKING:
    from xcomm.email._graph import GraphProvider

__all__ = ["SEEN_LIMIT", "GraphCheckpoint", "is_expired", "start_watch"]

logger = logging.getLogger("xcomm.outlook.watch")

_PAGE = "odata.maxpagesize=100"
_EXPIRED_CODES = frozenset({"syncstatenotfound", "resyncrequired", "syncstateinvalid"})


class GraphCheckpoint(msgspec.Struct, frozen=True, kw_only=True):
    """Where an Outlook watch got to: what `state=` stores, to go on after a restart.

    Attributes:
        delta_link: the `@odata.deltaLink` to poll next ("" before the first round ends).
        received_ms: the newest `receivedDateTime` (epoch ms) handed out, or when the watch
            started: after an expired deltaLink, mail received since is yielded.
        seen: ids of the last messages handed out, newest last.
    """

    delta_link: str = ""
    received_ms: int = 0
    seen: tuple[str, ...] = ()

    def handed_out(self, message: ReceivedMessage) -> GraphCheckpoint:
        """This checkpoint once `message` was handed out."""
        return msgspec.structs.replace(self, **handed_out(self.seen, self.received_ms, message))


def is_expired(error: ProviderError) -> bool:
    """Whether Graph says a deltaLink can no longer be used (a new first round is needed)."""
    return error.status == 410 or (error.error_code or "").lower() in _EXPIRED_CODES


def start_watch(
    provider: GraphProvider,
    query: str | SearchQuery | None,
    *,
    folder: str,
    poll_interval: float,
    include_existing: bool,
    delta_link: str | None,
    state: str | os.PathLike[str] | CheckpointStore | None,
) -> AsyncGenerator[ReceivedMessage, None]:
    """Check the arguments now; the generator starts calling Graph when iterated."""
    keep = watch_check(query, lambda q: graph_check(q, None), service="Graph's delta")
    if isinstance(poll_interval, bool) or not isinstance(poll_interval, int | float):
        raise ValidationError(f"poll_interval must be a number of seconds, got {poll_interval!r}")
    if not poll_interval > 0:
        raise ValidationError(f"poll_interval must be positive, got {poll_interval!r}")
    if delta_link is not None and not (
        isinstance(delta_link, str) and delta_link.startswith("https://graph.microsoft.com/")
    ):
        raise ValidationError(
            f"delta_link must be a Graph @odata.deltaLink URL, got {delta_link!r}"
        )
    store = checkpoint_store(state, GraphCheckpoint, what="Outlook watch")
    watcher = _Watcher(provider, folder, keep, store, float(poll_interval))
    return watcher.run(delta_link, include_existing)


def _oldest_first(messages: list[ReceivedMessage]) -> list[ReceivedMessage]:
    floor = datetime.min.replace(tzinfo=UTC)
    return sorted(messages, key=lambda m: m.received_at or floor)


class _Watcher:
    """The state of one watch: its checkpoint, the folder followed and the check."""

    def __init__(
        self,
        provider: GraphProvider,
        folder: str,
        keep: Keep | None,
        store: CheckpointStore | None,
        poll_interval: float,
    ) -> None:
        self.provider, self.folder, self.keep = provider, folder, keep
        self.store, self.poll_interval = store, poll_interval
        self.checkpoint = GraphCheckpoint()
        self.saved: GraphCheckpoint | None = None

    async def save(self) -> None:
        checkpoint = self.checkpoint
        if self.store is not None and checkpoint.delta_link and checkpoint != self.saved:
            await self.store.save(checkpoint)
            self.saved = checkpoint

    async def first_round(self) -> tuple[list[ReceivedMessage], str]:
        """A new round over the whole folder: its messages and the deltaLink it ends with."""
        folder_id = await self.provider._folder_id(self.folder)
        url = f"{self.provider._base}/mailFolders/{segment(folder_id)}/messages/delta"
        params = {"changeType": "created", "$select": MESSAGE_FIELDS, "$expand": EXPAND}
        return await self.round(url, params)

    async def round(
        self, url: str, params: dict[str, Any] | None
    ) -> tuple[list[ReceivedMessage], str]:
        """Every page of a delta round from `url`: the messages, and the new deltaLink."""
        provider = self.provider
        found: list[ReceivedMessage] = []
        next_url: str | None = url
        while next_url is not None:
            answer, _, _ = await provider._api("messages.delta", "GET", next_url, params=params,
                                               prefer=_PAGE, idempotent=True)  # fmt: skip
            params = None
            for item in answer.get("value") or ():
                if isinstance(item, dict) and "@removed" not in item and item.get("id"):
                    found.append(provider._listed(item, self.folder, False))
            link = provider._next_url(answer, "@odata.deltaLink")
            if link is not None:
                return _oldest_first(found), link
            next_url = provider._next_url(answer, "@odata.nextLink")
            if next_url is None:
                raise ProviderError("Graph's delta answer has neither a nextLink nor a "
                                    "deltaLink", provider="outlook")  # fmt: skip
        raise AssertionError("unreachable")  # pragma: no cover

    async def start(self, delta_link: str | None) -> list[ReceivedMessage] | None:
        """Find the starting checkpoint; the folder's current messages when it is new."""
        if delta_link is not None:
            self.checkpoint = GraphCheckpoint(delta_link=delta_link,
                                              received_ms=int(time.time() * 1000))  # fmt: skip
            return None
        saved = None if self.store is None else await self.store.load()
        if saved is not None:
            if not isinstance(saved, GraphCheckpoint):
                raise ValidationError("state.load() must return a GraphCheckpoint or None")
            self.checkpoint = self.saved = saved
            return None
        started = int(time.time() * 1000)
        existing, link = await self.first_round()
        self.checkpoint = GraphCheckpoint(delta_link=link, received_ms=started)
        await self.save()
        return existing

    async def poll(self) -> tuple[list[ReceivedMessage], str]:
        """The messages created since the checkpoint (a new round after an expired
        deltaLink: those received since the newest handed out), and the next deltaLink."""
        try:
            return await self.round(self.checkpoint.delta_link, None)
        except ProviderError as exc:
            if not is_expired(exc):
                raise
        logger.warning(
            "Graph no longer has this watch's deltaLink (folder %r); starting a new round "
            "and yielding the mail received since the last message seen", self.folder,
        )  # fmt: skip
        messages, link = await self.first_round()
        since = self.checkpoint.received_ms
        fresh = [m for m in messages
                 if m.received_at is None or m.received_at.timestamp() * 1000 >= since]  # fmt: skip
        return fresh, link

    async def run(
        self, delta_link: str | None, include_existing: bool
    ) -> AsyncGenerator[ReceivedMessage, None]:
        provider = self.provider
        failures = 0
        try:
            existing = await self.start(delta_link)
            for message in existing if include_existing and existing else ():
                if self.keep is None or await self.keep(message):
                    self.checkpoint = self.checkpoint.handed_out(message)
                    yield message
                    await self.save()
            while True:
                try:
                    messages, link = await self.poll()
                    failures = 0
                except CommunicationError as exc:
                    failures += 1
                    await pause_after_failure(provider, exc, failures,
                                              what=f"Outlook folder {self.folder!r}")  # fmt: skip
                    continue
                seen = set(self.checkpoint.seen)
                for message in messages:
                    if message.id in seen:
                        continue
                    if self.keep is None or await self.keep(message):
                        self.checkpoint = self.checkpoint.handed_out(message)
                        yield message
                        await self.save()
                self.checkpoint = msgspec.structs.replace(self.checkpoint, delta_link=link)
                await self.save()
                if not messages:
                    await self.sleep(self.poll_interval)
        finally:
            with anyio.CancelScope(shield=True):
                await self.save()

    async def sleep(self, seconds: float) -> None:
        with self.provider._until_closed():
            await self.provider._context.clock.sleep(seconds)
