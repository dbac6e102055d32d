"""Fixtures of the Gmail tests: a signed-in token file, a provider, and the rule that every
request made to Gmail conforms to its discovery document (checked when each test ends)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import respx
from gmail_discovery import validate

from xcomm import CommManager, GmailProvider


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    """An authorized-user file as `xcomm auth gmail` writes it, its access token still fresh."""
    path = tmp_path / "token.json"
    path.write_text(
        json.dumps(
            {
                "type": "authorized_user",
                "client_id": "123.apps.googleusercontent.com",
                "client_secret": "GOCSPX-secret",
                "refresh_token": "1//0refresh",
                "token": "ya29.stale",
                "expiry": "2999-01-01T00:00:00Z",
            }
        )
    )
    return path


@pytest.fixture
def gmail(comm: CommManager, token_file: Path) -> GmailProvider:
    return comm.gmail(token_file, sender="me@example.com")


@pytest.fixture(autouse=True)
def _gmail_requests_conform(router: respx.MockRouter) -> Iterator[None]:
    yield
    for call in router.calls:
        if call.request.url.host == "gmail.googleapis.com":
            validate(call.request)
