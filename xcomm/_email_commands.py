"""What `xcomm send` and `xcomm search` do; `xcomm._cli` parses for them.

Both take `--provider NAME`, a section of the config file (`xcomm._config_file`). Exit
statuses: 0 done; 1 the provider failed (or refused recipients); 2 bad input (config file,
addresses, attachments, query), nothing sent; 130 interrupted. Results go to standard output,
errors to standard error as `xcomm: error: ...` (never a traceback).
"""

from __future__ import annotations

import asyncio
import shutil
import sys
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, Protocol, TextIO, cast

import msgspec

from xcomm._config_file import ProviderSettings, config_path, load_provider
from xcomm._console import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    EXIT_OK,
    caret,
    clip,
    error,
    fitted_table,
    streams,
    terminal_text,
)
from xcomm._errors import (
    CommunicationError,
    ConfigurationError,
    QuerySyntaxError,
    RecipientRejected,
    RejectedRecipient,
    ValidationError,
)
from xcomm._manager import CommManager
from xcomm._models import SendResult
from xcomm._provider_settings import KINDS
from xcomm._toml_file import SettingsFileError
from xcomm.email._query import EmailQuery, SortOrder

__all__ = ["Outgoing", "search", "send"]

_FROM_WIDTH = 32  # the From column's widest, so the subject gets the rest of the line
_JSON = msgspec.json.Encoder()


@dataclass(frozen=True)
class Outgoing:
    """The message `xcomm send` was asked to send, as given on the command line."""

    to: Sequence[str] = ()
    cc: Sequence[str] = ()
    bcc: Sequence[str] = ()
    subject: str = ""
    body: str | None = None
    body_file: str | None = None
    html_file: str | None = None
    attach: Sequence[str] = ()
    sender: str | None = None
    headers: Sequence[str] = ()


class _BadInput(Exception):
    """A command-line value is wrong (exit 2); the message says which and how to fix it."""


class _Mailbox(Protocol):
    async def search(self, query: EmailQuery, /, *, limit: int | None = None) -> Sequence[Any]:
        """Messages matching `query`."""


def _can(kind: str, able: Literal["send", "search"]) -> bool:
    spec = KINDS[kind]
    return spec.sends if able == "send" else spec.dialect is not None


def _provider(
    config: str | None, name: str, *, able: Literal["send", "search"]
) -> ProviderSettings:
    """The settings of provider `name`, which must be able to send or to search."""
    chosen = load_provider(config_path(config), name)
    if not _can(chosen.kind, able):
        others = [f"{n} ({k})" for n, k in chosen.kinds.items() if _can(k, able)]
        hint = f"; use one that can: {', '.join(others)}" if others else ""
        raise _BadInput(f"provider {name!r} is {chosen.kind}, which cannot {able}{hint}")
    return chosen


def _run(work: Callable[[], Coroutine[Any, Any, int]], err: TextIO) -> int:
    """Run `work` and turn an xcomm error into its message and exit status."""
    try:
        return asyncio.run(work())
    except SettingsFileError as exc:
        total = len(exc.problems) + exc.more
        print(exc, file=err)
        error(err, f"{total} problem{'s' * (total != 1)} in the config file; nothing was done")
        return EXIT_BAD_INPUT
    except (_BadInput, ConfigurationError, ValidationError) as exc:
        error(err, str(exc))
        if isinstance(exc, QuerySyntaxError):
            print(f"  {exc.expression}\n  {caret(exc.expression, exc.column)}", file=err)
        return EXIT_BAD_INPUT
    except CommunicationError as exc:
        error(err, str(exc))
        for refused in exc.rejected if isinstance(exc, RecipientRejected) else ():
            _print_refused(refused, err)
        return EXIT_FAILED


# -- send --------------------------------------------------------------------------------------


def send(
    message: Outgoing,
    *,
    provider: str,
    config: str | None = None,
    as_json: bool = False,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """`xcomm send`: build the message (every check before anything leaves), then send it."""
    out, err = streams(out, err)

    async def work() -> int:
        chosen = _provider(config, provider, able="send")
        async with CommManager() as comm:
            email = comm.email(chosen.kind, **chosen.settings)
            draft = email.compose()
            recipients = [_addresses(getattr(message, role)) for role in ("to", "cc", "bcc")]
            if not any(recipients):
                raise _BadInput("the message has no recipient: give --to, --cc or --bcc")
            draft.to(recipients[0]).cc(recipients[1]).bcc(recipients[2])
            if message.sender is not None:
                draft.from_(message.sender)
            elif email.default_sender is None:
                raise _BadInput(
                    f'the message has no sender: give --from, or set sender = "..." in '
                    f"[providers.{provider}]"
                )
            draft.subject(message.subject)
            if (text := _body(message)) is not None:
                draft.body(text)
            if message.html_file is not None:
                draft.html_body(_read("--html-file", message.html_file))
            for header in message.headers:
                name, colon, value = header.partition(":")
                if not colon:
                    raise _BadInput(f"--header takes 'Name: value', got {header!r}")
                draft.header(name.strip(" \t"), value.strip(" \t"))
            for path in message.attach:
                draft.attach(path)
            result = await draft.send()  # checks the whole message before contacting anyone
        _print_sent(result, out, as_json=as_json)
        return EXIT_FAILED if result.rejected else EXIT_OK

    return _run(work, err)


def _addresses(values: Sequence[str]) -> list[str]:
    """Each value split at the commas between addresses (not those in quotes or <...>)."""
    found: list[str] = []
    for value in values:
        depth, quoted, start = 0, False, 0
        for i, char in enumerate(value):
            if char == '"' and (i == 0 or value[i - 1] != "\\"):
                quoted = not quoted
            elif not quoted and char in "<>":
                depth += 1 if char == "<" else -1
            elif char == "," and not quoted and depth == 0:
                found.append(value[start:i])
                start = i + 1
        found.append(value[start:])
    return [part.strip() for part in found if part.strip()]


def _body(message: Outgoing) -> str | None:
    if message.body is not None and message.body_file is not None:
        raise _BadInput("give --body or --body-file, not both")
    if message.body == "-" or message.body_file == "-":
        return sys.stdin.read()
    if message.body_file is not None:
        return _read("--body-file", message.body_file)
    return message.body


def _read(option: str, path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise _BadInput(f"{option} {path}: {reason}; nothing was sent") from None


def _print_sent(result: SendResult, out: TextIO, *, as_json: bool) -> None:
    if as_json:
        out.write(_JSON.encode(result).decode() + "\n")
        return
    print(f"sent: {result.message_id or '(the provider gave no id)'}", file=out)
    print(f"accepted: {', '.join(result.accepted) or '(none)'}", file=out)
    for refused in result.rejected:
        _print_refused(refused, out)


def _print_refused(refused: RejectedRecipient, out: TextIO) -> None:
    code = "" if refused.code is None else f"{refused.code} "
    print(f"rejected: {refused.address}: {code}{refused.reason}", file=out)


# -- search ------------------------------------------------------------------------------------


def search(
    expression: str,
    *,
    provider: str,
    config: str | None = None,
    folder: str | None = None,
    limit: int = 50,
    as_json: bool = False,
    explain: bool = False,
    width: int | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """`xcomm search`: parse `expression`, search, print a table (or the plan, or JSON)."""
    out, err = streams(out, err)

    async def work() -> int:
        chosen = _provider(config, provider, able="search")
        query = EmailQuery.parse(expression)
        if folder is not None:
            query = query.folder(folder)
        query = query.sort_by("date", SortOrder.DESC)
        if explain:
            dialect = KINDS[chosen.kind].dialect
            assert dialect is not None
            print(f"query: {query.to_expression() or '(every message)'}", file=out)
            print(query.limit(limit).explain(dialect), file=out)
            return EXIT_OK
        async with CommManager() as comm:
            mailbox = cast(_Mailbox, comm.email(chosen.kind, **chosen.settings))
            found = list(await mailbox.search(query, limit=limit))
        _print_found(found, out, as_json=as_json, width=width)
        if not found and not as_json:
            print("no messages match", file=err)
        return EXIT_OK

    return _run(work, err)


def _size(size: int | None) -> str:
    if size is None:
        return ""
    for unit, scale in (("G", 1024**3), ("M", 1024**2), ("K", 1024)):
        if size >= scale:
            value = size / scale
            return f"{value:.1f}{unit}" if value < 10 else f"{value:.0f}{unit}"
    return str(size)


def _row(message: Any) -> dict[str, Any]:
    """What the table and `--json` show of a found message (IMAP or Gmail)."""
    when: datetime | None = message.date
    attachments = getattr(message, "attachments", None)
    return {
        "date": when,
        "from": "" if message.sender is None else str(message.sender),
        "subject": message.subject or "",
        "size": getattr(message, "size", None),
        "attachments": None if attachments is None else len(attachments),
    }


def _print_found(found: list[Any], out: TextIO, *, as_json: bool, width: int | None) -> None:
    rows = [_row(m) for m in found]
    if as_json:
        out.write(_JSON.encode(rows).decode() + "\n")
        return
    if not rows:
        return
    table = [["DATE", "FROM", "SUBJECT", "SIZE", "ATT"]] + [
        [
            "" if r["date"] is None else r["date"].astimezone().strftime("%Y-%m-%d %H:%M"),
            clip(terminal_text(r["from"]), _FROM_WIDTH),
            terminal_text(r["subject"]),
            _size(r["size"]),
            str(r["attachments"] or ""),
        ]
        for r in rows
    ]
    columns = width or shutil.get_terminal_size((100, 24)).columns
    for line in fitted_table(table, width=columns, right=(3, 4), shrink=(1, 2)):
        print(line, file=out)
