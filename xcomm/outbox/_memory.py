"""`MemoryOutbox`: the reference implementation of the outbox contract, in dicts.

Every method runs to completion without awaiting, so each is atomic with respect to the event
loop: two tasks claiming the same keys can never both get a record. Records go through the same
msgpack round trip as a persisted record would, so a value the SQLite store would reject (or
change) is rejected here too, and a caller mutating its `variables` afterwards changes nothing.

Where `OutboxStore`'s docstrings leave room, both built-in stores do this:

- a lease is live while `now < lease_until`: at `now == lease_until` it has expired;
- `claim` returns records in the order of `keys` (duplicates once); `claim_due` in the order
  it picked them: records without `not_before` first, then the oldest `not_before`, then by key;
- an expired lease set `in_doubt` loses its lease and gets an `error` naming the old owner;
- `finish` clears the lease; `not_before` changes only with `status=pending`; the claim
  counted one attempt, so the record's `attempts` becomes `attempts - 1 + completion.attempts`
  (the default `attempts=1` leaves it as claimed); `status=sending` raises `ValidationError`;
- `suppress` of a listed address keeps the first reason and time.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from types import TracebackType
from typing import Self, TypeVar

import msgspec

from xcomm._errors import LifecycleError, ValidationError
from xcomm.outbox._base import (
    CampaignDefinition,
    Completion,
    DeliveryPolicy,
    OutboxRecord,
    OutboxStatus,
    Suppression,
)

__all__ = ["MemoryOutbox"]

_T = TypeVar("_T")
_ENCODER = msgspec.msgpack.Encoder()
_RECORD = msgspec.msgpack.Decoder(OutboxRecord)
_DEFINITION = msgspec.msgpack.Decoder(CampaignDefinition)
_PENDING, _SENDING = OutboxStatus.PENDING, OutboxStatus.SENDING


class _State(enum.Enum):
    NEW = "new"
    OPEN = "open"
    CLOSED = "closed"


def lease_expired_error(owner: str | None) -> str:
    """The `error` of a record set `in_doubt` because its sender's lease expired."""
    return f"lease of {owner or 'an unknown sender'} expired before an outcome was recorded"


def due_rank(not_before: float | None, key: str) -> tuple[bool, float, str]:
    """`claim_due` order: no `not_before` first, then the oldest `not_before`, then by key."""
    return (not_before is not None, not_before or 0.0, key)


def check_claim(lease: float, limit: int = 0) -> None:
    """Reject a claim that cannot be meant (shared by the built-in stores)."""
    if not lease > 0:
        raise ValidationError(f"lease must be a positive number of seconds, got {lease!r}")
    if limit < 0:
        raise ValidationError(f"limit must be zero or more, got {limit!r}")


def check_reserve(count: int, cap: int) -> None:
    """Reject a quota reservation that cannot be meant."""
    for name, value in (("count", count), ("cap", cap)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValidationError(f"{name} must be an int >= 0, got {value!r}")


def check_completions(completions: Sequence[Completion]) -> list[OutboxStatus]:
    """The status of each completion, validated: any status but `sending`."""
    statuses = []
    for completion in completions:
        try:
            status = OutboxStatus(completion.status)
        except ValueError:
            status = _SENDING
        if status is _SENDING:
            raise ValidationError(
                f"completion of {completion.key!r} has status {completion.status!r}: an outcome "
                "is one of pending (retry later), sent, failed, in_doubt or suppressed"
            )
        statuses.append(status)
    return statuses


class _Items(AsyncIterator[_T]):
    """An async iterator over items produced on first use (so a closed store is noticed)."""

    def __init__(self, snapshot: Callable[[], Iterable[_T]]) -> None:
        self._snapshot = snapshot
        self._items: Iterator[_T] | None = None

    async def __anext__(self) -> _T:
        if self._items is None:
            self._items = iter(self._snapshot())
        try:
            return next(self._items)
        except StopIteration:
            raise StopAsyncIteration from None


class MemoryOutbox:
    """An outbox held in memory: the reference semantics, for tests and one-off scripts.

    ```python
    import time
    from xcomm.outbox import Completion, MemoryOutbox, OutboxRecord, OutboxStatus, record_key

    async with MemoryOutbox() as store:
        key = record_key("spring", "ann@example.com")
        await store.add([OutboxRecord(key=key, campaign_id="spring", recipient="ann@example.com")])
        [record] = await store.claim([key], owner="worker-1", now=time.time(), lease=300)
        sent = Completion(key=key, status=OutboxStatus.SENT, message_id="<1@example.com>")
        await store.finish([sent], owner="worker-1", now=time.time())
    ```

    Nothing survives the process; use `SQLiteOutbox` for campaigns that must resume.
    """

    def __init__(self) -> None:
        self._records: dict[str, OutboxRecord] = {}
        self._suppressions: dict[str, Suppression] = {}
        self._campaigns: dict[str, CampaignDefinition] = {}
        self._quota: dict[tuple[str, float], int] = {}
        self._state = _State.NEW

    def __repr__(self) -> str:
        return f"<MemoryOutbox {self._state.value}, {len(self._records)} records>"

    async def open(self) -> None:
        """Make the store usable. Idempotent."""
        if self._state is _State.CLOSED:
            raise LifecycleError("this MemoryOutbox was closed; create a new one")
        self._state = _State.OPEN

    async def aclose(self) -> None:
        """Close the store (its contents are dropped). Idempotent."""
        self._state = _State.CLOSED
        self._records.clear()
        self._suppressions.clear()
        self._campaigns.clear()

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def _check_open(self) -> None:
        if self._state is not _State.OPEN:
            raise LifecycleError(
                "this MemoryOutbox is closed" if self._state is _State.CLOSED else
                "this MemoryOutbox is not open: `await store.open()` or `async with store:` first"
            )  # fmt: skip

    async def add(self, records: Sequence[OutboxRecord], /) -> int:
        """Insert the records whose key is new; returns how many were inserted."""
        self._check_open()
        return self._insert(_copies(records))

    def _insert(self, copies: list[OutboxRecord]) -> int:
        inserted = 0
        for record in copies:
            if record.key not in self._records:
                self._records[record.key] = record
                inserted += 1
        return inserted

    def _take(
        self, record: OutboxRecord, owner: str, now: float, lease: float, policy: DeliveryPolicy
    ) -> OutboxRecord | None:
        if record.status is _PENDING:
            if record.not_before is not None and record.not_before > now:
                return None
        elif record.status is _SENDING:
            if record.lease_until is not None and record.lease_until > now:
                return None
            if policy is DeliveryPolicy.AT_MOST_ONCE:
                self._records[record.key] = msgspec.structs.replace(
                    record,
                    status=OutboxStatus.IN_DOUBT,
                    lease_owner=None,
                    lease_until=None,
                    error=lease_expired_error(record.lease_owner),
                    updated_at=now,
                )
                return None
        else:
            return None
        taken = msgspec.structs.replace(
            record,
            status=_SENDING,
            lease_owner=owner,
            lease_until=now + lease,
            attempts=record.attempts + 1,
            updated_at=now,
        )
        self._records[record.key] = taken
        return taken

    async def claim(
        self,
        keys: Sequence[str],
        /,
        *,
        owner: str,
        now: float,
        lease: float,
        policy: DeliveryPolicy = DeliveryPolicy.AT_LEAST_ONCE,
    ) -> list[OutboxRecord]:
        """Take the given records for sending (see `OutboxStore.claim`), in the order given."""
        self._check_open()
        check_claim(lease)
        now, lease, policy = float(now), float(lease), DeliveryPolicy(policy)
        taken = []
        for key in dict.fromkeys(keys):
            record = self._records.get(key)
            if record is not None and (got := self._take(record, owner, now, lease, policy)):
                taken.append(got)
        return taken

    async def add_claimed(
        self,
        records: Sequence[OutboxRecord],
        /,
        *,
        owner: str,
        now: float,
        lease: float,
        policy: DeliveryPolicy = DeliveryPolicy.AT_LEAST_ONCE,
    ) -> list[OutboxRecord]:
        """Store new records already claimed by `owner`; claim those that exist."""
        self._check_open()
        check_claim(lease)
        now, lease, policy = float(now), float(lease), DeliveryPolicy(policy)
        taken = []
        for record in _copies(records):
            existing = self._records.get(record.key)
            if existing is not None:
                if got := self._take(existing, owner, now, lease, policy):
                    taken.append(got)
                continue
            fresh = msgspec.structs.replace(
                record, status=_SENDING, lease_owner=owner, lease_until=now + lease,
                attempts=record.attempts + 1, updated_at=now,
            )  # fmt: skip
            self._records[record.key] = fresh
            taken.append(fresh)
        return taken

    async def claim_due(
        self,
        *,
        owner: str,
        now: float,
        lease: float,
        limit: int,
        campaign_id: str | None = None,
        policy: DeliveryPolicy = DeliveryPolicy.AT_LEAST_ONCE,
    ) -> list[OutboxRecord]:
        """Take up to `limit` due records, oldest `not_before` first (None before any time)."""
        self._check_open()
        check_claim(lease, limit)
        now, lease, policy = float(now), float(lease), DeliveryPolicy(policy)
        candidates = []
        for record in list(self._records.values()):
            if campaign_id is not None and record.campaign_id != campaign_id:
                continue
            if record.status is _SENDING and (
                record.lease_until is None or record.lease_until <= now
            ):
                if policy is DeliveryPolicy.AT_MOST_ONCE:
                    self._take(record, owner, now, lease, policy)  # marks it in_doubt
                else:
                    candidates.append(record)
            elif record.status is _PENDING and (
                record.not_before is None or record.not_before <= now
            ):
                candidates.append(record)
        candidates.sort(key=lambda record: due_rank(record.not_before, record.key))
        taken = (self._take(record, owner, now, lease, policy) for record in candidates[:limit])
        return [record for record in taken if record is not None]

    async def finish(self, completions: Sequence[Completion], /, *, owner: str, now: float) -> int:
        """Write outcomes of records still leased by `owner`; returns how many changed."""
        self._check_open()
        statuses = check_completions(completions)
        follow_ups = _copies([c.follow_up for c in completions if c.follow_up is not None])
        now, changed, applied = float(now), 0, set()
        for completion, status in zip(completions, statuses, strict=True):
            record = self._records.get(completion.key)
            if record is None or record.status is not _SENDING or record.lease_owner != owner:
                continue
            applied.add(completion.key)
            self._records[completion.key] = msgspec.structs.replace(
                record,
                status=status,
                message_id=completion.message_id,
                error=completion.error,
                attempts=max(record.attempts + completion.attempts - 1, 0),
                not_before=completion.not_before if status is _PENDING else record.not_before,
                lease_owner=None,
                lease_until=None,
                updated_at=now,
            )
            changed += 1
        followed = (c.key for c in completions if c.follow_up is not None)
        self._insert([r for r, key in zip(follow_ups, followed, strict=True) if key in applied])
        return changed

    async def next_due(self, *, campaign_id: str | None = None) -> float | None:
        """When the next record may become claimable (see `OutboxStore.next_due`)."""
        self._check_open()
        times = [
            (record.not_before or 0.0) if record.status is _PENDING else (record.lease_until or 0.0)
            for record in self._records.values()
            if record.status in (_PENDING, _SENDING)
            and (campaign_id is None or record.campaign_id == campaign_id)
        ]
        return min(times, default=None)

    async def reserve(self, key: str, /, *, window: float, count: int, cap: int) -> int:
        """Take up to `count` of quota `key`'s `cap` in the window starting at `window`."""
        self._check_open()
        check_reserve(count, cap)
        used = self._quota.get((key, float(window)), 0)
        granted = max(0, min(count, cap - used))
        self._quota[key, float(window)] = used + granted
        return granted

    async def save_campaign(self, definition: CampaignDefinition, /) -> None:
        """Store a campaign's definition, replacing an earlier one with the same id."""
        self._check_open()
        try:
            copy = _DEFINITION.decode(_ENCODER.encode(definition))
        except (msgspec.MsgspecError, TypeError, ValueError) as exc:
            raise ValidationError(f"campaign definition cannot be stored: {exc}") from exc
        self._campaigns.pop(copy.campaign_id, None)
        self._campaigns[copy.campaign_id] = copy

    async def get_campaign(self, campaign_id: str, /) -> CampaignDefinition | None:
        """A campaign's definition, or None."""
        self._check_open()
        return self._campaigns.get(campaign_id)

    async def campaigns(self) -> list[CampaignDefinition]:
        """Every stored campaign definition, oldest first."""
        self._check_open()
        return sorted(self._campaigns.values(), key=lambda d: d.created_at)

    async def counts(self, campaign_id: str, /) -> dict[OutboxStatus, int]:
        """How many records of the campaign are in each status."""
        self._check_open()
        counts = dict.fromkeys(OutboxStatus, 0)
        for record in self._records.values():
            if record.campaign_id == campaign_id:
                counts[record.status] += 1
        return counts

    def records(
        self, campaign_id: str, /, *, status: OutboxStatus | None = None
    ) -> AsyncIterator[OutboxRecord]:
        """A campaign's records (optionally of one status) in key order."""

        def snapshot() -> list[OutboxRecord]:
            self._check_open()
            return sorted(
                (
                    record
                    for record in self._records.values()
                    if record.campaign_id == campaign_id
                    and (status is None or record.status == status)
                ),
                key=lambda record: record.key,
            )

        return _Items(snapshot)

    async def suppress(self, address: str, /, *, reason: str, now: float) -> None:
        """Add an address to the suppression list (the first reason is kept)."""
        self._check_open()
        address = address.lower()
        if address not in self._suppressions:
            self._suppressions[address] = Suppression(
                address=address, reason=reason, created_at=float(now)
            )

    async def unsuppress(self, address: str, /) -> bool:
        """Remove an address; True if it was there."""
        self._check_open()
        return self._suppressions.pop(address.lower(), None) is not None

    async def suppressed(self, addresses: Sequence[str], /) -> set[str]:
        """Which of `addresses` are suppressed, lower-cased."""
        self._check_open()
        return {a for a in map(str.lower, addresses) if a in self._suppressions}

    def suppressions(self) -> AsyncIterator[Suppression]:
        """Every suppressed address, in address order."""

        def snapshot() -> list[Suppression]:
            self._check_open()
            return [self._suppressions[a] for a in sorted(self._suppressions)]

        return _Items(snapshot)


def _copies(records: Sequence[OutboxRecord]) -> list[OutboxRecord]:
    """Records through the msgpack round trip a persisted record takes (rejecting what the
    SQLite store would reject, and detached from the caller's objects)."""
    try:
        return [_RECORD.decode(_ENCODER.encode(record)) for record in records]
    except (msgspec.MsgspecError, TypeError, ValueError) as exc:
        raise ValidationError(f"an outbox record cannot be stored: {exc}") from exc
