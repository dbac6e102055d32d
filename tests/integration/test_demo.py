"""`xcomm demo` end to end: the messages it sends land in the Maildir, intact."""

from __future__ import annotations

import email
import email.policy
import mailbox
import subprocess
import sys
from email.message import EmailMessage as MIMEMessage
from pathlib import Path

import pytest

from xcomm._cli import main
from xcomm._demo import DEFAULT_BURST, REPORT_CSV, UTF8_BODY, UTF8_SUBJECT

ROOT = Path(__file__).resolve().parents[2]


def read_maildir(path: Path) -> list[MIMEMessage]:
    box = mailbox.Maildir(path, factory=None, create=False)
    out = []
    for key in box.iterkeys():
        msg = email.message_from_bytes(box.get_bytes(key), policy=email.policy.default)
        assert isinstance(msg, MIMEMessage)
        out.append(msg)
    return out


def by_subject(messages: list[MIMEMessage]) -> dict[str, MIMEMessage]:
    return {str(m["subject"]): m for m in messages}


def test_demo_delivers_every_message_into_the_maildir(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo", "--maildir", str(tmp_path)]) == 0

    messages = read_maildir(tmp_path)
    assert len(messages) == 3 + DEFAULT_BURST
    subjects = by_subject(messages)

    plain = subjects["Hello from xcomm"]
    assert plain.get_content_type() == "text/plain"
    assert "pooled SMTP provider" in plain.get_content()
    assert plain["to"].addresses[0].display_name == "Ada Lovelace"
    assert plain["from"].addresses[0].addr_spec == "demo@example.com"

    report = subjects["Your weekly report"]
    assert report.is_multipart()
    assert [a.addr_spec for a in report["cc"].addresses] == ["carol@example.com"]
    text = report.get_body(preferencelist=("plain",))
    html = report.get_body(preferencelist=("html",))
    assert text is not None and "1402 delivered" in text.get_content()
    assert html is not None and "<table" in html.get_content()
    attachments = list(report.iter_attachments())
    assert [a.get_filename() for a in attachments] == ["report.csv"]
    assert attachments[0].get_content_type() == "text/csv"
    assert attachments[0].get_payload(decode=True) == REPORT_CSV

    utf8 = subjects[UTF8_SUBJECT]
    assert utf8.get_content().replace("\r\n", "\n") == UTF8_BODY
    assert utf8["to"].addresses[0].display_name == "Jürgen Müller"
    assert utf8["from"].addresses[0].display_name == "Kölner Büro"

    burst = {s for s in subjects if s.startswith("Burst message ")}
    assert burst == {f"Burst message {n}" for n in range(1, DEFAULT_BURST + 1)}

    out = capsys.readouterr().out
    for expected in (
        "Sent messages",
        UTF8_SUBJECT,
        f"{DEFAULT_BURST}/{DEFAULT_BURST} accepted",
        f"{3 + DEFAULT_BURST} new message(s)",
        "Metrics",
        "success rate",
        "100.0%",
        "p99 ms",
        "Connection pool",
    ):
        assert expected in out, f"{expected!r} missing from the demo output:\n{out}"


def test_demo_runs_again_into_the_same_maildir(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    maildir = tmp_path / "box"
    assert main(["demo", "--maildir", str(maildir), "--burst", "5"]) == 0
    assert main(["demo", "--maildir", str(maildir), "--burst", "5", "--pool-size", "2"]) == 0
    assert len(read_maildir(maildir)) == 2 * (3 + 5)
    out = capsys.readouterr().out
    assert "8 new message(s) (16 in total)" in out
    assert "through a pool of 2 connections" in out


def test_python_m_xcomm_demo_exits_cleanly(tmp_path: Path) -> None:
    """The real command: exit 0, no warning, no traceback, nothing on stderr."""
    proc = subprocess.run(
        [sys.executable, "-W", "error", "-m", "xcomm", "demo", "--maildir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=50,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert "Metrics" in proc.stdout
    assert len(read_maildir(tmp_path)) == 3 + DEFAULT_BURST


def test_cli_without_a_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "demo" in capsys.readouterr().out


def test_cli_rejects_a_bad_burst(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["demo", "--burst", "0"])
    assert info.value.code == 2
    assert "at least 1" in capsys.readouterr().err


def test_demo_reports_an_unusable_maildir(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    assert main(["demo", "--maildir", str(not_a_dir)]) == 1
    assert "cannot use" in capsys.readouterr().err
