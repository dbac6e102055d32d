"""The one place Microsoft Graph (Outlook) error answers become xcomm errors.

Graph answers errors as
`{"error": {"code": "ErrorInvalidRecipients", "message": "...", "innerError": {"date": ...,
"request-id": ..., "client-request-id": ...}}}`. `classify()` reads the HTTP status and `code`
(pure); the request id goes into `detail`, for Microsoft support.

| status / code                                                  | xcomm error         | retried |
|----------------------------------------------------------------|---------------------|---------|
| 429 (`ApplicationThrottled`, `MailboxConcurrency`, ...)        | RateLimitError      | yes     |
| 503 / 504 with a throttling code (`ErrorServerBusy`, ...)      | RateLimitError      | yes     |
| 502, 503; 504 with Retry-After; 500/504 of idempotent requests | ServiceUnavailable  | yes     |
| 401 `InvalidAuthenticationToken` (after one token refresh)     | AuthenticationError | no      |
| 403 `ErrorAccessDenied`, `Authorization_RequestDenied`         | AuthenticationError | no      |
| 403 `ErrorSendAsDenied` (a From the mailbox may not use)       | MessageError        | no      |
| 400 `ErrorInvalidRecipients`, `ErrorMessageSizeExceeded`; 413  | MessageError        | no      |
| `ErrorQuotaExceeded`, `ErrorMessageSubmissionBlocked`          | MessageError        | no      |
| 404 on `sendMail` / draft creation: no such mailbox            | ConfigurationError  | no      |
| 404 `ErrorItemNotFound` (a message gone or moved)              | ProviderError       | no      |
| 410, `syncStateNotFound` on a delta query (see `_graph_watch`) | ProviderError       | no      |

The AuthenticationError for a 403 names the permission to grant (Mail.Send; Mail.Read to
read; Mail.ReadWrite for drafts and to change messages); the ConfigurationError comes from
`unknown_mailbox()`, applied by the provider.

Retry-After is honoured everywhere (the pipeline sleeps that long and pauses the limiter). A
500 or a 504 without Retry-After after a POST is not retried: Exchange may have sent the
message before failing, and a second attempt would send it twice.
"""

from __future__ import annotations

from typing import Any

import httpx
import msgspec

from xcomm._errors import (
    AuthenticationError,
    ConfigurationError,
    MessageError,
    ProviderError,
    RateLimitError,
    ServiceUnavailable,
)
from xcomm._http import map_status, parse_retry_after

__all__ = ["classify", "error_code", "unknown_mailbox"]

PROVIDER = "outlook"

_THROTTLED = frozenset(
    {
        "ApplicationThrottled",
        "MailboxConcurrency",
        "TooManyRequests",
        "ErrorServerBusy",
        "activityLimitReached",
    }
)
_ACCESS_DENIED = frozenset(
    {"ErrorAccessDenied", "Authorization_RequestDenied", "AccessDenied", "accessDenied"}
)
_REFUSED_MESSAGE = {
    "ErrorInvalidRecipients": "Exchange refused the recipients (an address is malformed or "
    "cannot be resolved); fix them before sending again",
    "ErrorMessageSizeExceeded": "the message is larger than the mailbox may send (35 MB by "
    "default; an Exchange admin can raise it to 150 MB)",
    "ErrorQuotaExceeded": "the mailbox is over its quota (storage or sending); free space or "
    "wait for the sending window to move before sending again",
    "ErrorMessageSubmissionBlocked": "Exchange blocked this mailbox from sending (outbound spam "
    "protection or the daily recipient limit); an admin must release it",
    "ErrorSendAsDenied": "the From address is neither the mailbox nor one it may send as; "
    "drop sender=/from_() or grant the mailbox Send As rights on that address",
}


class _Inner(msgspec.Struct):
    request_id: str | None = msgspec.field(default=None, name="request-id")


class _Error(msgspec.Struct):
    code: str | None = None
    message: str | None = None
    inner: _Inner | None = msgspec.field(default=None, name="innerError")


class _Body(msgspec.Struct):
    error: _Error | None = None


_decode = msgspec.json.Decoder(_Body)


def error_code(response: httpx.Response) -> tuple[str | None, str | None]:
    """(code, detail) from a Graph error body; (None, None) when it is not one.

    The detail is the message with the request id appended (`... [request-id 1d2...]`).
    """
    try:
        body = _decode.decode(response.content[:8192])
    except msgspec.DecodeError:
        return None, None
    error = body.error
    if error is None:
        return None, None
    detail = error.message
    request_id = error.inner.request_id if error.inner else None
    if request_id:
        detail = f"{detail or ''} [request-id {request_id}]".strip()
    return error.code, detail


def _permission_hint(request: httpx.Request) -> str:
    path = request.url.path
    if path.endswith("/sendMail"):
        permission = "Mail.Send"
    elif request.method == "GET":
        permission = "Mail.Read (or Mail.ReadWrite)"
    elif path.endswith("/messages"):  # a draft: messages over 4 MB are sent as drafts
        permission = "Mail.ReadWrite (needed for messages over 4 MB, sent as drafts)"
    else:
        permission = "Mail.ReadWrite (needed to change, move and delete messages)"
    return (
        f"grant the app the Microsoft Graph {permission} permission (Application for "
        "app-only access, then 'Grant admin consent'; Delegated for a signed-in user), and "
        "if an Exchange application access policy restricts the app, add this mailbox to it"
    )


def classify(response: httpx.Response, *, idempotent: bool) -> ProviderError | None:
    """The xcomm error for a Graph answer (None for a 2xx), as in the module table."""
    status = response.status_code
    if 200 <= status < 300:
        return None
    code, detail = error_code(response)
    wait = parse_retry_after(response.headers.get("retry-after"))
    kw: dict[str, Any] = {"provider": PROVIDER, "error_code": code, "status": status}
    if detail is not None:
        kw["detail"] = detail
    if status == 429 or (status in (503, 504) and code in _THROTTLED):
        return RateLimitError(
            f"Graph throttled the request ({code or status})", retry_after=wait, **kw
        )
    if status == 504 and wait is not None:
        return ServiceUnavailable("gateway timeout", retry_after=wait, transient=True, **kw)
    if code in _REFUSED_MESSAGE:
        return MessageError(_REFUSED_MESSAGE[code], **kw)
    if status == 403 and code in _ACCESS_DENIED:
        return AuthenticationError(f"access denied: {_permission_hint(response.request)}", **kw)
    if status == 401:
        return AuthenticationError(
            "the access token was refused (expired, revoked, or not for "
            "https://graph.microsoft.com); check the app registration and sign in again",
            **kw,
        )
    if status == 404 and code == "ErrorItemNotFound":
        return ProviderError(
            "Graph found no such message or attachment: deleted, or moved meanwhile (a "
            "move gives a message a new id; search again)",
            **kw,
        )
    error = map_status(response, provider=PROVIDER, idempotent=idempotent)
    if error is not None and code:
        error.error_code = code
    return error


def unknown_mailbox(error: ProviderError, mailbox: str | None) -> ConfigurationError | None:
    """A `ConfigurationError` for a 404 on a mailbox-level call (`sendMail`, draft creation):
    Graph found no such mailbox. None for other errors."""
    if error.status != 404:
        return None
    if mailbox is None:
        return ConfigurationError(
            f"Graph has no mailbox for /me ({error.error_code or 404}): an app-only token has "
            "no signed-in user; pass mailbox='user@contoso.com' to comm.outlook()"
        )
    return ConfigurationError(
        f"Graph found no mailbox {mailbox!r} in this tenant ({error.error_code or 404}: "
        f"{error.detail or 'not found'}); check mailbox= (a user principal name or object id "
        "with an Exchange Online mailbox)"
    )
