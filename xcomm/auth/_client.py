"""OAuth2 values: client settings (with Google and Microsoft presets), tokens, and PKCE.

Everything here is pure: building an authorization URL, a PKCE pair or a token-request body
needs no event loop. The network half lives in `xcomm.auth._endpoint`.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from collections.abc import Sequence
from urllib.parse import urlencode

import msgspec

from xcomm._errors import ConfigurationError

__all__ = [
    "GOOGLE_AUTH_URI",
    "GOOGLE_TOKEN_URI",
    "OAuthClient",
    "Token",
    "code_challenge",
    "make_code_verifier",
    "make_state",
]

GOOGLE_AUTH_URI = "https://accounts.google.com/o/oauth2/v2/auth"
GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"
MICROSOFT_AUTHORITY = "https://login.microsoftonline.com/{tenant}/oauth2/v2.0"
GRAPH_DEFAULT_SCOPE = "https://graph.microsoft.com/.default"
GMAIL_SCOPES = ("https://mail.google.com/",)
OUTLOOK_SCOPES = (
    "offline_access",
    "https://graph.microsoft.com/Mail.ReadWrite",
    "https://graph.microsoft.com/Mail.Send",
)

_VERIFIER_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def make_code_verifier() -> str:
    """A fresh PKCE code verifier: 43 characters from 32 random bytes (RFC 7636 §4.1)."""
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode("ascii")


def code_challenge(verifier: str) -> str:
    """The S256 challenge of a PKCE verifier: BASE64URL(SHA256(verifier)) without padding."""
    if not 43 <= len(verifier) <= 128 or not set(verifier) <= _VERIFIER_CHARS:
        raise ConfigurationError(
            "a PKCE code verifier is 43-128 characters of A-Z a-z 0-9 - . _ ~ "
            "(use xcomm.auth.make_code_verifier())"
        )
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def make_state() -> str:
    """An unguessable `state` value that ties a redirect to the request that asked for it."""
    return secrets.token_urlsafe(24)


class OAuthClient(msgspec.Struct, frozen=True, kw_only=True):
    """Who we are to an OAuth2 authorization server, and where its endpoints are.

    Example:
        ```python
        from xcomm.auth import OAuthClient

        google = OAuthClient.google("123.apps.googleusercontent.com", client_secret="...")
        graph = OAuthClient.microsoft("my-client-id", tenant="contoso.onmicrosoft.com")
        ```

    `client_secret` is optional: Google "Desktop app" clients have one that is not secret, and
    Microsoft public clients have none (PKCE protects the code instead). `repr()` hides it.
    `issuer` ("google", "microsoft" or "") selects the advice given when a grant is refused.
    """

    client_id: str
    token_uri: str
    auth_uri: str = ""
    client_secret: str | None = None
    scopes: tuple[str, ...] = ()
    redirect_uri: str = "http://127.0.0.1"
    issuer: str = ""
    extra_auth_params: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if not self.client_id:
            raise ConfigurationError("OAuthClient needs a client_id")
        if not self.token_uri.startswith(("https://", "http://127.0.0.1", "http://localhost")):
            raise ConfigurationError(
                f"OAuthClient token_uri must be an https URL, got {self.token_uri[:40]!r}"
            )

    def __repr__(self) -> str:
        secret = "None" if self.client_secret is None else "'***'"
        return (
            f"OAuthClient(client_id={self.client_id!r}, token_uri={self.token_uri!r}, "
            f"client_secret={secret}, scopes={self.scopes!r}, issuer={self.issuer!r})"
        )

    @classmethod
    def google(
        cls,
        client_id: str,
        *,
        client_secret: str | None = None,
        scopes: Sequence[str] = GMAIL_SCOPES,
        redirect_uri: str = "http://127.0.0.1",
    ) -> OAuthClient:
        """Google's endpoints; asks for a refresh token (access_type=offline, prompt=consent)."""
        return cls(
            client_id=client_id,
            client_secret=client_secret,
            auth_uri=GOOGLE_AUTH_URI,
            token_uri=GOOGLE_TOKEN_URI,
            scopes=tuple(scopes),
            redirect_uri=redirect_uri,
            issuer="google",
            extra_auth_params=(("access_type", "offline"), ("prompt", "consent")),
        )

    @classmethod
    def microsoft(
        cls,
        client_id: str,
        *,
        tenant: str = "common",
        client_secret: str | None = None,
        scopes: Sequence[str] = OUTLOOK_SCOPES,
        redirect_uri: str = "http://localhost",
    ) -> OAuthClient:
        """The Microsoft identity platform (v2.0 endpoints) of `tenant`.

        `tenant` is a tenant id or domain, or "common"/"organizations"/"consumers". Delegated
        scopes need `offline_access` for a refresh token; app-only (`client_credentials()`)
        uses `https://graph.microsoft.com/.default` whatever `scopes` says.
        """
        if not tenant or any(c in tenant for c in "/?#@ "):
            raise ConfigurationError(f"bad Microsoft tenant {tenant!r}; use an id or a domain")
        base = MICROSOFT_AUTHORITY.format(tenant=tenant)
        return cls(
            client_id=client_id,
            client_secret=client_secret,
            auth_uri=f"{base}/authorize",
            token_uri=f"{base}/token",
            scopes=tuple(scopes),
            redirect_uri=redirect_uri,
            issuer="microsoft",
        )

    def authorization_url(
        self,
        *,
        state: str,
        code_verifier: str,
        redirect_uri: str | None = None,
        scopes: Sequence[str] | None = None,
        login_hint: str | None = None,
    ) -> str:
        """The URL to open in the user's browser (authorization code flow with PKCE S256)."""
        if not self.auth_uri:
            raise ConfigurationError("this OAuthClient has no auth_uri; set one or use a preset")
        if not state:
            raise ConfigurationError("authorization_url needs a state (use make_state())")
        params: dict[str, str] = {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": redirect_uri or self.redirect_uri,
            "scope": " ".join(scopes if scopes is not None else self.scopes),
            "state": state,
            "code_challenge": code_challenge(code_verifier),
            "code_challenge_method": "S256",
        }
        params.update(self.extra_auth_params)
        if login_hint:
            params["login_hint"] = login_hint
        return f"{self.auth_uri}?{urlencode(params)}"

    def credentials_form(self) -> dict[str, str]:
        """The client-authentication fields of a token request (client_secret_post)."""
        form = {"client_id": self.client_id}
        if self.client_secret:
            form["client_secret"] = self.client_secret
        return form


class Token(msgspec.Struct, frozen=True, kw_only=True):
    """An access token and what came with it. `repr()` and `str()` hide every secret.

    `expires_at` is wall-clock epoch seconds (so a stored token stays meaningful across
    processes); None means the server did not say.
    """

    access_token: str
    token_type: str = "Bearer"
    expires_at: float | None = None
    refresh_token: str | None = None
    scope: str | None = None
    id_token: str | None = None

    def __repr__(self) -> str:
        refresh = "None" if self.refresh_token is None else "'***'"
        return (
            f"Token(access_token='***', token_type={self.token_type!r}, "
            f"expires_at={self.expires_at!r}, refresh_token={refresh}, scope={self.scope!r})"
        )

    __str__ = __repr__

    def expires_in(self, *, now: float | None = None) -> float | None:
        """Seconds of validity left by the wall clock (None when unknown)."""
        if self.expires_at is None:
            return None
        return self.expires_at - (time.time() if now is None else now)
