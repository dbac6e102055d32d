"""Render an `EmailMessage` to RFC 5322 / MIME bytes: pure, synchronous and fast.

The bytes are written directly (no `email` package): CRLF line endings, header lines folded
to 78 characters, RFC 2047 encoded-words for non-ASCII header text (or raw UTF-8 headers in
RFC 6532 mode), 7bit / quoted-printable text parts, base64 attachments and RFC 2231 file
names. Structure:

```
mixed                      only when there are attachments
└── alternative            only when there are text and HTML
    ├── text/plain
    └── related            only when there are inline parts
        ├── text/html
        └── inline parts
```
"""

from __future__ import annotations

import binascii
import itertools
import os
import re
import secrets
from collections.abc import Iterable
from datetime import UTC, datetime
from functools import cache, lru_cache
from typing import cast
from urllib.parse import quote

from xcomm._errors import ValidationError
from xcomm._models import Address, Attachment, EmailMessage
from xcomm._validation import (
    STRUCTURAL_HEADERS,
    ascii_domain,
    ascii_email,
    check_content_id,
    check_content_type,
    check_header_name,
    check_no_crlf,
    quote_display_name,
    safe_attachment_filename,
)

__all__ = ["format_date", "new_message_id", "render_message", "with_bcc"]

_MAX_LINE = 78  # RFC 5322 "SHOULD" limit for header lines
_MAX_WORD = 75  # RFC 2047 limit for one encoded-word
_LONG_WORD = 900  # unfoldable words longer than this are encoded so lines stay under 998
_MAX_BODY_LINE = 998
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
#: Headers only the renderer writes (Bcc never: it would reveal the blind copies).
_FORBIDDEN = (
    STRUCTURAL_HEADERS | {"from", "to", "cc", "bcc", "subject", "reply-to", "date"} | {"message-id"}
)
#: Custom headers whose syntax is not free text: never written as encoded-words.
_STRUCTURED = frozenset(
    {"list-unsubscribe", "list-unsubscribe-post", "list-id", "list-post", "list-help"}
) | {"list-archive", "list-owner", "list-subscribe", "references", "in-reply-to", "archived-at"}
_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-]{1,60}")
_Q_SAFE = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!*+-/"
# RFC 2047 "Q" encoding restricted to the characters allowed in a phrase (section 5 (3)).
_Q = tuple(chr(b) if b in _Q_SAFE else "_" if b == 32 else f"={b:02X}" for b in range(256))


def format_date(dt: datetime) -> str:
    """Format `dt` as an RFC 5322 date (`Tue, 07 Jan 2025 09:30:00 +0100`); naive means UTC."""
    if dt.tzinfo is None or dt.tzinfo is UTC:
        # Messages built in the same second share their Date; naive and UTC datetimes never
        # compare equal, and format the same anyway.
        return _utc_date(dt)
    return _format_date(dt)


@lru_cache(maxsize=8)
def _utc_date(dt: datetime) -> str:
    return _format_date(dt.replace(tzinfo=UTC))


def _format_date(dt: datetime) -> str:
    offset = dt.utcoffset()
    minutes = round(offset.total_seconds() / 60) if offset is not None else 0
    sign = "-" if minutes < 0 else "+"
    hours, minutes = divmod(abs(minutes), 60)
    return (
        f"{_DAYS[dt.weekday()]}, {dt.day:02d} {_MONTHS[dt.month - 1]} {dt.year:04d} "
        f"{dt.hour:02d}:{dt.minute:02d}:{dt.second:02d} {sign}{hours:02d}{minutes:02d}"
    )


def new_message_id(domain: str) -> str:
    """Return a fresh, globally unique Message-ID: `<32 random hex digits@domain>`.

    A unicode domain is written in its IDNA (ASCII) form.
    """
    return f"<{secrets.token_hex(16)}@{ascii_domain(domain)}>"


# -- headers -------------------------------------------------------------------------------------


class _Run(str):
    """Header text that must be written as RFC 2047 encoded-words."""

    __slots__ = ()


def _word(data: bytes | bytearray, q: bool) -> str:
    if q:
        return "=?utf-8?q?" + "".join([_Q[b] for b in data]) + "?="
    return "=?utf-8?b?" + binascii.b2a_base64(data, newline=False).decode("ascii") + "?="


def _encoded_words(text: str, first: int) -> list[str]:
    """Encode `text` as UTF-8 encoded-words (Q or B, whichever is shorter), never splitting a
    character: the first word at most `first` characters long, the others at most 75."""
    data = text.encode("utf-8")
    q_len = sum(len(_Q[b]) for b in data)
    use_q = q_len <= 4 * ((len(data) + 2) // 3)
    if min(q_len, 4 * ((len(data) + 2) // 3)) + 12 <= first:
        return [_word(data, use_q)]
    words: list[str] = []
    chunk = bytearray()
    size, limit = 0, first - 12
    for ch in text:
        enc = ch.encode("utf-8")
        q_size = sum(len(_Q[b]) for b in enc) if use_q else 0
        grown = size + q_size if use_q else 4 * ((len(chunk) + len(enc) + 2) // 3)
        if grown > limit and chunk:
            words.append(_word(chunk, use_q))
            chunk, limit = bytearray(), _MAX_WORD - 12
            grown = q_size if use_q else 4 * ((len(enc) + 2) // 3)
        chunk += enc
        size = grown
    words.append(_word(chunk, use_q))
    return words


def _layout(name: str, tokens: Iterable[str]) -> str:
    """Join `tokens` after `name:` with single spaces, folding lines at 78 characters.

    A plain token is never split, and never folded onto a line of its own before the first
    token (a parser would keep the fold's space). A `_Run` becomes encoded-words: one word
    on this line or the next when it fits in 75 characters, else words that fill the lines.
    """
    lines: list[str] = []
    line = name + ":"
    first = True
    for token in tokens:
        room = _MAX_LINE - len(line) - 1
        if isinstance(token, _Run):
            words = _encoded_words(token, _MAX_WORD)
            if len(words[0]) > room:
                if first or (len(words) > 1 and room >= 24):  # fill this line
                    words = _encoded_words(token, max(min(room, _MAX_WORD), 24))
                else:
                    lines.append(line)
                    line = ""
            line += " " + words[0]
            for word in words[1:]:
                lines.append(line)
                line = " " + word
        elif token and len(token) > room and not first and line.strip():
            lines.append(line)
            line = " " + token
        else:
            line += " " + token
        first = False
    lines.append(line)
    return "\r\n".join(lines)


def _runs(words: list[str], flags: list[bool]) -> list[str]:
    """Merge consecutive flagged words (and the empty words between them) into `_Run`s."""
    tokens: list[str] = []
    run: list[str] = []
    for word, flag in zip(words, flags, strict=True):
        if flag or (run and not word):
            run.append(word)  # empty words keep runs of spaces inside the encoded text
            continue
        if run:
            tokens.append(_Run(" ".join(run)))
            run = []
        if not word and tokens and not isinstance(tokens[-1], _Run):
            tokens[-1] += " "  # keep runs of spaces on one line with the word before them
        else:
            tokens.append(word)
    if run:
        tokens.append(_Run(" ".join(run)))
    return tokens


def _unstructured(name: str, value: str, utf8: bool) -> str:
    """One folded header with free text (Subject, custom headers).

    Words that are not ASCII (unless `utf8`), look like encoded-words or cannot fit on a line
    are written as encoded-words; structured headers such as List-Unsubscribe are never
    encoded, their long words stay whole (up to the 998-octet limit).
    """
    if not value:
        return name + ":"
    plain = (utf8 or value.isascii()) and "=?" not in value and value[0] not in " \t"
    if plain and len(name) + 2 + len(value) <= _MAX_LINE:
        return f"{name}: {value}"
    words = value.split(" ")
    if name.lower() in _STRUCTURED:
        limit = _LONG_WORD
        long = [len(w) > limit // 4 and len(w.encode("utf-8")) > limit for w in words]
    else:
        long = [len(w) > _MAX_LINE - 1 for w in words]
        long[0] = len(name) + 2 + len(words[0]) > _MAX_LINE  # the first word stays on line 1
    if plain and not any(long):
        return _layout(name, _runs(words, long))
    flags: list[bool] = []
    leading = value[0] in " \t"
    for word, too_long in zip(words, long, strict=True):
        flags.append(leading or too_long or (not utf8 and not word.isascii()) or "=?" in word)
        leading = leading and not word.strip()
    return _layout(name, _runs(words, flags))


def _address_header(name: str, addresses: tuple[Address, ...], utf8: bool) -> str:
    """A folded address header (From, To, Cc, Reply-To)."""
    if len(addresses) == 1:
        addr = addresses[0]
        if type(addr.email) is str and (addr.name is None or type(addr.name) is str):
            if not addr.name:  # the common case, one bare address: `name: email`
                check_no_crlf("an email address", addr.email)
                return f"{name}: {addr.email if utf8 else ascii_email(addr.email)}"
            if name == "From":  # one sender for a whole campaign
                return _sender_header(addr, utf8)
    return _layout(name, _address_tokens(addresses, utf8))


@lru_cache(maxsize=64)
def _sender_header(sender: Address, utf8: bool) -> str:
    return _layout("From", _address_tokens((sender,), utf8))


def _address_tokens(addresses: Iterable[Address], utf8: bool) -> list[str]:
    tokens: list[str] = []
    for addr in addresses:
        check_no_crlf("an email address", addr.email)
        email = addr.email if utf8 else ascii_email(addr.email)
        if tokens:
            tokens[-1] += ","
        name = addr.name
        if name:
            check_no_crlf("a display name", name)
            if (utf8 or name.isascii()) and "=?" not in name and len(name) <= _MAX_LINE - 3:
                tokens.append(quote_display_name(name))
            elif name.strip() != name or "  " in name:
                tokens.append(_Run(name))
            else:  # atoms stay readable; other words (and the spaces between them) are encoded
                words = name.split(" ")
                tokens += _runs(words, [not _ATOM.fullmatch(w) or "=?" in w for w in words])
            tokens.append(f"<{email}>")
        else:
            tokens.append(email)
    return tokens


# -- parameters and parts ------------------------------------------------------------------------


def _param(key: str, value: str) -> list[str]:
    """`key="value"`, as RFC 2231 continuations / `key*=utf-8''...` when long or non-ASCII."""
    if value.isascii():
        esc = value.replace("\\", "\\\\").replace('"', '\\"')
        if len(esc) + len(key) <= 60:
            return [f'{key}="{esc}"']
        chunks = [value[i : i + 50] for i in range(0, len(value), 50)]
        return [
            f'{key}*{n}="' + c.replace("\\", "\\\\").replace('"', '\\"') + '"'
            for n, c in enumerate(chunks)
        ]
    pct = quote(value, safe="!#$&+-.^_`|~", encoding="utf-8")
    if len(pct) + len(key) <= 55:
        return [f"{key}*=utf-8''{pct}"]
    out: list[str] = []
    start = 0
    while start < len(pct):
        end = min(start + 50, len(pct))
        if "%" in pct[end - 2 : end] and end < len(pct):
            end = pct.rindex("%", end - 2, end)  # never split a %XX triple
        chunk = pct[start:end]
        out.append(f"{key}*{len(out)}*=utf-8''{chunk}" if not out else f"{key}*{len(out)}*={chunk}")
        start = end
    return out


def _param_header(name: str, value: str, params: list[str]) -> str:
    line = f"{name}: {value}"
    lines: list[str] = []
    for p in params:
        if len(line) + 2 + len(p) > _MAX_LINE:
            lines.append(line + ";")
            line = " " + p
        else:
            line += "; " + p
    lines.append(line)
    return "\r\n".join(lines)


# A part is (its header block, its body): a leaf's header lines as bytes, ending with the blank
# line, and its body bytes; or a multipart's subtype and its parts.
_Part = tuple["bytes | str", "bytes | list[_Part]"]


def _head(lines: list[str]) -> bytes:
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")


@cache
def _text_head(subtype: str, cte: str) -> bytes:
    """A text part's header block: the same for every message of a subtype and encoding."""
    return _head(
        [f'Content-Type: text/{subtype}; charset="utf-8"', f"Content-Transfer-Encoding: {cte}"]
    )


def _text_part(text: str, subtype: str) -> tuple[_Part, bool]:
    """A text part and whether it is 7bit (so boundaries must be checked against it)."""
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if text and not text.endswith("\n"):
        text += "\n"
    seven_bit = (
        text.isascii()
        and "\0" not in text
        and (len(text) <= _MAX_BODY_LINE or max(map(len, text.split("\n"))) <= _MAX_BODY_LINE)
    )
    if seven_bit:
        body, cte = text.replace("\n", "\r\n").encode("ascii"), "7bit"
    else:
        try:
            data = text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValidationError(
                f"the {subtype} body contains a character that is not valid unicode at "
                f"position {exc.start} (a lone surrogate); decode the text correctly first"
            ) from None
        body = binascii.b2a_qp(data, istext=True).replace(b"\n", b"\r\n")
        cte = "quoted-printable"
    return (_text_head(subtype, cte), body), seven_bit


def _base64(data: bytes) -> bytes:
    enc = binascii.b2a_base64(data, newline=False)
    if len(enc) <= 76:
        return enc + b"\r\n" if enc else b""
    return b"\r\n".join([enc[i : i + 76] for i in range(0, len(enc), 76)]) + b"\r\n"


def _attachment_part(att: Attachment) -> _Part:
    if att.content is None:
        raise ValidationError(
            f"the attachment {att.filename!r} has not been read; send the message through "
            "draft.send() (which reads files) or set Attachment.content"
        )
    filename = safe_attachment_filename(att.filename)
    check_content_type(att.content_type)
    headers = [
        _param_header("Content-Type", att.content_type, _param("name", filename)),
        "Content-Transfer-Encoding: base64",
        _param_header(
            "Content-Disposition",
            "inline" if att.inline else "attachment",
            _param("filename", filename),
        ),
    ]
    if att.content_id:
        check_content_id(att.content_id)
        headers.append(f"Content-ID: <{att.content_id}>")
    return _head(headers), _base64(att.content)


def _multipart(subtype: str, parts: list[_Part]) -> _Part:
    return subtype, parts


def _body(message: EmailMessage) -> tuple[_Part, list[bytes]]:
    """The message's MIME tree and the 7bit bodies that boundaries must not appear in."""
    seven: list[bytes] = []
    html = None if message.html is None else _text(message.html, "html", seven)
    plain = None
    if html is None or message.text is not None:
        plain = _text(message.text or "", "plain", seven)
    attachments = message.attachments
    inline = [a for a in attachments if a.inline] if attachments else []
    if html is not None and inline:
        html = _multipart("related", [html, *(_attachment_part(a) for a in inline)])
    if html is None or plain is None:
        body = html or plain
        assert body is not None
    else:
        body = _multipart("alternative", [plain, html])
    files = [a for a in attachments if not a.inline] if attachments else []
    if files or (inline and html is None):
        parts = [_attachment_part(a) for a in (files if html is not None else attachments)]
        body = _multipart("mixed", [body, *parts])
    return body, seven


def _text(content: str, subtype: str, seven: list[bytes]) -> _Part:
    """A text part; its body joins `seven` when it is 7bit."""
    part, is7 = _text_part(content, subtype)
    if is7:
        seven.append(part[1])  # type: ignore[arg-type]
    return part


# A boundary need not be secret, only absent from the message's own content (checked below):
# a random prefix per process and a counter save a getrandom() system call per message.
_BOUNDARY_PREFIX = "=_" + secrets.token_hex(8)
_BOUNDARY_SEQUENCE = itertools.count()
_BOUNDARY_NEEDLE = b"--" + _BOUNDARY_PREFIX.encode("ascii")


def _new_boundary_prefix() -> None:
    """A forked process (a bulk helper forked from its zygote) makes boundaries of its own."""
    global _BOUNDARY_PREFIX, _BOUNDARY_SEQUENCE, _BOUNDARY_NEEDLE
    _BOUNDARY_PREFIX = "=_" + secrets.token_hex(8)
    _BOUNDARY_SEQUENCE = itertools.count()
    _BOUNDARY_NEEDLE = b"--" + _BOUNDARY_PREFIX.encode("ascii")


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_boundary_prefix)


def _new_boundary(seven: list[bytes]) -> str:
    for body in seven:
        if _BOUNDARY_NEEDLE in body:
            break
    else:  # no body holds the prefix: no boundary made of it can appear
        return f"{_BOUNDARY_PREFIX}.{next(_BOUNDARY_SEQUENCE):x}"
    while True:
        boundary = f"{_BOUNDARY_PREFIX}.{next(_BOUNDARY_SEQUENCE):x}"
        needle = b"--" + boundary.encode("ascii")
        if not any(needle in body for body in seven):
            return boundary


def _write(part: _Part, out: list[bytes], seven: list[bytes]) -> None:
    head, body = part
    if isinstance(body, bytes):
        out += (cast(bytes, head), body)
        return
    boundary = _new_boundary(seven)
    delimiter = b"\r\n--" + boundary.encode("ascii")
    out.append(f'Content-Type: multipart/{cast(str, head)}; boundary="{boundary}"\r\n'.encode())
    for sub in body:
        out.append(delimiter + b"\r\n")
        _write(sub, out, seven)
    out.append(delimiter + b"--\r\n")


# -- message -------------------------------------------------------------------------------------


def render_message(message: EmailMessage, *, utf8: bool = False) -> bytes:
    """Render `message` as the bytes of an RFC 5322 message with MIME parts (CRLF endings).

    Bcc recipients are never written. A missing Date or Message-ID is filled in.

    Args:
        message: the message; attachments must carry their `content` (read `path` first).
        utf8: write non-ASCII headers as raw UTF-8 (RFC 6532, for SMTPUTF8 servers)
            instead of RFC 2047 encoded-words; needed for non-ASCII local parts.

    Raises:
        ValidationError: no sender, an unread attachment, a header with a line break, or a
            non-ASCII local part without `utf8=True`.
    """
    sender = message.sender
    if sender is None:
        raise ValidationError("the message has no sender; set one with draft.from_(...)")
    lines = [_address_header("From", (sender,), utf8)]
    for name, addresses in (("To", message.to), ("Cc", message.cc), ("Reply-To", message.reply_to)):
        if addresses:
            lines.append(_address_header(name, tuple(addresses), utf8))
    check_no_crlf("the subject", message.subject, allow_tab=True)
    lines.append(_unstructured("Subject", message.subject, utf8))
    lines.append("Date: " + format_date(message.date or datetime.now(UTC)))
    message_id = message.message_id or new_message_id(sender.domain)
    check_no_crlf("the Message-ID", message_id)
    if not message_id.isascii() or " " in message_id:
        raise ValidationError(f"invalid Message-ID {message_id!r}: use <unique@domain> in ASCII")
    lines.append("Message-ID: " + message_id)
    lines.append("MIME-Version: 1.0")
    for name, value in message.headers:
        check_header_name(name)
        if name.lower() in _FORBIDDEN:
            raise ValidationError(f"the custom header {name!r} is written by xcomm; remove it")
        check_no_crlf(f"the value of header {name!r}", value, allow_tab=True)
        lines.append(_unstructured(name, value, utf8))
    body, seven = _body(message)
    out = ["\r\n".join(lines).encode("utf-8" if utf8 else "ascii") + b"\r\n"]
    _write(body, out, seven)
    return b"".join(out)


def with_bcc(raw: bytes, bcc: tuple[Address, ...]) -> bytes:
    """`raw` with a Bcc header first, for APIs that take the envelope from the headers of a
    MIME message and drop Bcc before delivery (Gmail, Graph's MIME form)."""
    if not bcc:
        return raw
    return b"Bcc: " + ", ".join(ascii_email(a) for a in bcc).encode("ascii") + b"\r\n" + raw
