"""`EmailDraft`: the fluent builder, its validation, and `send()` through a recording provider."""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime
from email import policy
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import msgspec
import pytest

from xcomm._errors import ValidationError
from xcomm._models import Address, EmailMessage, SendResult
from xcomm.email import _compose
from xcomm.email._base import EmailProvider
from xcomm.email._compose import EmailDraft
from xcomm.email._mime import render_message

ADA = Address(email="ada@example.com", name="Ada")


class RecordingProvider(EmailProvider):
    """A test double of the provider interface: records what it is asked to send."""

    name = "recording"

    def __init__(
        self, *, default_sender: Address | None = ADA, max_message_size: int = 1_000_000
    ) -> None:
        # No manager context: this double never calls out, so it needs no limiter or retry.
        self._closed = False
        self.default_sender = default_sender
        self.max_message_size = max_message_size
        self.sent: list[tuple[EmailMessage, float | None]] = []

    async def send(
        self,
        message: EmailMessage,
        /,
        *,
        timeout: float | None = None,
    ) -> SendResult:
        render_message(message)  # what a real provider does first: it must not fail
        self.sent.append((message, timeout))
        return SendResult(
            message_id=message.message_id,
            provider=self.name,
            accepted=tuple(a.email for a in message.recipients),
        )


@pytest.fixture
def provider() -> RecordingProvider:
    return RecordingProvider()


@pytest.fixture
def draft(provider: RecordingProvider) -> EmailDraft:
    return provider.compose()


def parsed(message: EmailMessage) -> Any:
    return BytesParser(policy=policy.default).parsebytes(render_message(message))


# -- addresses -------------------------------------------------------------------------------


def test_compose_returns_a_draft(provider: RecordingProvider) -> None:
    assert isinstance(provider.compose(), EmailDraft)
    assert provider.compose() is not provider.compose()


def test_address_setters_accept_every_form(draft: EmailDraft) -> None:
    result = (
        draft.to("a@example.com")
        .to("b@example.com", "Bee <b2@example.com>")
        .to(["c@example.com", Address(email="d@example.com", name="Dee")])
        .to(("e@example.com",), ["f@example.com"])
        .cc('"Last, First" <g@example.com>')
        .bcc(Address(email="h@example.com"))
        .reply_to("replies@example.com", "r2@example.com")
    )
    assert result is draft
    message = draft.build()
    assert [a.email for a in message.to] == [
        "a@example.com",
        "b@example.com",
        "b2@example.com",
        "c@example.com",
        "d@example.com",
        "e@example.com",
        "f@example.com",
    ]
    assert message.to[2] == Address(email="b2@example.com", name="Bee")
    assert message.cc == (Address(email="g@example.com", name="Last, First"),)
    assert message.bcc == (Address(email="h@example.com"),)
    assert [a.email for a in message.reply_to] == ["replies@example.com", "r2@example.com"]


def test_empty_calls_add_nothing(draft: EmailDraft) -> None:
    draft.to().to([]).cc().bcc(()).to("a@example.com")
    assert [a.email for a in draft.build().to] == ["a@example.com"]


@pytest.mark.parametrize(
    "bad",
    [
        "not-an-address",
        "a@b.com, c@d.com",
        "Ada <ada@example.com",
        "ada@example.com\r\nBcc: x@y.z",
        42,
        None,
        [1],
        b"a@b.com",
        Address(email="Ada <ada@example.com>"),
        Address(email="no-at-sign"),
        Address(email=" padded@example.com"),
        Address(email="a@b.com", name="A\r\nBcc: x@y.z"),
    ],
)
@pytest.mark.parametrize("setter", ["to", "cc", "bcc", "reply_to", "from_"])
def test_address_setters_reject_bad_input(draft: EmailDraft, setter: str, bad: object) -> None:
    with pytest.raises(ValidationError):
        getattr(draft, setter)(bad)


def test_from_sets_the_sender_and_default_sender_applies(provider: RecordingProvider) -> None:
    assert provider.compose().to("b@example.com").build().sender == ADA
    built = provider.compose().from_("Bob <bob@example.org>").to("b@example.com").build()
    assert built.sender == Address(email="bob@example.org", name="Bob")
    with pytest.raises(ValidationError, match="exactly one"):
        provider.compose().from_(["a@example.com", "b@example.com"])  # type: ignore[arg-type]


def test_missing_sender_says_how_to_fix() -> None:
    draft = RecordingProvider(default_sender=None).compose().to("b@example.com")
    with pytest.raises(ValidationError, match=r"\.from_\(.*default sender"):
        draft.build()


def test_missing_recipient(draft: EmailDraft) -> None:
    with pytest.raises(ValidationError, match="no recipient"):
        draft.subject("x").build()
    assert draft.bcc("hidden@example.com").build().recipients == (
        Address(email="hidden@example.com"),
    )


def test_bcc_is_a_recipient_but_never_a_header(draft: EmailDraft) -> None:
    message = draft.to("a@example.com").bcc("Secret <secret@example.com>").build()
    assert "secret@example.com" in [a.email for a in message.recipients]
    raw = render_message(message)
    assert b"secret@example.com" not in raw and b"Bcc" not in raw


# -- content and headers ---------------------------------------------------------------------


def test_content_setters(draft: EmailDraft) -> None:
    message = (
        draft.to("a@example.com")
        .subject("Grüße\tand tabs")
        .body("plain")
        .html_body("<p>html</p>")
        .build()
    )
    assert (message.subject, message.text, message.html) == (
        "Grüße\tand tabs",
        "plain",
        "<p>html</p>",
    )


@pytest.mark.parametrize("subject", ["a\r\nBcc: x@y.z", "a\nb", "a\0", "=?utf-8?q?a=0Ab?=", 5])
def test_subject_rejects_injection_and_non_strings(draft: EmailDraft, subject: object) -> None:
    with pytest.raises(ValidationError):
        draft.subject(subject)  # type: ignore[arg-type]


@pytest.mark.parametrize("method", ["body", "html_body"])
def test_bodies_must_be_strings(draft: EmailDraft, method: str) -> None:
    with pytest.raises(ValidationError, match="takes a str"):
        getattr(draft, method)(b"bytes")


def test_custom_headers(draft: EmailDraft) -> None:
    message = (
        draft.to("a@example.com")
        .header("X-Campaign", "spring")
        .add_header("X-Campaign", "again")
        .header("In-Reply-To", "<x@example.com>")
        .build()
    )
    assert message.headers == (
        ("X-Campaign", "spring"),
        ("X-Campaign", "again"),
        ("In-Reply-To", "<x@example.com>"),
    )
    assert parsed(message).get_all("X-Campaign") == ["spring", "again"]


@pytest.mark.parametrize(
    ("name", "value", "match"),
    [
        ("X-A", "a\r\nBcc: x@y.z", "control character"),
        ("X-A\r\nBcc", "x", "header name"),
        ("X A", "x", "header name"),
        ("X:A", "x", "header name"),
        ("X-A", 5, "must be a str"),
        ("X-A", None, "must be a str"),
        ("Content-Type", "text/html", "MIME structure"),
        ("MIME-Version", "2.0", "MIME structure"),
        ("Content-Transfer-Encoding", "8bit", "MIME structure"),
        ("subject", "x", r"\.subject\("),
        ("From", "x@y.z", r"\.from_\("),
        ("To", "x@y.z", r"\.to\("),
        ("Cc", "x@y.z", r"\.cc\("),
        ("BCC", "x@y.z", r"\.bcc\("),
        ("Reply-To", "x@y.z", r"\.reply_to\("),
        ("Message-ID", "<a@b>", r"\.message_id\("),
        ("Date", "today", "Date is set"),
        ("List-Unsubscribe", "<https://x>", r"\.list_unsubscribe\("),
    ],
)
def test_header_rejects(draft: EmailDraft, name: str, value: object, match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        draft.header(name, value)  # type: ignore[arg-type]


def test_list_unsubscribe_with_url_and_mailto(draft: EmailDraft) -> None:
    draft.to("a@example.com").list_unsubscribe(
        url="https://example.com/u?id=1", mailto="unsub@example.com"
    )
    message = draft.build()
    assert dict(message.headers) == {
        "List-Unsubscribe": "<https://example.com/u?id=1>, <mailto:unsub@example.com>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }
    msg = parsed(message)
    assert msg["List-Unsubscribe"] == "<https://example.com/u?id=1>, <mailto:unsub@example.com>"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_list_unsubscribe_variants(provider: RecordingProvider) -> None:
    def headers(**kwargs: Any) -> dict[str, str]:
        draft = provider.compose().to("a@example.com").list_unsubscribe(**kwargs)
        return dict(draft.build().headers)

    assert headers(mailto="mailto:u@example.com?subject=stop") == {
        "List-Unsubscribe": "<mailto:u@example.com?subject=stop>"
    }
    assert headers(url="http://example.com/u", one_click=False) == {
        "List-Unsubscribe": "<http://example.com/u>"
    }
    assert headers(url="https://example.com/u", one_click=False) == {
        "List-Unsubscribe": "<https://example.com/u>"
    }
    draft = provider.compose().to("a@example.com").list_unsubscribe(url="https://x.example/1")
    draft.list_unsubscribe(mailto="u@example.com")  # a second call replaces the first
    assert dict(draft.build().headers) == {"List-Unsubscribe": "<mailto:u@example.com>"}


def test_long_list_unsubscribe_urls_are_never_encoded(draft: EmailDraft) -> None:
    url = "https://example.com/unsubscribe?token=" + "t" * 150
    message = draft.to("a@example.com").list_unsubscribe(url=url).build()
    raw = render_message(message)
    assert f"<{url}>".encode() in raw
    assert parsed(message)["List-Unsubscribe"] == f"<{url}>"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({}, "needs url=, mailto= or both"),
        ({"url": "http://example.com/u"}, "needs an https URL"),
        ({"url": "ftp://example.com/u"}, "http"),
        ({"url": "https://example.com/a b"}, "without spaces"),
        ({"url": "https://example.com/<x>"}, "without spaces"),
        ({"url": "https://exämple.com/"}, "percent-encode"),
        ({"url": "https://example.com/\r\nBcc: x"}, "control character"),
        ({"mailto": "not an address"}, "address"),
        ({"mailto": "mailto:u@example.com?subject=a b"}, "percent-encode"),
    ],
)
def test_list_unsubscribe_rejects(draft: EmailDraft, kwargs: dict[str, str], match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        draft.list_unsubscribe(**kwargs)


# -- Message-ID and Date ---------------------------------------------------------------------


def test_build_dates_the_message_now_in_utc_to_the_second(provider: RecordingProvider) -> None:
    for _ in range(3):  # drafts built in the same second share the date
        before = datetime.now(UTC).replace(microsecond=0)
        date = provider.compose().to("a@example.com").build().date
        after = datetime.now(UTC)
        assert date is not None and date.tzinfo is UTC and date.microsecond == 0
        assert before <= date <= after


def test_build_sets_message_id_and_date_once(draft: EmailDraft) -> None:
    first = draft.to("a@example.com").build()
    assert first.message_id is not None
    assert re.fullmatch(r"<[0-9a-f]{32}@example\.com>", first.message_id)
    assert isinstance(first.date, datetime) and first.date.tzinfo is not None
    second = draft.subject("changed").build()
    assert (second.message_id, second.date) == (first.message_id, first.date)
    assert second.subject == "changed"
    other = draft._provider.compose().to("a@example.com").build()
    assert other.message_id != first.message_id
    msg = parsed(first)
    assert msg["Message-ID"] == first.message_id and msg["Date"] is not None


@pytest.mark.parametrize(
    ("value", "expected"),
    [("<abc.123@example.com>", "<abc.123@example.com>"), ("abc@example.com", "<abc@example.com>")],
)
def test_message_id_override(draft: EmailDraft, value: str, expected: str) -> None:
    assert draft.to("a@example.com").message_id(value).build().message_id == expected


@pytest.mark.parametrize(
    "value", ["no-at-sign", "<a b@example.com>", "<a@b>\r\nX: y", "<<a@b>>", "<a@b", ""]
)
def test_message_id_rejects(draft: EmailDraft, value: str) -> None:
    with pytest.raises(ValidationError):
        draft.message_id(value)


# -- attachments -----------------------------------------------------------------------------


PDF = b"%PDF-1.7 " + bytes(range(256)) * 10


@pytest.fixture
def report(tmp_path: Path) -> Path:
    path = tmp_path / "report.pdf"
    path.write_bytes(PDF)
    return path


def test_attach_a_path_checks_it_now_and_reads_it_later(draft: EmailDraft, report: Path) -> None:
    draft.to("a@example.com").attach(report).attach(str(report), filename="copy.pdf")
    first, second = draft.build().attachments
    assert first.filename == "report.pdf" and second.filename == "copy.pdf"
    assert first.content_type == "application/pdf"
    assert first.content is None and first.path == str(report)
    assert first.size == report.stat().st_size
    assert not first.inline


def test_attach_bytes(draft: EmailDraft) -> None:
    draft.to("a@example.com").attach(b"a,b\n", filename="data.csv")
    draft.attach(bytearray(b"x"), filename="blob", content_type="application/x-thing")
    csv, blob = draft.build().attachments
    assert (csv.content, csv.content_type, csv.size) == (b"a,b\n", "text/csv", 4)
    assert (blob.content, blob.content_type) == (b"x", "application/x-thing")
    unknown = draft.attach(b"?", filename="noextension").build().attachments[-1]
    assert unknown.content_type == "application/octet-stream"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"file": b"x"}, "needs a file name"),
        ({"file": b"x", "filename": "../evil.sh"}, "path separator"),
        ({"file": b"x", "filename": "a/b.txt"}, "path separator"),
        ({"file": b"x", "filename": "a\r\nb.txt"}, "control character"),
        ({"file": b"x", "filename": ".."}, "'..'"),
        ({"file": b"x", "filename": "a.txt", "content_type": "nonsense"}, "content type"),
        ({"file": b"x", "filename": "a.txt", "content_type": "text/plain\r\nX: y"}, "control"),
        ({"file": 42}, "path"),
        ({"file": None}, "path"),
    ],
)
def test_attach_rejects(draft: EmailDraft, kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        draft.attach(**kwargs)


def test_attach_rejects_missing_directories_and_unreadable_files(
    draft: EmailDraft, tmp_path: Path, report: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ValidationError, match="does not exist"):
        draft.attach(tmp_path / "missing.pdf")
    with pytest.raises(ValidationError, match="not a regular file"):
        draft.attach(tmp_path)
    monkeypatch.setattr(_compose.os, "access", lambda path, mode: False)
    with pytest.raises(ValidationError, match="not readable"):
        draft.attach(report)


def test_attach_rejects_files_over_the_size_limit(tmp_path: Path) -> None:
    draft = RecordingProvider(max_message_size=1000).compose()
    big = tmp_path / "big.bin"
    big.write_bytes(b"x" * 1001)
    with pytest.raises(ValidationError, match="max_message_size of 1000"):
        draft.attach(big)
    with pytest.raises(ValidationError, match="max_message_size"):
        draft.attach(b"x" * 1001, filename="big.bin")


def test_build_checks_the_encoded_total_size(tmp_path: Path) -> None:
    draft = RecordingProvider(max_message_size=10_000).compose().to("a@example.com")
    draft.attach(b"x" * 4000, filename="a.bin").attach(b"x" * 4000, filename="b.bin")
    with pytest.raises(ValidationError, match="once encoded"):
        draft.build()


def test_inline_images(draft: EmailDraft, tmp_path: Path) -> None:
    logo = tmp_path / "my logo (1).png"
    logo.write_bytes(b"\x89PNG")
    draft.to("a@example.com").inline_image(logo).inline_image(b"GIF89a", filename="x.gif")
    draft.inline_image(b"GIF89a", filename="other.gif", cid="banner@example.com")
    assert dict(draft.cids) == {
        "my logo (1).png": "my_logo_1_.png",
        "x.gif": "x.gif",
        "other.gif": "banner@example.com",
    }
    with pytest.raises(TypeError):
        draft.cids["new"] = "x"  # type: ignore[index]
    draft.html_body(
        '<img src="cid:my_logo_1_.png"><img src="cid:x.gif"><img src="cid:banner@example.com">'
    )
    images = draft.build().attachments
    assert [(a.inline, a.content_id, a.content_type) for a in images] == [
        (True, "my_logo_1_.png", "image/png"),
        (True, "x.gif", "image/gif"),
        (True, "banner@example.com", "image/gif"),
    ]


def test_inline_image_rejects(draft: EmailDraft) -> None:
    draft.inline_image(b"1", filename="a.png")
    with pytest.raises(ValidationError, match="already used"):
        draft.inline_image(b"2", filename="b.png", cid="a.png")
    with pytest.raises(ValidationError, match="already attached"):
        draft.inline_image(b"3", filename="a.png", cid="other")
    with pytest.raises(ValidationError, match="content id"):
        draft.inline_image(b"4", filename="c.png", cid="<bad id>")
    with pytest.raises(ValidationError, match="needs a file name"):
        draft.inline_image(b"5")
    draft.inline_image(b"6", filename="a.png.png")
    assert draft.cids["a.png.png"] == "a.png.png"
    draft.inline_image(b"7", filename="..é" * 80 + ".png")
    assert draft.cids["..é" * 80 + ".png"] == ("_." * 50).strip(".")


def test_default_cids_are_unique(draft: EmailDraft) -> None:
    draft.inline_image(b"1", filename="a b.png").inline_image(b"2", filename="a_b.png")
    assert list(draft.cids.values()) == ["a_b.png", "a_b.png-2"]


def test_inline_images_need_an_html_body(draft: EmailDraft) -> None:
    draft.to("a@example.com").body("text").inline_image(b"1", filename="a.png")
    with pytest.raises(ValidationError, match="html_body"):
        draft.build()


# -- send ------------------------------------------------------------------------------------


async def test_send_reads_files_off_the_event_loop_and_sends(
    provider: RecordingProvider, report: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[object] = []
    real_run_sync = _compose.anyio.to_thread.run_sync

    async def spy(func: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(func)
        return await real_run_sync(func, *args, **kwargs)

    monkeypatch.setattr(_compose.anyio.to_thread, "run_sync", spy)
    draft = (
        provider.compose()
        .to("Bob <bob@example.org>")
        .bcc("hidden@example.org")
        .subject("Report")
        .body("Attached.")
        .html_body('<p>Attached. <img src="cid:logo.png"></p>')
        .attach(report)
        .attach(b"inline bytes", filename="notes.txt")
        .inline_image(b"\x89PNG", filename="logo.png")
    )
    result = await draft.send(timeout=12.5)
    assert calls == [_compose._read_files]
    ((message, timeout),) = provider.sent
    assert timeout == 12.5
    assert result.message_id == message.message_id == draft.build().message_id
    assert result.accepted == ("bob@example.org", "hidden@example.org")
    files = {a.filename: a for a in message.attachments}
    assert files["report.pdf"].content == PDF
    assert files["report.pdf"].size == len(PDF)
    assert files["notes.txt"].content == b"inline bytes"
    msg = parsed(message)
    got = {p.get_filename(): p.get_content() for p in msg.walk() if p.get_filename()}
    assert got == {
        "report.pdf": PDF,
        "notes.txt": "inline bytes",
        "logo.png": b"\x89PNG",
    }
    assert msg["Bcc"] is None


async def test_send_without_files_does_not_use_a_thread(
    provider: RecordingProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def forbidden(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("no thread needed")

    monkeypatch.setattr(_compose.anyio.to_thread, "run_sync", forbidden)
    await provider.compose().to("a@example.com").body("hi").send()
    assert len(provider.sent) == 1


async def test_send_reports_a_file_that_vanished(provider: RecordingProvider, report: Path) -> None:
    draft = provider.compose().to("a@example.com").attach(report)
    os.remove(report)
    with pytest.raises(ValidationError, match="cannot read the attachment") as info:
        await draft.send()
    assert isinstance(info.value.__cause__, OSError)
    assert provider.sent == []


async def test_send_reports_a_file_that_grew(tmp_path: Path) -> None:
    provider = RecordingProvider(max_message_size=5000)
    path = tmp_path / "log.txt"
    path.write_bytes(b"x" * 100)
    draft = provider.compose().to("a@example.com").attach(path)
    path.write_bytes(b"x" * 6000)
    with pytest.raises(ValidationError, match="grew past"):
        await draft.send()
    path.write_bytes(b"x" * 3700)  # fits alone, not once base64-encoded
    with pytest.raises(ValidationError, match="once encoded"):
        await draft.send()
    assert provider.sent == []


async def test_invalid_drafts_never_reach_the_provider(provider: RecordingProvider) -> None:
    with pytest.raises(ValidationError, match="no recipient"):
        await provider.compose().subject("x").send()
    assert provider.sent == []


async def test_send_message_one_liner(provider: RecordingProvider) -> None:
    result = await provider.send_message(
        ["a@example.com", "B <b@example.com>"], "Hi", "Hello", html="<p>Hello</p>", timeout=3
    )
    ((message, timeout),) = provider.sent
    assert timeout == 3 and result.provider == "recording"
    assert (message.subject, message.text, message.html) == ("Hi", "Hello", "<p>Hello</p>")
    assert [a.email for a in message.to] == ["a@example.com", "b@example.com"]


# -- campaign messages -------------------------------------------------------------------------


def test_campaign_message_is_the_fluent_drafts_message(provider: RecordingProvider) -> None:
    fluent = (
        provider.compose()
        .to("ada@example.com")
        .subject("Hi Ada")
        .body("Hello Ada\n")
        .html_body("<p>Hello Ada</p>\n")
        .list_unsubscribe(url="https://example.com/u?token=abc")
        .message_id("<0123abcd@example.com>")
        .build()
    )
    fast = _compose.campaign_message(
        provider,
        "ada@example.com",
        subject="Hi Ada",
        text="Hello Ada\n",
        html="<p>Hello Ada</p>\n",
        unsubscribe_url="https://example.com/u?token=abc",
        message_id="<0123abcd@example.com>",
    )
    assert fast == msgspec.structs.replace(fluent, date=fast.date)
    assert fast.date is not None and fast.headers == (
        ("List-Unsubscribe", "<https://example.com/u?token=abc>"),
        ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
    )


def test_campaign_message_leaves_out_what_is_not_given(provider: RecordingProvider) -> None:
    message = _compose.campaign_message(provider, "bob@example.com", subject="Hi")
    assert message.to == (Address(email="bob@example.com"),)
    assert (message.text, message.html, message.headers) == (None, None, ())
    assert message.message_id is not None and message.message_id.endswith("@example.com>")


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"subject": "Hi\r\nBcc: evil@example.com"}, "control character"),
        ({"subject": "Hi", "message_id": "not a message id"}, "invalid Message-ID"),
        ({"subject": "Hi", "unsubscribe_url": "http://example.com/u"}, "https"),
        ({"subject": "Hi", "text": b"bytes"}, "takes a str"),
        ({"subject": "Hi", "html": "x" * 200_000}, "max_message_size"),
    ],
)
def test_campaign_message_checks_what_the_draft_checks(
    provider: RecordingProvider, fields: dict[str, Any], match: str
) -> None:
    provider.max_message_size = 100_000
    with pytest.raises(ValidationError, match=match):
        _compose.campaign_message(provider, "ada@example.com", **fields)


def test_campaign_message_needs_a_default_sender(provider: RecordingProvider) -> None:
    provider.default_sender = None
    with pytest.raises(ValidationError, match="no sender"):
        _compose.campaign_message(provider, "ada@example.com", subject="Hi")


async def test_campaign_message_sends(provider: RecordingProvider) -> None:
    message = _compose.campaign_message(provider, "ada@example.com", subject="Hi", text="Hello")
    result = await provider.send(message)
    assert result.accepted == ("ada@example.com",)
    [(sent, _)] = provider.sent
    assert (sent.subject, sent.text) == ("Hi", "Hello")
