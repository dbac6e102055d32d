"""Token endpoints of Google and Microsoft (respx, real response shapes) and the sign-in flows."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import msgspec
import pytest
import respx
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from xcomm import AuthenticationError, CommManager, ProviderError, RateLimitError
from xcomm.auth import (
    GOOGLE_TOKEN_URI,
    OAuthClient,
    RefreshGrant,
    ServiceAccountGrant,
    ServiceAccountKey,
    TokenManager,
    run_loopback_flow,
)
from xcomm.testing import FakeClock

GOOGLE = OAuthClient.google("123.apps.googleusercontent.com", client_secret="GOCSPX-secret")
MS_TOKEN = "https://login.microsoftonline.com/contoso.com/oauth2/v2.0/token"
MICROSOFT = OAuthClient.microsoft("ms-client", tenant="contoso.com", client_secret="ms~secret")

GOOGLE_OK = {
    "access_token": "ya29.a0AfH6SMBx-ACCESS",
    "expires_in": 3599,
    "scope": "https://mail.google.com/",
    "token_type": "Bearer",
}
GOOGLE_INVALID_GRANT = {
    "error": "invalid_grant",
    "error_description": "Token has been expired or revoked.",
}
MS_INVALID_GRANT = {
    "error": "invalid_grant",
    "error_description": "AADSTS700082: The refresh token has expired due to inactivity. The "
    "token was issued on 2026-01-01T00:00:00Z and was inactive for 90.00:00:00.\r\n"
    "Trace ID: 0000aaaa-11bb-cccc-dd22-eeeeee333333\r\nCorrelation ID: x\r\n"
    "Timestamp: 2026-04-01 00:00:00Z",
    "error_codes": [700082],
    "timestamp": "2026-04-01 00:00:00Z",
    "trace_id": "0000aaaa-11bb-cccc-dd22-eeeeee333333",
    "correlation_id": "aaaa0000-bb11-2222-33cc-444444dddddd",
    "error_uri": "https://login.microsoftonline.com/error?code=700082",
}


def form(request: httpx.Request) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(request.content.decode()).items()}


async def test_google_refresh_keeps_the_refresh_token_google_does_not_resend(
    comm: CommManager, router: respx.MockRouter
) -> None:
    route = router.post(GOOGLE_TOKEN_URI).respond(200, json=GOOGLE_OK)
    token = await comm.oauth(GOOGLE).refresh("1//refresh-SECRET")
    assert token.access_token == "ya29.a0AfH6SMBx-ACCESS"
    assert token.refresh_token == "1//refresh-SECRET"
    assert token.expires_in() == pytest.approx(3599, abs=5)
    sent = form(route.calls.last.request)
    assert sent == {
        "grant_type": "refresh_token",
        "refresh_token": "1//refresh-SECRET",
        "client_id": "123.apps.googleusercontent.com",
        "client_secret": "GOCSPX-secret",
    }
    assert route.calls.last.request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert "SECRET" not in repr(token) and "ACCESS" not in repr(token)


async def test_google_invalid_grant_explains_testing_apps(
    comm: CommManager, router: respx.MockRouter
) -> None:
    route = router.post(GOOGLE_TOKEN_URI).respond(400, json=GOOGLE_INVALID_GRANT)
    with pytest.raises(AuthenticationError) as info:
        await comm.oauth(GOOGLE).refresh("1//refresh")
    err = info.value
    assert route.call_count == 1  # never retried
    assert err.error_code == "invalid_grant" and err.status == 400
    assert err.detail == "Token has been expired or revoked."
    text = str(err)
    assert "revoked" in text and "7 days" in text and "xcomm auth gmail" in text


async def test_invalid_client_is_an_authentication_error(
    comm: CommManager, router: respx.MockRouter
) -> None:
    router.post(GOOGLE_TOKEN_URI).respond(
        401,
        json={"error": "invalid_client", "error_description": "The OAuth client was not found."},
    )
    with pytest.raises(AuthenticationError, match="client id or client secret") as info:
        await comm.oauth(GOOGLE).refresh("1//refresh")
    assert info.value.error_code == "invalid_client"


async def test_microsoft_aadsts_codes_are_explained(
    comm: CommManager, router: respx.MockRouter
) -> None:
    router.post(MS_TOKEN).respond(400, json=MS_INVALID_GRANT)
    with pytest.raises(AuthenticationError) as info:
        await comm.oauth(MICROSOFT).refresh("0.AAA-refresh")
    assert "90 days of inactivity" in str(info.value)
    assert "xcomm auth outlook" in str(info.value)
    assert "AADSTS700082" in (info.value.detail or "")


async def test_client_credentials_for_graph(comm: CommManager, router: respx.MockRouter) -> None:
    route = router.post(MS_TOKEN).respond(
        200,
        json={
            "token_type": "Bearer",
            "expires_in": 3599,
            "ext_expires_in": 3599,
            "access_token": "eyJ0eXAi-APPONLY",
        },
    )
    tokens = TokenManager(comm.oauth(MICROSOFT).client_credentials)
    assert await tokens.token() == "eyJ0eXAi-APPONLY"
    assert form(route.calls.last.request) == {
        "grant_type": "client_credentials",
        "scope": "https://graph.microsoft.com/.default",
        "client_id": "ms-client",
        "client_secret": "ms~secret",
    }


async def test_5xx_then_success_is_retried_by_the_shared_pipeline(
    comm: CommManager, router: respx.MockRouter
) -> None:
    route = router.post(GOOGLE_TOKEN_URI)
    route.side_effect = [
        httpx.Response(503, text="backend error"),
        httpx.Response(200, json=GOOGLE_OK),
    ]
    token = await comm.oauth(GOOGLE).refresh("1//r")
    assert token.access_token == GOOGLE_OK["access_token"]
    assert route.call_count == 2


async def test_429_waits_retry_after_on_the_managers_clock(router: respx.MockRouter) -> None:
    clock = FakeClock()
    route = router.post(GOOGLE_TOKEN_URI)
    route.side_effect = [
        httpx.Response(429, headers={"Retry-After": "5"}, json={"error": "rate_limit_exceeded"}),
        httpx.Response(200, json=GOOGLE_OK),
    ]
    async with (
        clock.autojump(),
        CommManager(transport=httpx.MockTransport(router.async_handler), clock=clock) as comm,
    ):
        await comm.oauth(GOOGLE).refresh("1//r")
        assert clock.now() == pytest.approx(5.0)
    assert route.call_count == 2


async def test_429_past_the_last_attempt_is_a_rate_limit_error(
    comm: CommManager, router: respx.MockRouter
) -> None:
    router.post(GOOGLE_TOKEN_URI).respond(429, headers={"Retry-After": "0.001"})
    with pytest.raises(RateLimitError):
        await comm.oauth(GOOGLE).refresh("1//r")


async def test_malformed_json_is_a_provider_error(
    comm: CommManager, router: respx.MockRouter
) -> None:
    router.post(GOOGLE_TOKEN_URI).respond(200, text="<html>proxy login</html>")
    with pytest.raises(ProviderError) as info:
        await comm.oauth(GOOGLE).refresh("1//r")
    assert info.value.error_code == "malformed_response"


async def test_code_exchange_is_not_retried_after_a_500(
    comm: CommManager, router: respx.MockRouter
) -> None:
    route = router.post(GOOGLE_TOKEN_URI).respond(500)
    with pytest.raises(ProviderError):
        await comm.oauth(GOOGLE).exchange_code(
            "4/0Acode", state="s", expected_state="s", code_verifier="v" * 43
        )
    assert route.call_count == 1  # a code is single-use: a blind retry would be invalid_grant


async def test_state_mismatch_fails_before_any_request(
    comm: CommManager, router: respx.MockRouter
) -> None:
    route = router.post(GOOGLE_TOKEN_URI).respond(200, json=GOOGLE_OK)
    with pytest.raises(AuthenticationError) as info:
        await comm.oauth(GOOGLE).exchange_code(
            "4/0Acode", state="attacker", expected_state="mine", code_verifier="v" * 43
        )
    assert info.value.error_code == "state_mismatch"
    assert route.call_count == 0


# -- TokenManager on the pipeline ----------------------------------------------------------


async def test_100_concurrent_token_calls_make_one_request(
    comm: CommManager, router: respx.MockRouter
) -> None:
    async def slow(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.01)
        return httpx.Response(200, json=GOOGLE_OK)

    route = router.post(GOOGLE_TOKEN_URI).mock(side_effect=slow)
    tokens = TokenManager(RefreshGrant(comm.oauth(GOOGLE), "1//r"))
    results = await asyncio.gather(*(tokens.token() for _ in range(100)))
    assert set(results) == {GOOGLE_OK["access_token"]}
    assert route.call_count == 1


async def test_concurrent_callers_share_a_failed_refresh(
    comm: CommManager, router: respx.MockRouter
) -> None:
    async def slow(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.01)
        return httpx.Response(400, json=GOOGLE_INVALID_GRANT)

    route = router.post(GOOGLE_TOKEN_URI).mock(side_effect=slow)
    tokens = TokenManager(RefreshGrant(comm.oauth(GOOGLE), "1//r"))
    results = await asyncio.gather(*(tokens.token() for _ in range(50)), return_exceptions=True)
    assert all(isinstance(r, AuthenticationError) for r in results)
    assert route.call_count == 1


async def test_refreshes_ahead_of_expiry_on_the_injected_clock(
    comm: CommManager, router: respx.MockRouter
) -> None:
    clock = FakeClock()
    route = router.post(GOOGLE_TOKEN_URI)
    route.side_effect = [
        httpx.Response(200, json={**GOOGLE_OK, "access_token": "first", "expires_in": 600}),
        httpx.Response(200, json={**GOOGLE_OK, "access_token": "second", "expires_in": 600}),
    ]
    tokens = TokenManager(RefreshGrant(comm.oauth(GOOGLE), "1//r"), clock=clock, refresh_margin=60)
    assert await tokens.token() == "first"
    await clock.advance(530)  # 70 s left: still good
    assert await tokens.token() == "first"
    await clock.advance(15)  # 55 s left: inside the margin
    assert await tokens.token() == "second"
    assert route.call_count == 2


API = "https://api.example.com/send"


async def test_100_concurrent_401s_cause_one_refresh_and_one_retry_each(
    comm: CommManager, router: respx.MockRouter
) -> None:
    def api(request: httpx.Request) -> httpx.Response:
        if request.headers["authorization"] == "Bearer fresh":
            return httpx.Response(200, json={"id": "ok"})
        return httpx.Response(401, json={"error": {"code": 401, "status": "UNAUTHENTICATED"}})

    api_route = router.post(API).mock(side_effect=api)
    token_route = router.post(GOOGLE_TOKEN_URI).respond(
        200, json={**GOOGLE_OK, "access_token": "fresh"}
    )
    from xcomm.auth import Token

    tokens = TokenManager(
        RefreshGrant(comm.oauth(GOOGLE), "1//r"),
        token=Token(access_token="stale", expires_at=None),
    )
    hook = comm.webhook(API)
    hook.auth = tokens
    results = await asyncio.gather(*(hook.send({"n": i}) for i in range(100)))
    assert all(r.message_id == "ok" for r in results)
    assert token_route.call_count == 1
    assert api_route.call_count == 200


async def test_a_second_401_is_an_authentication_error(
    comm: CommManager, router: respx.MockRouter
) -> None:
    api_route = router.post(API).respond(401)
    token_route = router.post(GOOGLE_TOKEN_URI).respond(200, json=GOOGLE_OK)
    hook = comm.webhook(API)
    hook.auth = TokenManager(RefreshGrant(comm.oauth(GOOGLE), "1//r"))
    with pytest.raises(AuthenticationError):
        await hook.send({"x": 1})
    assert api_route.call_count == 2
    assert token_route.call_count == 2  # the first token, then one refresh after the 401


async def test_no_token_reaches_the_logs(
    comm: CommManager, router: respx.MockRouter, caplog: pytest.LogCaptureFixture
) -> None:
    router.post(GOOGLE_TOKEN_URI).respond(
        200, json={**GOOGLE_OK, "refresh_token": "1//ROTATED-SECRET"}
    )
    router.post(API).respond(200, json={"id": "ok"})
    caplog.set_level(logging.DEBUG, logger="xcomm")
    tokens = TokenManager(RefreshGrant(comm.oauth(GOOGLE), "1//REFRESH-SECRET"))
    hook = comm.webhook(API)
    hook.auth = tokens
    await hook.send({"x": 1})
    logged = caplog.text + repr(tokens) + repr(GOOGLE)
    assert caplog.records
    for secret in ("ya29.a0AfH6SMBx-ACCESS", "REFRESH-SECRET", "ROTATED-SECRET", "GOCSPX-secret"):
        assert secret not in logged


# -- service accounts ------------------------------------------------------------------------


def _b64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


async def test_service_account_jwt_is_signed_rs256_with_delegation(
    comm: CommManager, router: respx.MockRouter
) -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    key = ServiceAccountKey(
        client_email="sender@proj.iam.gserviceaccount.com", private_key=pem, private_key_id="kid1"
    )
    route = router.post(GOOGLE_TOKEN_URI).respond(
        200, json={"access_token": "ya29.c.SA", "expires_in": 3599, "token_type": "Bearer"}
    )
    tokens = TokenManager(
        ServiceAccountGrant(
            comm.oauth(), key, ["https://mail.google.com/"], subject="ada@example.com"
        )
    )
    assert await tokens.token() == "ya29.c.SA"
    sent = form(route.calls.last.request)
    assert sent["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"
    header_b64, claims_b64, signature_b64 = sent["assertion"].split(".")
    header = json.loads(_b64(header_b64))
    claims = json.loads(_b64(claims_b64))
    assert header == {"alg": "RS256", "typ": "JWT", "kid": "kid1"}
    assert claims["iss"] == "sender@proj.iam.gserviceaccount.com"
    assert claims["aud"] == GOOGLE_TOKEN_URI
    assert claims["scope"] == "https://mail.google.com/"
    assert claims["sub"] == "ada@example.com"
    assert claims["exp"] - claims["iat"] == 3600
    private.public_key().verify(  # raises InvalidSignature when wrong
        _b64(signature_b64),
        f"{header_b64}.{claims_b64}".encode(),
        padding.PKCS1v15(),
        hashes.SHA256(),
    )
    assert "PRIVATE KEY" not in repr(key)


# -- the loopback sign-in --------------------------------------------------------------------


async def test_loopback_flow_end_to_end(comm: CommManager, router: respx.MockRouter) -> None:
    token_route = router.post(GOOGLE_TOKEN_URI).respond(
        200, json={**GOOGLE_OK, "refresh_token": "1//new-refresh", "id_token": "eyJ.id.tok"}
    )
    urls: asyncio.Queue[str] = asyncio.Queue()
    flow = asyncio.create_task(
        run_loopback_flow(
            comm.oauth(GOOGLE), open_browser=False, timeout=10, on_url=urls.put_nowait
        )
    )
    url = await asyncio.wait_for(urls.get(), 5)
    params = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    assert url.startswith("https://accounts.google.com/o/oauth2/v2/auth?")
    assert params["code_challenge_method"] == "S256"
    assert params["access_type"] == "offline" and params["prompt"] == "consent"
    redirect = params["redirect_uri"]
    assert redirect.startswith("http://127.0.0.1:")
    async with httpx.AsyncClient() as browser:  # plays the browser, over real loopback TCP
        missing = await browser.get(redirect + "favicon.ico")
        page = await browser.get(redirect, params={"code": "4/0Acode", "state": params["state"]})
    assert missing.status_code == 404
    assert page.status_code == 200 and "Signed in" in page.text
    token = await asyncio.wait_for(flow, 5)
    assert token.refresh_token == "1//new-refresh"
    sent = form(token_route.calls.last.request)
    assert sent["code"] == "4/0Acode" and sent["redirect_uri"] == redirect
    assert sent["grant_type"] == "authorization_code"
    # the verifier sent is the one whose challenge went into the URL
    from xcomm.auth import code_challenge

    assert code_challenge(sent["code_verifier"]) == params["code_challenge"]


async def test_loopback_flow_reports_a_refusal(comm: CommManager, router: respx.MockRouter) -> None:
    urls: asyncio.Queue[str] = asyncio.Queue()
    flow = asyncio.create_task(
        run_loopback_flow(
            comm.oauth(GOOGLE), open_browser=False, timeout=10, on_url=urls.put_nowait
        )
    )
    url = await asyncio.wait_for(urls.get(), 5)
    redirect = parse_qs(urlsplit(url).query)["redirect_uri"][0]
    async with httpx.AsyncClient() as browser:
        await browser.get(redirect, params={"error": "access_denied"})
    with pytest.raises(AuthenticationError) as info:
        await asyncio.wait_for(flow, 5)
    assert info.value.error_code == "access_denied"


async def test_loopback_flow_with_a_forged_state_sends_nothing(
    comm: CommManager, router: respx.MockRouter
) -> None:
    route = router.post(GOOGLE_TOKEN_URI).respond(200, json=GOOGLE_OK)
    urls: asyncio.Queue[str] = asyncio.Queue()
    flow = asyncio.create_task(
        run_loopback_flow(
            comm.oauth(GOOGLE), open_browser=False, timeout=10, on_url=urls.put_nowait
        )
    )
    redirect = parse_qs(urlsplit(await urls.get()).query)["redirect_uri"][0]
    async with httpx.AsyncClient() as browser:
        await browser.get(redirect, params={"code": "c", "state": "forged"})
    with pytest.raises(AuthenticationError, match="state"):
        await asyncio.wait_for(flow, 5)
    assert route.call_count == 0


async def test_loopback_flow_times_out(comm: CommManager) -> None:
    with pytest.raises(AuthenticationError) as info:
        await run_loopback_flow(comm.oauth(GOOGLE), open_browser=False, timeout=0.05)
    assert info.value.error_code == "timeout"


def test_token_struct_round_trips_through_msgspec() -> None:
    from xcomm.auth import Token

    token = Token(access_token="a", refresh_token="r", expires_at=1.5)
    assert msgspec.json.decode(msgspec.json.encode(token), type=Token) == token


async def test_token_manager_persists_through_its_store(
    comm: CommManager, router: respx.MockRouter, tmp_path: Path
) -> None:
    from xcomm.auth import FileTokenStore

    route = router.post(GOOGLE_TOKEN_URI).respond(200, json=GOOGLE_OK)
    store = FileTokenStore(tmp_path / "tok.json", encryption_key=FileTokenStore.generate_key())
    first = TokenManager(RefreshGrant(comm.oauth(GOOGLE), "1//r"), store=store)
    assert await first.token() == GOOGLE_OK["access_token"]
    second = TokenManager(RefreshGrant(comm.oauth(GOOGLE), "1//r"), store=store)
    assert await second.token() == GOOGLE_OK["access_token"]
    assert route.call_count == 1  # the second process-to-be read the stored, still valid token
    stored = await store.load()
    assert stored is not None and stored.refresh_token == "1//r"
