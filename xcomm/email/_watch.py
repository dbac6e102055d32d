"""What the polling mailbox watches (Gmail history, Graph delta) share: where they keep
their checkpoint, how they check each new message, and how they wait after a failed poll.

A watch (`outlook.watch(state=...)`) saves a small frozen Struct (its checkpoint: where to
go on from, and the ids it handed out last) after each message and when it is closed, and
loads it when it starts. `state=` is a file path (`CheckpointFile`: JSON, replaced
atomically) or any object with `async load()` and `async save(checkpoint)`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar, runtime_checkable

import anyio.to_thread
import msgspec

from xcomm._errors import CommunicationError, ProviderError, TransportError, ValidationError
from xcomm._retry import backoff_delay
from xcomm.email._imap_plan import Keep, own_check
from xcomm.email._query import EmailQuery

if TYPE_CHECKING:
    from xcomm._provider import Provider

__all__ = [
    "SEEN_LIMIT",
    "CheckpointFile",
    "CheckpointStore",
    "checkpoint_store",
    "handed_out",
    "pause_after_failure",
    "watch_check",
]

logger = logging.getLogger("xcomm.email.watch")

#: How many handed-out message ids a checkpoint remembers.
SEEN_LIMIT = 1000

C = TypeVar("C", bound=msgspec.Struct)


@runtime_checkable
class CheckpointStore(Protocol):
    """What `state=` may be besides a path: a store with these two methods."""

    async def load(self) -> Any:
        """The saved checkpoint, or None when there is none yet."""
        ...

    async def save(self, checkpoint: Any, /) -> None:
        """Replace the saved checkpoint."""
        ...


class CheckpointFile(Generic[C]):
    """A checkpoint of type `kind` in a JSON file, replaced atomically (a temporary file in
    the same folder, then a rename)."""

    def __init__(self, path: str | os.PathLike[str], kind: type[C], *, what: str) -> None:
        self.path = Path(path)
        self.kind = kind
        self.what = what

    async def load(self) -> C | None:
        def read() -> bytes | None:
            try:
                return self.path.read_bytes()
            except FileNotFoundError:
                return None

        raw = await anyio.to_thread.run_sync(read)
        if raw is None:
            return None
        try:
            return msgspec.json.decode(raw, type=self.kind)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise ValidationError(
                f"{self.path} is not a {self.what} checkpoint ({exc}); delete it to watch "
                "from now on"
            ) from exc

    async def save(self, checkpoint: C, /) -> None:
        data = msgspec.json.encode(checkpoint)

        def write() -> None:
            temporary = self.path.with_name(f".{self.path.name}.tmp")
            temporary.write_bytes(data)
            os.replace(temporary, self.path)

        await anyio.to_thread.run_sync(write)


def handed_out(seen: tuple[str, ...], received_ms: int, message: Any) -> dict[str, Any]:
    """A checkpoint's `seen` and `received_ms` once `message` (a `ReceivedMessage`) was
    handed out: its id last (the last `SEEN_LIMIT` kept), the newest received time."""
    when = message.received_at
    return {
        "seen": (*(i for i in seen if i != message.id), message.id)[-SEEN_LIMIT:],
        "received_ms": max(received_ms, int(when.timestamp() * 1000) if when else 0),
    }


def checkpoint_store(
    state: str | os.PathLike[str] | CheckpointStore | None, kind: type[C], *, what: str
) -> CheckpointStore | None:
    """The store `state=` names: None, a `CheckpointFile` for a path, or the object itself.

    Raises:
        ValidationError: `state` is none of those.
    """
    if state is None or isinstance(state, CheckpointStore):
        return state
    if isinstance(state, str | os.PathLike):
        return CheckpointFile(state, kind, what=what)
    raise ValidationError(
        "state must be a file path or an object with async load() and save(checkpoint)"
    )


def watch_check(
    query: object, check: Callable[[EmailQuery], Keep | None], *, service: str
) -> Keep | None:
    """How a watch checks each new message (`service`, e.g. "Gmail's history", has no
    search): an `EmailQuery` through `check`, another query through its own `matches()`.

    Raises:
        ValidationError: a sorted or limited `EmailQuery`, a search string, or an object
            without `matches()`.
    """
    if query is None:
        return None
    if isinstance(query, EmailQuery):
        if query.order or query.max_results is not None:
            raise ValidationError(
                "watch() yields messages as they arrive: drop sort_by()/limit() from the query"
            )
        return check(query)
    keep = None if isinstance(query, str) else own_check(query)
    if keep is None:
        raise ValidationError(
            f"watch() checks each new message here ({service} has no search): pass an "
            "EmailQuery (or an object with matches()), not a search string"
        )
    return keep


async def pause_after_failure(
    provider: Provider, error: CommunicationError, failures: int, *, what: str
) -> None:
    """After a poll failed for the `failures`-th time in a row: raise `error` unless it is a
    transport error or a transient provider error, else log it and wait the retry policy's
    backoff (at least its Retry-After). Closing the provider ends the wait at once."""
    transient = isinstance(error, TransportError) or (
        isinstance(error, ProviderError) and error.transient
    )
    if not transient:
        raise error
    wait = error.retry_after if isinstance(error, ProviderError) else None
    delay = max(wait or 0.0, backoff_delay(provider._retry, failures))
    logger.warning(
        "watching %s: %s (%s); trying again in %.1fs (attempt %d)",
        what, type(error).__name__, error, delay, failures,
    )  # fmt: skip
    with provider._until_closed():
        await provider._context.clock.sleep(delay)
