"""`Suppressions`: the addresses campaigns never send to, as `comm.suppressions`.

A thin, validating view of the suppression list the outbox already keeps (`OutboxStore.suppress`
and friends). The bulk sender adds to it by itself ("rejected: ..." after a permanent 5xx on
RCPT) and skips every listed address (`suppressed` in the campaign report); this is the door
for everything else: unsubscribe requests, imports from another tool, support asking to stop.
"""

from __future__ import annotations

import builtins
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable

from xcomm._errors import ValidationError
from xcomm._models import Address
from xcomm._validation import parse_address
from xcomm.outbox import OutboxStore, Suppression

__all__ = ["Suppressions"]

#: The reasons xcomm itself records; any other non-empty string is fine too.
MANUAL = "manual"
UNSUBSCRIBED = "unsubscribed"
_SHOWN_BAD = 5  # bad entries named in an add_many error


class Suppressions:
    """The suppression list of a manager's outbox: addresses no campaign sends to.

    Example:
        ```python
        async with CommManager(outbox="campaigns.sqlite3") as comm:
            await comm.suppressions.add("Ada@Example.org", reason="unsubscribed")
            assert await comm.suppressions.contains("ada@example.org")
            async for entry in comm.suppressions:
                print(entry.address, entry.reason, entry.created_at)
            await comm.suppressions.remove("ada@example.org")  # True: it was listed
        ```

    Get it from `comm.suppressions`; creating it does no I/O, the outbox is opened on first
    use. Addresses are validated like message recipients and stored lower-cased, so lookups
    ignore case. Adding a listed address keeps its first reason and time.

    Args:
        outbox: returns the opened store (`CommManager.outbox`).
        now: wall-clock time in epoch seconds, for `created_at` (tests pass their own).
    """

    def __init__(
        self,
        outbox: Callable[[], Awaitable[OutboxStore]],
        *,
        now: Callable[[], float] = time.time,
    ) -> None:
        self._outbox = outbox
        self._now = now

    def __repr__(self) -> str:
        return "<Suppressions of the manager's outbox>"

    async def add(self, address: str | Address, /, *, reason: str = MANUAL) -> None:
        """Suppress `address` (`"ada@example.org"`, `"Ada <ada@example.org>"`, an `Address`).

        Raises:
            ValidationError: the address is malformed, or `reason` is not a non-empty string.
        """
        email = _normalize(address, "add {!r} to")
        _check_reason(reason)
        store = await self._outbox()
        await store.suppress(email, reason=reason, now=self._now())

    async def add_many(self, addresses: Iterable[str | Address], /, *, reason: str = MANUAL) -> int:
        """Suppress every address of `addresses` (an unsubscribe list being imported).

        Every entry is validated before anything is written: one malformed entry raises
        `ValidationError` naming it (and its position) and leaves the list unchanged.
        Returns how many entries were given, duplicates and already listed ones included.
        """
        _check_reason(reason)
        emails: builtins.list[str] = []
        bad: builtins.list[str] = []
        for position, address in enumerate(addresses):
            try:
                emails.append(_normalize(address, "add {!r} to"))
            except ValidationError as exc:
                bad.append(f"#{position}: {exc}")
        if bad:
            shown = "; ".join(bad[:_SHOWN_BAD])
            more = f" (and {len(bad) - _SHOWN_BAD} more)" if len(bad) > _SHOWN_BAD else ""
            raise ValidationError(
                f"{len(bad)} of {len(bad) + len(emails)} addresses are malformed, so none was "
                f"suppressed: {shown}{more}. Fix or drop them and import again"
            )
        store = await self._outbox()
        now = self._now()
        for email in dict.fromkeys(emails):  # the store protocol suppresses one at a time
            await store.suppress(email, reason=reason, now=now)
        return len(emails)

    async def remove(self, address: str | Address, /) -> bool:
        """Take `address` off the list, so campaigns send to it again; True if it was listed."""
        email = _normalize(address, "remove {!r} from")
        store = await self._outbox()
        return await store.unsuppress(email)

    async def contains(self, address: str | Address, /) -> bool:
        """True if `address` is suppressed (case-insensitive)."""
        email = _normalize(address, "look up {!r} in")
        store = await self._outbox()
        return email in await store.suppressed([email])

    async def list(self) -> builtins.list[Suppression]:
        """Every suppressed address, in address order (the whole list in memory)."""
        return [entry async for entry in self]

    async def __aiter__(self) -> AsyncIterator[Suppression]:
        """Stream every suppressed address, in address order, a page at a time."""
        store = await self._outbox()
        async for entry in store.suppressions():
            yield entry


def _normalize(address: object, action: str) -> str:
    """The lower-cased address of `address`, validated like a message recipient.

    `action` says what was being done, with `{!r}` where the address goes: "add {!r} to".
    """
    if isinstance(address, Address):
        text = address.email
    elif isinstance(address, str):
        text = address
    else:
        raise ValidationError(
            f"cannot {action.format(address)} the suppression list: expected an address as a "
            f"str or an xcomm.Address, not {type(address).__name__}"
        )
    try:
        return parse_address(text).email.lower()
    except ValidationError as exc:
        raise ValidationError(f"cannot {action.format(text)} the suppression list: {exc}") from exc


def _check_reason(reason: object) -> None:
    if not isinstance(reason, str) or not reason.strip():
        raise ValidationError(
            f"reason must be a non-empty string such as 'unsubscribed', got {reason!r}"
        )
