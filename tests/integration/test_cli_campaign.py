"""`xcomm campaign run|status|resume` and `xcomm worker` against a real SMTP server.

The commands run in process through `xcomm._cli.main` (one run goes through
`python -m xcomm`), with their own outbox file per test.
"""

from __future__ import annotations

import email
import email.policy
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from xcomm_cli import cli

SMTPServer = Any  # conftest.SMTPServer, as the `smtpd` fixture returns it
ROOT = Path(__file__).resolve().parents[2]
PEOPLE = [("ada@example.com", "Ada", "London"), ("bob@example.org", "Bob", "Berlin"),
          ("cy@example.net", "Cy", "Köln")]  # fmt: skip


def campaign(
    folder: Path,
    server: SMTPServer,
    people: list[tuple[str, str, str]] = PEOPLE,
    *,
    extra: str = "",
    provider: str = "",
    concurrency: int = 4,
) -> Path:
    """Write people.csv and campaign.toml (outbox next to them) into `folder`."""
    lines = ["email,first_name,city", *(",".join(p) for p in people)]
    (folder / "people.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    path = folder / "campaign.toml"
    path.write_text(
        textwrap.dedent(f"""\
            [campaign]
            id = "test-campaign"
            recipients = "people.csv"
            max_concurrent = {concurrency}
            {extra}

            [template]
            subject = "Hi {{{{ first_name }}}}"
            text = "Hello {{{{ first_name }}}} from {{{{ city }}}}!"

            [provider]
            kind = "smtp"
            host = "{server.host}"
            port = {server.port}
            sender = "News <news@example.com>"
            {provider}

            [outbox]
            url = "outbox.sqlite3"
            """),
        encoding="utf-8",
    )
    return path


def delivered(server: SMTPServer) -> dict[str, str]:
    """Recipient -> subject of every message the server received."""
    found = {}
    for message in server.recorder.messages:
        parsed = email.message_from_bytes(message.content, policy=email.policy.default)
        for rcpt in message.rcpt_tos:
            found[rcpt] = str(parsed["subject"])
    return found


def test_run_sends_every_recipient_then_nothing_twice(
    smtpd: Callable[[str], SMTPServer], tmp_path: Path
) -> None:
    server = smtpd("plain")
    path = campaign(tmp_path, server)
    code, out, err = cli("campaign", "run", str(path))
    assert code == 0, err
    assert delivered(server) == {
        "ada@example.com": "Hi Ada",
        "bob@example.org": "Hi Bob",
        "cy@example.net": "Hi Cy",
    }
    assert "3 recipients checked" in err and "3/3 100%" in err  # the progress bar, on stderr
    header, rule, row = out.splitlines()[1:4]
    assert header.split()[:3] == ["sent", "failed", "suppressed"] and set(rule) <= {" ", "-"}
    assert row.split()[:5] == ["3", "0", "0", "0", "0"]

    server.recorder.reset()
    code, out, err = cli("campaign", "run", str(path))
    assert code == 0, err
    assert server.recorder.messages == []
    assert out.splitlines()[3].split()[:5] == ["0", "0", "0", "3", "0"]  # all skipped


def test_check_sends_nothing_and_records_nothing(
    smtpd: Callable[[str], SMTPServer], tmp_path: Path
) -> None:
    server = smtpd("plain")
    path = campaign(tmp_path, server)
    code, out, err = cli("campaign", "run", str(path), "--check")
    assert (code, out) == (0, "")
    assert "3 recipients checked" in err and "nothing was sent" in err
    assert server.recorder.messages == []
    code, _, err = cli(
        "campaign", "status", "test-campaign", "--outbox", str(tmp_path / "outbox.sqlite3")
    )
    assert code == 3 and "no campaign 'test-campaign'" in err


def test_failed_recipients_exit_1_and_status_counts_them(
    smtpd: Callable[[str], SMTPServer], tmp_path: Path
) -> None:
    server = smtpd("plain")
    people = [*PEOPLE, ("nosuch@example.com", "No", "One")]  # the server refuses it: 550
    path = campaign(tmp_path, server, people, extra="retry_failed = false")
    code, out, err = cli("campaign", "run", str(path))
    assert code == 1
    assert len(delivered(server)) == 3
    assert out.splitlines()[3].split()[:2] == ["3", "1"]
    assert "failed: nosuch@example.com:" in out
    assert "1 recipients failed" in err

    outbox = str(tmp_path / "outbox.sqlite3")
    code, out, err = cli("campaign", "status", "test-campaign", "--outbox", outbox)
    assert code == 0, err
    counts = dict(line.split() for line in out.splitlines() if line.split()[:1] in (
        ["pending"], ["sent"], ["failed"], ["total"]))  # fmt: skip
    assert counts == {"pending": "0", "sent": "3", "failed": "1", "total": "4"}
    assert "'Hi {{ first_name }}'" in out  # the stored definition's subject
    assert f"port={server.port}" in out


def test_status_of_an_unknown_campaign_exits_3(tmp_path: Path) -> None:
    code, out, err = cli("campaign", "status", "nope", "--outbox", str(tmp_path / "none.sqlite3"))
    assert (code, out) == (3, "") and "no campaign 'nope'" in err
    assert not (tmp_path / "none.sqlite3").exists()  # looking does not create an outbox


#: (what to replace in campaign.toml or people.csv, with what), where, the message
BAD_INPUT = {
    "toml-syntax": (("port = ", "port = = "), "campaign.toml:14", "TOML syntax: "),
    "unknown-key": (
        ("host = ", "hots = "),
        "campaign.toml:13",
        "[provider] unknown key 'hots' (did you mean 'host'?)",
    ),
    "literal-password": (
        ('sender = "News', 'password = "hunter2"\nsender = "News'),
        "campaign.toml:15",
        "[provider] password is not allowed",
    ),
    "missing-template": (
        ('text = "Hello {{ first_name }} from {{ city }}!"', 'text_file = "missing.txt"'),
        "campaign.toml:9",
        "[template] text_file: ",
    ),
    "missing-column": (
        ("email,first_name", "mail,first_name"),
        "people.csv:1",
        "no 'email' column in the header",
    ),
    "bad-address": (
        ("bob@example.org", "bob@@example.org"),
        "people.csv:3",
        "bad address 'bob@@example.org': ",
    ),
    "bad-processes": (
        ("max_concurrent = 4", "max_concurrent = 4\nprocesses = 0"),
        "campaign.toml:5",
        "[campaign] processes must be more than 0, got 0",
    ),
    "template-variable": (
        ("{{ city }}", "{{ town }}"),
        "people.csv:1",
        "no 'town' column, which the text template uses",
    ),
}


@pytest.mark.parametrize(
    ("change", "where", "message"), list(BAD_INPUT.values()), ids=list(BAD_INPUT)
)
def test_bad_input_exits_2_with_file_and_line_and_sends_nothing(
    smtpd: Callable[[str], SMTPServer],
    tmp_path: Path,
    change: tuple[str, str],
    where: str,
    message: str,
) -> None:
    server = smtpd("plain")
    path = campaign(tmp_path, server)
    for file in (path, tmp_path / "people.csv"):
        text = file.read_text(encoding="utf-8")
        file.write_text(text.replace(*change, 1), encoding="utf-8")
    code, out, err = cli("campaign", "run", str(path))
    assert (code, out) == (2, "")
    assert f"{tmp_path / where}: {message}" in err, err
    assert "nothing was sent" in err
    assert server.recorder.messages == []


def test_processes_with_an_in_memory_outbox_is_refused_with_the_line(
    smtpd: Callable[[str], SMTPServer], tmp_path: Path
) -> None:
    server = smtpd("plain")
    path = campaign(tmp_path, server, extra="processes = 2")
    text = path.read_text(encoding="utf-8").replace('url = "outbox.sqlite3"', 'url = "memory://"')
    path.write_text(text, encoding="utf-8")
    line = text.splitlines().index('url = "memory://"') + 1
    code, out, err = cli("campaign", "run", str(path))
    assert (code, out) == (2, "")
    assert f"{path}:{line}: [outbox] url 'memory://': processes = 2 needs an outbox" in err, err
    assert 'give a SQLite file (url = "campaigns.sqlite3")' in err
    assert server.recorder.messages == []


def test_python_dash_m_xcomm_campaign_run(
    smtpd: Callable[[str], SMTPServer], tmp_path: Path
) -> None:
    server = smtpd("plain")
    path = campaign(tmp_path, server)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "xcomm", "campaign", "run", str(path)],
        capture_output=True, text=True, env=env, timeout=30, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert sorted(delivered(server)) == sorted(p[0] for p in PEOPLE)
    assert "campaign 'test-campaign':" in proc.stdout


def test_ctrl_c_stops_the_run_and_says_how_to_resume(
    smtpd: Callable[[str], SMTPServer], tmp_path: Path
) -> None:
    server = smtpd("plain")
    server.recorder.data_delay = 0.1
    people = [(f"user{i}@example.com", f"U{i}", "X") for i in range(100)]
    path = campaign(tmp_path, server, people, concurrency=1)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "xcomm", "campaign", "run", str(path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    deadline = time.monotonic() + 20
    while len(server.recorder.messages) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 130, err
    assert f"xcomm campaign run {path}\n" in err
    assert "xcomm campaign resume test-campaign" in err
    assert "Traceback" not in err
    assert 3 <= len(server.recorder.messages) < 100


def test_scheduled_campaign_is_sent_by_a_worker(
    smtpd: Callable[[str], SMTPServer], tmp_path: Path
) -> None:
    server = smtpd("plain")
    when = datetime.now(UTC) + timedelta(seconds=1)
    path = campaign(tmp_path, server, extra=f'schedule_time = "{when.isoformat()}"')
    code, out, err = cli("campaign", "run", str(path))
    assert code == 0, err
    assert "3 messages scheduled" in out and server.recorder.messages == []
    outbox = str(tmp_path / "outbox.sqlite3")
    code, _, err = cli("worker", "--until-idle", "--outbox", outbox)
    assert code == 0, err
    assert server.recorder.messages == []  # not due yet: queued, not sent
    time.sleep(max(0.0, (when - datetime.now(UTC)).total_seconds()))
    code, _, err = cli("worker", "--until-idle", "--campaign", "test-campaign", "--outbox", outbox)
    assert code == 0, err
    assert sorted(delivered(server)) == sorted(p[0] for p in PEOPLE)


def test_two_worker_processes_send_each_message_once(
    smtpd: Callable[[str], SMTPServer], tmp_path: Path
) -> None:
    server = smtpd("plain")
    people = [(f"user{i}@example.com", f"U{i}", "X") for i in range(200)]
    when = datetime.now(UTC) + timedelta(seconds=0.5)
    path = campaign(tmp_path, server, people, extra=f'schedule_time = "{when.isoformat()}"')
    assert cli("campaign", "run", str(path))[0] == 0
    time.sleep(max(0.0, (when - datetime.now(UTC)).total_seconds()))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "xcomm", "worker", "--processes", "2", "--until-idle",
         "--outbox", str(tmp_path / "outbox.sqlite3")],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    recipients = [r for m in server.recorder.messages for r in m.rcpt_tos]
    assert sorted(recipients) == sorted(p[0] for p in people)  # each once


def test_run_from_two_processes_sends_each_message_once(
    smtpd: Callable[[str], SMTPServer], tmp_path: Path
) -> None:
    server = smtpd("plain")
    people = [(f"user{i}@example.com", f"U{i}", "X") for i in range(300)]
    path = campaign(tmp_path, server, people, extra="processes = 2")
    code, out, err = cli("campaign", "run", str(path))
    assert code == 0, err
    recipients = [r for m in server.recorder.messages for r in m.rcpt_tos]
    assert sorted(recipients) == sorted(p[0] for p in people)  # each once
    assert out.splitlines()[3].split()[:5] == ["300", "0", "0", "0", "0"]  # this and the helper's


def test_resume_sends_what_an_interrupted_run_left(
    smtpd: Callable[[str], SMTPServer], tmp_path: Path
) -> None:
    server = smtpd("plain")
    server.recorder.data_delay = 0.05
    people = [(f"user{i}@example.com", f"U{i}", "X") for i in range(60)]
    path = campaign(tmp_path, server, people, concurrency=1)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "xcomm", "campaign", "run", str(path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    deadline = time.monotonic() + 20
    while len(server.recorder.messages) < 5 and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=20)
    assert proc.returncode == 130
    server.recorder.data_delay = 0.0
    code, _, err = cli(
        "campaign", "resume", "test-campaign", "--outbox", str(tmp_path / "outbox.sqlite3")
    )
    assert code == 0, err
    recipients = {r for m in server.recorder.messages for r in m.rcpt_tos}
    assert recipients == {p[0] for p in people}


def test_resume_of_an_unknown_campaign_exits_3(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox.sqlite3"
    code, out, err = cli("campaign", "resume", "nope", "--outbox", str(outbox))
    assert (code, out) == (3, "") and "no campaign 'nope'" in err


def test_password_from_the_environment_and_never_in_the_outbox(
    smtpd: Callable[[str], SMTPServer], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = smtpd("plain-auth")
    monkeypatch.setenv("XCOMM_TEST_SMTP_PASSWORD", server.password)
    path = campaign(
        tmp_path,
        server,
        provider=f'username = "{server.user}"\npassword_env = "XCOMM_TEST_SMTP_PASSWORD"\n'
        "allow_plaintext_auth = true",
    )
    code, _, err = cli("campaign", "run", str(path))
    assert code == 0, err
    assert {m.login for m in server.recorder.messages} == {server.user.encode()}
    assert len(delivered(server)) == 3
    outbox = tmp_path / "outbox.sqlite3"
    code, out, _ = cli("campaign", "status", "test-campaign", "--outbox", str(outbox))
    assert code == 0 and "password_env='XCOMM_TEST_SMTP_PASSWORD'" in out
    assert server.password not in out
    assert server.password.encode() not in outbox.read_bytes()


def start_workers(outbox: Path) -> tuple[subprocess.Popen[str], Path]:
    """`python -m xcomm worker --processes 2` in its own session (its own Ctrl-C group),
    once both processes are polling; standard error goes to the file returned."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    log = outbox.with_suffix(".log")
    with log.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "xcomm", "worker", "--processes", "2", "--poll-interval", "0.1",
             "--outbox", str(outbox)],
            stdout=subprocess.DEVNULL, stderr=err, text=True, env=env, start_new_session=True,
        )  # fmt: skip
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:  # each process reports once it runs the scheduler
        workers = {line.split(":")[0] for line in log.read_text().splitlines()}
        if len(workers) == 2:
            return proc, log
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"the workers did not start: {log.read_text()}")


def test_sigterm_stops_the_worker_and_its_children(tmp_path: Path) -> None:
    proc, log = start_workers(tmp_path / "outbox.sqlite3")
    proc.send_signal(signal.SIGTERM)  # to the parent only: it passes it on
    proc.wait(timeout=20)
    err = log.read_text()
    assert proc.returncode == 0, err
    assert err.count("stopped (SIGTERM)") == 2 and "Traceback" not in err


def test_ctrl_c_stops_the_worker_and_its_children(tmp_path: Path) -> None:
    proc, log = start_workers(tmp_path / "outbox.sqlite3")
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
    proc.wait(timeout=20)
    err = log.read_text()
    assert proc.returncode == 130, err
    assert err.count("interrupted") == 2 and "Traceback" not in err
