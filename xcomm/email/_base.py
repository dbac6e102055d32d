"""The email provider interface: every email provider composes and sends the same way."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import anyio

from xcomm._errors import CommunicationError, ConfigurationError, ValidationError
from xcomm._models import Address, EmailMessage, SendResult
from xcomm._provider import Provider

if TYPE_CHECKING:
    from xcomm.email._compose import EmailDraft

__all__ = ["EmailProvider", "sender_address"]

DEFAULT_MAX_MESSAGE_SIZE = 25 * 1024 * 1024


def sender_address(sender: str | Address | None, *, provider: str) -> Address | None:
    """A provider's `sender=` setting as an `Address` (None stays None).

    Raises:
        ConfigurationError: it is not an address; the message names `provider`.
    """
    if sender is None:
        return None
    try:
        return Address.parse(sender)
    except ValidationError as exc:
        raise ConfigurationError(f"{provider} provider: sender= is not an address: {exc}") from exc


class EmailProvider(Provider):
    """Base of email providers (SMTP today; Gmail, Graph and SES in later releases).

    Subclasses implement `send()`; composition, validation and the one-line form are shared.
    """

    name = "email"

    #: The default From address, used when a draft does not set one.
    default_sender: Address | None = None
    #: The largest rendered message (bytes) the provider accepts.
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE

    #: The settings `spec()` returns (None values left out), set by providers that can be
    #: rebuilt from settings.
    _spec: dict[str, Any]

    def spec(self) -> dict[str, Any]:
        """The provider's settings without secrets: how a worker process rebuilds it.

        `{"kind": "smtp", "host": ..., "password_env": "SMTP_PASSWORD", ...}`; passed back to
        `comm.email(**spec)`. A password is there only as the name of the environment
        variable it came from (an Outlook client secret as `client_secret_env`, a Gmail
        token as its file's path). Empty when the provider cannot be rebuilt from settings.
        """
        settings: dict[str, Any] = getattr(self, "_spec", {})
        return {k: v for k, v in settings.items() if v is not None}

    def compose(self) -> EmailDraft:
        """Start a fluent draft: `await provider.compose().to(...).subject(...).send()`."""
        from xcomm.email._compose import EmailDraft

        return EmailDraft(self)

    async def send_message(
        self,
        to: str | Address | list[str | Address],
        subject: str,
        body: str,
        *,
        html: str | None = None,
        timeout: float | None = None,
    ) -> SendResult:
        """Send a simple message in one call."""
        draft = self.compose().to(to).subject(subject).body(body)
        if html is not None:
            draft.html_body(html)
        return await draft.send(timeout=timeout)

    async def send(self, message: EmailMessage, /, *, timeout: float | None = None) -> SendResult:
        """Send a built `EmailMessage`. `timeout` bounds the whole call, retries included."""
        raise NotImplementedError

    async def send_many(
        self, messages: Sequence[EmailMessage], /, *, timeout: float | None = None
    ) -> list[SendResult | CommunicationError]:
        """Send several messages; returns one entry per message, in order: its `SendResult`,
        or the `CommunicationError` that settled it (one failure never stops the others).

        Here each message is a concurrent `send()`; SMTP sends them back to back on one
        pooled connection (see `SMTPProvider.send_many`). An error that is not a
        `CommunicationError` (a bug) propagates. `timeout` bounds each send.
        """
        results: list[SendResult | CommunicationError | None] = [None] * len(messages)

        async def one(index: int, message: EmailMessage) -> None:
            try:
                results[index] = await self.send(message, timeout=timeout)
            except CommunicationError as exc:
                results[index] = exc

        if len(messages) == 1:
            await one(0, messages[0])
        else:
            async with anyio.create_task_group() as tg:
                for index, message in enumerate(messages):
                    tg.start_soon(one, index, message)
        return [result for result in results if result is not None]

    def batch_size(self, in_flight: int) -> int:
        """How many messages one `send_many()` call should carry when a bulk sender keeps
        `in_flight` messages in flight: 1 here (each message its own call)."""
        return 1
