"""`BulkSender`: campaigns through a bounded worker pool, tracked in the durable outbox.

    recipients (streamed, 500 at a time)
        → outbox.add (idempotent by campaign/recipient/step) → suppression → outbox.claim
        → workers (`_run`) → outcomes written back in batches

Memory stays constant however long the list, and a re-run with the same `campaign_id` sends
only what no run has sent. Each campaign's definition is stored too, so a scheduler in any
process can send what it queued for later (`schedule_time`) or left behind.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, NotRequired, Required, TypedDict, Unpack

from xcomm._bucket import TokenBucket
from xcomm._clock import Clock
from xcomm._config import RateLimit
from xcomm._errors import (
    ConfigurationError,
)
from xcomm._templates import Template, UnsubscribeSigner
from xcomm.bulk._campaign import (
    Campaign,
    Options,
    ScheduleTime,
    campaign_limit,
    check_campaign_id,
    daily_cap_of,
    definition,
    rebuild_problem,
    schedule_at,
    share_of,
)
from xcomm.bulk._helpers import Helpers, HelperSettings
from xcomm.bulk._progress import CampaignRun
from xcomm.bulk._recipients import RecipientsSource
from xcomm.bulk._result import CampaignResult, Outcome, Progress
from xcomm.bulk._run import ProgressCallback, Run
from xcomm.email._base import EmailProvider
from xcomm.outbox import (
    CampaignStep,
    DeliveryPolicy,
    OutboxStatus,
    OutboxStore,
)

__all__ = ["BulkSender", "CampaignArguments"]


def _processes(value: object, provider: EmailProvider, track_delivery: bool) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"processes must be a positive int, got {value!r}")
    if value == 1:
        return 1
    if not track_delivery:
        raise ConfigurationError(
            f"processes={value} shares the work through the outbox: it needs track_delivery=True"
        )
    if (problem := rebuild_problem(provider.spec())) is not None:
        raise ConfigurationError(
            f"processes={value}: helper processes build the provider from its settings, but "
            f"it {problem}"
        )
    if provider.limiter is not None:
        raise ConfigurationError(
            f"processes={value}: the provider's own rate limit holds in this process only; "
            "give the campaign its rate instead (create_bulk_sender(rate_limit=...)), which "
            "the processes share"
        )
    return value


class CampaignArguments(TypedDict):
    """The keyword arguments of `BulkSender.send_campaign` (see it for each one's meaning),
    which `start_campaign` takes too."""

    template: Required[Template]
    recipients: Required[RecipientsSource]
    personalization_data: NotRequired[Mapping[str, Mapping[str, Any]] | None]
    campaign_id: NotRequired[str | None]
    schedule_time: NotRequired[ScheduleTime]
    unsubscribe: NotRequired[UnsubscribeSigner | None]
    on_progress: NotRequired[ProgressCallback | None]
    source: NotRequired[str | None]


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
        daily_cap: messages per day the provider's account may send (an int, or a preset
            name such as `"gmail"`); what does not fit today is queued for the next day
            (`result.scheduled`) and sent by the scheduler. Counted per account, across
            campaigns and worker processes, in UTC days.
        processes: send from this many processes (this one and `processes - 1` helpers
            started for each campaign), to use more than one CPU core. They share the SQLite
            outbox, and split `max_concurrent`, `rate_limit`, `per_domain_concurrency` and the
            provider's `pool_size` between them. The provider must be one a helper can build
            from its settings (a password as `password_env`), without a rate limit of its own.
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
        daily_cap: int | str | None = None,
        processes: int = 1,
    ) -> None:
        if not isinstance(provider, EmailProvider):
            raise ConfigurationError(
                f"the bulk sender sends email; got a {type(provider).__name__} "
                "(create it with an email provider such as comm.smtp(...))"
            )
        self._daily_cap = daily_cap_of(daily_cap)
        self._options = Options(
            max_concurrent=max_concurrent,
            per_domain_concurrency=per_domain_concurrency,
            retry_failed=retry_failed,
            policy=policy,
            lease=lease,
            batch_size=batch_size,
        )
        self._limit = campaign_limit(rate_limit)
        self._provider = provider
        self._outbox = outbox
        self._track = track_delivery
        self._processes = _processes(processes, provider, track_delivery)
        # This process's share of the rate; each helper takes an equal one.
        mine = self._limit and share_of(self._limit, 1 / self._processes)
        self._bucket = TokenBucket.from_limit(mine, clock=clock) if mine else None

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
        schedule_time: ScheduleTime = None,
        unsubscribe: UnsubscribeSigner | None = None,
        on_progress: ProgressCallback | None = None,
        source: str | None = None,
    ) -> CampaignResult:
        """Send `template` to every recipient not already sent in this campaign.

        Returns the run's `CampaignResult`; per-recipient failures are counted, not raised
        (call `result.raise_for_failures()` to raise). Pass the same `campaign_id` to resume.

        With a future `schedule_time` (an aware `datetime`, an ISO 8601 string, or epoch
        seconds; a naive time is local time) every recipient is queued in the outbox for that
        time and the call returns at once (`result.scheduled`); `comm.run_scheduler()` or
        `xcomm worker` sends them when due, across restarts.

        Recipients are recorded in the outbox as they are sent, not all up front: to finish an
        interrupted campaign, run it again with the same source. `source` (for example the
        campaign file's path) is stored with the campaign so a tool can find that source again.
        """
        if not isinstance(template, Template):
            raise ConfigurationError("template must be an xcomm.Template")
        campaign_id = check_campaign_id(campaign_id)
        start = schedule_at(schedule_time)
        compiled = template.compile(unsubscribe=unsubscribe)
        store = await self._store()
        campaign = Campaign(
            campaign_id,
            self._provider,
            [(compiled, 0.0)],
            bucket=self._bucket,
            daily_cap=self._daily_cap,
        )
        if self._track:
            await store.save_campaign(
                definition(
                    campaign_id,
                    [
                        CampaignStep(
                            subject=template.subject, text=template.text, html=template.html
                        )
                    ],
                    provider=self._provider,
                    limit=self._limit,
                    unsubscribe=unsubscribe,
                    name=template.name,
                    daily_cap=self._daily_cap,
                    sending=self._options,
                    source=source,
                )
            )

        async def resolve(_: str) -> Campaign:
            return campaign

        batch = self._provider.batch_size(self._options.max_concurrent)
        shared = self._processes > 1 and start is None
        options = self._options.share(self._processes) if shared else self._options
        processes = self._processes if shared else 1
        run = Run(
            options, store, resolve, campaign_id, on_progress, send_batch=batch, processes=processes
        )
        if shared:
            run.helpers = self._helpers(store, campaign_id, options, batch, unsubscribe)
        try:
            await run.main(recipients, personalization_data, start=start)
        finally:
            if not self._track:
                await store.aclose()
        return run.tally.result(campaign_id, time.perf_counter() - run.started)

    def _helpers(
        self,
        store: OutboxStore,
        campaign_id: str,
        options: Options,
        batch: int,
        unsubscribe: UnsubscribeSigner | None,
    ) -> Helpers:
        """The helper processes of a campaign; `ConfigurationError` before anything is sent
        when they could not send it."""
        path = getattr(store, "path", None)
        if path is None:
            raise ConfigurationError(
                f"processes={self._processes} needs an outbox that other processes can open "
                f"(a SQLite file), not {type(store).__name__}: CommManager(outbox="
                "'campaigns.sqlite3'), or in a campaign file [outbox] url, --outbox or "
                "XCOMM_OUTBOX"
            )
        if unsubscribe is not None and not unsubscribe.secret_env:
            raise ConfigurationError(
                f"processes={self._processes}: the helper processes sign unsubscribe links "
                "too, but this signer's secret was given in code; create it with "
                "UnsubscribeSigner.from_env(NAME, url)"
            )
        settings = dict(self._provider.spec())
        if isinstance(settings.get("pool_size"), int):  # the connections are shared out too
            settings["pool_size"] = -(-settings["pool_size"] // self._processes)
        loop = type(asyncio.get_running_loop()).__module__
        return Helpers(
            HelperSettings(
                outbox=str(path),
                campaign_id=campaign_id,
                max_concurrent=options.max_concurrent,
                per_domain=options.per_domain,
                policy=options.policy.value,
                lease=options.lease,
                retry_failed=options.retry_failed,
                rate_share=1 / self._processes,
                processes=self._processes,
                batch=batch,
                provider_settings=settings,
                uvloop=loop.startswith("uvloop"),
            ),
            self._processes - 1,
        )

    def start_campaign(self, **arguments: Unpack[CampaignArguments]) -> CampaignRun:
        """`send_campaign(...)` in the background, watched as an async iterator of `Progress`
        events; use it with `async with` (leaving the block waits for the campaign; an error in
        the block cancels it). Takes `send_campaign`'s arguments.

        Example:
            ```python
            async with bulk.start_campaign(template=template, recipients="people.csv") as run:
                async for event in run:
                    print(f"{event.done}/{event.seen} done, {event.rate:.0f}/s")
            print(run.result.sent, "sent")
            ```
        """
        campaign_id = check_campaign_id(arguments.get("campaign_id"))
        also = arguments.get("on_progress")

        async def start(push: Callable[[Progress], None]) -> CampaignResult:
            async def forward(event: Progress) -> None:
                push(event)
                if also is not None:
                    outcome = also(event)
                    if inspect.isawaitable(outcome):
                        await outcome

            given: CampaignArguments = {**arguments, "campaign_id": campaign_id}
            given["on_progress"] = forward
            return await self.send_campaign(**given)

        return CampaignRun(campaign_id, start)

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
