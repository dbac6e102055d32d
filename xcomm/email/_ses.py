"""Amazon SES (API v2) through aiobotocore: the raw MIME message xcomm renders, sent as is.

Needs the `xcomm[aws]` extra. The provider opens one aiobotocore `sesv2` client on first use
and closes it with the manager. botocore's own retries are off: xcomm's `RetryPolicy` is the
one retry loop, and `_ses_errors.py` maps every failure.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from typing import Any

import msgspec

from xcomm._config import RateLimit, RetryPolicy, Timeout
from xcomm._errors import (
    CommunicationError,
    ConfigurationError,
    LifecycleError,
    MessageError,
    RequestNotSent,
    ResponseTimeout,
    ValidationError,
)
from xcomm._models import Address, EmailMessage, SendResult
from xcomm._provider import ProviderContext
from xcomm._retry import Limiter
from xcomm._validation import ascii_email
from xcomm.email._base import EmailProvider, sender_address
from xcomm.email._mime import render_message
from xcomm.email._ses_errors import translate

__all__ = ["SESProvider", "SendQuota"]

#: SES API v2 accepts messages up to 40 MB after MIME encoding (AWS SES quotas).
SES_MAX_MESSAGE_SIZE = 40 * 1024 * 1024


class SendQuota(msgspec.Struct, frozen=True, kw_only=True):
    """The account's sending quota in its region, from SES `GetAccount`.

    Attributes:
        max_24_hour_send: messages per rolling 24 hours; None when unlimited (SES says -1).
        max_send_rate: messages per second.
        sent_last_24_hours: messages sent in the last 24 hours.
        production_access: False while the account is in the SES sandbox (verified
            recipients only), when SES said.
        sending_enabled: whether the account may send now, when SES said.
    """

    max_24_hour_send: float | None
    max_send_rate: float
    sent_last_24_hours: float = 0.0
    production_access: bool | None = None
    sending_enabled: bool | None = None

    @property
    def remaining(self) -> float | None:
        """Messages the account may still send in the current 24 hours (None: unlimited)."""
        if self.max_24_hour_send is None:
            return None
        return max(0.0, self.max_24_hour_send - self.sent_last_24_hours)

    @property
    def daily_cap(self) -> int | None:
        """`max_24_hour_send` as a whole number, for `create_bulk_sender(daily_cap=...)`."""
        return None if self.max_24_hour_send is None else max(1, int(self.max_24_hour_send))

    @classmethod
    def from_account(cls, answer: Mapping[str, Any]) -> SendQuota:
        """The quota from a `GetAccount` answer (pure)."""
        quota = answer.get("SendQuota") or {}
        daily = float(quota.get("Max24HourSend", -1.0))
        production = answer.get("ProductionAccessEnabled")
        enabled = answer.get("SendingEnabled")
        return cls(
            max_24_hour_send=None if daily < 0 else daily,
            max_send_rate=float(quota.get("MaxSendRate", 1.0)),
            sent_last_24_hours=float(quota.get("SentLast24Hours", 0.0)),
            production_access=production if isinstance(production, bool) else None,
            sending_enabled=enabled if isinstance(enabled, bool) else None,
        )


def send_request(
    message: EmailMessage,
    raw: bytes,
    *,
    configuration_set: str | None = None,
    tags: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The `SendEmail` parameters for `message` rendered as `raw` (pure).

    Every recipient goes in `Destination`: with raw content SES sends to exactly those
    addresses, and the rendered message has no Bcc header to take them from.
    """
    assert message.sender is not None
    destination = {
        key: [ascii_email(a) for a in addresses]
        for key, addresses in (
            ("ToAddresses", message.to),
            ("CcAddresses", message.cc),
            ("BccAddresses", message.bcc),
        )
        if addresses
    }
    params: dict[str, Any] = {
        "FromEmailAddress": ascii_email(message.sender),
        "Destination": destination,
        "Content": {"Raw": {"Data": raw}},
    }
    if configuration_set:
        params["ConfigurationSetName"] = configuration_set
    if tags:
        params["EmailTags"] = [{"Name": k, "Value": v} for k, v in tags.items()]
    return params


class SESProvider(EmailProvider):
    """Send email through Amazon SES (API v2) with the raw MIME message xcomm renders.

    Example:
        ```python
        async with CommManager() as comm:
            ses = comm.ses("eu-west-1", sender="news@example.com")   # the AWS credential chain
            result = await ses.compose().to("you@example.org").subject("Hi").body("Hello").send()
            print(result.message_id)          # SES's MessageId (bounce/complaint events use it)
            quota = await ses.apply_quota()   # the limiter follows MaxSendRate
            bulk = comm.create_bulk_sender(ses, daily_cap=quota.daily_cap)
        ```

    Attachments, custom headers, text and HTML all travel in the rendered message; Bcc
    recipients are passed to SES as the envelope only. SES replaces the Message-ID header with
    its own, so `SendResult.message_id` is the `MessageId` SES returns. Errors are mapped as in
    `xcomm/email/_ses_errors.py` (and `docs/providers/ses.md`).
    """

    name = "ses"
    max_message_size = SES_MAX_MESSAGE_SIZE

    def __init__(
        self,
        context: ProviderContext,
        *,
        limiter: Limiter | None,
        relimit: Callable[[RateLimit], Limiter | None] | None = None,
        account: str = "ses",
        retry: RetryPolicy | None = None,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        session_token: str | None = None,
        profile: str | None = None,
        endpoint_url: str | None = None,
        sender: str | Address | None = None,
        configuration_set: str | None = None,
        tags: Mapping[str, str] | None = None,
        max_connections: int = 20,
        timeout: Timeout | float | None = None,
    ) -> None:
        super().__init__(context, limiter=limiter, retry=retry)
        if (access_key_id is None) != (secret_access_key is None):
            raise ConfigurationError(
                "SES provider: give access_key_id= and secret_access_key= together (or neither, "
                "for the standard AWS credential chain)"
            )
        if session_token is not None and access_key_id is None:
            raise ConfigurationError("SES provider: session_token= needs access_key_id=")
        if not (isinstance(max_connections, int) and max_connections > 0):
            raise ConfigurationError("SES provider: max_connections must be a positive int")
        for key, value in (tags or {}).items():
            if not (isinstance(key, str) and isinstance(value, str) and key and value):
                raise ConfigurationError("SES provider: tags must map non-empty str to str")
        self.default_sender = sender_address(sender, provider="SES")
        self.region = region
        self.configuration_set = configuration_set
        self.tags = dict(tags or {})
        self._credentials = (access_key_id, secret_access_key, session_token)
        self._profile = profile
        self._endpoint_url = endpoint_url
        self._max_connections = max_connections
        self._timeout = context.timeout if timeout is None else Timeout.coerce(timeout)
        self._relimit = relimit
        self._account = account
        self._client: Any = None
        self._client_lock = asyncio.Lock()
        self._stack = contextlib.AsyncExitStack()
        self._quota: SendQuota | None = None
        self._spec: dict[str, Any] = {
            "kind": "ses", "region": region, "profile": profile, "endpoint_url": endpoint_url,
            "sender": str(self.default_sender) if sender is not None else None,
            "configuration_set": configuration_set, "tags": self.tags or None,
        }  # fmt: skip
        if access_key_id is not None:
            # Keys given in code are not written down: a worker finds this provider only if
            # its process creates the same one (or uses the AWS credential chain).
            self._spec["custom"] = True

    def __repr__(self) -> str:
        return f"SESProvider(region={self.region!r})"

    @property
    def quota(self) -> SendQuota | None:
        """The quota read by the last `send_quota()` / `apply_quota()`, or None."""
        return self._quota

    @property
    def daily_cap(self) -> int | None:
        """The account's 24-hour quota once `apply_quota()` (or `send_quota()`) has read it."""
        return None if self._quota is None else self._quota.daily_cap

    async def aclose(self) -> None:
        """Close the aiobotocore client (if one was opened). Idempotent."""
        await super().aclose()
        async with self._client_lock:
            self._client = None
            await self._stack.aclose()

    async def _ses(self) -> Any:
        """The `sesv2` client, opened on first use inside this provider's exit stack."""
        if self._client is not None:
            return self._client
        async with self._client_lock:
            if self._closed:
                raise LifecycleError("this ses provider is closed")
            if self._client is None:
                self._client = await self._open_client()
        return self._client

    async def _open_client(self) -> Any:
        try:
            from aiobotocore.config import AioConfig
            from aiobotocore.session import AioSession
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ConfigurationError('SES needs aiobotocore: pip install "xcomm[aws]"') from exc
        from xcomm._version import __version__

        key, secret, token = self._credentials
        options: dict[str, Any] = {
            # One attempt: xcomm's RetryPolicy decides about retries, not botocore.
            "retries": {"total_max_attempts": 1, "mode": "standard"},
            "max_pool_connections": self._max_connections,
            "user_agent_extra": f"xcomm/{__version__}",
        }
        if self._timeout.connect is not None:
            options["connect_timeout"] = self._timeout.connect
        if self._timeout.read is not None:
            options["read_timeout"] = self._timeout.read
        try:
            session = AioSession(profile=self._profile)
            if self.region is None:
                self.region = session.get_config_variable("region")
            client = await self._stack.enter_async_context(
                session.create_client(
                    "sesv2",
                    region_name=self.region,
                    endpoint_url=self._endpoint_url,
                    aws_access_key_id=key,
                    aws_secret_access_key=secret,
                    aws_session_token=token,
                    config=AioConfig(**options),
                )
            )
        except Exception as exc:
            raise translate(exc, operation="connect") from exc
        return client

    async def send_quota(self) -> SendQuota:
        """The account's quota in this region (SES `GetAccount`; IAM `ses:GetAccount`)."""

        async def attempt(_: int) -> SendQuota:
            client = await self._ses()
            try:
                answer = await client.get_account()
            except Exception as exc:
                raise translate(exc, operation="GetAccount") from exc
            return SendQuota.from_account(answer)

        quota, _, _ = await self._call("get_account", attempt)
        self._quota = quota
        return quota

    async def apply_quota(self) -> SendQuota:
        """Read the quota and make this provider's limiter follow `MaxSendRate` per second.

        The account bucket (shared by every provider of this manager with the same
        credentials and region) is set to the quota's rate; `daily_cap` then gives
        `Max24HourSend` for `create_bulk_sender(ses, daily_cap=ses.daily_cap)`.
        """
        quota = await self.send_quota()
        rate = quota.max_send_rate
        if rate > 0:
            limit = RateLimit(rate=rate, per=1.0, burst=max(1.0, rate))
            bucket = self._context.limiters.get(self._account)
            if bucket is not None:
                bucket.set_rate(limit.rate, limit.per, burst=limit.capacity)
            elif self._relimit is not None:
                self._limiter = self._relimit(limit)
        return quota

    async def send(self, message: EmailMessage, /, *, timeout: float | None = None) -> SendResult:
        """Send `message` through SES `SendEmail` with raw content.

        Raises:
            ValidationError: no sender or recipients, a non-ASCII local part (SES has no
                SMTPUTF8), or a message that cannot be rendered.
            MessageError: the rendered message is larger than SES accepts.
            CommunicationError: any other failure, mapped as in `_ses_errors.py`.
        """
        if timeout is not None and not timeout > 0:
            raise ValidationError(f"timeout must be a positive number of seconds, got {timeout!r}")
        sender = message.sender or self.default_sender
        if sender is None:
            raise ValidationError("the message has no sender: set one on the draft or sender=")
        recipients = message.recipients
        if not recipients:
            raise ValidationError("the message has no recipients; add to, cc or bcc addresses")
        if message.sender is None:
            message = msgspec.structs.replace(message, sender=sender)
        raw = render_message(message)
        if len(raw) > self.max_message_size:
            raise MessageError(
                f"the message is {len(raw)} bytes; SES accepts {self.max_message_size}",
                provider=self.name,
            )
        params = send_request(
            message, raw, configuration_set=self.configuration_set, tags=self.tags
        )
        in_flight = [False]

        async def attempt(_: int) -> dict[str, Any]:
            client = await self._ses()
            in_flight[0] = True  # stays True if the deadline cancels the request
            try:
                answer: dict[str, Any] = await client.send_email(**params)
            except Exception as exc:
                in_flight[0] = False
                raise translate(exc) from exc
            in_flight[0] = False
            return answer

        try:
            async with asyncio.timeout(timeout):
                answer, attempts, duration = await self._call("send", attempt)
        except TimeoutError as exc:
            if isinstance(exc, CommunicationError) or timeout is None:
                raise
            if in_flight[0]:
                raise ResponseTimeout(
                    f"send() timed out after {timeout:g}s waiting for SES; it may have been "
                    "accepted",
                    provider=self.name,
                ) from exc
            raise RequestNotSent(
                f"send() timed out after {timeout:g}s before the request was sent",
                provider=self.name,
            ) from exc
        status = (answer.get("ResponseMetadata") or {}).get("HTTPStatusCode")
        return SendResult(
            message_id=answer.get("MessageId"),
            provider=self.name,
            accepted=tuple(a.email for a in recipients),
            attempts=attempts,
            duration=duration,
            status=status if isinstance(status, int) else None,
        )
