"""Recipients of any shape, streamed in bounded batches.

A campaign's recipients may be a list, a generator, an async generator, `Contact`s, mappings
with an `email` column, or a CSV file. They are read lazily, `batch` at a time, so a
1,000,000-recipient campaign never holds its list in memory.
"""

from __future__ import annotations

import csv
import itertools
import os
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeAlias

import anyio.to_thread

from xcomm._errors import ConfigurationError, ValidationError
from xcomm._models import Address, Contact

__all__ = ["Recipient", "RecipientsSource", "recipient_batches"]

#: One recipient as given: an address, an `Address`, a `Contact`, or a mapping with "email".
RecipientLike: TypeAlias = str | Address | Contact | Mapping[str, Any]
#: What `send_campaign(recipients=...)` accepts.
RecipientsSource: TypeAlias = (
    Iterable[RecipientLike] | AsyncIterable[RecipientLike] | os.PathLike[str] | str
)

_EMAIL_COLUMNS = ("email", "address", "to", "e-mail")


class Recipient:
    """A normalised recipient: the address as given, its variables, and where it came from."""

    __slots__ = ("address", "origin", "variables")

    def __init__(self, address: str, variables: dict[str, Any], origin: str) -> None:
        self.address = address
        self.variables = variables
        self.origin = origin


def _normalise(
    item: object, personalization: Mapping[str, Mapping[str, Any]], origin: str
) -> Recipient:
    if isinstance(item, str):
        address = item.strip()
        variables: dict[str, Any] = {}
    elif isinstance(item, Address):
        address = item.email
        variables = {"name": item.name} if item.name else {}
    elif isinstance(item, Contact):
        if not item.email:
            raise ValidationError(f"{origin}: contact {item.name!r} has no email address")
        address = item.email
        variables = {"name": item.name, **item.metadata}
    elif isinstance(item, Mapping):
        column = next((c for c in _EMAIL_COLUMNS if item.get(c)), None)
        if column is None:
            raise ValidationError(
                f"{origin}: a recipient mapping needs an 'email' key; got keys {sorted(item)[:8]}"
            )
        address = str(item[column]).strip()
        variables = {k: v for k, v in item.items() if k != column}
    else:
        raise ValidationError(
            f"{origin}: a recipient must be an address, Address, Contact or mapping, "
            f"not {type(item).__name__}"
        )
    extra = personalization.get(address) or personalization.get(address.lower())
    if extra:
        variables = {**variables, **extra}
    variables.setdefault("email", address)
    return Recipient(address, variables, origin)


def _is_csv_path(source: object) -> bool:
    if isinstance(source, os.PathLike):
        return True
    return isinstance(source, str) and source.lower().endswith(".csv")


def _csv_rows(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    """Rows with their line numbers; the header must name an email column."""
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        fields = [f.strip().lower() for f in (reader.fieldnames or [])]
        if not any(c in fields for c in _EMAIL_COLUMNS):
            raise ValidationError(
                f"{path}:1: the CSV header needs an 'email' column; found {fields[:8]}"
            )
        reader.fieldnames = fields
        for row in reader:
            yield reader.line_num, {k: v for k, v in row.items() if k is not None}


async def recipient_batches(
    source: RecipientsSource,
    personalization: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    batch: int = 500,
) -> AsyncIterator[list[Recipient | ValidationError]]:
    """Yield recipients `batch` at a time; a malformed entry comes as a `ValidationError`.

    Bad entries do not stop the stream: the sender records them as failed and goes on.
    """
    data = personalization or {}
    if _is_csv_path(source):
        path = Path(os.fspath(source))  # type: ignore[arg-type]
        if not await anyio.to_thread.run_sync(path.is_file):
            raise ConfigurationError(
                f"recipients CSV {str(path)!r} does not exist or is not a file"
            )
        rows = _csv_rows(path)
        while True:
            chunk = await anyio.to_thread.run_sync(lambda: list(itertools.islice(rows, batch)))
            if not chunk:
                return
            yield [_safe(row, data, f"{path}:{line}") for line, row in chunk]
    elif isinstance(source, AsyncIterable):
        out: list[Recipient | ValidationError] = []
        number = 0
        async for item in source:
            number += 1
            out.append(_safe(item, data, f"recipient #{number}"))
            if len(out) >= batch:
                yield out
                out = []
        if out:
            yield out
    elif isinstance(source, Iterable) and not isinstance(source, str | bytes):
        items: Iterator[RecipientLike] = iter(source)
        number = 0
        while True:
            given = list(itertools.islice(items, batch))
            if not given:
                return
            yield [
                _safe(item, data, f"recipient #{number + i + 1}") for i, item in enumerate(given)
            ]
            number += len(given)
    else:
        raise ConfigurationError(
            "recipients must be an iterable or async iterable of addresses, Contacts or "
            f"mappings, or a path to a CSV file; got {type(source).__name__}"
        )


def _safe(
    item: object, data: Mapping[str, Mapping[str, Any]], origin: str
) -> Recipient | ValidationError:
    try:
        return _normalise(item, data, origin)
    except ValidationError as exc:
        return exc
