"""Published provider rate limits, as `RateLimiter.for_platform(name)` presets.

Each preset cites the limit as the provider publishes it (see the table of provider limits
in the project's reference notes). The numbers are starting points: accounts differ, and a
429 with `Retry-After` pauses the bucket through `penalize()` whatever the preset says.

Bursts are deliberately small. A token bucket admits up to `burst + rate` in any one period,
so a burst as large as the window would let twice the published limit through in the worst
window; a burst of about a tenth of the window keeps that overshoot near 10%.

A limit that is also counted per day (Gmail's 2,000 messages, Exchange Online's 10,000
recipients, SES's 200 in the sandbox) is `daily_cap`, with its source in `daily_cap_note`. A
token bucket cannot enforce it (a bucket holding a day's worth lets the whole day through at
once): the bulk sender reserves each day's share in the outbox instead, and queues what does
not fit for the next day (`create_bulk_sender(daily_cap="gmail")`). `RateLimiter.for_platform`
ignores it.
"""

from __future__ import annotations

import msgspec

from xcomm._config import RateLimit

__all__ = ["PRESETS", "PlatformLimit"]


class PlatformLimit(msgspec.Struct, frozen=True, kw_only=True):
    """One platform's published limit, the quota cost of its operations, and the source.

    Example:
        `PRESETS["gmail"].limit.per_second` is 250.0 quota units a second,
        `PRESETS["gmail"].costs["messages.send"]` is 100, and `PRESETS["gmail"].daily_cap`
        is 2,000 messages a day.

    `daily_cap` is messages a day (None: none published; for a campaign, one recipient per
    message, a cap on recipients a day is the same number); `daily_cap_note` says where the
    figure comes from and how the provider counts it (a rolling 24 hours, per account, ...).
    """

    name: str
    limit: RateLimit
    costs: dict[str, float] = msgspec.field(default_factory=dict)
    note: str = ""
    daily_cap: int | None = None
    daily_cap_note: str = ""


#: Quota units per Gmail method (developers.google.com/gmail/api/reference/quota).
GMAIL_COSTS: dict[str, float] = {
    "messages.send": 100,
    "drafts.send": 100,
    "messages.get": 5,
    "messages.list": 5,
    "messages.modify": 5,
    "messages.trash": 5,
    "messages.untrash": 5,
    "messages.attachments.get": 5,
    "messages.insert": 25,
    "messages.import": 25,
    "messages.batchModify": 50,
    "messages.batchDelete": 50,
    "messages.delete": 10,
    "drafts.create": 10,
    "drafts.delete": 10,
    "drafts.get": 5,
    "drafts.list": 5,
    "drafts.update": 15,
    "threads.get": 10,
    "threads.list": 10,
    "threads.modify": 10,
    "threads.trash": 10,
    "threads.untrash": 10,
    "threads.delete": 20,
    "history.list": 2,
    "labels.create": 5,
    "labels.delete": 5,
    "labels.update": 5,
    "labels.get": 1,
    "labels.list": 1,
    "settings.sendAs.list": 1,
    "getProfile": 1,
    "watch": 100,
    "stop": 50,
}

_SMTP = PlatformLimit(
    name="smtp",
    limit=RateLimit(rate=10, per=1.0, burst=10),
    note=(
        "A conservative default for hosted SMTP submission (10 messages/s, 10 at once); "
        "servers publish no common figure. Exchange Online allows 30 messages/min "
        "('exchange'), Gmail/Workspace 2,000 messages/day: use those presets or your own."
    ),
)


def _preset(
    name: str,
    rate: float,
    per: float,
    burst: float,
    note: str,
    costs: dict[str, float] | None = None,
    *,
    daily_cap: int | None = None,
    daily_cap_note: str = "",
) -> PlatformLimit:
    return PlatformLimit(
        name=name,
        limit=RateLimit(rate=rate, per=per, burst=burst),
        costs=dict(costs or {}),
        note=note,
        daily_cap=daily_cap,
        daily_cap_note=daily_cap_note,
    )


_EXCHANGE_DAILY = (
    "Exchange Online: 10,000 recipients per day per mailbox (a rolling 24 hours), so 10,000 "
    "one-recipient messages; more is refused until the window moves (Exchange Online limits)."
)


def _slack_tier(tier: int, per_minute: int, burst: int) -> PlatformLimit:
    return _preset(
        f"slack_tier{tier}",
        per_minute,
        60.0,
        burst,
        f"Slack Web API Tier {tier}: {per_minute}+ requests per minute per method per "
        "workspace; 429 with Retry-After (docs.slack.dev rate-limits).",
    )


PRESETS: dict[str, PlatformLimit] = {
    preset.name: preset
    for preset in (
        _preset(
            "gmail",
            15_000,
            60.0,
            1_500,
            "Gmail API: 15,000 quota units per user per minute (userRateLimitExceeded); "
            "1,200,000 per project per minute. Costs per method from the same page "
            "(messages.send = 100, so at most 150 sends/min/user). Burst: a tenth of the "
            "minute (15 sends at once), close to the older '250 units/user/s moving "
            "average'. Workspace sending is also capped at 2,000 messages/day "
            "(developers.google.com/gmail/api/reference/quota).",
            GMAIL_COSTS,
            daily_cap=2_000,
            daily_cap_note=(
                "Google Workspace: 2,000 messages per day per user (500 on trial accounts: "
                "use gmail_trial), 10,000 recipients per day in all, over a rolling 24 hours; "
                "going over locks sending for up to 24 hours (support.google.com/a/answer/166852)."
            ),
        ),
        _preset(
            "gmail_trial",
            15_000,
            60.0,
            1_500,
            "Gmail API on a Google Workspace trial account: the 'gmail' quota and costs, with "
            "the trial's daily cap.",
            GMAIL_COSTS,
            daily_cap=500,
            daily_cap_note=(
                "Google Workspace trial accounts: 500 messages per day per user, over a rolling "
                "24 hours (support.google.com/a/answer/166852)."
            ),
        ),
        _preset(
            "gmail_consumer",
            15_000,
            60.0,
            1_500,
            "Gmail API for a personal @gmail.com account: the same per-user quota and costs "
            "as 'gmail'.",
            GMAIL_COSTS,
            daily_cap=500,
            daily_cap_note=(
                "Personal Gmail: about 500 messages per day (100 recipients per message over "
                "SMTP). Google publishes no official figure for consumer accounts; this one is "
                "from third-party pages and UNVERIFIED: treat it as an estimate."
            ),
        ),
        _preset(
            "graph",
            10_000,
            600.0,
            100,
            "Microsoft Graph (Outlook): 10,000 requests per 10 minutes per app per mailbox; "
            "also at most 4 concurrent requests per mailbox (a concurrency cap, not a rate); "
            "429 with Retry-After (learn.microsoft.com Graph throttling).",
            daily_cap=10_000,
            daily_cap_note=f"Sending from an Outlook mailbox through Graph. {_EXCHANGE_DAILY}",
        ),
        _preset(
            "exchange",
            30,
            60.0,
            3,
            "Exchange Online sending: 30 messages per minute, 10,000 recipients per day, 500 "
            "recipients per message (Exchange Online limits).",
            daily_cap=10_000,
            daily_cap_note=_EXCHANGE_DAILY,
        ),
        _preset(
            "twilio",
            1,
            1.0,
            1,
            "Twilio messaging: 1 segment/s per US/CA long code. Toll-free numbers: 3 MPS by "
            "default (25-150 high-throughput); short codes: 30 MPS; 10 MPS to non-+1 "
            "countries. Build RateLimit(rate=3) or RateLimit(rate=30) for those (Twilio "
            "support articles). REST 429 / error 20429 is always safe to retry.",
        ),
        _preset(
            "slack",
            1,
            1.0,
            1,
            "Slack chat.postMessage: about 1 message per second per channel, plus a "
            "workspace-wide cap; other methods are tiered (see slack_tier1..4: 1/20/50/100+ "
            "per minute); 429 with Retry-After (docs.slack.dev rate-limits).",
        ),
        _slack_tier(1, 1, 1),
        _slack_tier(2, 20, 2),
        _slack_tier(3, 50, 5),
        _slack_tier(4, 100, 10),
        _preset(
            "discord",
            50,
            1.0,
            5,
            "Discord: 50 requests per second per bot (global limit); routes have their own "
            "buckets (X-RateLimit-Bucket). 10,000 invalid requests (401/403/429) per 10 "
            "minutes earn a temporary Cloudflare ban (docs.discord.com rate-limits).",
        ),
        _preset(
            "teams",
            4,
            1.0,
            1,
            "Microsoft Teams incoming webhook: more than 4 requests per second is "
            "throttled; messages up to 28 KB. The bot API allows 50 RPS per app per tenant "
            "(learn.microsoft.com Teams webhooks and bot rate limits).",
        ),
        _preset(
            "ses",
            1,
            1.0,
            1,
            "AWS SES sandbox: 1 message per second and 200 per 24 hours, verified recipients "
            "only. In production the rate is per account: read MaxSendRate from "
            "GetSendQuota and use RateLimit(rate=MaxSendRate). Throttling is SMTP 454 or "
            "'Maximum sending rate exceeded', with no rate-limit headers (AWS SES quotas).",
            daily_cap=200,
            daily_cap_note=(
                "AWS SES sandbox: 200 messages per 24 hours (a rolling window). In production "
                "the quota is per account and region: read Max24HourSend (and SentLast24Hours "
                "for what is left) from GetSendQuota; AWS publishes no fixed figure "
                "(AWS SES quotas)."
            ),
        ),
        _preset(
            "sns",
            10,
            1.0,
            10,
            "AWS SNS SMS: the reference table lists no per-second rate; 10/s is a "
            "conservative default. New accounts are bound first by the $1.00/month SMS "
            "spend quota and the SMS sandbox (verified destinations); throttling is 429 "
            "'Throttled' (SNS docs).",
        ),
        _preset(
            "azure_sms",
            200,
            60.0,
            20,
            "Azure Communication Services SMS: 200 requests / 200 message units per minute, "
            "one message unit per recipient, so acquire(cost=len(recipients)); 429 on the "
            "limit (learn.microsoft.com ACS service limits).",
        ),
        _preset(
            "twitter",
            300,
            900.0,
            30,
            "X/Twitter: 300 requests per 15 minutes (per the seed document; X's per-endpoint "
            "windows vary, read x-rate-limit-remaining/reset).",
        ),
        _SMTP,
        msgspec.structs.replace(_SMTP, name="email", note=f"Alias of 'smtp'. {_SMTP.note}"),
    )
}
