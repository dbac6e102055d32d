"""The one request path of every REST provider.

    limiter.acquire(cost) → the manager's transport (the HTTP pool) → map transport errors and
    statuses to xcomm errors → feed Retry-After / X-RateLimit-* back into the limiter → retry
    what is safe → metrics and a log line with secrets redacted.

A provider subclasses `HttpProvider` and says only what is specific to its API: how to build
the request and, optionally, how to read its error bodies (`_classify`). A provider whose API
caps the requests in flight (Microsoft Graph: 4 per mailbox) sets `_concurrency` to a limiter
that the manager shares between every provider of that account; each round trip holds one of
its tokens, and retry waits hold none.

Requests are `httpx.Request`s and answers `httpx.Response`s, but the pipeline hands them
straight to the transport (`handle_async_request`) instead of going through
`httpx.AsyncClient.send`: it already owns auth, retries, limits and timeouts, and the client's
per-request work (cookie jar, URL merging, request building) cost more than the request itself.
What the client did that still matters is done here: the manager's default headers
(User-Agent, Accept, Accept-Encoding) on every request, the timeout extension, no redirects
(a 3xx is an unexpected response), and the body read and the connection released. No cookies
are kept between requests (provider APIs authenticate with headers). Tests still swap the
transport (`CommManager(transport=httpx.MockTransport(...))`, respx) as before.
"""

from __future__ import annotations

import contextlib
import email.utils
import functools
import logging
import math
import re
import time
import weakref
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Protocol
from urllib.parse import urlencode

import anyio
import httpx
import msgspec

from xcomm._config import Timeout
from xcomm._errors import (
    AuthenticationError,
    CommunicationError,
    ConfigurationError,
    ConnectError,
    ConnectionLost,
    ConnectTimeout,
    MessageError,
    PoolTimeout,
    ProviderError,
    RateLimitError,
    ResponseTimeout,
    ServiceUnavailable,
    ValidationError,
)
from xcomm._httpx_objects import body_request
from xcomm._logging import redact, redact_url
from xcomm._provider import Provider

__all__ = [
    "HttpAuth",
    "HttpProvider",
    "encode_form",
    "encode_json",
    "json_object",
    "map_status",
    "map_transport_error",
    "parse_error_body",
    "parse_retry_after",
    "rate_limit_pause",
    "to_httpx_timeout",
]

logger = logging.getLogger("xcomm.http")

_EPOCH_THRESHOLD = 1e9  # reset headers above this are absolute epoch seconds, below it deltas


def to_httpx_timeout(timeout: Timeout) -> httpx.Timeout:
    """The httpx form of an xcomm `Timeout`."""
    return httpx.Timeout(
        connect=timeout.connect, read=timeout.read, write=timeout.write, pool=timeout.pool
    )


@functools.lru_cache(maxsize=64)
def _timeout_extension(timeout: Timeout) -> Mapping[str, float | None]:
    """httpx's `timeout` request extension for `timeout`: one read-only mapping per setting,
    shared by every request that uses it (transports only read it)."""
    return MappingProxyType(to_httpx_timeout(timeout).as_dict())


_json_encoder = msgspec.json.Encoder()


def encode_json(value: object) -> bytes:
    """`value` as compact JSON bytes (msgspec: dicts, lists, Structs, dataclasses...)."""
    return _json_encoder.encode(value)


def encode_form(fields: Mapping[str, object] | Sequence[tuple[str, object]]) -> bytes:
    """`fields` as an `application/x-www-form-urlencoded` body (sequences repeat the key).

    The same bytes as `urlencode(fields, doseq=True)`, at under half its cost for the usual
    text fields (other values go through `urlencode` itself).
    """
    items = fields.items() if isinstance(fields, Mapping) else fields
    parts = []
    for key, value in items:
        if type(key) is str and type(value) is str:
            parts.append(_form_escape(key) + "=" + _form_escape(value))
        elif encoded := urlencode([(key, value)], doseq=True):
            parts.append(encoded)
    return "&".join(parts).encode("ascii")


_FORM_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-~ ]")  # what `quote_plus` escapes, but the space
_FORM_ESCAPES = {chr(byte): f"%{byte:02X}" for byte in range(256)}


def _form_escape_char(match: re.Match[str]) -> str:
    return _FORM_ESCAPES[match.group()]


def _form_escape(text: str) -> str:
    """`quote_plus(text)`: UTF-8, unreserved characters as they are, space as `+`."""
    if not text.isascii():
        text = text.encode("utf-8").decode("latin-1")  # one character per UTF-8 byte
    if _FORM_UNSAFE.search(text) is not None:
        text = _FORM_UNSAFE.sub(_form_escape_char, text)
    return text.replace(" ", "+")


def json_object(response: httpx.Response, *, provider: str, service: str) -> dict[str, Any]:
    """A successful answer's JSON object ({} for an empty body or another JSON value).

    Raises:
        ProviderError: the body is not JSON (a proxy's HTML page); `service` names the API.
    """
    if not response.content:
        return {}
    try:
        answer = msgspec.json.decode(response.content)
    except msgspec.DecodeError as exc:
        raise ProviderError(
            f"{service} answered with something that is not JSON",
            provider=provider,
            status=response.status_code,
        ) from exc
    return answer if isinstance(answer, dict) else {}


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After value: delta-seconds or an HTTP-date.

    An HTTP-date is measured against `now` (the response's own Date header when the caller has
    it, which cancels clock skew between us and the server). Garbage gives None.
    """
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        reference = now or datetime.now(UTC)
        return max(0.0, (when - reference).total_seconds())
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def _response_date(headers: httpx.Headers) -> datetime | None:
    value = headers.get("date")
    if not value:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _header_float(headers: httpx.Headers, *names: str) -> float | None:
    for name in names:
        raw = headers.get(name)
        if raw is not None:
            try:
                value = float(raw.strip())
            except ValueError:
                continue
            if math.isfinite(value):
                return value
    return None


def rate_limit_pause(headers: httpx.Headers, *, wall_now: float | None = None) -> float | None:
    """Seconds until the provider's window resets when its headers say none are left.

    Reads `X-RateLimit-Remaining` with `X-RateLimit-Reset-After` (Discord), `X-RateLimit-Reset`
    (epoch seconds or a delta), and the IETF `RateLimit-Remaining`/`RateLimit-Reset` pair.
    """
    if b"ratelimit-remaining" not in b"\n".join([key for key, _ in headers.raw]).lower():
        return None  # the usual answer, found in one pass instead of two lookups
    remaining = _header_float(headers, "x-ratelimit-remaining", "ratelimit-remaining")
    if remaining is None or remaining > 0:
        return None
    after = _header_float(headers, "x-ratelimit-reset-after")
    if after is not None:
        return max(0.0, after)
    reset = _header_float(headers, "x-ratelimit-reset", "ratelimit-reset")
    if reset is None:
        return None
    if reset > _EPOCH_THRESHOLD:
        return max(0.0, reset - (time.time() if wall_now is None else wall_now))
    return max(0.0, reset)


class _ErrorBody(msgspec.Struct):
    error: object = None
    message: object = None
    code: object = None
    error_description: object = None
    detail: object = None


_decode_error = msgspec.json.Decoder(_ErrorBody)


def parse_error_body(response: httpx.Response) -> tuple[str | None, str | None]:
    """A best-effort (error_code, detail) from a JSON or text error body."""
    body = response.content[:4096]
    if not body:
        return None, response.reason_phrase or None
    try:
        parsed = _decode_error.decode(body)
    except msgspec.DecodeError:
        text = body.decode("utf-8", "replace").strip()
        return None, text or response.reason_phrase or None
    code: str | None = None
    detail: str | None = None
    err = parsed.error
    if isinstance(err, dict):
        code = _text(err.get("code") or err.get("status"))
        detail = _text(err.get("message"))
    elif err is not None:
        code = _text(err)
    code = code or _text(parsed.code)
    detail = detail or _text(parsed.message or parsed.error_description or parsed.detail)
    return code, detail or response.reason_phrase or None


def _text(value: object) -> str | None:
    if value is None or value == "":
        return None
    return value if isinstance(value, str) else str(value)


def map_status(
    response: httpx.Response, *, provider: str, idempotent: bool
) -> ProviderError | None:
    """The xcomm error for a non-2xx response, or None for success.

    429 → RateLimitError (retry_after from Retry-After or the reset headers); 401/403 →
    AuthenticationError; 400/413/415/422 → MessageError; 408, 502, 503 → ServiceUnavailable
    (transient); 500 and 504 → ServiceUnavailable that is transient only for idempotent requests,
    because the provider may have acted before failing.
    """
    status = response.status_code
    if 200 <= status < 300:
        return None
    code, detail = parse_error_body(response)
    retry_after = parse_retry_after(
        response.headers.get("retry-after"), now=_response_date(response.headers)
    )

    def make(
        cls: type[ProviderError],
        message: str,
        *,
        wait: float | None = None,
        transient: bool | None = None,
    ) -> ProviderError:
        return cls(
            message,
            provider=provider,
            error_code=code,
            status=status,
            detail=detail,
            retry_after=wait,
            transient=transient,
        )

    if status == 429:
        if retry_after is None:
            retry_after = rate_limit_pause(response.headers)
        return make(RateLimitError, "rate limited", wait=retry_after)
    if status in (401, 403):
        return make(AuthenticationError, "credentials refused")
    if status in (400, 413, 415, 422):
        return make(MessageError, "request rejected")
    if status in (408, 502, 503):
        return make(ServiceUnavailable, "service unavailable", wait=retry_after)
    if status >= 500:
        return make(ServiceUnavailable, "server error", wait=retry_after, transient=idempotent)
    return make(ProviderError, "unexpected response")


def map_transport_error(
    exc: httpx.HTTPError | httpx.InvalidURL, *, provider: str
) -> CommunicationError | None:
    """The xcomm error for an httpx transport failure (None when it is not one).

    The phase decides: nothing written (connect, pool, a URL or request httpx refuses) means
    not sent; a failure after the request started means delivery is unknown.
    """
    detail = type(exc).__name__
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
        return ConfigurationError(
            f"{provider}: the URL cannot be used ({detail}); check its scheme and host"
        )
    if isinstance(exc, httpx.LocalProtocolError):
        return ValidationError(f"{provider}: the request could not be written ({exc})")
    if isinstance(exc, httpx.ConnectTimeout):
        return ConnectTimeout("timed out connecting", provider=provider, detail=detail)
    if isinstance(exc, httpx.PoolTimeout):
        return PoolTimeout("no free connection in the pool", provider=provider, detail=detail)
    if isinstance(exc, httpx.ConnectError | httpx.ProxyError):
        return ConnectError("could not connect", provider=provider, detail=detail)
    if isinstance(exc, httpx.TimeoutException):
        return ResponseTimeout("no response in time", provider=provider, detail=detail)
    if isinstance(exc, httpx.TransportError):
        return ConnectionLost("connection failed mid-request", provider=provider, detail=detail)
    return None


class HttpAuth(Protocol):
    """How a provider authenticates its requests (an `xcomm.auth.TokenManager`).

    `apply()` runs before every attempt (sets `Authorization`); after a 401,
    `on_unauthorized()` refreshes the credentials and returns True to retry once.
    """

    async def apply(self, request: httpx.Request) -> None: ...

    async def on_unauthorized(self, request: httpx.Request) -> bool: ...


class HttpProvider(Provider):
    """Base of REST providers: `_request()` is their only way onto the network."""

    #: Per-provider override of the manager's timeouts (None: the manager's).
    _timeout: Timeout | None = None
    #: Request authentication: a 401 refreshes it and the request is retried once; a second
    #: 401 raises AuthenticationError. None sends requests as built.
    auth: HttpAuth | None = None
    #: At most this many of the provider's requests in flight at once (None: no bound). Several
    #: providers may share one limiter: the bound is then on all of them together.
    _concurrency: anyio.CapacityLimiter | None = None

    def _classify(self, response: httpx.Response, *, idempotent: bool) -> ProviderError | None:
        """Map a response to an error; providers override to read their own error bodies."""
        return map_status(response, provider=self.name, idempotent=idempotent)

    async def _request(
        self,
        operation: str,
        request: httpx.Request,
        *,
        cost: float = 1.0,
        idempotent: bool = False,
        timeout: float | None = None,
        authenticate: bool = True,
        slots: int = 1,
    ) -> tuple[httpx.Response, int, float]:
        """Send `request` through the pipeline; returns (response, attempts, duration).

        `authenticate=False` sends it without `auth` (no Authorization header, no refresh after
        a 401): for pre-authenticated URLs such as an upload session's, which must not see the
        provider's token. `slots` is how many places of the `_concurrency` bound the round
        trip holds (a batch the server runs as several requests at once), at most all of them.
        """
        effective = self._timeout or self._context.timeout
        if timeout is not None:
            effective = Timeout.coerce(timeout)
        request.extensions["timeout"] = _timeout_extension(effective)

        reauthorized = False

        async def attempt(number: int) -> httpx.Response:
            nonlocal reauthorized
            auth = self.auth if authenticate else None
            if auth is not None:
                await auth.apply(request)
            response = await self._round_trip(request, number, slots)
            if response.status_code == 401 and auth is not None and not reauthorized:
                reauthorized = True  # one refresh and one retry per call, never a loop
                if await auth.on_unauthorized(request):
                    await auth.apply(request)
                    response = await self._round_trip(request, number, slots)
            pause = rate_limit_pause(response.headers)
            if pause and self._limiter is not None:
                self._limiter.penalize(pause)
            error = self._classify(response, idempotent=idempotent)
            if error is not None:
                raise error
            return response

        return await self._call(operation, attempt, cost=cost)

    async def _round_trip(
        self, request: httpx.Request, number: int, slots: int = 1
    ) -> httpx.Response:
        """`_send()` holding `slots` places of the concurrency bound, transport failures
        mapped to xcomm errors."""
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "%s %s %s attempt=%d headers=%s",
                self.name,
                request.method,
                redact_url(str(request.url)),
                number,
                redact(dict(request.headers)),
            )
        try:
            if self._concurrency is None:
                return await self._send(request)
            if slots <= 1:
                async with self._concurrency:
                    return await self._send(request)
            async with hold(self._concurrency, slots):
                return await self._send(request)
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            mapped = map_transport_error(exc, provider=self.name)
            if mapped is None:
                raise
            raise mapped from exc
        except RuntimeError as exc:
            # httpx and AiohttpTransport raise RuntimeError once closed.
            raise ConfigurationError(
                f"{self.name}: the shared HTTP pool is closed; use the provider inside "
                "its CommManager's `async with` block"
            ) from exc

    async def _send(self, request: httpx.Request) -> httpx.Response:
        """One round trip on the manager's transport, body read and connection released."""
        response = await self._context.transport.handle_async_request(request)
        response.request = request
        if not response.is_closed:  # AiohttpTransport hands small replies over already read
            try:
                await response.aread()
            finally:
                await response.aclose()  # a no-op after a full read; releases a failed one
        return response

    def _headers(self, *parts: Mapping[str, str] | None) -> httpx.Headers:
        """The manager's default headers (User-Agent, ...) overlaid with `parts`, in order.

        Build them once per provider (or per distinct header set) and pass them to
        `_build_request`: copying an `httpx.Headers` is much cheaper than building one.
        """
        return httpx.Headers(merge_headers(dict(self._context.headers), *parts))

    @staticmethod
    def _build_request(
        method: str, url: httpx.URL, headers: httpx.Headers, content: bytes
    ) -> httpx.Request:
        """An `httpx.Request` from prepared parts: a cached URL and headers from `_headers()`.

        The same request as `httpx.Request(method, url, headers=headers, content=content)`
        (Host and Content-Length added, the body readable as `request.content`), at a third
        of its cost. The timeout is set by `_request()`.
        """
        return body_request(method, url, headers, content)


_multi_locks: weakref.WeakKeyDictionary[anyio.CapacityLimiter, anyio.Lock] = (
    weakref.WeakKeyDictionary()
)


@contextlib.asynccontextmanager
async def hold(bound: anyio.CapacityLimiter, slots: int) -> AsyncIterator[None]:
    """Hold `slots` places of `bound` (at most all of them) for the block.

    Takers of several places queue on one lock per bound, so two of them never wait on each
    other's half-taken places; single-place takers are not held up by it.
    """
    count = max(1, min(slots, int(bound.total_tokens)))
    lock = _multi_locks.setdefault(bound, anyio.Lock())
    borrowers = [object() for _ in range(count)]
    taken: list[object] = []
    try:
        async with lock:
            for borrower in borrowers:
                await bound.acquire_on_behalf_of(borrower)
                taken.append(borrower)
        yield
    finally:
        for borrower in taken:
            bound.release_on_behalf_of(borrower)


def merge_headers(*parts: Mapping[str, str] | None) -> dict[str, str]:
    """Merge header mappings left to right (later wins, case-insensitively)."""
    merged: dict[str, str] = {}
    lower: dict[str, str] = {}
    for part in parts:
        for key, value in (part or {}).items():
            previous = lower.pop(key.lower(), None)
            if previous is not None:
                merged.pop(previous, None)
            merged[key] = value
            lower[key.lower()] = key
    return merged
