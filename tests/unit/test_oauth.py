"""Pure parts of xcomm.auth: PKCE, authorization URLs, Google credential files, the token store."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from xcomm import ConfigurationError
from xcomm.auth import (
    AuthorizedUser,
    FileTokenStore,
    OAuthClient,
    ServiceAccountKey,
    Token,
    code_challenge,
    load_google_credentials,
    make_code_verifier,
    write_authorized_user,
)

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="POSIX file modes")


def test_pkce_rfc7636_appendix_b_vector() -> None:
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert code_challenge(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def test_fresh_verifiers_are_valid_and_distinct() -> None:
    verifiers = {make_code_verifier() for _ in range(50)}
    assert len(verifiers) == 50
    assert all(len(v) == 43 for v in verifiers)
    for v in verifiers:
        code_challenge(v)


@pytest.mark.parametrize("bad", ["short", "x" * 129, "a" * 42 + "!"])
def test_bad_verifiers_are_refused(bad: str) -> None:
    with pytest.raises(ConfigurationError, match="43-128"):
        code_challenge(bad)


def test_google_authorization_url() -> None:
    client = OAuthClient.google("cid.apps.googleusercontent.com")
    url = client.authorization_url(state="st", code_verifier="a" * 43)
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == (
        "https://accounts.google.com/o/oauth2/v2/auth"
    )
    q = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert q == {
        "response_type": "code",
        "client_id": "cid.apps.googleusercontent.com",
        "redirect_uri": "http://127.0.0.1",
        "scope": "https://mail.google.com/",
        "state": "st",
        "code_challenge": code_challenge("a" * 43),
        "code_challenge_method": "S256",
        "access_type": "offline",
        "prompt": "consent",
    }


def test_microsoft_endpoints_per_tenant() -> None:
    client = OAuthClient.microsoft("cid", tenant="contoso.onmicrosoft.com")
    base = "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0"
    assert client.auth_uri == f"{base}/authorize"
    assert client.token_uri == f"{base}/token"
    assert "offline_access" in client.scopes
    with pytest.raises(ConfigurationError, match="tenant"):
        OAuthClient.microsoft("cid", tenant="evil.com/x?")


def test_reprs_hide_secrets() -> None:
    client = OAuthClient.google("cid", client_secret="GOCSPX-SECRET")
    token = Token(access_token="ACCESS", refresh_token="REFRESH", id_token="IDTOK")
    for text in (repr(client), repr(token), str(token)):
        assert "SECRET" not in text and "ACCESS" not in text and "REFRESH" not in text
        assert "IDTOK" not in text


# -- Google's credential files ---------------------------------------------------------------


def _write(tmp_path: Path, data: object, name: str = "creds.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return path


CLIENT_SECTION = {
    "client_id": "123-abc.apps.googleusercontent.com",
    "project_id": "my-project",
    "auth_uri": "https://accounts.google.com/o/oauth2/auth",
    "token_uri": "https://oauth2.googleapis.com/token",
    "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
    "client_secret": "GOCSPX-abc",
    "redirect_uris": ["http://localhost"],
}


def test_installed_client_file(tmp_path: Path) -> None:
    client = load_google_credentials(_write(tmp_path, {"installed": CLIENT_SECTION}))
    assert isinstance(client, OAuthClient)
    assert client.client_id == CLIENT_SECTION["client_id"]
    assert client.client_secret == "GOCSPX-abc"
    assert client.issuer == "google"
    assert client.auth_uri == "https://accounts.google.com/o/oauth2/v2/auth"
    assert client.redirect_uri == "http://127.0.0.1"


def test_web_client_file_uses_its_first_redirect(tmp_path: Path) -> None:
    web = {**CLIENT_SECTION, "redirect_uris": ["https://app.example.com/oauth/callback"]}
    client = load_google_credentials(_write(tmp_path, {"web": web}))
    assert isinstance(client, OAuthClient)
    assert client.redirect_uri == "https://app.example.com/oauth/callback"


def test_authorized_user_file_as_google_auth_writes_it(tmp_path: Path) -> None:
    user = load_google_credentials(
        _write(
            tmp_path,
            {
                "token": "ya29.ACCESS",
                "refresh_token": "1//REFRESH",
                "token_uri": "https://oauth2.googleapis.com/token",
                "client_id": "cid",
                "client_secret": "GOCSPX-x",
                "scopes": ["https://mail.google.com/"],
                "universe_domain": "googleapis.com",
                "account": "",
                "expiry": "2030-01-01T00:00:00.000000Z",
                "type": "authorized_user",
            },
        )
    )
    assert isinstance(user, AuthorizedUser)
    assert user.refresh_token == "1//REFRESH"
    assert user.token is not None and user.token.expires_at == 1893456000.0
    assert user.client.client_secret == "GOCSPX-x"
    assert user.client.issuer == "google"
    assert "REFRESH" not in repr(user)


def test_gcloud_style_authorized_user_without_token(tmp_path: Path) -> None:
    user = load_google_credentials(
        _write(
            tmp_path,
            {
                "client_id": "c",
                "client_secret": "s",
                "refresh_token": "r",
                "type": "authorized_user",
            },
        )
    )
    assert isinstance(user, AuthorizedUser) and user.token is None


def test_service_account_key(tmp_path: Path) -> None:
    pem = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )
    key = load_google_credentials(
        _write(
            tmp_path,
            {
                "type": "service_account",
                "project_id": "p",
                "private_key_id": "abc123",
                "private_key": pem,
                "client_email": "sa@p.iam.gserviceaccount.com",
                "client_id": "1000",
                "token_uri": "https://oauth2.googleapis.com/token",
            },
        )
    )
    assert isinstance(key, ServiceAccountKey)
    assert key.client_email == "sa@p.iam.gserviceaccount.com"
    assert "PRIVATE" not in repr(key)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json", "not JSON"),
        ([1, 2], "not a JSON object"),
        ({"type": "external_account"}, "type 'external_account'"),
        ({"foo": 1}, "keys"),
        ({"installed": {"client_secret": "x"}}, "no 'client_id'"),
        ({"type": "authorized_user", "client_id": "c"}, "no 'refresh_token'"),
        ({"type": "service_account", "client_email": "e", "private_key": "nope"}, "not PEM"),
    ],
)
def test_bad_credential_files_say_what_was_expected(
    tmp_path: Path, content: object, message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message) as info:
        load_google_credentials(_write(tmp_path, content))
    if "type" in message or "keys" in message or "JSON" in message:
        assert "authorized-user" in str(info.value)


def test_missing_credentials_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot read"):
        load_google_credentials(tmp_path / "nope.json")


@posix_only
def test_written_authorized_user_reads_back(tmp_path: Path) -> None:
    client = OAuthClient.google("cid", client_secret="s")
    path = tmp_path / "token.json"
    write_authorized_user(path, client, Token(access_token="a", refresh_token="r", expires_at=2e9))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    user = load_google_credentials(path)
    assert isinstance(user, AuthorizedUser)
    assert user.refresh_token == "r" and user.token is not None
    assert user.token.expires_at == pytest.approx(2e9)


# -- the token store ------------------------------------------------------------------------


@posix_only
async def test_file_store_round_trip_with_mode_0600(tmp_path: Path) -> None:
    store = FileTokenStore(tmp_path / "sub" / "tok.json")
    assert await store.load() is None
    token = Token(access_token="ACCESS", refresh_token="REFRESH", expires_at=123.0)
    await store.save(token)
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert await store.load() == token
    assert [p.name for p in store.path.parent.iterdir()] == ["tok.json"]  # no temp file left


@posix_only
async def test_file_store_refuses_a_group_readable_file(tmp_path: Path) -> None:
    store = FileTokenStore(tmp_path / "tok.json")
    await store.save(Token(access_token="a"))
    os.chmod(store.path, 0o644)
    with pytest.raises(ConfigurationError, match="chmod 600"):
        await store.load()


async def test_encrypted_store_round_trip(tmp_path: Path) -> None:
    key = FileTokenStore.generate_key()
    store = FileTokenStore(tmp_path / "tok.json", encryption_key=key)
    token = Token(access_token="ACCESS-PLAINTEXT", refresh_token="REFRESH-PLAINTEXT")
    await store.save(token)
    raw = store.path.read_bytes()
    assert b"PLAINTEXT" not in raw and b"A256GCM" in raw
    assert await store.load() == token
    with pytest.raises(ConfigurationError, match="cannot decrypt"):
        await FileTokenStore(store.path, encryption_key=os.urandom(32)).load()
    with pytest.raises(ConfigurationError, match="encrypted"):
        await FileTokenStore(store.path).load()


def test_bad_encryption_keys() -> None:
    with pytest.raises(ConfigurationError, match="32 bytes"):
        FileTokenStore("x.json", encryption_key=b"short")
