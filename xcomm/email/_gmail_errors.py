"""The one place Gmail API error answers become xcomm errors.

Gmail answers errors as
`{"error": {"code": 403, "message": "...", "errors": [{"reason": "...", ...}], "status": ...}}`.
`classify()` reads the HTTP status and the first `reason` (pure):

| status / reason                                       | xcomm error                | retried |
|-------------------------------------------------------|----------------------------|---------|
| 429, or 403 `rateLimitExceeded` / `userRateLimitExceeded` | RateLimitError (Retry-After) | yes  |
| 403 `dailyLimitExceeded`, `quotaExceeded`             | RateLimitError, permanent  | no      |
| 403 `insufficientPermissions` (a missing scope)       | AuthenticationError        | no      |
| 401 after the one token refresh, other 403            | AuthenticationError        | no      |
| 400 (`invalidArgument`, `failedPrecondition`), 413    | MessageError               | no      |
| 502, 503 (`backendError`), 500 for idempotent calls   | ServiceUnavailable         | yes     |

"permanent" is `transient=False`: Gmail's daily quota resets on Google's day, not within one
`send()` call. A 401 first goes through the provider's `TokenManager` (one refresh, one retry).
"""

from __future__ import annotations

from typing import Any

import httpx
import msgspec

from xcomm._errors import AuthenticationError, ProviderError, RateLimitError
from xcomm._http import map_status, parse_retry_after

__all__ = ["GMAIL_SEND_SCOPE", "classify", "error_reason"]

PROVIDER = "gmail"
#: The narrowest scope `send()` needs; `search()` needs gmail.readonly (or gmail.metadata).
GMAIL_SEND_SCOPE = "https://www.googleapis.com/auth/gmail.send"

_THROTTLED = frozenset({"rateLimitExceeded", "userRateLimitExceeded"})
_DAILY = frozenset({"dailyLimitExceeded", "quotaExceeded"})
_SCOPE_HINT = {
    "send": f"{GMAIL_SEND_SCOPE} (or gmail.compose / gmail.modify / https://mail.google.com/)",
    "list": "https://www.googleapis.com/auth/gmail.readonly (or gmail.metadata / gmail.modify)",
    "get": "https://www.googleapis.com/auth/gmail.readonly (or gmail.metadata / gmail.modify)",
}


class _Reason(msgspec.Struct):
    reason: str | None = None
    message: str | None = None


class _Error(msgspec.Struct):
    code: int | None = None
    message: str | None = None
    status: str | None = None
    errors: list[_Reason] = msgspec.field(default_factory=list)


class _Body(msgspec.Struct):
    error: _Error | None = None


_decode = msgspec.json.Decoder(_Body)


def error_reason(response: httpx.Response) -> tuple[str | None, str | None]:
    """(reason, message) from a Gmail error body; (None, None) when it is not one."""
    try:
        body = _decode.decode(response.content[:8192])
    except msgspec.DecodeError:
        return None, None
    error = body.error
    if error is None:
        return None, None
    reason = next((e.reason for e in error.errors if e.reason), None)
    return reason or error.status, error.message


def classify(
    response: httpx.Response, *, idempotent: bool, method: str = "send"
) -> ProviderError | None:
    """The xcomm error for a Gmail answer (None for a 2xx), as in the module table."""
    status = response.status_code
    if 200 <= status < 300:
        return None
    reason, message = error_reason(response)
    kw: dict[str, Any] = {
        "provider": PROVIDER,
        "error_code": reason,
        "status": status,
        "detail": message,
    }
    if status == 403 and reason in _THROTTLED:
        wait = parse_retry_after(response.headers.get("retry-after"))
        return RateLimitError(f"Gmail rate limit ({reason})", retry_after=wait, **kw)
    if status in (403, 429) and reason in _DAILY:
        return RateLimitError(
            f"the Gmail daily quota is used up ({reason}); it resets at midnight Pacific time",
            transient=False,
            **kw,
        )
    if status == 403 and reason in ("insufficientPermissions", "ACCESS_TOKEN_SCOPE_INSUFFICIENT"):
        scope = _SCOPE_HINT.get(method, "a Gmail scope that allows this call")
        return AuthenticationError(
            f"the token lacks the scope for users.messages.{method}: grant {scope} "
            "and sign in again (`xcomm auth gmail`)",
            **kw,
        )
    error = map_status(response, provider=PROVIDER, idempotent=idempotent)
    if error is not None and reason:
        error.error_code = reason
    return error
