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
| 404 `notFound` (a message, thread or label that is gone) | ProviderError naming it | no      |
| 409 on `labels.create` (the name exists or conflicts) | ProviderError              | no      |
| 502, 503 (`backendError`), 500 for idempotent calls   | ServiceUnavailable         | yes     |

`method_of(request)` names the Gmail method a request calls (`messages.modify`): the quota
table, the scope hints and the messages use it.

"permanent" is `transient=False`: Gmail's daily quota resets on Google's day, not within one
`send()` call. A 401 first goes through the provider's `TokenManager` (one refresh, one retry).
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import msgspec

from xcomm._errors import AuthenticationError, ProviderError, RateLimitError
from xcomm._http import map_status, parse_retry_after

__all__ = [
    "GMAIL_FULL_SCOPE",
    "GMAIL_MODIFY_SCOPE",
    "GMAIL_SEND_SCOPE",
    "classify",
    "error_reason",
    "method_of",
]

PROVIDER = "gmail"
_SCOPES = "https://www.googleapis.com/auth/"
#: The narrowest scope `send()` needs.
GMAIL_SEND_SCOPE = f"{_SCOPES}gmail.send"
#: Read, label, trash and send: everything but deleting for good.
GMAIL_MODIFY_SCOPE = f"{_SCOPES}gmail.modify"
#: Full access; the only scope that allows `messages.delete` (deleting for good).
GMAIL_FULL_SCOPE = "https://mail.google.com/"

_THROTTLED = frozenset({"rateLimitExceeded", "userRateLimitExceeded"})
_DAILY = frozenset({"dailyLimitExceeded", "quotaExceeded"})
_READ = f"{_SCOPES}gmail.readonly (or {GMAIL_MODIFY_SCOPE})"
_SCOPE_HINT = {
    "messages.send": f"{GMAIL_SEND_SCOPE} (or gmail.compose / gmail.modify / {GMAIL_FULL_SCOPE})",
    "messages.list": _READ,
    "messages.get": _READ,
    "messages.attachments.get": _READ,
    "threads.get": _READ,
    "history.list": _READ,
    "getProfile": _READ,
    "labels.list": f"{_SCOPES}gmail.labels (or gmail.readonly / gmail.modify)",
    "labels.create": f"{_SCOPES}gmail.labels (or {GMAIL_MODIFY_SCOPE})",
    "messages.delete": (
        f"{GMAIL_FULL_SCOPE} (deleting for good needs full access; with "
        f"{GMAIL_MODIFY_SCOPE}, move the message to the trash with trash() instead)"
    ),
}
#: What a 404 from each method means.
_GONE = {
    "threads.get": "thread",
    "history.list": "history id (too old: Gmail keeps about a week of history)",
    "messages.attachments.get": "attachment",
}
_MESSAGE_PATH = re.compile(r"/users/[^/]+/(messages|threads|labels)(?:/([^/]+))?(?:/(\w+))?")


def method_of(request: httpx.Request) -> str:
    """The Gmail method `request` calls (`messages.get`, `labels.create`, ...) from its path."""
    path = request.url.path
    if "/upload/" in path:
        return "messages.send"
    verb = request.method
    tail = path.split("/users/", 1)[-1].split("/", 1)[-1]
    if tail in ("profile", "history"):
        return "getProfile" if tail == "profile" else "history.list"
    found = _MESSAGE_PATH.search(path)
    if found is None:
        return "messages.get"
    kind, item, action = found.groups()
    if kind == "messages" and item in ("send", "batchModify", "batchDelete", "import"):
        return f"messages.{item}"
    if action == "attachments":
        return "messages.attachments.get"
    if action is not None:
        return f"{kind}.{action}"
    if item is None:
        return f"{kind}.list" if verb == "GET" else f"{kind}.create"
    return {"GET": f"{kind}.get", "DELETE": f"{kind}.delete"}.get(verb, f"{kind}.update")


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
    response: httpx.Response, *, idempotent: bool, method: str | None = None
) -> ProviderError | None:
    """The xcomm error for a Gmail answer (None for a 2xx), as in the module table."""
    status = response.status_code
    if 200 <= status < 300:
        return None
    method = method or method_of(response.request)
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
        scope = _SCOPE_HINT.get(method, f"{GMAIL_MODIFY_SCOPE} (or {GMAIL_FULL_SCOPE})")
        return AuthenticationError(
            f"the token lacks the scope for users.{method}: grant {scope} "
            "and sign in again (`xcomm auth gmail`)",
            **kw,
        )
    if status == 404:
        what = _GONE.get(method)
        if what is None:
            found = _MESSAGE_PATH.search(response.request.url.path)
            kind = found.group(1)[:-1] if found else "message"
            item = found.group(2) if found else None
            what = f"{kind} {item}" if item else kind
            if kind == "message":
                what += " (deleted, or an id from another account)"
        return ProviderError(f"Gmail has no such {what}", **kw)
    if status == 409 and method == "labels.create":
        return ProviderError(
            "Gmail refused to create the label: a label with that name exists (names are "
            "compared without case) or it conflicts with a system label",
            **kw,
        )
    error = map_status(response, provider=PROVIDER, idempotent=idempotent)
    if error is not None and reason:
        error.error_code = reason
    return error
