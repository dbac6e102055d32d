"""`xcomm search` against a real Dovecot (`conftest.dovecot`), with a provider config file.

The command runs in process through `xcomm._cli.main`; one run goes through `python -m xcomm`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest
from dovecot import Dovecot
from xcomm_cli import cli

pytestmark = pytest.mark.service("dovecot")

ROOT = Path(__file__).resolve().parents[2]
PASSWORD_ENV = "XCOMM_TEST_IMAP_PASSWORD"


def simple(subject: str, sender: str, day: str) -> bytes:
    return (
        f"From: {sender}\r\nTo: me@example.com\r\nSubject: {subject}\r\n"
        f"Date: {day} 12:00:00 +0000\r\nMessage-ID: <{abs(hash(subject))}@x>\r\n\r\nhello\r\n"
    ).encode()


def with_attachment(subject: str, sender: str, day: str) -> bytes:
    return (
        f"From: {sender}\r\nTo: me@example.com\r\nSubject: {subject}\r\n"
        f"Date: {day} 12:00:00 +0000\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/mixed; boundary="B"\r\n\r\n'
        "--B\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n"
        "--B\r\nContent-Type: application/pdf\r\n"
        'Content-Disposition: attachment; filename="invoice.pdf"\r\n'
        "Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n--B--\r\n"
    ).encode()


@pytest.fixture
def mailbox(dovecot: Dovecot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh user with four messages (one in Archive) and an xcomm.toml for it."""
    user = dovecot.new_user()
    dovecot.append(user, with_attachment("Invoice March", "Billing <billing@example.com>",
                                         "Tue, 05 Mar 2024"),
                   date=datetime(2024, 3, 5, 12, tzinfo=UTC))  # fmt: skip
    dovecot.append(user, simple("Lunch?", "ann@example.com", "Wed, 06 Mar 2024"), flags="\\Seen",
                   date=datetime(2024, 3, 6, 12, tzinfo=UTC))  # fmt: skip
    dovecot.append(user, simple("Invoice April", "billing@example.com", "Tue, 02 Apr 2024"),
                   flags="\\Seen", date=datetime(2024, 4, 2, 12, tzinfo=UTC))  # fmt: skip
    dovecot.append(user, simple("Old report", "ann@example.com", "Mon, 01 Jan 2024"),
                   folder="Archive", date=datetime(2024, 1, 1, 12, tzinfo=UTC))  # fmt: skip
    monkeypatch.setenv(PASSWORD_ENV, dovecot.password)
    path = tmp_path / "xcomm.toml"
    path.write_text(
        textwrap.dedent(f"""\
            [providers.inbox]
            kind = "imap"
            host = "127.0.0.1"
            port = {dovecot.port}
            use_tls = false
            username = "{user}"
            password_env = "{PASSWORD_ENV}"

            [providers.work]
            kind = "smtp"
            host = "127.0.0.1"
            """),
        encoding="utf-8",
    )
    return path


def search(config: Path, *args: str) -> tuple[int, str, str]:
    return cli("search", "--provider", "inbox", "--config", str(config), *args)


def subjects(out: str) -> list[str]:
    """The SUBJECT column of the table (its rows after the header and the rule)."""
    header, _, *rows = out.splitlines()
    start = header.index("SUBJECT")
    end = header.index("SIZE") - 2
    return [row[start:end].strip() for row in rows]


def test_a_query_prints_a_table_newest_first(
    mailbox: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "120")
    code, out, err = search(mailbox, "from:billing")
    assert code == 0, err
    header, rule, *rows = out.splitlines()
    assert header.split() == ["DATE", "FROM", "SUBJECT", "SIZE", "ATT"]
    assert set(rule) <= {" ", "-"}
    assert subjects(out) == ["Invoice April", "Invoice March"]
    april, march = rows
    assert april.split()[:3] == ["2024-04-02", "12:00", "billing@example.com"]
    assert march.split()[-1] == "1"  # one attachment
    assert "Billing" in march or "billing@example.com" in march


def test_negation_flags_and_or(mailbox: Path) -> None:
    code, out, err = search(mailbox, "from:billing is:unread")
    assert code == 0, err
    assert subjects(out) == ["Invoice March"]
    code, out, err = search(mailbox, "(subject:lunch OR has:attachment) NOT is:unread")
    assert code == 0, err
    assert subjects(out) == ["Lunch?"]
    code, out, err = search(mailbox, "--", "-from:billing")
    assert code == 0, err
    assert subjects(out) == ["Lunch?"]


def test_limit_folder_and_nothing_found(mailbox: Path) -> None:
    code, out, _ = search(mailbox, "--limit", "1")
    assert code == 0 and subjects(out) == ["Invoice April"]
    code, out, _ = search(mailbox, "--folder", "Archive", "from:ann")
    assert code == 0 and subjects(out) == ["Old report"]
    code, out, err = search(mailbox, "subject:nothing-like-this")
    assert (code, out) == (0, "") and "no messages match" in err


def test_json(mailbox: Path) -> None:
    code, out, err = search(mailbox, "--json", "since:2024-03-01 before:2024-04-01")
    assert code == 0, err
    found = json.loads(out)
    assert [m["subject"] for m in found] == ["Lunch?", "Invoice March"]
    assert found[1]["from"] == "billing@example.com" and found[1]["attachments"] == 1
    assert found[0]["date"] == "2024-03-06T12:00:00Z" and found[0]["size"] > 0


def test_the_table_fits_a_narrow_terminal(
    mailbox: Path, dovecot: Dovecot, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "60")
    code, out, err = search(mailbox, "from:billing")
    assert code == 0, err
    assert all(len(line) <= 60 for line in out.splitlines())
    assert "…" in out


def test_explain_prints_the_plan_without_searching(mailbox: Path) -> None:
    text = mailbox.read_text(encoding="utf-8")
    mailbox.write_text(text.replace("port = ", "port = 1"), encoding="utf-8")  # nothing listens
    code, out, err = search(mailbox, "--explain", "from:billing has:attachment")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "query: from:billing has:attachment"
    assert lines[1] == "imap plan: 'FROM \"billing\"'"
    assert any(line.split()[:3] == ["has", "attachment", "client"] for line in lines)
    assert "sort: client; limit: client" in out


def test_a_bad_query_exits_2_and_points_at_the_column(mailbox: Path) -> None:
    code, out, err = search(mailbox, "from:billing frm:ann")
    assert (code, out) == (2, "")
    assert err.splitlines() == [
        "xcomm: error: unknown field 'frm' at column 14; did you mean 'from'?",
        "  from:billing frm:ann",
        "               ^",
    ]


def test_a_provider_that_cannot_search(mailbox: Path) -> None:
    code, out, err = cli("search", "--provider", "work", "--config", str(mailbox), "x")
    assert (code, out) == (2, "")
    assert "provider 'work' is smtp, which cannot search; use one that can: inbox (imap)" in err


def test_a_refused_login_exits_1(
    dovecot_for_refusals: Dovecot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, "wrong")
    path = tmp_path / "xcomm.toml"
    path.write_text(
        f'[providers.inbox]\nkind = "imap"\nhost = "127.0.0.1"\n'
        f"port = {dovecot_for_refusals.port}\nuse_tls = false\n"
        f'username = "{dovecot_for_refusals.new_user()}"\npassword_env = "{PASSWORD_ENV}"\n',
        encoding="utf-8",
    )
    code, out, err = search(path, "from:x")
    assert (code, out) == (1, "")
    assert err.startswith("xcomm: error: ") and "wrong" not in err and "Traceback" not in err


def test_python_dash_m_xcomm_search(mailbox: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "XCOMM_CONFIG": str(mailbox), "COLUMNS": "100"}
    proc = subprocess.run(
        [sys.executable, "-m", "xcomm", "search", "--provider", "inbox", "subject:invoice"],
        capture_output=True, text=True, env=env, timeout=30, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert subjects(proc.stdout) == ["Invoice April", "Invoice March"]
