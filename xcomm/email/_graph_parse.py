"""Graph's message JSON and xcomm's one message model: `message` → `ReceivedMessage` (pure).

**Flags.** A Graph message's state becomes IMAP-style flags, so code (and
`EmailQuery.matches()`) reads it the same on every mailbox, and flag changes become the
`PATCH` body that sets it:

- `isRead: true` is `\\Seen` (PATCH `{"isRead": true/false}`);
- `flag.flagStatus: "flagged"` is `\\Flagged` (PATCH `{"flag": {"flagStatus": "flagged"}}`,
  or `"notFlagged"`);
- `importance: "high"` is `$Important` (PATCH `{"importance": "high"}`, or `"normal"`);
- `isDraft: true` is `\\Draft` (read only);
- each of `categories` is a label: `["Boss"]` is the label `Boss` (PATCH
  `{"categories": [...]}` replaces the whole list).

**Bodies.** A listing selects no body; `text_part` and `html_part` are always set, because
Graph renders either form of any message (`Prefer: outlook.body-content-type="text"` or
`"html"` on `GET .../messages/{id}?$select=body`): `text()` of an HTML message is Exchange's
plain-text rendering of it. Their `section` is `"body:text"` / `"body:html"`.

**Attachments** come from `$expand=attachments($select=...)`; an attachment's `section` is
its Graph attachment id (`GET .../attachments/{id}/$value` gives its bytes). **Size** is the
MAPI property PidTagMessageSize (`Integer 0x0E08`), expanded as a single-value extended
property; 0 when Graph does not give it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from xcomm._errors import ValidationError
from xcomm._models import Address
from xcomm.email._headers import message_ids
from xcomm.email._message import AttachmentInfo, MessageView, PartRef, ReceivedMessage

__all__ = [
    "ATTACHMENT_FIELDS",
    "EXPAND",
    "HEADER_FIELD",
    "MESSAGE_FIELDS",
    "SIZE_PROPERTY",
    "GraphView",
    "flag_patch",
    "flags_of",
    "parse_message",
]

#: The message properties a listing selects (`$select`).
MESSAGE_FIELDS = (
    "id,conversationId,internetMessageId,subject,bodyPreview,from,sender,toRecipients,"
    "ccRecipients,replyTo,receivedDateTime,sentDateTime,isRead,isDraft,flag,importance,"
    "categories,hasAttachments,parentFolderId"
)
#: Selected too when the headers are wanted (threading ids, a query's header conditions).
HEADER_FIELD = "internetMessageHeaders"
ATTACHMENT_FIELDS = "id,name,contentType,size,isInline"
#: PidTagMessageSize, the message's size in bytes.
SIZE_PROPERTY = "Integer 0x0E08"
#: `$expand` of a listing: attachment metadata and the size.
EXPAND = (
    f"attachments($select={ATTACHMENT_FIELDS}),"
    f"singleValueExtendedProperties($filter=id eq '{SIZE_PROPERTY}')"
)
TEXT_PART = PartRef(section="body:text", encoding="8bit", charset="utf-8")
HTML_PART = PartRef(section="body:html", encoding="8bit", charset="utf-8")

_FLAG_FIELDS = {"\\seen": "isRead", "\\flagged": "flag", "$important": "importance"}


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _address(value: object) -> Address | None:
    """A Graph `recipient` (`{"emailAddress": {"name", "address"}}`) as an Address."""
    inner = value.get("emailAddress") if isinstance(value, dict) else None
    if not isinstance(inner, dict):
        return None
    email = _text(inner.get("address")).strip()
    if not email:
        return None
    name = _text(inner.get("name")).strip() or None
    return Address(email=email, name=None if name == email else name)


def _addresses(value: object) -> tuple[Address, ...]:
    found = (_address(v) for v in value) if isinstance(value, list) else ()
    return tuple(a for a in found if a is not None)


def _instant(value: object) -> datetime | None:
    """An ISO 8601 instant (`2024-05-02T10:11:12Z`) as an aware datetime."""
    if not isinstance(value, str) or not value:
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo is not None else None


def flags_of(data: Mapping[str, Any]) -> tuple[str, ...]:
    """`ReceivedMessage.flags` of a Graph message (see the module table)."""
    flags = []
    if data.get("isRead") is True:
        flags.append("\\Seen")
    flag = data.get("flag")
    if isinstance(flag, dict) and flag.get("flagStatus") == "flagged":
        flags.append("\\Flagged")
    if data.get("importance") == "high":
        flags.append("$Important")
    if data.get("isDraft") is True:
        flags.append("\\Draft")
    categories = data.get("categories")
    if isinstance(categories, list):
        flags.extend(dict.fromkeys(c for c in categories if isinstance(c, str) and c))
    return tuple(flags)


def flag_patch(changes: Mapping[str, bool]) -> dict[str, Any]:
    """The PATCH body for flag changes (`{"\\\\Seen": True, "$Important": False}`).

    Raises:
        ValidationError: a flag Graph has no property for.
    """
    patch: dict[str, Any] = {}
    for flag, on in changes.items():
        field = _FLAG_FIELDS.get(flag.lower())
        if field == "isRead":
            patch["isRead"] = on
        elif field == "flag":
            patch["flag"] = {"flagStatus": "flagged" if on else "notFlagged"}
        elif field == "importance":
            patch["importance"] = "high" if on else "normal"
        else:
            raise ValidationError(
                f"Outlook has no {flag} flag: it keeps \\Seen, \\Flagged and $Important "
                "(isRead, the follow-up flag and importance); labels are categories "
                "(add_label()), and delete()/move_to() remove messages"
            )
    return patch


def _headers(data: Mapping[str, Any]) -> dict[str, str]:
    found: dict[str, str] = {}
    for header in data.get(HEADER_FIELD) or ():
        if isinstance(header, dict):
            name, value = _text(header.get("name")), _text(header.get("value"))
            if name:
                found.setdefault(name.lower(), value)
    return found


def _attachments(data: Mapping[str, Any]) -> tuple[AttachmentInfo, ...]:
    found = []
    for item in data.get("attachments") or ():
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            continue
        kind = _text(item.get("@odata.type"))
        if kind and kind != "#microsoft.graph.fileAttachment":
            continue  # an attached Outlook item or a link: no bytes to download
        size = item.get("size")
        content_type = _text(item.get("contentType")).lower() or "application/octet-stream"
        found.append(
            AttachmentInfo(
                filename=_text(item.get("name")) or None,
                content_type=content_type,
                size=size if isinstance(size, int) and not isinstance(size, bool) else 0,
                section=item["id"],
                encoding="binary",
                content_id=_text(item.get("contentId")) or None,
                inline=item.get("isInline") is True,
            )
        )
    return tuple(found)


def _tag(property_id: str) -> tuple[str, int] | None:
    """(type, tag) of a MAPI property id: Graph answers `Integer 0x0E08` as `Integer 0xe08`."""
    kind, _, number = property_id.strip().partition(" ")
    try:
        return kind.lower(), int(number, 16)
    except ValueError:
        return None


def _size(data: Mapping[str, Any]) -> int:
    wanted = _tag(SIZE_PROPERTY)
    for prop in data.get("singleValueExtendedProperties") or ():
        if isinstance(prop, dict) and _tag(_text(prop.get("id"))) == wanted:
            value = _text(prop.get("value"))
            return int(value) if value.isdigit() else 0
    return 0


def parse_message(data: Mapping[str, Any], *, folder: str) -> ReceivedMessage:
    """A `ReceivedMessage` from Graph's message JSON (`folder`: the folder searched)."""
    message_id = data.get("id")
    if not isinstance(message_id, str) or not message_id:
        raise ValueError("a Graph message without an id")
    headers = _headers(data)
    sender = _address(data.get("from")) or _address(data.get("sender"))
    internet_id = message_ids(_text(data.get("internetMessageId")))
    message = ReceivedMessage(
        id=message_id,
        thread_id=_text(data.get("conversationId")) or None,
        preview=_text(data.get("bodyPreview")),
        folder=folder,
        message_id=internet_id[0] if internet_id else None,
        in_reply_to=message_ids(headers.get("in-reply-to")),
        references=message_ids(headers.get("references")),
        sender=sender.email if sender else "",
        sender_name=sender.name if sender else None,
        to=_addresses(data.get("toRecipients")),
        cc=_addresses(data.get("ccRecipients")),
        reply_to=_addresses(data.get("replyTo")),
        subject=_text(data.get("subject")),
        date=_instant(data.get("sentDateTime")),
        received_at=_instant(data.get("receivedDateTime")),
        flags=flags_of(data),
        size=_size(data),
        attachments=_attachments(data),
        headers=headers,
        text_part=TEXT_PART,
        html_part=HTML_PART,
    )
    if data.get("importance") == "low":
        message.__dict__["_graph_importance"] = "low"
    return message


def categories_of(flags: Iterable[str]) -> list[str]:
    """The categories among a message's flags (its labels), in order."""
    return [f for f in flags if not f.startswith("\\") and f != "$Important"]


class GraphView(MessageView):
    """A Graph `ReceivedMessage` as `EmailQuery.matches()` reads it: its labels are its
    categories, and its priority is Graph's importance (`$Important` is high) unless its
    headers were read."""

    __slots__ = ()

    @property
    def labels(self) -> frozenset[str]:
        return frozenset(categories_of(self.message.flags))

    @property
    def headers(self) -> Any:
        headers = self.message.headers
        if "importance" not in headers and "x-priority" not in headers:
            level = "high" if "$Important" in self.message.flags else None
            if level is None and self.message.__dict__.get("_graph_importance") == "low":
                level = "low"
            if level is not None:
                headers = {**headers, "importance": level}
        from xcomm.email._message import _Headers

        return _Headers(headers)
