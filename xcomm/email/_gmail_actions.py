"""Acting on Gmail messages: labels by name, flags, move and copy, trash, delete, batch mode.

`GmailProvider` implements the mailbox's message hooks (what `ReceivedMessage`'s actions
call) with these Gmail methods:

| action                                | Gmail call                                           |
|---------------------------------------|------------------------------------------------------|
| `mark_as_read()` / `mark_as_unread()` | `messages.modify`: remove / add `UNREAD`             |
| `mark_as_important()` (`\\Flagged`)   | add / remove `STARRED`                               |
| the `$Important` flag                 | add / remove `IMPORTANT`                             |
| `add_label(name)`, `remove_label()`   | the label's id (`labels.list`, cached); see below    |
| `copy_to(label)`                      | add the label                                        |
| `move_to(label)`                      | add it, remove the one it was found in (or `INBOX`)  |
| `move_to("TRASH")`, `trash()`         | `messages.trash`                                     |
| `delete()`                            | `messages.delete`, for good; `expunge=False` trashes |
| `batch_mode()`                        | `messages.batchModify` per identical change          |

`add_label()` creates a missing label (`labels.create`) when the provider has
`create_labels=True` (the default). `move_to()` is Gmail's "Move to": the label the message
was found in (`INBOX` when it was not searched in one) comes off. `delete()` needs the
full-access scope https://mail.google.com/. In batch mode, a lone message's change is a
`messages.modify` (5 quota units), several messages' a `messages.batchModify` (50 units,
1,000 ids a call).

Label names are matched without case, as Gmail does; system labels go by their ids
(`INBOX`, `SPAM`, `CATEGORY_UPDATES`). Removing a label the mailbox does not have, or moving
to one, raises `ProviderError` before anything changes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any

from xcomm._errors import ProviderError, ValidationError
from xcomm._models import Address
from xcomm.email._batch import Changes, FlagBatch, Group, batch_mode, current_batch, split_changes
from xcomm.email._gmail_parse import flags_of
from xcomm.email._message import Folder, ReceivedMessage
from xcomm.email._query_gmail import SYSTEM_LABELS, system_label

if TYPE_CHECKING:
    import anyio

    from xcomm.email._gmail import GmailProvider

__all__ = ["BATCH_MODIFY_LIMIT", "GmailActions", "plan_batch"]

#: Most ids one `messages.batchModify` takes.
BATCH_MODIFY_LIMIT = 1000
_FLAG_LABELS = {"\\flagged": "STARRED", "$important": "IMPORTANT"}
#: Labels as IMAP special-use folder flags (RFC 6154), for `folders()`.
_SPECIAL_USE = {
    "SENT": "\\Sent",
    "DRAFT": "\\Drafts",
    "TRASH": "\\Trash",
    "SPAM": "\\Junk",
    "STARRED": "\\Flagged",
    "IMPORTANT": "\\Important",
}


def _lookup(names: Mapping[str, str], name: str) -> str | None:
    """The id of the label called `name`: exactly, else without case (as Gmail compares)."""
    for label, value in names.items():
        if value == name:
            return label
    wanted = name.casefold()
    return next((label for label, value in names.items() if value.casefold() == wanted), None)


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not name.strip() or any(c in name for c in "\r\n\x00"):
        raise ValidationError(
            f"a label name must be a non-empty string without CR/LF/NUL: {name!r}"
        )
    return name


def plan_batch(messages: Changes) -> dict[tuple[tuple[str, ...], tuple[str, ...]], list[str]]:
    """Message ids by identical change `(labels added, labels removed)` (pure)."""
    plans: dict[tuple[tuple[str, ...], tuple[str, ...]], list[str]] = {}
    for message_id, changes in messages.items():
        added, removed = split_changes(changes)
        if added or removed:
            plans.setdefault((added, removed), []).append(str(message_id))
    return plans


class GmailActions:
    """The acting half of `GmailProvider` (a mixin: it needs the provider's `_api`)."""

    if TYPE_CHECKING:
        create_labels: bool
        _label_names: dict[str, str] | None
        _label_lock: anyio.Lock

        async def _api(
            self,
            method: str,
            http_method: str,
            path: str,
            *,
            params: Mapping[str, Any] | None = None,
            json: Mapping[str, Any] | None = None,
            timeout: float | None = None,
        ) -> dict[str, Any]: ...

    # -- send-as aliases --------------------------------------------------------------------

    async def send_as(self, *, timeout: float | None = None) -> list[Address]:
        """The addresses this account may send from (`users.settings.sendAs.list`): its own
        and its verified aliases, the default first. Pass one as `sender=` or `.from_()`;
        Gmail rewrites a From it does not know to the account's address."""
        answer = await self._api("settings.sendAs.list", "GET", "settings/sendAs", timeout=timeout)
        found: list[tuple[bool, Address]] = []
        for alias in answer.get("sendAs") or ():
            if not isinstance(alias, dict) or not alias.get("sendAsEmail"):
                continue
            usable = alias.get("isPrimary") or alias.get("verificationStatus") == "accepted"
            if not usable:
                continue
            name = str(alias.get("displayName") or "") or None
            try:
                address = Address.parse(str(alias["sendAsEmail"]))
            except ValidationError:
                continue  # an address xcomm could not send from anyway
            found.append((not alias.get("isDefault"), Address(email=address.email, name=name)))
        return [address for _, address in sorted(found, key=lambda pair: pair[0])]

    # -- labels ------------------------------------------------------------------------------

    async def labels(
        self, *, refresh: bool = False, timeout: float | None = None
    ) -> dict[str, str]:
        """Every label of the mailbox, id to name (`labels.list`, read once and cached;
        `refresh=True` reads it again). System labels are named by their ids."""
        async with self._label_lock:
            if self._label_names is None or refresh:
                answer = await self._api("labels.list", "GET", "labels", timeout=timeout)
                self._label_names = {
                    str(label["id"]): str(label.get("name") or label["id"])
                    for label in answer.get("labels") or ()
                    if isinstance(label, dict) and "id" in label
                }
            return dict(self._label_names)

    async def _names_for(self, ids: Iterable[str]) -> dict[str, str]:
        """Label names covering `ids` (read again once when a user label is new to the cache;
        an id still unknown then is shown as it is)."""
        names = await self.labels()
        if any(i not in names and i not in SYSTEM_LABELS for i in ids):
            names = await self.labels(refresh=True)
        return names

    async def _label_id(self, name: str, *, create: bool, timeout: float | None) -> str:
        """The id of label `name`, created when missing and `create`."""
        name = _check_name(name)
        system = system_label(name)
        if system is not None:
            return system
        found = _lookup(await self.labels(timeout=timeout), name)
        if found is None:
            found = _lookup(await self.labels(refresh=True, timeout=timeout), name)
        if found is not None:
            return found
        if not create:
            raise ProviderError(
                f"Gmail has no label named {name!r}; create it with create_folder({name!r}) "
                "(add_label() creates missing labels when the provider has create_labels=True)",
                provider="gmail",
                error_code="labelNotFound",
            )
        return await self._create_label(name, timeout)

    async def _create_label(self, name: str, timeout: float | None) -> str:
        body = {"name": name, "labelListVisibility": "labelShow", "messageListVisibility": "show"}
        try:
            answer = await self._api("labels.create", "POST", "labels", json=body, timeout=timeout)
        except ProviderError as exc:
            if exc.status != 409:
                raise
            found = _lookup(await self.labels(refresh=True, timeout=timeout), name)
            if found is None:  # a system label's name, or a nested name that clashes
                raise
            return found
        label = str(answer.get("id") or "")
        if not label:
            raise ProviderError("Gmail created a label but gave no id", provider="gmail")
        async with self._label_lock:
            if self._label_names is not None:
                self._label_names[label] = str(answer.get("name") or name)
        return label

    async def folders(self, *, timeout: float | None = None) -> list[Folder]:
        """Every label as a folder (`/` separates nested labels); system labels have their
        IMAP special-use flag (`\\Sent`, `\\Trash`, `\\Junk`, ...)."""
        names = await self.labels(refresh=True, timeout=timeout)
        return [
            Folder(name=name, delimiter="/", flags=_special_use(label))
            for label, name in names.items()
        ]

    async def create_folder(self, name: str, /, *, timeout: float | None = None) -> None:
        """Create the label `name` (`labels.create`; "Clients/Acme" nests under "Clients").

        Raises:
            ProviderError: a label of that name exists (409), or it clashes with a system
                label.
        """
        _check_name(name)
        if system_label(name) is not None:
            raise ProviderError(f"{name!r} is a Gmail system label", provider="gmail")
        body = {"name": name, "labelListVisibility": "labelShow", "messageListVisibility": "show"}
        answer = await self._api("labels.create", "POST", "labels", json=body, timeout=timeout)
        async with self._label_lock:
            if self._label_names is not None and answer.get("id"):
                self._label_names[str(answer["id"])] = str(answer.get("name") or name)

    # -- changing labels ---------------------------------------------------------------------

    async def _label_changes(
        self, add: Iterable[str], remove: Iterable[str], *, labels: bool, timeout: float | None
    ) -> tuple[list[str], list[str]]:
        """Label ids to add and to remove for IMAP-style flags and label names."""
        plus: list[str] = []
        minus: list[str] = []
        wanted = [(n, True) for n in _listed(add)] + [(n, False) for n in _listed(remove)]
        for name, adding in wanted:
            name = _check_name(name)
            low = name.lower()
            if name.startswith("\\") and labels:
                raise ValidationError(
                    f"{name!r} is a flag, not a label; use mark_as_read(), mark_as_important()"
                )
            if low == "\\seen":
                (minus if adding else plus).append("UNREAD")
                continue
            label = _FLAG_LABELS.get(low)
            if label is None and name.startswith("\\"):
                raise ValidationError(
                    f"Gmail has no {name} flag: it keeps \\Seen, \\Flagged and $Important "
                    "(its UNREAD, STARRED and IMPORTANT labels); delete() and trash() remove "
                    "messages"
                )
            if label is None:
                create = adding and self.create_labels
                label = await self._label_id(name, create=create, timeout=timeout)
            (plus if adding else minus).append(label)
        both = set(plus) & set(minus)
        if both:
            raise ValidationError(f"{sorted(both)} cannot be both added and removed")
        return list(dict.fromkeys(plus)), list(dict.fromkeys(minus))

    async def modify(
        self,
        messages: Iterable[ReceivedMessage | str] | ReceivedMessage | str,
        /,
        *,
        add: Iterable[str] = (),
        remove: Iterable[str] = (),
        timeout: float | None = None,
    ) -> None:
        """Add and remove flags (`\\Seen`, `\\Flagged`, `$Important`) and labels (by name)
        on messages (or message ids) at once: `messages.modify` for one,
        `messages.batchModify` (1,000 ids a call) for more; inside `batch_mode()`, at the
        end of the block."""
        ids = [
            _message_id(m.id if isinstance(m, ReceivedMessage) else m) for m in _listed(messages)
        ]
        plus, minus = await self._label_changes(add, remove, labels=False, timeout=timeout)
        if not ids or not (plus or minus):
            return
        batch = current_batch(self._self())
        if batch is not None:
            batch.add(_GROUP, ids, plus, minus)
            return
        await self._apply(ids, tuple(plus), tuple(minus), timeout)

    async def _apply(
        self, ids: list[str], add: tuple[str, ...], remove: tuple[str, ...], timeout: float | None
    ) -> int:
        """One change on `ids`: modify for one id, batchModify per 1,000; the calls made."""
        if len(ids) == 1:
            await self._modify_one(ids[0], add, remove, timeout)
            return 1
        for start in range(0, len(ids), BATCH_MODIFY_LIMIT):
            body: dict[str, Any] = {"ids": ids[start : start + BATCH_MODIFY_LIMIT]}
            body.update(_label_body(add, remove))
            await self._api("messages.batchModify", "POST", "messages/batchModify", json=body,
                            timeout=timeout)  # fmt: skip
        return -(-len(ids) // BATCH_MODIFY_LIMIT)

    async def _modify_one(
        self, message_id: str, add: Iterable[str], remove: Iterable[str], timeout: float | None
    ) -> dict[str, Any]:
        path = f"messages/{_message_id(message_id)}/modify"
        body = _label_body(add, remove)
        return await self._api("messages.modify", "POST", path, json=body, timeout=timeout)

    async def _updated(
        self, message: ReceivedMessage, answer: Mapping[str, Any], folder: str
    ) -> ReceivedMessage:
        """`message` in `folder` with the labels Gmail answered."""
        ids = [str(x) for x in answer.get("labelIds") or ()]
        return message.replace(folder=folder, flags=flags_of(ids, await self._names_for(ids)))

    # -- the message hooks ---------------------------------------------------------------------

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
        """`messages.modify` with the labels the flags and names stand for (see the table)."""
        plus, minus = await self._label_changes(add, remove, labels=labels, timeout=timeout)
        if not (plus or minus):
            return
        batch = current_batch(self._self())
        if batch is not None:
            batch.add(_GROUP, [message.id], plus, minus)
            return
        await self._modify_one(message.id, plus, minus, timeout)

    async def mark_answered(
        self, message: ReceivedMessage, /, *, timeout: float | None = None
    ) -> None:
        """Nothing: Gmail keeps no answered mark (the reply shows in the message's thread)."""

    async def transfer(
        self, message: ReceivedMessage, folder: str, /, *, move: bool, timeout: float | None = None
    ) -> ReceivedMessage | None:
        """Copy: add label `folder`. Move: also remove the label the message was found in
        (`INBOX` when it was not searched in one). `TRASH` moves to the trash."""
        target = await self._label_id(folder, create=False, timeout=timeout)
        await self._flush(timeout)
        if move and target == "TRASH":
            return await self.trash(message, timeout=timeout)
        remove: list[str] = []
        if move:
            source = message.folder or "INBOX"
            found = system_label(source) or _lookup(await self.labels(), source)
            if found is not None and found != target:
                remove.append(found)
        answer = await self._modify_one(message.id, [target], remove, timeout)
        return await self._updated(message, answer, folder)

    async def discard(
        self, message: ReceivedMessage, /, *, expunge: bool = True, timeout: float | None = None
    ) -> None:
        """Delete `message` for good (`messages.delete`, which needs the full-access scope
        https://mail.google.com/); `expunge=False` moves it to the trash instead."""
        await self._flush(timeout)
        if not expunge:
            await self.trash(message, timeout=timeout)
            return
        path = f"messages/{_message_id(message.id)}"
        await self._api("messages.delete", "DELETE", path, timeout=timeout)

    async def trash(
        self, message: ReceivedMessage, /, *, timeout: float | None = None
    ) -> ReceivedMessage:
        """Move `message` to the trash (`messages.trash`; Gmail empties it after 30 days);
        returns it with its new labels."""
        await self._flush(timeout)
        path = f"messages/{_message_id(message.id)}/trash"
        answer = await self._api("messages.trash", "POST", path, timeout=timeout)
        return await self._updated(message, answer, "TRASH")

    async def untrash(
        self, message: ReceivedMessage, /, *, timeout: float | None = None
    ) -> ReceivedMessage:
        """Take `message` out of the trash (`messages.untrash`); returns it with its labels."""
        path = f"messages/{_message_id(message.id)}/untrash"
        answer = await self._api("messages.untrash", "POST", path, timeout=timeout)
        return await self._updated(message, answer, "")

    # -- batch mode ----------------------------------------------------------------------------

    def batch_mode(self) -> AbstractAsyncContextManager[FlagBatch]:
        """`async with gmail.batch_mode():` send the block's flag and label changes at its
        end: one `messages.batchModify` (<= 1,000 ids) per identical change."""

        async def send(group: Group, messages: Changes, timeout: float | None) -> int:
            sent = 0
            for (add, remove), ids in plan_batch(messages).items():
                sent += await self._apply(ids, add, remove, timeout)
            return sent

        return batch_mode(self._self(), send)

    async def _flush(self, timeout: float | None) -> None:
        batch = current_batch(self._self())
        if batch is not None:
            await batch.flush(timeout=timeout)

    def _self(self) -> GmailProvider:
        from xcomm.email._gmail import GmailProvider

        assert isinstance(self, GmailProvider)
        return self


_GROUP: Group = ("", None)


def _special_use(label: str) -> tuple[str, ...]:
    return (_SPECIAL_USE[label],) if label in _SPECIAL_USE else ()


def _message_id(value: object) -> str:
    """A Gmail message id as it goes into a URL path (letters and digits only)."""
    if not (isinstance(value, str) and value.isascii() and value.isalnum()):
        raise ValidationError(f"{value!r} is not a Gmail message id")
    return value


def _listed(items: Any) -> list[Any]:
    return [items] if isinstance(items, str | ReceivedMessage) else list(items)


def _label_body(add: Iterable[str], remove: Iterable[str]) -> dict[str, list[str]]:
    body = {"addLabelIds": list(add), "removeLabelIds": list(remove)}
    return {k: v for k, v in body.items() if v}
