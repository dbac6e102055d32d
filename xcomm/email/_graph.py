"""The Microsoft Graph provider (Outlook, Exchange Online): send mail from a mailbox.

Requests go through `HttpProvider._request` (limiter, retries, error mapping, metrics). The
provider's `auth` is a `TokenManager` (a 401 refreshes the token once); its `_concurrency` is
the manager's bound for the mailbox, shared with every other provider on it, because Outlook
runs at most 4 requests of an app on a mailbox at once and throttles the rest. Which requests
send a message is decided by the pure `plan_send()` (`_graph_payload.py`); error answers are
read by `_graph_errors.py`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import anyio
import httpx
import msgspec

from xcomm._config import RetryPolicy, Timeout
from xcomm._errors import (
    CommunicationError,
    ConfigurationError,
    MessageError,
    ProviderError,
    ValidationError,
)
from xcomm._http import HttpAuth, HttpProvider, encode_json, json_object
from xcomm._models import Address, Attachment, EmailMessage, SendResult
from xcomm._provider import ProviderContext
from xcomm._retry import Limiter
from xcomm.email._base import EmailProvider, sender_address
from xcomm.email._graph_actions import GraphActions
from xcomm.email._graph_batch import (
    API_ROOT,
    SubRequest,
    query_string,
    raise_failures,
    run_batch,
    segment,
)
from xcomm.email._graph_errors import classify, unknown_mailbox
from xcomm.email._graph_payload import (
    GRAPH_MAX_MESSAGE_SIZE,
    GRAPH_MAX_RECIPIENTS,
    SendPlan,
    assign_message_id,
    attachment_item,
    file_attachment,
    message_size,
    plan_send,
    upload_ranges,
)
from xcomm.email._mailbox import MailboxProvider, SearchQuery
from xcomm.email._message import ReceivedMessage

__all__ = ["GRAPH_API", "GraphProvider"]

if TYPE_CHECKING:
    from xcomm.email._watch import CheckpointStore

logger = logging.getLogger("xcomm.outlook")

GRAPH_API = API_ROOT
#: Seconds a failed large send may spend deleting its draft (even when cancelled).
DISCARD_TIMEOUT = 10.0
#: Calls on the mailbox itself: a 404 there means Graph knows no such mailbox.
_MAILBOX_CALLS = frozenset({"sendMail", "messages.create"})


class GraphProvider(GraphActions, HttpProvider, EmailProvider, MailboxProvider):
    """Send, search and act on an Outlook / Exchange Online mailbox with Microsoft Graph.

    Example:
        ```python
        import os

        async with CommManager() as comm:
            outlook = comm.outlook(
                tenant_id="contoso.onmicrosoft.com",
                client_id=os.environ["GRAPH_CLIENT_ID"],
                client_secret_env="GRAPH_CLIENT_SECRET",
                mailbox="reports@contoso.com",
            )
            result = await outlook.compose().to("ada@example.org").subject("Hi").body("Yo").send()
            print(result.message_id)   # the Internet Message-ID recipients see
            for m in await outlook.search(EmailQuery().is_unread().limit(10), folder="inbox"):
                print(m.id, m.thread_id, m.subject, m.preview, m.labels)
                await m.add_label("Boss")            # an Outlook category
                m = await m.mark_as_read()
        ```

    Reading, actions, `batch_mode()` (`$batch`) and `watch()` (delta queries) are in
    `_graph_mailbox.py`, `_graph_actions.py` and `_graph_watch.py`. Messages go as one
    `sendMail` request (JSON, or MIME when they carry headers JSON cannot), or, over Graph's
    4 MB request limit, as a draft filled through upload sessions (see
    `xcomm/email/_graph_payload.py` and `docs/providers/outlook.md`). Errors are mapped as
    in `xcomm/email/_graph_errors.py`.
    """

    name = "outlook"
    max_message_size = GRAPH_MAX_MESSAGE_SIZE

    def __init__(
        self,
        context: ProviderContext,
        *,
        limiter: Limiter | None,
        auth: HttpAuth,
        concurrency: anyio.CapacityLimiter | None = None,
        retry: RetryPolicy | None = None,
        mailbox: str | None = None,
        sender: str | Address | None = None,
        save_to_sent_items: bool = True,
        timeout: Timeout | float | None = None,
        spec: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(context, limiter=limiter, retry=retry)
        check_mailbox(mailbox)
        self.default_sender = sender_address(sender, provider="Outlook")
        if sender is None and mailbox is not None and "@" in mailbox:
            # The mailbox is its own default From (sender= when its UPN is not its address).
            with contextlib.suppress(ValidationError):
                self.default_sender = Address.parse(mailbox)
        self.auth = auth
        self._concurrency = concurrency
        self.mailbox = mailbox
        self.save_to_sent_items = bool(save_to_sent_items)
        self._timeout = None if timeout is None else Timeout.coerce(timeout)
        self._spec = dict(spec or {})
        self._base = (
            f"{GRAPH_API}/me" if mailbox is None else f"{GRAPH_API}/users/{segment(mailbox)}"
        )
        self._json = self._headers({"Content-Type": "application/json"})
        self._mime = self._headers({"Content-Type": "text/plain"})
        self._plain = self._headers()
        self._folder: str | None = None
        self._folder_ids: dict[str, str] = {}
        self._folder_lock = anyio.Lock()

    def __repr__(self) -> str:
        return f"GraphProvider(mailbox={self.mailbox or 'me'!r})"

    @property
    def username(self) -> str | None:
        """The mailbox's address when known: replies to all leave it out."""
        if self.mailbox is not None and "@" in self.mailbox:
            return self.mailbox
        return self.default_sender.email if self.default_sender is not None else None

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
        delta_link: str | None = None,
        state: str | os.PathLike[str] | CheckpointStore | None = None,
    ) -> AsyncGenerator[ReceivedMessage, None]:
        """New messages in `folder` (default `"inbox"`) matching `query` when given, each
        once, as they arrive: a Graph delta query polled every `poll_interval` seconds.
        See `_graph_watch.py` and `docs/providers/outlook.md`.

        Starts from `delta_link`, else the checkpoint saved in `state` (a file path, or an
        object with async `load()`/`save()`), else the folder as it is now; with `state`,
        where it got to is saved after each message, so a restart goes on from there. An
        expired deltaLink is recovered from by a new round that yields the mail received
        since the last message seen. `include_existing=True` yields the folder's matching
        messages first. Close it with `contextlib.aclosing()`. Graph has no push here and
        no UIDs: `idle_timeout` and `use_idle` are ignored and `since_uid` is refused.
        """
        from xcomm.email._graph_watch import start_watch

        if since_uid is not None:
            raise ValidationError("Outlook has no UIDs: resume a watch with delta_link= or state=")
        return start_watch(self, query, folder=folder or "inbox", poll_interval=poll_interval,
                           include_existing=include_existing, delta_link=delta_link,
                           state=state)  # fmt: skip

    def _classify(self, response: httpx.Response, *, idempotent: bool) -> ProviderError | None:
        return classify(response, idempotent=idempotent)

    async def _api(
        self,
        operation: str,
        method: str,
        url: str,
        *,
        body: bytes = b"",
        content_type: str | None = None,
        params: Mapping[str, Any] | None = None,
        prefer: str | None = None,
        idempotent: bool = False,
        timeout: float | None = None,
        cost: float = 1.0,
        slots: int = 1,
    ) -> tuple[dict[str, Any], int, float]:
        """One Graph call through the pipeline: (JSON answer ({} for an empty one), attempts,
        duration). `params` are OData query options, `prefer` a `Prefer` header; `cost` and
        `slots` are what a `$batch` call is charged (see `_graph_batch.py`).

        A 404 on the mailbox itself becomes a `ConfigurationError` naming the mailbox.
        """
        headers = {
            "application/json": self._json,
            "text/plain": self._mime,
            None: self._plain,
        }[content_type]
        if prefer is not None:
            headers = self._headers(headers, {"Prefer": prefer})
        if params:
            url = f"{url}{'&' if '?' in url else '?'}{query_string(params)}"
        request = self._build_request(method, httpx.URL(url), headers, body)
        try:
            response, attempts, duration = await self._request(
                operation, request, idempotent=idempotent, timeout=timeout, cost=cost,
                slots=slots,
            )  # fmt: skip
        except ProviderError as exc:
            wrong = unknown_mailbox(exc, self.mailbox) if operation in _MAILBOX_CALLS else None
            if wrong is not None:
                raise wrong from exc
            raise
        return json_object(response, provider=self.name, service="Graph"), attempts, duration

    async def _raw(self, operation: str, url: str, *, timeout: float | None = None) -> bytes:
        """A GET's body as bytes (an attachment's `$value`)."""
        request = self._build_request("GET", httpx.URL(url), self._plain, b"")
        response, _, _ = await self._request(operation, request, idempotent=True,
                                             timeout=timeout)  # fmt: skip
        return response.content

    def _bound(self, message: ReceivedMessage) -> ReceivedMessage:
        return message.bind(self)

    async def _run_batch(
        self,
        operation: str,
        requests: Sequence[SubRequest],
        *,
        timeout: float | None = None,
        strict: bool = True,
    ) -> list[Any]:
        """Send `requests` through `$batch` (`_graph_batch.py`): each one's JSON answer, or
        its error; with `strict`, the first error is raised once all were sent."""
        results = await run_batch(self, operation, requests, timeout=timeout)
        if strict:
            raise_failures(operation, requests, results)
        return results

    async def send(self, message: EmailMessage, /, *, timeout: float | None = None) -> SendResult:
        """Send `message` from the mailbox.

        `SendResult.message_id` is the Internet Message-ID (`<...@domain>`): the message's
        own, or one xcomm assigns in the sender's or mailbox's domain (None only for a /me
        mailbox without a sender, when Exchange picks it and sendMail does not say).
        Messages sent as drafts (over 4 MB) are always saved to Sent Items.

        Raises:
            ValidationError: no recipients, or a message that cannot be encoded.
            MessageError: over 150 MB or 500 recipients (nothing is sent), a header only
                the MIME form carries on a message that cannot use it, or refused by Graph.
            ConfigurationError: Graph knows no such mailbox.
            CommunicationError: any other failure, mapped as in `_graph_errors.py`.
        """
        if timeout is not None and not timeout > 0:
            raise ValidationError(f"timeout must be a positive number of seconds, got {timeout!r}")
        recipients = message.recipients
        if not recipients:
            raise ValidationError("the message has no recipients; add to, cc or bcc addresses")
        if len(message.to) + len(message.cc) + len(message.bcc) > GRAPH_MAX_RECIPIENTS:
            raise MessageError(
                f"the message has more than {GRAPH_MAX_RECIPIENTS} recipients, Exchange "
                "Online's limit; split it (or use a campaign: one message per recipient)",
                provider=self.name,
            )
        if message.sender is None and self.default_sender is not None:
            message = msgspec.structs.replace(message, sender=self.default_sender)
        size = message_size(message)
        if size > self.max_message_size:
            raise MessageError(
                f"the message is {size} bytes; Outlook accepts {self.max_message_size}",
                provider=self.name,
            )
        message_id = assign_message_id(message, mailbox=self.mailbox)
        plan = plan_send(message, message_id=message_id, save_to_sent_items=self.save_to_sent_items)
        started = time.perf_counter()
        if plan.kind == "sendMail":
            _, attempts, _ = await self._api(
                "sendMail",
                "POST",
                f"{self._base}/sendMail",
                body=plan.body,
                content_type=plan.content_type,
                timeout=timeout,
            )
        else:
            message_id, attempts = await self._send_draft(plan, message_id, timeout)
        return SendResult(
            message_id=message_id,
            provider=self.name,
            accepted=tuple(a.email for a in recipients),
            attempts=attempts,
            duration=time.perf_counter() - started,
            status=202,
        )

    # -- messages over the request limit: a draft, its attachments, then send ------------------

    async def _send_draft(
        self, plan: SendPlan, message_id: str | None, timeout: float | None
    ) -> tuple[str | None, int]:
        """Create the draft, attach what the plan says, send it; delete it if that fails."""
        draft, _, _ = await self._api(
            "messages.create",
            "POST",
            f"{self._base}/messages",
            body=plan.body,
            content_type="application/json",
            timeout=timeout,
        )
        draft_id = draft.get("id")
        if not isinstance(draft_id, str) or not draft_id:
            raise ProviderError(
                "Graph created the draft but its answer has no id", provider=self.name
            )
        url = f"{self._base}/messages/{segment(draft_id)}"
        try:
            for attachment in plan.attach:
                await self._api(
                    "attachments.create",
                    "POST",
                    f"{url}/attachments",
                    body=encode_json(file_attachment(attachment)),
                    content_type="application/json",
                    timeout=timeout,
                )
            for attachment in plan.upload:
                await self._upload(url, attachment, timeout)
        except BaseException:
            # Nothing was sent: the draft would only clutter the Drafts folder.
            await self._discard(url)
            raise
        _, attempts, _ = await self._api("messages.send", "POST", f"{url}/send", timeout=timeout)
        found = draft.get("internetMessageId")
        return message_id or (found if isinstance(found, str) else None), attempts

    async def _upload(self, draft_url: str, attachment: Attachment, timeout: float | None) -> None:
        """Attach one large file through an upload session: create it, then PUT the ranges."""
        session, _, _ = await self._api(
            "attachments.createUploadSession",
            "POST",
            f"{draft_url}/attachments/createUploadSession",
            body=encode_json({"AttachmentItem": attachment_item(attachment)}),
            content_type="application/json",
            timeout=timeout,
        )
        upload_url = session.get("uploadUrl")
        if not isinstance(upload_url, str) or not upload_url.startswith("https://"):
            raise ProviderError("Graph's upload session has no https uploadUrl", provider=self.name)
        data = attachment.content or b""
        total = len(data)
        target = httpx.URL(upload_url)
        for start, end in upload_ranges(total):
            headers = self._headers(
                {
                    "Content-Type": "application/octet-stream",
                    "Content-Range": f"bytes {start}-{end}/{total}",
                }
            )
            request = self._build_request("PUT", target, headers, data[start : end + 1])
            # The URL carries its own token: the provider's must not be sent to it.
            await self._request(
                "attachments.upload",
                request,
                idempotent=True,
                timeout=timeout,
                authenticate=False,
            )

    async def _discard(self, draft_url: str) -> None:
        """Delete a draft that will not be sent (best effort, even while being cancelled)."""
        with anyio.move_on_after(DISCARD_TIMEOUT, shield=True):
            try:
                await self._api("messages.delete", "DELETE", draft_url, idempotent=True)
            except CommunicationError as exc:
                logger.warning("could not delete the unsent draft: %s", exc)


def check_mailbox(mailbox: str | None) -> None:
    """Raise `ConfigurationError` unless `mailbox` is None or a user principal name / id."""
    if mailbox is None:
        return
    if (
        not isinstance(mailbox, str)
        or not mailbox.strip()
        or any(c in mailbox for c in "/?#\\")
        or any(c.isspace() for c in mailbox)
    ):
        raise ConfigurationError(
            f"mailbox must be a user principal name or id such as 'reports@contoso.com', "
            f"not {mailbox!r}"
        )
