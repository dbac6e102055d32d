"""`xcomm auth gmail|outlook`: argument parsing, bad client files, and a whole sign-in."""

from __future__ import annotations

import asyncio
import io
import json
import stat
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import anyio.to_thread
import httpx
import pytest
import respx

from xcomm._cli import build_parser, main
from xcomm.auth import GOOGLE_TOKEN_URI, AuthorizedUser, OAuthClient, load_google_credentials
from xcomm.auth._commands import sign_in


def test_parser_knows_both_services() -> None:
    args = build_parser().parse_args(["auth", "outlook", "--client-id", "c", "--no-browser"])
    assert (args.service, args.client_id, args.tenant, args.browser) == (
        "outlook",
        "c",
        "common",
        False,
    )
    args = build_parser().parse_args(["auth", "gmail", "--client-secrets", "cs.json"])
    assert args.token_file == "gmail-token.json"


def test_a_service_account_key_is_not_a_client_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "sa.json"
    path.write_text(json.dumps({"type": "authorized_user", "client_id": "c", "refresh_token": "r"}))
    assert main(["auth", "gmail", "--client-secrets", str(path), "--no-browser"]) == 2
    assert "not an OAuth client file" in capsys.readouterr().err


def test_bad_tenant_is_bad_settings(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["auth", "outlook", "--client-id", "c", "--tenant", "a/b", "--no-browser"]) == 2
    assert "tenant" in capsys.readouterr().err


async def test_sign_in_saves_an_authorized_user_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # sign_in makes its own manager: respx's global mock patches httpx's own transport, so
    # that manager must use it rather than the aiohttp pool it would pick by default.
    monkeypatch.setenv("XCOMM_HTTP_TRANSPORT", "httpx")
    client = OAuthClient.google("cid", client_secret="GOCSPX-s")
    token_file = tmp_path / "token.json"
    out, err = io.StringIO(), io.StringIO()
    with respx.mock(assert_all_called=False) as mock:
        mock.route(host="127.0.0.1").pass_through()
        mock.post(GOOGLE_TOKEN_URI).respond(
            200,
            json={
                "access_token": "ya29.a",
                "expires_in": 3599,
                "refresh_token": "1//r",
                "scope": "https://mail.google.com/",
                "token_type": "Bearer",
            },
        )
        done = asyncio.ensure_future(
            anyio.to_thread.run_sync(
                lambda: sign_in(
                    client, str(token_file), open_browser=False, timeout=10, out=out, err=err
                )
            )
        )
        for _ in range(500):
            if "https://" in out.getvalue():
                break
            await asyncio.sleep(0.01)
        url = next(line for line in out.getvalue().splitlines() if line.startswith("https://"))
        query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
        async with httpx.AsyncClient() as browser:
            await browser.get(query["redirect_uri"], params={"code": "c", "state": query["state"]})
        assert await done == 0, err.getvalue()
    user = load_google_credentials(token_file)
    assert isinstance(user, AuthorizedUser) and user.refresh_token == "1//r"
    if sys.platform != "win32":
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert "1//r" not in out.getvalue()
