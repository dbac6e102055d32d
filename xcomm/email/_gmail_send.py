"""What `GmailProvider.send()` sends (pure): `users.messages.send` as JSON or as an upload.

Up to `GMAIL_UPLOAD_THRESHOLD` bytes the message goes base64url in JSON (`{"raw": ...,
"threadId": ...}`); above it, to the upload endpoint: a simple media upload of the bytes, or,
to carry a `threadId`, a multipart upload (RFC 2387: the JSON metadata, then the
`message/rfc822` part). Over `GMAIL_MAX_MESSAGE_SIZE` nothing is sent.
"""

from __future__ import annotations

import base64
import uuid

from xcomm._http import encode_json

__all__ = ["GMAIL_MAX_MESSAGE_SIZE", "GMAIL_UPLOAD_THRESHOLD", "send_request"]

API = "https://gmail.googleapis.com/gmail/v1/users"
UPLOAD = "https://gmail.googleapis.com/upload/gmail/v1/users"
#: Gmail's limit on a message, attachments included (the discovery document's maxSize).
GMAIL_MAX_MESSAGE_SIZE = 35 * 1024 * 1024
#: Above this size a message is sent with a media upload instead of base64 in JSON.
GMAIL_UPLOAD_THRESHOLD = 5 * 1024 * 1024


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii")


def send_request(
    raw: bytes, *, user_id: str = "me", thread_id: str | None = None
) -> tuple[str, str, bytes, str]:
    """(method, url, body, content type) of `users.messages.send` for `raw` (pure).

    Up to `GMAIL_UPLOAD_THRESHOLD` bytes, JSON with the base64url message (and `threadId`).
    Above it, an upload of the bytes themselves: a simple media upload, or, to carry a
    `threadId`, a multipart upload (JSON metadata, then the message/rfc822 part).
    """
    if len(raw) <= GMAIL_UPLOAD_THRESHOLD:
        body: dict[str, str] = {"raw": _b64url(raw)}
        if thread_id:
            body["threadId"] = thread_id
        return "POST", f"{API}/{user_id}/messages/send", encode_json(body), "application/json"
    if not thread_id:
        url = f"{UPLOAD}/{user_id}/messages/send?uploadType=media"
        return "POST", url, raw, "message/rfc822"
    boundary = f"xcomm-{uuid.uuid4().hex}"
    metadata = encode_json({"threadId": thread_id})
    content = b"".join(
        [
            f"--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n".encode(),
            metadata,
            f"\r\n--{boundary}\r\nContent-Type: message/rfc822\r\n\r\n".encode(),
            raw,
            f"\r\n--{boundary}--\r\n".encode(),
        ]
    )
    url = f"{UPLOAD}/{user_id}/messages/send?uploadType=multipart"
    return "POST", url, content, f'multipart/related; boundary="{boundary}"'
