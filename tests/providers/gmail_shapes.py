"""Gmail API answers as the reference documents them, for respx routes.

Shapes from developers.google.com/gmail/api/reference/rest/v1: `users.messages` (Message,
MessagePart with nested `parts`, MessagePartBody `{attachmentId, size, data}` with base64url
`data`), `users.labels.list`, `users.history.list`, `users.getProfile`, `users.threads.get`,
and the error body `{"error": {"code", "message", "errors": [{"reason"}], "status"}}`.
`structure(answer)` is what a `fields=` mask without `body/data` returns.
"""

from __future__ import annotations

import base64
import copy
from typing import Any

import httpx
from mailbox_scenario import PDF

API = "https://gmail.googleapis.com/gmail/v1/users/me"
LIST = f"{API}/messages"
LABELS = f"{API}/labels"
HISTORY = f"{API}/history"
PROFILE = f"{API}/profile"
BATCH_MODIFY = f"{API}/messages/batchModify"
SEND = f"{API}/messages/send"
UPLOAD = "https://gmail.googleapis.com/upload/gmail/v1/users/me/messages/send"

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256))


def b64(data: bytes, *, padded: bool = False) -> str:
    """Gmail's base64url (it sends it both with and without padding)."""
    text = base64.urlsafe_b64encode(data).decode()
    return text if padded else text.rstrip("=")


def header_list(**headers: str) -> list[dict[str, str]]:
    return [{"name": k.replace("_", "-"), "value": v} for k, v in headers.items()]


def gmail_error(code: int, reason: str, message: str, status: str) -> dict[str, object]:
    return {
        "error": {
            "code": code,
            "message": message,
            "errors": [{"message": message, "domain": "global", "reason": reason}],
            "status": status,
        }
    }


NOT_FOUND = gmail_error(404, "notFound", "Requested entity was not found.", "NOT_FOUND")
LABEL_CONFLICT = gmail_error(409, "aborted", "Label name exists or conflicts", "ABORTED")
NO_SCOPE = gmail_error(
    403, "insufficientPermissions", "Request had insufficient authentication scopes.",
    "PERMISSION_DENIED",
)  # fmt: skip
BACKEND = gmail_error(503, "backendError", "Backend Error", "UNAVAILABLE")


def message(
    message_id: str,
    *,
    subject: str = "Quarterly report",
    sender: str = "José García <jose@example.com>",
    labels: tuple[str, ...] = ("INBOX", "UNREAD", "IMPORTANT", "Label_7", "CATEGORY_UPDATES"),
    internal: int = 1_762_160_400_000,
    thread: str | None = None,
    text: str = "Numbers attached.\r\n\r\n> an old quote\r\nBye\r\n",
    date: str = "Mon, 03 Nov 2025 10:00:00 +0100",
    extra: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A `messages.get?format=full` answer: multipart/mixed with a text/HTML alternative,
    a PDF attachment and an inline image (both behind attachment ids)."""
    top = header_list(
        Delivered_To="me@example.com",
        Received="by 2002:a05:6402:1234 with SMTP id x; Mon, 3 Nov 2025 01:00:00 -0800 (PST)",
        MIME_Version="1.0",
        From=sender,
        To="me@example.com, Bob <bob@example.org>",
        Cc="Cléo <cleo@example.net>",
        Subject=subject,
        Date=date,
        Message_ID=f"<{message_id}@mail.example.com>",
        References="<root@example.com>",
        In_Reply_To="<root@example.com>",
        Content_Type='multipart/mixed; boundary="000000000000b1d2"',
        **(extra or {}),
    )
    html = "<p>Numbers <b>attached</b>.</p>"
    plain = text.encode("utf-8")
    return {
        "id": message_id,
        "threadId": thread or f"t{message_id}",
        "labelIds": list(labels),
        "snippet": "Numbers attached. &gt; an old quote Bye",
        "historyId": "987650",
        "internalDate": str(internal),
        "sizeEstimate": 9_876,
        "payload": {
            "partId": "",
            "mimeType": "multipart/mixed",
            "filename": "",
            "headers": top,
            "body": {"size": 0},
            "parts": [
                {
                    "partId": "0",
                    "mimeType": "multipart/alternative",
                    "filename": "",
                    "headers": header_list(
                        Content_Type='multipart/alternative; boundary="000000000000b1d0"'
                    ),
                    "body": {"size": 0},
                    "parts": [
                        {
                            "partId": "0.0",
                            "mimeType": "text/plain",
                            "filename": "",
                            "headers": header_list(
                                Content_Type='text/plain; charset="UTF-8"',
                                Content_Transfer_Encoding="quoted-printable",
                            ),
                            "body": {"size": len(plain), "data": b64(plain)},
                        },
                        {
                            "partId": "0.1",
                            "mimeType": "text/html",
                            "filename": "",
                            "headers": header_list(
                                Content_Type='text/html; charset="UTF-8"',
                                Content_Transfer_Encoding="quoted-printable",
                            ),
                            "body": {"size": len(html), "data": b64(html.encode(), padded=True)},
                        },
                    ],
                },
                {
                    "partId": "1",
                    "mimeType": "application/pdf",
                    "filename": "report.pdf",
                    "headers": header_list(
                        Content_Type='application/pdf; name="report.pdf"',
                        Content_Disposition='attachment; filename="report.pdf"',
                        Content_Transfer_Encoding="base64",
                        X_Attachment_Id="f_m1",
                    ),
                    "body": {"attachmentId": f"ANGjdJ_{message_id}_pdf", "size": len(PDF)},
                },
                {
                    "partId": "2",
                    "mimeType": "image/png",
                    "filename": "logo.png",
                    "headers": header_list(
                        Content_Type='image/png; name="logo.png"',
                        Content_Disposition='inline; filename="logo.png"',
                        Content_Transfer_Encoding="base64",
                        Content_ID="<logo@example.com>",
                    ),
                    "body": {"attachmentId": f"ANGjdJ_{message_id}_png", "size": len(PNG)},
                },
            ],
        },
    }


def structure(answer: dict[str, Any]) -> dict[str, Any]:
    """`answer` as the listing's `fields=` mask returns it: every part without `body.data`."""
    out = copy.deepcopy(answer)
    stack = [out["payload"]]
    while stack:
        part = stack.pop()
        part.get("body", {}).pop("data", None)
        stack.extend(part.get("parts") or ())
    return out


def attachment(data: bytes, attachment_id: str) -> dict[str, Any]:
    """A `messages.attachments.get` answer (MessagePartBody)."""
    return {"attachmentId": attachment_id, "size": len(data), "data": b64(data)}


def labels() -> dict[str, Any]:
    """A `labels.list` answer: system labels named by their ids, and user labels."""
    system = ["INBOX", "SENT", "DRAFT", "SPAM", "TRASH", "UNREAD", "STARRED", "IMPORTANT",
              "CHAT", "CATEGORY_UPDATES", "CATEGORY_PROMOTIONS"]  # fmt: skip
    found: list[dict[str, Any]] = [
        {
            "id": s,
            "name": s,
            "messageListVisibility": "hide",
            "labelListVisibility": "labelHide",
            "type": "system",
        }
        for s in system
    ]
    for label, name in (("Label_7", "Boss"), ("Label_12", "Clients/Acme"), ("Label_3", "Archive")):
        found.append({"id": label, "name": name, "messageListVisibility": "show",
                      "labelListVisibility": "labelShow", "type": "user"})  # fmt: skip
    return {"labels": found}


def modified(message_id: str, labels: list[str], thread: str | None = None) -> dict[str, Any]:
    """A `messages.modify` / `trash` / `untrash` answer (a minimal Message)."""
    return {"id": message_id, "threadId": thread or f"t{message_id}", "labelIds": labels}


def history(*added: str, history_id: str, token: str | None = None) -> dict[str, Any]:
    """A `history.list` answer with one record per added message."""
    answer: dict[str, Any] = {"historyId": history_id}
    if added:
        answer["history"] = [
            {
                "id": str(int(history_id) - len(added) + i),
                "messages": [{"id": m, "threadId": f"t{m}"}],
                "messagesAdded": [
                    {"message": {"id": m, "threadId": f"t{m}", "labelIds": ["UNREAD", "INBOX"]}}
                ],
            }
            for i, m in enumerate(added)
        ]
    if token:
        answer["nextPageToken"] = token
    return answer


def profile(history_id: str) -> dict[str, Any]:
    return {
        "emailAddress": "me@example.com",
        "messagesTotal": 1234,
        "threadsTotal": 999,
        "historyId": history_id,
    }


def route_messages(router: Any, *answers: dict[str, Any]) -> None:
    """`messages.get` for each answer: its structure for a listing's masked get (`fields=`),
    the whole message for `format=full`."""
    for answer in answers:
        masked = structure(answer)

        def reply(request: httpx.Request, full: Any = answer, part: Any = masked) -> httpx.Response:
            return httpx.Response(200, json=part if b"fields=" in request.url.query else full)

        router.get(f"{LIST}/{answer['id']}").mock(side_effect=reply)


def listing(*ids: str, token: str | None = None) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "messages": [{"id": i, "threadId": f"t{i}"} for i in ids],
        "resultSizeEstimate": len(ids),
    }
    if token:
        answer["nextPageToken"] = token
    return answer
