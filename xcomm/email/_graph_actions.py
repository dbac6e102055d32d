"""Acting on Outlook messages through Graph: flags, categories, move, copy, delete, batch mode.

`GraphProvider` implements the mailbox's message hooks (what `ReceivedMessage`'s actions
call) with these requests:

- `mark_as_read()` / `mark_as_unread()`: `PATCH .../messages/{id}` `{"isRead": true}` /
  `false`;
- `mark_as_important()` (`\\Flagged`): `{"flag": {"flagStatus": "flagged"}}` (or
  `"notFlagged"`); the `$Important` flag: `{"importance": "high"}` (or `"normal"`);
- `add_label(name)`, `remove_label(name)`: `GET ...?$select=categories`, then
  `PATCH {"categories": [...]}`;
- `move_to(folder)`, `copy_to(folder)`: `POST .../messages/{id}/move` (`copy`)
  `{"destinationId": ...}`; `trash()`: a move to `deleteditems`;
- `delete()`: `POST .../messages/{id}/permanentDelete`; `delete(expunge=False)`:
  `DELETE .../messages/{id}`;
- `batch_mode()`: all of the above as `$batch` requests, 20 per call.

Categories are Outlook's labels: `add_label("Boss")` adds the category named "Boss" to the
message (Outlook shows it uncoloured unless the mailbox's master list has it). A PATCH
replaces the whole `categories` list, so the list is read first (read, modify, write).

A move answers the message in its new folder with a **new id** (Graph ids are per folder):
`move_to()` returns it, with its attachments read again when it has some. `DELETE` is
Exchange's soft delete: the message leaves every folder Outlook shows, Deleted Items
included, and stays recoverable (Recoverable Items) for the retention period;
`permanentDelete` puts it in the Purges folder, which no mail client shows, and Exchange
removes it after the retention period unless the mailbox is on hold.

In batch mode, changes wait until the end of the block: flag and category changes of one
message become one PATCH (the last change to a flag wins), moves, copies and deletes one
request each, and they go out 20 to a `$batch` call. `move_to()` and `copy_to()` then
return None (the new ids are known only once the batch is sent).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any

from xcomm._errors import ProviderError, ValidationError
from xcomm._http import encode_json
from xcomm.email._batch import Changes, FlagBatch, Group, batch_mode, current_batch
from xcomm.email._graph_batch import SubRequest
from xcomm.email._graph_mailbox import GraphMailbox
from xcomm.email._graph_parse import ATTACHMENT_FIELDS, flag_patch, parse_message
from xcomm.email._message import ReceivedMessage

if TYPE_CHECKING:
    from xcomm.email._graph import GraphProvider

__all__ = ["CATEGORY", "GraphActions", "plan_patches"]

#: Prefix of a category in a batch's collected changes (flags keep their own names).
CATEGORY = "\x00"
_PATCH: Group = ("", "patch")


def _names(items: Iterable[str], *, labels: bool) -> list[str]:
    out = []
    for name in items:
        if not isinstance(name, str) or not name.strip() or any(c in name for c in "\r\n\x00"):
            raise ValidationError(
                f"a label name must be a non-empty string without CR/LF/NUL: {name!r}"
            )
        if labels and name.startswith("\\"):
            raise ValidationError(
                f"{name!r} is a flag, not a label; use mark_as_read(), mark_as_important()"
            )
        out.append(name)
    return out


def plan_patches(
    changes: Changes, categories: Mapping[str, Sequence[str]]
) -> dict[str, dict[str, Any]]:
    """The PATCH body of each message (pure): its flag changes, and its new categories
    from the current ones in `categories` with the collected category changes applied."""
    bodies: dict[str, dict[str, Any]] = {}
    for key, flags in changes.items():
        message_id = str(key)
        plain = {f: on for f, on in flags.items() if not f.startswith(CATEGORY)}
        body = flag_patch(plain)
        named = {f[len(CATEGORY) :]: on for f, on in flags.items() if f.startswith(CATEGORY)}
        if named:
            body["categories"] = apply_categories(categories.get(message_id, ()), named)
        if body:
            bodies[message_id] = body
    return bodies


def apply_categories(current: Iterable[str], changes: Mapping[str, bool]) -> list[str]:
    """`current` with names added (at the end) and removed, matched without case."""
    result = list(dict.fromkeys(current))
    for name, on in changes.items():
        present = [c for c in result if c.casefold() == name.casefold()]
        if on and not present:
            result.append(name)
        elif not on:
            result = [c for c in result if c not in present]
    return result


class GraphActions(GraphMailbox):
    """The acting half of `GraphProvider` (a mixin over its `_api`; folders are looked up
    as the reading half does)."""

    async def _post(
        self,
        operation: str,
        url: str,
        body: Mapping[str, Any] | None,
        timeout: float | None,
        *,
        idempotent: bool = False,
    ) -> dict[str, Any]:
        answer, _, _ = await self._api(
            operation, "POST", url, body=b"" if body is None else encode_json(body),
            content_type=None if body is None else "application/json", idempotent=idempotent,
            timeout=timeout,
        )  # fmt: skip
        return answer

    # -- the message hooks -----------------------------------------------------------------

    async def change_flags(
        self,
        message: ReceivedMessage,
        /,
        *,
        add: Iterable[str] = (),
        remove: Iterable[str] = (),
        labels: bool = False,
        timeout: float | None = None,
    ) -> None:
        """PATCH the properties the flags stand for, or (`labels=True`) the categories."""
        plus, minus = _names(add, labels=labels), _names(remove, labels=labels)
        if labels:
            plus = [CATEGORY + n for n in plus]
            minus = [CATEGORY + n for n in minus]
        changes = dict.fromkeys(plus, True) | dict.fromkeys(minus, False)
        if not changes:
            return
        flag_patch({f: on for f, on in changes.items() if not f.startswith(CATEGORY)})
        batch = current_batch(self._self())
        if batch is not None:
            batch.add(_PATCH, [message.id], plus, minus)
            return
        current: dict[str, list[str]] = {}
        if labels:
            answer, _, _ = await self._api(
                "messages.get", "GET", self._message_url(message.id),
                params={"$select": "categories"}, idempotent=True, timeout=timeout,
            )  # fmt: skip
            found = answer.get("categories")
            current[message.id] = [c for c in found if isinstance(c, str)] if isinstance(
                found, list) else []  # fmt: skip
        body = plan_patches({message.id: changes}, current)[message.id]
        await self._api("messages.update", "PATCH", self._message_url(message.id),
                        body=encode_json(body), content_type="application/json",
                        idempotent=True, timeout=timeout)  # fmt: skip

    async def mark_answered(
        self, message: ReceivedMessage, /, *, timeout: float | None = None
    ) -> None:
        """Nothing: Exchange records a reply itself (Graph has no answered flag to set)."""

    async def transfer(
        self, message: ReceivedMessage, folder: str, /, *, move: bool, timeout: float | None = None
    ) -> ReceivedMessage | None:
        """`POST .../move` or `.../copy` to `folder`; the message there (a new id), or None
        inside `batch_mode()`."""
        destination = await self._folder_id(folder, timeout=timeout)
        operation = "move" if move else "copy"
        batch = current_batch(self._self())
        if batch is not None:
            batch.add(("", (operation, destination)), [message.id], [], [])
            return None
        url = f"{self._message_url(message.id)}/{operation}"
        answer = await self._post(f"messages.{operation}", url, {"destinationId": destination},
                                  timeout)  # fmt: skip
        if not isinstance(answer.get("id"), str):
            raise ProviderError(f"Graph's {operation} answer has no message id", provider="outlook")
        if message.attachments:
            listed, _, _ = await self._api(
                "attachments.list", "GET", f"{self._message_url(answer['id'])}/attachments",
                params={"$select": ATTACHMENT_FIELDS}, idempotent=True, timeout=timeout,
            )  # fmt: skip
            answer = {**answer, "attachments": listed.get("value") or []}
        return self._bound(parse_message(answer, folder=folder))

    async def discard(
        self, message: ReceivedMessage, /, *, expunge: bool = True, timeout: float | None = None
    ) -> None:
        """`permanentDelete` (Purges, no client shows it); `expunge=False`: `DELETE`, the soft
        delete (Recoverable Items). To keep it in Deleted Items, `trash()` instead."""
        batch = current_batch(self._self())
        if batch is not None:
            batch.add(("", ("delete", expunge)), [message.id], [], [])
            return
        url = self._message_url(message.id)
        if expunge:
            await self._post("messages.permanentDelete", f"{url}/permanentDelete", None, timeout)
        else:
            await self._api("messages.delete", "DELETE", url, idempotent=True, timeout=timeout)

    async def trash(
        self, message: ReceivedMessage, /, *, timeout: float | None = None
    ) -> ReceivedMessage | None:
        """Move `message` to Deleted Items (`deleteditems`); it there, or None in batch mode."""
        return await self.transfer(message, "deleteditems", move=True, timeout=timeout)

    # -- replies through Graph's own endpoints ---------------------------------------------

    async def create_reply(
        self,
        message: ReceivedMessage,
        comment: str = "",
        /,
        *,
        reply_all: bool = False,
        timeout: float | None = None,
    ) -> ReceivedMessage:
        """A reply draft Exchange builds (`createReply` / `createReplyAll`): recipients,
        `RE:` subject, threading and the quoted original, `comment` above it. It is saved in
        Drafts; edit it in Outlook, or `send_draft()` it."""
        action = "createReplyAll" if reply_all else "createReply"
        url = f"{self._message_url(message.id)}/{action}"
        answer = await self._post(f"messages.{action}", url, {"comment": comment}, timeout)
        return self._bound(parse_message(answer, folder="drafts"))

    async def create_forward(
        self,
        message: ReceivedMessage,
        to: Iterable[str],
        comment: str = "",
        /,
        *,
        timeout: float | None = None,
    ) -> ReceivedMessage:
        """A forward draft Exchange builds (`createForward`) to the addresses `to`, with the
        original and its attachments; `send_draft()` it."""
        from xcomm._models import Address

        recipients = [{"emailAddress": {"address": Address.parse(a).email}} for a in to]
        if not recipients:
            raise ValidationError("create_forward() needs at least one recipient")
        url = f"{self._message_url(message.id)}/createForward"
        body = {"toRecipients": recipients, "comment": comment}
        answer = await self._post("messages.createForward", url, body, timeout)
        return self._bound(parse_message(answer, folder="drafts"))

    async def send_draft(self, draft: ReceivedMessage, /, *, timeout: float | None = None) -> None:
        """Send a draft of the mailbox (`POST .../messages/{id}/send`); it moves to Sent
        Items."""
        await self._post("messages.send", f"{self._message_url(draft.id)}/send", None, timeout)

    # -- batch mode ----------------------------------------------------------------------------

    def batch_mode(self) -> AbstractAsyncContextManager[FlagBatch]:
        """`async with outlook.batch_mode():` send the block's flag, category, move, copy and
        delete requests at its end, 20 to a `$batch` call (see the module docstring)."""
        return batch_mode(self._self(), self._send_group)

    async def _send_group(self, group: Group, changes: Changes, timeout: float | None) -> int:
        """Send one collected group; returns how many `$batch` calls it took."""
        kind = group[1]
        ids = [str(k) for k in changes]
        requests: list[SubRequest]
        if kind == "patch":
            return await self._send_patches(changes, timeout)
        operation, argument = kind
        if operation in ("move", "copy"):
            requests = [
                SubRequest(
                    "POST", f"{self._message_url(i)}/{operation}", {"destinationId": argument}
                )
                for i in ids
            ]
        elif argument:
            requests = [SubRequest("POST", f"{self._message_url(i)}/permanentDelete") for i in ids]
        else:
            requests = [SubRequest("DELETE", self._message_url(i)) for i in ids]
        await self._run_batch(f"messages.{operation}", requests, timeout=timeout)
        return _calls(len(requests))

    async def _send_patches(self, changes: Changes, timeout: float | None) -> int:
        ids = [str(k) for k, flags in changes.items() if any(f.startswith(CATEGORY) for f in flags)]
        reads = [SubRequest("GET", f"{self._message_url(i)}?$select=categories") for i in ids]
        current: dict[str, list[str]] = {}
        for message_id, answer in zip(
            ids, await self._run_batch("messages.get", reads, timeout=timeout), strict=True
        ):
            found = answer.get("categories") if isinstance(answer, dict) else None
            current[message_id] = [c for c in found or () if isinstance(c, str)]
        bodies = plan_patches(changes, current)
        requests = [SubRequest("PATCH", self._message_url(i), b) for i, b in bodies.items()]
        await self._run_batch("messages.update", requests, timeout=timeout)
        return _calls(len(reads)) + _calls(len(requests))

    def _self(self) -> GraphProvider:
        from xcomm.email._graph import GraphProvider

        assert isinstance(self, GraphProvider)
        return self


def _calls(count: int) -> int:
    return -(-count // 20)
