"""`BulkSender`: campaigns through a bounded worker pool, tracked in the durable outbox.

    recipients (streamed, 500 at a time)
        → outbox.add (idempotent by campaign/recipient/step) → suppression → outbox.claim
        → bounded stream → N workers: per-domain slot → campaign bucket → render → send
        → outcomes written back in batches (outbox.finish)

Memory stays constant however long the list: the producer blocks on the bounded stream, and
no task is created per recipient. A re-run with the same `campaign_id` sends only what no run
has sent. One recipient's failure is recorded and the run goes on; a bug propagates.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import socket
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import anyio
import msgspec

from xcomm._bucket import TokenBucket
from xcomm._clock import Clock
from xcomm._config import RateLimit
from xcomm._errors import (
    CommunicationError,
    ConfigurationError,
    DeliveryUnknown,
    ProviderError,
    RecipientRejected,
    RequestNotSent,
)
from xcomm._templates import CompiledTemplate, Template, UnsubscribeSigner
from xcomm._validation import parse_address
from xcomm.bulk._recipients import Recipient, RecipientsSource, recipient_batches
from xcomm.bulk._result import CampaignResult, Outcome, Progress, Tally
from xcomm.email._base import EmailProvider
from xcomm.email._compose import campaign_draft
from xcomm.outbox import (
    Completion,
    DeliveryPolicy,
    OutboxRecord,
    OutboxStatus,
    OutboxStore,
    record_key,
)

__all__ = ["BulkSender"]

ProgressCallback = Callable[[Progress], Awaitable[None] | None]
_FLUSH_SIZE = 100
_FLUSH_AGE = 0.25
_PROGRESS_EVERY = 0.5


class _Completions:
    """Outcomes buffered and written to the outbox in batches (at most ~100 or 0.25 s old)."""

    def __init__(self, store: OutboxStore, owner: str) -> None:
        self._store = store
        self._owner = owner
        self._buffer: list[Completion] = []
        self._oldest = 0.0
        self._lock = anyio.Lock()

    async def add(self, completion: Completion) -> None:
        if not self._buffer:
            self._oldest = time.monotonic()
        self._buffer.append(completion)
        if len(self._buffer) >= _FLUSH_SIZE or time.monotonic() - self._oldest >= _FLUSH_AGE:
            await self.flush()

    async def flush(self) -> None:
        async with self._lock:
            batch, self._buffer = self._buffer, []
            if batch:
                await self._store.finish(batch, owner=self._owner, now=time.time())


class _Feed:
    """Claimed records for the workers: whoever finds the queue empty claims the next chunk.

    There is no producer task and no stream: a worker takes the next record from a deque, and
    only when it is empty drives the claiming generator (one worker at a time, under a lock).
    At most one claimed chunk waits here, which bounds what a crash can leave claimed.
    """

    def __init__(self, chunks: AsyncIterator[list[OutboxRecord]]) -> None:
        self._chunks = chunks
        self._ready: deque[OutboxRecord] = deque()
        self._lock = anyio.Lock()
        self._done = False

    async def next(self) -> OutboxRecord | None:
        while not self._ready:
            if self._done:
                return None
            async with self._lock:
                if self._ready or self._done:
                    continue
                try:
                    self._ready.extend(await anext(self._chunks))
                except StopAsyncIteration:
                    self._done = True
        return self._ready.popleft()

    async def aclose(self) -> None:
        self._done = True
        aclose = getattr(self._chunks, "aclose", None)
        if aclose is not None:
            await aclose()


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


class BulkSender:
    """Send personalised campaigns at full speed, durably and resumably.

    Example:
        ```python
        async with CommManager(outbox="campaigns.sqlite3") as comm:
            smtp = comm.smtp("smtp.example.com", username="news@example.com", password="...")
            bulk = comm.create_bulk_sender(smtp, max_concurrent=32, rate_limit=6000)  # per minute
            result = await bulk.send_campaign(
                template=Template(subject="Hi {{ name }}", text="Hello {{ name }}!"),
                recipients="subscribers.csv",
                campaign_id="newsletter-2026-11",
            )
            print(result.sent, result.failed, result.skipped)
        ```

    Create it with `comm.create_bulk_sender(provider, ...)`. Arguments:
        max_concurrent: sends in flight at once (the worker pool size).
        rate_limit: a campaign bucket, as a `RateLimit` or messages per minute; provider and
            global buckets of the manager apply as well.
        per_domain_concurrency: at most this many sends in flight per recipient domain.
        retry_failed: give transient failures (after the provider's own retries) one more pass
            at the end of the run.
        track_delivery: record every message in the manager's durable outbox (resume,
            `results()`); False keeps the bookkeeping in memory for this run only.
        policy: what a resumed run does with messages a crashed run had in flight.
        lease: seconds a claimed message stays reserved for this sender.
    """

    def __init__(
        self,
        provider: EmailProvider,
        *,
        outbox: Callable[[], Awaitable[OutboxStore]],
        clock: Clock,
        max_concurrent: int = 32,
        rate_limit: RateLimit | float | None = None,
        per_domain_concurrency: int | None = None,
        retry_failed: bool = True,
        track_delivery: bool = True,
        policy: DeliveryPolicy | str = DeliveryPolicy.AT_LEAST_ONCE,
        lease: float = 300.0,
        batch_size: int = 500,
    ) -> None:
        if not isinstance(provider, EmailProvider):
            raise ConfigurationError(
                f"the bulk sender sends email; got a {type(provider).__name__} "
                "(create it with an email provider such as comm.smtp(...))"
            )
        for name, value in (("max_concurrent", max_concurrent), ("batch_size", batch_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigurationError(f"{name} must be a positive int, got {value!r}")
        if per_domain_concurrency is not None and (
            isinstance(per_domain_concurrency, bool)
            or not isinstance(per_domain_concurrency, int)
            or per_domain_concurrency < 1
        ):
            raise ConfigurationError(
                "per_domain_concurrency must be a positive int or None, "
                f"got {per_domain_concurrency!r}"
            )
        if not isinstance(lease, int | float) or lease <= 0:
            raise ConfigurationError(f"lease must be a positive number of seconds, got {lease!r}")
        try:
            self._policy = DeliveryPolicy(policy)
        except ValueError as exc:
            raise ConfigurationError(
                f"policy must be 'at-least-once' or 'at-most-once', got {policy!r}"
            ) from exc
        limit = RateLimit.coerce(rate_limit)
        self._bucket = TokenBucket.from_limit(limit, clock=clock) if limit else None
        self._provider = provider
        self._outbox = outbox
        self._max_concurrent = max_concurrent
        self._per_domain = per_domain_concurrency
        self._retry_failed = retry_failed
        self._track = track_delivery
        self._lease = float(lease)
        self._batch = batch_size

    async def _store(self) -> OutboxStore:
        if self._track:
            return await self._outbox()
        from xcomm.outbox import MemoryOutbox

        store = MemoryOutbox()
        await store.open()
        return store

    async def send_campaign(
        self,
        *,
        template: Template,
        recipients: RecipientsSource,
        personalization_data: Mapping[str, Mapping[str, Any]] | None = None,
        campaign_id: str | None = None,
        unsubscribe: UnsubscribeSigner | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> CampaignResult:
        """Send `template` to every recipient not already sent in this campaign.

        Returns the run's `CampaignResult`; per-recipient failures are counted, not raised
        (call `result.raise_for_failures()` to raise). Pass the same `campaign_id` to resume.
        """
        if not isinstance(template, Template):
            raise ConfigurationError("template must be an xcomm.Template")
        campaign_id = _check_campaign_id(campaign_id)
        compiled = template.compile(unsubscribe=unsubscribe)
        store = await self._store()
        run = _Run(self, store, compiled, campaign_id, on_progress)
        try:
            await run.main(recipients, personalization_data)
        finally:
            if not self._track:
                await store.aclose()
        return run.tally.result(campaign_id, time.perf_counter() - run.started)

    async def results(
        self, campaign_id: str, /, *, status: OutboxStatus | None = None
    ) -> AsyncIterator[Outcome]:
        """Stream every recipient's outcome of a campaign from the outbox."""
        store = await self._outbox()
        async for record in store.records(campaign_id, status=status):
            yield Outcome(
                recipient=record.recipient,
                status=record.status,
                message_id=record.message_id,
                error=record.error,
                attempts=record.attempts,
            )


class _Run:
    """The state of one `send_campaign` call."""

    def __init__(
        self,
        sender: BulkSender,
        store: OutboxStore,
        compiled: CompiledTemplate,
        campaign_id: str,
        on_progress: ProgressCallback | None,
    ) -> None:
        self.sender = sender
        self.store = store
        self.compiled = compiled
        self.campaign_id = campaign_id
        self.on_progress = on_progress
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.tally = Tally()
        self.completions = _Completions(store, self.owner)
        self.domains = _DomainSlots(sender._per_domain)
        self.started = time.perf_counter()
        self.last_progress = 0.0
        self.retry_pass = False
        sender_address = sender._provider.default_sender
        self.msgid_domain = sender_address.domain if sender_address else None

    async def main(
        self, recipients: RecipientsSource, personalization: Mapping[str, Mapping[str, Any]] | None
    ) -> None:
        doubted_before = (await self.store.counts(self.campaign_id)).get(OutboxStatus.IN_DOUBT, 0)
        await self._pass(self._fresh(recipients, personalization))
        if self.sender._retry_failed:
            self.retry_pass = True
            await self._pass(self._due())
        await self.completions.flush()
        # claim() turns a dead sender's expired leases into in_doubt (at-most-once) without
        # handing them out; they were counted as skipped, so move them where they belong.
        doubted = (await self.store.counts(self.campaign_id)).get(OutboxStatus.IN_DOUBT, 0)
        recovered = doubted - doubted_before - self.tally.in_doubt
        if recovered > 0:
            self.tally.in_doubt += recovered
            self.tally.skipped -= recovered
        await self._progress(final=True)

    async def _pass(self, claimed: AsyncIterator[list[OutboxRecord]]) -> None:
        feed = _Feed(claimed)
        try:
            async with anyio.create_task_group() as tg:
                for _ in range(self.sender._max_concurrent):
                    tg.start_soon(self._worker, feed)
        except BaseExceptionGroup as group:
            # One error (a bad recipients source, a bug in a callback) reaches the caller as
            # itself, not wrapped in a group: it is what they have to fix.
            if len(group.exceptions) == 1:
                raise group.exceptions[0] from None
            raise
        finally:
            with anyio.CancelScope(shield=True):
                await feed.aclose()
                await self.completions.flush()

    async def _fresh(
        self, recipients: RecipientsSource, personalization: Mapping[str, Mapping[str, Any]] | None
    ) -> AsyncIterator[list[OutboxRecord]]:
        """Record each batch in the outbox and yield what this run claimed of it."""
        async for batch in recipient_batches(recipients, personalization, batch=self.sender._batch):
            self.tally.total += len(batch)
            records: dict[str, OutboxRecord] = {}
            for entry in batch:
                if isinstance(entry, Recipient):
                    record = self._record(entry)
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
            await self.store.add(list(records.values()))
            for record in records.values():
                if record.status is OutboxStatus.FAILED:
                    self._failed(_outcome(record))
            wanted = [k for k, r in records.items() if r.status is OutboxStatus.PENDING]
            # Claim only as many as the workers can start now: a record is `sending` from
            # its claim, so a crash leaves at most about two pools' worth of claimed records
            # (those in flight and the next chunk), not a whole batch, to resend or doubt.
            step = self.sender._max_concurrent
            for start in range(0, len(wanted), step):
                chunk = wanted[start : start + step]
                claimed = await self.store.claim(
                    chunk,
                    owner=self.owner,
                    now=time.time(),
                    lease=self.sender._lease,
                    policy=self.sender._policy,
                )
                self.tally.skipped += len(chunk) - len(claimed)
                yield claimed

    async def _due(self) -> AsyncIterator[list[OutboxRecord]]:
        """The retry pass: this campaign's records put back to pending by the first pass."""
        while True:
            claimed = await self.store.claim_due(
                owner=self.owner,
                now=time.time(),
                lease=self.sender._lease,
                limit=self.sender._max_concurrent,
                campaign_id=self.campaign_id,
                policy=self.sender._policy,
            )
            if not claimed:
                return
            yield claimed

    def _record(self, recipient: Recipient) -> OutboxRecord:
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
            updated_at=time.time(),
        )

    async def _worker(self, feed: _Feed) -> None:
        while (record := await feed.next()) is not None:
            completion = await self._send(record)
            self._count(completion, record)
            await self.completions.add(completion)
            await self._progress()

    async def _send(self, record: OutboxRecord) -> Completion:
        lease = None
        if self.sender._per_domain is not None:
            lease = await self.domains(record.recipient.rpartition("@")[2].lower())
        started = time.perf_counter()
        try:
            if self.sender._bucket is not None:
                await self.sender._bucket.acquire()
            content = self.compiled.render(
                record.variables, recipient=record.recipient, campaign_id=self.campaign_id
            )
            message_id = None
            if self.msgid_domain:
                # Stable across attempts and resumes, so receivers can spot a duplicate.
                digest = hashlib.sha256(record.key.encode()).hexdigest()[:32]
                message_id = f"<{digest}@{self.msgid_domain}>"
            # record.recipient was validated once, by _record(); the draft does not parse it again.
            result = await campaign_draft(
                self.sender._provider,
                record.recipient,
                subject=content.subject,
                text=content.text,
                html=content.html,
                unsubscribe_url=content.list_unsubscribe_url,
                message_id=message_id,
            ).send()
        except DeliveryUnknown as exc:
            return Completion(key=record.key, status=OutboxStatus.IN_DOUBT, error=str(exc))
        except RecipientRejected as exc:
            if any(not r.transient for r in exc.rejected):
                await self.store.suppress(
                    record.recipient, reason=f"rejected: {exc.detail or exc}", now=time.time()
                )
            return self._failure(record, exc, transient=exc.transient)
        except (ProviderError, RequestNotSent) as exc:
            transient = isinstance(exc, RequestNotSent) or exc.transient
            return self._failure(record, exc, transient=transient)
        except CommunicationError as exc:  # validation, template, configuration of one message
            return self._failure(record, exc, transient=False)
        finally:
            if lease is not None:
                lease.release()
        self.tally.latencies.append(time.perf_counter() - started)
        return Completion(key=record.key, status=OutboxStatus.SENT, message_id=result.message_id)

    def _failure(self, record: OutboxRecord, exc: Exception, *, transient: bool) -> Completion:
        if transient and self.sender._retry_failed and not self.retry_pass:
            return Completion(key=record.key, status=OutboxStatus.PENDING, error=str(exc))
        return Completion(key=record.key, status=OutboxStatus.FAILED, error=str(exc))

    def _count(self, completion: Completion, record: OutboxRecord) -> None:
        status = completion.status
        if status is OutboxStatus.SENT:
            self.tally.sent += 1
        elif status is OutboxStatus.IN_DOUBT:
            self.tally.in_doubt += 1
            self.tally.failures.append(_outcome(record, completion))
        elif status is OutboxStatus.FAILED:
            self._failed(_outcome(record, completion))

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
        event = Progress(
            campaign_id=self.campaign_id,
            seen=self.tally.total,
            done=self.tally.done,
            sent=self.tally.sent,
            failed=self.tally.failed,
            elapsed=elapsed,
            rate=self.tally.sent / elapsed if elapsed > 0 else 0.0,
        )
        outcome = self.on_progress(event)
        if inspect.isawaitable(outcome):
            await outcome


def _outcome(record: OutboxRecord, completion: Completion | None = None) -> Outcome:
    return Outcome(
        recipient=record.recipient,
        status=completion.status if completion else record.status,
        message_id=completion.message_id if completion else record.message_id,
        error=completion.error if completion else record.error,
        attempts=record.attempts,
    )


def _replace(record: OutboxRecord, **changes: Any) -> OutboxRecord:
    return msgspec.structs.replace(record, **changes)


def _check_campaign_id(campaign_id: str | None) -> str:
    if campaign_id is None:
        return f"campaign-{uuid.uuid4().hex[:12]}"
    if not isinstance(campaign_id, str) or not campaign_id.strip():
        raise ConfigurationError("campaign_id must be a non-empty string")
    if any(c in campaign_id for c in "\x1f\r\n\x00"):
        raise ConfigurationError("campaign_id must not contain control characters")
    return campaign_id
