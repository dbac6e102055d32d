"""`TokenManager`: a valid access token on demand, refreshed once however many ask.

    token() ──valid?──> the current token
        └─ no ──> one refresh under a lock (single-flight); every waiter gets its result

A 401 from a provider calls `on_unauthorized(request)`: the token that request carried is
dropped and refreshed only if it is still the current one, so a hundred requests rejected
together cause one refresh. The pipeline then retries each request once (`xcomm._http`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Protocol

import anyio
import httpx

from xcomm._clock import MONOTONIC, Clock
from xcomm._errors import ConfigurationError
from xcomm.auth._client import Token

if TYPE_CHECKING:
    from xcomm.auth._endpoint import OAuthEndpoint
    from xcomm.auth._files import ServiceAccountKey

__all__ = ["RefreshGrant", "ServiceAccountGrant", "TokenManager", "TokenSource", "TokenStore"]

logger = logging.getLogger("xcomm.auth")

TokenSource = Callable[[Token | None], Awaitable[Token]]
"""Fetches a new token; receives the previous one (or None), e.g. to reuse its refresh token."""


class TokenStore(Protocol):
    """Where a `TokenManager` keeps its token between processes (`FileTokenStore`)."""

    async def load(self) -> Token | None: ...

    async def save(self, token: Token) -> None: ...


class RefreshGrant:
    """A token source that refreshes with a refresh token (and follows its rotation).

    `TokenManager(RefreshGrant(endpoint, refresh_token))`.
    """

    def __init__(self, endpoint: OAuthEndpoint, refresh_token: str) -> None:
        if not refresh_token:
            raise ConfigurationError("RefreshGrant needs a refresh token (run `xcomm auth ...`)")
        self._endpoint = endpoint
        self._refresh_token = refresh_token

    def __repr__(self) -> str:
        return "RefreshGrant(refresh_token='***')"

    async def __call__(self, previous: Token | None) -> Token:
        current = (previous.refresh_token if previous else None) or self._refresh_token
        token = await self._endpoint.refresh(current)
        if token.refresh_token:
            self._refresh_token = token.refresh_token
        return token


class ServiceAccountGrant:
    """A token source for a Google service account (optionally impersonating `subject`)."""

    def __init__(
        self,
        endpoint: OAuthEndpoint,
        key: ServiceAccountKey,
        scopes: Sequence[str],
        *,
        subject: str | None = None,
    ) -> None:
        if not scopes:
            raise ConfigurationError("a service account token needs at least one scope")
        self._endpoint = endpoint
        self._key = key
        self._scopes = tuple(scopes)
        self._subject = subject

    async def __call__(self, previous: Token | None) -> Token:
        return await self._endpoint.service_account_token(
            self._key, self._scopes, subject=self._subject
        )


class TokenManager:
    """Keeps an access token valid: refreshes ahead of expiry, once for all concurrent callers.

    Example:
        ```python
        from xcomm.auth import RefreshGrant, TokenManager


        async def bearer(endpoint, refresh_token: str) -> str:
            tokens = TokenManager(RefreshGrant(endpoint, refresh_token), refresh_margin=60)
            return await tokens.token()   # refreshed only when missing or within 60 s of expiry
        ```

    It is also the `auth` object an `HttpProvider` uses: `apply(request)` sets the
    Authorization header and `on_unauthorized(request)` handles a 401 (see docs/auth.md).

    Args:
        source: fetches a new token (`RefreshGrant`, `ServiceAccountGrant`,
            `endpoint.client_credentials`, or any async callable taking the previous token).
        clock: the monotonic time source deciding expiry (tests pass a `FakeClock`).
        refresh_margin: seconds before expiry at which the token is refreshed.
        store: where the token is loaded from first and saved to after each refresh.
        token: a token to start with (e.g. read from Google's authorized-user file).
    """

    def __init__(
        self,
        source: TokenSource,
        *,
        clock: Clock = MONOTONIC,
        refresh_margin: float = 60.0,
        store: TokenStore | None = None,
        token: Token | None = None,
    ) -> None:
        if not callable(source):
            raise ConfigurationError("TokenManager needs a token source: an async callable")
        if not (math.isfinite(refresh_margin) and refresh_margin >= 0):
            raise ConfigurationError(f"refresh_margin must be >= 0 seconds, got {refresh_margin}")
        self._source = source
        self._clock = clock
        self._margin = refresh_margin
        self._store = store
        self._loaded = store is None
        self._token: Token | None = None
        self._deadline = -math.inf
        self._lock = anyio.Lock()
        self._generation = 0
        self._failure: tuple[int, BaseException] | None = None
        self.refreshes = 0
        if token is not None:
            self._set(token)

    def __repr__(self) -> str:
        return f"TokenManager(refreshes={self.refreshes}, valid={self._valid() is not None})"

    def _set(self, token: Token) -> None:
        self._token = token
        left = token.expires_in()
        self._deadline = math.inf if left is None else self._clock.now() + left

    def _valid(self) -> Token | None:
        if self._token is not None and self._clock.now() < self._deadline - self._margin:
            return self._token
        return None

    async def token(self) -> str:
        """A valid access token, refreshed first if missing or about to expire."""
        return (await self.current()).access_token

    async def current(self) -> Token:
        """The valid `Token` itself (with its type, scope and expiry)."""
        token = self._valid()
        if token is not None:
            return token
        return await self._refresh(self._generation, rejected=None)

    async def invalidate(self, access_token: str) -> None:
        """Drop `access_token` (a provider refused it) and refresh, if it is still current.

        When another caller already replaced it, nothing happens: a burst of 401s for the same
        token causes one refresh.
        """
        if self._token is not None and self._token.access_token == access_token:
            await self._refresh(self._generation, rejected=access_token)

    async def _refresh(self, seen: int, *, rejected: str | None) -> Token:
        async with self._lock:
            if not self._loaded:
                self._loaded = True
                assert self._store is not None
                stored = await self._store.load()
                if stored is not None:
                    self._set(stored)
            failure = self._failure
            if self._generation != seen and failure is not None and failure[0] == self._generation:
                # Someone's refresh failed while we waited: share the outcome, do not repeat it.
                raise failure[1]
            if rejected is not None and self._token and self._token.access_token != rejected:
                return self._token
            token = self._valid() if rejected is None else None
            if token is not None:
                return token
            self._generation += 1
            try:
                token = await self._source(self._token)
            except Exception as exc:
                self._failure = (self._generation, exc)
                raise
            self.refreshes += 1
            self._set(token)
            if self._store is not None:
                await self._store.save(token)
            logger.debug("access token refreshed (refresh #%d)", self.refreshes)
            return token

    # -- the HttpProvider auth hook ---------------------------------------------------------

    async def apply(self, request: httpx.Request) -> None:
        """Set `Authorization: Bearer <token>` on `request`."""
        token = await self.current()
        request.headers["Authorization"] = f"{token.token_type.title()} {token.access_token}"

    async def on_unauthorized(self, request: httpx.Request) -> bool:
        """After a 401: refresh if the rejected token is current; True = retry once."""
        header = request.headers.get("Authorization", "")
        _, _, rejected = header.partition(" ")
        if rejected:
            await self.invalidate(rejected)
        return True
