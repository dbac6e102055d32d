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

    __slots__ = ("_number", "_where", "address", "variables")

    def __init__(
        self, address: str, variables: dict[str, Any], where: str, number: int | None = None
    ) -> None:
        self.address = address
        self.variables = variables
        self._where, self._number = where, number

    @property
    def origin(self) -> str:
        """Where it came from, for messages: "recipient #12", "people.csv:13"."""
        return self._where if self._number is None else f"{self._where}{self._number}"


def _normalise(
    item: object, personalization: Mapping[str, Mapping[str, Any]], where: str, number: int
) -> Recipient:
    if type(item) is dict and item.get("email"):  # the common case: a row with "email"
        address = str(item["email"]).strip()
        variables: dict[str, Any] = item.copy()
        del variables["email"]
    elif isinstance(item, str):
        address = item.strip()
        variables = {}
    elif isinstance(item, Address):
        address = item.email
        variables = {"name": item.name} if item.name else {}
    elif isinstance(item, Contact):
        if not item.email:
            raise ValidationError(f"{where}{number}: contact {item.name!r} has no email address")
        address = item.email
        variables = {"name": item.name, **item.metadata}
    elif isinstance(item, Mapping):
        column = next((c for c in _EMAIL_COLUMNS if item.get(c)), None)
        if column is None:
            raise ValidationError(
                f"{where}{number}: a recipient mapping needs an 'email' key; got keys "
                f"{sorted(item)[:8]}"
            )
        address = str(item[column]).strip()
        variables = {k: v for k, v in item.items() if k != column}
    else:
        raise ValidationError(
            f"{where}{number}: a recipient must be an address, Address, Contact or mapping, "
            f"not {type(item).__name__}"
        )
    if personalization:
        extra = personalization.get(address) or personalization.get(address.lower())
        if extra:
            variables = {**variables, **extra}
    variables.setdefault("email", address)
    return Recipient(address, variables, where, number)


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
            where = f"{path}:"
            yield [_safe(row, data, where, line) for line, row in chunk]
    elif isinstance(source, AsyncIterable):
        out: list[Recipient | ValidationError] = []
        number = 0
        async for item in source:
            number += 1
            out.append(_safe(item, data, "recipient #", number))
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
            yield [_safe(item, data, "recipient #", n) for n, item in enumerate(given, number + 1)]
            number += len(given)
    else:
        raise ConfigurationError(
            "recipients must be an iterable or async iterable of addresses, Contacts or "
            f"mappings, or a path to a CSV file; got {type(source).__name__}"
        )


def _safe(
    item: object, data: Mapping[str, Mapping[str, Any]], where: str, number: int
) -> Recipient | ValidationError:
    try:
        return _normalise(item, data, where, number)
    except ValidationError as exc:
        return exc
