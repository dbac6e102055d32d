"""The outbox contract: records, statuses, and the `OutboxStore` protocol every store implements.

A record is one message to one recipient at one step of one campaign. Its key (campaign,
recipient, step) is its idempotency key: adding a key that exists changes nothing, so re-running
a campaign never queues a recipient twice.

```
pending ──claim──▶ sending ──finish──▶ sent | failed | in_doubt
   ▲                  │
   └── lease expired ─┘  (at-least-once: claimed again; at-most-once: in_doubt, never resent)
```

Records persisted by an older version must still decode: new fields always get defaults.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Sequence
from typing import Any, Protocol, runtime_checkable

import msgspec

__all__ = [
    "CampaignDefinition",
    "CampaignStep",
    "Completion",
    "DeliveryPolicy",
    "OutboxRecord",
    "OutboxStatus",
    "OutboxStore",
    "Suppression",
    "record_key",
]


class OutboxStatus(enum.StrEnum):
    """Where a record is in its life. The values are persisted: never rename them."""

    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    IN_DOUBT = "in_doubt"
    SUPPRESSED = "suppressed"


class DeliveryPolicy(enum.StrEnum):
    """What happens to a record whose sender died mid-send (its lease expired while `sending`).

    `AT_LEAST_ONCE` claims it again (the recipient may get it twice); `AT_MOST_ONCE` marks it
    `in_doubt` and never resends it (the recipient may get it zero times). Either way the
    campaign report says how many.
    """

    AT_LEAST_ONCE = "at-least-once"
    AT_MOST_ONCE = "at-most-once"


def record_key(campaign_id: str, recipient: str, step: int = 0) -> str:
    """The idempotency key of one recipient at one step of one campaign."""
    return f"{campaign_id}\x1f{recipient.lower()}\x1f{step}"


class OutboxRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One message to one recipient, as the outbox stores it.

    `variables` are the recipient's personalisation data (JSON-compatible values); `not_before`
    is when it may be sent (epoch seconds; None: now). `lease_owner`/`lease_until` are set
    while a sender holds it.
    """

    key: str
    campaign_id: str
    recipient: str
    step: int = 0
    variables: dict[str, object] = msgspec.field(default_factory=dict)
    status: OutboxStatus = OutboxStatus.PENDING
    attempts: int = 0
    not_before: float | None = None
    lease_owner: str | None = None
    lease_until: float | None = None
    message_id: str | None = None
    error: str | None = None
    updated_at: float = 0.0


class Completion(msgspec.Struct, frozen=True, kw_only=True):
    """The outcome of sending one claimed record, written back in batches by `finish()`.

    `follow_up` is a record to add in the same transaction if (and only if) this outcome is
    written: the next step of a drip sequence. A crash can never record a step as sent and
    lose the step after it.
    """

    key: str
    status: OutboxStatus
    message_id: str | None = None
    error: str | None = None
    attempts: int = 1
    not_before: float | None = None  # with status=PENDING: retry no earlier than this
    follow_up: OutboxRecord | None = None


class CampaignStep(msgspec.Struct, frozen=True, kw_only=True):
    """One message of a campaign: its template sources, and when it is sent.

    `delay` is seconds after the previous step was sent (for the first step: after the
    campaign's start). A one-message campaign has one step with no delay.
    """

    subject: str
    text: str | None = None
    html: str | None = None
    delay: float = 0.0


class CampaignDefinition(msgspec.Struct, frozen=True, kw_only=True):
    """What a worker needs to send a campaign's records without the code that queued them.

    `provider` is the provider's `spec()`: its settings without secrets (a password is named
    by the environment variable it comes from, never stored). `options` holds the sending
    settings (rate limit, concurrency, the unsubscribe URL and the name of its secret's
    environment variable). Persisted by `send_campaign`, `create_campaign` and `schedule`.
    """

    campaign_id: str
    steps: tuple[CampaignStep, ...]
    provider: dict[str, Any] = msgspec.field(default_factory=dict)
    options: dict[str, Any] = msgspec.field(default_factory=dict)
    name: str | None = None
    created_at: float = 0.0


class Suppression(msgspec.Struct, frozen=True, kw_only=True):
    """An address that must not be sent to (unsubscribed, or permanently rejected)."""

    address: str
    reason: str
    created_at: float = 0.0


@runtime_checkable
class OutboxStore(Protocol):
    """Durable storage of outbox records. Implementations: memory (tests), SQLite (default).

    Every method is safe to call from many tasks at once; stores that share a file between
    processes (SQLite) make `claim*` atomic across processes too. Times are epoch seconds
    passed in by the caller (`now=`), so tests control them.
    """

    async def open(self) -> None:
        """Create/open the storage. Idempotent."""
        ...

    async def aclose(self) -> None:
        """Flush and close. Idempotent."""
        ...

    async def add(self, records: Sequence[OutboxRecord], /) -> int:
        """Insert records whose key is new; existing keys are left untouched. Returns how many
        were inserted."""
        ...

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
        """Atomically take the given records for sending, returning those taken.

        Taken: `pending` records that are due (`not_before` is None or ≤ now), and `sending`
        records whose lease expired — under AT_MOST_ONCE those are set to `in_doubt` instead
        and not returned. Taken records become `sending` with `lease_owner=owner`,
        `lease_until=now+lease`, `attempts+1`. Anything else (sent, failed, in_doubt,
        suppressed, leased by a live owner, not due) is not returned.
        """
        ...

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
        """`add` and `claim` of the same `pending` records, in one transaction.

        A record whose key is new is stored already claimed (`sending`, leased by `owner`,
        one attempt); one whose key exists is claimed as `claim` would. Returns what was
        claimed, in the order given. A sender's hot path: one write per chunk instead of two.
        """
        ...

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
        """Like `claim`, for up to `limit` records of any key (or of one campaign), oldest
        `not_before` first. Used by workers and the scheduler."""
        ...

    async def finish(self, completions: Sequence[Completion], /, *, owner: str, now: float) -> int:
        """Write outcomes in one transaction. Only records still leased by `owner` change
        (a sender whose lease was taken over cannot overwrite the new owner's result), and
        only their `follow_up` records are added (when their key is new).
        Returns how many changed."""
        ...

    async def next_due(self, *, campaign_id: str | None = None) -> float | None:
        """When the next record (of any campaign, or of one) may become claimable.

        The earliest `not_before` of `pending` records (0.0 for one due now) and `lease_until`
        of `sending` ones; None when there is neither: nothing is left to send.
        """
        ...

    async def reserve(self, key: str, /, *, window: float, count: int, cap: int) -> int:
        """Take up to `count` of the `cap` units that quota `key` allows in the window
        starting at `window` (epoch seconds); returns how many were granted (0 to `count`).

        Atomic across processes sharing the store: the daily cap of one account holds for
        every campaign and worker that sends through it.
        """
        ...

    async def save_campaign(self, definition: CampaignDefinition, /) -> None:
        """Store a campaign's definition, replacing an earlier one with the same id."""
        ...

    async def get_campaign(self, campaign_id: str, /) -> CampaignDefinition | None:
        """A campaign's definition, or None if none was stored."""
        ...

    async def campaigns(self) -> list[CampaignDefinition]:
        """Every stored campaign definition, oldest first."""
        ...

    async def counts(self, campaign_id: str, /) -> dict[OutboxStatus, int]:
        """How many records of the campaign are in each status (absent statuses: 0)."""
        ...

    def records(
        self, campaign_id: str, /, *, status: OutboxStatus | None = None
    ) -> AsyncIterator[OutboxRecord]:
        """Stream a campaign's records (optionally of one status) in key order, in pages."""
        ...

    async def suppress(self, address: str, /, *, reason: str, now: float) -> None:
        """Add an address to the suppression list (case-insensitive). Idempotent."""
        ...

    async def unsuppress(self, address: str, /) -> bool:
        """Remove an address; True if it was there."""
        ...

    async def suppressed(self, addresses: Sequence[str], /) -> set[str]:
        """Which of `addresses` are suppressed (returned lower-cased)."""
        ...

    def suppressions(self) -> AsyncIterator[Suppression]:
        """Every suppressed address."""
        ...
