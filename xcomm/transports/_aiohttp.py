"""An httpx transport over aiohttp, and the one place aiohttp's errors become httpx's.

httpx's own async transport loses most of its throughput under concurrency; aiohttp's connection
pool does not. `AiohttpTransport` slots in under the manager's shared `httpx.AsyncClient`, so
providers, retries and error mapping stay exactly as they are.

What matters most is *when* a failure happened, because xcomm retries a request only when
nothing reached the server. aiohttp's exception classes already say which phase failed, and
`_translate()` keeps that distinction:

| aiohttp (or the pool in front of it)                   | httpx               | xcomm          |
|--------------------------------------------------------|---------------------|----------------|
| no pool slot within `pool` seconds                     | PoolTimeout         | RequestNotSent |
| `ConnectionTimeoutError` (DNS+TCP+TLS too slow)        | ConnectTimeout      | RequestNotSent |
| `ClientProxyConnectionError`, `ClientHttpProxyError`   | ProxyError          | RequestNotSent |
| `ClientConnectorError` (refused, DNS, TLS, cert)       | ConnectError        | RequestNotSent |
| `ServerFingerprintMismatch`                            | ConnectError        | RequestNotSent |
| `SocketTimeoutError` (no bytes within `read` s)        | ReadTimeout         | DeliveryUnknown|
| `ServerDisconnectedError` (hung up, no response)       | RemoteProtocolError | DeliveryUnknown|
| `ClientPayloadError` (truncated or malformed body)     | RemoteProtocolError | DeliveryUnknown|
| `ClientResponseError` (malformed status or headers)    | RemoteProtocolError | DeliveryUnknown|
| `ClientConnectionResetError` (closed while writing)    | WriteError          | DeliveryUnknown|
| `ClientOSError`, other `ClientConnectionError`, OSError| ReadError           | DeliveryUnknown|
| any other `ClientError`                                | TransportError      | DeliveryUnknown|
| scheme not http(s), no host                            | UnsupportedProtocol | (as httpx's)   |
| `InvalidURL` (a URL aiohttp will not send)             | InvalidURL          | (as httpx's)   |

The third-party package `httpx-aiohttp` maps every `ClientConnectionError` (which includes
`ServerDisconnectedError`) to `ConnectTimeout`, which would make xcomm resend a webhook the
server may already have acted on. Here a connection error counts as "not sent" only when it is
one of aiohttp's connector errors, which it raises before a single byte of the request is written.
"""

from __future__ import annotations

import asyncio
import importlib.util
import ssl
from collections.abc import AsyncIterator, Callable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import anyio
import httpx

from xcomm._errors import ConfigurationError
from xcomm._httpx_objects import header_names, read_response, text_headers

if TYPE_CHECKING:
    import aiohttp
    from yarl import URL

# aiohttp is imported when the first request opens the session, not before: importing it
# costs about as much CPU as opening a manager otherwise does, and takes the event loop's
# thread; a manager whose providers speak SMTP, IMAP or AWS never needs it.
_HAVE_AIOHTTP = importlib.util.find_spec("aiohttp") is not None

__all__ = ["AiohttpTransport"]

#: The same defaults as httpx's own transport (and xcomm's `Limits`).
DEFAULT_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20, keepalive_expiry=5)

# Headers aiohttp writes on its own when a request lacks them (httpx's transports never do).
_AUTO = {b"accept": "Accept", b"accept-encoding": "Accept-Encoding", b"user-agent": "User-Agent"}
_AUTO_WITH_BODY = _AUTO | {b"content-type": "Content-Type"}
#: Bodies up to this size, with a Content-Length, are read before the response is returned.
_EAGER_BODY_LIMIT = 256 * 1024
_CONTENT_ENCODING = "Content-Encoding"
_HTTP_VERSIONS: dict[object, bytes] = {(1, 1): b"HTTP/1.1", (1, 0): b"HTTP/1.0"}
#: Request URL objects whose yarl form is kept (a provider's endpoints).
_URL_CACHE_SIZE = 256


class AiohttpTransport(httpx.AsyncBaseTransport):
    """An `httpx.AsyncBaseTransport` backed by an `aiohttp.ClientSession` (needs `xcomm[fast]`).

    Example:
        ```python
        from xcomm import CommManager
        from xcomm.transports import AiohttpTransport

        async with CommManager(transport=AiohttpTransport()) as comm:
            await comm.webhook("https://hooks.example.com/T0K3N").send({"text": "hi"})
        ```

    The manager's client closes the transport when the manager closes. The aiohttp session is
    created on the first request, inside the running event loop, and the transport is bound to
    that loop from then on; a closed transport refuses further requests.

    Args:
        limits: connection limits (the manager's `limits=` does not reach a custom transport).
            `max_connections` bounds requests in flight; a request that waits longer than the
            `pool` timeout for a slot fails with `httpx.PoolTimeout`. `keepalive_expiry` is how
            long an idle connection is kept. `max_keepalive_connections=0` disables keep-alive;
            other values are not enforced, because aiohttp keeps every idle connection that
            `max_connections` allows.
        verify: `True` to verify certificates against certifi's CA bundle (as httpx does),
            `False` to skip verification, or an `ssl.SSLContext` to use as is.
        trust_env: read proxies, `.netrc` and `SSL_CERT_FILE`/`SSL_CERT_DIR` from the
            environment.

    Timeouts come from each request (`request.extensions["timeout"]`, which the httpx client
    fills from the manager's or the provider's `Timeout`) and map onto aiohttp's like this:

    - `pool`: the wait for one of the `max_connections` slots, enforced here, in front of
      aiohttp (so that running out of slots is told apart from a slow connect).
    - `connect` → `ClientTimeout(connect=connect, sock_connect=connect)`: DNS, TCP and TLS.
      aiohttp never queues for a connection itself, since the slots above bound it.
    - `read` → `ClientTimeout(sock_read=read)`: the longest wait for any bytes of the response,
      counted from the moment the whole request has been written.
    - `write`: aiohttp has no write timeout and this transport adds none; a server that stops
      reading a large body stalls the request until the caller gives up. (Bodies that fit in the
      socket buffers, such as any webhook payload, are written at once.)

    Behaviour otherwise follows httpx's own transport: no redirects (the client follows them
    if asked), no cookies (the client keeps them), no decompression (the client decodes
    `Content-Encoding`), response headers exactly as received, duplicates included, and no
    retries: aiohttp on its own resends an idempotent request (PUT, DELETE, ...) once when the
    server hangs up, which is turned off here, because whether to resend a request whose
    delivery is unknown is xcomm's decision, not the transport's.
    """

    def __init__(
        self,
        *,
        limits: httpx.Limits | None = None,
        verify: ssl.SSLContext | bool = True,
        trust_env: bool = False,
    ) -> None:
        if not _HAVE_AIOHTTP:
            raise ConfigurationError("AiohttpTransport needs aiohttp: pip install 'xcomm[fast]'")
        limits = DEFAULT_LIMITS if limits is None else limits
        if not isinstance(limits, httpx.Limits):
            raise ConfigurationError(f"limits must be an httpx.Limits, got {type(limits).__name__}")
        if not isinstance(verify, ssl.SSLContext | bool):
            raise ConfigurationError(
                f"verify must be True, False or an ssl.SSLContext, got {type(verify).__name__}"
            )
        self._limits = limits
        self._verify = verify
        self._trust_env = trust_env
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._slots: anyio.Semaphore | None = None
        self._closed = False
        self._timeouts: dict[tuple[float | None, float | None], aiohttp.ClientTimeout] = {}
        self._urls: dict[int, tuple[httpx.URL, URL]] = {}

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open" if self._session else "unopened"
        return f"AiohttpTransport(max_connections={self._limits.max_connections}, {state})"

    # -- lifecycle -------------------------------------------------------------------------

    def _open(self) -> aiohttp.ClientSession:
        """Create the session and connector in the running loop (no await: no race)."""
        if self._closed:
            raise RuntimeError("this AiohttpTransport is closed; create a new one")
        import aiohttp

        limits = self._limits
        max_connections = limits.max_connections or 0
        context = httpx.create_ssl_context(verify=self._verify, trust_env=self._trust_env)
        connector = aiohttp.TCPConnector(
            limit=max_connections,
            limit_per_host=0,
            keepalive_timeout=limits.keepalive_expiry,
            force_close=limits.max_keepalive_connections == 0,
            ssl=context,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
            trust_env=self._trust_env,
            timeout=aiohttp.ClientTimeout(total=None),
        )
        # No silent resend of idempotent requests after a hang-up (aiohttp's own test client
        # switches it off the same way; the attribute is one ClientSession declares).
        self._session._retry_connection = False
        self._loop = asyncio.get_running_loop()
        self._slots = anyio.Semaphore(max_connections) if max_connections else None
        return self._session

    async def aclose(self) -> None:
        """Close the session and its connections. Safe to call more than once."""
        self._closed = True
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc: BaseException | None = None,
        tb: TracebackType | None = None,
    ) -> None:
        await self.aclose()

    # -- one request -------------------------------------------------------------------------

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send `request` and return its response with the body still to be streamed."""
        session = self._session
        if session is None:
            session = self._open()
        elif self._loop is not asyncio.get_running_loop():
            raise RuntimeError(
                "an AiohttpTransport is bound to the event loop of its first request"
            )
        url = self._url(request)
        timeouts: Mapping[str, float | None] = request.extensions.get("timeout", {})
        headers, data, skip = _request_parts(request)
        slots = self._slots
        if slots is None:
            release = _nothing
        else:
            try:
                slots.acquire_nowait()
            except anyio.WouldBlock:
                await self._wait_for_slot(slots, timeouts.get("pool"), request)
            release = slots.release
        try:
            response = await session.request(
                request.method,
                url,
                headers=headers,
                data=data,
                skip_auto_headers=skip,
                allow_redirects=False,
                timeout=self._client_timeout(timeouts.get("connect"), timeouts.get("read")),
                server_hostname=request.extensions.get("sni_hostname"),
            )
        except BaseException as exc:
            release()
            if _failed(exc, ValueError):
                raise _translate(exc, request) from exc
            raise
        try:
            extensions = {
                "http_version": _HTTP_VERSIONS.get(response.version, b"HTTP/1.1"),
                "reason_phrase": (response.reason or "").encode("ascii", "replace"),
            }
            length = response.content_length
            if length is None or length > _EAGER_BODY_LIMIT:
                return httpx.Response(
                    status_code=response.status,
                    headers=list(response.raw_headers),
                    stream=_ResponseStream(response, release, request),
                    extensions=extensions,
                )
            # A small body of known length (any API reply) is read here, at once: the
            # response comes back already read, with no stream left to drive or close.
            body = await response.read()
        except BaseException as exc:
            response.release()
            release()
            if _failed(exc):
                raise _translate(exc, request) from exc
            raise
        response.release()
        release()
        return read_response(
            response.status,
            response.raw_headers,
            body,
            extensions,
            encoded=_CONTENT_ENCODING in response.headers,
        )

    async def _wait_for_slot(
        self, slots: anyio.Semaphore, pool_timeout: float | None, request: httpx.Request
    ) -> None:
        """Wait (in arrival order) for a slot; only started when none is free."""
        try:
            async with asyncio.timeout(pool_timeout):
                await slots.acquire()
        except TimeoutError as exc:
            raise httpx.PoolTimeout(
                f"no free connection slot within {pool_timeout}s "
                f"(max_connections={self._limits.max_connections})",
                request=request,
            ) from exc

    def _url(self, request: httpx.Request) -> URL:
        """The yarl URL for `request`, checked and converted once per `httpx.URL` object.

        Providers build their requests on cached URLs (`HttpProvider._build_request` keeps
        the object), so the lookup is by identity; the entry holds the object, so its id is
        not reused while cached.
        """
        url = request.url
        cached = self._urls.get(id(url))
        if cached is not None and cached[0] is url:
            return cached[1]
        converted = _aiohttp_url(request, str(url))
        if len(self._urls) >= _URL_CACHE_SIZE:
            self._urls.clear()
        self._urls[id(url)] = (url, converted)
        return converted

    def _client_timeout(self, connect: float | None, read: float | None) -> aiohttp.ClientTimeout:
        key = (connect, read)
        timeout = self._timeouts.get(key)
        if timeout is None:
            if len(self._timeouts) > 64:  # a handful of distinct settings in practice
                self._timeouts.clear()
            import aiohttp

            timeout = aiohttp.ClientTimeout(
                total=None, connect=connect, sock_connect=connect, sock_read=read
            )
            self._timeouts[key] = timeout
        return timeout


class _ResponseStream(httpx.AsyncByteStream):
    """The body of one aiohttp response; closing it releases the connection and the slot."""

    def __init__(
        self,
        response: aiohttp.ClientResponse,
        release: Callable[[], None],
        request: httpx.Request,
    ) -> None:
        self._response = response
        self._release = release
        self._request = request
        self._closed = False

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    async def __anext__(self) -> bytes:
        if self._closed:
            raise StopAsyncIteration
        try:
            chunk = await self._response.content.readany()
        except Exception as exc:
            if _failed(exc):
                raise _translate(exc, self._request) from exc
            raise
        if not chunk:
            raise StopAsyncIteration
        return chunk

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            # Returns a fully read connection to the pool; closes one read only in part.
            self._response.release()
        finally:
            self._release()


def _nothing() -> None:
    return None


def _aiohttp_url(request: httpx.Request, text: str) -> URL:
    url = request.url
    if url.scheme not in ("http", "https"):
        raise httpx.UnsupportedProtocol(
            f"Request URL has an unsupported protocol '{url.scheme}://'."
            if url.scheme
            else "Request URL is missing an 'http://' or 'https://' protocol.",
            request=request,
        )
    if not url.host:
        raise httpx.UnsupportedProtocol("Request URL has no host.", request=request)
    from yarl import URL

    # httpx has already percent-encoded the URL; tell yarl not to encode it again.
    return URL(text, encoded=True)


def _request_parts(
    request: httpx.Request,
) -> tuple[list[tuple[str, str]], Any, tuple[str, ...] | None]:
    """aiohttp's headers, body and `skip_auto_headers` for `request`.

    Raw header bytes are kept (aiohttp writes UTF-8). aiohttp adds Accept, Accept-Encoding,
    User-Agent and, with a body, Content-Type when a request lacks them, and httpx's own
    transport adds nothing; the ones this request lacks are named in `skip_auto_headers`.
    A request from the pipeline has them all, so aiohttp takes its fast path (skipping
    costs it a header copy per request).
    """
    try:
        headers = text_headers(request.headers)
    except UnicodeDecodeError as exc:
        raise httpx.LocalProtocolError(
            "a request header is not valid UTF-8, which aiohttp cannot send", request=request
        ) from exc
    names = header_names(request.headers)
    try:
        content = request.content
    except httpx.RequestNotRead:  # a streaming body: aiohttp sends it chunked
        chunked = [(k, v) for k, v in headers if k.lower() != "transfer-encoding"]
        return chunked, _body(request.stream), _skipped(names, _AUTO_WITH_BODY)
    if content:
        return headers, content, _skipped(names, _AUTO_WITH_BODY)
    return headers, None, _skipped(names, _AUTO)


def _skipped(names: set[bytes], auto: dict[bytes, str]) -> tuple[str, ...] | None:
    if names.issuperset(auto):
        return None
    return tuple(header for name, header in auto.items() if name not in names)


async def _body(stream: httpx.SyncByteStream | httpx.AsyncByteStream) -> AsyncIterator[bytes]:
    if not isinstance(stream, httpx.AsyncByteStream):
        raise TypeError("AiohttpTransport needs an async request body")
    async for chunk in stream:
        yield chunk


def _failed(exc: BaseException, *also: type[Exception]) -> bool:
    """Whether `exc` is a failure of aiohttp or the socket (or one of `also`), for
    `_translate()`; anything else (a cancellation, a bug) goes on as it is."""
    import aiohttp

    return isinstance(exc, (aiohttp.ClientError, OSError, *also))


def _describe(exc: BaseException) -> str:
    """A message for `exc` without the request URL (webhook URLs carry secrets)."""
    import aiohttp

    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return "timed out connecting"
    if isinstance(exc, aiohttp.ClientResponseError):
        return f"{exc.status}, {exc.message}"
    if isinstance(exc, aiohttp.InvalidURL):
        return f"aiohttp cannot send this URL{': ' + exc.description if exc.description else ''}"
    return str(exc) or type(exc).__name__


def _translate(exc: BaseException, request: httpx.Request) -> Exception:
    """The httpx exception for an aiohttp (or socket) failure, by the phase it reveals."""
    import aiohttp

    message = _describe(exc)
    # Before any byte of the request was written (the connector's own errors).
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout(message, request=request)
    if isinstance(exc, aiohttp.ClientProxyConnectionError | aiohttp.ClientHttpProxyError):
        return httpx.ProxyError(message, request=request)
    if isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ServerFingerprintMismatch):
        return httpx.ConnectError(message, request=request)
    if isinstance(exc, aiohttp.InvalidURL):
        return httpx.InvalidURL(message)
    # After the request was (at least partly) written: the server may have acted on it.
    if isinstance(exc, TimeoutError):  # SocketTimeoutError, ServerTimeoutError
        return httpx.ReadTimeout(message, request=request)
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return httpx.RemoteProtocolError(
            "Server disconnected without sending a complete response.", request=request
        )
    if isinstance(exc, aiohttp.ClientPayloadError | aiohttp.ClientResponseError):
        return httpx.RemoteProtocolError(message, request=request)
    if isinstance(exc, aiohttp.ClientConnectionResetError):
        return httpx.WriteError(message, request=request)
    if isinstance(exc, aiohttp.ClientConnectionError | OSError):
        return httpx.ReadError(message, request=request)
    if isinstance(exc, aiohttp.ClientError):
        return httpx.TransportError(message, request=request)
    if isinstance(exc, ValueError):  # aiohttp refusing a header value (control characters)
        return httpx.LocalProtocolError(message, request=request)
    return exc if isinstance(exc, Exception) else RuntimeError(message)
