"""The token endpoint client: every grant goes through the shared HTTP pipeline.

`OAuthEndpoint` is an `HttpProvider`, so token requests get the same retry (5xx, 429 with
Retry-After, connection failures), error mapping, limiter and metrics as any provider call,
and no second retry loop exists. It reads OAuth2 error bodies (RFC 6749 §5.2, with Microsoft's
`AADSTS` codes) into `AuthenticationError`s that say what to do.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import httpx
import msgspec

from xcomm._errors import AuthenticationError, ConfigurationError, ProviderError
from xcomm._http import HttpProvider, map_status
from xcomm.auth._client import GRAPH_DEFAULT_SCOPE, OAuthClient, Token

if TYPE_CHECKING:
    from xcomm._config import RetryPolicy
    from xcomm._provider import ProviderContext
    from xcomm._retry import Limiter
    from xcomm.auth._files import ServiceAccountKey

__all__ = ["OAuthEndpoint", "explain_grant_error", "parse_token_response"]

logger = logging.getLogger("xcomm.auth")

_FORM = "application/x-www-form-urlencoded"
_JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"

# OAuth2 error codes that mean "these credentials or this grant will not work": retrying
# cannot help, the user has to act.
_OAUTH_REFUSALS = frozenset(
    {
        "invalid_grant",
        "invalid_client",
        "unauthorized_client",
        "invalid_scope",
        "invalid_request",
        "unsupported_grant_type",
        "access_denied",
        "consent_required",
        "interaction_required",
    }
)

_AADSTS_HINTS = {
    "AADSTS700082": "the refresh token expired after 90 days of inactivity",
    "AADSTS700084": "the refresh token of a single-page app expired (24 hours)",
    "AADSTS50173": "the grant expired because the user's password changed or was reset",
    "AADSTS70008": "the code or refresh token expired or was revoked",
    "AADSTS7000215": "the client secret is wrong (use the secret's Value, not its ID)",
    "AADSTS7000222": "the client secret has expired; create a new one in Entra",
    "AADSTS65001": "the user or an administrator has not consented to the scopes",
    "AADSTS700016": "no application with this client_id in this tenant",
    "AADSTS90002": "no such tenant",
}


class _TokenResponse(msgspec.Struct):
    access_token: str
    token_type: str = "Bearer"
    expires_in: int | float | str | None = None
    refresh_token: str | None = None
    scope: str | None = None
    id_token: str | None = None


_decode_token = msgspec.json.Decoder(_TokenResponse)


class _OAuthError(msgspec.Struct):
    error: str | None = None
    error_description: str | None = None
    error_codes: list[int] | None = None


_decode_error = msgspec.json.Decoder(_OAuthError)


def parse_token_response(
    response: httpx.Response, *, provider: str = "oauth", now: float | None = None
) -> Token:
    """The `Token` in a successful token-endpoint answer.

    Raises:
        ProviderError: the body is not a token response (an HTML page from a proxy, ...).
    """
    try:
        body = _decode_token.decode(response.content)
        expires_in = None if body.expires_in is None else float(body.expires_in)
    except (msgspec.DecodeError, ValueError) as exc:
        raise ProviderError(
            "the token endpoint answered without a token (the body is not a token response)",
            provider=provider,
            error_code="malformed_response",
            status=response.status_code,
            detail=response.headers.get("content-type"),
        ) from exc
    wall = time.time() if now is None else now
    return Token(
        access_token=body.access_token,
        token_type=body.token_type or "Bearer",
        expires_at=None if expires_in is None else wall + expires_in,
        refresh_token=body.refresh_token,
        scope=body.scope,
        id_token=body.id_token,
    )


def explain_grant_error(code: str, description: str | None, *, issuer: str) -> str:
    """What a refused grant means and what to do about it, for humans."""
    text = description or ""
    aadsts = next((k for k in _AADSTS_HINTS if k + ":" in text or text.startswith(k)), None)
    if aadsts is not None:
        hint = _AADSTS_HINTS[aadsts]
    elif code == "invalid_grant":
        hint = "the code or refresh token was revoked or has expired"
        if issuer == "google":
            hint += (
                " (an app whose OAuth consent screen is in 'Testing' gets refresh tokens that "
                "expire after 7 days: publish it to 'In production' to stop that)"
            )
    elif code == "invalid_client":
        hint = "the client id or client secret is wrong, or the client was deleted"
    elif code == "invalid_scope":
        hint = "a requested scope is unknown or not allowed for this client"
    elif code == "unauthorized_client":
        hint = "this client may not use this grant type (check the app registration)"
    else:
        hint = "the authorization server refused the request"
    command = {"google": "xcomm auth gmail", "microsoft": "xcomm auth outlook"}.get(issuer)
    if code == "invalid_grant" and command:
        hint += f"; re-run `{command}` to authorize again"
    return hint


class OAuthEndpoint(HttpProvider):
    """A client of one authorization server's token endpoint. Get one from `comm.oauth()`.

    Example:
        ```python
        from xcomm import CommManager
        from xcomm.auth import OAuthClient, TokenManager


        async def main() -> None:
            client = OAuthClient.microsoft("client-id", tenant="contoso.com", client_secret="...")
            async with CommManager() as comm:
                endpoint = comm.oauth(client)
                tokens = TokenManager(endpoint.client_credentials)
                print(await tokens.token())
        ```

    Refresh, client-credentials and service-account requests are retried after a 5xx or a
    429 like any idempotent call; an authorization-code exchange is not (a code is single-use).
    """

    name = "oauth"

    def __init__(
        self,
        context: ProviderContext,
        *,
        limiter: Limiter | None,
        client: OAuthClient | None = None,
        retry: RetryPolicy | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(context, limiter=limiter, retry=retry)
        self._client = client
        self._wall = wall_clock

    @property
    def client(self) -> OAuthClient:
        """The client settings (ConfigurationError when the endpoint was made without one)."""
        if self._client is None:
            raise ConfigurationError(
                "this OAuthEndpoint has no OAuthClient; pass one to comm.oauth(client)"
            )
        return self._client

    def _classify(self, response: httpx.Response, *, idempotent: bool) -> ProviderError | None:
        status = response.status_code
        if 200 <= status < 300:
            return None
        if status in (400, 401, 403):
            try:
                body = _decode_error.decode(response.content)
            except msgspec.DecodeError:
                body = _OAuthError()
            if body.error in _OAUTH_REFUSALS or status in (401, 403):
                code = body.error or str(status)
                issuer = self._client.issuer if self._client else "google"
                hint = explain_grant_error(code, body.error_description, issuer=issuer)
                return AuthenticationError(
                    f"token request refused ({code}): {hint}",
                    provider=self.name,
                    error_code=code,
                    status=status,
                    detail=body.error_description,
                )
        return map_status(response, provider=self.name, idempotent=idempotent)

    async def _token_request(
        self, operation: str, form: dict[str, str], *, token_uri: str, idempotent: bool
    ) -> Token:
        request = httpx.Request(
            "POST",
            token_uri,
            content=urlencode(form).encode("ascii"),
            headers={"Content-Type": _FORM, "Accept": "application/json"},
        )
        response, _, _ = await self._request(operation, request, idempotent=idempotent)
        token = parse_token_response(response, provider=self.name, now=self._wall())
        logger.debug(
            "oauth.%s: got a %s token (expires_at=%s)",
            operation,
            token.token_type,
            token.expires_at,
        )
        return token

    def authorization_url(self, *, state: str, code_verifier: str, **options: Any) -> str:
        """The client's authorization URL (see `OAuthClient.authorization_url`)."""
        return self.client.authorization_url(state=state, code_verifier=code_verifier, **options)

    async def exchange_code(
        self,
        code: str,
        *,
        state: str,
        expected_state: str,
        code_verifier: str,
        redirect_uri: str | None = None,
    ) -> Token:
        """Trade an authorization code for tokens, after checking `state` (no request if wrong).

        Raises:
            AuthenticationError: the state does not match (a forged or stale redirect), or
                the server refused the code.
        """
        if not expected_state or not hmac.compare_digest(
            state.encode("utf-8"), expected_state.encode("utf-8")
        ):
            raise AuthenticationError(
                "the redirect's state does not match the one sent; start the sign-in again",
                provider=self.name,
                error_code="state_mismatch",
            )
        client = self.client
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri or client.redirect_uri,
            "code_verifier": code_verifier,
            **client.credentials_form(),
        }
        return await self._token_request(
            "exchange_code", form, token_uri=client.token_uri, idempotent=False
        )

    async def refresh(self, refresh_token: str, *, scopes: Sequence[str] | None = None) -> Token:
        """A new access token from a refresh token.

        The answer keeps `refresh_token` when the server did not rotate it (Google does not;
        Microsoft may), so the returned token can always be stored as is.
        """
        client = self.client
        form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
        if scopes:
            form["scope"] = " ".join(scopes)
        form.update(client.credentials_form())
        token = await self._token_request(
            "refresh", form, token_uri=client.token_uri, idempotent=True
        )
        if token.refresh_token is None:
            token = msgspec.structs.replace(token, refresh_token=refresh_token)
        return token

    async def client_credentials(self, previous: Token | None = None) -> Token:
        """An app-only token (client credentials grant; Graph: scope `.../.default`).

        Takes the previous token (ignored) so that the bound method is a token source:
        `TokenManager(endpoint.client_credentials)`.
        """
        client = self.client
        if not client.client_secret:
            raise ConfigurationError(
                "the client credentials grant needs a client_secret (Entra: Certificates & "
                "secrets → New client secret)"
            )
        scopes = [s for s in client.scopes if s.endswith("/.default")] or [GRAPH_DEFAULT_SCOPE]
        form = {"grant_type": "client_credentials", "scope": " ".join(scopes)}
        form.update(client.credentials_form())
        return await self._token_request(
            "client_credentials", form, token_uri=client.token_uri, idempotent=True
        )

    async def service_account_token(
        self, key: ServiceAccountKey, scopes: Sequence[str], *, subject: str | None = None
    ) -> Token:
        """A token for a Google service account (RS256 JWT bearer assertion).

        `subject` impersonates a Workspace user (domain-wide delegation); needs the
        `xcomm[google]` extra (cryptography).
        """
        from xcomm.auth._jwt import service_account_assertion

        assertion = service_account_assertion(key, scopes, subject=subject, now=self._wall())
        form = {"grant_type": _JWT_BEARER, "assertion": assertion}
        return await self._token_request(
            "service_account", form, token_uri=key.token_uri, idempotent=True
        )
