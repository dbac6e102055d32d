"""Microsoft Graph answers and settings shared by the Outlook tests (respx routes).

Error bodies are Graph's: `{"error": {"code", "message", "innerError": {"date",
"request-id", "client-request-id"}}}`; the token answer is the Microsoft identity platform's
v2.0 client-credentials answer.
"""

from __future__ import annotations

from xcomm import CommManager, GraphProvider

TENANT = "contoso.onmicrosoft.com"
CLIENT_ID = "6731de76-14a6-49ae-97bc-6eba6914391e"
TOKEN_URL = f"https://login.microsoftonline.com/{TENANT}/oauth2/v2.0/token"
MAILBOX = "reports@contoso.com"
GRAPH = "https://graph.microsoft.com/v1.0"
BASE = f"{GRAPH}/users/{MAILBOX}"
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
