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
    "followupFlag": {"flagStatus": ("enum", {"notFlagged", "complete", "flagged"})},
    # PATCH /messages/{id}: the properties Update message lists as writable that xcomm sets.
    "messageUpdate": {
        "isRead": bool,
        "flag": "followupFlag",
        "importance": ("enum", {"low", "normal", "high"}),
        "categories": ("list", str),
    },
    "moveOrCopy": {"destinationId": str},
    "mailFolderCreate": {"displayName": str},
    "createReply": {"comment": str, "message": "message"},
    "createForward": {"comment": str, "toRecipients": ("list", "recipient")},
    "sendMail": {"message": "message", "saveToSentItems": bool},
    "createUploadSession": {"AttachmentItem": "attachmentItem"},
}
REQUIRED = {
    "sendMail": {"message"},
    "fileAttachment": {"@odata.type", "name", "contentBytes"},
    "attachmentItem": {"attachmentType", "name", "size"},
    "createUploadSession": {"AttachmentItem"},
    "moveOrCopy": {"destinationId"},
    "mailFolderCreate": {"displayName"},
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
    ("GET", re.compile(f"^{API}/{_MAILBOX}/messages$"), None, "user.messages.list"),
    (
        "GET",
        re.compile(f"^{API}/{_MAILBOX}/mailFolders/{_ID}/messages$"),
        None,
        "mailFolder.messages.list",
    ),
    (
        "GET",
        re.compile(f"^{API}/{_MAILBOX}/mail[Ff]olders(?:/{_ID}|\\('[^/']+'\\))/messages/delta$"),
        None,
        "message.delta",
    ),
    ("GET", re.compile(f"^{API}/{_MAILBOX}/messages/{_ID}$"), None, "message.get"),
    ("PATCH", re.compile(f"^{API}/{_MAILBOX}/messages/{_ID}$"), "messageUpdate", "message.update"),
    (
        "POST",
        re.compile(f"^{API}/{_MAILBOX}/messages/{_ID}/(?:move|copy)$"),
        "moveOrCopy",
        "message.move",
    ),
    (
        "POST",
        re.compile(f"^{API}/{_MAILBOX}/messages/{_ID}/permanentDelete$"),
        None,
        "message.permanentDelete",
    ),
    (
        "POST",
        re.compile(f"^{API}/{_MAILBOX}/messages/{_ID}/createReply(?:All)?$"),
        "createReply",
        "message.createReply",
    ),
    (
        "POST",
        re.compile(f"^{API}/{_MAILBOX}/messages/{_ID}/createForward$"),
        "createForward",
        "message.createForward",
    ),
    (
        "GET",
        re.compile(f"^{API}/{_MAILBOX}/messages/{_ID}/attachments$"),
        None,
        "message.attachments.list",
    ),
    (
        "GET",
        re.compile(rf"^{API}/{_MAILBOX}/messages/{_ID}/attachments/{_ID}/\$value$"),
        None,
        "attachment.value",
    ),
    ("GET", re.compile(f"^{API}/{_MAILBOX}/mailFolders$"), None, "user.mailFolders.list"),
    ("GET", re.compile(f"^{API}/{_MAILBOX}/mailFolders/{_ID}$"), None, "mailFolder.get"),
    (
        "GET",
        re.compile(f"^{API}/{_MAILBOX}/mailFolders/{_ID}/childFolders$"),
        None,
        "mailFolder.childFolders.list",
    ),
    (
        "POST",
        re.compile(f"^{API}/{_MAILBOX}/mailFolders$"),
        "mailFolderCreate",
        "user.mailFolders.create",
    ),
    (
        "POST",
        re.compile(f"^{API}/{_MAILBOX}/mailFolders/{_ID}/childFolders$"),
        "mailFolderCreate",
        "mailFolder.childFolders.create",
    ),
]
#: Every property of the message resource (v1.0), what `$select` may name.
MESSAGE_PROPERTIES = {
    "bccRecipients",
    "body",
    "bodyPreview",
    "categories",
    "ccRecipients",
    "changeKey",
    "conversationId",
    "conversationIndex",
    "createdDateTime",
    "flag",
    "from",
    "hasAttachments",
    "id",
    "importance",
    "inferenceClassification",
    "internetMessageHeaders",
    "internetMessageId",
    "isDeliveryReceiptRequested",
    "isDraft",
    "isRead",
    "isReadReceiptRequested",
    "lastModifiedDateTime",
    "parentFolderId",
    "receivedDateTime",
    "replyTo",
    "sender",
    "sentDateTime",
    "subject",
    "toRecipients",
    "uniqueBody",
    "webLink",
}
FOLDER_PROPERTIES = {"childFolderCount", "displayName", "id", "isHidden", "parentFolderId",
                     "totalItemCount", "unreadItemCount"}  # fmt: skip
_FOLDER_READS = {"user.mailFolders.list", "mailFolder.get", "mailFolder.childFolders.list"}
ATTACHMENT_PROPERTIES = {"contentType", "id", "isInline", "lastModifiedDateTime", "name", "size"}
_QUERY_OPTIONS = {"$select", "$filter", "$search", "$orderby", "$top", "$expand", "changeType"}


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
    if url == f"{API}/$batch":
        return _validate_batch(request)
    found = [r for r in ROUTES if r[0] == request.method and r[1].match(url)]
    assert found, f"no Graph mail operation is {request.method} {url}"
    _, _, schema, name = found[0]
    assert request.headers.get("authorization", "").startswith("Bearer "), "no bearer token"
    _check_query(request, name)
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


def _check_query(request: httpx.Request, name: str) -> None:
    """Query options: known ones, a `$select` of message properties, `$` kept literal."""
    raw = request.url.query.decode("ascii")
    assert "%24" not in raw.split("$skiptoken")[0], f"{name}: OData options keep their '$'"
    params = request.url.params
    for key in params:
        assert key in _QUERY_OPTIONS or key.startswith("$"), f"{name}: unknown option {key}"
    if "$search" in params:
        assert "$filter" not in params and "$orderby" not in params, (
            f"{name}: $search cannot be combined with $filter or $orderby"
        )
        assert params["$search"].startswith('"') and params["$search"].endswith('"')
    select = params.get("$select")
    if select and "attachments" in name:
        unknown = set(select.split(",")) - ATTACHMENT_PROPERTIES
        assert not unknown, f"{name}: attachment has no property {sorted(unknown)}"
    elif select and name in _FOLDER_READS:
        unknown = set(select.split(",")) - FOLDER_PROPERTIES
        assert not unknown, f"{name}: mailFolder has no property {sorted(unknown)}"
    elif select:
        unknown = set(select.split(",")) - MESSAGE_PROPERTIES
        assert not unknown, f"{name}: message has no property {sorted(unknown)}"
    expand = params.get("$expand")
    if expand:
        items = re.findall(r"[A-Za-z]+\([^()]*\)", expand)
        assert ",".join(items) == expand, f"{name}: unexpected $expand {expand!r}"
        for item in items:
            match = re.fullmatch(r"attachments\(\$select=([^)]*)\)", item)
            if match:
                unknown = set(match.group(1).split(",")) - ATTACHMENT_PROPERTIES
                assert not unknown, f"{name}: attachment has no property {sorted(unknown)}"
                continue
            assert re.fullmatch(
                r"singleValueExtendedProperties\(\$filter=id eq 'Integer 0x[0-9A-F]{4}'\)",
                item,
            ), f"{name}: unexpected $expand item {item!r}"
    top = params.get("$top")
    if top is not None:
        assert 1 <= int(top) <= 1000, f"{name}: $top {top} out of range"


def _validate_batch(request: httpx.Request) -> str:
    """A JSON batch: at most 20 requests with unique ids, each valid on its own."""
    assert request.method == "POST"
    assert request.headers["content-type"] == "application/json"
    assert request.headers.get("authorization", "").startswith("Bearer "), "no bearer token"
    body = json.loads(request.content)
    assert set(body) == {"requests"}, f"$batch: unexpected fields {sorted(body)}"
    items = body["requests"]
    assert 1 <= len(items) <= 20, f"$batch holds 1 to 20 requests, not {len(items)}"
    ids = [item["id"] for item in items]
    assert len(set(ids)) == len(ids), "$batch request ids must be unique"
    for item in items:
        assert set(item) <= {"id", "method", "url", "headers", "body", "dependsOn"}
        assert isinstance(item["id"], str) and item["url"].startswith("/")
        headers = {"Authorization": request.headers["authorization"], **item.get("headers", {})}
        content = b""
        if "body" in item:
            assert headers.get("Content-Type") == "application/json", "a body needs its type"
            content = json.dumps(item["body"]).encode()
        validate(
            httpx.Request(item["method"], f"{API}{item['url']}", headers=headers, content=content)
        )
    return "$batch"


def validate_all(requests: list[httpx.Request]) -> list[str]:
    """`validate()` every request; the operation names, in order."""
    return [validate(r) for r in requests]
