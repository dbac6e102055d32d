"""The command-line sign-in: a one-shot HTTP server on 127.0.0.1 catches the redirect.

RFC 8252 §7.3 (loopback redirect): open the authorization URL in the user's browser, wait for
`GET /?code=...&state=...` (or `?error=...`) on a free local port, answer with a small page,
and exchange the code (PKCE S256, state checked first).
"""

from __future__ import annotations

import asyncio
import html
import logging
import webbrowser
from collections.abc import Callable
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit, urlunsplit

import anyio
import anyio.to_thread

from xcomm._errors import AuthenticationError, ConfigurationError
from xcomm.auth._client import Token, make_code_verifier, make_state

if TYPE_CHECKING:
    from collections.abc import Sequence

    from xcomm.auth._endpoint import OAuthEndpoint

__all__ = ["run_loopback_flow"]

logger = logging.getLogger("xcomm.auth")

_MAX_REQUEST = 16 * 1024
_PAGE = (
    "<!doctype html><html><head><meta charset='utf-8'><title>xcomm</title></head>"
    "<body style='font-family:sans-serif'><h1>{title}</h1><p>{text}</p></body></html>"
)


def _redirect_uri(template: str, port: int) -> str:
    parts = urlsplit(template)
    if parts.scheme != "http" or parts.hostname not in ("127.0.0.1", "localhost", "::1"):
        raise ConfigurationError(
            f"a loopback sign-in needs an http://127.0.0.1 or http://localhost redirect_uri, "
            f"got {template!r}"
        )
    return urlunsplit(("http", f"{parts.hostname}:{port}", parts.path or "/", "", ""))


def _response(status: str, title: str, text: str) -> bytes:
    body = _PAGE.format(title=html.escape(title), text=html.escape(text)).encode()
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\nCache-Control: no-store\r\n\r\n"
    )
    return head.encode("ascii") + body


async def run_loopback_flow(
    endpoint: OAuthEndpoint,
    *,
    open_browser: bool = True,
    port: int = 0,
    timeout: float = 300.0,
    scopes: Sequence[str] | None = None,
    login_hint: str | None = None,
    on_url: Callable[[str], object] | None = None,
) -> Token:
    """Sign a user in through their browser; returns the token (with its refresh token).

    Args:
        endpoint: from `comm.oauth(client)`; the client's redirect_uri host is used
            (Google: http://127.0.0.1, Microsoft: http://localhost) with the chosen port.
        open_browser: open the URL with `webbrowser`; either way `on_url` gets it.
        port: the local port (0: any free one).
        timeout: seconds to wait for the user.
        on_url: called with the authorization URL (the CLI prints it).

    Raises:
        AuthenticationError: the user or server refused (`?error=`), the state did not match,
            the code was refused, or nothing arrived within `timeout` (error_code "timeout").
    """
    client = endpoint.client
    state = make_state()
    verifier = make_code_verifier()
    arrived: asyncio.Future[dict[str, list[str]]] = asyncio.get_running_loop().create_future()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            writer.close()
            return
        try:
            line = head.split(b"\r\n", 1)[0].decode("latin-1")
            method, target, _ = line.split(" ", 2)
            query = parse_qs(urlsplit(target).query)
            if method != "GET" or not ({"code", "error"} & query.keys()):
                writer.write(_response("404 Not Found", "Not found", "Nothing here."))
            elif "error" in query:
                writer.write(_response("200 OK", "Sign-in failed", "You can close this tab."))
            else:
                writer.write(
                    _response("200 OK", "Signed in", "xcomm has the authorization; close this tab.")
                )
            if ({"code", "error"} & query.keys()) and not arrived.done():
                arrived.set_result(query)
            await writer.drain()
        except (ValueError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port, limit=_MAX_REQUEST)
    try:
        bound = server.sockets[0].getsockname()[1]
        redirect = _redirect_uri(client.redirect_uri, bound)
        url = client.authorization_url(
            state=state,
            code_verifier=verifier,
            redirect_uri=redirect,
            scopes=scopes,
            login_hint=login_hint,
        )
        if on_url is not None:
            on_url(url)
        if open_browser:
            await anyio.to_thread.run_sync(webbrowser.open, url)
        try:
            with anyio.fail_after(timeout):
                query = await arrived
        except TimeoutError:
            raise AuthenticationError(
                f"no sign-in arrived within {timeout:g}s; run the command again",
                provider=endpoint.name,
                error_code="timeout",
            ) from None
    finally:
        server.close()
        await server.wait_closed()
    if "error" in query:
        raise AuthenticationError(
            "the sign-in was refused in the browser",
            provider=endpoint.name,
            error_code=query["error"][0],
            detail=" ".join(query.get("error_description", [])) or None,
        )
    return await endpoint.exchange_code(
        query["code"][0],
        state=(query.get("state") or [""])[0],
        expected_state=state,
        code_verifier=verifier,
        redirect_uri=redirect,
    )
