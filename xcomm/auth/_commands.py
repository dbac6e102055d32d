"""What `xcomm auth gmail` and `xcomm auth outlook` do; `xcomm._cli` parses for them.

Both sign the user in through the browser (a loopback redirect on 127.0.0.1, PKCE) and save
an authorized-user token file (mode 0600) that `credentials_path=` and google-auth read.
Exit statuses: 0 saved; 1 the sign-in or the code was refused, or it timed out; 2 bad
settings (a client file of the wrong kind, no refresh token).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from typing import TextIO

from xcomm._errors import ConfigurationError, ProviderError, TransportError
from xcomm.auth._client import GMAIL_SCOPES, OUTLOOK_SCOPES, OAuthClient
from xcomm.auth._files import load_google_credentials, write_authorized_user
from xcomm.auth._loopback import run_loopback_flow

__all__ = ["GMAIL_SCOPES", "OUTLOOK_SCOPES", "auth_gmail", "auth_outlook", "sign_in"]


def _error(err: TextIO | None, text: str) -> int:
    print(f"xcomm: error: {text}", file=err or sys.stderr)
    return 2


async def _flow(
    client: OAuthClient,
    token_file: str,
    *,
    open_browser: bool,
    port: int,
    timeout: float,
    out: TextIO,
) -> None:
    from xcomm._manager import CommManager

    def show(url: str) -> None:
        print("Open this URL in a browser to sign in (waiting for the redirect):", file=out)
        print(url, file=out, flush=True)

    async with CommManager(outbox="memory://") as comm:
        token = await run_loopback_flow(
            comm.oauth(client), open_browser=open_browser, port=port, timeout=timeout, on_url=show
        )
    write_authorized_user(token_file, client, token)
    print(f"Saved the refresh token to {token_file} (mode 0600).", file=out)


def sign_in(
    client: OAuthClient,
    token_file: str,
    *,
    open_browser: bool = True,
    port: int = 0,
    timeout: float = 300.0,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Run the browser sign-in for `client` and save `token_file`; returns the exit status."""
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        asyncio.run(
            _flow(
                client, token_file, open_browser=open_browser, port=port, timeout=timeout, out=out
            )
        )
    except ConfigurationError as exc:
        return _error(err, str(exc))
    except (ProviderError, TransportError) as exc:
        print(f"xcomm: sign-in failed: {exc}", file=err)
        return 1
    return 0


def auth_gmail(
    client_secrets: str,
    *,
    token_file: str,
    scopes: Sequence[str] | None = None,
    open_browser: bool = True,
    port: int = 0,
    timeout: float = 300.0,
) -> int:
    """`xcomm auth gmail`: sign in with a Google OAuth client file ("Desktop app")."""
    try:
        client = load_google_credentials(client_secrets)
    except ConfigurationError as exc:
        return _error(None, str(exc))
    if not isinstance(client, OAuthClient):
        return _error(
            None,
            f"{client_secrets} is not an OAuth client file; download the 'Desktop app' client "
            "JSON from the Google Cloud console (APIs & Services → Credentials)",
        )
    client = OAuthClient.google(
        client.client_id, client_secret=client.client_secret, scopes=scopes or GMAIL_SCOPES
    )
    return sign_in(client, token_file, open_browser=open_browser, port=port, timeout=timeout)


def auth_outlook(
    client_id: str,
    *,
    tenant: str,
    token_file: str,
    scopes: Sequence[str] | None = None,
    open_browser: bool = True,
    port: int = 0,
    timeout: float = 300.0,
) -> int:
    """`xcomm auth outlook`: sign in to an Entra app registration (public client, PKCE)."""
    try:
        client = OAuthClient.microsoft(client_id, tenant=tenant, scopes=scopes or OUTLOOK_SCOPES)
    except ConfigurationError as exc:
        return _error(None, str(exc))
    return sign_in(client, token_file, open_browser=open_browser, port=port, timeout=timeout)
