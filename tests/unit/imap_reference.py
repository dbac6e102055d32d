"""The byte-at-a-time IMAP reader that `xcomm.email._imap_parse` replaced with one
regular-expression match per token, kept as the oracle the fast reader must agree with
(`test_imap_fast_paths.py`): the same values and positions for any input, garbage included.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from xcomm.email._imap_parse import Token

_SPACE = b" \t\r\n"
_ATOM_END = b' \t\r\n()"{'
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
        elif c == 0x7B:  # {
            match = _LITERAL.match(data, pos)
            if match is None:
                end = pos + 1
                while end < n and data[end] not in _ATOM_END:
                    end += 1
                stack[-1].append(data[pos:end])
                pos = end
            else:
                start = match.end()
                pos = min(n, start + int(match.group(1)))
                stack[-1].append(data[start:pos])
        else:
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
            atom = data[pos:end]
            stack[-1].append(None if atom.upper() == b"NIL" else atom)
            pos = max(end, pos + 1)
        if one and len(stack) == 1:
            return stack[0], pos
    return stack[0], pos


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
                items = body[0]
                record: dict[str, Token] = {}
                for i in range(0, len(items) - 1, 2):
                    key = items[i]
                    if isinstance(key, bytes):
                        record[key.decode("ascii", "replace").upper()] = items[i + 1]
                yield record
