"""The worker pool shared by `send_campaign` and the scheduler.

    claimed records (a chunk at a time) → N workers: per-domain slot → campaign bucket
        → render → send → outcomes written back in batches (outbox.finish)

No task is created per recipient, and at most one chunk waits claimed beside those in flight,
which bounds what a crash can leave claimed. One recipient's failure is recorded and the run
goes on; a bug propagates. `Drain` runs the same workers over whatever is due in the outbox.
With helper processes (`processes=N`, see `_helpers`), this process reads the source and
deals its records out a chunk at a time; each process records, claims and sends its own.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import socket
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from typing import Any

import anyio
import msgspec
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectSendStream

from xcomm._errors import (
    CommunicationError,
    DeliveryUnknown,
    ProviderError,
    RecipientRejected,
    RequestNotSent,
)
from xcomm._models import SendResult
from xcomm._validation import parse_address
from xcomm.bulk._campaign import DAY, Campaign, Options, Resolver
from xcomm.bulk._helpers import Helpers, absorb, received
from xcomm.bulk._recipients import Recipient, RecipientsSource, recipient_batches
from xcomm.bulk._result import CampaignResult, Outcome, Progress, Tally
from xcomm.outbox import (
    Completion,
    DeliveryPolicy,
    OutboxRecord,
    OutboxStatus,
    OutboxStore,
    record_key,
)

__all__ = ["Drain", "ProgressCallback", "Run"]

ProgressCallback = Callable[[Progress], Awaitable[None] | None]
_FLUSH_SIZE = 100
_FLUSH_AGE = 0.25
_PROGRESS_EVERY = 0.5
_DEAL_PAUSE = 0.002  # seconds between looks while every process of a shared run is busy
RETRY_ATTEMPTS = 5  # attempts of a scheduled record at a transient failure before it fails
RETRY_BACKOFF = 60.0  # seconds before the first retry of a scheduled record; doubles


class _Completions:
    """Outcomes buffered and written to the outbox in batches (~100 at a time, or 0.25 s old).

    During a pass (`background` set to its task group), a task of the pass writes a full
    buffer while the workers go on sending. A worker waits only when the next buffer is full
    before that write is done, and only until it is done (the next write then starts in the
    background), so at most two buffers of outcomes are ever unwritten (what a crash can leave
    to resend or doubt), as when every write was waited for.
    """

    def __init__(self, store: OutboxStore, owner: str) -> None:
        self._store = store
        self._owner = owner
        self._buffer: list[Completion] = []
        self._oldest = 0.0
        self._lock = anyio.Lock()
        self._written: anyio.Event | None = None  # set when the write under way is done
        self.background: TaskGroup | None = None

    async def add(self, completion: Completion) -> None:
        if not self._buffer:
            self._oldest = time.monotonic()
        self._buffer.append(completion)
        full = len(self._buffer) >= _FLUSH_SIZE
        if not full and time.monotonic() - self._oldest < _FLUSH_AGE:
            return
        if self.background is None:
            if full:
                await self.flush()
            return
        while self._written is not None and len(self._buffer) >= _FLUSH_SIZE:
            await self._written.wait()  # two buffers unwritten: the first must be done
        if self._written is None and self._buffer:
            written = self._written = anyio.Event()
            batch, self._buffer = self._buffer, []
            self.background.start_soon(self._write, batch, written)

    async def flush(self) -> None:
        """Write what is buffered (after a write under way), and wait for it."""
        async with self._lock:
            batch, self._buffer = self._buffer, []
            if batch:
                await self._store.finish(batch, owner=self._owner, now=time.time())

    async def _write(self, batch: list[Completion], written: anyio.Event) -> None:
        try:
            with anyio.CancelScope(shield=True):  # outcomes are written, cancelled or not
                async with self._lock:
                    await self._store.finish(batch, owner=self._owner, now=time.time())
        finally:
            self._written = None
            written.set()


class _Feed:
    """Claimed records for the workers: the next chunk is claimed before the queue runs dry.

    There is no producer task and no stream: a worker takes the next records from a deque.
    The one that finds fewer than `low` left starts the claim of the next chunk, in a task
    of the pass (`background`) so that it goes on sending meanwhile, and a worker that finds
    the queue empty waits for that claim (whose write may queue behind another process's).
    At most about two claimed chunks wait here, which bounds what a crash can leave claimed.
    """

    def __init__(self, chunks: AsyncIterator[list[OutboxRecord]], low: int = 0) -> None:
        self._chunks = chunks
        self._low = low
        self._ready: deque[OutboxRecord] = deque()
        self._lock = anyio.Lock()
        self._done = False
        self._claiming = False  # a claim ahead is started or under way
        self.background: TaskGroup | None = None

    async def peek(self) -> OutboxRecord | None:
        """The next record, left in the queue (None once every chunk was taken)."""
        await self._fill()
        return self._ready[0] if self._ready else None

    async def take(self, most: int) -> list[OutboxRecord]:
        """Up to `most` records (at least one), or none once every chunk was taken."""
        await self._fill()
        ready = self._ready
        if (
            self.background is not None
            and len(ready) - most < self._low
            and not (self._done or self._claiming or self._lock.locked())
        ):
            self._claiming = True
            self.background.start_soon(self._claim_ahead)
        return [ready.popleft() for _ in range(min(most, len(ready)))]

    async def _claim_ahead(self) -> None:
        try:
            await self._fill(ahead=True)
        finally:
            self._claiming = False

    async def _fill(self, *, ahead: bool = False) -> None:
        while ahead or not self._ready:
            if self._done:
                return
            async with self._lock:
                if (self._ready and not ahead) or self._done:
                    continue
                ahead = False
                try:
                    self._ready.extend(await anext(self._chunks))
                except StopAsyncIteration:
                    self._done = True

    async def aclose(self) -> list[OutboxRecord]:
        """Stop; returns the claimed records no worker took."""
        self._done = True
        aclose = getattr(self._chunks, "aclose", None)
        if aclose is not None:
            await aclose()
        left = list(self._ready)
        self._ready.clear()
        return left


class _DomainSlots:
    """At most `limit` sends in flight per recipient domain (what MTAs do)."""

    def __init__(self, limit: int | None) -> None:
        self._limit = limit
        self._slots: dict[str, tuple[anyio.Semaphore, list[int]]] = {}

    async def __call__(self, domain: str) -> _DomainLease:
        if self._limit is None:
            return _DomainLease(None, None, self._slots, domain)
        entry = self._slots.get(domain)
        if entry is None:
            entry = self._slots[domain] = (anyio.Semaphore(self._limit), [0])
        entry[1][0] += 1  # users, so idle domains are dropped and the dict stays small
        await entry[0].acquire()
        return _DomainLease(entry[0], entry[1], self._slots, domain)


class _DomainLease:
    __slots__ = ("_domain", "_semaphore", "_slots", "_users")

    def __init__(
        self,
        semaphore: anyio.Semaphore | None,
        users: list[int] | None,
        slots: dict[str, tuple[anyio.Semaphore, list[int]]],
        domain: str,
    ) -> None:
        self._semaphore, self._users, self._slots, self._domain = semaphore, users, slots, domain

    def release(self) -> None:
        if self._semaphore is None or self._users is None:
            return
        self._semaphore.release()
        self._users[0] -= 1
        if self._users[0] == 0:
            self._slots.pop(self._domain, None)


class Drain:
    """Send what is due in the outbox, with the workers of a campaign run: the scheduler.

    `resolve(campaign_id)` gives each record's `Campaign` (built from its persisted
    definition). One `run()` drains what is due now, once; the caller decides when to look
    again (`store.next_due()`).
    """

    def __init__(
        self,
        store: OutboxStore,
        resolve: Resolver,
        options: Options,
        *,
        campaign_id: str | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> None:
        self._store = store
        self._resolve = resolve
        self._options = options
        self._campaign_id = campaign_id
        self._on_progress = on_progress

    async def run(self) -> CampaignResult:
        """Send every record due now (and transient failures once more); returns the tally."""
        run = Run(
            self._options,
            self._store,
            self._resolve,
            self._campaign_id,
            self._on_progress,
            draining=True,
        )
        await run.drain()
        label = self._campaign_id or "*"
        return run.tally.result(label, time.perf_counter() - run.started)


class Run:
    """The state of one `send_campaign` call, or of one scheduler drain."""

    def __init__(
        self,
        options: Options,
        store: OutboxStore,
        resolve: Resolver,
        campaign_id: str | None,
        on_progress: ProgressCallback | None,
        *,
        draining: bool = False,
        send_batch: int | None = None,
        processes: int = 1,
    ) -> None:
        self.options = options
        self.store = store
        self.resolve = resolve
        self.campaign_id = campaign_id
        self.on_progress = on_progress
        self.draining = draining
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.tally = Tally()
        self.completions = _Completions(store, self.owner)
        self.domains = _DomainSlots(options.per_domain)
        self.started = time.perf_counter()
        self.last_progress = 0.0
        self.retry_pass = False
        self.fatal: CommunicationError | None = None
        self.interrupted: list[OutboxRecord] = []
        self.counted_suppressed: set[str] = set()
        self.handled = 0  # records whose send this run finished with (its share of the work)
        self.helpers: Helpers | None = None
        # Records per send: what the provider carries best in one `send_many()` (None: ask
        # the provider of the first record's campaign), unless a per-domain bound counts sends
        # one by one.
        self.batch = 1 if options.per_domain is not None else send_batch
        # Records per claim, claimed once half as many wait: enough to hide a claim's latency
        # (its write may queue behind others, and behind other processes' writes when
        # `processes` share the campaign, each with its share of max_concurrent) at full
        # speed. After a crash, at-most-once doubts every claimed record, sent or not, so it
        # claims no more than it has in flight.
        self.ahead = options.max_concurrent * (
            1 if options.policy is DeliveryPolicy.AT_MOST_ONCE else 2 * processes
        )

    async def main(
        self,
        recipients: RecipientsSource,
        personalization: Mapping[str, Mapping[str, Any]] | None,
        *,
        start: float | None = None,
    ) -> None:
        assert self.campaign_id is not None
        if start is not None:  # queue only: a scheduler sends them when due
            await self._queued(recipients, personalization, start)
            await self._progress(final=True)
            return
        doubted_before = (await self.store.counts(self.campaign_id)).get(OutboxStatus.IN_DOUBT, 0)
        if self.helpers is None:
            await self.share(self._recorded(recipients, personalization, None))
        else:
            await self._shared(recipients, personalization, self.helpers)
        # claim() turns a dead sender's expired leases into in_doubt (at-most-once) without
        # handing them out; they were counted as skipped, so move them where they belong.
        doubted = (await self.store.counts(self.campaign_id)).get(OutboxStatus.IN_DOUBT, 0)
        recovered = doubted - doubted_before - self.tally.in_doubt
        if recovered > 0:
            self.tally.in_doubt += recovered
            self.tally.skipped -= recovered
        await self._progress(final=True)

    async def share(self, batches: AsyncIterator[list[OutboxRecord]]) -> None:
        """Record, claim and send `batches` of pending records (this run's share of the
        source, or all of it); then give transient failures their one more pass."""
        await self._pass(self._fresh(batches))
        await self._retry()

    async def _retry(self) -> None:
        await self.completions.flush()
        if self.options.retry_failed:
            self.retry_pass = True
            await self._pass(self._due())
            await self.completions.flush()

    async def _shared(
        self,
        recipients: RecipientsSource,
        personalization: Mapping[str, Mapping[str, Any]] | None,
        helpers: Helpers,
    ) -> None:
        """`main()` with helper processes: this one reads the source and deals its records
        out, a chunk at a time, to whichever process has room, itself included; each process
        records, claims and sends its chunks as a run of its own would."""
        # One chunk waits for this process's own run: with more, it still had them to send
        # when the helpers had finished (the run's end waited ~30 ms more, on one core).
        own_send, own_receive = anyio.create_memory_object_stream[list[OutboxRecord]](1)

        async def deal() -> None:
            try:
                async with own_send:
                    await self._deal(recipients, personalization, helpers, own_send)
            except BaseException:
                await helpers.stop()
                raise
            await helpers.fed()

        try:
            with _single_errors(), own_receive:  # closed even if the run never reads it
                async with anyio.create_task_group() as tg:
                    await helpers.run(tg)
                    tg.start_soon(deal)
                    await self.share(received(own_receive))
        except BaseException:
            own_send.close()
            await helpers.stop()
            raise
        for report in helpers.finals():
            absorb(self.tally, report)
        # A record of this source already settled by an earlier run is skipped; what is not
        # counted otherwise is that.
        tally = self.tally
        settled = tally.sent + tally.failed + tally.suppressed + tally.in_doubt + tally.scheduled
        tally.skipped = max(0, tally.total - settled)

    async def _deal(
        self,
        recipients: RecipientsSource,
        personalization: Mapping[str, Mapping[str, Any]] | None,
        helpers: Helpers,
        own: MemoryObjectSendStream[list[OutboxRecord]],
    ) -> None:
        """Each chunk of the source's pending records to this process when its queue has
        room, else to a helper with fewer than `window` records unfinished, else again once
        one of them has room. The helpers' counts come every 0.1 s: the window holds more
        than that much sending."""
        window = max(2 * self.options.batch, 8 * self.options.max_concurrent)
        async for pending in self._recorded(recipients, personalization, None):
            for first in range(0, len(pending), self.ahead):
                chunk = pending[first : first + self.ahead]
                while not _offered(own, chunk):
                    if await helpers.give(chunk, window):
                        break
                    await anyio.sleep(_DEAL_PAUSE)  # every process has enough to do

    async def drain(self) -> None:
        """Everything due now. Transient failures are queued again with a backoff."""
        await self._pass(self._due())
        await self.completions.flush()
        await self._progress(final=True)

    async def _pass(self, claimed: AsyncIterator[list[OutboxRecord]]) -> None:
        feed = _Feed(claimed, low=self.ahead // 2)
        try:
            batch = self.batch or await self._batch_of(await feed.peek())
            with _single_errors():
                async with anyio.create_task_group() as tg:
                    # Claims ahead and outcome writes run beside the sends, in tasks of tg.
                    feed.background = self.completions.background = tg
                    for _ in range(-(-self.options.max_concurrent // batch)):
                        tg.start_soon(self._worker, feed, batch)
        finally:
            feed.background = self.completions.background = None
            with anyio.CancelScope(shield=True):
                for record in await feed.aclose():  # claimed, never started: put back
                    await self.completions.add(_put_back(record, self.fatal))
                await self._settle_interrupted()
                await self.completions.flush()
        if self.fatal is not None:
            raise self.fatal

    async def _settle_interrupted(self) -> None:
        """Sends cancelled midway may or may not have reached the provider: what the policy
        says for a crashed sender's records, at once rather than when the lease expires."""
        interrupted, self.interrupted = self.interrupted, []
        for record in interrupted:
            if self.options.policy is DeliveryPolicy.AT_MOST_ONCE:
                completion = Completion(
                    key=record.key,
                    status=OutboxStatus.IN_DOUBT,
                    error="the run was interrupted while this message was being sent",
                )
                self._count(completion, record)
            else:
                completion = _put_back(record, None)
            await self.completions.add(completion)

    async def _recorded(
        self,
        recipients: RecipientsSource,
        personalization: Mapping[str, Mapping[str, Any]] | None,
        start: float | None,
    ) -> AsyncIterator[list[OutboxRecord]]:
        """Each batch of the source as records to send: counted, deduplicated, with bad
        addresses and suppressed recipients settled in the outbox (and not yielded)."""
        async for batch in recipient_batches(recipients, personalization, batch=self.options.batch):
            self.tally.total += len(batch)
            records: dict[str, OutboxRecord] = {}
            for entry in batch:
                if isinstance(entry, Recipient):
                    record = self._record(entry, start)
                    if record.key not in records:
                        records[record.key] = record
                        continue
                    self.tally.skipped += 1  # the same address twice in one batch
                else:
                    self._failed(
                        Outcome(recipient="?", status=OutboxStatus.FAILED, error=str(entry))
                    )
            suppressed = await self.store.suppressed([r.recipient for r in records.values()])
            if suppressed:
                for key, record in list(records.items()):
                    if record.recipient.lower() in suppressed:
                        records[key] = _replace(record, status=OutboxStatus.SUPPRESSED)
                        self.tally.suppressed += 1
                        self.counted_suppressed.add(key)  # a pending record of an earlier run
            if settled := [r for r in records.values() if r.status is not OutboxStatus.PENDING]:
                await self.store.add(settled)
            for record in settled:
                if record.status is OutboxStatus.FAILED:
                    self._failed(_outcome(record))
            yield [r for r in records.values() if r.status is OutboxStatus.PENDING]

    async def _queued(
        self,
        recipients: RecipientsSource,
        personalization: Mapping[str, Mapping[str, Any]] | None,
        start: float,
    ) -> None:
        """Record every recipient as pending from `start` on; a key queued before is not ours."""
        async for pending in self._recorded(recipients, personalization, start):
            added = await self.store.add(pending)
            self.tally.scheduled += added
            self.tally.skipped += len(pending) - added

    async def _fresh(
        self, batches: AsyncIterator[list[OutboxRecord]]
    ) -> AsyncIterator[list[OutboxRecord]]:
        """Record each batch of pending records in the outbox and yield what this run
        claimed of it.

        Records are recorded and claimed a chunk at a time (`ahead`), as the workers need
        them, in one write: a record is `sending` from then on, so a crash leaves those in
        flight and at most about two chunks to resend or doubt; the rest of the batch is not
        recorded yet, and a resumed run reads it from the source again. The first claim
        is of `max_concurrent` records at most, so that sending starts sooner.
        """
        size = min(self.ahead, self.options.max_concurrent)
        async for pending in batches:
            first = 0
            while first < len(pending):
                chunk = pending[first : first + size]
                first, size = first + size, self.ahead
                claimed = await self.store.add_claimed(
                    chunk,
                    owner=self.owner,
                    now=time.time(),
                    lease=self.options.lease,
                    policy=self.options.policy,
                )
                self.tally.skipped += len(chunk) - len(claimed)
                yield await self._admit(claimed, check_suppressions=False)

    async def _due(self) -> AsyncIterator[list[OutboxRecord]]:
        """Due records (of this run's campaign, or of all), admitted as `_admit` says."""
        while True:
            claimed = await self.store.claim_due(
                owner=self.owner,
                now=time.time(),
                lease=self.options.lease,
                limit=self.ahead,
                campaign_id=self.campaign_id,
                policy=self.options.policy,
            )
            if not claimed:
                return
            if self.draining:
                self.tally.total += len(claimed)
            yield await self._admit(claimed, check_suppressions=True)

    async def _admit(
        self, claimed: list[OutboxRecord], *, check_suppressions: bool
    ) -> list[OutboxRecord]:
        """Of the claimed records, those to send now, per campaign: with `check_suppressions`,
        an address suppressed since its record was queued (an unsubscribe, a hard bounce in
        an earlier step) is settled as suppressed, which also ends its drip sequence; and a
        campaign whose account has a daily cap takes a share of today's, what does not fit
        waiting for the next day (UTC) instead of failing."""
        groups: dict[str, list[OutboxRecord]] = {}
        for record in claimed:
            groups.setdefault(record.campaign_id, []).append(record)
        admitted: list[OutboxRecord] = []
        for campaign_id, group in groups.items():
            try:
                campaign = await self.resolve(campaign_id)
            except CommunicationError:
                admitted += group  # _send reports it
                continue
            if check_suppressions and not campaign.messages:  # the list is for campaigns
                group = await self._unless_suppressed(group)
            if campaign.daily_cap is not None:
                group = await self._within_cap(campaign, group)
            admitted += group
        return admitted

    async def _unless_suppressed(self, group: list[OutboxRecord]) -> list[OutboxRecord]:
        suppressed = await self.store.suppressed([r.recipient for r in group])
        if not suppressed:
            return group
        keep = []
        for record in group:
            if record.recipient.lower() not in suppressed:
                keep.append(record)
                continue
            if record.key not in self.counted_suppressed:  # not already by _fresh
                self.tally.suppressed += 1
            await self.completions.add(Completion(key=record.key, status=OutboxStatus.SUPPRESSED))
        return keep

    async def _within_cap(
        self, campaign: Campaign, group: list[OutboxRecord]
    ) -> list[OutboxRecord]:
        assert campaign.daily_cap is not None
        window = time.time() // DAY * DAY
        granted = await self.store.reserve(
            campaign.quota_key, window=window, count=len(group), cap=campaign.daily_cap
        )
        for record in group[granted:]:
            self.tally.scheduled += 1
            await self.completions.add(
                Completion(
                    key=record.key,
                    status=OutboxStatus.PENDING,
                    attempts=0,
                    not_before=window + DAY,
                    error=f"daily cap of {campaign.daily_cap} reached; queued for the next day",
                )
            )
        return group[:granted]

    def _record(self, recipient: Recipient, start: float | None) -> OutboxRecord:
        assert self.campaign_id is not None
        try:
            address = parse_address(recipient.address).email
        except CommunicationError as exc:
            return OutboxRecord(
                key=record_key(self.campaign_id, recipient.address),
                campaign_id=self.campaign_id,
                recipient=recipient.address,
                status=OutboxStatus.FAILED,
                error=f"{recipient.origin}: {exc}",
                updated_at=time.time(),
            )
        return OutboxRecord(
            key=record_key(self.campaign_id, address),
            campaign_id=self.campaign_id,
            recipient=address,
            variables=recipient.variables,
            not_before=start,
            updated_at=time.time(),
        )

    async def _batch_of(self, record: OutboxRecord | None) -> int:
        """Records per send for a drain: what the provider of `record`'s campaign carries
        best (1 when its campaign cannot be resolved: `_send` reports that)."""
        if record is None:
            return 1
        try:
            campaign = await self.resolve(record.campaign_id)
        except CommunicationError:
            return 1
        return max(1, campaign.provider.batch_size(self.options.max_concurrent))

    async def _worker(self, feed: _Feed, batch: int) -> None:
        while self.fatal is None and (records := await feed.take(batch)):
            try:
                completions = await self._send(records)
            except BaseException:  # cancelled mid-send: settled by _pass, as a crash would be
                self.interrupted.extend(records)
                raise
            for record, completion in zip(records, completions, strict=True):
                self._count(completion, record)
                await self.completions.add(completion)
            self.handled += len(records)
            await self._progress()

    async def _send(self, records: list[OutboxRecord]) -> list[Completion]:
        """Send `records` (of one campaign, in one `send_many()` when they are several)."""
        campaign_id = records[0].campaign_id
        if any(record.campaign_id != campaign_id for record in records):
            return [c for record in records for c in await self._send([record])]
        try:
            campaign = await self.resolve(campaign_id)
        except CommunicationError as exc:  # no definition, no provider, a secret missing
            # Not the recipient's fault: the records go back and the run stops with the
            # error, for the user to fix the configuration.
            self.fatal = self.fatal or exc
            return [_put_back(record, exc) for record in records]
        lease = None
        if self.options.per_domain is not None:  # one record at a time (see `batch`)
            lease = await self.domains(records[0].recipient.rpartition("@")[2].lower())
        try:
            outcomes = await campaign.deliver(records)
        finally:
            if lease is not None:
                lease.release()
        return [
            await self._complete(record, outcome, campaign)
            for record, outcome in zip(records, outcomes, strict=True)
        ]

    async def _complete(
        self, record: OutboxRecord, outcome: SendResult | CommunicationError, campaign: Campaign
    ) -> Completion:
        """What one record's send outcome writes to the outbox."""
        if isinstance(outcome, SendResult):
            self.tally.latencies.append(outcome.duration)
            return Completion(
                key=record.key,
                status=OutboxStatus.SENT,
                message_id=outcome.message_id,
                follow_up=campaign.follow_up(record, time.time()),
            )
        if isinstance(outcome, DeliveryUnknown):
            return Completion(key=record.key, status=OutboxStatus.IN_DOUBT, error=str(outcome))
        if isinstance(outcome, RecipientRejected):
            if any(not r.transient for r in outcome.rejected):
                await self.store.suppress(
                    record.recipient,
                    reason=f"rejected: {outcome.detail or outcome}",
                    now=time.time(),
                )
            return self._failure(record, outcome, transient=outcome.transient)
        if isinstance(outcome, ProviderError | RequestNotSent):
            transient = isinstance(outcome, RequestNotSent) or outcome.transient
            return self._failure(record, outcome, transient=transient)
        # validation, template, configuration of one message
        return self._failure(record, outcome, transient=False)

    def _failure(self, record: OutboxRecord, exc: Exception, *, transient: bool) -> Completion:
        if transient and self.options.retry_failed:
            if self.draining and record.attempts < RETRY_ATTEMPTS:
                # A scheduler would claim it again at once: back off instead (1, 2, 4... min).
                delay = min(RETRY_BACKOFF * 2 ** (record.attempts - 1), 3600.0)
                return Completion(
                    key=record.key,
                    status=OutboxStatus.PENDING,
                    error=str(exc),
                    not_before=time.time() + delay,
                )
            if not self.draining and not self.retry_pass:
                return Completion(key=record.key, status=OutboxStatus.PENDING, error=str(exc))
        return Completion(key=record.key, status=OutboxStatus.FAILED, error=str(exc))

    def _count(self, completion: Completion, record: OutboxRecord) -> None:
        status = completion.status
        if status is OutboxStatus.SENT:
            self.tally.sent += 1
            if completion.follow_up is not None:
                self.tally.scheduled += 1
        elif status is OutboxStatus.IN_DOUBT:
            self.tally.in_doubt += 1
            self.tally.failures.append(_outcome(record, completion))
        elif status is OutboxStatus.FAILED:
            self._failed(_outcome(record, completion))
        elif status is OutboxStatus.PENDING and completion.not_before is not None:
            self.tally.scheduled += 1  # a transient failure, retried later

    def _failed(self, outcome: Outcome) -> None:
        self.tally.failed += 1
        self.tally.failures.append(outcome)

    async def _progress(self, *, final: bool = False) -> None:
        if self.on_progress is None:
            return
        now = time.perf_counter()
        if not final and now - self.last_progress < _PROGRESS_EVERY:
            return
        self.last_progress = now
        elapsed = now - self.started
        sent, failed, done = self.tally.sent, self.tally.failed, self.tally.done
        if self.helpers is not None and not final:  # the final tally has absorbed theirs
            elsewhere = self.helpers.counts()
            sent, failed = sent + elsewhere[0], failed + elsewhere[1]
            done += self.helpers.handled
        event = Progress(
            campaign_id=self.campaign_id or "*",
            seen=self.tally.total,
            done=min(done, self.tally.total) if self.helpers is not None else done,
            sent=sent,
            failed=failed,
            elapsed=elapsed,
            rate=sent / elapsed if elapsed > 0 else 0.0,
        )
        outcome = self.on_progress(event)
        if inspect.isawaitable(outcome):
            await outcome


@contextlib.contextmanager
def _single_errors() -> Iterator[None]:
    """One error of a task group (a bad recipients source, a bug in a callback, a failed
    helper process) reaches the caller as itself, not wrapped in a group: it is what they
    have to fix."""
    try:
        yield
    except BaseExceptionGroup as group:
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise


def _offered(stream: MemoryObjectSendStream[list[OutboxRecord]], chunk: list[OutboxRecord]) -> bool:
    """Whether `stream` took `chunk` at once."""
    try:
        stream.send_nowait(chunk)
    except anyio.WouldBlock:
        return False
    return True


def _outcome(record: OutboxRecord, completion: Completion | None = None) -> Outcome:
    return Outcome(
        recipient=record.recipient,
        status=completion.status if completion else record.status,
        message_id=completion.message_id if completion else record.message_id,
        error=completion.error if completion else record.error,
        attempts=record.attempts,
    )


def _put_back(record: OutboxRecord, error: Exception | None) -> Completion:
    """Pending again, its claim not counted as an attempt."""
    return Completion(
        key=record.key, status=OutboxStatus.PENDING, error=str(error) if error else None, attempts=0
    )


def _replace(record: OutboxRecord, **changes: Any) -> OutboxRecord:
    return msgspec.structs.replace(record, **changes)
