"""`xcomm demo` end to end: the messages it sends land in the Maildir, intact.

The full demo (5,000-subscriber campaign included) runs once per module (`full_demo`); the
other runs use `--no-campaign` or a small `--subscribers` to stay fast.
"""

from __future__ import annotations

import contextlib
import csv
import email
import email.policy
import importlib.util
import io
import mailbox
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage as MIMEMessage
from pathlib import Path
from typing import Any

import pytest

from xcomm import UnsubscribeSigner
from xcomm._cli import main
from xcomm._console import ProgressBar, progress_line
from xcomm._demo import DEFAULT_BURST, DEFAULT_SUBSCRIBERS, REPORT_CSV, UTF8_BODY, UTF8_SUBJECT
from xcomm._demo_campaign import (
    BUILTIN_HTML,
    BUILTIN_SUBJECT,
    BUILTIN_TEXT,
    CAMPAIGN_SENDER,
    SUBSCRIBERS_CSV,
    UNSUBSCRIBE_SECRET,
    UNSUBSCRIBE_URL,
    load_template,
)
from xcomm.bulk import CampaignResult, Progress
from xcomm.outbox import OutboxStatus, SQLiteOutbox

ROOT = Path(__file__).resolve().parents[2]
NEWSLETTER = ROOT / "docs" / "examples" / "newsletter"
SHOWCASE = 3 + DEFAULT_BURST
CAMPAIGN_FROM = CAMPAIGN_SENDER.encode()


@dataclass(frozen=True)
class DemoRun:
    code: int
    out: str
    root: Path
    maildir: Path

    @property
    def campaign_id(self) -> str:
        found = re.search(r"campaign_id='([^']+)'", self.out)
        assert found is not None, self.out
        return found.group(1)


def run_demo(*args: str) -> tuple[int, str]:
    """`main(["demo", *args])` in process, returning the exit code and standard output."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["demo", *args])
    return code, out.getvalue()


@pytest.fixture(scope="module")
def full_demo(tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    """The whole demo, as `make demo` runs it, into a fresh directory."""
    root = tmp_path_factory.mktemp("demo")
    maildir = root / "demo-maildir"
    code, out = run_demo("--maildir", str(maildir))
    return DemoRun(code, out, root, maildir)


def read_maildir(path: Path) -> list[MIMEMessage]:
    box = mailbox.Maildir(path, factory=None, create=False)
    out = []
    for key in box.iterkeys():
        msg = email.message_from_bytes(box.get_bytes(key), policy=email.policy.default)
        assert isinstance(msg, MIMEMessage)
        out.append(msg)
    return out


def raw_messages(path: Path) -> Iterator[bytes]:
    for folder in ("new", "cur"):
        for file in sorted((path / folder).iterdir()):
            yield file.read_bytes()


def header(raw: bytes, name: bytes) -> bytes | None:
    """A header's raw value, without parsing the whole message (fast over 5,000 files)."""
    head = raw.partition(b"\n\n")[0]
    for line in head.split(b"\n"):
        if line.lower().startswith(name.lower() + b":"):
            return line.partition(b":")[2].strip()
    return None


def split(path: Path) -> tuple[list[MIMEMessage], dict[bytes, bytes]]:
    """The demo's first messages, parsed, and the campaign's raw messages by recipient."""
    showcase, campaign = [], {}
    for raw in raw_messages(path):
        if header(raw, b"From") == CAMPAIGN_FROM:
            recipient = header(raw, b"Delivered-To")
            assert recipient is not None
            campaign[recipient] = raw
        else:
            msg = email.message_from_bytes(raw, policy=email.policy.default)
            assert isinstance(msg, MIMEMessage)
            showcase.append(msg)
    return showcase, campaign


def by_subject(messages: list[MIMEMessage]) -> dict[str, MIMEMessage]:
    return {str(m["subject"]): m for m in messages}


def subscribers_of(run: DemoRun) -> list[dict[str, str]]:
    with (run.root / SUBSCRIBERS_CSV).open(newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


# -- the full demo -------------------------------------------------------------------------


def test_demo_delivers_every_message_into_the_maildir(full_demo: DemoRun) -> None:
    assert full_demo.code == 0, full_demo.out
    showcase, campaign = split(full_demo.maildir)
    assert len(showcase) == SHOWCASE
    assert len(campaign) == DEFAULT_SUBSCRIBERS
    subjects = by_subject(showcase)

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

    for expected in (
        "Sent messages",
        UTF8_SUBJECT,
        f"{DEFAULT_BURST}/{DEFAULT_BURST} accepted",
        f"{SHOWCASE} new message(s)",
        "Metrics",
        "success rate",
        "100.0%",
        "p99 ms",
        "Connection pool",
    ):
        assert expected in full_demo.out, f"{expected!r} missing from the output:\n{full_demo.out}"


def test_campaign_reaches_every_subscriber_personalised(full_demo: DemoRun) -> None:
    people = subscribers_of(full_demo)
    assert len(people) == DEFAULT_SUBSCRIBERS
    _, campaign = split(full_demo.maildir)
    assert set(campaign) == {p["email"].encode() for p in people}

    signer = UnsubscribeSigner(UNSUBSCRIBE_SECRET, UNSUBSCRIBE_URL)
    plans = {"pro": "As a Pro subscriber", "team": "Your Team plan", "free": "the Free plan"}
    for person in people[:: DEFAULT_SUBSCRIBERS // 7]:  # a few, across the file
        msg = email.message_from_bytes(
            campaign[person["email"].encode()], policy=email.policy.default
        )
        assert isinstance(msg, MIMEMessage)
        assert (
            msg["subject"]
            == f"{person['first_name']}, this month's xcomm news for {person['city']}"
        )
        text = msg.get_body(preferencelist=("plain",))
        html = msg.get_body(preferencelist=("html",))
        assert text is not None and html is not None
        assert f"Hi {person['first_name']}," in text.get_content()
        assert plans[person["plan"]] in text.get_content()
        assert f"<p>Hi {person['first_name']},</p>" in html.get_content()

        url = str(msg["list-unsubscribe"]).strip("<>")
        assert url.startswith(UNSUBSCRIBE_URL + "?token=")
        assert signer.verify(url.partition("token=")[2]) == (
            full_demo.campaign_id,
            person["email"],
        )
        assert msg["list-unsubscribe-post"] == "List-Unsubscribe=One-Click"
        assert url in text.get_content() and url in html.get_content()


def test_campaign_output_shows_progress_report_and_resume(full_demo: DemoRun) -> None:
    out = full_demo.out
    for expected in (
        "Newsletter campaign: 5,000 subscribers",
        "docs/examples/newsletter/ (subject.txt, body.txt, body.html)",
        "5,000/5,000 100%",
        "Campaign report",
        "suppressed  skipped  in doubt",
        "5,000 campaign messages arrived",
        f"({SHOWCASE + DEFAULT_SUBSCRIBERS:,} in total)",
        "resume: 0 sent / 5,000 skipped",
        "nothing is sent twice",
    ):
        assert expected in out, f"{expected!r} missing from the output:\n{out}"
    # Not a terminal: a few progress lines, no carriage returns.
    assert "\r" not in out
    assert 1 <= out.count(" msg/s  ") <= 5
    report = out[out.index("Campaign report") :].splitlines()
    assert report[3].split()[:5] == ["5,000", "0", "0", "0", "0"]


async def test_campaign_outbox_is_next_to_the_maildir(full_demo: DemoRun) -> None:
    path = full_demo.root / "demo-outbox.sqlite3"
    assert path.is_file()
    async with SQLiteOutbox(path) as store:
        counts = await store.counts(full_demo.campaign_id)
    assert {status: n for status, n in counts.items() if n} == {
        OutboxStatus.SENT: DEFAULT_SUBSCRIBERS
    }


def test_generated_subscribers_start_with_the_docs_sample(full_demo: DemoRun) -> None:
    generated = (full_demo.root / SUBSCRIBERS_CSV).read_text(encoding="utf-8").splitlines()
    sample = (NEWSLETTER / "subscribers-sample.csv").read_text(encoding="utf-8").splitlines()
    assert len(sample) == 21
    assert generated[:21] == sample


# -- other runs ----------------------------------------------------------------------------


def test_demo_runs_again_into_the_same_maildir(tmp_path: Path) -> None:
    maildir = tmp_path / "box"
    assert run_demo("--maildir", str(maildir), "--burst", "5", "--no-campaign")[0] == 0
    code, out = run_demo(
        "--maildir", str(maildir), "--burst", "5", "--pool-size", "2", "--no-campaign"
    )
    assert code == 0
    assert len(read_maildir(maildir)) == 2 * (3 + 5)
    assert "8 new message(s) (16 in total)" in out
    assert "through a pool of 2 connections" in out
    assert "Newsletter" not in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["box"]  # no outbox, no CSV


def test_each_demo_run_is_a_new_campaign_in_the_same_outbox(tmp_path: Path) -> None:
    maildir, outbox = tmp_path / "box", tmp_path / "state" / "campaigns.db"
    args = ("--maildir", str(maildir), "--burst", "1", "--subscribers", "40", "--outbox")
    first, second = run_demo(*args, str(outbox)), run_demo(*args, str(outbox))
    assert first[0] == second[0] == 0, second[1]
    for _, out in (first, second):
        assert "resume: 0 sent / 40 skipped" in out
    assert outbox.is_file()
    assert not (tmp_path / "demo-outbox.sqlite3").exists()
    assert len(read_maildir(maildir)) == 2 * (3 + 1 + 40)


def test_demo_reports_an_unusable_outbox(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["demo", "--maildir", str(tmp_path / "box"), "--outbox", str(tmp_path)])
    assert code == 1
    assert "cannot use" in capsys.readouterr().err


def test_demo_without_jinja2_skips_the_campaign(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = importlib.util.find_spec

    def find_spec(name: str, *args: Any) -> Any:
        return None if name == "jinja2" else real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    code, out = run_demo("--maildir", str(tmp_path / "box"), "--burst", "1")
    assert code == 0
    assert "pip install 'xcomm[templates]'" in out


def test_python_m_xcomm_demo_exits_cleanly(tmp_path: Path) -> None:
    """The real command: exit 0, no warning, no traceback, nothing on stderr."""
    proc = subprocess.run(
        [sys.executable, "-W", "error", "-m", "xcomm", "demo", "--maildir", str(tmp_path / "m"),
         "--subscribers", "200"],
        capture_output=True,
        text=True,
        timeout=50,
        cwd=ROOT,
        check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert "Metrics" in proc.stdout
    assert "resume: 0 sent / 200 skipped" in proc.stdout
    assert len(list(raw_messages(tmp_path / "m"))) == SHOWCASE + 200


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


# -- the campaign's pieces -----------------------------------------------------------------


def test_builtin_templates_are_the_docs_templates() -> None:
    assert (NEWSLETTER / "subject.txt").read_text(encoding="utf-8") == BUILTIN_SUBJECT
    assert (NEWSLETTER / "body.txt").read_text(encoding="utf-8") == BUILTIN_TEXT
    assert (NEWSLETTER / "body.html").read_text(encoding="utf-8") == BUILTIN_HTML


def test_templates_fall_back_to_the_builtin_copy(monkeypatch: pytest.MonkeyPatch) -> None:
    from_files, where = load_template()
    assert "docs/examples/newsletter" in where
    monkeypatch.setattr("xcomm._demo_campaign.template_dir", lambda: None)
    builtin, where = load_template()
    assert where.startswith("built in")
    person = {"first_name": "Zoë", "city": "Köln", "plan": "team", "email": "zoe@example.org"}
    args: dict[str, Any] = {"recipient": person["email"], "campaign_id": "c"}
    signer = UnsubscribeSigner(UNSUBSCRIBE_SECRET, UNSUBSCRIBE_URL)
    rendered = [t.compile(unsubscribe=signer).render(person, **args) for t in (from_files, builtin)]
    assert rendered[0] == rendered[1]
    assert rendered[0].subject == "Zoë, this month's xcomm news for Köln"


def test_progress_line() -> None:
    line = progress_line(2500, 5000, elapsed=2.0, rate=1250.0, width=10)
    assert line == "  [█████░░░░░] 2,500/5,000  50%   1,250 msg/s  ETA 2s"
    early = progress_line(3, 5000, elapsed=0.01, rate=300.0, width=10)
    assert early.endswith("    -- msg/s  ETA --")
    done = progress_line(5000, 5000, elapsed=4.0, rate=1250.0, width=10)
    assert done.endswith("1,250 msg/s  done") and "100%" in done


def event(done: int) -> Progress:
    return Progress(campaign_id="c", seen=done, done=done, sent=done, failed=0, elapsed=1, rate=9)


def test_progress_bar_prints_quarters_off_a_terminal() -> None:
    out = io.StringIO()
    bar = ProgressBar(100, out, live=False)
    for done in (1, 10, 26, 30, 55, 80, 99, 100):
        bar(event(done))
    bar.finish(CampaignResult(campaign_id="c", total=100, sent=100, duration=2, throughput=50))
    lines = out.getvalue().splitlines()
    assert [line.split("]")[1].split()[0] for line in lines] == ["26/100", "55/100", "80/100",
                                                                  "100/100"]  # fmt: skip


def test_progress_bar_redraws_one_line_on_a_terminal() -> None:
    out = io.StringIO()
    bar = ProgressBar(100, out, live=True)
    for done in (10, 50):
        bar(event(done))
    bar.finish(CampaignResult(campaign_id="c", total=100, sent=100, duration=2, throughput=50))
    text = out.getvalue()
    assert text.count("\r") == 3 and text.count("\n") == 1
    # The last line is padded to cover what is left of the longer line before it.
    assert text.endswith("done  \n")
