"""Google's credential files, read as they come from the Cloud console and its tools.

Three kinds, told apart by their shape:

- the OAuth client file (`client_secret_….json`): `{"installed": {...}}` or `{"web": {...}}`
  → `OAuthClient`;
- an authorized-user token file (`{"type": "authorized_user", ...}`, written by
  `xcomm auth gmail`, gcloud or google-auth) → `AuthorizedUser`;
- a service-account key (`{"type": "service_account", ...}`) → `ServiceAccountKey`.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec

from xcomm._errors import ConfigurationError
from xcomm.auth._client import GOOGLE_AUTH_URI, GOOGLE_TOKEN_URI, OAuthClient, Token

__all__ = [
    "AuthorizedUser",
    "ServiceAccountKey",
    "load_google_credentials",
    "write_authorized_user",
]

_EXPECTED = (
    "expected a Google OAuth client file ({'installed': ...} or {'web': ...}), an "
    "authorized-user token file (type 'authorized_user') or a service-account key "
    "(type 'service_account')"
)


class AuthorizedUser(msgspec.Struct, frozen=True, kw_only=True):
    """A user's consent, saved: client id/secret and a refresh token. `repr()` hides secrets."""

    client_id: str
    refresh_token: str
    client_secret: str | None = None
    token_uri: str = GOOGLE_TOKEN_URI
    scopes: tuple[str, ...] = ()
    token: Token | None = None

    def __repr__(self) -> str:
        return f"AuthorizedUser(client_id={self.client_id!r}, refresh_token='***')"

    @property
    def client(self) -> OAuthClient:
        """The `OAuthClient` to refresh with."""
        google = self.token_uri == GOOGLE_TOKEN_URI
        return OAuthClient(
            client_id=self.client_id,
            client_secret=self.client_secret,
            token_uri=self.token_uri,
            auth_uri=GOOGLE_AUTH_URI if google else "",
            scopes=self.scopes,
            issuer="google" if google else "microsoft",
        )


class ServiceAccountKey(msgspec.Struct, frozen=True, kw_only=True):
    """A Google service-account key. `repr()` shows the account, never the private key."""

    client_email: str
    private_key: str
    private_key_id: str | None = None
    token_uri: str = GOOGLE_TOKEN_URI
    project_id: str | None = None

    def __repr__(self) -> str:
        return (
            f"ServiceAccountKey(client_email={self.client_email!r}, "
            f"private_key_id={self.private_key_id!r}, private_key='***')"
        )


def _field(data: dict[str, Any], name: str, what: str, path: str) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not value:
        raise ConfigurationError(f"{path}: this {what} has no {name!r}; download it again")
    return value


def _scopes(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(value.split())
    if isinstance(value, list):
        return tuple(str(s) for s in value)
    return ()


def _expiry(value: object) -> float | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.UTC)  # google-auth writes naive UTC
    return parsed.timestamp()


def parse_google_credentials(
    data: object, *, path: str = "<data>"
) -> OAuthClient | AuthorizedUser | ServiceAccountKey:
    """The credential object for a decoded Google credentials document."""
    if not isinstance(data, dict):
        raise ConfigurationError(f"{path}: not a JSON object; {_EXPECTED}")
    for section_name in ("installed", "web"):
        section = data.get(section_name)
        if isinstance(section, dict):
            what = f"OAuth client file ({section_name!r})"
            redirects = section.get("redirect_uris") or []
            redirect = "http://127.0.0.1"
            if section_name == "web" and redirects and isinstance(redirects[0], str):
                redirect = redirects[0]
            return OAuthClient(
                client_id=_field(section, "client_id", what, path),
                client_secret=section.get("client_secret") or None,
                auth_uri=GOOGLE_AUTH_URI,
                token_uri=section.get("token_uri") or GOOGLE_TOKEN_URI,
                scopes=("https://mail.google.com/",),
                redirect_uri=redirect,
                issuer="google",
                extra_auth_params=(("access_type", "offline"), ("prompt", "consent")),
            )
    kind = data.get("type")
    if kind == "authorized_user":
        what = "authorized-user file"
        token = None
        if isinstance(data.get("token"), str) and data["token"]:
            token = Token(access_token=data["token"], expires_at=_expiry(data.get("expiry")))
        return AuthorizedUser(
            client_id=_field(data, "client_id", what, path),
            client_secret=data.get("client_secret") or None,
            refresh_token=_field(data, "refresh_token", what, path),
            token_uri=data.get("token_uri") or GOOGLE_TOKEN_URI,
            scopes=_scopes(data.get("scopes")),
            token=token,
        )
    if kind == "service_account":
        what = "service-account key"
        private_key = _field(data, "private_key", what, path)
        if "PRIVATE KEY-----" not in private_key:
            raise ConfigurationError(f"{path}: the service-account private_key is not PEM")
        return ServiceAccountKey(
            client_email=_field(data, "client_email", what, path),
            private_key=private_key,
            private_key_id=data.get("private_key_id") or None,
            token_uri=data.get("token_uri") or GOOGLE_TOKEN_URI,
            project_id=data.get("project_id") or None,
        )
    found = f"type {kind!r}" if kind else f"keys {sorted(data)[:5]}"
    raise ConfigurationError(f"{path}: unknown credentials file ({found}); {_EXPECTED}")


def load_google_credentials(
    path: str | os.PathLike[str],
) -> OAuthClient | AuthorizedUser | ServiceAccountKey:
    """Read any of Google's three credential files; see the module docstring.

    Raises:
        ConfigurationError: the file is missing, not JSON, or of none of the three kinds.
    """
    name = os.fspath(path)
    try:
        raw = Path(name).read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"{name}: cannot read credentials ({exc.strerror})") from exc
    try:
        data = msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        raise ConfigurationError(f"{name}: not JSON; {_EXPECTED}") from exc
    return parse_google_credentials(data, path=name)


def authorized_user_document(
    client: OAuthClient, token: Token, *, scopes: Sequence[str] | None = None
) -> dict[str, Any]:
    """The authorized-user JSON google-auth reads (`Credentials.from_authorized_user_file`)."""
    if not token.refresh_token:
        raise ConfigurationError(
            "the server sent no refresh token; Google: ask with access_type=offline and "
            "prompt=consent; Microsoft: include the offline_access scope"
        )
    doc: dict[str, Any] = {
        "type": "authorized_user",
        "client_id": client.client_id,
        "refresh_token": token.refresh_token,
        "token_uri": client.token_uri,
        "scopes": list(scopes if scopes is not None else client.scopes),
        "token": token.access_token,
    }
    if client.client_secret:
        doc["client_secret"] = client.client_secret
    if token.expires_at is not None:
        when = datetime.datetime.fromtimestamp(token.expires_at, datetime.UTC)
        doc["expiry"] = when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return doc


def write_authorized_user(path: str | os.PathLike[str], client: OAuthClient, token: Token) -> None:
    """Save a user's tokens as an authorized-user file (mode 0600, written atomically)."""
    from xcomm.auth._store import write_private

    write_private(
        Path(path),
        msgspec.json.format(msgspec.json.encode(authorized_user_document(client, token))),
    )
