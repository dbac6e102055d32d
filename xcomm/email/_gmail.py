"""The Gmail API provider: send, and read a Gmail mailbox as a `MailboxProvider`.

Requests go through `HttpProvider._request` (limiter, retries, metrics); the provider's
`auth` is a `TokenManager`, so a 401 refreshes the access token once. Every call charges
its Gmail quota units (`GMAIL_COSTS`) on the provider's limiter.

Messages are the one `ReceivedMessage` model (`_gmail_parse.py` maps Gmail's JSON and labels
onto it). Labels, actions and batch mode are in `_gmail_actions.py`; `watch()` in
`_gmail_watch.py`.
"""

from __future__ import annotations

import os
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

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
from xcomm.email._gmail_actions import GmailActions
from xcomm.email._gmail_errors import classify
from xcomm.email._gmail_parse import (
    STRUCTURE_FIELDS,
    GmailView,
    ParsedMessage,
    b64url_decode,
    parse_message,
)
from xcomm.email._gmail_send import API, GMAIL_MAX_MESSAGE_SIZE, send_request
from xcomm.email._imap_plan import Keep, client_check, own_check
from xcomm.email._mailbox import MailboxProvider, SearchQuery
from xcomm.email._message import ReceivedMessage
from xcomm.email._mime import render_message, with_bcc
from xcomm.email._query import EmailQuery

if TYPE_CHECKING:
    from xcomm.email._gmail_watch import GmailWatchState

__all__ = ["GmailProvider"]

#: messages.get calls in flight at once during a search.
SEARCH_CONCURRENCY = 8
_PAGE_SIZE = 100
_MAX_PAGE = 500


@dataclass(frozen=True, slots=True)
class _Plan:
    """How a search runs: `messages.list` parameters, the client check, the folder name."""

    params: dict[str, Any]
    keep: Keep | None
    folder: str
    full: bool  # read every message with format=full (bodies needed)
    page_size: int | None


class GmailProvider(GmailActions, HttpProvider, EmailProvider, MailboxProvider):
    """Send, search and act on a Gmail mailbox with the Gmail API.

    Example:
        ```python
        async with CommManager() as comm:
            gmail = comm.gmail("token.json")    # written by `xcomm auth gmail`
            result = await gmail.compose().to("you@example.org").subject("Hi").body("Yo").send()
            for m in await gmail.search(EmailQuery().from_sender("bob@example.com").limit(10)):
                print(m.id, m.thread_id, m.subject, m.preview, m.labels)
                await m.add_label("Bob")          # created when missing (create_labels=True)
                m = await m.mark_as_read()
                await (await m.reply(gmail, "Thanks!")).send()   # in the same Gmail thread
        ```

    Messages are `ReceivedMessage`s like IMAP's (labels and Gmail's read/starred/important
    state as IMAP-style flags: see `_gmail_parse.py`). Each call charges its Gmail quota
    units on the limiter (100 for a send, 5 for a list, get or modify; the `gmail` preset
    allows 15,000 a minute per user). Errors are mapped as in `_gmail_errors.py`.
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
        create_labels: bool = True,
        timeout: Timeout | float | None = None,
        spec: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(context, limiter=limiter, retry=retry)
        if not (isinstance(user_id, str) and user_id and "/" not in user_id):
            raise ConfigurationError("Gmail provider: user_id must be 'me' or an email address")
        self.default_sender = sender_address(sender, provider="Gmail")
        self.auth = auth
        self.user_id = user_id
        self.create_labels = bool(create_labels)
        self._timeout = None if timeout is None else Timeout.coerce(timeout)
        self._spec = dict(spec or {})
        self._json = self._headers({"Content-Type": "application/json"})
        self._rfc822 = self._headers({"Content-Type": "message/rfc822"})
        self._get = self._headers()
        self._label_names: dict[str, str] | None = None
        self._label_lock = anyio.Lock()

    def __repr__(self) -> str:
        return f"GmailProvider(user_id={self.user_id!r})"

    @property
    def username(self) -> str | None:
        """The mailbox's address when known (`user_id`, else the default sender): replies to
        all leave it out."""
        if "@" in self.user_id:
            return self.user_id
        return self.default_sender.email if self.default_sender is not None else None

    def _classify(self, response: httpx.Response, *, idempotent: bool) -> ProviderError | None:
        return classify(response, idempotent=idempotent)

    async def _exchange(
        self,
        method: str,
        http_method: str,
        url: str | httpx.URL,
        *,
        body: bytes = b"",
        content_type: str | None = None,
        idempotent: bool = False,
        timeout: float | None = None,
    ) -> tuple[dict[str, Any], int, float]:
        """One Gmail call charged `GMAIL_COSTS[method]` units: (JSON answer, attempts,
        duration). An empty answer (204) is `{}`."""
        if content_type is None:
            headers = self._get
        elif content_type == "application/json":
            headers = self._json
        elif content_type == "message/rfc822":
            headers = self._rfc822
        else:
            headers = self._headers({"Content-Type": content_type})
        request = self._build_request(http_method, httpx.URL(url), headers, body)
        response, attempts, duration = await self._request(
            method, request, cost=GMAIL_COSTS[method], idempotent=idempotent, timeout=timeout
        )
        answer = json_object(response, provider=self.name, service=f"Gmail's {method}")
        return answer, attempts, duration

    async def _api(
        self,
        method: str,
        http_method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Mapping[str, Any] | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """`<API>/users/<user_id>/<path>`. Reads and label changes are idempotent (a 500 is
        retried: doing them twice changes nothing more); sends, creates and deletes are not."""
        url = httpx.URL(f"{API}/{self.user_id}/{path}", params=params or None)
        body = b"" if json is None else encode_json(json)
        answer, _, _ = await self._exchange(
            method,
            http_method,
            url,
            body=body,
            content_type=None if json is None else "application/json",
            idempotent=http_method == "GET" or method in _IDEMPOTENT,
            timeout=timeout,
        )
        return answer

    # -- send --------------------------------------------------------------------------------

    async def send(self, message: EmailMessage, /, *, timeout: float | None = None) -> SendResult:
        """Send `message` with `users.messages.send` (an upload above 5 MB).

        Gmail sends to the To, Cc and Bcc headers of the raw message and removes Bcc before
        delivery. The From address must be the account's or one of its verified aliases.
        With `message.thread_id` (a reply sets it), Gmail files the message in that thread.

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
        http_method, url, body, content_type = send_request(
            raw, user_id=self.user_id, thread_id=message.thread_id
        )
        answer, attempts, duration = await self._exchange(
            "messages.send", http_method, url, body=body, content_type=content_type,
            timeout=timeout,
        )  # fmt: skip
        return SendResult(
            message_id=answer.get("id"),
            provider=self.name,
            accepted=tuple(a.email for a in recipients),
            attempts=attempts,
            duration=duration,
            status=200,
        )

    # -- reading -----------------------------------------------------------------------------

    async def _plan(
        self, query: str | SearchQuery | None, folder: str | None, *, bodies: bool,
        timeout: float | None,
    ) -> _Plan:  # fmt: skip
        params: dict[str, Any] = {}
        keep: Keep | None = None
        full = bodies
        page_size: int | None = None
        if isinstance(query, EmailQuery):
            plan = query.explain("gmail")
            params = dict(plan.request) if isinstance(plan.request, dict) else {}
            keep = client_check(plan.client, timeout, GmailView)
            full = full or (plan.client is not None and plan.client.reads_bodies())
            page_size = int(params.pop("maxResults", 0) or 0) or None
        elif isinstance(query, str):
            params = {"q": query} if query else {}
        elif query is not None:
            keep = own_check(query)
            if keep is None:
                raise ValidationError(
                    "Gmail searches with an EmailQuery or a Gmail search string "
                    f"(`from:bob is:unread`); {type(query).__name__} has no matches() to "
                    "check messages with"
                )
        if folder is not None:
            label = await self._label_id(folder, create=False, timeout=timeout)
            params["labelIds"] = list(dict.fromkeys([*(params.get("labelIds") or ()), label]))
        params = {k: v for k, v in params.items() if v not in (None, "", [], ())}
        return _Plan(params, keep, folder or "", full, page_size)

    async def _pages(
        self, params: dict[str, Any], page_size: int, timeout: float | None
    ) -> AsyncIterator[list[str]]:
        """Message ids from `messages.list`, a page at a time, in Gmail's order (newest
        first)."""
        token: str | None = None
        while True:
            page = {**params, "maxResults": page_size}
            if token:
                page["pageToken"] = token
            answer = await self._api("messages.list", "GET", "messages", params=page,
                                     timeout=timeout)  # fmt: skip
            yield [str(m["id"]) for m in answer.get("messages") or () if isinstance(m, dict)]
            token = answer.get("nextPageToken") or None
            if not token:
                return

    async def search(
        self,
        query: str | SearchQuery = "",
        /,
        *,
        folder: str | None = None,
        limit: int | None = None,
        bodies: bool = False,
        timeout: float | None = None,
        include_spam_trash: bool = False,
    ) -> list[ReceivedMessage]:
        """Messages matching `query` (an `EmailQuery`, or a Gmail search string such as
        `"from:bob is:unread"`), oldest first; with `limit`, the newest `limit` of them.

        `folder` is a label name (`"INBOX"`, `"Clients/Acme"`) the messages must have; they
        come back with `folder` set to it. The server runs what Gmail's `q` and `labelIds`
        can express; the rest of an `EmailQuery` (`query.explain("gmail")`) is checked here.
        `bodies=True` reads every message with its text and HTML in the same call
        (`format=full`) instead of on first `text()`/`html()`.
        """
        if limit is not None and not (isinstance(limit, int) and limit >= 0):
            raise ValidationError(f"limit must be a non-negative int, got {limit!r}")
        plan = await self._plan(query, folder, bodies=bodies, timeout=timeout)
        need = limit
        if (
            isinstance(query, EmailQuery)
            and query.max_results is not None
            and query.explain("gmail").sort_on_server
        ):
            need = min(x for x in (limit, query.max_results) if x is not None)
        found: list[ReceivedMessage] = []
        if need != 0:
            size = plan.page_size or _PAGE_SIZE
            if need is not None and plan.keep is None:
                size = max(1, min(size, need))
            async for ids in self._pages(self._listing(plan, include_spam_trash), size, timeout):
                await self._collect(ids, plan, found, need, timeout)
                if need is not None and len(found) >= need:
                    break
        found.reverse()
        if isinstance(query, EmailQuery):  # its own sort and limit, after the client filter
            views = query.sort_and_limit([GmailView(m) for m in found])
            return [view.message for view in views]
        return found

    def _listing(self, plan: _Plan, include_spam_trash: bool) -> dict[str, Any]:
        params = dict(plan.params)
        if include_spam_trash:
            params["includeSpamTrash"] = "true"
        return params

    async def _collect(
        self,
        ids: list[str],
        plan: _Plan,
        found: list[ReceivedMessage],
        need: int | None,
        timeout: float | None,
    ) -> None:
        """Read `ids` (newest first) into `found` until it holds `need` matches."""
        start = 0
        while start < len(ids) and (need is None or len(found) < need):
            step = len(ids) if need is None else max(SEARCH_CONCURRENCY, need - len(found))
            chunk = ids[start : start + step]
            start += step
            for message in await self._read(chunk, plan, timeout):
                if plan.keep is None or await plan.keep(message):
                    found.append(message)
                    if need is not None and len(found) >= need:
                        return

    def iter_search(
        self,
        query: str | SearchQuery = "",
        /,
        *,
        folder: str | None = None,
        batch_size: int | None = None,
        bodies: bool = False,
        include_spam_trash: bool = False,
    ) -> AsyncIterator[ReceivedMessage]:
        """Like `search()` without a limit, oldest first: every matching id is listed first
        (`messages.list`, 500 a page), then messages are read `batch_size` at a time
        (default 100) and yielded as each batch arrives."""
        if batch_size is not None and not (isinstance(batch_size, int) and batch_size >= 1):
            raise ValidationError("batch_size must be a positive int")
        if isinstance(query, EmailQuery) and query.order:
            raise ValidationError(
                "iter_search() streams oldest first; a sorted query needs search()"
            )
        return self._iter(query, folder, batch_size or _PAGE_SIZE, bodies, include_spam_trash)

    async def _iter(
        self,
        query: str | SearchQuery,
        folder: str | None,
        batch_size: int,
        bodies: bool,
        include_spam_trash: bool,
    ) -> AsyncIterator[ReceivedMessage]:
        plan = await self._plan(query, folder, bodies=bodies, timeout=None)
        ids: list[str] = []
        async for page in self._pages(self._listing(plan, include_spam_trash), _MAX_PAGE, None):
            ids.extend(page)
        ids.reverse()
        for start in range(0, len(ids), batch_size):
            for message in await self._read(ids[start : start + batch_size], plan, None):
                if plan.keep is None or await plan.keep(message):
                    yield message

    async def get(
        self, key: int | str, /, *, folder: str | None = None, timeout: float | None = None
    ) -> ReceivedMessage | None:
        """The message with Gmail id `key` (`message.id`), or None when Gmail has none."""
        if isinstance(key, bool) or not isinstance(key, int | str) or not str(key).strip():
            raise ValidationError(f"a Gmail message id is a non-empty string, got {key!r}")
        message_id = str(key).strip()
        if not message_id.isalnum():
            raise ValidationError(f"{message_id!r} is not a Gmail message id")
        try:
            answer = await self._api("messages.get", "GET", f"messages/{message_id}",
                                     params=_STRUCTURE, timeout=timeout)  # fmt: skip
        except ProviderError as exc:
            if exc.status == 404:
                return None
            raise
        (message,) = await self._parsed([answer], folder or "")
        return self._bound(message)

    async def _read(
        self, ids: list[str], plan: _Plan, timeout: float | None
    ) -> list[ReceivedMessage]:
        """`messages.get` for every id, `SEARCH_CONCURRENCY` at a time, in the ids' order;
        a message deleted meanwhile (404) is left out."""
        answers: list[dict[str, Any] | None] = [None] * len(ids)
        params = _FULL if plan.full else _STRUCTURE
        limiter = anyio.CapacityLimiter(SEARCH_CONCURRENCY)

        async def one(index: int, message_id: str) -> None:
            async with limiter:
                try:
                    answers[index] = await self._api("messages.get", "GET",
                                                     f"messages/{message_id}", params=params,
                                                     timeout=timeout)  # fmt: skip
                except ProviderError as exc:
                    if exc.status != 404:
                        raise

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
        parsed = await self._parsed([a for a in answers if a is not None], plan.folder)
        return [self._bound(p) for p in parsed]

    async def _messages(
        self, ids: list[str], *, folder: str, full: bool, timeout: float | None = None
    ) -> list[ReceivedMessage]:
        """The messages `ids`, read as a search would (a deleted one is left out)."""
        return await self._read(ids, _Plan({}, None, folder, full, None), timeout)

    async def _parsed(self, answers: list[dict[str, Any]], folder: str) -> list[ParsedMessage]:
        """Parse answers, with user label ids named (labels.list, cached)."""
        wanted = {str(x) for a in answers for x in a.get("labelIds") or ()}
        names = await self._names_for(wanted)
        return [parse_message(a, names=names, folder=folder) for a in answers if "id" in a]

    def _bound(self, parsed: ParsedMessage) -> ReceivedMessage:
        message = parsed.message.bind(self)
        cache = message.__dict__
        cache["_gmail_data"] = parsed.data
        cache["_gmail_attachments"] = parsed.attachment_ids
        return message

    async def fetch_part(
        self,
        message: ReceivedMessage,
        section: str,
        encoding: str,
        /,
        *,
        timeout: float | None = None,
    ) -> bytes:
        """One part of `message`, decoded (Gmail undoes the transfer encoding): from the
        data already read, else `messages.attachments.get` for a part with an attachment id,
        else one `messages.get` (`format=full`) that also keeps the text and HTML bodies."""
        cache = message.__dict__
        data: dict[str, bytes] = cache.setdefault("_gmail_data", {})
        ids: dict[str, str] = cache.setdefault("_gmail_attachments", {})
        if section not in data and section not in ids:
            answer = await self._api("messages.get", "GET", f"messages/{message.id}",
                                     params=_FULL, timeout=timeout)  # fmt: skip
            (parsed,) = await self._parsed([answer], message.folder)
            data.update(parsed.data)
            ids.update(parsed.attachment_ids)
            for key in ("_text", "_html"):
                if key in parsed.message.__dict__:
                    cache.setdefault(key, parsed.message.__dict__[key])
        if section in data:
            return data[section]
        if section not in ids:
            return b""
        answer = await self._api(
            "messages.attachments.get", "GET",
            f"messages/{message.id}/attachments/{ids[section]}", timeout=timeout,
        )  # fmt: skip
        return b64url_decode(str(answer.get("data") or ""))

    async def thread(
        self, thread_id: str, /, *, timeout: float | None = None
    ) -> list[ReceivedMessage]:
        """The messages of a Gmail conversation (`users.threads.get`, 10 quota units), oldest
        first, each with its structure like a search result.

        Raises:
            ProviderError: Gmail has no such thread (404).
        """
        if not (isinstance(thread_id, str) and thread_id.isalnum()):
            raise ValidationError(f"{thread_id!r} is not a Gmail thread id")
        answer = await self._api("threads.get", "GET", f"threads/{thread_id}",
                                 params=_THREAD, timeout=timeout)  # fmt: skip
        messages = [m for m in answer.get("messages") or () if isinstance(m, dict)]
        return [self._bound(p) for p in await self._parsed(messages, "")]

    # -- monitoring --------------------------------------------------------------------------

    def watch(
        self,
        query: str | SearchQuery | None = None,
        *,
        folder: str | None = None,
        idle_timeout: float = 29 * 60,
        poll_interval: float = 30.0,
        since_uid: int | None = None,
        include_existing: bool = False,
        use_idle: bool = True,
        history_id: str | None = None,
        state: str | os.PathLike[str] | GmailWatchState | None = None,
    ) -> AsyncGenerator[ReceivedMessage, None]:
        """New messages labelled `folder` (default `"INBOX"`; a label name), matching
        `query` when given, each once, as they arrive: `history.list` every
        `poll_interval` seconds from a history id. See `docs/providers/gmail.md`.

        Starts from `history_id`, else the one saved in `state` (a file path, or an object
        with async `load()`/`save()`), else the mailbox's current one (`getProfile`); with
        `state`, where it got to is saved after each message, so a restart goes on from
        there. A history id Gmail no longer has (404, about a week old) is recovered from
        by listing the messages received since the last one seen. `include_existing=True`
        yields the folder's matching messages first. Close it with `contextlib.aclosing()`.
        Gmail has no push here and no UIDs: `idle_timeout` and `use_idle` are ignored and
        `since_uid` is refused (use `history_id`).
        """
        from xcomm.email._gmail_watch import start_watch

        if since_uid is not None:
            raise ValidationError("Gmail has no UIDs: resume a watch with history_id= or state=")
        return start_watch(self, query, folder=folder or "INBOX", poll_interval=poll_interval,
                           include_existing=include_existing, history_id=history_id,
                           state=state)  # fmt: skip


_IDEMPOTENT = frozenset(
    {"messages.modify", "messages.batchModify", "messages.trash", "messages.untrash"}
)
_STRUCTURE = {"format": "full", "fields": STRUCTURE_FIELDS}
_FULL = {"format": "full"}
_THREAD = {"format": "full", "fields": f"id,historyId,messages({STRUCTURE_FIELDS})"}
