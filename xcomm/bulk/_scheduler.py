"""The scheduler: send what is due in the outbox, in this process or in `xcomm worker`s.

    outbox (records due, any campaign) → claim_due → workers → campaign definition
        → provider (a live one of this manager with the same spec, or rebuilt from it)
        → render the record's step → send → outcome (+ the next drip step, one transaction)

Everything a record needs is in the outbox, so it survives restarts: a campaign scheduled for
tomorrow, a drip step due in three days, a campaign whose process died. Several processes may
run schedulers on one SQLite outbox: leases keep them from sending a record twice, and each
takes `rate_share` of every campaign's rate limit so that together they keep to it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import anyio

from xcomm._bucket import TokenBucket
from xcomm._clock import Clock
from xcomm._config import RateLimit
from xcomm._errors import ConfigurationError
from xcomm._templates import Template, UnsubscribeSigner
from xcomm.bulk._campaign import (
    Campaign,
    Options,
    ScheduleTime,
    check_campaign_id,
    definition,
    message_campaign,
    schedule_at,
    share_of,
)
from xcomm.bulk._recipients import RecipientsSource
from xcomm.bulk._result import CampaignResult, Tally
from xcomm.bulk._run import Drain, ProgressCallback, Run
from xcomm.email._base import EmailProvider
from xcomm.outbox import CampaignDefinition, CampaignStep, OutboxStatus, OutboxStore

if TYPE_CHECKING:
    from xcomm._manager import CommManager

__all__ = ["DripCampaign", "Scheduler"]

_SETTLE = 0.05  # seconds between looks when a due record is leased by another worker


class Scheduler:
    """Builds each campaign from its stored definition (once) and drains the outbox.

    Made by `comm.run_scheduler()` / `comm.resume_campaign()`; buckets live as long as the
    scheduler, so a campaign's rate holds across drains.
    """

    def __init__(
        self,
        comm: CommManager,
        store: OutboxStore,
        options: Options,
        *,
        clock: Clock,
        rate_share: float = 1.0,
        provider_settings: Mapping[str, Any] | None = None,
    ) -> None:
        if not 0 < rate_share <= 1:
            raise ConfigurationError(f"rate_share must be in (0, 1], got {rate_share!r}")
        # over a campaign's stored provider settings (a helper process's share of the pool)
        self._settings = dict(provider_settings or {})
        self._comm = comm
        self._store = store
        self._options = options
        self._clock = clock
        self._share = rate_share
        self._campaigns: dict[str, Campaign] = {}

    async def resolve(self, campaign_id: str) -> Campaign:
        """The `Campaign` that sends `campaign_id`'s records (built on first use)."""
        campaign = self._campaigns.get(campaign_id)
        if campaign is None:
            found = await self._store.get_campaign(campaign_id)
            if found is None:
                raise ConfigurationError(
                    f"campaign {campaign_id!r} has records in the outbox but no stored "
                    "definition; send it again with bulk.send_campaign(campaign_id=...) "
                    "from the code that created it"
                )
            campaign = self._campaigns[campaign_id] = self._build(found)
        return campaign

    def _build(self, found: CampaignDefinition) -> Campaign:
        spec = {**found.provider, **self._settings} if found.provider else found.provider
        provider = self._comm.provider_for(spec, campaign_id=found.campaign_id)
        if found.options.get("kind") == "message":
            return message_campaign(found.campaign_id, provider)
        signer = _signer(found)
        steps = [
            (
                Template(subject=step.subject, text=step.text, html=step.html).compile(
                    unsubscribe=signer
                ),
                step.delay,
            )
            for step in found.steps
        ]
        limit = _limit(found.options.get("rate_limit"), self._share)
        bucket = TokenBucket.from_limit(limit, clock=self._clock) if limit else None
        cap = found.options.get("daily_cap")
        return Campaign(
            found.campaign_id,
            provider,
            steps,
            bucket=bucket,
            daily_cap=int(cap) if isinstance(cap, int) else None,
        )

    async def drain(
        self, *, campaign_id: str | None = None, on_progress: ProgressCallback | None = None
    ) -> CampaignResult:
        """Send everything due now, once."""
        drain = Drain(
            self._store,
            self.resolve,
            self._options,
            campaign_id=campaign_id,
            on_progress=on_progress,
        )
        return await drain.run()

    async def run(
        self,
        *,
        campaign_id: str | None = None,
        until_idle: bool = False,
        poll_interval: float = 1.0,
        on_progress: ProgressCallback | None = None,
    ) -> CampaignResult:
        """Drain, sleep until the next record is due (at most `poll_interval`), repeat."""
        if not poll_interval > 0:
            raise ConfigurationError(f"poll_interval must be > 0 seconds, got {poll_interval!r}")
        started = time.perf_counter()
        totals = Tally()
        while True:
            result = await self.drain(campaign_id=campaign_id, on_progress=on_progress)
            _add(totals, result)
            upcoming = await self._store.next_due(campaign_id=campaign_id)
            now = time.time()
            if until_idle and (upcoming is None or upcoming > now):
                break  # nothing due now: later records wait for a later run
            if upcoming is None:
                wait = poll_interval
            else:
                wait = min(poll_interval, max(upcoming - now, _SETTLE))
            await anyio.sleep(wait)
        totals.scheduled = await _waiting(self._store, campaign_id)
        return totals.result(campaign_id or "*", time.perf_counter() - started)


class DripCampaign:
    """A sequence of messages, each sent a delay after the one before, per contact.

    Made by `comm.create_campaign(name, steps=[(template, delay), ...], provider=...)`.
    `enroll()` queues contacts at the first step; a scheduler (`comm.run_scheduler()` or
    `xcomm worker`) sends each step when due and queues the next in the same transaction.
    An unsubscribe or a hard bounce (the address lands on the suppression list) ends a
    contact's sequence; a step that fails for good ends it too.

    Example:
        ```python
        welcome = comm.create_campaign(
            "welcome",
            steps=[
                (Template(subject="Welcome, {{ name }}", text="Glad you joined."), 0),
                (Template(subject="Getting started", text="Three tips..."), timedelta(days=2)),
                (Template(subject="How is it going?", text="Reply to this mail."), 7 * 86400),
            ],
            provider=smtp,
        )
        await welcome.enroll([{"email": "ada@example.com", "name": "Ada"}])
        await comm.run_scheduler()  # in a worker: `xcomm worker`
        ```
    """

    def __init__(
        self,
        name: str,
        steps: Sequence[tuple[Template, float]],
        *,
        provider: EmailProvider,
        outbox: Callable[[], Any],
        rate_limit: RateLimit | None = None,
        unsubscribe: UnsubscribeSigner | None = None,
    ) -> None:
        self.campaign_id = check_campaign_id(name)
        for template, _ in steps:
            template.compile(unsubscribe=unsubscribe)  # a syntax error now, not per contact
        self._steps = [
            CampaignStep(subject=t.subject, text=t.text, html=t.html, delay=d) for t, d in steps
        ]
        self._provider = provider
        self._outbox = outbox
        self._limit = rate_limit
        self._unsubscribe = unsubscribe

    async def enroll(
        self,
        recipients: RecipientsSource,
        *,
        personalization_data: Mapping[str, Mapping[str, Any]] | None = None,
        start: ScheduleTime = None,
    ) -> CampaignResult:
        """Queue contacts at the first step (due `start` + its delay; default now).

        A contact enrolled before is left where it is in the sequence (`result.skipped`);
        a suppressed one is not enrolled (`result.suppressed`).
        """
        store: OutboxStore = await self._outbox()
        await store.save_campaign(
            definition(
                self.campaign_id,
                self._steps,
                provider=self._provider,
                limit=self._limit,
                unsubscribe=self._unsubscribe,
                name=self.campaign_id,
            )
        )
        first = (schedule_at(start) or time.time()) + self._steps[0].delay

        async def never(_: str) -> Campaign:  # enrolling sends nothing
            raise AssertionError("enroll() does not send")

        run = Run(Options(), store, never, self.campaign_id, None)
        await run.main(recipients, personalization_data, start=first)
        return run.tally.result(self.campaign_id, time.perf_counter() - run.started)

    async def progress(self) -> dict[int, dict[OutboxStatus, int]]:
        """How many contacts are at each step, in each status: `{step: {status: n}}`."""
        store: OutboxStore = await self._outbox()
        table: dict[int, dict[OutboxStatus, int]] = {}
        async for record in store.records(self.campaign_id):
            row = table.setdefault(record.step, dict.fromkeys(OutboxStatus, 0))
            row[record.status] += 1
        return dict(sorted(table.items()))


def steps_of(steps: Iterable[tuple[Template, Any]]) -> list[tuple[Template, float]]:
    """Validate `[(template, delay), ...]`; a delay is seconds or a `timedelta`."""
    checked: list[tuple[Template, float]] = []
    for index, entry in enumerate(steps):
        if not (isinstance(entry, tuple) and len(entry) == 2):
            raise ConfigurationError(f"step {index} must be a (template, delay) pair")
        template, delay = entry
        if not isinstance(template, Template):
            raise ConfigurationError(f"step {index}: the template must be an xcomm.Template")
        seconds = delay.total_seconds() if hasattr(delay, "total_seconds") else delay
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
            raise ConfigurationError(
                f"step {index}: the delay must be seconds >= 0 or a timedelta, got {delay!r}"
            )
        checked.append((template, float(seconds)))
    if not checked:
        raise ConfigurationError("a campaign needs at least one step")
    return checked


def _signer(found: CampaignDefinition) -> UnsubscribeSigner | None:
    url = found.options.get("unsubscribe_url")
    if not url:
        return None
    name = found.options.get("unsubscribe_secret_env")
    if not name:
        raise ConfigurationError(
            f"campaign {found.campaign_id!r} signs unsubscribe links, but its secret was given "
            "in code, not stored; send it from that code again, or create its signer with "
            "UnsubscribeSigner.from_env(NAME, url) so that workers can read the secret"
        )
    return UnsubscribeSigner.from_env(str(name), str(url))


def _limit(stored: object, share: float) -> RateLimit | None:
    if not isinstance(stored, dict):
        return None
    limit = RateLimit(rate=float(stored["rate"]), per=float(stored["per"]), burst=stored["burst"])
    return share_of(limit, share)


def _add(totals: Tally, result: CampaignResult) -> None:
    totals.total += result.total
    totals.sent += result.sent
    totals.failed += result.failed
    totals.suppressed += result.suppressed
    totals.skipped += result.skipped
    totals.in_doubt += result.in_doubt
    totals.failures.extend(result.failures)


async def _waiting(store: OutboxStore, campaign_id: str | None) -> int:
    if campaign_id is None:
        return 0
    return (await store.counts(campaign_id))[OutboxStatus.PENDING]
