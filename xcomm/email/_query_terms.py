"""The words of the query expression language: what each `field:value` means, and how each
condition is written back (`xcomm.email._query_expr` has the grammar).

`FIELDS[name](value, today)` builds the condition of `name:value` (raising `ValidationError`
for a bad value); `render_leaf(condition)` writes it as a term that parses back to it.
"""

from __future__ import annotations

import calendar
import difflib
import re
from collections.abc import Callable
from datetime import date, timedelta

from xcomm._errors import ValidationError
from xcomm.email import _query_ast as ast

__all__ = ["FIELDS", "OPERATORS", "UNREAD", "render_leaf"]

_SAFE = re.compile(r"[\w@.+/=$<>'#&*!?,;%~^-]+")
_SIZE = re.compile(r"(\d+)\s*([KMG]?)B?", re.IGNORECASE)
_AGE = re.compile(r"(\d+)([dwmy])", re.IGNORECASE)
_SLASH_DATE = re.compile(r"(\d{4})/(\d{1,2})/(\d{1,2})")
#: Words that are operators when written in capitals, unquoted.
OPERATORS = ("OR", "AND", "NOT")
_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}

#: `is:` values and the condition each stands for.
_IS: dict[str, ast.Node] = {
    "read": ast.Flag("\\Seen"),
    "unread": ast.Not(ast.Flag("\\Seen")),
    "starred": ast.Flag("\\Flagged"),
    "important": ast.Flag("$Important"),
    "answered": ast.Flag("\\Answered"),
    "draft": ast.Flag("\\Draft"),
    "deleted": ast.Flag("\\Deleted"),
}
#: `is:unread`, the one negation written as a single term.
UNREAD = _IS["unread"]
_LEVELS: dict[str, ast.PriorityLevel] = {"high": "high", "normal": "normal", "low": "low"}
_FLAG_NAMES = {node: name for name, node in _IS.items() if isinstance(node, ast.Flag)}


# ---- reading ---------------------------------------------------------------------------------

Maker = Callable[[str, date], ast.Node]


def _text_field(kind: Callable[[str], ast.Node]) -> Maker:
    return lambda value, today: kind(ast.check_text("the value", value))


def _is(value: str, today: date) -> ast.Node:
    node = _IS.get(value.lower())
    if node is None:
        close = difflib.get_close_matches(value.lower(), list(_IS), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValidationError(f"expected one of {', '.join(_IS)}, got {value!r}{hint}")
    return node


def _has(value: str, today: date) -> ast.Node:
    if value.lower() != "attachment":
        raise ValidationError(f"expected has:attachment, got has:{value}")
    return ast.HasAttachment()


def _size(value: str) -> int:
    match = _SIZE.fullmatch(value.strip())
    if match is None:
        raise ValidationError(f"expected a size such as 500, 10K or 1M (bytes), got {value!r}")
    return int(match.group(1)) * _UNITS[match.group(2).upper()]


def _day(value: str) -> date:
    if slash := _SLASH_DATE.fullmatch(value):
        value = "-".join(f"{int(part):02d}" for part in slash.groups())
    try:
        return ast.to_day("a date", value)
    except ValidationError:
        raise ValidationError(f"expected a date such as 2024-01-31, got {value!r}") from None


def _ago(value: str, today: date) -> date:
    match = _AGE.fullmatch(value)
    if match is None:
        raise ValidationError(f"expected an age such as 7d, 2w, 3m or 1y, got {value!r}")
    count, unit = int(match.group(1)), match.group(2).lower()
    if unit in "dw":
        return today - timedelta(days=count * (7 if unit == "w" else 1))
    months = today.year * 12 + today.month - 1 - count * (12 if unit == "y" else 1)
    year, month = divmod(months, 12)
    if year < 1:
        raise ValidationError(f"{value!r} reaches before year 1")
    last = calendar.monthrange(year, month + 1)[1]
    return date(year, month + 1, min(today.day, last))


def _on(value: str, today: date) -> ast.Node:
    day = _day(value)
    return ast.and_(ast.ReceivedSince(day), ast.ReceivedBefore(ast.next_day(day)))


def _header(value: str, today: date) -> ast.Node:
    name, _, wanted = value.partition("=")
    return ast.Header(*ast.check_header(name, wanted))


def _priority(value: str, today: date) -> ast.Node:
    level = _LEVELS.get(value.lower())
    if level is None:
        raise ValidationError(f"expected high, normal or low, got {value!r}")
    return ast.Priority(level)


#: Every field, by name: what `name:value` becomes.
FIELDS: dict[str, Maker] = {
    "from": _text_field(ast.From),
    "to": _text_field(ast.To),
    "cc": _text_field(ast.Cc),
    "subject": _text_field(ast.Subject),
    "body": _text_field(ast.Body),
    "is": _is,
    "has": _has,
    "filename": _text_field(ast.AttachmentName),
    "label": _text_field(ast.Label),
    "in": _text_field(ast.Folder),
    "folder": _text_field(ast.Folder),
    "keyword": lambda value, today: ast.Flag(ast.check_flag(value)),
    "larger": lambda value, today: ast.Larger(_size(value)),
    "smaller": lambda value, today: ast.Smaller(_size(value)),
    "since": lambda value, today: ast.ReceivedSince(_day(value)),
    "after": lambda value, today: ast.ReceivedSince(_day(value)),
    "before": lambda value, today: ast.ReceivedBefore(_day(value)),
    "on": _on,
    "newer_than": lambda value, today: ast.ReceivedSince(_ago(value, today)),
    "older_than": lambda value, today: ast.ReceivedBefore(_ago(value, today)),
    "sent_since": lambda value, today: ast.SentSince(_day(value)),
    "sent_before": lambda value, today: ast.SentBefore(_day(value)),
    "header": _header,
    "msgid": lambda value, today: ast.MessageId(ast.check_message_id(value)),
    "rfc822msgid": lambda value, today: ast.MessageId(ast.check_message_id(value)),
    "thread": _text_field(ast.Thread),
    "priority": _priority,
}


# ---- writing ---------------------------------------------------------------------------------


def render_leaf(leaf: ast.Leaf) -> str:
    """`leaf` as one term: `from:bob`, `"free text"`, `larger:1M`."""
    match leaf:
        case ast.From(v):
            return f"from:{_value(v)}"
        case ast.To(v):
            return f"to:{_value(v)}"
        case ast.Cc(v):
            return f"cc:{_value(v)}"
        case ast.Subject(v):
            return f"subject:{_value(v)}"
        case ast.Body(v):
            return f"body:{_value(v)}"
        case ast.Text(v):
            bare = _SAFE.fullmatch(v) and not v.startswith("-") and v not in OPERATORS
            return v if bare else _quote(v)
        case ast.Header(name, value):
            if "=" in name:
                raise ValidationError(
                    f"the header name {name!r} contains '=', which a header: term cannot write"
                )
            return f"header:{_value(f'{name}={value}' if value else name)}"
        case ast.HasAttachment():
            return "has:attachment"
        case ast.AttachmentName(v):
            return f"filename:{_value(v)}"
        case ast.ReceivedSince(d):
            return f"since:{d.isoformat()}"
        case ast.ReceivedBefore(d):
            return f"before:{d.isoformat()}"
        case ast.SentSince(d):
            return f"sent_since:{d.isoformat()}"
        case ast.SentBefore(d):
            return f"sent_before:{d.isoformat()}"
        case ast.Flag(name):
            known = _FLAG_NAMES.get(leaf)
            return f"is:{known}" if known else f"keyword:{_value(name)}"
        case ast.Label(name):
            return f"label:{_value(name)}"
        case ast.Folder(name):
            return f"in:{_value(name)}"
        case ast.Larger(n):
            return f"larger:{_bytes(n)}"
        case ast.Smaller(n):
            return f"smaller:{_bytes(n)}"
        case ast.Priority(level):
            return f"priority:{level}"
        case ast.MessageId(v):
            return f"msgid:{_value(f'<{v}>')}"
        case ast.Thread(v):
            return f"thread:{_value(v)}"
    raise AssertionError(leaf)  # pragma: no cover


def _bytes(size: int) -> str:
    """`1048576` as `1M`, `1536` as `1536`: the largest unit that divides it exactly."""
    for unit in ("G", "M", "K"):
        if size and size % _UNITS[unit] == 0:
            return f"{size // _UNITS[unit]}{unit}"
    return str(size)


def _value(text: str) -> str:
    return text if _SAFE.fullmatch(text) else _quote(text)


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
