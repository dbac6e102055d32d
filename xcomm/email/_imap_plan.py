"""How an IMAP search or watch runs a query: criteria for the server, a check for the client.

`plan_search` is shared by `search`/`iter_search` and `watch`: an `EmailQuery` runs as its
`explain("imap")` plan says (server criteria, a superset of the matches; the folder it names;
the residual checked on each fetched message), raw criteria run as given, and any other object
with `to_imap()` is filtered by its own `matches()` when it has one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import NamedTuple

from xcomm._errors import ValidationError
from xcomm.email._mailbox import SearchQuery, criteria_of
from xcomm.email._message import MessageView, ReceivedMessage
from xcomm.email._query import EmailQuery

__all__ = ["Keep", "SearchPlan", "check_folder", "client_check", "own_check", "plan_search"]

Keep = Callable[[ReceivedMessage], Awaitable[bool]]


class SearchPlan(NamedTuple):
    """The UID SEARCH criteria, the folder to search, and what the client checks (or None)."""

    criteria: str
    folder: str
    keep: Keep | None


def check_folder(name: object) -> None:
    """Reject a folder name that cannot be sent (empty, CR/LF/NUL)."""
    if not isinstance(name, str) or not name or any(c in name for c in "\r\n\x00"):
        raise ValidationError(
            f"a folder name must be a non-empty string without CR/LF/NUL: {name!r}"
        )


def plan_search(
    query: str | SearchQuery | None,
    *,
    folder: str | None,
    default_folder: str,
    timeout: float | None,
    what: str = "searches",
) -> SearchPlan:
    """Plan `query` for one folder: `folder=` or the query's own folder, not both."""
    keep: Keep | None = None
    if query is None:
        criteria = "ALL"
    elif isinstance(query, EmailQuery):
        plan = query.explain("imap")
        criteria = str(plan.request) or "ALL"
        if plan.folder is not None:
            if folder is not None and folder != plan.folder:
                raise ValidationError(
                    f"the query {what} folder {plan.folder!r} but folder={folder!r} "
                    "was given; use one of them"
                )
            folder = plan.folder
        keep = client_check(plan.client, timeout)
    else:
        criteria = criteria_of(query)
        keep = None if isinstance(query, str) else own_check(query)
    where = folder or default_folder
    check_folder(where)
    return SearchPlan(criteria, where, keep)


def own_check(query: object) -> Keep | None:
    """The check of a query that is not an `EmailQuery`: its own `matches(message)`, or
    None when it has none."""
    matches: Callable[[ReceivedMessage], object] | None = getattr(query, "matches", None)
    if matches is None:
        return None

    async def keep(message: ReceivedMessage) -> bool:
        return bool(matches(message))

    return keep


def client_check(
    residual: EmailQuery | None,
    timeout: float | None,
    view: type[MessageView] = MessageView,
) -> Keep | None:
    """What the client checks of an `EmailQuery` on each fetched message (None: nothing),
    through the mailbox's `view` of a message, fetching the bodies only when the check
    reads them."""
    if residual is None:
        return None
    reads_bodies = residual.reads_bodies()

    async def keep(message: ReceivedMessage) -> bool:
        if not reads_bodies:
            return residual.matches(view(message))
        text = await message.text(timeout=timeout)
        html = await message.html(timeout=timeout)
        return residual.matches(view(message, text=text, html=html))

    return keep
