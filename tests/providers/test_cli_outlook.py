"""`xcomm search` through an Outlook provider of the config file, against respx.

The command builds its own manager, so respx patches the httpx transport it picks
(`XCOMM_HTTP_TRANSPORT=httpx`); every Graph request is checked against the published shapes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import respx
from graph_schema import validate_all
from graph_shapes import BASE, CLIENT_ID, TENANT, TOKEN_OK, TOKEN_URL, attachment, message, page
from xcomm_cli import cli


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "xcomm.toml"
    path.write_text(
        f'[providers.o365]\nkind = "outlook"\ntenant_id = "{TENANT}"\n'
        f'client_id = "{CLIENT_ID}"\nclient_secret_env = "GRAPH_CLIENT_SECRET"\n'
        'mailbox = "reports@contoso.com"\n',
        encoding="utf-8",
    )
    monkeypatch.setenv("XCOMM_HTTP_TRANSPORT", "httpx")
    monkeypatch.setenv("COLUMNS", "100")
    return path


@pytest.fixture
def graph_api() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as router:
        router.post(TOKEN_URL).respond(200, json=TOKEN_OK)
        yield router
        graph = [c.request for c in router.calls if c.request.url.host == "graph.microsoft.com"]
        validate_all(graph)


def test_search_lists_outlook_messages(config: Path, graph_api: respx.MockRouter) -> None:
    listed = graph_api.get(f"{BASE}/messages").respond(
        200,
        json=page(
            message("m2", sender="bob@example.com", subject="Invoice 2",
                    received="2025-11-04T10:00:00Z",
                    attachments=[attachment("a1", "i2.pdf"), attachment("a2", "x.pdf")]),
            message("m1", sender="bob@example.com", subject="Invoice 1",
                    received="2025-11-03T10:00:00Z"),
        ),
    )  # fmt: skip
    code, out, err = cli("search", "--provider", "o365", "--config", str(config),
                         "--limit", "5", "from:bob@example.com")  # fmt: skip
    assert code == 0, err
    params = listed.calls.last.request.url.params
    assert params["$filter"] == (
        "receivedDateTime ge 1900-01-01T00:00:00Z "
        "and from/emailAddress/address eq 'bob@example.com'"
    )
    assert params["$orderby"] == "receivedDateTime desc" and params["$top"] == "5"
    header, _, first, second = out.splitlines()
    assert header.split() == ["DATE", "FROM", "SUBJECT", "SIZE", "ATT"]
    assert "Invoice 2" in first and first.split()[-1] == "2"  # newest first
    assert "Invoice 1" in second


def test_search_json_from_outlook(config: Path, graph_api: respx.MockRouter) -> None:
    graph_api.get(f"{BASE}/messages").respond(
        200, json=page(message("m1", sender="bob@example.com", subject="Hi"))
    )
    code, out, err = cli("search", "--provider", "o365", "--config", str(config), "--json")
    assert code == 0, err
    (found,) = json.loads(out)
    assert found["from"] == "bob@example.com" and found["subject"] == "Hi"
    assert found["size"] == 14325 and found["attachments"] == 0
