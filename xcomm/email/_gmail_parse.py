"""Gmail's JSON and xcomm's one message model: `users.messages.get` → `ReceivedMessage` (pure).

**Labels and flags.** A Gmail message carries label ids; `ReceivedMessage.flags` holds them
IMAP-style, so code (and `EmailQuery.matches()`) reads them the same on every mailbox:

| Gmail label ids            | flags                                                    |
|----------------------------|----------------------------------------------------------|
| no `UNREAD`                | `\\Seen`                                                 |
| `STARRED`                  | `\\Flagged`                                              |
| `IMPORTANT`                | `$Important`                                             |
| `DRAFT`                    | `\\Draft`                                                |
| `INBOX`, `SENT`, `SPAM`, `TRASH`, `CHAT`, `CATEGORY_*` | the id itself (a label)  |
| `Label_12` (a user label)  | its name, `"Clients/Acme"` (resolved with `labels.list`) |

`GmailView` is how `EmailQuery.matches()` reads a Gmail message: its `labels` also hold the
system ids the flags stand for (`UNREAD`, `STARRED`, ...), and `in_folder(name)` is Gmail's
`in:`: the message has that label. So a query's local check agrees with what Gmail's
`q`/`labelIds` select (`query.explain("gmail")`).

**Structure.** A listing asks `messages.get` for `format=full` with `STRUCTURE_FIELDS`, a
partial-response mask that keeps every part's headers, type, file name, size and
`attachmentId` but no `body.data`: the message's structure (attachments, text and HTML
parts) at the cost of its headers. `format=full` alone (`search(bodies=True)`, or the first
`text()`) brings the text parts' data inline too. A part's `section` is Gmail's `partId`.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from xcomm.email._headers import decode_text, decode_words
from xcomm.email._imap_parse import BodyPart, body_parts
from xcomm.email._message import MessageView, ReceivedMessage
from xcomm.email._message_fields import attachment_info, envelope, part_ref

__all__ = [
    "STRUCTURE_FIELDS",
    "GmailView",
    "ParsedMessage",
    "b64url_decode",
    "flags_of",
    "label_ids_of",
    "parse_message",
]

_PART = "partId,mimeType,filename,headers,body(size,attachmentId)"
#: `fields=` of a listing's `messages.get`: the message without any part's data (four levels
#: of parts; deeper ones, rare, come whole).
STRUCTURE_FIELDS = (
    "id,threadId,labelIds,snippet,historyId,internalDate,sizeEstimate,"
    f"payload({_PART},parts({_PART},parts({_PART},parts({_PART},parts))))"
)

_CHARSET = re.compile(r';\s*charset\s*=\s*"?([^";\s]+)', re.IGNORECASE)
#: System labels that are IMAP-style flags when present.
FLAG_OF_LABEL = {"STARRED": "\\Flagged", "IMPORTANT": "$Important", "DRAFT": "\\Draft"}
_LABEL_OF_FLAG = {flag.lower(): label for label, flag in FLAG_OF_LABEL.items()}
#: `in:` names that are not their label's id.
_IN_ALIASES = {"drafts": "DRAFT", "chats": "CHAT"}


def b64url_decode(data: str) -> bytes:
    """Bytes of Gmail's base64url text (padding optional); b"" when it is not base64url."""
    try:
        return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))
    except (binascii.Error, ValueError):
        return b""


def flags_of(label_ids: Iterable[str], names: Mapping[str, str]) -> tuple[str, ...]:
    """`ReceivedMessage.flags` for Gmail label ids (see the module table); `names` maps
    user label ids to names (an id it lacks is kept as it is)."""
    ids = list(dict.fromkeys(label_ids))
    flags = [] if "UNREAD" in ids else ["\\Seen"]
    for label in ids:
        if label != "UNREAD":
            flags.append(FLAG_OF_LABEL.get(label) or names.get(label, label))
    return tuple(flags)


def label_ids_of(flags: Iterable[str]) -> frozenset[str]:
    """The system label ids `flags` stand for (`UNREAD` when `\\Seen` is missing, ...)."""
    lowered = {f.lower() for f in flags}
    found = {label for flag, label in _LABEL_OF_FLAG.items() if flag in lowered}
    if "\\seen" not in lowered:
        found.add("UNREAD")
    return frozenset(found)


@dataclass(slots=True)
class ParsedMessage:
    """A message and what came with it: each part's inline data and attachment id."""

    message: ReceivedMessage
    data: dict[str, bytes] = field(default_factory=dict)
    attachment_ids: dict[str, str] = field(default_factory=dict)


def _headers(part: Mapping[str, Any]) -> dict[str, str]:
    """A part's headers by lower-case name, first occurrence (as IMAP's are read)."""
    found: dict[str, str] = {}
    for header in part.get("headers") or ():
        if isinstance(header, dict):
            name = str(header.get("name", "")).lower()
            if name and name not in found:
                found[name] = str(header.get("value", ""))
    return found


def _leaves(part: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    """The parts that hold content, in order (a forwarded message/rfc822 is one leaf)."""
    children = part.get("parts")
    mime = str(part.get("mimeType") or "").lower()
    if isinstance(children, list) and children and mime != "message/rfc822":
        for child in children:
            if isinstance(child, dict):
                yield from _leaves(child)
    else:
        yield part


def _body_part(part: Mapping[str, Any]) -> BodyPart:
    """A leaf as `body_parts()` sorts them. Gmail gives the type and the file name; the
    charset and the disposition come from the part's headers."""
    headers = _headers(part)
    charset = _CHARSET.search(headers.get("content-type", ""))
    disposition = headers.get("content-disposition", "").split(";", 1)[0].strip().lower()
    body = part.get("body") or {}
    size = body.get("size")
    content_id = headers.get("content-id")
    return BodyPart(
        section=str(part.get("partId") or ""),
        content_type=str(part.get("mimeType") or "application/octet-stream").lower(),
        params={} if charset is None else {"charset": charset.group(1)},
        encoding=headers.get("content-transfer-encoding", "7bit").strip().lower(),
        size=size if isinstance(size, int) else 0,
        content_id=content_id.strip() if content_id else None,
        disposition=disposition or None,
        filename=decode_words(str(part.get("filename"))) if part.get("filename") else None,
    )


def parse_message(
    answer: Mapping[str, Any], *, names: Mapping[str, str], folder: str = ""
) -> ParsedMessage:
    """The message a `messages.get` answer (`format=full`, masked or not) describes."""
    payload = answer.get("payload") or {}
    fields = _headers(payload)
    leaves = list(_leaves(payload))
    parts = [_body_part(leaf) for leaf in leaves]
    text, html, attached = body_parts(parts)
    received = None
    internal = answer.get("internalDate")
    if isinstance(internal, str) and internal.isdigit():
        received = datetime.fromtimestamp(int(internal) / 1000, UTC)
    size = answer.get("sizeEstimate")
    message = ReceivedMessage(
        id=str(answer["id"]),
        thread_id=str(answer.get("threadId") or "") or None,
        preview=str(answer.get("snippet") or ""),
        folder=folder,
        **envelope(fields),
        received_at=received,
        flags=flags_of((str(x) for x in answer.get("labelIds") or ()), names),
        size=size if isinstance(size, int) else 0,
        attachments=tuple(attachment_info(p) for p in attached),
        headers=fields,
        text_part=part_ref(text),
        html_part=part_ref(html),
    )
    parsed = ParsedMessage(message)
    for leaf, part in zip(leaves, parts, strict=True):
        body = leaf.get("body") or {}
        if isinstance(body.get("attachmentId"), str):
            parsed.attachment_ids[part.section] = body["attachmentId"]
        elif isinstance(body.get("data"), str):
            parsed.data[part.section] = b64url_decode(body["data"])
    for kind, ref in (("text", message.text_part), ("html", message.html_part)):
        if ref is not None and ref.section in parsed.data:
            message.cache_body(kind, decode_text(parsed.data[ref.section], ref.charset))
    return parsed


class GmailView(MessageView):
    """A Gmail `ReceivedMessage` as `EmailQuery.matches()` reads it: labels include the
    system label ids its flags stand for, and `in_folder(name)` is Gmail's `in:`."""

    __slots__ = ()

    @property
    def labels(self) -> frozenset[str]:
        own = {f for f in self.message.flags if not f.startswith("\\")}
        return frozenset(own | label_ids_of(self.message.flags))

    def in_folder(self, name: str) -> bool:
        """Whether the message has label `name` (a system label in any case), or was found
        in the folder of that name."""
        if name.lower() == "anywhere" or name == self.message.folder:
            return True
        wanted = _IN_ALIASES.get(name.lower(), name).casefold()
        return any(label.casefold() == wanted for label in self.labels)
