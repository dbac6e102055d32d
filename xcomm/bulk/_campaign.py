"""A campaign as workers send it, and how it is written down for other processes.

`Campaign` renders a record's step and sends it; `definition()` is its persisted form
(templates, rate, caps, provider spec without secrets), from which a scheduler in any process
rebuilds it. One-off scheduled drafts (`draft.schedule(when)`) are campaigns of built messages.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import msgspec

from xcomm._bucket import TokenBucket
from xcomm._config import RateLimit
from xcomm._errors import (
    CommunicationError,
    ConfigurationError,
)
from xcomm._models import EmailMessage, SendResult
from xcomm._templates import CompiledTemplate, Template, UnsubscribeSigner
from xcomm._validation import ascii_domain
from xcomm.email._base import EmailProvider
from xcomm.email._compose import campaign_message
from xcomm.outbox import (
    CampaignDefinition,
    CampaignStep,
    DeliveryPolicy,
    OutboxRecord,
    record_key,
)

__all__ = [
    "DAY",
    "SCHEDULED",
    "Campaign",
    "Options",
    "Resolver",
    "ScheduleTime",
    "campaign_limit",
    "check_campaign_id",
    "daily_cap_of",
    "definition",
    "message_campaign",
    "queue_message",
    "quota_key",
    "rebuild_problem",
    "schedule_at",
    "share_of",
    "step_of",
]

ScheduleTime = dt.datetime | str | float | None
DAY = 86_400.0


class Options:
    """How the workers send: shared by `BulkSender` and the scheduler (`Drain`)."""

    __slots__ = ("batch", "lease", "max_concurrent", "per_domain", "policy", "retry_failed")

    def __init__(
        self,
        *,
        max_concurrent: int = 32,
        per_domain_concurrency: int | None = None,
        retry_failed: bool = True,
        policy: DeliveryPolicy | str = DeliveryPolicy.AT_LEAST_ONCE,
        lease: float = 300.0,
        batch_size: int = 500,
    ) -> None:
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
        if isinstance(lease, bool) or not isinstance(lease, int | float) or lease <= 0:
            raise ConfigurationError(f"lease must be a positive number of seconds, got {lease!r}")
        try:
            self.policy = DeliveryPolicy(policy)
        except ValueError as exc:
            raise ConfigurationError(
                f"policy must be 'at-least-once' or 'at-most-once', got {policy!r}"
            ) from exc
        self.max_concurrent = max_concurrent
        self.per_domain = per_domain_concurrency
        self.retry_failed = bool(retry_failed)
        self.lease = float(lease)
        self.batch = batch_size

    def share(self, processes: int) -> Options:
        """What each of `processes` processes sending one campaign together may do."""
        return Options(
            max_concurrent=-(-self.max_concurrent // processes),
            per_domain_concurrency=self.per_domain and max(1, self.per_domain // processes),
            retry_failed=self.retry_failed,
            policy=self.policy,
            lease=self.lease,
            batch_size=self.batch,
        )


class Campaign:
    """One campaign as the workers send it: provider, compiled steps and rate bucket."""

    __slots__ = (
        "_delays",
        "_steps",
        "bucket",
        "campaign_id",
        "daily_cap",
        "messages",
        "msgid_domain",
        "provider",
        "quota_key",
    )

    def __init__(
        self,
        campaign_id: str,
        provider: EmailProvider,
        steps: Sequence[tuple[CompiledTemplate, float]],
        *,
        bucket: TokenBucket | None = None,
        daily_cap: int | None = None,
        messages: bool = False,
    ) -> None:
        self.campaign_id = campaign_id
        self.provider = provider
        self.daily_cap = daily_cap
        # scheduled one-off messages: each record carries a built message, not template data
        self.messages = messages
        self.quota_key = quota_key(provider)
        self._steps = [template for template, _ in steps]
        self._delays = [delay for _, delay in steps]
        self.bucket = bucket
        sender_address = provider.default_sender
        # The Message-ID is ASCII: a unicode sender domain goes in its IDNA form.
        self.msgid_domain = ascii_domain(sender_address.domain) if sender_address else None

    async def deliver(
        self, records: Sequence[OutboxRecord]
    ) -> list[SendResult | CommunicationError]:
        """Render each record's step for its recipient and send them all in one
        `provider.send_many()`; one outcome per record, in order. A record that cannot be
        rendered (a missing variable, say) gets its error and the others still go."""
        outcomes: list[SendResult | CommunicationError | None] = [None] * len(records)
        messages: list[EmailMessage] = []
        for index, record in enumerate(records):
            if self.bucket is not None:
                await self.bucket.acquire()
            try:
                messages.append(self._message(record))
            except CommunicationError as exc:
                outcomes[index] = exc
        sent = iter(await self.provider.send_many(messages) if messages else ())
        return [next(sent) if outcome is None else outcome for outcome in outcomes]

    def _message(self, record: OutboxRecord) -> EmailMessage:
        """The record's message: its step rendered for its recipient (or, for a scheduled
        one-off, the message it carries)."""
        if self.messages:
            return _MESSAGE.decode(record.variables["message"])  # type: ignore[arg-type]
        if not 0 <= record.step < len(self._steps):
            raise ConfigurationError(
                f"campaign {self.campaign_id!r} has {len(self._steps)} steps; no step {record.step}"
            )
        content = self._steps[record.step].render(
            record.variables, recipient=record.recipient, campaign_id=self.campaign_id
        )
        message_id = None
        if self.msgid_domain:
            # Stable across attempts and resumes, so receivers can spot a duplicate.
            digest = hashlib.sha256(record.key.encode()).hexdigest()[:32]
            message_id = f"<{digest}@{self.msgid_domain}>"
        # record.recipient was validated once, when it was queued; not parsed again here.
        return campaign_message(
            self.provider,
            record.recipient,
            subject=content.subject,
            text=content.text,
            html=content.html,
            unsubscribe_url=content.list_unsubscribe_url,
            message_id=message_id,
        )

    def follow_up(self, record: OutboxRecord, now: float) -> OutboxRecord | None:
        """The recipient's next step of a drip sequence, due after its delay; None after the
        last step."""
        step = record.step + 1
        if step >= len(self._steps):
            return None
        return OutboxRecord(
            key=record_key(self.campaign_id, record.recipient, step),
            campaign_id=self.campaign_id,
            recipient=record.recipient,
            step=step,
            variables=record.variables,
            not_before=now + self._delays[step],
            updated_at=now,
        )


Resolver = Callable[[str], Awaitable[Campaign]]


def campaign_limit(value: RateLimit | float | None) -> RateLimit | None:
    """A campaign's rate: a number is messages per minute, spread evenly.

    Without an explicit burst a bucket would hold a whole minute, and a campaign would send
    its first minute's worth at full speed; one second's worth keeps the pace steady.
    """
    limit = RateLimit.coerce(value)
    if limit is None or limit.burst is not None:
        return limit
    return RateLimit(rate=limit.rate, per=limit.per, burst=max(1.0, limit.per_second))


def share_of(limit: RateLimit, share: float) -> RateLimit:
    """`share` of `limit`: what each of several processes sending one campaign may send."""
    return RateLimit(rate=limit.rate * share, per=limit.per, burst=max(1.0, limit.capacity * share))


def rebuild_problem(spec: Mapping[str, Any]) -> str | None:
    """Why another process cannot build the provider of `spec` from it (None when it can):
    a sentence to follow "the campaign" / "this provider"."""
    kind = spec.get("kind")
    if not kind or spec.get("custom"):
        return f"uses a provider that cannot be rebuilt from settings ({kind or 'none stored'})"
    if spec.get("username") and not spec.get("password_env"):
        return (
            f"sends as {spec['username']!r} on {kind} {spec.get('host', '')}, but its password "
            "was given in code and is not stored; create the provider with "
            "password_env='NAME' so that other processes read it from the environment"
        )
    return None


SCHEDULED = "scheduled:"  # campaign ids of one-off scheduled messages start with this
_MESSAGE = msgspec.msgpack.Decoder(EmailMessage)


def message_campaign(campaign_id: str, provider: EmailProvider) -> Campaign:
    """The campaign that sends the scheduled one-off messages of one provider."""
    return Campaign(campaign_id, provider, [], messages=True)


async def queue_message(provider: EmailProvider, message: EmailMessage, at: float) -> SendResult:
    """Put a built message in the outbox to be sent at `at` (`draft.schedule(when)`)."""
    outbox = provider._context.outbox
    spec = provider.spec()
    if outbox is None or not spec:
        raise ConfigurationError(
            "scheduling needs a provider made by a CommManager (it keeps the outbox); "
            f"{type(provider).__name__} here cannot be rebuilt by a scheduler"
        )
    store = await outbox()
    digest = hashlib.sha256(repr(sorted(spec.items())).encode()).hexdigest()[:16]
    campaign_id = f"{SCHEDULED}{spec.get('kind', provider.name)}-{digest}"
    await store.save_campaign(
        CampaignDefinition(
            campaign_id=campaign_id,
            steps=(),
            provider=spec,
            options={"kind": "message"},
            name=f"scheduled messages of {provider!r}",
            created_at=time.time(),
        )
    )
    recipients = message.recipients
    first = recipients[0].email if recipients else ""
    key = record_key(campaign_id, message.message_id or uuid.uuid4().hex)
    encoded = msgspec.msgpack.encode(message)
    await store.add(
        [
            OutboxRecord(
                key=key,
                campaign_id=campaign_id,
                recipient=first,
                variables={"message": encoded},
                not_before=at,
                updated_at=time.time(),
            )
        ]
    )
    return SendResult(
        message_id=message.message_id,
        provider=provider.name,
        scheduled_for=dt.datetime.fromtimestamp(at, dt.UTC),
    )


def quota_key(provider: EmailProvider) -> str:
    """The account a daily cap counts against: kind, user, host and port of the provider
    (for SES: profile and region; for Outlook: the mailbox)."""
    spec = provider.spec()
    user = spec.get("username") or spec.get("profile") or spec.get("mailbox") or ""
    host, port = spec.get("host") or spec.get("region") or "", spec.get("port") or ""
    return f"{spec.get('kind') or provider.name}:{user}@{host}:{port}"


def daily_cap_of(value: int | str | None) -> int | None:
    """A daily cap given as messages per day, or as the name of a provider preset."""
    if value is None:
        return None
    if isinstance(value, str):
        from xcomm._presets import PRESETS

        preset = PRESETS.get(value)
        cap = preset.daily_cap if preset is not None else None
        if cap is None:
            known = sorted(name for name, p in PRESETS.items() if p.daily_cap)
            raise ConfigurationError(
                f"no preset {value!r} with a daily cap; presets with one: {', '.join(known)}"
            )
        return int(cap)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(
            f"daily_cap must be messages per day (an int >= 1) or a preset name, got {value!r}"
        )
    return value


def definition(
    campaign_id: str,
    steps: Sequence[CampaignStep],
    *,
    provider: EmailProvider,
    limit: RateLimit | None,
    unsubscribe: UnsubscribeSigner | None,
    name: str | None = None,
    daily_cap: int | None = None,
    sending: Options | None = None,
    source: str | None = None,
) -> CampaignDefinition:
    """The persisted form of a campaign: what a worker needs to send its records."""
    options: dict[str, Any] = {}
    if source is not None:
        options["source"] = source
    if sending is not None:  # what `comm.resume_campaign` uses unless told otherwise
        options["max_concurrent"] = sending.max_concurrent
        options["policy"] = sending.policy.value
        if sending.per_domain is not None:
            options["per_domain_concurrency"] = sending.per_domain
    if daily_cap is not None:
        options["daily_cap"] = daily_cap
    if limit is not None:
        options["rate_limit"] = {"rate": limit.rate, "per": limit.per, "burst": limit.burst}
    if unsubscribe is not None:
        options["unsubscribe_url"] = unsubscribe.base_url
        if unsubscribe.secret_env:
            options["unsubscribe_secret_env"] = unsubscribe.secret_env
    return CampaignDefinition(
        campaign_id=campaign_id,
        steps=tuple(steps),
        provider=provider.spec(),
        options=options,
        name=name,
        created_at=time.time(),
    )


def step_of(template: Template, delay: float = 0.0) -> CampaignStep:
    return CampaignStep(
        subject=template.subject, text=template.text, html=template.html, delay=delay
    )


def schedule_at(when: ScheduleTime, *, what: str = "schedule_time") -> float | None:
    """Epoch seconds of a schedule time; None for "now" (None, or a time already past)."""
    if when is None:
        return None
    if isinstance(when, bool):
        raise ConfigurationError(f"{what} must be a datetime or ISO 8601 text, not {when!r}")
    if isinstance(when, int | float):
        moment = float(when)
    else:
        if isinstance(when, str):
            try:
                when = dt.datetime.fromisoformat(when.strip())
            except ValueError:
                raise ConfigurationError(
                    f"{what} {when!r} is not an ISO 8601 date and time "
                    "(e.g. '2026-12-01T09:00:00+01:00')"
                ) from None
        if not isinstance(when, dt.datetime):
            raise ConfigurationError(
                f"{what} must be a datetime or ISO 8601 text, not {type(when).__name__}"
            )
        moment = when.timestamp()  # a naive datetime is local time
    return moment if moment > time.time() else None


def check_campaign_id(campaign_id: str | None) -> str:
    if campaign_id is None:
        return f"campaign-{uuid.uuid4().hex[:12]}"
    if not isinstance(campaign_id, str) or not campaign_id.strip():
        raise ConfigurationError("campaign_id must be a non-empty string")
    if any(c in campaign_id for c in "\x1f\r\n\x00"):
        raise ConfigurationError("campaign_id must not contain control characters")
    return campaign_id
