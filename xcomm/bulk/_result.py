"""What a campaign run reports: totals, timing, and per-recipient outcomes."""

from __future__ import annotations

from collections import deque

import msgspec

from xcomm._errors import CommunicationError
from xcomm._metrics import percentile
from xcomm.outbox import OutboxStatus

__all__ = ["CampaignFailed", "CampaignResult", "Outcome", "Progress"]


class Outcome(msgspec.Struct, frozen=True, kw_only=True):
    """What happened to one recipient of a campaign."""

    recipient: str
    status: OutboxStatus
    message_id: str | None = None
    error: str | None = None
    attempts: int = 0


class Progress(msgspec.Struct, frozen=True, kw_only=True):
    """A progress event, given to `send_campaign(on_progress=...)` as the run goes."""

    campaign_id: str
    seen: int
    done: int
    sent: int
    failed: int
    elapsed: float
    rate: float


class CampaignFailed(CommunicationError):
    """Some recipients of a campaign failed; `.result` has the counts, `.failures` examples."""

    def __init__(self, result: CampaignResult, failures: list[Outcome]) -> None:
        self.result = result
        self.failures = failures
        super().__init__(
            f"campaign {result.campaign_id!r}: {result.failed} failed and {result.in_doubt} in "
            f"doubt of {result.total}; see bulk.results({result.campaign_id!r}) for each one"
        )


class CampaignResult(msgspec.Struct, frozen=True, kw_only=True):
    """Totals of one `send_campaign` run.

    Attributes:
        campaign_id: the id to resume or inspect the campaign with.
        total: recipients read from the source in this run.
        sent: delivered in this run.
        failed: refused or undeliverable (bad address, missing variable, 5xx, retries exhausted).
        suppressed: skipped because they are on the suppression list.
        skipped: already sent (or being sent by another worker) in an earlier run.
        scheduled: queued for later (`schedule_time`, a drip step's delay, a daily cap's next
            window, a transient failure's retry); a worker or `comm.run_scheduler()` sends them.
        in_doubt: the provider may have them (connection lost after the message was handed
            over, or a crashed run under the at-most-once policy); not resent.
        duration: seconds the run took.
        throughput: messages sent per second.
        p50_latency, p99_latency: seconds per send, limiter waits and retries included.
    """

    campaign_id: str
    total: int = 0
    sent: int = 0
    failed: int = 0
    suppressed: int = 0
    skipped: int = 0
    in_doubt: int = 0
    scheduled: int = 0
    duration: float = 0.0
    throughput: float = 0.0
    p50_latency: float = 0.0
    p99_latency: float = 0.0
    failures: tuple[Outcome, ...] = ()

    @property
    def ok(self) -> bool:
        """True when nothing failed and nothing is in doubt."""
        return self.failed == 0 and self.in_doubt == 0

    def raise_for_failures(self) -> None:
        """Raise `CampaignFailed` if any recipient failed or is in doubt."""
        if not self.ok:
            raise CampaignFailed(self, list(self.failures))


class Tally:
    """Mutable counters of a run (the frozen `CampaignResult` is made from it at the end)."""

    __slots__ = (
        "failed",
        "failures",
        "in_doubt",
        "latencies",
        "scheduled",
        "sent",
        "skipped",
        "suppressed",
        "total",
    )

    def __init__(self) -> None:
        self.total = self.sent = self.failed = self.suppressed = self.skipped = 0
        self.in_doubt = self.scheduled = 0
        self.latencies: deque[float] = deque(maxlen=20_000)
        self.failures: deque[Outcome] = deque(maxlen=100)

    @property
    def done(self) -> int:
        return (
            self.sent + self.failed + self.suppressed + self.skipped + self.in_doubt
            + self.scheduled
        )  # fmt: skip

    def result(self, campaign_id: str, duration: float) -> CampaignResult:
        ordered = sorted(self.latencies)
        return CampaignResult(
            campaign_id=campaign_id,
            total=self.total,
            sent=self.sent,
            failed=self.failed,
            suppressed=self.suppressed,
            skipped=self.skipped,
            in_doubt=self.in_doubt,
            scheduled=self.scheduled,
            duration=duration,
            throughput=self.sent / duration if duration > 0 else 0.0,
            p50_latency=percentile(ordered, 0.5),
            p99_latency=percentile(ordered, 0.99),
            failures=tuple(self.failures),
        )
