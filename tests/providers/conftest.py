"""Fixtures of the Gmail and Outlook tests: signed-in providers, and the rule that every
request made to Gmail conforms to its discovery document, and every request made to Graph
to its published shapes (checked when each test ends)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import respx
from gmail_discovery import validate
from graph_schema import validate as validate_graph
from graph_shapes import TOKEN_OK, TOKEN_URL, app_only

from xcomm import CommManager, GmailProvider, GraphProvider


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


@pytest.fixture(autouse=True)
def _graph_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRAPH_CLIENT_SECRET", "Wq8Q~client.secret.value")


@pytest.fixture
def token(router: respx.MockRouter) -> respx.Route:
    """The Microsoft identity platform's token endpoint, answering client credentials."""
    return router.post(TOKEN_URL).respond(200, json=TOKEN_OK)


@pytest.fixture
def outlook(comm: CommManager, token: respx.Route) -> GraphProvider:
    return app_only(comm)


@pytest.fixture(autouse=True)
def _graph_requests_conform(router: respx.MockRouter) -> Iterator[None]:
    yield
    for call in router.calls:
        if call.request.url.host in ("graph.microsoft.com", "outlook.office.com"):
            validate_graph(call.request)
