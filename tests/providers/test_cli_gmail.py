"""`xcomm send` and `xcomm search` through a Gmail provider of the config file, against respx.

The command builds its own manager, so respx patches the httpx transport it picks
(`XCOMM_HTTP_TRANSPORT=httpx`). Response shapes are the Gmail API reference's, and every
request is validated against the Gmail discovery document.
"""

from __future__ import annotations

import base64
import email
import email.policy
import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import respx
from gmail_discovery import validate_all
from gmail_shapes import LABELS, LIST, SEND, labels, listing, message, route_messages
from xcomm_cli import cli


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A token file that needs no refresh, and an xcomm.toml naming it (relative path)."""
    (tmp_path / "token.json").write_text(
        json.dumps(
            {
                "type": "authorized_user",
                "client_id": "123.apps.googleusercontent.com",
                "client_secret": "GOCSPX-secret",
                "refresh_token": "1//0refresh",
                "token": "ya29.current",
                "expiry": "2999-01-01T00:00:00Z",
            }
        ),
        encoding="utf-8",
    )
    path = tmp_path / "xcomm.toml"
    path.write_text(
        '[providers.gmail]\nkind = "gmail"\ncredentials_path = "token.json"\n'
        'sender = "Me <me@example.com>"\n',
        encoding="utf-8",
    )
    monkeypatch.setenv("XCOMM_HTTP_TRANSPORT", "httpx")
    monkeypatch.setenv("COLUMNS", "100")
    return path


@pytest.fixture
def gmail_api() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as router:
        yield router
        if router.calls:  # (respx forgets them when the block ends)
            validate_all([call.request for call in router.calls])


def test_search_lists_gmail_messages_as_a_table(config: Path, gmail_api: respx.MockRouter) -> None:
    listed = gmail_api.get(LIST).respond(200, json=listing("m1", "m2"))
    gmail_api.get(LABELS).respond(200, json=labels())
    route_messages(
        gmail_api,
        message("m1", sender="Bob <bob@example.com>", subject="Invoice 2",
                internal=1_762_250_400_000),
        message("m2", sender="Bob <bob@example.com>", subject="Invoice 1",
                internal=1_762_164_000_000),
    )  # fmt: skip
    code, out, err = cli("search", "--provider", "gmail", "--config", str(config),
                         "--limit", "5", "from:bob has:attachment")  # fmt: skip
    assert code == 0, err
    params = parse_qs(urlsplit(str(listed.calls.last.request.url)).query)
    assert params["q"] == ["from:bob has:attachment"] and params["maxResults"] == ["5"]
    header, _, first, second = out.splitlines()
    assert header.split() == ["DATE", "FROM", "SUBJECT", "SIZE", "ATT"]
    assert "bob@example.com" in first and "Invoice 2" in first  # newest first
    assert first.split()[-2:] == ["9.6K", "2"]  # the listing has the structure: 2 files
    assert "Invoice 1" in second


def test_search_json_from_gmail(config: Path, gmail_api: respx.MockRouter) -> None:
    gmail_api.get(LIST).respond(200, json=listing("m1"))
    gmail_api.get(LABELS).respond(200, json=labels())
    route_messages(gmail_api, message("m1", sender="bob@example.com", subject="Hi",
                                      date="Tue, 14 Nov 2023 22:13:20 +0000"))  # fmt: skip
    code, out, err = cli("search", "--provider", "gmail", "--config", str(config), "--json")
    assert code == 0, err
    assert json.loads(out) == [{"date": "2023-11-14T22:13:20Z", "from": "bob@example.com",
                                "subject": "Hi", "size": 9876, "attachments": 2}]  # fmt: skip


def test_send_through_gmail(config: Path, gmail_api: respx.MockRouter, tmp_path: Path) -> None:
    route = gmail_api.post(SEND).respond(
        200, json={"id": "18c2f0a9b1d2e3f4", "threadId": "18c2f0a9b1d2e3f4", "labelIds": ["SENT"]}
    )
    (tmp_path / "notes.txt").write_text("notes", encoding="utf-8")
    code, out, err = cli("send", "--provider", "gmail", "--config", str(config),
                         "--to", "you@example.org", "--subject", "Hello", "--body", "Hi",
                         "--attach", str(tmp_path / "notes.txt"))  # fmt: skip
    assert code == 0, err
    assert out.splitlines() == ["sent: 18c2f0a9b1d2e3f4", "accepted: you@example.org"]
    raw = base64.urlsafe_b64decode(json.loads(route.calls.last.request.content)["raw"])
    sent = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(sent, email.message.EmailMessage)
    assert sent["from"] == "Me <me@example.com>" and sent["subject"] == "Hello"
    assert [a.get_filename() for a in sent.iter_attachments()] == ["notes.txt"]


def test_a_gmail_refusal_exits_1_with_its_message(
    config: Path, gmail_api: respx.MockRouter
) -> None:
    message = "Request had insufficient authentication scopes."
    gmail_api.post(SEND).respond(403, json={"error": {
        "code": 403, "message": message, "status": "PERMISSION_DENIED",
        "errors": [{"message": message, "domain": "global", "reason": "insufficientPermissions"}],
    }})  # fmt: skip
    code, out, err = cli("send", "--provider", "gmail", "--config", str(config),
                         "--to", "you@example.org", "--subject", "Hello")  # fmt: skip
    assert (code, out) == (1, "")
    assert err.startswith("xcomm: error: ") and "insufficient" in err
    assert "Traceback" not in err and "ya29" not in err


def test_a_missing_token_file_is_bad_input(config: Path, tmp_path: Path) -> None:
    (tmp_path / "token.json").unlink()
    code, out, err = cli("send", "--provider", "gmail", "--config", str(config),
                         "--to", "you@example.org")  # fmt: skip
    assert (code, out) == (2, "")
    assert err.startswith("xcomm: error: ") and "token.json" in err
