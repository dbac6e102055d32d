"""The Gmail API provider: send the MIME message xcomm renders, and search a mailbox.

Requests go through `HttpProvider._request` (limiter, retries, metrics); the provider's
`auth` is a `TokenManager`, so a 401 refreshes the access token once. Every call charges
its Gmail quota units (`PRESETS["gmail"].costs`) on the provider's limiter.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import msgspec

from xcomm._config import RetryPolicy, Timeout
from xcomm._errors import ConfigurationError, MessageError, ProviderError, ValidationError
from xcomm._http import HttpAuth, HttpProvider, encode_json, json_object
from xcomm._models import Address, EmailMessage, SendResult
from xcomm._presets import GMAIL_COSTS
from xcomm._provider import ProviderContext
from xcomm._retry import Limiter
from xcomm.email._base import EmailProvider, sender_address
from xcomm.email._gmail_errors import classify
from xcomm.email._gmail_message import METADATA_HEADERS, GmailMessage, GmailView, parse_message
from xcomm.email._mime import render_message, with_bcc
from xcomm.email._query import EmailQuery

__all__ = ["GMAIL_MAX_MESSAGE_SIZE", "GMAIL_UPLOAD_THRESHOLD", "GmailProvider"]

API = "https://gmail.googleapis.com/gmail/v1/users"
UPLOAD = "https://gmail.googleapis.com/upload/gmail/v1/users"
#: Gmail's limit on a message, attachments included (the discovery document's maxSize).
GMAIL_MAX_MESSAGE_SIZE = 35 * 1024 * 1024
#: Above this size a message is sent with a media upload instead of base64 in JSON.
GMAIL_UPLOAD_THRESHOLD = 5 * 1024 * 1024
#: messages.get calls in flight at once during a search.
SEARCH_CONCURRENCY = 8
_PAGE_SIZE = 100


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii")


def send_request(
    raw: bytes, *, user_id: str = "me", thread_id: str | None = None
) -> tuple[str, str, bytes, str]:
    """(method, url, body, content type) of `users.messages.send` for `raw` (pure).

    Up to `GMAIL_UPLOAD_THRESHOLD` bytes, JSON with the base64url message; above it, a simple
    media upload of the bytes themselves (no thread id: that needs a multipart upload).
    """
    if len(raw) > GMAIL_UPLOAD_THRESHOLD and thread_id is None:
        url = f"{UPLOAD}/{user_id}/messages/send?uploadType=media"
        return "POST", url, raw, "message/rfc822"
    body: dict[str, str] = {"raw": _b64url(raw)}
    if thread_id:
        body["threadId"] = thread_id
    return "POST", f"{API}/{user_id}/messages/send", encode_json(body), "application/json"


class GmailProvider(HttpProvider, EmailProvider):
    """Send and search email with the Gmail API.

    Example:
        ```python
        async with CommManager() as comm:
            gmail = comm.gmail("token.json")    # written by `xcomm auth gmail`
            result = await gmail.compose().to("you@example.org").subject("Hi").body("Yo").send()
            print(result.message_id)            # Gmail's message id
            for m in await gmail.search(EmailQuery.from_("bob@example.com"), limit=10):
                print(m.id, m.subject, m.snippet)
        ```

    Each call charges its Gmail quota units on the limiter (100 for a send, 5 for a list or
    get; the `gmail` preset allows 15,000 a minute per user). Errors are mapped as in
    `xcomm/email/_gmail_errors.py` (and `docs/providers/gmail.md`).
    """

    name = "gmail"
    max_message_size = GMAIL_MAX_MESSAGE_SIZE

    def __init__(
        self,
        context: ProviderContext,
        *,
        limiter: Limiter | None,
        auth: HttpAuth,
        retry: RetryPolicy | None = None,
        user_id: str = "me",
        sender: str | Address | None = None,
        timeout: Timeout | float | None = None,
        spec: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(context, limiter=limiter, retry=retry)
        if not (isinstance(user_id, str) and user_id and "/" not in user_id):
            raise ConfigurationError("Gmail provider: user_id must be 'me' or an email address")
        self.default_sender = sender_address(sender, provider="Gmail")
        self.auth = auth
        self.user_id = user_id
        self._timeout = None if timeout is None else Timeout.coerce(timeout)
        self._spec = dict(spec or {})
        self._json = self._headers({"Content-Type": "application/json"})
        self._rfc822 = self._headers({"Content-Type": "message/rfc822"})
        self._get = self._headers()

    def __repr__(self) -> str:
        return f"GmailProvider(user_id={self.user_id!r})"

    def _classify(self, response: httpx.Response, *, idempotent: bool) -> ProviderError | None:
        path = response.request.url.path
        method = (
            "send" if path.endswith("/send") else "list" if path.endswith("/messages") else "get"
        )
        return classify(response, idempotent=idempotent, method=method)

    async def _api(
        self,
        method: str,
        http_method: str,
        url: str,
        *,
        body: bytes = b"",
        content_type: str | None = None,
        idempotent: bool = False,
        timeout: float | None = None,
    ) -> tuple[dict[str, Any], int, float]:
        """One Gmail call charged `GMAIL_COSTS["messages.<method>"]` units; the JSON answer."""
        if content_type == "message/rfc822":
            headers = self._rfc822
        else:
            headers = self._json if content_type else self._get
        request = self._build_request(http_method, httpx.URL(url), headers, body)
        cost = GMAIL_COSTS[f"messages.{method}"]
        response, attempts, duration = await self._request(
            f"messages.{method}", request, cost=cost, idempotent=idempotent, timeout=timeout
        )
        answer = json_object(response, provider=self.name, service="Gmail")
        return answer, attempts, duration

    async def send(self, message: EmailMessage, /, *, timeout: float | None = None) -> SendResult:
        """Send `message` with `users.messages.send` (a media upload above 5 MB).

        Gmail sends to the To, Cc and Bcc headers of the raw message and removes Bcc before
        delivery. The From address must be the account's or one of its verified aliases.

        Raises:
            ValidationError: no recipients, or a message that cannot be rendered.
            MessageError: larger than Gmail's 35 MB (nothing is sent), or refused by Gmail.
            CommunicationError: any other failure, mapped as in `_gmail_errors.py`.
        """
        if timeout is not None and not timeout > 0:
            raise ValidationError(f"timeout must be a positive number of seconds, got {timeout!r}")
        recipients = message.recipients
        if not recipients:
            raise ValidationError("the message has no recipients; add to, cc or bcc addresses")
        if message.sender is None and self.default_sender is not None:
            message = msgspec.structs.replace(message, sender=self.default_sender)
        raw = with_bcc(render_message(message), message.bcc)
        if len(raw) > self.max_message_size:
            raise MessageError(
                f"the message is {len(raw)} bytes; Gmail accepts {self.max_message_size}",
                provider=self.name,
            )
        http_method, url, body, content_type = send_request(raw, user_id=self.user_id)
        answer, attempts, duration = await self._api(
            "send", http_method, url, body=body, content_type=content_type, timeout=timeout
        )
        return SendResult(
            message_id=answer.get("id"),
            provider=self.name,
            accepted=tuple(a.email for a in recipients),
            attempts=attempts,
            duration=duration,
            status=200,
        )

    # -- search ------------------------------------------------------------------------------

    async def search(
        self,
        query: EmailQuery | str = "",
        /,
        *,
        limit: int | None = None,
        include_spam_trash: bool = False,
    ) -> list[GmailMessage]:
        """Messages matching `query` (an `EmailQuery`, or a Gmail search string such as
        `"from:bob is:unread"`), newest first; at most `limit` of them.

        The server runs what Gmail's `q` and `labelIds` can express; the rest of an
        `EmailQuery` (see `query.explain("gmail")`) is checked here on each message's headers.
        """
        if limit is not None and limit < 0:
            raise ValidationError(f"limit must be >= 0, got {limit}")
        found = [
            m async for m in self._iter(query, limit=limit, include_spam_trash=include_spam_trash)
        ]
        if isinstance(query, EmailQuery):
            views = query.sort_and_limit([GmailView(m) for m in found])
            found = [view.message for view in views]
        return found if limit is None else found[:limit]

    def iter_search(
        self, query: EmailQuery | str = "", /, *, include_spam_trash: bool = False
    ) -> AsyncIterator[GmailMessage]:
        """Like `search()` without a limit, yielding each page's messages as they arrive
        (in Gmail's order: the query's own sort is not applied)."""
        return self._iter(query, limit=None, include_spam_trash=include_spam_trash)

    async def _iter(
        self, query: EmailQuery | str, *, limit: int | None, include_spam_trash: bool
    ) -> AsyncIterator[GmailMessage]:
        params: dict[str, Any]
        residual: EmailQuery | None = None
        early_stop = limit
        if isinstance(query, EmailQuery):
            plan = query.explain("gmail")
            params = dict(plan.request) if isinstance(plan.request, dict) else {}
            residual = plan.client
            if not plan.sort_on_server:
                early_stop = None  # every match is needed to sort them here
            elif query.max_results is not None:
                early_stop = min(x for x in (limit, query.max_results) if x is not None)
        else:
            params = {"q": query} if query else {}
        params = {k: v for k, v in params.items() if v not in (None, "", [], ())}
        page_size = int(params.pop("maxResults", 0) or 0) or _PAGE_SIZE
        if early_stop is not None and residual is None:
            page_size = max(1, min(page_size, early_stop))
        params["maxResults"] = page_size
        if include_spam_trash:
            params["includeSpamTrash"] = "true"
        headers: tuple[str, ...] | None = METADATA_HEADERS if residual is None else None
        yielded = 0
        token: str | None = None
        while early_stop is None or yielded < early_stop:
            page = dict(params)
            if token:
                page["pageToken"] = token
            url = httpx.URL(f"{API}/{self.user_id}/messages", params=page)
            answer, _, _ = await self._api("list", "GET", str(url), idempotent=True)
            ids = [str(m["id"]) for m in answer.get("messages") or () if isinstance(m, dict)]
            for message in await self._get_many(ids, headers):
                if residual is not None and not residual.matches(GmailView(message)):
                    continue
                yield message
                yielded += 1
                if early_stop is not None and yielded >= early_stop:
                    return
            token = answer.get("nextPageToken") or None
            if not token:
                return

    async def get(self, message_id: str, /) -> GmailMessage:
        """One message's metadata (`users.messages.get`, `format=metadata`, all headers)."""
        return (await self._get_many([message_id], None))[0]

    async def _get_many(
        self, ids: list[str], headers: tuple[str, ...] | None
    ) -> list[GmailMessage]:
        """`messages.get` for every id, `SEARCH_CONCURRENCY` at a time, in the ids' order."""
        results: list[GmailMessage | None] = [None] * len(ids)
        query: list[tuple[str, str]] = [("format", "metadata")]
        query += [("metadataHeaders", name) for name in headers or ()]
        limiter = anyio.CapacityLimiter(SEARCH_CONCURRENCY)

        async def one(index: int, message_id: str) -> None:
            async with limiter:
                url = httpx.URL(f"{API}/{self.user_id}/messages/{message_id}", params=query)
                answer, _, _ = await self._api("get", "GET", str(url), idempotent=True)
                results[index] = parse_message(answer)

        try:
            async with anyio.create_task_group() as group:
                for index, message_id in enumerate(ids):
                    group.start_soon(one, index, message_id)
        except BaseExceptionGroup as failed:
            # The caller gets the xcomm error itself (several gets may fail the same way at
            # once, e.g. a rate limit: the first one stands for them), never a group.
            first = next((e for e in failed.exceptions if isinstance(e, Exception)), None)
            if first is None:
                raise
            raise first from None
        return [m for m in results if m is not None]
