"""Cheap, lenient parsing of received message headers and bodies (pure functions).

The stdlib's `email` package with `policy.default` costs about 1.4 ms per message; reading
a header block needs much less: unfold the lines, decode RFC 2047 words, parse addresses and
the date leniently. Nothing here raises on bad input: a broken header gives what could be
read (bad charsets become U+FFFD, a garbled date becomes None).
"""

from __future__ import annotations

import binascii
import codecs
import functools
import re
from datetime import UTC, datetime, timedelta, timezone
from email.utils import getaddresses, parsedate_to_datetime

from xcomm._models import Address

__all__ = [
    "MONTHS",
    "decode_body",
    "decode_text",
    "decode_words",
    "message_ids",
    "parse_addresses",
    "parse_date",
    "parse_header_block",
    "zoned_datetime",
]

_MAX_HEADER_BYTES = 1 << 20  # a header block larger than this is cut (huge-header messages)
_MAX_FIELD_CHARS = 64 * 1024
_WORD = re.compile(r"=\?([^?\s]+)\?([QqBb])\?([^?\s]*)\?=")
_BETWEEN_WORDS = re.compile(r"(\?=)\s+(=\?)")
_ANGLE_ID = re.compile(r"<[^<>\s]*>")
_Q_HEX = re.compile(rb"=([0-9A-Fa-f]{2})")
_STRAY_EQUALS = re.compile(rb"=(?![0-9A-Fa-f]{2})")
_B64_TEXT = re.compile(rb"^[A-Za-z0-9+/]*=*$")


@functools.lru_cache(maxsize=256)
def _codec(charset: str) -> str:
    """A Python codec name for a MIME charset, or "utf-8" when unknown."""
    name = charset.partition("*")[0].strip().strip('"').lower()  # RFC 2231 language suffix
    try:
        return codecs.lookup(name or "utf-8").name
    except LookupError:
        return "utf-8"


def decode_text(raw: bytes, charset: str | None) -> str:
    """`raw` decoded with `charset` (unknown charsets as UTF-8), bad bytes as U+FFFD."""
    try:
        return raw.decode(_codec(charset or "utf-8"), "replace")
    except (LookupError, ValueError):  # a codec that exists but cannot decode ("idna"...)
        return raw.decode("utf-8", "replace")


def _word_bytes(encoding: str, text: str) -> bytes | None:
    data = text.encode("ascii", "replace")
    if encoding in "Qq":
        if _STRAY_EQUALS.search(data) is None:  # every "=" escapes a byte: binascii agrees
            return binascii.a2b_qp(data, header=True)
        return _q_bytes(data)
    if not _B64_TEXT.match(data):
        return None
    try:
        return binascii.a2b_base64(data + b"=" * (-len(data) % 4))
    except binascii.Error:
        return None


def _q_bytes(data: bytes) -> bytes:
    """Q-encoded text: `_` is a space, `=XX` a byte, any other `=` is kept."""
    return _Q_HEX.sub(lambda m: bytes([int(m.group(1), 16)]), data.replace(b"_", b" "))


def decode_words(value: str) -> str:
    """Decode RFC 2047 encoded words (`=?utf-8?Q?caf=C3=A9?=`); whitespace between two
    adjacent words is dropped, and adjacent words in one charset are decoded together (a
    character may be split across them)."""
    if "=?" not in value:
        return value
    value = _BETWEEN_WORDS.sub(r"\1\2", value)
    out: list[str] = []
    pending: list[bytes] = []
    pending_charset = ""
    last = 0

    def flush() -> None:
        if pending:
            out.append(decode_text(b"".join(pending), pending_charset))
            pending.clear()

    for match in _WORD.finditer(value):
        charset, encoding, text = match.groups()
        data = _word_bytes(encoding, text)
        if match.start() != last or data is None or charset.lower() != pending_charset:
            flush()
            out.append(value[last : match.start()])
            if data is None:  # undecodable: keep the word as it is
                out.append(match.group(0))
                last = match.end()
                continue
        pending_charset = charset.lower()
        pending.append(data)
        last = match.end()
    flush()
    out.append(value[last:])
    return "".join(out)


def parse_header_block(raw: bytes) -> dict[str, str]:
    """Header fields by lower-case name (the first occurrence wins), unfolded, with raw
    8-bit values read as UTF-8 (else Latin-1). Encoded words are NOT decoded here (address
    fields must be split first)."""
    end = raw.find(b"\r\n\r\n")
    if end < 0:
        end = raw.find(b"\n\n")
    block = raw[: end if end >= 0 else _MAX_HEADER_BYTES][:_MAX_HEADER_BYTES]
    if len(block) <= _MAX_FIELD_CHARS * 4 and _CLEAN_BLOCK.fullmatch(block):
        return _clean_header_block(block)
    return _header_lines(block)


def _header_lines(block: bytes) -> dict[str, str]:
    """`parse_header_block` line by line, for any block (garbage lines are skipped)."""
    fields: dict[str, str] = {}
    name: str | None = None
    chunks: list[bytes] = []

    def store() -> None:
        if name is not None and name not in fields:
            value = b" ".join(chunks)[: _MAX_FIELD_CHARS * 4]
            try:
                text = value.decode("utf-8")
            except UnicodeDecodeError:
                text = value.decode("latin-1")
            fields[name] = " ".join(text.split())[:_MAX_FIELD_CHARS]

    for line in block.split(b"\n"):
        line = line.rstrip(b"\r")
        if line[:1] in (b" ", b"\t"):
            if name is not None:
                chunks.append(line.strip())
            continue
        key, colon, value = line.partition(b":")
        if not colon or not key or b" " in key.strip() or len(key) > 200:
            continue  # not a header line (garbage); skip it
        store()
        name = key.strip().decode("ascii", "replace").lower()
        chunks = [value.strip()]
    store()
    return fields


_FIELD = rb"[!-9;-~]{1,200}+:[^\n]*+(?:\n[ \t][^\n]*+)*+"  # a name, its value, folded lines
_CLEAN_BLOCK = re.compile(rb"(?:%s(?:\n%s)*+)?" % (_FIELD, _FIELD))
_FIELDS = re.compile(rb"^([!-9;-~]++):([^\n]*+(?:\n[ \t][^\n]*+)*+)", re.MULTILINE)


def _clean_header_block(block: bytes) -> dict[str, str]:
    """`parse_header_block` for a block of well-formed fields only (no garbage lines, no
    space before a colon, under the length cuts): one regular-expression pass, and each
    value unfolded by splitting on whitespace, as the line-by-line reading does."""
    fields: dict[str, str] = {}
    for name, value in _FIELDS.findall(block):
        key = name.decode("ascii").lower()
        if key in fields:
            continue
        try:
            text = value.decode("utf-8")
        except UnicodeDecodeError:
            text = value.decode("latin-1")
        fields[key] = " ".join(text.split())[:_MAX_FIELD_CHARS]
    return fields


def parse_addresses(value: str | None) -> tuple[Address, ...]:
    """Addresses of an address header, leniently: names decoded, garbage skipped."""
    if not value:
        return ()
    pairs = _simple_addresses(value)
    if pairs is None:
        try:
            pairs = getaddresses([value])
        except Exception:  # the stdlib parser has raised on odd input in some versions
            pairs = []
    out = []
    for name, email in pairs:
        email = email.strip()
        if not email:
            continue
        name = " ".join(decode_words(name).split()) if name else ""
        out.append(Address(email=email, name=name or None))
    return tuple(out)


_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_ADDR_SPEC = rf"{_ATEXT}(?:\.{_ATEXT})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*"
_PHRASE_WORD = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+"
_SIMPLE_ADDRESS = re.compile(
    rf' *+(?:"([^"\\()\r\n]*+)" *+<({_ADDR_SPEC})>'  # "Name" <a@b>
    rf"|((?:{_PHRASE_WORD} +)*{_PHRASE_WORD})? *+<({_ADDR_SPEC})>"  # Name <a@b>, <a@b>
    rf"|({_ADDR_SPEC}))"  # a@b
    r" *+(?:(,)|\Z)"
)


def _simple_addresses(value: str) -> list[tuple[str, str]] | None:
    """`getaddresses([value])` for a list of plain `a@b`, `Name <a@b>` and `"Name" <a@b>`
    (what almost every header holds), without the stdlib's character-by-character parser;
    None for anything else (comments, groups, escapes, odd spacing), which goes to it."""
    pairs: list[tuple[str, str]] = []
    pos, n = 0, len(value)
    scan = _SIMPLE_ADDRESS.match
    while pos < n:
        found = scan(value, pos)
        if found is None:
            return None
        quoted, quoted_email, phrase, phrase_email, bare, comma = found.groups()
        if bare is not None:
            pairs.append(("", bare))
        elif quoted_email is not None:
            pairs.append((quoted, quoted_email))
        else:
            pairs.append((" ".join(phrase.split()) if phrase else "", phrase_email))
        pos = found.end()
        if comma is None:
            break
    return pairs or None


def parse_date(value: str | None) -> datetime | None:
    """An aware datetime from a Date header (no zone, or -0000, means UTC); None when the
    header is missing or garbled."""
    if not value:
        return None
    when = _rfc5322_date(value)
    return when if when is not None else _stdlib_date(value)


def _rfc5322_date(value: str) -> datetime | None:
    """`_stdlib_date(value)` for the usual shape (`Mon, 3 Nov 2025 10:00:00 +0100`), read
    without the stdlib's general parser; None for any other shape or an out-of-range field,
    which the stdlib then reads."""
    found = _RFC5322_DATE.fullmatch(value)
    return None if found is None else zoned_datetime(found)


def zoned_datetime(found: re.Match[str]) -> datetime | None:
    """The aware datetime of a date matched as (day, month name, year, hour, minute, second
    or None, sign, zone hours, zone minutes); None when a field is out of range."""
    day, month, year, hour, minute, second, sign, zone_h, zone_m = found.groups()
    offset = int(zone_h) * 3600 + int(zone_m) * 60
    try:
        return datetime(
            int(year), MONTHS[month], int(day), int(hour), int(minute), int(second or 0),
            tzinfo=_zone(-offset if sign == "-" else offset),
        )  # fmt: skip
    except ValueError:
        return None


@functools.lru_cache(maxsize=64)
def _zone(seconds: int) -> timezone:
    """The fixed-offset zone (one object per offset: mail comes from few zones)."""
    return timezone(timedelta(seconds=seconds))


def _stdlib_date(value: str) -> datetime | None:
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when is None:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


_MONTH_NAMES = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
MONTHS = {name: number for number, name in enumerate(_MONTH_NAMES, 1)}
_RFC5322_DATE = re.compile(
    r"(?:(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), )?([0-9]{1,2}) ("
    + "|".join(MONTHS)
    + r") ([1-9][0-9]{3}) ([0-9]{2}):([0-9]{2})(?::([0-9]{2}))? ([+-])([0-9]{2})([0-9]{2})"
    r"(?: .*)?",  # the stdlib ignores what follows the zone: `(UTC)`, `(CET)`
    re.DOTALL,
)


def message_ids(value: str | None) -> tuple[str, ...]:
    """The `<id>` tokens of a Message-ID, In-Reply-To or References header."""
    if not value:
        return ()
    found = tuple(_ANGLE_ID.findall(value))
    if found or not value.strip():
        return found
    return (value.split()[0],)  # an id without angle brackets: keep the first word


def decode_body(raw: bytes, encoding: str, charset: str | None) -> str:
    """A text part's content: transfer encoding undone, charset decoded, never raising."""
    return decode_text(decode_transfer(raw, encoding), charset)


def decode_transfer(raw: bytes, encoding: str) -> bytes:
    """Undo a Content-Transfer-Encoding (base64, quoted-printable); others pass through."""
    encoding = encoding.lower().strip()
    if encoding == "base64":
        data = re.sub(rb"[^A-Za-z0-9+/]", b"", raw)
        data = data[: len(data) - len(data) % 4] if len(data) % 4 == 1 else data
        try:
            return binascii.a2b_base64(data + b"=" * (-len(data) % 4))
        except binascii.Error:
            return b""
    if encoding == "quoted-printable":
        try:
            return binascii.a2b_qp(raw)
        except (binascii.Error, ValueError):
            return raw
    return raw
