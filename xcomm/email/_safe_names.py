"""Saving attachments from strangers: safe file names and writes that stay in their folder.

A sender chooses an attachment's file name, so it is hostile input: `../../etc/passwd`,
`C:\\Windows\\evil.exe`, `CON.txt`, `report.pdf:hidden`, a right-to-left override that makes
`txt.exe` read as `exe.txt`, 300 characters, or nothing at all. `safe_filename()` (pure) turns
any of them into a plain name for one directory entry:

- only the last path component is kept (`/` and `\\` both separate);
- control and format characters (bidi overrides, zero-width) and lone surrogates are removed;
  `< > : " | ? *` become `_` (`:` would open an NTFS alternate data stream);
- leading dots and spaces go (no hidden files, no `..`), and so do trailing dots and spaces
  (Windows drops them, so `evil.exe.` would be `evil.exe`);
- Windows device names (CON, PRN, AUX, NUL, COM0-9, LPT0-9, with any extension) get a `_`;
- the result fits in 255 UTF-8 bytes, keeping its extension;
- nothing left gives `attachment-<n>` with an extension for the content type.

`write_file()` (blocking: run it in a worker thread) then writes inside a resolved directory
only, never through a symbolic link, and never over an existing file unless asked.
"""

from __future__ import annotations

import mimetypes
import os
import re
import tempfile
import unicodedata
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

from xcomm._errors import FileAlreadyExists, ValidationError

__all__ = [
    "attachment_names",
    "check_free",
    "destination",
    "safe_filename",
    "target_directory",
    "unique_names",
    "write_file",
]


class _Named(Protocol):
    @property
    def filename(self) -> str | None: ...
    @property
    def content_type(self) -> str: ...


MAX_NAME_BYTES = 255
_MAX_EXT = 16  # a longer "extension" is part of the name
_FORBIDDEN = re.compile(r'[<>:"|?*]')
_DEVICES = frozenset(
    {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"}
    | {f"{p}{n}" for p in ("COM", "LPT") for n in [*"0123456789", "¹", "²", "³"]}
)


def _printable(name: str) -> str:
    name = unicodedata.normalize("NFC", name)
    return "".join(c for c in name if unicodedata.category(c) not in {"Cc", "Cf", "Cs", "Co"})


def _split(name: str) -> tuple[str, str]:
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem or len(ext) > _MAX_EXT or " " in ext:
        return name, ""
    return stem, "." + ext


def _fit(stem: str, ext: str, limit: int = MAX_NAME_BYTES) -> str:
    """`stem + ext` cut to `limit` UTF-8 bytes by shortening the stem (whole characters)."""
    room = limit - len(ext.encode())
    if room < 1:  # an absurd extension: cut the whole name instead
        stem, ext, room = stem + ext, "", limit
    data = stem.encode()
    if len(data) > room:
        stem = data[:room].decode("utf-8", "ignore")
    return stem.rstrip(". ") + ext


def _default_extension(content_type: str | None) -> str:
    if content_type:
        found = mimetypes.guess_extension(content_type.split(";")[0].strip().lower())
        if found:
            return found
    return ".bin"


def safe_filename(name: str | None, *, index: int = 1, content_type: str | None = None) -> str:
    """A name for one file in a folder, made from a sender's attachment file name.

    Args:
        name: the file name as the sender wrote it (None when there was none).
        index: the attachment's number, for the fallback name `attachment-<index>.<ext>`.
        content_type: the attachment's MIME type, for the fallback name's extension.

    Returns:
        A non-empty name of at most 255 UTF-8 bytes with no path separator, control
        character, `< > : " | ? *`, leading dot, trailing dot or space, and no Windows
        device name: `"../../etc/passwd"` → `"passwd"`, `"CON.txt"` → `"_CON.txt"`.
    """
    text = _printable(name or "")
    parts = [p for p in re.split(r"[/\\]", text) if p.strip(" .")]
    text = _FORBIDDEN.sub("_", parts[-1] if parts else "")
    text = text.lstrip(". ").rstrip(". ")
    if not text:
        return f"attachment-{index}{_default_extension(content_type)}"
    stem, ext = _split(text)
    if stem.split(".")[0].rstrip(" ").upper() in _DEVICES:
        stem = "_" + stem
    return _fit(stem, ext)


def number_name(name: str, number: int) -> str:
    """`report (2).pdf` for `report.pdf` and 2, still within 255 bytes."""
    stem, ext = _split(name)
    suffix = f" ({number})"
    return _fit(stem, suffix + ext) if len((suffix + ext).encode()) < MAX_NAME_BYTES else name


def unique_names(names: list[str]) -> list[str]:
    """`names` with repeats numbered (`a.pdf`, `a (1).pdf`, `a (2).pdf`); names that differ
    only in case count as repeats (they are one file on Windows and macOS)."""
    taken: set[str] = set()
    out: list[str] = []
    for name in names:
        candidate, number = name, 0
        while candidate.casefold() in taken:
            number += 1
            candidate = number_name(name, number)
        taken.add(candidate.casefold())
        out.append(candidate)
    return out


def attachment_names(attachments: Iterable[_Named]) -> list[str]:
    """Safe, distinct file names for `attachments` (numbered from 1 for the fallbacks)."""
    return unique_names(
        [
            safe_filename(a.filename, index=i, content_type=a.content_type)
            for i, a in enumerate(attachments, 1)
        ]
    )


def target_directory(directory: str | os.PathLike[str]) -> Path:
    """`directory` created if missing and resolved (symbolic links followed once, here)."""
    path = Path(directory).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
        resolved = path.resolve(strict=True)
    except OSError as exc:
        raise ValidationError(
            f"cannot use {os.fspath(directory)!r} as the download folder: {exc.strerror or exc}"
        ) from exc
    if not resolved.is_dir():
        raise ValidationError(f"{os.fspath(directory)!r} is not a folder")
    return resolved


def inside(directory: Path, name: str) -> Path:
    """`directory / name`, checked to be an entry directly in `directory`."""
    if not name or name in {".", ".."} or "/" in name or "\\" in name or "\0" in name:
        raise ValidationError(f"{name!r} is not a plain file name")
    path = directory / name
    if path.parent != directory:  # pragma: no cover - excluded by the checks above
        raise ValidationError(f"{name!r} would leave {directory}")
    return path


def destination(path: str | os.PathLike[str], safe_name: str) -> tuple[Path, str]:
    """Where `save_attachment(path)` writes (blocking): into `path` under `safe_name` when
    it is a folder or ends with a separator, else the file `path` names."""
    text = os.fspath(path)
    if text.endswith(("/", os.sep)) or os.path.isdir(text):
        return target_directory(text), safe_name
    return target_directory(os.path.dirname(text) or "."), os.path.basename(text)


def check_free(directory: Path, names: list[str]) -> None:
    """Raise `FileAlreadyExists` for the first of `names` already in `directory`."""
    for name in names:
        path = inside(directory, name)
        if os.path.lexists(path):
            raise FileAlreadyExists(
                f"{name} exists in {directory}; pass overwrite=True to replace it",
                path=str(path),
            )


def write_file(directory: Path, name: str, data: bytes, *, overwrite: bool = False) -> Path:
    """Write `data` to `directory/name` (blocking) and return the path.

    A new file is created with O_EXCL|O_NOFOLLOW, so an existing file or a symbolic link
    planted under that name is never followed or replaced; `overwrite=True` writes a
    temporary file beside it and renames it over the old one (the rename replaces a link,
    not what it points to).

    Raises:
        FileAlreadyExists: the name is taken and `overwrite` is False.
    """
    path = inside(directory, name)
    if overwrite:
        fd, temporary = tempfile.mkstemp(dir=directory, prefix=".xcomm-", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return path
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    flags |= getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags, 0o644)
    except FileExistsError:
        raise FileAlreadyExists(
            f"{name} exists in {directory}; pass overwrite=True to replace it", path=str(path)
        ) from None
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return path
