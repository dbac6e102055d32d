"""What `comm.outlook(...)` needs before it builds a `GraphProvider`: the access token's source,
the keys its limiter and concurrency bound are shared under, and the settings a worker
rebuilds it from (`spec()`: a secret only as the name of its environment variable).

Three ways to authenticate, one of which must be given:

- app-only (client credentials, no user): `tenant_id=`, `client_id=`, `client_secret=` or
  `client_secret_env=`, and `mailbox=` (the app has no mailbox of its own);
- a signed-in user's token file from `xcomm auth outlook`: `credentials_path=` (`mailbox=`
  optional: without it, `/me`);
- any `TokenManager`: `token_manager=` (`mailbox=` optional).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from xcomm._clock import Clock
from xcomm._config import secret_from_env
from xcomm._errors import ConfigurationError
from xcomm.email._graph import check_mailbox

if TYPE_CHECKING:
    from xcomm.auth import OAuthClient, OAuthEndpoint, TokenManager

__all__ = ["GRAPH_MAILBOX_CONCURRENCY", "GraphSetup", "graph_setup"]

#: Requests Outlook runs at once for one app on one mailbox (Graph throttling limits).
GRAPH_MAILBOX_CONCURRENCY = 4

_HOW = (
    "comm.outlook() needs credentials: for app-only access tenant_id=, client_id=, "
    "client_secret= (or client_secret_env='NAME') and mailbox='user@contoso.com'; for a "
    "signed-in user credentials_path= (the file `xcomm auth outlook` writes) or token_manager="
)


@dataclass(frozen=True, slots=True)
class GraphSetup:
    """The resolved settings of one Outlook provider."""

    auth: TokenManager
    #: Key of the provider's rate-limit bucket (per app and mailbox, as Graph counts).
    account: str
    #: Key of the concurrency bound shared by every provider on the same mailbox.
    mailbox_key: str
    spec: dict[str, Any]


def graph_setup(
    *,
    oauth: Callable[[OAuthClient], OAuthEndpoint],
    clock: Clock,
    mailbox: str | None,
    tenant_id: str | None,
    client_id: str | None,
    client_secret: str | None,
    client_secret_env: str | None,
    credentials_path: str | os.PathLike[str] | None,
    token_manager: TokenManager | None,
    sender: str | None,
    save_to_sent_items: bool,
) -> GraphSetup:
    """Resolve `comm.outlook()`'s arguments; `ConfigurationError` says what is missing."""
    check_mailbox(mailbox)
    app = {
        "tenant_id": tenant_id,
        "client_id": client_id,
        "client_secret": client_secret,
        "client_secret_env": client_secret_env,
    }
    given = [name for name, value in app.items() if value is not None]
    ways = [given, credentials_path is not None, token_manager is not None]
    if sum(bool(way) for way in ways) != 1:
        raise ConfigurationError(f"{_HOW}; give exactly one of the three" if any(ways) else _HOW)
    spec: dict[str, Any] = {
        "kind": "outlook",
        "mailbox": mailbox,
        "sender": sender,
        "save_to_sent_items": save_to_sent_items,
    }
    path = None if credentials_path is None else os.fspath(credentials_path)
    if token_manager is not None:
        spec["custom"] = True  # a worker finds it only if its process creates the same one
        who = f"token-manager:{id(token_manager)}"
        auth = token_manager
    elif path is not None:
        auth = _delegated(path, oauth=oauth, clock=clock)
        spec["credentials_path"] = path
        who = f"file:{os.path.abspath(path)}"
    else:
        auth, who = _app_only(app, mailbox, oauth=oauth, clock=clock)
        spec.update(tenant_id=tenant_id, client_id=client_id, client_secret_env=client_secret_env)
        if client_secret is not None:
            spec["custom"] = True  # the secret is not written down; client_secret_env is
    mailbox_key = f"outlook:{mailbox.lower()}" if mailbox else f"outlook:me:{who}"
    digest = hashlib.sha256(f"{who}:{mailbox_key}".encode()).hexdigest()[:16]
    return GraphSetup(auth=auth, account=f"outlook:{digest}", mailbox_key=mailbox_key, spec=spec)


def _app_only(
    app: dict[str, str | None],
    mailbox: str | None,
    *,
    oauth: Callable[[OAuthClient], OAuthEndpoint],
    clock: Clock,
) -> tuple[TokenManager, str]:
    from xcomm.auth import OAuthClient, TokenManager

    if app["client_secret"] is not None and app["client_secret_env"] is not None:
        raise ConfigurationError("give client_secret= or client_secret_env=, not both")
    missing = [n for n in ("tenant_id", "client_id") if not app[n]]
    if app["client_secret"] is None and app["client_secret_env"] is None:
        missing.append("client_secret= (or client_secret_env='NAME')")
    if mailbox is None:
        missing.append("mailbox='user@contoso.com' (app-only access has no /me)")
    if missing:
        names = ", ".join(m if "=" in m else f"{m}=" for m in missing)
        raise ConfigurationError(f"comm.outlook() app-only access is missing {names}")
    secret = app["client_secret"]
    if secret is None:
        name = app["client_secret_env"]
        assert name is not None
        secret = secret_from_env(name, "the Entra client secret of the Outlook provider")
    client = OAuthClient.microsoft(
        str(app["client_id"]), tenant=str(app["tenant_id"]), client_secret=secret
    )
    tokens = TokenManager(oauth(client).client_credentials, clock=clock)
    return tokens, f"app:{app['tenant_id']}:{app['client_id']}"


def _delegated(
    path: str, *, oauth: Callable[[OAuthClient], OAuthEndpoint], clock: Clock
) -> TokenManager:
    from xcomm.auth import (
        GOOGLE_TOKEN_URI,
        AuthorizedUser,
        RefreshGrant,
        TokenManager,
        load_google_credentials,
    )

    user = load_google_credentials(path)
    if not isinstance(user, AuthorizedUser) or user.token_uri == GOOGLE_TOKEN_URI:
        raise ConfigurationError(
            f"{path} is not a Microsoft token file; run `xcomm auth outlook --client-id ... "
            f"--tenant ... --token-file {path}` first"
        )
    return TokenManager(
        RefreshGrant(oauth(user.client), user.refresh_token), clock=clock, token=user.token
    )
