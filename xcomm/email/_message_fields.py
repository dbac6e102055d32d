"""Filling a `ReceivedMessage` the same way whatever the mailbox (pure).

Providers read a message's top-level headers and its MIME leaves (`BodyPart`) in their own
way (IMAP FETCH records, Gmail JSON); from there, `envelope()`, `attachment_info()` and
`part_ref()` give the model's fields, so the same message reads the same on every mailbox.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from xcomm.email._headers import decode_words, message_ids, parse_addresses, parse_date
from xcomm.email._imap_parse import BodyPart
from xcomm.email._message import AttachmentInfo, PartRef

__all__ = ["attachment_info", "envelope", "part_ref"]


def envelope(fields: Mapping[str, str]) -> dict[str, Any]:
    """`ReceivedMessage` fields from the top-level headers (lower-case names, raw values):
    Message-ID, threading ids, From (address and decoded name), To, Cc, Reply-To, the
    decoded Subject and the Date."""
    senders = parse_addresses(fields.get("from"))
    ids = message_ids(fields.get("message-id"))
    return {
        "message_id": ids[0] if ids else None,
        "in_reply_to": message_ids(fields.get("in-reply-to")),
        "references": message_ids(fields.get("references")),
        "sender": senders[0].email if senders else "",
        "sender_name": senders[0].name if senders else None,
        "to": parse_addresses(fields.get("to")),
        "cc": parse_addresses(fields.get("cc")),
        "reply_to": parse_addresses(fields.get("reply-to")),
        "subject": decode_words(fields.get("subject", "")),
        "date": parse_date(fields.get("date")),
    }


def attachment_info(part: BodyPart) -> AttachmentInfo:
    """An attachment's metadata; inline when its disposition says so, or when it has a
    Content-ID and no disposition (an image the HTML shows)."""
    inline = part.disposition == "inline" or (part.disposition is None and bool(part.content_id))
    return AttachmentInfo(
        filename=part.filename, content_type=part.content_type, size=part.size,
        section=part.section, encoding=part.encoding, content_id=part.content_id,
        inline=inline,
    )  # fmt: skip


def part_ref(part: BodyPart | None) -> PartRef | None:
    """Where a text or HTML body is, to fetch it later (None: the message has none)."""
    if part is None:
        return None
    return PartRef(section=part.section, encoding=part.encoding,
                   charset=part.params.get("charset"), size=part.size)  # fmt: skip
