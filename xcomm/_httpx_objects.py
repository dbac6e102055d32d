"""`httpx.Request` and `httpx.Response` built for the pipeline's hot path.

Every REST call builds one request and one response. httpx's constructors are general (any
body type, streaming, encoding detection, content decoding) and, per call, cost more than
everything else the pipeline does. When the body is already `bytes`, the result is known in
advance, so these two functions build the same objects directly:

- `body_request()` is `httpx.Request(method, url, headers=headers, content=content)` (Host
  first, Content-Length last, the body already read), at about a third of its cost;
- `read_response()` is `httpx.Response(status, headers=raw, content=body)` for a body that
  arrived whole (read, closed), at about a tenth;
- `text_headers()` and `header_names()` read a request's headers for another HTTP library
  without building the `(name, value)` byte pairs of `Headers.raw` first.

They set the same attributes httpx's own `_prepare()` and `read()` set (`Headers._list`,
`_content`), so they depend on httpx's internals; `tests/unit/test_httpx_objects.py` compares
every observable property with httpx's own constructors, and fails first on an httpx upgrade
that changes them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import httpx

__all__ = ["body_request", "header_names", "read_response", "text_headers"]

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_FRAMING = frozenset({b"content-length", b"transfer-encoding"})


def body_request(
    method: str, url: httpx.URL, headers: httpx.Headers, content: bytes
) -> httpx.Request:
    """A request with a `bytes` body: Host from `url` unless `headers` has one, and
    Content-Length from `content` (replacing one in `headers`)."""
    request = httpx.Request(method, url, headers=headers, stream=httpx.ByteStream(content))
    listed = request.headers._list
    names = {lower for _, lower, _ in listed}
    if names & _FRAMING:  # the body decides the framing, whatever the caller's headers say
        for name in ("content-length", "transfer-encoding"):
            request.headers.pop(name, None)
    first = [(b"Host", b"host", url.netloc)] if b"host" not in names else []
    if content:
        listed.append((b"Content-Length", b"content-length", b"%d" % len(content)))
    elif request.method in _BODY_METHODS:
        first.append((b"Content-Length", b"content-length", b"0"))
    listed[:0] = first
    request._content = content
    request.url = url  # the caller's (immutable) object, not a copy: transports cache by it
    return request


def read_response(
    status: int,
    raw_headers: Iterable[tuple[bytes, bytes]],
    body: bytes,
    extensions: dict[str, Any],
    *,
    encoded: bool,
) -> httpx.Response:
    """A response whose whole body is `body`, read and closed, headers exactly as received.

    `encoded`: the headers carry a `Content-Encoding`; the body is then decoded by httpx's
    own decoders (gzip, deflate, ...), as `Response.read()` does.
    """
    response = httpx.Response(status, stream=httpx.ByteStream(body), extensions=extensions)
    response.headers._list = [(key, key.lower(), value) for key, value in raw_headers]
    if encoded:
        response.read()
        return response
    response._content = body
    response.is_stream_consumed = True
    response.is_closed = True
    return response


def text_headers(headers: httpx.Headers) -> list[tuple[str, str]]:
    """`[(name.decode(), value.decode()) for name, value in headers.raw]`: names as given,
    UTF-8 (raises UnicodeDecodeError)."""
    return [(name.decode(), value.decode()) for name, _, value in headers._list]


def header_names(headers: httpx.Headers) -> set[bytes]:
    """The lower-cased names in `headers`, as bytes."""
    return {lower for _, lower, _ in headers._list}
