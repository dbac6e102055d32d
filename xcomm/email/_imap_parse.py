"""Pure IMAP response parsing: S-expressions with literals, FETCH records, BODYSTRUCTURE,
LIST lines, and folder names in modified UTF-7 (RFC 3501 §5.1.3).

Nothing here does I/O or raises on bad input: a server (or a sender) that writes garbage
gets the parts that could be read, the rest is dropped.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator, Sequence
from typing import Union

import msgspec

from xcomm.email._headers import decode_words

__all__ = [
    "BodyPart",
    "Token",
    "body_parts",
    "decode_folder",
    "encode_folder",
    "fetch_records",
    "join_lines",
    "parse_bodystructure",
    "parse_list",
    "tokenize",
]

Token = Union[bytes, None, list["Token"]]  # noqa: UP007 (a recursive alias needs Union)

_ATOM_END = b' \t\r\n()"{'
#: A literal's `{size}`; more than 18 digits is no literal (an atom), never a huge `int()`.
_LITERAL = re.compile(rb"\{(\d{1,18})\+?\}\r?\n")
_MAX_DEPTH = 64  # deeper nesting is dropped, not recursed into


def join_lines(lines: Sequence[bytes | bytearray]) -> bytes:
    """One buffer from the lines aioimaplib collected for a command (its `response.lines`
    without the last, the tagged status text): a literal follows the `{n}` line that
    announced it, so the CRLF between them puts it back in place."""
    return b"\r\n".join(bytes(line) for line in lines)


def tokenize(data: bytes, pos: int = 0, *, one: bool = False) -> tuple[list[Token], int]:
    """Parse IMAP values from `data[pos:]`: atoms and strings as bytes, `NIL` as None,
    parenthesised lists as lists. `BODY[HEADER.FIELDS (A B)]<0>` stays one atom.

    With `one=True`, stops after the first complete top-level value. Returns the values
    and the position after them. Unbalanced input closes what is open at the end.

    One regular-expression match per token; a literal is sliced out whole. The rare
    shapes the expression leaves out (escapes in a string, nested or unclosed `[`, a `{`
    that opens no literal) go through `_odd_token`.
    """
    stack: list[list[Token]] = [[]]
    top = stack[0]
    n = len(data)
    scan = _TOKEN.match
    while True:
        found = scan(data, pos)
        if found is None:  # only whitespace is left
            return stack[0], max(pos, n)
        kind = found.lastindex
        pos = found.end()
        if kind == _ATOM:
            atom = found.group(_ATOM)
            top.append(None if atom in _NIL else atom)
        elif kind == _STRING:
            top.append(found.group(_STRING))
        elif kind == _OPEN:
            if len(stack) > _MAX_DEPTH:
                pos = _skip_list(data, pos)
                continue
            new: list[Token] = []
            top.append(new)
            stack.append(new)
            top = new
            continue
        elif kind == _CLOSE:
            if len(stack) > 1:
                stack.pop()
                top = stack[-1]
                if one and len(stack) == 1:
                    return top, pos
            continue
        elif kind == _LITERAL_AT:
            start = pos
            pos = min(n, start + int(found.group(_LITERAL_AT)))
            top.append(data[start:pos])
        else:
            value, pos = _odd_token(data, found.start(_ODD))
            top.append(value)
        if one and len(stack) == 1:
            return top, pos


_TOKEN = re.compile(
    rb"[ \t\r\n]*+(?:"
    rb"((?:[^ \t\r\n()\"{\[]++|\[[^\[\]\r\n]*+\])++)(?!\[)"  # an atom, `[...]` sections in it
    rb'|"([^"\\\r\n]*+)"'  # a string without escapes
    rb"|(\()"
    rb"|(\))"
    rb"|\{(\d{1,18})\+?\}\r?\n"  # a literal: its size (see `_LITERAL`)
    rb"|(.)"  # anything else: `_odd_token`
    rb")",
    re.DOTALL,
)
_ATOM, _STRING, _OPEN, _CLOSE, _LITERAL_AT, _ODD = range(1, 7)
_NIL = frozenset({b"NIL", b"NIl", b"NiL", b"Nil", b"nIL", b"nIl", b"niL", b"nil"})


def _skip_list(data: bytes, pos: int) -> int:
    """The position after the list opened just before `pos` (too deep to be kept)."""
    depth, n = 1, len(data)
    while pos < n and depth:
        depth += {0x28: 1, 0x29: -1}.get(data[pos], 0)
        pos += 1
    return pos


def _odd_token(data: bytes, pos: int) -> tuple[bytes, int]:
    """A string with escapes, an atom with nested or unclosed `[`, or a `{` that opens no
    literal (kept as an atom up to the next delimiter)."""
    n = len(data)
    c = data[pos]
    if c == 0x22:  # "
        return _quoted(data, pos + 1)
    if c == 0x7B:  # {
        end = pos + 1
        while end < n and data[end] not in _ATOM_END:
            end += 1
        return data[pos:end], end
    end, depth = pos, 0
    while end < n:
        b = data[end]
        if b == 0x5B:  # [ ... ] may hold spaces and parentheses
            depth += 1
        elif b == 0x5D and depth:
            depth -= 1
        elif (not depth and b in _ATOM_END) or (depth and b in b"\r\n"):
            break
        end += 1
    return data[pos:end], end


def _quoted(data: bytes, pos: int) -> tuple[bytes, int]:
    out = bytearray()
    n = len(data)
    while pos < n:
        c = data[pos]
        if c == 0x22:
            return bytes(out), pos + 1
        if c == 0x5C and pos + 1 < n:  # backslash
            pos += 1
            c = data[pos]
        elif c in b"\r\n":  # unterminated on this line
            return bytes(out), pos
        out.append(c)
        pos += 1
    return bytes(out), pos


def fetch_records(data: bytes) -> Iterator[dict[str, Token]]:
    """Each `N FETCH (KEY value ...)` record in `data` as {"UID": b"5", "FLAGS": [...], ...}
    (keys upper-cased; `BODY[...]` keys as sent, upper-cased). Other lines are skipped."""
    pos, n = 0, len(data)
    head = _FETCH_HEAD.match
    while pos < n:
        found = head(data, pos)
        if found is not None:  # the usual `N FETCH `, read without tokenizing it
            pos = found.end()
        else:
            values, pos = tokenize(data, pos, one=True)
            if not values:
                continue
            if not (len(values) == 1 and isinstance(values[0], bytes) and values[0].isdigit()):
                continue
            kind, pos = tokenize(data, pos, one=True)
            if kind != [b"FETCH"] and kind != [b"fetch"]:
                continue
        body, pos = tokenize(data, pos, one=True)
        if body and isinstance(body[0], list):
            yield _record(body[0])


def _record(items: list[Token]) -> dict[str, Token]:
    """A FETCH record's `(KEY value ...)` list as {"KEY": value} (keys upper-cased)."""
    record: dict[str, Token] = {}
    for i in range(0, len(items) - 1, 2):
        key = items[i]
        if isinstance(key, bytes):
            record[key.decode("ascii", "replace").upper()] = items[i + 1]
    return record


_FETCH_HEAD = re.compile(rb"[ \t\r\n]*+[0-9]++[ \t\r\n]++(?:FETCH|fetch)(?=[ \t\r\n()\"{])")


# -- BODYSTRUCTURE ----------------------------------------------------------------------------


class BodyPart(msgspec.Struct, frozen=True, kw_only=True):
    """One leaf of a BODYSTRUCTURE: where it is (`section`, e.g. "1.2") and what it is."""

    section: str
    content_type: str
    params: dict[str, str] = msgspec.field(default_factory=dict)
    encoding: str = "7bit"
    size: int = 0
    content_id: str | None = None
    disposition: str | None = None
    filename: str | None = None


def _text(token: Token) -> str:
    if isinstance(token, bytes):
        return decode_words(token.decode("utf-8", "replace"))
    return ""


def _int(token: Token) -> int:
    return int(token) if isinstance(token, bytes) and token.isdigit() else 0


def _params(token: Token) -> dict[str, str]:
    """A parameter list, with RFC 2231 (`name*`, `name*0*`) and RFC 2047 values decoded."""
    if not isinstance(token, list):
        return {}
    raw: dict[str, str] = {}
    for i in range(0, len(token) - 1, 2):
        k, v = token[i], token[i + 1]
        if isinstance(k, bytes) and isinstance(v, bytes):
            raw[k.decode("ascii", "replace").lower()] = v.decode("utf-8", "replace")
    out: dict[str, str] = {}
    continued: dict[str, list[tuple[int, str, bool]]] = {}
    for key, value in raw.items():
        name, star, rest = key.partition("*")
        if not star:
            out[name] = decode_words(value)
            continue
        index, star2, _ = rest.partition("*")
        number = int(index) if index.isdigit() else 0
        continued.setdefault(name, []).append((number, value, bool(star2) or not index))
    for name, pieces in continued.items():
        pieces.sort()
        charset, chunks = "utf-8", []
        for i, (_, piece, encoded) in enumerate(pieces):
            if encoded:
                if i == 0 and piece.count("'") >= 2:
                    charset, _, piece = piece.split("'", 2)
                piece = _percent_decode(piece, charset or "utf-8")
            chunks.append(piece)
        out[name] = "".join(chunks)  # the RFC 2231 form wins over a plain one
    return out


def _percent_decode(value: str, charset: str) -> str:
    raw = re.sub(rb"%([0-9A-Fa-f]{2})", lambda m: bytes([int(m.group(1), 16)]), value.encode())
    try:
        return raw.decode(charset, "replace")
    except LookupError:
        return raw.decode("utf-8", "replace")


def parse_bodystructure(token: Token, section: str = "") -> list[BodyPart]:
    """The leaves of a BODYSTRUCTURE, depth first, with their IMAP section numbers.

    A message/rfc822 part is one leaf (the attached message), not descended into.
    """
    parts: list[BodyPart] = []
    _walk(token, section, parts, 0)
    return parts


def _walk(token: Token, section: str, parts: list[BodyPart], depth: int) -> None:
    if not isinstance(token, list) or not token or depth > _MAX_DEPTH:
        return
    if isinstance(token[0], list):  # multipart: children, then the subtype
        for number, child in enumerate(token, 1):
            if not isinstance(child, list):
                break
            _walk(child, f"{section}.{number}" if section else str(number), parts, depth + 1)
        return
    fields = [*token, *([None] * 10)]
    mime = f"{_text(fields[0]).lower() or 'text'}/{_text(fields[1]).lower() or 'plain'}"
    params = _params(fields[2])
    extension = 7  # where body-ext-1part starts: after md5 for basic parts
    if mime.startswith("text/"):
        extension = 8  # + lines
    elif mime == "message/rfc822":
        extension = 10  # + envelope, body, lines
    disposition, filename = None, None
    dsp = fields[extension + 1] if len(token) > extension + 1 else None
    if isinstance(dsp, list) and dsp and isinstance(dsp[0], bytes):
        disposition = dsp[0].decode("ascii", "replace").lower()
        filename = _params(dsp[1] if len(dsp) > 1 else None).get("filename")
    content_id = _text(fields[3]).strip() or None
    parts.append(
        BodyPart(
            section=section or "1",
            content_type=mime,
            params=params,
            encoding=_text(fields[5]).lower() or "7bit",
            size=_int(fields[6]),
            content_id=content_id,
            disposition=disposition,
            filename=filename or params.get("name"),
        )
    )


def body_parts(
    parts: Sequence[BodyPart],
) -> tuple[BodyPart | None, BodyPart | None, list[BodyPart]]:
    """The text body, the HTML body and the attachments among a message's leaves.

    The first text/plain and text/html leaves that are not attachments are the bodies;
    attachments are leaves with an attachment disposition or a file name, and non-text
    leaves (inline images among them).
    """
    text = html = None
    attachments: list[BodyPart] = []
    for part in parts:
        attached = part.disposition == "attachment" or part.filename is not None
        if not attached and part.content_type == "text/plain" and text is None:
            text = part
        elif not attached and part.content_type == "text/html" and html is None:
            html = part
        elif attached or not part.content_type.startswith("text/"):
            attachments.append(part)
    return text, html, attachments


# -- LIST and folder names ----------------------------------------------------------------------


def parse_list(data: bytes) -> list[tuple[tuple[str, ...], str | None, str]]:
    """`(flags, delimiter, name)` for each LIST line in `data` (names decoded from mUTF-7)."""
    out = []
    for line in _lines_with_literals(data):
        values, _ = tokenize(line)
        if len(values) < 3 or not isinstance(values[0], list):
            continue
        flags = tuple(f.decode("ascii", "replace") for f in values[0] if isinstance(f, bytes))
        delimiter = values[1].decode("ascii", "replace") if isinstance(values[1], bytes) else None
        name = values[2]
        if isinstance(name, bytes):
            out.append((flags, delimiter, decode_folder(name.decode("utf-8", "replace"))))
    return out


def _lines_with_literals(data: bytes) -> Iterator[bytes]:
    """Split on CRLF, keeping a literal (and the rest of its line) with the line that
    announced it."""
    pos, n = 0, len(data)
    start = 0
    while pos < n:
        end = data.find(b"\r\n", pos)
        if end < 0:
            break
        match = _LITERAL.search(data, pos, end + 2)
        if match is not None and match.end() == end + 2:
            pos = match.end() + int(match.group(1))
            continue
        yield data[start:end]
        start = pos = end + 2
    if start < n:
        yield data[start:]


def encode_folder(name: str) -> str:
    """A folder name in IMAP's modified UTF-7 (`Entwürfe` -> `Entw&APw-rfe`)."""
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            chunk = "".join(pending).encode("utf-16-be")
            out.append("&" + base64.b64encode(chunk).decode().rstrip("=").replace("/", ",") + "-")
            pending.clear()

    for ch in name:
        if 0x20 <= ord(ch) <= 0x7E:
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            pending.append(ch)
    flush()
    return "".join(out)


_MUTF7 = re.compile(r"&([A-Za-z0-9+,]*)-")


def decode_folder(name: str) -> str:
    """A folder name from modified UTF-7; text that is not valid mUTF-7 is kept as it is."""

    def one(match: re.Match[str]) -> str:
        chunk = match.group(1)
        if not chunk:
            return "&"
        padded = chunk.replace(",", "/") + "=" * (-len(chunk) % 4)
        try:
            return base64.b64decode(padded).decode("utf-16-be")
        except (ValueError, UnicodeDecodeError):
            return match.group(0)

    return _MUTF7.sub(one, name) if "&" in name else name
