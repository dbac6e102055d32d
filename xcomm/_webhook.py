"""Generic JSON webhooks: POST a JSON document to any URL (Apprise calls this `json://`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import httpx
import msgspec

from xcomm._config import RetryPolicy, Timeout
from xcomm._errors import ConfigurationError, ValidationError
from xcomm._http import HttpProvider, merge_headers
from xcomm._logging import redact_url
from xcomm._models import SendResult
from xcomm._provider import ProviderContext
from xcomm._retry import Limiter
from xcomm._validation import check_header_name, check_header_value

__all__ = ["WebhookProvider"]

_ALLOWED_METHODS = frozenset({"POST", "PUT", "PATCH"})
_encoder = msgspec.json.Encoder()
_decode_id = msgspec.json.Decoder(dict[str, Any])


def _check_url(url: str) -> str:
    if not isinstance(url, str) or not url:
        raise ConfigurationError("webhook url must be a non-empty string like 'https://host/path'")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(
            f"webhook url must be an absolute http(s) URL, got one starting {url[:12]!r}…"
        )
    if any(c in url for c in "\r\n\x00 "):
        raise ConfigurationError("webhook url must not contain spaces or control characters")
    return url


def _check_headers(headers: Mapping[str, str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in (headers or {}).items():
        check_header_name(name)
        check_header_value(name, value)
        out[name] = value
    return out


class WebhookProvider(HttpProvider):
    """POST JSON to a URL through the shared HTTP pipeline.

    Example:
        ```python
        async with CommManager() as comm:
            hook = comm.webhook("https://hooks.example.com/T0K3N", headers={"X-Env": "prod"})
            result = await hook.send({"text": "deploy finished"})
        ```

    The URL may carry a secret (most chat webhooks do), so logs and errors show only its
    scheme and host. A webhook POST is not idempotent: a 500 or a dropped connection after the
    request was written is not retried. Pass `idempotency_key=` to `send()` when the receiver
    deduplicates on a header; such requests are also retried after a 500/504.
    """

    name = "webhook"

    def __init__(
        self,
        context: ProviderContext,
        *,
        limiter: Limiter | None,
        url: str,
        headers: Mapping[str, str] | None = None,
        method: str = "POST",
        timeout: Timeout | float | None = None,
        idempotency_header: str = "Idempotency-Key",
        retry: RetryPolicy | None = None,
    ) -> None:
        super().__init__(context, limiter=limiter, retry=retry)
        self._url = _check_url(url)
        method = method.upper() if isinstance(method, str) else method
        if method not in _ALLOWED_METHODS:
            raise ConfigurationError(
                f"webhook method must be one of {sorted(_ALLOWED_METHODS)}, got {method!r}"
            )
        self._method = method
        self._extra_headers = _check_headers(headers)
        try:
            self._http_url = httpx.URL(self._url)
        except httpx.InvalidURL as exc:
            raise ConfigurationError(
                f"webhook url cannot be used ({exc}); check its host and port"
            ) from exc
        self._base_headers = self._headers(
            {"Content-Type": "application/json", "Accept": "application/json, */*"},
            self._extra_headers,
        )
        self._idempotency_header = idempotency_header
        if timeout is not None:
            self._timeout = Timeout.coerce(timeout)

    def __repr__(self) -> str:
        return f"WebhookProvider({self._method} {redact_url(self._url)})"

    async def send(
        self,
        payload: Any,
        /,
        *,
        headers: Mapping[str, str] | None = None,
        idempotency_key: str | None = None,
        timeout: float | None = None,
    ) -> SendResult:
        """Send `payload` (anything JSON-encodable: dict, list, str, msgspec Struct) as JSON.

        Returns a `SendResult` whose `message_id` is the response's `id` field or
        `X-Request-Id` header when present, and whose `status` is the HTTP status.
        """
        try:
            body = _encoder.encode(payload)
        except (TypeError, ValueError, OverflowError) as exc:
            raise ValidationError(
                f"webhook payload is not JSON-encodable ({exc}); send dicts, lists, strings, "
                "numbers, booleans, None or msgspec Structs"
            ) from exc
        extra = _check_headers(headers)
        if idempotency_key is not None:
            check_header_value(self._idempotency_header, idempotency_key)
            extra[self._idempotency_header] = idempotency_key
        request_headers = self._base_headers
        if extra:
            request_headers = httpx.Headers(merge_headers(dict(self._base_headers), extra))
        request = self._build_request(self._method, self._http_url, request_headers, body)
        response, attempts, duration = await self._request(
            "send",
            request,
            idempotent=idempotency_key is not None,
            timeout=timeout,
        )
        return SendResult(
            message_id=_message_id(response),
            provider=self.name,
            accepted=(redact_url(self._url),),
            attempts=attempts,
            duration=duration,
            status=response.status_code,
        )


def _message_id(response: httpx.Response) -> str | None:
    header: str | None = response.headers.get("x-request-id")
    if response.headers.get("content-type", "").startswith("application/json") and response.content:
        try:
            data = _decode_id.decode(response.content)
        except msgspec.DecodeError:
            data = {}
        value = data.get("id")
        if isinstance(value, str | int):
            return str(value)
    return header
