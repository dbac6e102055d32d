"""Every exception xcomm raises.

The class tells the caller what it can do; the attributes carry the evidence.

```
CommunicationError                      root of everything xcomm raises
├── ConfigurationError (+ValueError)    bad settings, unknown provider, missing extra/credentials
├── LifecycleError (+RuntimeError)      manager used before open / after close / opened twice
├── ValidationError (+ValueError)       bad input, raised before any byte leaves
│   ├── FileAlreadyExists (+FileExistsError)  a download would replace a file; .path
│   └── QuerySyntaxError                a malformed query expression; .column
├── OutboxError                         the outbox storage failed (disk full, lock timeout)
├── ProviderError                       the provider answered "no"
│   ├── AuthenticationError             credentials refused (HTTP 401/403, SMTP 535)
│   ├── RateLimitError                  throttled; .retry_after seconds (HTTP 429, SMTP 454)
│   ├── RecipientRejected               every recipient refused; .rejected lists them
│   ├── MessageError                    message refused: size, policy, content (HTTP 400, SMTP 554)
│   └── ServiceUnavailable              transient provider failure (HTTP 5xx, SMTP 421/4xx)
└── TransportError                      no usable answer from the provider
    ├── RequestNotSent                  nothing reached the provider: always safe to retry
    │   ├── ConnectError (+ConnectionError)
    │   ├── ConnectTimeout (+TimeoutError)
    │   └── PoolTimeout (+TimeoutError)      no pooled connection became free in time
    └── DeliveryUnknown                 the provider may have accepted it: never blindly retried
        ├── ConnectionLost (+ConnectionError)   e.g. SMTP connection dropped after DATA
        └── ResponseTimeout (+TimeoutError)     request written, no answer in time
```

`ProviderError.transient` says whether the same request may succeed later (a 4xx SMTP reply,
a 503, a 429); the retry policy retries only `RequestNotSent` and transient provider errors.

No message or repr contains a secret: errors are built from status codes, provider error
codes and provider text, never from credentials, request headers or full URLs.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

__all__ = [
    "AuthenticationError",
    "CommunicationError",
    "ConfigurationError",
    "ConnectError",
    "ConnectTimeout",
    "ConnectionLost",
    "DeliveryUnknown",
    "FileAlreadyExists",
    "LifecycleError",
    "MessageError",
    "OutboxError",
    "PoolTimeout",
    "ProviderError",
    "QuerySyntaxError",
    "RateLimitError",
    "RecipientRejected",
    "RejectedRecipient",
    "RequestNotSent",
    "ResponseTimeout",
    "ServiceUnavailable",
    "TransportError",
    "ValidationError",
]

_MAX_DETAIL = 500


def _clip(text: str | None) -> str | None:
    if text is None:
        return None
    text = " ".join(text.split())
    return text if len(text) <= _MAX_DETAIL else text[: _MAX_DETAIL - 1] + "…"


class CommunicationError(Exception):
    """Root of every exception raised by xcomm."""


class ConfigurationError(CommunicationError, ValueError):
    """Settings that cannot work: unknown provider, missing credentials or extra, bad option."""


class LifecycleError(CommunicationError, RuntimeError):
    """A `CommManager` or provider was used outside its open/close lifecycle."""


class ValidationError(CommunicationError, ValueError):
    """Bad input (address, header, attachment, payload), raised before any byte is sent."""


class FileAlreadyExists(ValidationError, FileExistsError):
    """Saving an attachment would replace an existing file; nothing was written over it.

    `path` is the file in the way. Pass `overwrite=True` to replace it, or save elsewhere.
    """

    def __init__(self, message: str, *, path: str) -> None:
        super().__init__(message)
        self.path = path

    def __str__(self) -> str:
        return str(self.args[0])


class QuerySyntaxError(ValidationError):
    """A query expression (`EmailQuery.parse`) is malformed: the message says where and what
    was expected, e.g. `unknown field 'frm' at column 1; did you mean 'from'?`.

    `column` is the 1-based column of the problem in `expression`.
    """

    def __init__(self, message: str, *, expression: str, column: int) -> None:
        super().__init__(message)
        self.expression = expression
        self.column = column

    def __str__(self) -> str:
        return str(self.args[0])


class OutboxError(CommunicationError):
    """The outbox storage failed (a full disk, a lock held past its timeout, a broken file).

    Nothing about the messages is decided by it: records keep their last written status, and a
    later run resumes from there.
    """


class RejectedRecipient(msgspec.Struct, frozen=True, kw_only=True):
    """One recipient the provider refused, with the provider's own code and text."""

    address: str
    code: int | None = None
    reason: str = ""

    @property
    def transient(self) -> bool:
        """True when the refusal is temporary (an SMTP 4xx reply)."""
        return self.code is not None and 400 <= self.code < 500


class ProviderError(CommunicationError):
    """The provider answered and refused the request.

    Attributes:
        provider: the provider name ("smtp", "webhook", ...).
        error_code: the provider's own error code (SMTP reply code as text, API error code).
        status: the numeric status (HTTP status or SMTP reply code), when there is one.
        retry_after: seconds the provider asked us to wait, when it said so.
        detail: the provider's explanation, clipped and whitespace-normalised.
        transient: whether the same request may succeed later.
    """

    default_transient = False

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        error_code: str | None = None,
        status: int | None = None,
        retry_after: float | None = None,
        detail: str | None = None,
        transient: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.provider = provider
        self.error_code = error_code
        self.status = status
        self.retry_after = retry_after
        self.detail = _clip(detail)
        self.transient = self.default_transient if transient is None else transient

    def __str__(self) -> str:
        parts = [f"{self.provider}: {self.args[0]}"]
        if self.status is not None:
            parts.append(f"status={self.status}")
        if self.error_code is not None and self.error_code != str(self.status):
            parts.append(f"code={self.error_code}")
        if self.retry_after is not None:
            parts.append(f"retry_after={self.retry_after:g}s")
        if self.detail:
            parts.append(f"detail={self.detail!r}")
        return " ".join(parts)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"


class AuthenticationError(ProviderError):
    """Credentials were refused. Fix the credentials or token; retrying will not help."""


class RateLimitError(ProviderError):
    """The provider throttled the request; wait `retry_after` seconds (when known)."""

    default_transient = True


class RecipientRejected(ProviderError):
    """Every recipient of the message was refused; nothing was sent.

    `rejected` lists each refused address with the provider's code and reason. The error is
    transient (and retried) only when every refusal was temporary (SMTP 4xx).
    """

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        rejected: Iterable[RejectedRecipient],
        status: int | None = None,
        detail: str | None = None,
    ) -> None:
        self.rejected = tuple(rejected)
        transient = bool(self.rejected) and all(r.transient for r in self.rejected)
        super().__init__(
            message,
            provider=provider,
            error_code=None if status is None else str(status),
            status=status,
            detail=detail,
            transient=transient,
        )


class MessageError(ProviderError):
    """The message itself was refused (size, policy, content); change it before resending."""


class ServiceUnavailable(ProviderError):
    """The provider failed or is overloaded for now (HTTP 5xx, SMTP 421/4xx)."""

    default_transient = True


class TransportError(CommunicationError):
    """No usable answer came back from the provider.

    Attributes:
        provider: the provider name.
        detail: what went wrong on the wire (never contains credentials).
    """

    def __init__(self, message: str, *, provider: str, detail: str | None = None) -> None:
        super().__init__(message)
        self.provider = provider
        self.detail = _clip(detail)

    def __str__(self) -> str:
        text = f"{self.provider}: {self.args[0]}"
        return f"{text} ({self.detail})" if self.detail else text


class RequestNotSent(TransportError):
    """Nothing reached the provider; the request is safe to retry."""


class ConnectError(RequestNotSent, ConnectionError):
    """The connection to the provider could not be opened."""


class ConnectTimeout(RequestNotSent, TimeoutError):
    """Opening the connection took longer than the connect timeout."""


class PoolTimeout(RequestNotSent, TimeoutError):
    """No pooled connection became free within the pool timeout."""


class DeliveryUnknown(TransportError):
    """The request may have been accepted; retry only with an idempotency key or after a check."""


class ConnectionLost(DeliveryUnknown, ConnectionError):
    """The connection dropped after the message was (partly) handed over."""


class ResponseTimeout(DeliveryUnknown, TimeoutError):
    """The request was written but no answer came within the read timeout."""
