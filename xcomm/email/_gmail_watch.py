"""Following a Gmail mailbox: what `GmailProvider.watch()` runs.

Gmail records every change in a history (`users.history.list`, 2 quota units a call); the
watch follows it from a history id:

1. **Start** from `history_id=`, else the checkpoint in `state`, else the mailbox's current
   history id (`getProfile`, 1 unit): new mail only. `include_existing=True` first yields
   the folder's current messages (a search).
2. **Poll** `history.list?startHistoryId=<id>&historyTypes=messageAdded&labelId=<folder>`
   every `poll_interval` seconds, all pages; each added message is read (`messages.get`,
   structure only, or `format=full` when the query looks into bodies), checked with the
   query (`query.matches()`: the whole query runs locally, history has no search) and
   yielded, oldest first. The id moves past each message's history record as it is handed
   out, and to the answer's `historyId` once all are.
3. **Each message once.** The checkpoint keeps the history id, the newest `internalDate`
   handed out and the ids of the last `SEEN_LIMIT` messages handed out (a message added
   twice, or listed again after a resync, is skipped). With `state`, it is saved after the
   consumer comes back for the next message and when the watch is closed: after a crash,
   the message being handled then is yielded again; after a clean stop, nothing is.
4. **Expired history** (404: Gmail keeps roughly a week of it): a warning, then a resync:
   the current history id from `getProfile`, and the messages received since the newest
   one handed out (`messages.list`, `after:<epoch seconds>`), less those already seen.
5. **Failures.** The first call raises like any call. After that, transport errors and
   transient Gmail errors (5xx, rate limits) that outlast the retry policy are logged at
   WARNING and retried with the policy's backoff, forever; others (auth, a label that is
   gone) are raised. The limiter charges each call's quota units.

Close it with `contextlib.aclosing()` (or cancel the task): the checkpoint is saved then.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import AsyncGenerator, Iterable
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import anyio
import msgspec

from xcomm._errors import (
    CommunicationError,
    ProviderError,
    ValidationError,
)
from xcomm.email._gmail_parse import GmailView
from xcomm.email._imap_plan import Keep, client_check
from xcomm.email._mailbox import SearchQuery
from xcomm.email._message import ReceivedMessage
from xcomm.email._query import EmailQuery
from xcomm.email._watch import (
    SEEN_LIMIT,
    CheckpointStore,
    checkpoint_store,
    handed_out,
    pause_after_failure,
    watch_check,
)

if TYPE_CHECKING:
    from xcomm.email._gmail import GmailProvider

__all__ = ["SEEN_LIMIT", "GmailCheckpoint", "GmailWatchState", "start_watch"]

logger = logging.getLogger("xcomm.email.gmail.watch")

_HISTORY_PAGE = 500


class GmailCheckpoint(msgspec.Struct, frozen=True, kw_only=True):
    """Where a Gmail watch got to: what `state=` stores, to go on after a restart.

    Attributes:
        history_id: the history id to follow from.
        received_ms: the newest `internalDate` (epoch ms) handed out, or when the watch
            started: a resync lists the mail received since.
        seen: ids of the last messages handed out, newest last.
    """

    history_id: str
    received_ms: int = 0
    seen: tuple[str, ...] = ()

    def moved_to(self, history_id: str | None) -> GmailCheckpoint:
        """This checkpoint going on from `history_id` (never back)."""
        if history_id is None or not history_id.isdigit():
            return self
        if self.history_id.isdigit() and int(history_id) <= int(self.history_id):
            return self
        return msgspec.structs.replace(self, history_id=history_id)

    def handed_out(self, message: ReceivedMessage) -> GmailCheckpoint:
        """This checkpoint once `message` was handed out."""
        return msgspec.structs.replace(self, **handed_out(self.seen, self.received_ms, message))


@runtime_checkable
class GmailWatchState(Protocol):
    """Where a watch keeps its `GmailCheckpoint` (`state=`): a file path, or your own store
    (a database row, Redis) with these two methods."""

    async def load(self) -> GmailCheckpoint | None:
        """The saved checkpoint, or None when there is none yet."""
        ...

    async def save(self, checkpoint: GmailCheckpoint, /) -> None:
        """Replace the saved checkpoint."""
        ...


def start_watch(
    provider: GmailProvider,
    query: str | SearchQuery | None,
    *,
    folder: str,
    poll_interval: float,
    include_existing: bool,
    history_id: str | None,
    state: str | os.PathLike[str] | GmailWatchState | None,
) -> AsyncGenerator[ReceivedMessage, None]:
    """Check the arguments now; the generator starts calling Gmail when iterated."""
    keep = watch_check(query, lambda q: client_check(q, None, GmailView),
                       service="Gmail's history")  # fmt: skip
    bodies = isinstance(query, EmailQuery) and query.reads_bodies()
    if isinstance(poll_interval, bool) or not isinstance(poll_interval, int | float):
        raise ValidationError(f"poll_interval must be a number of seconds, got {poll_interval!r}")
    if not poll_interval > 0:
        raise ValidationError(f"poll_interval must be positive, got {poll_interval!r}")
    if history_id is not None and not (isinstance(history_id, str) and history_id.isdigit()):
        raise ValidationError(f"history_id must be Gmail's history id (digits), got {history_id!r}")
    store = checkpoint_store(state, GmailCheckpoint, what="Gmail watch")
    watcher = _Watcher(provider, folder, keep, bodies, store, float(poll_interval))
    return watcher.run(history_id, include_existing, query)


class _Watcher:
    """The state of one watch: its checkpoint, the label followed and the check."""

    def __init__(
        self,
        provider: GmailProvider,
        folder: str,
        keep: Keep | None,
        bodies: bool,
        store: CheckpointStore | None,
        poll_interval: float,
    ) -> None:
        self.provider, self.folder, self.keep, self.bodies = provider, folder, keep, bodies
        self.store, self.poll_interval = store, poll_interval
        self.checkpoint = GmailCheckpoint(history_id="")  # set by start()
        self.saved: GmailCheckpoint | None = None
        self.label = ""

    async def save(self) -> None:
        checkpoint = self.checkpoint
        if self.store is not None and checkpoint.history_id and checkpoint != self.saved:
            await self.store.save(checkpoint)
            self.saved = checkpoint

    async def current_history(self) -> str:
        profile = await self.provider._api("getProfile", "GET", "profile")
        history = str(profile.get("historyId") or "")
        if not history.isdigit():
            raise ProviderError("Gmail's profile has no history id", provider="gmail")
        return history

    async def start(self, history_id: str | None) -> bool:
        """Find the starting checkpoint; True when it is new (nothing was saved)."""
        self.label = await self.provider._label_id(self.folder, create=False, timeout=None)
        if history_id is not None:
            self.checkpoint = GmailCheckpoint(history_id=history_id)
            return False
        saved = None if self.store is None else await self.store.load()
        if saved is not None:
            self.checkpoint = self.saved = saved
            return False
        started = int(time.time() * 1000)
        self.checkpoint = GmailCheckpoint(history_id=await self.current_history(),
                                          received_ms=started)  # fmt: skip
        await self.save()
        return True

    async def added(self) -> tuple[dict[str, str | None], str]:
        """The messages added since the checkpoint, oldest first, each with the history id
        that precedes its record (where a restart may go on from once it is handed out),
        and the history id to go on from after all of them."""
        found: dict[str, str | None] = {}
        token: str | None = None
        latest = self.checkpoint.history_id
        while True:
            params: dict[str, Any] = {
                "startHistoryId": self.checkpoint.history_id,
                "historyTypes": "messageAdded",
                "labelId": self.label,
                "maxResults": _HISTORY_PAGE,
            }
            if token:
                params["pageToken"] = token
            answer = await self.provider._api("history.list", "GET", "history", params=params)
            for record in answer.get("history") or ():
                if not isinstance(record, dict):
                    continue
                number = str(record.get("id") or "")
                before = str(int(number) - 1) if number.isdigit() and number != "0" else None
                for added in record.get("messagesAdded") or ():
                    message = added.get("message") if isinstance(added, dict) else None
                    if isinstance(message, dict) and "id" in message:
                        found.setdefault(str(message["id"]), before)
            latest = str(answer.get("historyId") or latest)
            token = answer.get("nextPageToken") or None
            if not token:
                return found, latest

    async def since_last(self) -> tuple[dict[str, str | None], str]:
        """After an expired history id: the messages received since the newest one handed
        out (oldest first), and the current history id."""
        latest = await self.current_history()
        after = max(0, self.checkpoint.received_ms // 1000 - 1)
        params: dict[str, Any] = {"q": f"after:{after}", "labelIds": [self.label]}
        ids: list[str] = []
        async for page in self.provider._pages(params, _HISTORY_PAGE, None):
            ids.extend(page)
        return dict.fromkeys(reversed(ids)), latest

    async def read(self, ids: Iterable[str]) -> list[ReceivedMessage]:
        """The messages not handed out yet, read as a search would (a deleted one is left
        out), in the ids' order."""
        seen = set(self.checkpoint.seen)
        fresh = [i for i in ids if i not in seen]
        if not fresh:
            return []
        return await self.provider._messages(fresh, folder=self.folder, full=self.bodies)

    async def run(
        self, history_id: str | None, include_existing: bool, query: str | SearchQuery | None
    ) -> AsyncGenerator[ReceivedMessage, None]:
        provider = self.provider
        failures = 0
        try:
            fresh = await self.start(history_id)
            if include_existing and fresh:
                existing = await provider.search(query or "", folder=self.folder)
                for message in existing:
                    self.checkpoint = self.checkpoint.handed_out(message)
                    yield message
                    await self.save()
            while True:
                try:
                    pending = await self.poll()
                    failures = 0
                except CommunicationError as exc:
                    failures += 1
                    await pause_after_failure(provider, exc, failures,
                                              what=f"Gmail label {self.folder!r}")  # fmt: skip
                    continue
                messages, latest = pending
                for message, before in messages:
                    self.checkpoint = self.checkpoint.moved_to(before)
                    if self.keep is None or await self.keep(message):
                        self.checkpoint = self.checkpoint.handed_out(message)
                        yield message
                        await self.save()
                self.checkpoint = self.checkpoint.moved_to(latest)
                await self.save()
                if not messages:
                    await provider._context.clock.sleep(self.poll_interval)
        finally:
            with anyio.CancelScope(shield=True):
                await self.save()

    async def poll(self) -> tuple[list[tuple[ReceivedMessage, str | None]], str]:
        """The new messages since the checkpoint (resyncing after a 404), each with the
        history id a restart may go on from once it is handled, and the history id to go on
        from after all of them."""
        try:
            found, latest = await self.added()
        except ProviderError as exc:
            if exc.status != 404:
                raise
            logger.warning(
                "Gmail no longer has history id %s (%s); listing the mail received since the "
                "last message seen",
                self.checkpoint.history_id,
                exc.detail,
            )
            found, latest = await self.since_last()
        messages = await self.read(found)
        return [(m, found.get(m.id)) for m in messages], latest
