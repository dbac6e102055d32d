"""Where the outbox lives: `open_outbox(location)` and the per-platform default location."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path

from xcomm._errors import ConfigurationError
from xcomm.outbox._base import OutboxStore
from xcomm.outbox._memory import MemoryOutbox
from xcomm.outbox._sqlite import SQLiteOutbox

__all__ = ["default_outbox_location", "open_outbox"]

ENV_VAR = "XCOMM_OUTBOX"
FILE_NAME = "outbox.sqlite3"
_SUPPORTED = (
    "'memory://', 'sqlite:///absolute/path.db', 'sqlite://relative/path.db', "
    "a file path, or an OutboxStore instance"
)
# "scheme://": a single letter is a Windows drive ("C://data/outbox.db"), not a scheme.
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]+)://")
_STORE_METHODS = ("open", "aclose", "add", "claim", "claim_due", "finish", "records")


def open_outbox(location: str | os.PathLike[str] | OutboxStore) -> OutboxStore:
    """The store at `location`, not yet opened (`async with` it or `await store.open()`).

    ```python
    from xcomm.outbox import open_outbox

    store = open_outbox("sqlite:///var/lib/app/outbox.sqlite3")  # or a plain path
    store = open_outbox("memory://")  # nothing persisted: tests and one-off scripts
    ```

    Args:
        location: `"memory://"`; `"sqlite:///abs/path.db"` (three slashes: absolute),
            `"sqlite://relative/path.db"`, or a plain path (str or `os.PathLike`) for a SQLite
            file; or an `OutboxStore`, returned as is.

    Raises:
        ConfigurationError: the location names a backend this version does not have.
    """
    if isinstance(location, os.PathLike):
        return SQLiteOutbox(location)
    if not isinstance(location, str):
        if all(callable(getattr(location, name, None)) for name in _STORE_METHODS):
            return location
        raise ConfigurationError(
            f"an outbox location must be {_SUPPORTED}; got {type(location).__name__}"
        )
    text = location.strip()
    match = _SCHEME.match(text)
    if match is None:
        if not text:
            raise ConfigurationError(f"the outbox location is empty; use {_SUPPORTED}")
        return SQLiteOutbox(text)
    scheme, rest = match.group(1).lower(), text[match.end() :]
    if scheme == "memory" and not rest:
        return MemoryOutbox()
    if scheme == "sqlite" and rest:
        return SQLiteOutbox(rest)
    raise ConfigurationError(f"unsupported outbox location {location!r}; use {_SUPPORTED}")


def default_outbox_location() -> str:
    """`$XCOMM_OUTBOX` if set, else a SQLite file in the user's data directory.

    Linux and other Unix: `$XDG_DATA_HOME/xcomm/outbox.sqlite3` (default
    `~/.local/share/...`); macOS: `~/Library/Application Support/xcomm/...`; Windows:
    `%LOCALAPPDATA%\\xcomm\\...`.
    """
    return default_location(sys.platform, os.environ)


def default_location(platform: str, environ: Mapping[str, str]) -> str:
    """`default_outbox_location()` for a given `sys.platform` and environment."""
    if configured := environ.get(ENV_VAR, "").strip():
        return configured
    return str(data_dir(platform, environ) / "xcomm" / FILE_NAME)


def data_dir(platform: str, environ: Mapping[str, str]) -> Path:
    """The per-user data directory of `platform` (`sys.platform` values)."""
    home = Path(environ.get("HOME") or Path.home())
    if platform == "win32":
        local = environ.get("LOCALAPPDATA")
        return Path(local) if local else Path.home() / "AppData" / "Local"
    if platform == "darwin":
        return home / "Library" / "Application Support"
    xdg = environ.get("XDG_DATA_HOME", "")
    # The XDG spec: a relative path in $XDG_DATA_HOME is invalid and must be ignored.
    return Path(xdg) if xdg and os.path.isabs(xdg) else home / ".local" / "share"
