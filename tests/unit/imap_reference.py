"""The byte-at-a-time IMAP reader that `xcomm.email._imap_parse` replaced with one
regular-expression match per token, kept as the oracle the fast reader must agree with
(`test_imap_fast_paths.py`): the same values and positions for any input, garbage included.

Every atom and string is read here by the byte-by-byte readers (`_odd_token`, `_quoted`)
that the fast tokenizer keeps for the shapes its expression leaves out.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from xcomm.email._imap_parse import Token, _odd_token, _quoted, _record

_SPACE = b" \t\r\n"
_LITERAL = re.compile(rb"\{(\d+)\+?\}\r?\n")
_MAX_DEPTH = 64


def tokenize(data: bytes, pos: int = 0, *, one: bool = False) -> tuple[list[Token], int]:
    """What `_imap_parse.tokenize` returns, read one byte at a time."""
    stack: list[list[Token]] = [[]]
    n = len(data)
    while pos < n:
        c = data[pos]
        if c in _SPACE:
            pos += 1
            continue
        if c == 0x28:  # (
            pos += 1
            if len(stack) > _MAX_DEPTH:
                depth, pos = 1, pos  # skip the whole list
                while pos < n and depth:
                    depth += {0x28: 1, 0x29: -1}.get(data[pos], 0)
                    pos += 1
                continue
            new: list[Token] = []
            stack[-1].append(new)
            stack.append(new)
            continue
        if c == 0x29:  # )
            pos += 1
            if len(stack) > 1:
                stack.pop()
                if one and len(stack) == 1:
                    return stack[0], pos
            continue
        if c == 0x22:  # "
            value, pos = _quoted(data, pos + 1)
            stack[-1].append(value)
        elif c == 0x7B and (match := _LITERAL.match(data, pos)) is not None:  # {
            start = match.end()
            pos = min(n, start + int(match.group(1)))
            stack[-1].append(data[start:pos])
        else:  # an atom, or a `{` that opens no literal, read byte by byte
            atom, pos = _odd_token(data, pos)
            stack[-1].append(None if atom.upper() == b"NIL" else atom)
        if one and len(stack) == 1:
            return stack[0], pos
    return stack[0], pos


def fetch_records(data: bytes) -> Iterator[dict[str, Token]]:
    """What `_imap_parse.fetch_records` yields, with every token read by `tokenize` here."""
    pos, n = 0, len(data)
    while pos < n:
        values, pos = tokenize(data, pos, one=True)
        if not values:
            continue
        if len(values) == 1 and isinstance(values[0], bytes) and values[0].isdigit():
            kind, pos = tokenize(data, pos, one=True)
            if kind != [b"FETCH"] and kind != [b"fetch"]:
                continue
            body, pos = tokenize(data, pos, one=True)
            if body and isinstance(body[0], list):
                yield _record(body[0])
