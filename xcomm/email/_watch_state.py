"""Where a mailbox watch keeps its checkpoint between runs: a JSON file, or your own store.

A watch (`outlook.watch(state=...)`) saves a small frozen Struct (its checkpoint: where to
go on from, and the ids it handed out last) after each message and when it is closed, and
loads it when it starts. `state=` is a file path (`CheckpointFile`: JSON, replaced
atomically) or any object with `async load()` and `async save(checkpoint)`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

import anyio.to_thread
import msgspec

from xcomm._errors import ValidationError

__all__ = ["CheckpointFile", "CheckpointStore", "checkpoint_store"]

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
