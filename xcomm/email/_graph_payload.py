"""Pure codecs for Microsoft Graph mail: an `EmailMessage` as Graph's JSON message resource or
as base64 MIME, and the plan of requests that sends it.

Which form (`plan_send`):

- **JSON** (`POST /users/{mailbox}/sendMail`, `application/json`) by default. It is Graph's
  native form: Exchange builds the MIME itself, `saveToSentItems: false` can be honoured, and
  a message over the request limit can go as a draft with upload sessions. Its limits: one
  body (HTML when the message has both: Exchange derives the plain-text alternative), and
  custom headers only when their name starts with `X-` (`internetMessageHeaders`).
- **MIME** (`POST .../sendMail`, `text/plain`, the base64 of the RFC 5322 message xcomm
  renders, Bcc header included: Exchange takes the envelope from the headers and drops Bcc)
  when the message carries something JSON cannot: a custom header that does not start with
  `X-` (List-Unsubscribe, In-Reply-To, References...), or both a text and an HTML body (the
  user's own text part is kept). It needs a From address, always saves to Sent Items, and the
  whole encoded message must fit in one request; when it does not, a message with only the
  two bodies falls back to JSON, and one with such headers is refused (`MessageError`).
- **Draft** when the JSON request would exceed Graph's 4 MB request limit:
  `POST /users/{mailbox}/messages` (the message, with the small attachments that fit), each
  other attachment under 3 MB by `POST .../messages/{id}/attachments`, each of 3 MB or more
  by an upload session (`createUploadSession`, then `PUT`s of `UPLOAD_CHUNK` bytes with
  `Content-Range`), then `POST .../messages/{id}/send`.

Every message whose domain is known (its From, or an address-shaped mailbox) gets an
Internet Message-ID (`internetMessageId`, writable while a message is a draft, which is what
sendMail creates; the Message-ID header in MIME), so `SendResult.message_id` names the
message recipients see: sendMail answers 202 without any id.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import msgspec

from xcomm._errors import MessageError, ValidationError
from xcomm._http import encode_json
from xcomm._models import Address, Attachment, EmailMessage
from xcomm._validation import (
    check_content_id,
    check_content_type,
    check_header_name,
    check_no_crlf,
    safe_attachment_filename,
)
from xcomm.email._mime import new_message_id, render_message, with_bcc

__all__ = [
    "GRAPH_MAX_MESSAGE_SIZE",
    "GRAPH_MAX_RECIPIENTS",
    "GRAPH_REQUEST_LIMIT",
    "UPLOAD_CHUNK",
    "UPLOAD_SESSION_MIN",
    "SendPlan",
    "attachment_item",
    "file_attachment",
    "assign_message_id",
    "message_resource",
    "message_size",
    "mime_header",
    "plan_send",
    "upload_ranges",
]

#: Graph's limit on one request body (4 MB), counted in decimal megabytes to stay clear of it.
GRAPH_REQUEST_LIMIT = 4_000_000
#: Attachments of this size or more go through an upload session; smaller ones cannot
#: (Graph answers ErrorAttachmentSizeShouldNotBeLessThanMinimumSize).
UPLOAD_SESSION_MIN = 3 * 1024 * 1024
#: Bytes per upload-session PUT: the largest multiple of 320 KiB within 4 MiB.
UPLOAD_CHUNK = 12 * 320 * 1024
#: Outlook's largest message (attachments up to 150 MB); a tenant's own limit may be lower.
GRAPH_MAX_MESSAGE_SIZE = 150 * 1024 * 1024
#: Exchange Online's limit on To + Cc + Bcc recipients of one message.
GRAPH_MAX_RECIPIENTS = 500

_FILE_ATTACHMENT = "#microsoft.graph.fileAttachment"


@dataclass(frozen=True, slots=True)
class SendPlan:
    """How one message is sent: a single `sendMail`, or a draft and the requests after it.

    `body` is the sendMail body (JSON or base64 MIME, as `content_type` says) or, for a
    draft, the JSON of `POST /messages`. `attach` are the attachments added one by one to the
    draft, `upload` those sent through upload sessions.
    """

    kind: Literal["sendMail", "draft"]
    body: bytes
    content_type: str
    attach: tuple[Attachment, ...] = ()
    upload: tuple[Attachment, ...] = ()


def _recipient(address: Address) -> dict[str, Any]:
    check_no_crlf("an email address", address.email)
    email: dict[str, str] = {"address": address.email}
    if address.name:
        check_no_crlf("a display name", address.name)
        email["name"] = address.name
    return {"emailAddress": email}


def _content(attachment: Attachment) -> bytes:
    if attachment.content is None:
        raise ValidationError(
            f"the attachment {attachment.filename!r} has not been read; send the message "
            "through draft.send() (which reads files) or set Attachment.content"
        )
    safe_attachment_filename(attachment.filename)
    check_content_type(attachment.content_type)
    if attachment.content_id is not None:
        check_content_id(attachment.content_id)
    return attachment.content


def file_attachment(attachment: Attachment) -> dict[str, Any]:
    """The `#microsoft.graph.fileAttachment` of `attachment` (contentBytes in base64)."""
    content = _content(attachment)
    resource: dict[str, Any] = {
        "@odata.type": _FILE_ATTACHMENT,
        "name": attachment.filename,
        "contentType": attachment.content_type,
        "contentBytes": base64.b64encode(content).decode("ascii"),
    }
    if attachment.inline:
        resource["isInline"] = True
    if attachment.content_id:
        resource["contentId"] = attachment.content_id
    return resource


def attachment_item(attachment: Attachment) -> dict[str, Any]:
    """The `attachmentItem` that describes `attachment` to `createUploadSession`."""
    content = _content(attachment)
    item: dict[str, Any] = {
        "attachmentType": "file",
        "name": attachment.filename,
        "size": len(content),
        "contentType": attachment.content_type,
    }
    if attachment.inline:
        item["isInline"] = True
    if attachment.content_id:
        item["contentId"] = attachment.content_id
    return item


def mime_header(message: EmailMessage) -> str | None:
    """The first custom header Graph's JSON form cannot carry (not `X-`), or None."""
    return next((n for n, _ in message.headers if not n.lower().startswith("x-")), None)


def message_resource(
    message: EmailMessage,
    *,
    message_id: str | None,
    attachments: Sequence[Attachment] | None = None,
) -> dict[str, Any]:
    """Graph's JSON `message` for `message` (pure): every field Graph's JSON form carries.

    `attachments` overrides the message's own (a draft carries only some of them).
    """
    check_no_crlf("the subject", message.subject, allow_tab=True)
    if message.html is not None:
        body = {"contentType": "HTML", "content": message.html}
    else:
        body = {"contentType": "Text", "content": message.text or ""}
    resource: dict[str, Any] = {"subject": message.subject, "body": body}
    for field, addresses in (
        ("toRecipients", message.to),
        ("ccRecipients", message.cc),
        ("bccRecipients", message.bcc),
        ("replyTo", message.reply_to),
    ):
        if addresses:
            resource[field] = [_recipient(a) for a in addresses]
    if message.sender is not None:
        resource["from"] = _recipient(message.sender)
    headers = []
    for name, value in message.headers:
        check_header_name(name)
        check_no_crlf(f"the value of header {name!r}", value, allow_tab=True)
        headers.append({"name": name, "value": value})
    if headers:
        resource["internetMessageHeaders"] = headers
    if message_id is not None:
        check_no_crlf("the Message-ID", message_id)
        resource["internetMessageId"] = message_id
    files = message.attachments if attachments is None else attachments
    if files:
        resource["attachments"] = [file_attachment(a) for a in files]
    return resource


def assign_message_id(message: EmailMessage, *, mailbox: str | None) -> str | None:
    """The message's own Message-ID, or a new one in the sender's (or mailbox's) domain; None
    when neither is known (a /me mailbox without a sender)."""
    if message.message_id is not None:
        return message.message_id
    if message.sender is not None:
        return new_message_id(message.sender.domain)
    if mailbox is not None and "@" in mailbox:
        return new_message_id(mailbox.rpartition("@")[2])
    return None


def _send_mail_json(resource: dict[str, Any], *, save_to_sent_items: bool) -> bytes:
    body: dict[str, Any] = {"message": resource}
    if not save_to_sent_items:
        body["saveToSentItems"] = False  # documented: give it only when false
    return encode_json(body)


def plan_send(
    message: EmailMessage, *, message_id: str | None, save_to_sent_items: bool = True
) -> SendPlan:
    """The requests that send `message` (pure); see the module docstring for the choice.

    Raises:
        MessageError: the message needs the MIME form (a non-`X-` header) and that form does
            not fit in one request, or cannot honour `save_to_sent_items=False`.
        ValidationError: bad input (an unread attachment, a line break in a header...).
    """
    header = mime_header(message)
    both_bodies = message.text is not None and message.html is not None
    if (header or both_bodies) and message.sender is not None and save_to_sent_items:
        stamped = msgspec.structs.replace(message, message_id=message_id)
        raw = base64.b64encode(with_bcc(render_message(stamped), message.bcc))
        if len(raw) <= GRAPH_REQUEST_LIMIT:
            return SendPlan(kind="sendMail", body=raw, content_type="text/plain")
    if header is not None:
        why = (
            "it has no From address (pass sender= to comm.outlook() or use draft.from_())"
            if message.sender is None
            else "Graph's MIME form always saves to Sent Items (save_to_sent_items=False)"
            if not save_to_sent_items
            else f"the encoded message is over Graph's {GRAPH_REQUEST_LIMIT} byte request limit"
        )
        raise MessageError(
            f"the header {header!r} can only be sent in Graph's MIME form (JSON carries only "
            f"X- headers), and this message cannot use it: {why}",
            provider="outlook",
        )
    resource = message_resource(message, message_id=message_id)
    body = _send_mail_json(resource, save_to_sent_items=save_to_sent_items)
    if len(body) <= GRAPH_REQUEST_LIMIT:
        return SendPlan(kind="sendMail", body=body, content_type="application/json")
    return _draft_plan(message, message_id=message_id)


def _draft_plan(message: EmailMessage, *, message_id: str | None) -> SendPlan:
    """A draft with the small attachments that fit in its request; the rest added after it."""
    upload = tuple(a for a in message.attachments if len(_content(a)) >= UPLOAD_SESSION_MIN)
    small = [a for a in message.attachments if len(_content(a)) < UPLOAD_SESSION_MIN]
    packed: list[Attachment] = []
    bare = message_resource(message, message_id=message_id, attachments=())
    size = len(encode_json(bare)) + len(',"attachments":[]')
    for attachment in small:
        # Each one adds its JSON plus a separating comma to the request.
        grown = size + len(encode_json(file_attachment(attachment))) + 1
        if grown > GRAPH_REQUEST_LIMIT:
            break
        packed.append(attachment)
        size = grown
    body = encode_json(message_resource(message, message_id=message_id, attachments=packed))
    return SendPlan(
        kind="draft",
        body=body,
        content_type="application/json",
        attach=tuple(small[len(packed) :]),
        upload=upload,
    )


def upload_ranges(size: int, chunk: int = UPLOAD_CHUNK) -> list[tuple[int, int]]:
    """The inclusive byte ranges `(start, end)` of an upload session's PUTs, in order."""
    return [(start, min(start + chunk, size) - 1) for start in range(0, size, chunk)]


def message_size(message: EmailMessage) -> int:
    """The bytes a message carries (bodies and attachments, before any encoding)."""
    total = len((message.text or "").encode("utf-8", "replace"))
    total += len((message.html or "").encode("utf-8", "replace"))
    return total + sum(len(a.content or b"") for a in message.attachments)
