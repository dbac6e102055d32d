"""From IMAP FETCH records to `ReceivedMessage`s (pure).

A search fetches, per batch of UIDs, only what the model needs up front:
`UID FLAGS INTERNALDATE RFC822.SIZE BODYSTRUCTURE BODY.PEEK[HEADER]`. Bodies come later,
one part at a time (`BODY.PEEK[<section>]`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime

from xcomm.email._headers import (
    MONTHS,
    decode_text,
    decode_transfer,
    decode_words,
    message_ids,
    parse_addresses,
    parse_date,
    parse_header_block,
    zoned_datetime,
)
from xcomm.email._imap_parse import (
    BodyPart,
    Token,
    body_parts,
    fetch_records,
    parse_bodystructure,
)
from xcomm.email._message import AttachmentInfo, PartRef, ReceivedMessage

__all__ = [
    "FETCH_ITEMS",
    "body_groups",
    "body_items",
    "body_section",
    "fill_bodies",
    "messages_from_fetch",
    "uid_set",
]

FETCH_ITEMS = "(UID FLAGS INTERNALDATE RFC822.SIZE BODYSTRUCTURE BODY.PEEK[HEADER])"
_SECTION = re.compile(r"^\d+(?:\.\d+)*$")


def uid_set(uids: list[int]) -> str:
    """`1:3,7,9:10` for [1, 2, 3, 7, 9, 10] (compact ranges, sorted)."""
    out: list[str] = []
    ordered = sorted(set(uids))
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        out.append(str(ordered[i]) if i == j else f"{ordered[i]}:{ordered[j]}")
        i = j + 1
    return ",".join(out)


def body_section(section: str) -> str:
    """The FETCH item for one part; refuses anything but a dotted part number."""
    if not _SECTION.match(section):
        raise ValueError(f"not an IMAP part number: {section!r}")
    return f"(BODY.PEEK[{section}])"


def _flags(token: Token) -> tuple[str, ...]:
    if not isinstance(token, list):
        return ()
    return tuple(f.decode("utf-8", "replace") for f in token if isinstance(f, bytes))


def _internaldate(token: Token) -> datetime | None:
    if not isinstance(token, bytes):
        return None
    when = _usual_internaldate(token)
    if when is not None:
        return when
    try:
        return datetime.strptime(token.decode("ascii").strip(), "%d-%b-%Y %H:%M:%S %z")
    except (UnicodeDecodeError, ValueError):
        return None


def _usual_internaldate(token: bytes) -> datetime | None:
    """An INTERNALDATE as servers write it (`21-Nov-2026 23:17:54 +0000`), read without
    strptime; None for any other shape or an out-of-range field, which strptime reads."""
    found = _INTERNALDATE.fullmatch(token.decode("latin-1"))
    return None if found is None else zoned_datetime(found)


_INTERNALDATE = re.compile(
    r" ?([0-9]{1,2})-(" + "|".join(MONTHS) + r")-([0-9]{4}) "
    r"([0-9]{2}):([0-9]{2}):([0-9]{2}) ([+-])([0-9]{2})([0-5][0-9])"
)


def _int(token: Token) -> int:
    return int(token) if isinstance(token, bytes) and token.isdigit() else 0


def message_from_record(
    record: dict[str, Token], *, folder: str, uid_validity: int | None
) -> ReceivedMessage | None:
    """The message one FETCH record describes; None without a UID."""
    uid = _int(record.get("UID"))
    if not uid:
        return None
    header = record.get("BODY[HEADER]")
    fields = parse_header_block(header if isinstance(header, bytes) else b"")
    senders = parse_addresses(fields.get("from"))
    text, html, attached = body_parts(parse_bodystructure(record.get("BODYSTRUCTURE")))
    ids = message_ids(fields.get("message-id"))
    return ReceivedMessage(
        uid=uid,
        folder=folder,
        uid_validity=uid_validity,
        message_id=ids[0] if ids else None,
        in_reply_to=message_ids(fields.get("in-reply-to")),
        references=message_ids(fields.get("references")),
        sender=senders[0].email if senders else "",
        sender_name=senders[0].name if senders else None,
        to=parse_addresses(fields.get("to")),
        cc=parse_addresses(fields.get("cc")),
        reply_to=parse_addresses(fields.get("reply-to")),
        subject=decode_words(fields.get("subject", "")),
        date=parse_date(fields.get("date")),
        received_at=_internaldate(record.get("INTERNALDATE")),
        flags=_flags(record.get("FLAGS")),
        size=_int(record.get("RFC822.SIZE")),
        attachments=tuple(
            AttachmentInfo(
                filename=p.filename,
                content_type=p.content_type,
                size=p.size,
                section=p.section,
                encoding=p.encoding,
                content_id=p.content_id,
                inline=p.disposition == "inline" or (p.disposition is None and bool(p.content_id)),
            )
            for p in attached
        ),
        headers=fields,
        text_part=_ref(text),
        html_part=_ref(html),
    )


def _ref(part: BodyPart | None) -> PartRef | None:
    if part is None:
        return None
    return PartRef(
        section=part.section, encoding=part.encoding, charset=part.params.get("charset"),
        size=part.size,
    )  # fmt: skip


def messages_from_fetch(
    data: bytes, *, folder: str, uid_validity: int | None
) -> Iterator[ReceivedMessage]:
    """Every message described by the FETCH records in `data` (see `join_lines`)."""
    for record in fetch_records(data):
        message = message_from_record(record, folder=folder, uid_validity=uid_validity)
        if message is not None:
            yield message


def part_content(data: bytes, section: str) -> bytes:
    """The `BODY[<section>]` value of the first FETCH record in `data` (b"" when absent)."""
    key = f"BODY[{section}]"
    for record in fetch_records(data):
        value = record.get(key)
        if isinstance(value, bytes):
            return value
    return b""


def body_groups(
    messages: list[ReceivedMessage],
) -> dict[tuple[str, ...], list[ReceivedMessage]]:
    """Messages whose text/HTML bodies are not read yet, grouped by the part numbers to fetch:
    one `UID FETCH` per group reads the bodies of a whole batch (`search(bodies=True)`)."""
    groups: dict[tuple[str, ...], list[ReceivedMessage]] = {}
    for message in messages:
        sections = tuple(
            part.section
            for part in (message.text_part, message.html_part)
            if part is not None and _SECTION.match(part.section)
        )
        if sections:
            groups.setdefault(sections, []).append(message)
    return groups


def body_items(sections: tuple[str, ...]) -> str:
    """The FETCH items for those parts: `(BODY.PEEK[1.1] BODY.PEEK[1.2])`."""
    return "(" + " ".join(f"BODY.PEEK[{section}]" for section in sections) + ")"


def fill_bodies(data: bytes, messages: list[ReceivedMessage]) -> None:
    """Decode the bodies a group FETCH returned into each message's cache (what `text()` and
    `html()` would have fetched one by one)."""
    by_uid = {message.uid: message for message in messages}
    for record in fetch_records(data):
        message = by_uid.get(_int(record.get("UID")))
        if message is None:
            continue
        for kind, part in (("text", message.text_part), ("html", message.html_part)):
            if part is None:
                continue
            raw = record.get(f"BODY[{part.section}]")
            if isinstance(raw, bytes):
                body = decode_text(decode_transfer(raw, part.encoding), part.charset)
                message.cache_body(kind, body)
