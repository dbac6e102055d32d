"""The recipients CSV of a campaign file: checked row by row, then streamed to the sender.

`check_csv` reads the whole file once, never holding it: the header must have the email column,
every row's address must parse (`xcomm._validation.parse_address`), and the columns must give
the variables the template needs. Problems go to a `report(file, line, message)` callback.
`read_recipients` streams the rows as recipient mappings for `send_campaign`.
"""

from __future__ import annotations

import csv
import itertools
import re
from collections.abc import AsyncIterator, Callable, Generator
from pathlib import Path

import anyio.to_thread

from xcomm._console import shown
from xcomm._errors import ValidationError
from xcomm._templates import Template, TemplateError, UnsubscribeSigner
from xcomm._validation import parse_address

__all__ = ["Report", "check_csv", "read_recipients"]

#: `report(file, line, message)`: where `check_csv` sends each problem.
Report = Callable[[str, int | None, str], None]
_BATCH = 500
_INVALID = re.compile(r"^invalid (?:email )?address .*?': ")


def _bad_address(value: str, exc: ValidationError) -> str:
    return f"bad address {value!r}: {_INVALID.sub('', str(exc))}"


def check_csv(
    path: Path,
    column: str,
    template: Template | None,
    unsubscribe: UnsubscribeSigner | None,
    report: Report,
) -> int:
    """Stream the CSV: the header, every address; then the template's variables. Rows read."""
    file = shown(path)
    rows = 0
    first: dict[str, str] | None = None
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header is None:
                report(file, 1, f"the file is empty; expected a header line with {column!r}")
                return 0
            fields = [name.strip().lower() for name in header]
            if column not in fields:
                hint = (
                    "set email_column in [campaign] to the column that holds the addresses"
                    if column == "email"
                    else "fix email_column in [campaign], or the header"
                )
                report(
                    file,
                    1,
                    f"no {column!r} column in the header (columns: {', '.join(fields[:12])}); "
                    + hint,
                )
                return 0
            index = fields.index(column)
            line = 1
            try:
                for row in reader:
                    line = reader.line_num
                    if not row:
                        continue
                    rows += 1
                    value = row[index] if index < len(row) else ""
                    try:
                        parse_address(value)
                    except ValidationError as exc:
                        report(file, line, _bad_address(value, exc))
                        continue
                    if first is None:
                        first = dict(zip(fields, row, strict=False))
            except csv.Error as exc:
                report(file, reader.line_num, f"not valid CSV: {exc}")
            except UnicodeDecodeError:
                report(file, line + 1, "not UTF-8 text (save the file as UTF-8)")
    except OSError as exc:
        report(file, None, f"cannot read the recipients: {exc.strerror or exc}")
        return rows
    if template is not None:
        _check_variables(template, unsubscribe, fields, first or {}, file, column, report)
    return rows


def _check_variables(
    template: Template,
    unsubscribe: UnsubscribeSigner | None,
    fields: list[str],
    first: dict[str, str],
    file: str,
    column: str,
    report: Report,
) -> None:
    """Report variables the template needs that no CSV column gives.

    `find_undeclared_variables` also names variables that have a `| default(...)`, so the
    suspects are rendered against the first row: only those that fail are reported.
    """
    compiled = template.compile(unsubscribe=unsubscribe)
    columns = {name for name in fields if name != column} | {"email"}
    suspects = set(compiled.variables) - columns
    if not suspects:
        return
    values: dict[str, object] = {name: first.get(name, "") for name in columns}
    values["email"] = first.get(column, "ada@example.com")
    for _ in range(len(suspects)):
        try:
            compiled.render(values, recipient=str(values["email"]), campaign_id="check")
            return
        except TemplateError as exc:
            name = exc.variable
            if name is None or name not in suspects:
                return  # a data problem of this row, reported per recipient when sending
            if name == "unsubscribe_url":
                report(
                    file,
                    1,
                    f"the {exc.part} template uses unsubscribe_url: set unsubscribe_url and "
                    "unsubscribe_secret_env in [campaign]",
                )
            else:
                report(
                    file,
                    1,
                    f"no {name!r} column, which the {exc.part} template uses (columns: "
                    f"{', '.join(fields[:12])}); add the column, or write "
                    f"{{{{ {name} | default('...') }}}} in the template",
                )
            values[name] = ""


def _rows(path: Path, column: str) -> Generator[dict[str, str], None, None]:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        fields = [name.strip().lower() for name in next(reader, [])]
        index = fields.index(column)
        for row in reader:
            if row:
                variables = {k: v for k, v in zip(fields, row, strict=False) if k != column}
                variables["email"] = row[index].strip()
                yield variables


async def read_recipients(path: Path, column: str) -> AsyncIterator[dict[str, str]]:
    """The CSV's rows as recipient mappings (`email` from `column`, plus the others), streamed
    in batches read off the event loop."""
    rows = _rows(path, column)
    try:
        while True:
            chunk = await anyio.to_thread.run_sync(lambda: list(itertools.islice(rows, _BATCH)))
            if not chunk:
                return
            for row in chunk:
                yield row
    finally:
        rows.close()
