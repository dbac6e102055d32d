"""`xcomm send` against a real SMTP server (aiosmtpd), with a provider config file.

The command runs in process through `xcomm._cli.main`; one run goes through `python -m xcomm`
with the body on standard input.
"""

from __future__ import annotations

import email
import email.policy
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from xcomm_cli import cli

SMTPServer = Any  # conftest.SMTPServer, as the `smtpd` fixture returns it
ROOT = Path(__file__).resolve().parents[2]
PASSWORD_ENV = "XCOMM_TEST_SMTP_PASSWORD"


def config(folder: Path, server: SMTPServer, extra: str = "") -> Path:
    """An xcomm.toml with an SMTP provider `work` for `server` and an IMAP one `inbox`."""
    path = folder / "xcomm.toml"
    path.write_text(
        textwrap.dedent(f"""\
            [providers.work]
            kind = "smtp"
            host = "{server.host}"
            port = {server.port}
            sender = "Me <me@example.com>"
            {extra}

            [providers.inbox]
            kind = "imap"
            host = "127.0.0.1"
            username = "me@example.com"
            """),
        encoding="utf-8",
    )
    return path


def received(server: SMTPServer) -> EmailMessage:
    (delivery,) = server.recorder.messages
    parsed = email.message_from_bytes(delivery.content, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


@pytest.fixture
def server(smtpd: Callable[[str], SMTPServer]) -> SMTPServer:
    return smtpd("plain")


def test_send_with_an_attachment_cc_bcc_and_a_header(server: SMTPServer, tmp_path: Path) -> None:
    path = config(tmp_path, server)
    report = tmp_path / "report.pdf"
    report.write_bytes(b"%PDF-1.4 tiny\n")
    code, out, err = cli(
        "send", "--provider", "work", "--config", str(path),
        "--to", "ada@example.com, Bob <bob@example.org>", "--to", '"Lovelace, A" <al@example.net>',
        "--cc", "cy@example.net", "--bcc", "hidden@example.com",
        "--subject", "Quarterly report", "--body", "See attached.",
        "--attach", str(report), "--header", "X-Priority: 1",
    )  # fmt: skip
    assert code == 0, err
    (delivery,) = server.recorder.messages
    assert sorted(delivery.rcpt_tos) == [
        "ada@example.com", "al@example.net", "bob@example.org", "cy@example.net",
        "hidden@example.com",
    ]  # fmt: skip
    message = received(server)
    assert message["subject"] == "Quarterly report"
    assert message["from"] == "Me <me@example.com>"
    assert message["x-priority"] == "1" and message["bcc"] is None
    assert '"Lovelace, A" <al@example.net>' in message["to"]
    (attachment,) = message.iter_attachments()
    assert attachment.get_filename() == "report.pdf"
    assert attachment.get_content() == b"%PDF-1.4 tiny\n"
    body = message.get_body(("plain",))
    assert body is not None and body.get_content().strip() == "See attached."
    lines = out.splitlines()
    assert lines[0] == f"sent: {message['message-id']}"
    assert lines[1].startswith("accepted: ") and "hidden@example.com" in lines[1]


def test_json_output_and_the_from_option(server: SMTPServer, tmp_path: Path) -> None:
    path = config(tmp_path, server)
    code, out, err = cli("send", "--provider", "work", "--config", str(path), "--json",
                         "--to", "ada@example.com", "--from", "Other <other@example.com>",
                         "--subject", "Hi", "--body", "Hello")  # fmt: skip
    assert code == 0, err
    result = json.loads(out)
    assert result["provider"] == "smtp" and result["accepted"] == ["ada@example.com"]
    assert result["message_id"] == received(server)["message-id"]
    assert received(server)["from"] == "Other <other@example.com>"


def test_body_and_html_from_files(server: SMTPServer, tmp_path: Path) -> None:
    path = config(tmp_path, server)
    (tmp_path / "body.txt").write_text("Plain café\n", encoding="utf-8")
    (tmp_path / "body.html").write_text("<p>Rich café</p>", encoding="utf-8")
    code, _, err = cli("send", "--provider", "work", "--config", str(path),
                       "--to", "ada@example.com", "--subject", "Files",
                       "--body-file", str(tmp_path / "body.txt"),
                       "--html-file", str(tmp_path / "body.html"))  # fmt: skip
    assert code == 0, err
    message = received(server)
    plain, html = message.get_body(("plain",)), message.get_body(("html",))
    assert plain is not None and plain.get_content().splitlines() == ["Plain café"]
    assert html is not None and "<p>Rich café</p>" in html.get_content()


def test_python_dash_m_xcomm_send_reads_the_body_from_stdin(
    server: SMTPServer, tmp_path: Path
) -> None:
    path = config(tmp_path, server)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "XCOMM_CONFIG": str(path)}
    proc = subprocess.run(
        [sys.executable, "-m", "xcomm", "send", "--provider", "work", "--to", "ada@example.com",
         "--subject", "Piped", "--body-file", "-"],
        input="from a pipe\n", capture_output=True, text=True, env=env, timeout=30, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    body = received(server).get_body(("plain",))
    assert body is not None and body.get_content().splitlines() == ["from a pipe"]
    assert "accepted: ada@example.com" in proc.stdout


# -- bad input: exit 2, nothing sent ---------------------------------------------------------


def bad_input(server: SMTPServer, *args: str) -> str:
    """Run `xcomm send ARGS`; it must exit 2 without talking to the server; its stderr."""
    code, out, err = cli("send", *args)
    assert (code, out) == (2, ""), err
    assert server.recorder.transactions == 0 and server.recorder.peers == []
    assert "Traceback" not in err
    return err


def test_a_missing_attachment(server: SMTPServer, tmp_path: Path) -> None:
    path = config(tmp_path, server)
    err = bad_input(server, "--provider", "work", "--config", str(path), "--to", "a@example.com",
                    "--attach", str(tmp_path / "nope.pdf"))  # fmt: skip
    assert err.startswith("xcomm: error: ") and "nope.pdf" in err


def test_an_attachment_over_the_providers_limit(server: SMTPServer, tmp_path: Path) -> None:
    path = config(tmp_path, server, "max_message_size = 10000")
    big = tmp_path / "big.bin"
    big.write_bytes(b"x" * 20_000)
    err = bad_input(server, "--provider", "work", "--config", str(path), "--to", "a@example.com",
                    "--attach", str(big))  # fmt: skip
    assert "20000 bytes, more than the provider's max_message_size of 10000 bytes" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--to", "not an address"], "xcomm: error: "),
        (["--subject", "no recipient"], "no recipient: give --to, --cc or --bcc"),
        (["--to", "a@example.com", "--header", "X-A: 1\r\nBcc: evil@example.com"], "X-A"),
        (["--to", "a@example.com", "--header", "X-A: 1\r\n"], "X-A"),
        (["--to", "a@example.com", "--header", "no colon"], "--header takes 'Name: value'"),
        (["--to", "a@example.com", "--header", "Subject: twice"], "Subject"),
        (["--to", "a@example.com", "--body", "x", "--body-file", "f"], "not both"),
        (["--to", "a@example.com", "--body-file", "/no/such/file"], "--body-file /no/such/file"),
    ],
)
def test_bad_message_input(
    server: SMTPServer, tmp_path: Path, args: list[str], message: str
) -> None:
    path = config(tmp_path, server)
    err = bad_input(server, "--provider", "work", "--config", str(path), *args)
    assert message in err


def test_an_unknown_provider_lists_the_names(server: SMTPServer, tmp_path: Path) -> None:
    path = config(tmp_path, server)
    err = bad_input(server, "--provider", "wrok", "--config", str(path), "--to", "a@example.com")
    assert f"no provider 'wrok' in {path}; it has: work (smtp), inbox (imap)" in err


def test_a_provider_that_cannot_send(server: SMTPServer, tmp_path: Path) -> None:
    path = config(tmp_path, server)
    err = bad_input(server, "--provider", "inbox", "--config", str(path), "--to", "a@example.com")
    assert "provider 'inbox' is imap, which cannot send; use one that can: work (smtp)" in err


def test_config_file_problems_have_file_and_line(server: SMTPServer, tmp_path: Path) -> None:
    path = config(tmp_path, server, 'password = "hunter2"\nusername = "me"\nprot = 25')
    err = bad_input(server, "--provider", "work", "--config", str(path), "--to", "a@example.com")
    lines = err.splitlines()
    assert lines[0].startswith(f"{path}:6: [providers.work] password is not allowed: ")
    assert 'password_env = "SMTP_PASSWORD"' in lines[0] and "hunter2" not in err
    assert lines[1] == f"{path}:8: [providers.work] unknown key 'prot' (did you mean 'port'?)"
    assert lines[2] == "xcomm: error: 2 problems in the config file; nothing was done"


def test_an_unset_password_variable(
    server: SMTPServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    path = config(tmp_path, server, f'username = "me"\npassword_env = "{PASSWORD_ENV}"')
    err = bad_input(server, "--provider", "work", "--config", str(path), "--to", "a@example.com")
    assert err.splitlines()[0] == (
        f"{path}:7: [providers.work] password_env: the environment variable {PASSWORD_ENV} "
        "is not set"
    )


def test_a_missing_config_file(
    server: SMTPServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("XCOMM_CONFIG", raising=False)
    err = bad_input(server, "--provider", "work", "--to", "a@example.com")
    assert "xcomm.toml: cannot read the config file: no such file" in err
    assert "--config FILE" in err


# -- the provider says no: exit 1, the xcomm error, no traceback ------------------------------


def test_every_recipient_refused_exits_1(server: SMTPServer, tmp_path: Path) -> None:
    path = config(tmp_path, server)
    code, out, err = cli("send", "--provider", "work", "--config", str(path),
                         "--to", "nosuch@example.com", "--subject", "x")  # fmt: skip
    assert (code, out) == (1, "")
    assert err.splitlines() == [
        "xcomm: error: smtp: all 1 recipients were refused status=550",
        "rejected: nosuch@example.com: 550 5.1.1 no such user",
    ]


def test_some_recipients_refused_exits_1_and_lists_them(server: SMTPServer, tmp_path: Path) -> None:
    path = config(tmp_path, server)
    code, out, err = cli("send", "--provider", "work", "--config", str(path), "--subject", "x",
                         "--to", "ada@example.com,nosuch@example.com")  # fmt: skip
    assert code == 1, err
    assert "accepted: ada@example.com" in out
    assert "rejected: nosuch@example.com: 550 " in out
    assert server.recorder.messages[0].rcpt_tos == ["ada@example.com"]


def test_a_refused_login_exits_1(
    smtpd: Callable[[str], SMTPServer], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = smtpd("plain-auth")
    monkeypatch.setenv(PASSWORD_ENV, "wrong")
    path = config(tmp_path, server, f'username = "{server.user}"\npassword_env = "{PASSWORD_ENV}"'
                  "\nallow_plaintext_auth = true")  # fmt: skip
    code, out, err = cli("send", "--provider", "work", "--config", str(path),
                         "--to", "ada@example.com", "--subject", "x")  # fmt: skip
    assert (code, out) == (1, "")
    assert err.startswith("xcomm: error: ") and "535" in err and "wrong" not in err
    assert server.recorder.messages == []

    monkeypatch.setenv(PASSWORD_ENV, server.password)
    code, out, err = cli("send", "--provider", "work", "--config", str(path),
                         "--to", "ada@example.com", "--subject", "x")  # fmt: skip
    assert code == 0, err
    assert server.recorder.messages[0].login == server.user.encode()


def test_no_sender_anywhere(server: SMTPServer, tmp_path: Path) -> None:
    path = config(tmp_path, server)
    path.write_text(path.read_text().replace('sender = "Me <me@example.com>"\n', ""))
    err = bad_input(server, "--provider", "work", "--config", str(path), "--to", "a@example.com")
    assert 'no sender: give --from, or set sender = "..." in [providers.work]' in err
