"""Acting on messages over IMAP: flags and keywords, copy, move, delete, and batch mode.

`IMAPProvider` keeps thin methods; the commands are here:

| action                  | commands                                                          |
|-------------------------|-------------------------------------------------------------------|
| set_flags / set_labels  | `UID STORE <set> +FLAGS.SILENT (...)`, `-FLAGS.SILENT (...)`      |
| copy                    | `UID COPY <set> "folder"`                                         |
| move (server has MOVE)  | `UID MOVE <set> "folder"` (RFC 6851)                              |
| move (without MOVE)     | `UID COPY`, `UID STORE +FLAGS.SILENT (\\Deleted)`, `UID EXPUNGE`  |
| delete                  | `UID STORE +FLAGS.SILENT (\\Deleted)`, `UID EXPUNGE <set>`        |

`UID EXPUNGE` (UIDPLUS, RFC 4315) removes exactly the given messages. A server without
UIDPLUS has only EXPUNGE, which would also remove every other message someone marked
`\\Deleted`; xcomm never sends it: the messages stay marked `\\Deleted` for the server (or
the user's mail client) to expunge.

Copy and move return where the messages went (`{old_uid: new_uid}`) when the server says so
(COPYUID, from UIDPLUS); `{}` otherwise.

Inside `async with imap.batch_mode():` flag changes wait in a `FlagBatch` (found through a
context variable, so each task's batch is its own) and go out at the end of the block as one
`UID STORE` per folder, operation and flag set. Copy, move and delete in a batch first send
the flag changes waiting for their folder, then run at once.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Awaitable, Callable, Iterable
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, TypeVar

from xcomm._errors import ValidationError
from xcomm.email._batch import FlagBatch, current_batch
from xcomm.email._imap_batch import check_validity, imap_batch_mode, store
from xcomm.email._imap_fetch import uid_set
from xcomm.email._imap_parse import encode_folder

if TYPE_CHECKING:
    from xcomm.email._imap import IMAPProvider
    from xcomm.email._imap_wire import IMAPSession

__all__ = ["IMAPActions", "check_flags", "check_labels", "copyuid", "uids_of"]

T = TypeVar("T")

#: The system flags a client may set, by lower-case name (\\Recent is the server's).
SYSTEM_FLAGS = {f.lower(): f for f in ("\\Seen", "\\Flagged", "\\Answered", "\\Draft", "\\Deleted")}
# atom-char: any CHAR except ( ) { SP CTL % * " \ ] (RFC 3501 atom-specials, resp-specials)
_ATOM = re.compile(r"[!#$&\'+,\-./0-9:;<=>?@A-Z\[^_`a-z|}~]+")
_COPYUID = re.compile(rb"\[COPYUID \d+ ([\d:,]+) ([\d:,]+)\]", re.IGNORECASE)
_MAX_KEYWORD = 100


def uids_of(uids: int | Iterable[int]) -> list[int]:
    """The UIDs as a sorted list without repeats; each must be a positive int."""
    items = [uids] if isinstance(uids, int) else list(uids)
    for uid in items:
        if isinstance(uid, bool) or not isinstance(uid, int) or uid < 1:
            raise ValidationError(f"a UID must be a positive int, got {uid!r}")
    return sorted(set(items))


def check_labels(labels: Iterable[str]) -> list[str]:
    """Labels as IMAP keywords: atoms such as `Boss`, `$Important`, `project-x`.

    Raises:
        ValidationError: a label with a space, a non-ASCII letter, `( ) { } % * " \\ ]`,
            or a leading `\\` (system flags are set with mark_as_read() and friends).
    """
    out: list[str] = []
    for label in [labels] if isinstance(labels, str) else labels:
        if not isinstance(label, str):
            raise ValidationError(f"a label must be a str, not {type(label).__name__}")
        if label.startswith("\\"):
            raise ValidationError(
                f"{label!r} is an IMAP system flag, not a label; use mark_as_read(), "
                "mark_as_important() or set_flags()"
            )
        if not _ATOM.fullmatch(label) or len(label) > _MAX_KEYWORD:
            raise ValidationError(
                f"IMAP cannot store the label {label!r}: labels are IMAP keywords, which are "
                f'1 to {_MAX_KEYWORD} ASCII characters without spaces or ( ) {{ }} % * " \\ ]; '
                f"use a name such as {_suggest(label)!r}"
            )
        out.append(label)
    return out


def _suggest(label: str) -> str:
    ascii_only = unicodedata.normalize("NFKD", label).encode("ascii", "ignore").decode()
    return (
        re.sub(r"[^!#$&\'+,\-./0-9:;<=>?@A-Z\[^_`a-z|}~]+", "_", ascii_only).strip("_")[
            :_MAX_KEYWORD
        ]
        or "Label"
    )


def check_flags(flags: Iterable[str]) -> list[str]:
    """System flags (`\\Seen`, any case, written canonically) and keywords (see labels)."""
    out: list[str] = []
    for flag in [flags] if isinstance(flags, str) else flags:
        if isinstance(flag, str) and flag.startswith("\\"):
            if flag.lower() not in SYSTEM_FLAGS:
                raise ValidationError(
                    f"{flag!r} is not a flag a client can set; use one of "
                    + ", ".join(SYSTEM_FLAGS.values())
                )
            out.append(SYSTEM_FLAGS[flag.lower()])
        else:
            out.extend(check_labels([flag]))
    return out


def copyuid(lines: Iterable[bytes]) -> dict[int, int]:
    """`{source_uid: new_uid}` from a `[COPYUID validity source dest]` response code."""
    for line in lines:
        found = _COPYUID.search(bytes(line))
        if found:
            source, dest = (_expand(found.group(i).decode()) for i in (1, 2))
            if len(source) == len(dest):
                return dict(zip(source, dest, strict=True))
    return {}


def _expand(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        low, _, high = part.partition(":")
        a, b = int(low), int(high or low)
        out.extend(range(a, b + 1) if a <= b else range(a, b - 1, -1))
    return out


def _quoted(folder: str) -> str:
    from xcomm.email._imap_wire import quote

    return quote(encode_folder(folder))


async def copy(session: IMAPSession, uids: list[int], dest: str) -> dict[int, int]:
    lines = await session.command("COPY", uid_set(uids), _quoted(dest), prefix="UID")
    return copyuid([*lines, session.last_status])


async def move(session: IMAPSession, uids: list[int], dest: str) -> dict[int, int]:
    """UID MOVE when offered; else COPY, mark `\\Deleted`, and UID EXPUNGE (UIDPLUS)."""
    if session.has("MOVE"):
        lines = await session.command("MOVE", uid_set(uids), _quoted(dest), prefix="UID")
        return copyuid([*lines, session.last_status])
    moved = await copy(session, uids, dest)
    await delete(session, uids, expunge=True)
    return moved


async def delete(session: IMAPSession, uids: list[int], *, expunge: bool) -> None:
    await store(session, uids, "+", ["\\Deleted"])
    if expunge and session.has("UIDPLUS"):
        await session.command("EXPUNGE", uid_set(uids), prefix="UID")


class IMAPActions:
    """The acting half of `IMAPProvider` (a mixin: it needs the provider's `_run`)."""

    __slots__ = ()

    if TYPE_CHECKING:
        folder: str

        async def _run(
            self,
            operation: str,
            folder: str | None,
            work: Callable[[IMAPSession], Awaitable[T]],
            timeout: float | None = None,
        ) -> T: ...

    def _provider(self) -> IMAPProvider:
        from xcomm.email._imap import IMAPProvider

        assert isinstance(self, IMAPProvider)
        return self

    async def set_flags(
        self,
        uids: int | Iterable[int],
        /,
        *,
        add: Iterable[str] = (),
        remove: Iterable[str] = (),
        folder: str | None = None,
        uid_validity: int | None = None,
        timeout: float | None = None,
    ) -> None:
        """Add and remove flags (`\\Seen`, `\\Flagged`, ...) and keywords on messages.

        One `UID STORE ... +FLAGS.SILENT` (and one `-FLAGS.SILENT`) for all of `uids`;
        inside `batch_mode()`, the change waits for the end of the block. With
        `uid_validity`, nothing is changed if the folder was recreated since.

        Raises:
            ValidationError: an unknown system flag, a flag both added and removed, or a
                keyword IMAP cannot store (see `set_labels`).
            ProviderError: the server refused (an unknown folder: `NO`).
        """
        targets = uids_of(uids)
        plus, minus = check_flags(add), check_flags(remove)
        both = {f.lower() for f in plus} & {f.lower() for f in minus}
        if both:
            raise ValidationError(f"{sorted(both)} cannot be both added and removed")
        where = _folder(folder or self.folder)
        if not targets or not (plus or minus):
            return
        batch = current_batch(self._provider())
        if batch is not None:
            batch.add((where, uid_validity), targets, plus, minus)
            return

        async def work(session: IMAPSession) -> None:
            check_validity(session, where, uid_validity)
            for op, flags in (("+", plus), ("-", minus)):
                if flags:
                    await store(session, targets, op, flags)

        await self._run("store", where, work, timeout)

    async def set_labels(
        self,
        uids: int | Iterable[int],
        /,
        *,
        add: Iterable[str] = (),
        remove: Iterable[str] = (),
        folder: str | None = None,
        uid_validity: int | None = None,
        timeout: float | None = None,
    ) -> None:
        """Add and remove labels; over IMAP a label is a keyword (`Boss`, `$Important`).

        Raises:
            ValidationError: IMAP keywords are ASCII atoms: no spaces, no
                `( ) { } % * " \\ ]`, no leading `\\`. The error suggests a name that works.
        """
        await self.set_flags(uids, add=check_labels(add), remove=check_labels(remove),
                             folder=folder, uid_validity=uid_validity, timeout=timeout)  # fmt: skip

    async def copy(
        self,
        uids: int | Iterable[int],
        folder: str,
        /,
        *,
        source: str | None = None,
        uid_validity: int | None = None,
        timeout: float | None = None,
    ) -> dict[int, int]:
        """Copy messages of `source` (default: the provider's folder) into `folder`.

        Returns `{uid: uid_in_folder}` when the server reports it (COPYUID), else `{}`.

        Raises:
            ProviderError: `folder` does not exist (`error_code` "TRYCREATE" or "NO").
        """
        return await self._transfer("copy", uids, folder, source, uid_validity, timeout)

    async def move(
        self,
        uids: int | Iterable[int],
        folder: str,
        /,
        *,
        source: str | None = None,
        uid_validity: int | None = None,
        timeout: float | None = None,
    ) -> dict[int, int]:
        """Move messages into `folder`: UID MOVE, or COPY + `\\Deleted` + UID EXPUNGE on
        servers without MOVE. Returns `{uid: uid_in_folder}` when the server reports it.

        Raises:
            ProviderError: `folder` does not exist; nothing was moved.
        """
        return await self._transfer("move", uids, folder, source, uid_validity, timeout)

    async def _transfer(
        self,
        operation: str,
        uids: int | Iterable[int],
        dest: str,
        source: str | None,
        uid_validity: int | None,
        timeout: float | None,
    ) -> dict[int, int]:
        targets, dest, where = uids_of(uids), _folder(dest), _folder(source or self.folder)
        if not targets:
            return {}
        await self._flush_batch(where, timeout)

        async def work(session: IMAPSession) -> dict[int, int]:
            check_validity(session, where, uid_validity)
            run = move if operation == "move" else copy
            return await run(session, targets, dest)

        return await self._run(operation, where, work, timeout)

    async def delete(
        self,
        uids: int | Iterable[int],
        /,
        *,
        folder: str | None = None,
        expunge: bool = True,
        uid_validity: int | None = None,
        timeout: float | None = None,
    ) -> None:
        """Delete messages for good: mark them `\\Deleted`, then `UID EXPUNGE` exactly them.

        This is not "move to Trash": use `move(uids, "Trash")` for that. With
        `expunge=False` (or a server without UIDPLUS) they are only marked `\\Deleted`.
        """
        targets, where = uids_of(uids), _folder(folder or self.folder)
        if not targets:
            return
        await self._flush_batch(where, timeout)

        async def work(session: IMAPSession) -> None:
            check_validity(session, where, uid_validity)
            await delete(session, targets, expunge=expunge)

        await self._run("delete", where, work, timeout)

    def batch_mode(self) -> AbstractAsyncContextManager[FlagBatch]:
        """`async with imap.batch_mode():` send the block's flag and label changes at its
        end, one `UID STORE` per folder, operation and flag set (see `FlagBatch`)."""
        return imap_batch_mode(self._provider())

    async def _flush_batch(self, folder: str, timeout: float | None) -> None:
        batch = current_batch(self._provider())
        if batch is not None:
            await batch.flush(folder=folder, timeout=timeout)


def _folder(name: object) -> str:
    if not isinstance(name, str) or not name or any(c in name for c in "\r\n\x00"):
        raise ValidationError(
            f"a folder name must be a non-empty string without CR/LF/NUL: {name!r}"
        )
    return name
