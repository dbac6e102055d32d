"""The one place botocore's exceptions become xcomm errors for the SES provider.

`error_for()` maps an SES API error (code, message, HTTP status) and is pure; `translate()`
maps any exception aiobotocore raises, importing botocore only when it is called.

| SES code / what happened                                 | xcomm error                | retried |
|----------------------------------------------------------|----------------------------|---------|
| `Throttling`, `ThrottlingException`, `TooManyRequests...` | RateLimitError             | yes     |
| ... whose message says "Daily message quota exceeded"    | RateLimitError, permanent  | no      |
| `LimitExceededException` (an account limit, not a rate)  | RateLimitError, permanent  | no      |
| `MessageRejected`, `MailFromDomainNotVerifiedException`, | MessageError               | no      |
| `BadRequestException`, `InvalidParameterValue`, 4xx      |                            |         |
| `AccountSuspendedException`, `SendingPausedException`    | ServiceUnavailable, perm.  | no      |
| `NotFoundException` (configuration set, contact list)    | ConfigurationError         | no      |
| `UnrecognizedClientException`, `InvalidClientTokenId`,   | AuthenticationError        | no      |
| `SignatureDoesNotMatch`, `AccessDenied...`, 401/403      |                            |         |
| `InternalFailure`, `ServiceUnavailable`, any HTTP 5xx    | ServiceUnavailable         | yes     |
| endpoint unreachable, connection refused                 | ConnectError               | yes     |
| connect timeout                                          | ConnectTimeout             | yes     |
| read timeout (the request was written)                   | ResponseTimeout            | never   |
| connection closed before the answer                      | ConnectionLost             | never   |
| no credentials, no region, unknown profile, TLS failure  | ConfigurationError         | no      |
| a parameter botocore refuses before sending              | ValidationError            | no      |

"permanent" is `transient=False`. SES sends no `Retry-After`: a per-second throttle is retried
with the policy's backoff. AWS asks callers that hit the daily quota to wait for the rolling
24-hour window; that is not a retry inside one `send()` call, so it is not transient.
"""

from __future__ import annotations

from typing import Any

from xcomm._errors import (
    AuthenticationError,
    CommunicationError,
    ConfigurationError,
    ConnectError,
    ConnectionLost,
    ConnectTimeout,
    MessageError,
    ProviderError,
    RateLimitError,
    ResponseTimeout,
    ServiceUnavailable,
    ValidationError,
)

__all__ = ["error_for", "translate"]

PROVIDER = "ses"

_THROTTLE = frozenset({"Throttling", "ThrottlingException", "TooManyRequestsException"})
_AUTH = frozenset(
    {
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
        "InvalidSignatureException",
        "IncompleteSignature",
        "MissingAuthenticationToken",
        "AccessDenied",
        "AccessDeniedException",
        "ExpiredToken",
        "ExpiredTokenException",
        "RequestExpired",
    }
)
_REFUSED = frozenset({"AccountSuspendedException", "SendingPausedException"})
_MESSAGE = frozenset(
    {
        "MessageRejected",
        "MailFromDomainNotVerifiedException",
        "MailFromDomainNotVerified",
        "BadRequestException",
        "InvalidParameterValue",
        "ValidationException",
    }
)
_UNAVAILABLE = frozenset(
    {
        "InternalFailure",
        "InternalServerError",
        "InternalError",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "RequestTimeout",
        "RequestTimeoutException",
    }
)


def error_for(
    code: str, message: str, *, status: int | None, operation: str = "SendEmail"
) -> CommunicationError:
    """The xcomm error for the SES answer `code` / `message` with HTTP `status` (see the table).

    Example:
        `error_for("Throttling", "Maximum sending rate exceeded.", status=400)` is a
        transient `RateLimitError`.
    """
    kw: dict[str, Any] = {"provider": PROVIDER, "error_code": code, "status": status}
    if code in _THROTTLE or (status == 429 and code not in _MESSAGE):
        if "daily message quota" in message.lower():
            return RateLimitError(
                f"the account's 24-hour sending quota is used up ({operation}); more can be "
                "sent as the rolling window frees up",
                detail=message,
                transient=False,
                **kw,
            )
        return RateLimitError(f"throttled ({operation})", detail=message, **kw)
    if code == "LimitExceededException":
        return RateLimitError(
            f"an account limit was exceeded ({operation})", detail=message, transient=False, **kw
        )
    if code in _AUTH or status in (401, 403):
        return AuthenticationError(
            f"AWS refused the credentials or permissions ({operation})", detail=message, **kw
        )
    if code in _REFUSED:
        return ServiceUnavailable(
            f"the account may not send email now ({operation})",
            detail=message,
            transient=False,
            **kw,
        )
    if code == "NotFoundException":
        return ConfigurationError(
            f"ses: {operation} names something that does not exist in this account and "
            f"region (a configuration set or contact list?): {code}: {message}"
        )
    if code in _UNAVAILABLE or (status is not None and status >= 500):
        return ServiceUnavailable(f"SES failed ({operation})", detail=message, **kw)
    if code in _MESSAGE or (status is not None and 400 <= status < 500):
        return MessageError(f"SES refused the message ({operation})", detail=message, **kw)
    return ProviderError(f"SES answered with an error ({operation})", detail=message, **kw)


def translate(exc: BaseException, *, operation: str = "SendEmail") -> CommunicationError:
    """The xcomm error for an exception aiobotocore raised while calling `operation`.

    Any other exception (not from botocore, not an xcomm error) is re-raised unchanged.
    """
    if isinstance(exc, CommunicationError):
        return exc
    from botocore import exceptions as bx

    if isinstance(exc, bx.ClientError):
        response: dict[str, Any] = getattr(exc, "response", None) or {}
        error = response.get("Error") or {}
        status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
        return error_for(
            str(error.get("Code") or status or "Unknown"),
            str(error.get("Message") or ""),
            status=status if isinstance(status, int) else None,
            operation=operation,
        )
    detail = str(exc) or type(exc).__name__
    if isinstance(exc, bx.SSLError):
        return ConfigurationError(f"ses: TLS to the SES endpoint failed: {detail}")
    if isinstance(exc, bx.ConnectTimeoutError):
        what = f"timed out connecting ({operation})"
        return ConnectTimeout(what, provider=PROVIDER, detail=detail)
    if isinstance(exc, bx.EndpointConnectionError | bx.ConnectionError):
        return ConnectError(f"could not connect ({operation})", provider=PROVIDER, detail=detail)
    if isinstance(exc, bx.ReadTimeoutError):
        return ResponseTimeout(
            f"no answer in time ({operation}); it may have been accepted",
            provider=PROVIDER,
            detail=detail,
        )
    if isinstance(exc, bx.HTTPClientError):
        return ConnectionLost(
            f"the connection dropped before the answer ({operation}); it may have been accepted",
            provider=PROVIDER,
            detail=detail,
        )
    if isinstance(exc, bx.NoCredentialsError | bx.PartialCredentialsError):
        return ConfigurationError(
            "ses: no usable AWS credentials: pass access_key_id= and secret_access_key=, "
            "profile=, or set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (or a role) for the "
            f"standard AWS chain ({type(exc).__name__})"
        )
    if isinstance(exc, bx.NoRegionError):
        return ConfigurationError(
            "ses: no AWS region: pass region='eu-west-1' (for example) or set AWS_REGION"
        )
    if isinstance(exc, bx.ProfileNotFound):
        return ConfigurationError(f"ses: {detail}; check profile= or AWS_PROFILE")
    if isinstance(exc, bx.ParamValidationError):
        return ValidationError(f"ses: the request is not valid: {detail}")
    if isinstance(exc, bx.BotoCoreError):
        return ConfigurationError(f"ses: cannot call SES as configured: {detail}")
    raise exc
