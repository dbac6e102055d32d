"""Check Microsoft Graph mail requests against the resource shapes Microsoft publishes.

The property names and types are those of the Graph v1.0 metadata as generated into the
msgraph-sdk Python package (1.65.0: `msgraph/generated/models/message.py`, `recipient.py`,
`email_address.py`, `item_body.py`, `internet_message_header.py`, `file_attachment.py` with
`attachment.py`, `attachment_item.py`, and the `send_mail` / `create_upload_session` request
bodies), checked against the learn.microsoft.com pages of `user: sendMail`,
`attachment: createUploadSession` and "Attach large files to Outlook messages". The package
itself is not a test dependency: its models are about 30 MB.

`validate(request)` finds the operation by method and URL, then checks every JSON field
(name, type, enum value), recursively; it returns the operation name or raises
AssertionError saying what is wrong.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

import httpx

__all__ = ["validate", "validate_all"]

API = "https://graph.microsoft.com/v1.0"

# A type is a Python type, the name of a schema below, ("list", type) or ("enum", values).
Type = Any
SCHEMAS: dict[str, dict[str, Type]] = {
    "message": {
        # message.py
        "attachments": ("list", "fileAttachment"),
        "bccRecipients": ("list", "recipient"),
        "body": "itemBody",
        "ccRecipients": ("list", "recipient"),
        "conversationId": str,
        "flag": dict,
        "from": "recipient",
        "importance": ("enum", {"low", "normal", "high"}),
        "internetMessageHeaders": ("list", "internetMessageHeader"),
        "internetMessageId": str,
        "isDeliveryReceiptRequested": bool,
        "isDraft": bool,
        "isRead": bool,
        "isReadReceiptRequested": bool,
        "replyTo": ("list", "recipient"),
        "sender": "recipient",
        "subject": str,
        "toRecipients": ("list", "recipient"),
        # outlook_item.py
        "categories": ("list", str),
    },
    "recipient": {"emailAddress": "emailAddress"},
    "emailAddress": {"address": str, "name": str},
    "itemBody": {"content": str, "contentType": ("enum", {"text", "html"})},
    "internetMessageHeader": {"name": str, "value": str},
    "fileAttachment": {
        "@odata.type": ("enum", {"#microsoft.graph.fileAttachment"}),
        "contentBytes": "base64",
        "contentId": str,
        "contentLocation": str,
        "contentType": str,
        "isInline": bool,
        "name": str,
        "size": int,
    },
    "attachmentItem": {
        "attachmentType": ("enum", {"file", "item", "reference"}),
        "contentId": str,
        "contentType": str,
        "isInline": bool,
        "name": str,
        "size": int,
    },
    "sendMail": {"message": "message", "saveToSentItems": bool},
    "createUploadSession": {"AttachmentItem": "attachmentItem"},
}
REQUIRED = {
    "sendMail": {"message"},
    "fileAttachment": {"@odata.type", "name", "contentBytes"},
    "attachmentItem": {"attachmentType", "name", "size"},
    "createUploadSession": {"AttachmentItem"},
    "emailAddress": {"address"},
    "itemBody": {"contentType", "content"},
    "internetMessageHeader": {"name", "value"},
}

_MAILBOX = r"(?:me|users/[^/]+)"
_ID = r"[^/]+"
ROUTES: list[tuple[str, re.Pattern[str], str | None, str]] = [
    ("POST", re.compile(f"^{API}/{_MAILBOX}/sendMail$"), "sendMail", "user.sendMail"),
    ("POST", re.compile(f"^{API}/{_MAILBOX}/messages$"), "message", "user.messages.create"),
    (
        "POST",
        re.compile(f"^{API}/{_MAILBOX}/messages/{_ID}/attachments$"),
        "fileAttachment",
        "message.attachments.create",
    ),
    (
        "POST",
        re.compile(f"^{API}/{_MAILBOX}/messages/{_ID}/attachments/createUploadSession$"),
        "createUploadSession",
        "attachment.createUploadSession",
    ),
    ("POST", re.compile(f"^{API}/{_MAILBOX}/messages/{_ID}/send$"), None, "message.send"),
    ("DELETE", re.compile(f"^{API}/{_MAILBOX}/messages/{_ID}$"), None, "message.delete"),
]


def _check(value: Any, kind: Type, where: str) -> None:
    if kind == "base64":
        assert isinstance(value, str), f"{where}: expected base64 text"
        try:
            base64.b64decode(value, validate=True)
        except binascii.Error as exc:
            raise AssertionError(f"{where}: not base64 ({exc})") from None
    elif isinstance(kind, str):
        _check_object(value, kind, where)
    elif isinstance(kind, tuple) and kind[0] == "list":
        assert isinstance(value, list), f"{where}: expected a list"
        for index, item in enumerate(value):
            _check(item, kind[1], f"{where}[{index}]")
    elif isinstance(kind, tuple) and kind[0] == "enum":
        assert isinstance(value, str) and value.lower() in {v.lower() for v in kind[1]}, (
            f"{where}: {value!r} is not one of {sorted(kind[1])}"
        )
    elif kind is int:
        assert isinstance(value, int) and not isinstance(value, bool), f"{where}: expected int"
    else:
        assert isinstance(value, kind), f"{where}: expected {kind.__name__}, got {value!r}"


def _check_object(value: Any, schema: str, where: str) -> None:
    assert isinstance(value, dict), f"{where}: expected a {schema} object"
    fields = SCHEMAS[schema]
    unknown = set(value) - set(fields)
    assert not unknown, f"{where}: {schema} has no field {sorted(unknown)}"
    missing = REQUIRED.get(schema, set()) - set(value)
    assert not missing, f"{where}: {schema} needs {sorted(missing)}"
    for name, item in value.items():
        _check(item, fields[name], f"{where}.{name}")


def validate(request: httpx.Request) -> str:
    """The operation `request` is, after checking its body against the published shapes."""
    url = str(request.url).split("?")[0]
    if request.url.host == "outlook.office.com":  # an upload session's PUT
        assert request.method == "PUT", f"{request.method} to an upload URL"
        assert "authorization" not in request.headers, "the upload URL got the bearer token"
        assert request.headers["content-type"] == "application/octet-stream"
        assert re.fullmatch(r"bytes \d+-\d+/\d+", request.headers["content-range"])
        assert int(request.headers["content-length"]) == len(request.content)
        return "uploadSession.put"
    found = [r for r in ROUTES if r[0] == request.method and r[1].match(url)]
    assert found, f"no Graph mail operation is {request.method} {url}"
    _, _, schema, name = found[0]
    assert request.headers.get("authorization", "").startswith("Bearer "), "no bearer token"
    if schema is None:
        assert not request.content, f"{name} takes no body"
        return name
    if name == "user.sendMail" and request.headers["content-type"] == "text/plain":
        raw = base64.b64decode(request.content, validate=True)
        assert b"\r\nMIME-Version: 1.0\r\n" in raw, "the MIME form must be a MIME message"
        return name
    assert request.headers["content-type"] == "application/json"
    _check_object(json.loads(request.content), schema, name)
    return name


def validate_all(requests: list[httpx.Request]) -> list[str]:
    """`validate()` every request; the operation names, in order."""
    return [validate(r) for r in requests]
