"""Microsoft Graph answers and settings shared by the Outlook tests (respx routes).

The message resource is as `GET /users/{id}/messages` answers it (nested `emailAddress`,
`flag.flagStatus`, `categories`, expanded `attachments` and extended properties).

Error bodies are Graph's: `{"error": {"code", "message", "innerError": {"date",
"request-id", "client-request-id"}}}`; the token answer is the Microsoft identity platform's
v2.0 client-credentials answer.
"""

from __future__ import annotations

from typing import Any

from xcomm import CommManager, GraphProvider

TENANT = "contoso.onmicrosoft.com"
CLIENT_ID = "6731de76-14a6-49ae-97bc-6eba6914391e"
TOKEN_URL = f"https://login.microsoftonline.com/{TENANT}/oauth2/v2.0/token"
MAILBOX = "reports@contoso.com"
GRAPH = "https://graph.microsoft.com/v1.0"
BASE = f"{GRAPH}/users/{MAILBOX}"
CONTEXT = f"{GRAPH}/$metadata#users('{MAILBOX}')/messages"
# The client-credentials answer of the Microsoft identity platform (v2.0 token endpoint).
TOKEN_OK = {
    "token_type": "Bearer",
    "expires_in": 3599,
    "ext_expires_in": 3599,
    "access_token": "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.app",
}


def graph_error(code: str, message: str) -> dict[str, object]:
    return {
        "error": {
            "code": code,
            "message": message,
            "innerError": {
                "date": "2024-05-02T10:11:12",
                "request-id": "0f7c4a52-3e7b-4f5a-9d3e-1b2c3d4e5f60",
                "client-request-id": "0f7c4a52-3e7b-4f5a-9d3e-1b2c3d4e5f60",
            },
        }
    }


def app_only(comm: CommManager, **options: object) -> GraphProvider:
    """An Outlook provider with app-only credentials on `MAILBOX`."""
    settings: dict[str, object] = {
        "tenant_id": TENANT,
        "client_id": CLIENT_ID,
        "client_secret_env": "GRAPH_CLIENT_SECRET",
        "mailbox": MAILBOX,
    }
    settings.update(options)
    return comm.outlook(**settings)  # type: ignore[arg-type]


def message(
    message_id: str,
    *,
    subject: str = "Q4 figures",
    received: str = "2024-05-02T10:11:12Z",
    sender: str = "ada@example.org",
    is_read: bool = False,
    flagged: bool = False,
    importance: str = "normal",
    categories: tuple[str, ...] = (),
    attachments: list[dict[str, Any]] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A message resource as `GET /users/{id}/messages` answers it (Graph's field names)."""
    data: dict[str, Any] = {
        "@odata.etag": 'W/"CQAAABYAAAARn2vdzPFjSbaPPxzjlzOTAAASsKZz"',
        "id": message_id,
        "receivedDateTime": received,
        "sentDateTime": received.replace("12Z", "10Z"),
        "hasAttachments": bool(attachments),
        "internetMessageId": f"<{message_id[:8]}@namprd13.prod.outlook.com>",
        "subject": subject,
        "bodyPreview": "Figures attached, see the summary below.",
        "importance": importance,
        "parentFolderId": "AQMkADNkNAAAgEMAAAA",
        "conversationId": "AAQkAGI1YWI0NjJkLWQ2YzQtNDAzOC05ZmJkLTk4NGVjNGU0ZWYwOQAQAH",
        "isRead": is_read,
        "isDraft": False,
        "flag": {"flagStatus": "flagged" if flagged else "notFlagged"},
        "categories": list(categories),
        "sender": {"emailAddress": {"name": "Ada Lovelace", "address": sender}},
        "from": {"emailAddress": {"name": "Ada Lovelace", "address": sender}},
        "toRecipients": [{"emailAddress": {"name": "Reports", "address": MAILBOX}}],
        "ccRecipients": [
            {"emailAddress": {"name": "ops@example.org", "address": "ops@example.org"}}
        ],
        "replyTo": [],
        "attachments@odata.context": f"{CONTEXT}('{message_id}')/attachments",
        "attachments": attachments or [],
        "singleValueExtendedProperties": [{"id": "Integer 0xe08", "value": "14325"}],
    }
    data.update(extra)
    return data


def attachment(attachment_id: str, name: str, *, inline: bool = False) -> dict[str, Any]:
    return {
        "@odata.type": "#microsoft.graph.fileAttachment",
        "@odata.mediaContentType": "application/pdf",
        "id": attachment_id,
        "name": name,
        "contentType": "application/pdf",
        "size": 7203,
        "isInline": inline,
    }


def page(*items: dict[str, Any], next_link: str | None = None) -> dict[str, Any]:
    answer: dict[str, Any] = {"@odata.context": CONTEXT, "value": list(items)}
    if next_link is not None:
        answer["@odata.nextLink"] = next_link
    return answer
