"""Reading an Outlook mailbox through Microsoft Graph: search, get, folders, bodies, files.

- `search()`, `iter_search()`: `GET .../messages` (every folder) or
  `.../mailFolders/{folder}/messages` with the query's `$filter`/`$orderby`/`$top` or
  `$search`, a `$select` and an `$expand`; `@odata.nextLink` pages;
- `get(id)`: `GET .../messages/{id}`, with the internet headers;
- `text()`, `html()`: `GET .../messages/{id}?$select=body` with
  `Prefer: outlook.body-content-type="text"` (or `"html"`);
- attachments: `GET .../messages/{id}/attachments/{id}/$value` (raw bytes);
- `folders()`: `GET .../mailFolders` and `.../childFolders`, all pages, and one `$batch`
  of the well-known folders for their special-use flags;
- `create_folder("A/B")`: `POST .../mailFolders/{A}/childFolders`.

A folder is a well-known name (`inbox`, `archive`, `sentitems`, `deleteditems`, `drafts`,
`junkemail`, ...; any case) or a display-name path (`"Clients/Acme"`), resolved once through
`mailFolders` and cached. Without a folder, a search covers every folder (`/messages`).

What Graph cannot evaluate (`query.explain("graph")`) is checked here on each message, with
its text body when the check reads bodies; the listing then selects the body as text too.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import anyio

from xcomm._errors import ProviderError, ValidationError
from xcomm.email import _query_ast as ast
from xcomm.email._graph_batch import API_ROOT, SubRequest, segment
from xcomm.email._graph_parse import (
    EXPAND,
    HEADER_FIELD,
    MESSAGE_FIELDS,
    GraphView,
    parse_message,
)
from xcomm.email._imap_plan import Keep, own_check
from xcomm.email._mailbox import FolderStatus, SearchQuery
from xcomm.email._message import Folder, ReceivedMessage
from xcomm.email._query import EmailQuery, SortOrder

if TYPE_CHECKING:
    pass

__all__ = ["PAGE_SIZE", "WELL_KNOWN", "GraphMailbox", "graph_check"]

#: Messages per page when the query does not set `$top`.
PAGE_SIZE = 100
_MAX_TOP = 1000
#: Folder names Graph resolves itself, with their IMAP special-use flag (RFC 6154).
WELL_KNOWN: dict[str, str | None] = {
    "inbox": "\\Inbox",
    "archive": "\\Archive",
    "sentitems": "\\Sent",
    "deleteditems": "\\Trash",
    "drafts": "\\Drafts",
    "junkemail": "\\Junk",
    "outbox": None,
    "clutter": None,
    "conversationhistory": None,
    "scheduled": None,
    "searchfolders": None,
    "msgfolderroot": None,
    "recoverableitemsdeletions": None,
}
_EPOCH = datetime.min.replace(tzinfo=UTC)
_TEXT = 'outlook.body-content-type="text"'
_HTML = 'outlook.body-content-type="html"'


@dataclass(frozen=True, slots=True)
class _Plan:
    """How a search runs: the URL, its parameters, the client check and the folder name."""

    url: str
    params: dict[str, Any]
    keep: Keep | None
    folder: str
    bodies: bool  # the listing selects the body (as text)
    sort_on_server: bool


def graph_check(residual: EmailQuery | None, timeout: float | None) -> Keep | None:
    """What the client checks of a query on each message (None: nothing); a check that
    reads bodies gets the text body (Exchange's rendering of an HTML one)."""
    if residual is None:
        return None
    reads_bodies = residual.reads_bodies()

    async def keep(message: ReceivedMessage) -> bool:
        text = await message.text(timeout=timeout) if reads_bodies else ""
        return residual.matches(GraphView(message, text=text))

    return keep


def _folder_name(name: object) -> str:
    if not isinstance(name, str) or not name.strip("/ ") or any(c in name for c in "\r\n\x00"):
        raise ValidationError(
            f"a folder is a well-known name ('inbox') or a display-name path ('Clients/Acme'), "
            f"not {name!r}"
        )
    return name.strip("/")


class GraphMailbox:
    """The reading half of `GraphProvider` (a mixin over its `_api` and `_segment`)."""

    if TYPE_CHECKING:
        _base: str
        _folder: str | None
        _folder_ids: dict[str, str]
        _folder_lock: anyio.Lock

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
        ) -> tuple[dict[str, Any], int, float]: ...

        async def _raw(
            self, operation: str, url: str, *, timeout: float | None = None
        ) -> bytes: ...

        def _bound(self, message: ReceivedMessage) -> ReceivedMessage: ...

        async def _run_batch(
            self,
            operation: str,
            requests: Sequence[SubRequest],
            *,
            timeout: float | None = None,
            strict: bool = True,
        ) -> list[Any]: ...

    def _message_url(self, message_id: str) -> str:
        if (
            not isinstance(message_id, str)
            or not message_id
            or any(c in message_id for c in "\r\n\x00")
        ):
            raise ValidationError(f"{message_id!r} is not a Graph message id")
        return f"{self._base}/messages/{segment(message_id)}"

    def _next_url(self, answer: Mapping[str, Any], key: str) -> str | None:
        """`@odata.nextLink` / `@odata.deltaLink` of an answer; only ever a Graph URL (the
        bearer token goes nowhere else)."""
        link = answer.get(key)
        if link is None:
            return None
        if not isinstance(link, str) or not link.startswith(f"{API_ROOT}/"):
            raise ProviderError(f"Graph answered a {key} that is not a Graph URL",
                                provider="outlook")  # fmt: skip
        return link

    # -- folders -----------------------------------------------------------------------------

    async def _folder_id(self, name: str, *, timeout: float | None = None) -> str:
        """The id Graph takes for folder `name` (a well-known name as it is)."""
        name = _folder_name(name)
        if name.lower() in WELL_KNOWN:
            return name.lower()
        key = name.casefold()
        async with self._folder_lock:
            if key not in self._folder_ids:
                parent: str | None = None
                path: list[str] = []
                for part in name.split("/"):
                    path.append(part)
                    sub = "/".join(path).casefold()
                    if sub not in self._folder_ids:
                        for folder in await self._children(parent, timeout):
                            label = "/".join([*path[:-1], str(folder.get("displayName"))])
                            self._folder_ids[label.casefold()] = str(folder["id"])
                    if sub not in self._folder_ids:
                        raise ProviderError(
                            f"Outlook has no folder {name!r}; create it with "
                            f"create_folder({name!r}) or use a well-known name such as "
                            "'inbox' or 'archive'",
                            provider="outlook",
                            error_code="folderNotFound",
                        )
                    parent = self._folder_ids[sub]
            return self._folder_ids[key]

    async def _children(self, parent: str | None, timeout: float | None) -> list[dict[str, Any]]:
        """Every folder directly under `parent` (the top of the mailbox when None)."""
        url = (
            f"{self._base}/mailFolders"
            if parent is None
            else f"{self._base}/mailFolders/{segment(parent)}/childFolders"
        )
        params: dict[str, Any] | None = {
            "$select": "id,displayName,childFolderCount,totalItemCount",
            "$top": 100,
        }
        found: list[dict[str, Any]] = []
        next_url: str | None = url
        while next_url is not None:
            answer, _, _ = await self._api("mailFolders.list", "GET", next_url, params=params,
                                           idempotent=True, timeout=timeout)  # fmt: skip
            found.extend(f for f in answer.get("value") or () if isinstance(f, dict) and "id" in f)
            next_url, params = self._next_url(answer, "@odata.nextLink"), None
        return found

    async def folders(self, *, timeout: float | None = None) -> list[Folder]:
        """Every folder of the mailbox, nested ones as `"Parent/Child"` paths; the well-known
        ones carry their special-use flag (`\\Inbox`, `\\Sent`, `\\Trash`, `\\Junk`, ...)."""
        special = await self._special_folders(timeout)
        out: list[Folder] = []
        pending: list[tuple[str | None, str]] = [(None, "")]
        ids: dict[str, str] = {}
        while pending:
            parent, prefix = pending.pop(0)
            for folder in await self._children(parent, timeout):
                name = f"{prefix}{folder.get('displayName') or folder['id']}"
                ids[name.casefold()] = str(folder["id"])
                flags = [special[folder["id"]]] if folder["id"] in special else []
                if folder.get("childFolderCount"):
                    flags.append("\\HasChildren")
                    pending.append((str(folder["id"]), f"{name}/"))
                out.append(Folder(name=name, delimiter="/", flags=tuple(flags)))
        async with self._folder_lock:
            self._folder_ids.update(ids)
        return out

    async def _special_folders(self, timeout: float | None) -> dict[str, str]:
        """Folder id → special-use flag of the well-known folders, in one `$batch`."""
        names = [n for n, flag in WELL_KNOWN.items() if flag is not None]
        requests = [SubRequest("GET", f"{self._base}/mailFolders/{n}?$select=id") for n in names]
        found: dict[str, str] = {}
        results = await self._run_batch("mailFolders.get", requests, timeout=timeout,
                                        strict=False)  # fmt: skip
        for name, result in zip(names, results, strict=True):
            if isinstance(result, dict) and isinstance(result.get("id"), str):
                flag = WELL_KNOWN[name]
                assert flag is not None
                found[result["id"]] = flag
        return found

    async def create_folder(self, name: str, /, *, timeout: float | None = None) -> None:
        """Create folder `name` (`"Clients/Acme"` creates Acme inside Clients, which must
        exist). Raises `ProviderError` when it exists (409 `ErrorFolderExists`)."""
        name = _folder_name(name)
        parent, _, leaf = name.rpartition("/")
        url = f"{self._base}/mailFolders"
        if parent:
            url = f"{url}/{segment(await self._folder_id(parent, timeout=timeout))}/childFolders"
        from xcomm._http import encode_json

        answer, _, _ = await self._api(
            "mailFolders.create", "POST", url, body=encode_json({"displayName": leaf}),
            content_type="application/json", timeout=timeout,
        )  # fmt: skip
        if isinstance(answer.get("id"), str):
            async with self._folder_lock:
                self._folder_ids[name.casefold()] = answer["id"]

    async def select(self, folder: str, /, *, timeout: float | None = None) -> FolderStatus:
        """Make `folder` the default of later searches; returns how many messages it holds."""
        folder_id = await self._folder_id(folder, timeout=timeout)
        answer, _, _ = await self._api(
            "mailFolders.get", "GET", f"{self._base}/mailFolders/{segment(folder_id)}",
            params={"$select": "id,totalItemCount"}, idempotent=True, timeout=timeout,
        )  # fmt: skip
        self._folder = _folder_name(folder)
        count = answer.get("totalItemCount")
        return FolderStatus(name=self._folder, messages=count if isinstance(count, int) else 0)

    # -- search ------------------------------------------------------------------------------

    async def _plan(
        self,
        query: str | SearchQuery | None,
        folder: str | None,
        *,
        bodies: bool,
        headers: bool,
        timeout: float | None,
    ) -> _Plan:
        params: dict[str, Any] = {}
        keep: Keep | None = None
        sort_on_server = True
        if isinstance(query, EmailQuery):
            plan = query.explain("graph")
            params = dict(plan.request) if isinstance(plan.request, dict) else {}
            if plan.folder is not None:
                if folder is not None and folder.casefold() != plan.folder.casefold():
                    raise ValidationError(
                        f"the query searches folder {plan.folder!r} but folder={folder!r} "
                        "was given; use one of them"
                    )
                folder = plan.folder
            keep = graph_check(plan.client, timeout)
            sort_on_server = plan.sort_on_server
            if plan.client is not None:
                bodies = bodies or plan.client.reads_bodies()
                headers = headers or ast.mentions(plan.client.condition, ast.Header)
        elif isinstance(query, str):
            text = query.strip()
            if text and text.upper() != "ALL":
                params["$search"] = f'"{text.replace(chr(34), " ")}"'
        elif query is not None:
            keep = own_check(query)
            if keep is None:
                raise ValidationError(
                    "Outlook searches with an EmailQuery or a KQL string ('from:bob "
                    f"subject:report'); {type(query).__name__} has no matches() to check "
                    "messages with"
                )
        folder = folder if folder is not None else self._folder
        url = f"{self._base}/messages"
        if folder is not None:
            url = f"{self._base}/mailFolders/{segment(await self._folder_id(folder, timeout=timeout))}/messages"  # noqa: E501
        fields = MESSAGE_FIELDS + (f",{HEADER_FIELD}" if headers else "")
        params["$select"] = fields + (",body" if bodies else "")
        params["$expand"] = EXPAND
        params.setdefault("$top", PAGE_SIZE)
        return _Plan(url, params, keep, folder or "", bodies, sort_on_server)

    async def _pages(
        self, plan: _Plan, timeout: float | None
    ) -> AsyncIterator[list[ReceivedMessage]]:
        """The plan's messages a page at a time, in Graph's order, following nextLink."""
        url: str | None = plan.url
        params: dict[str, Any] | None = plan.params
        while url is not None:
            answer, _, _ = await self._api(
                "messages.list", "GET", url, params=params, idempotent=True,
                prefer=_TEXT if plan.bodies else None, timeout=timeout,
            )  # fmt: skip
            page = []
            for item in answer.get("value") or ():
                if isinstance(item, dict) and isinstance(item.get("id"), str):
                    page.append(self._listed(item, plan.folder, plan.bodies))
            yield page
            url, params = self._next_url(answer, "@odata.nextLink"), None

    def _listed(self, item: dict[str, Any], folder: str, bodies: bool) -> ReceivedMessage:
        message = self._bound(parse_message(item, folder=folder))
        body = item.get("body")
        if bodies and isinstance(body, dict) and isinstance(body.get("content"), str):
            message.cache_body("text", body["content"])
        return message

    async def search(
        self,
        query: str | SearchQuery = "",
        /,
        *,
        folder: str | None = None,
        limit: int | None = None,
        bodies: bool = False,
        timeout: float | None = None,
        headers: bool = False,
    ) -> list[ReceivedMessage]:
        """Messages matching `query` (an `EmailQuery`, or a KQL string sent as `$search`:
        `"from:bob subject:report"`), oldest first; with `limit`, the newest `limit`.

        `folder` is a well-known name or a display-name path (default: every folder, or
        the one `select()` chose). What Graph cannot evaluate is checked here
        (`query.explain("graph")`). `bodies=True` reads the text bodies in the listing;
        `headers=True` the internet headers (In-Reply-To, References, any header).
        """
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)
                                  or limit < 0):  # fmt: skip
            raise ValidationError(f"limit must be a non-negative int, got {limit!r}")
        plan = await self._plan(query, folder, bodies=bodies, headers=headers, timeout=timeout)
        need = limit
        if isinstance(query, EmailQuery) and query.max_results is not None and plan.sort_on_server:
            need = min(x for x in (limit, query.max_results) if x is not None)
        if need is not None and plan.keep is None and need > 0:
            plan.params["$top"] = min(int(plan.params["$top"]), need, _MAX_TOP)
        found: list[ReceivedMessage] = []
        if need != 0:
            async for page in self._pages(plan, timeout):
                found.extend(await self._kept(page, plan.keep))
                if need is not None and len(found) >= need:
                    del found[need:]
                    break
        found.reverse()
        if isinstance(query, EmailQuery):
            views = query.sort_and_limit([GraphView(m) for m in found])
            return [view.message for view in views]
        return found

    @staticmethod
    async def _kept(page: list[ReceivedMessage], keep: Keep | None) -> list[ReceivedMessage]:
        if keep is None:
            return page
        return [m for m in page if await keep(m)]

    def iter_search(
        self,
        query: str | SearchQuery = "",
        /,
        *,
        folder: str | None = None,
        batch_size: int | None = None,
        bodies: bool = False,
        headers: bool = False,
    ) -> AsyncIterator[ReceivedMessage]:
        """Like `search()` without a limit, oldest first, a page (`batch_size`, default 100,
        at most 1,000) at a time. An `EmailQuery` with a `$filter` is listed oldest first by
        Graph (`$orderby=receivedDateTime asc`) and streamed; a `$search` (at most 250
        messages) is read whole, then streamed."""
        if batch_size is not None and (
            isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1
        ):
            raise ValidationError("batch_size must be a positive int")
        if isinstance(query, EmailQuery) and query.order:
            raise ValidationError(
                "iter_search() streams oldest first; a sorted query needs search()"
            )
        return self._iter(query, folder, min(batch_size or PAGE_SIZE, _MAX_TOP), bodies, headers)

    async def _iter(
        self,
        query: str | SearchQuery,
        folder: str | None,
        batch_size: int,
        bodies: bool,
        headers: bool,
    ) -> AsyncIterator[ReceivedMessage]:
        ordered = query
        if isinstance(query, EmailQuery) and query.max_results is None:
            ordered = query.sort_by("date", SortOrder.ASC)
        plan = await self._plan(ordered, folder, bodies=bodies, headers=headers, timeout=None)
        if "$search" not in plan.params:
            plan.params["$top"] = batch_size
        if "$orderby" in plan.params:
            async for page in self._pages(plan, None):
                for message in await self._kept(page, plan.keep):
                    yield message
            return
        everything: list[ReceivedMessage] = []
        async for page in self._pages(plan, None):
            everything.extend(await self._kept(page, plan.keep))
        everything.sort(key=lambda m: m.received_at or _EPOCH)
        for message in everything:
            yield message

    async def get(
        self, key: int | str, /, *, folder: str | None = None, timeout: float | None = None
    ) -> ReceivedMessage | None:
        """The message with Graph id `key` (`message.id`), with its internet headers, or
        None when Graph has none (404)."""
        if isinstance(key, bool) or not isinstance(key, str) or not key.strip():
            raise ValidationError(f"a Graph message id is a non-empty string, got {key!r}")
        params = {"$select": f"{MESSAGE_FIELDS},{HEADER_FIELD}", "$expand": EXPAND}
        try:
            answer, _, _ = await self._api("messages.get", "GET", self._message_url(key),
                                           params=params, idempotent=True,
                                           timeout=timeout)  # fmt: skip
        except ProviderError as exc:
            if exc.status == 404:
                return None
            raise
        return self._bound(parse_message(answer, folder=folder or ""))

    # -- bodies and attachments ----------------------------------------------------------------

    async def fetch_part(
        self,
        message: ReceivedMessage,
        section: str,
        encoding: str,
        /,
        *,
        timeout: float | None = None,
    ) -> bytes:
        """The text or HTML body (`section` "body:text" / "body:html", UTF-8 bytes), or an
        attachment's bytes (`section` is its Graph attachment id)."""
        url = self._message_url(message.id)
        if section in ("body:text", "body:html"):
            answer, _, _ = await self._api(
                "messages.body", "GET", url, params={"$select": "body"}, idempotent=True,
                prefer=_TEXT if section == "body:text" else _HTML, timeout=timeout,
            )  # fmt: skip
            body = answer.get("body")
            content = body.get("content") if isinstance(body, dict) else None
            return content.encode("utf-8") if isinstance(content, str) else b""
        return await self._raw(
            "attachments.value", f"{url}/attachments/{segment(section)}/$value", timeout=timeout
        )
