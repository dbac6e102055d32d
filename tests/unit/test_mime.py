"""`render_message`: structure, encodings, folding, and round trips through the stdlib parser."""

from __future__ import annotations

import copy
import email.message
import os
import random
import re
from datetime import UTC, datetime, timedelta, timezone
from email import policy
from email.header import decode_header, make_header
from email.parser import BytesParser, Parser
from email.utils import parsedate_to_datetime

import pytest

from xcomm._errors import ValidationError
from xcomm._models import Address, Attachment, EmailMessage
from xcomm.email import _mime
from xcomm.email._mime import format_date, new_message_id, render_message
from xcomm.email._transaction import dot_stuff

SENDER = Address(email="ada@example.com", name="Ada Lovelace")
BOB = Address(email="bob@example.org")
DATE = datetime(2025, 1, 7, 9, 30, 5, tzinfo=UTC)
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 3


def make(**kwargs: object) -> EmailMessage:
    fields: dict[str, object] = {"sender": SENDER, "to": (BOB,), "subject": "Hi", "date": DATE}
    fields.update(kwargs)
    return EmailMessage(**fields)  # type: ignore[arg-type]


def parse(raw: bytes) -> email.message.EmailMessage:
    """Parse `raw`, checking the wire format and that the stdlib found no defect anywhere."""
    assert raw.endswith(b"\r\n")
    assert b"\n" not in raw.replace(b"\r\n", b""), "bare LF"
    assert b"\r" not in raw.replace(b"\r\n", b""), "bare CR"
    lines = raw.split(b"\r\n")
    assert max(map(len, lines)) <= 998
    head = raw.split(b"\r\n\r\n", 1)[0]
    for line in head.split(b"\r\n"):
        assert len(line) <= 78, line
    msg = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(msg, email.message.EmailMessage)
    for part in msg.walk():
        assert not part.defects, (part.defects, raw[:2000])
    return msg


def normalised(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text + "\n" if text and not text.endswith("\n") else text


def text_of(part: email.message.Message | None) -> str:
    """A text part's content, with the wire's CRLF line endings read back as "\\n"."""
    assert isinstance(part, email.message.EmailMessage)
    return str(part.get_content()).replace("\r\n", "\n")


def structure(msg: email.message.EmailMessage) -> object:
    if msg.is_multipart():
        return (msg.get_content_type(), [structure(p) for p in msg.iter_parts()])  # type: ignore[arg-type]
    return msg.get_content_type()


def logo(cid: str = "logo") -> Attachment:
    return Attachment(
        filename="logo.png", content_type="image/png", content=PNG, inline=True, content_id=cid
    )


REPORT = Attachment(filename="report.pdf", content_type="application/pdf", content=b"%PDF" * 99)

# -- structure -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"text": "hello"}, "text/plain"),
        ({}, "text/plain"),
        ({"html": "<p>hi</p>"}, "text/html"),
        ({"text": "a", "html": "<p>b</p>"}, ("multipart/alternative", ["text/plain", "text/html"])),
        (
            {"html": '<img src="cid:logo">', "attachments": (logo(),)},
            ("multipart/related", ["text/html", "image/png"]),
        ),
        (
            {"text": "a", "html": '<img src="cid:logo">', "attachments": (logo(),)},
            (
                "multipart/alternative",
                ["text/plain", ("multipart/related", ["text/html", "image/png"])],
            ),
        ),
        (
            {"text": "a", "attachments": (REPORT,)},
            ("multipart/mixed", ["text/plain", "application/pdf"]),
        ),
        (
            {"attachments": (REPORT, REPORT)},
            ("multipart/mixed", ["text/plain", "application/pdf", "application/pdf"]),
        ),
        (
            {"text": "a", "html": "<p>b</p>", "attachments": (REPORT,)},
            (
                "multipart/mixed",
                [("multipart/alternative", ["text/plain", "text/html"]), "application/pdf"],
            ),
        ),
        (
            {"text": "a", "html": "<img src=cid:logo>", "attachments": (logo(), REPORT)},
            (
                "multipart/mixed",
                [
                    (
                        "multipart/alternative",
                        ["text/plain", ("multipart/related", ["text/html", "image/png"])],
                    ),
                    "application/pdf",
                ],
            ),
        ),
        ({"text": "a", "attachments": (logo(),)}, ("multipart/mixed", ["text/plain", "image/png"])),
    ],
)
def test_structures(fields: dict[str, object], expected: object) -> None:
    msg = parse(render_message(make(**fields)))
    assert structure(msg) == expected
    assert msg["MIME-Version"] == "1.0"


def test_full_message_round_trips() -> None:
    message = make(
        to=(BOB, Address(email="carol@example.net", name="Carol")),
        cc=(Address(email="dave@example.com", name="Dave, Jr."),),
        bcc=(Address(email="secret@example.com", name="Hidden"),),
        reply_to=(Address(email="replies@example.com"),),
        text="plain text",
        html='<p>hi <img src="cid:logo"></p>',
        attachments=(logo(), REPORT),
        headers=(("X-Campaign", "spring"), ("X-Campaign", "again")),
        message_id="<abc@example.com>",
    )
    raw = render_message(message)
    msg = parse(raw)
    assert msg["From"] == "Ada Lovelace <ada@example.com>"
    assert [a.addr_spec for a in msg["To"].addresses] == ["bob@example.org", "carol@example.net"]
    assert msg["Cc"].addresses[0].display_name == "Dave, Jr."
    assert msg["Reply-To"] == "replies@example.com"
    assert msg["Bcc"] is None
    assert b"secret@example.com" not in raw and b"Hidden" not in raw
    assert "secret@example.com" in [a.email for a in message.recipients]
    assert msg["Message-ID"] == "<abc@example.com>"
    assert parsedate_to_datetime(msg["Date"]) == DATE
    assert msg.get_all("X-Campaign") == ["spring", "again"]
    assert text_of(msg.get_body(("plain",))) == "plain text\n"
    assert text_of(msg.get_body(("html",))) == '<p>hi <img src="cid:logo"></p>\n'
    image = next(p for p in msg.walk() if p.get_content_type() == "image/png")
    assert image["Content-ID"] == "<logo>"
    assert image.get_content_disposition() == "inline"
    assert image.get_content() == PNG
    (attachment,) = msg.iter_attachments()
    assert attachment.get_filename() == "report.pdf"
    assert attachment.get_content() == REPORT.content


def test_header_order_and_defaults() -> None:
    raw = render_message(EmailMessage(sender=SENDER, to=(BOB,), headers=(("X-A", "1"),)))
    names = [line.split(b":")[0] for line in raw.split(b"\r\n\r\n")[0].split(b"\r\n")]
    assert names[:7] == [
        b"From",
        b"To",
        b"Subject",
        b"Date",
        b"Message-ID",
        b"MIME-Version",
        b"X-A",
    ]
    msg = parse(raw)
    assert re.fullmatch(r"<[0-9a-f]{32}@example\.com>", msg["Message-ID"])
    sent = parsedate_to_datetime(msg["Date"])
    assert abs(sent - datetime.now(UTC)) < timedelta(minutes=1)
    assert msg["Subject"] == ""


# -- body encodings --------------------------------------------------------------------------


def cte(msg: email.message.EmailMessage, subtype: str = "plain") -> str:
    part = msg.get_body((subtype,))
    assert part is not None
    return str(part["Content-Transfer-Encoding"])


def test_ascii_text_is_7bit_and_line_endings_are_crlf() -> None:
    raw = render_message(make(text="one\ntwo\r\nthree\rfour"))
    assert b"\r\n\r\none\r\ntwo\r\nthree\r\nfour\r\n" in raw
    msg = parse(raw)
    assert cte(msg) == "7bit"
    assert text_of(msg) == "one\ntwo\nthree\nfour\n"
    assert msg.get_content_charset() == "utf-8"


@pytest.mark.parametrize(
    "text", ["café", "x" * 999, "a\0b", "emoji 🎉", "x" * 998 + "\n" + "y" * 999]
)
def test_non_ascii_or_long_text_is_quoted_printable(text: str) -> None:
    raw = render_message(make(text=text, html=text))
    msg = parse(raw)
    assert cte(msg) == cte(msg, "html") == "quoted-printable"
    body = raw.split(b"\r\n\r\n", 2)[2]
    assert max(len(line) for line in body.split(b"\r\n") if b"--=_" not in line) <= 76
    assert text_of(msg.get_body(("plain",))) == normalised(text)


def test_exactly_998_octet_lines_stay_7bit() -> None:
    msg = parse(render_message(make(text="x" * 998)))
    assert cte(msg) == "7bit"
    assert text_of(msg) == "x" * 998 + "\n"


def test_attachments_are_base64_in_76_char_lines() -> None:
    data = bytes(range(256)) * 50
    raw = render_message(make(attachments=(Attachment(filename="b.bin", content=data),)))
    payload = raw.split(b'Content-Disposition: attachment; filename="b.bin"\r\n\r\n')[1]
    payload = payload.split(b"\r\n--")[0].rstrip(b"\r\n")
    lines = payload.split(b"\r\n")
    assert all(len(line) == 76 for line in lines[:-1]) and 0 < len(lines[-1]) <= 76
    (att,) = parse(raw).iter_attachments()
    assert att["Content-Transfer-Encoding"] == "base64"
    assert att.get_content() == data
    assert att.get_content_type() == "application/octet-stream"


@pytest.mark.parametrize("size", [0, 1, 2, 3, 56, 57, 58, 114])
def test_attachment_sizes_round_trip(size: int) -> None:
    data = bytes(range(size))
    raw = render_message(make(attachments=(Attachment(filename="x.bin", content=data),)))
    (att,) = parse(raw).iter_attachments()
    assert att.get_content() == data


TRICKY_BODIES = [
    "",
    "\n",
    ".",
    ".\n",
    "..\n.\n",
    "From me\nFrom you\n>From them",
    "x" * 76,
    "x" * 77,
    "é" * 76,
    "x" * 75 + "é",
    "a \nb\t\nc  ",
    "trailing space ",
    "=3D literal = sign=",
    "--=_notaboundary\n--\n",
    "emoji 👩\u200d👩\u200d👧 🎉\n",
    "\n\n\nblank lines\n\n",
    "mixed\r\nendings\rhere\n",
    "long words " + "w" * 300 + " end",
    "日本語のテキスト " * 40,
    "\ttab start",
]


@pytest.mark.parametrize("body", TRICKY_BODIES)
def test_tricky_bodies_round_trip(body: str) -> None:
    for fields in (
        {"text": body},
        {"text": body, "html": body},
        {"html": body, "attachments": (REPORT,)},
    ):
        msg = parse(render_message(make(**fields)))
        for subtype, field in (("plain", "text"), ("html", "html")):
            if field in fields:
                assert text_of(msg.get_body((subtype,))) == normalised(body)


@pytest.mark.parametrize(
    "body", ["a\rb\nc\r\nd", ".\n..\r.x\r\n", "", "no line end", "\n\n.\n", "ü\r.ß\n" * 300]
)
def test_rendered_line_ends_are_canonical(body: str) -> None:
    """Only CRLF, ending with one: SMTP dot-stuffs the rendering without normalising it."""
    data = Attachment(filename="a.bin", content=b"\r\n.\n" * 40)
    for fields in (
        {"text": body},
        {"html": body},
        {"text": body, "html": body},
        {"text": body, "attachments": (data,)},
    ):
        raw = render_message(make(**fields))
        assert dot_stuff(raw, canonical=True) == dot_stuff(raw)


def test_boundaries_never_collide_with_7bit_content() -> None:
    # Boundaries are a per-process prefix and a counter: the next one is known in advance.
    upcoming = copy.copy(_mime._BOUNDARY_SEQUENCE)
    first, second = next(upcoming), next(upcoming)
    taken = f"{_mime._BOUNDARY_PREFIX}.{first:x}"
    text = f"line\n--{taken}\nmore\n"  # the body holds the boundary that would come next
    raw = render_message(make(text=text, html="<p>x</p>"))
    assert f'boundary="{_mime._BOUNDARY_PREFIX}.{second:x}"'.encode() in raw
    assert f'boundary="{taken}"'.encode() not in raw
    assert text_of(parse(raw).get_body(("plain",))) == text


def test_boundaries_differ_per_message() -> None:
    found = {
        re.search(rb'boundary="([^"]+)"', render_message(make(text="a", html="b"))).group(1)  # type: ignore[union-attr]
        for _ in range(20)
    }
    assert len(found) == 20


# -- headers ---------------------------------------------------------------------------------

TRICKY_SUBJECTS = [
    "Hello",
    "",
    "Grüße aus Köln",
    "🎉🎉🎉",
    "emoji at end 🎉",
    "Re: " * 40 + "done",
    "x" * 200,
    "ü" * 200,
    "a " * 60,
    "=?utf-8?q?not_an_encoded_word?=",
    "price =?= 5",
    " leading space",
    "   ",
    "trailing space ",
    "two  spaces  and ü  umlaut",
    "ä  ö",
    "tab\tinside",
    "日本語の件名はとても長いのでいくつかのエンコードされた単語に分割されなければなりません",
    "mixed 日本 and ascii words " * 5,
    "x" * 995,
    'under_score and (parens) and "quotes" and é',
    "a" * 77 + " é",
    "é" + "a" * 77,
    "👩\u200d👩\u200d👧 family",
]


@pytest.mark.parametrize("subject", TRICKY_SUBJECTS)
def test_subjects_round_trip(subject: str) -> None:
    raw = render_message(make(subject=subject))
    assert raw.isascii()
    for word in re.findall(rb"=\?[^?]+\?[bq]\?[^?]*\?=", raw):
        assert len(word) <= 75
    assert parse(raw)["Subject"] == subject


@pytest.mark.parametrize(
    "name",
    [
        "Jörg Müller",
        "Müller, Jörg",
        'Quote "me"',
        "Lovelace, Ada",
        "Zoë 🎉",
        "東京 太郎",
        "a" * 60 + " é " + "b" * 60,
        "=?utf-8?q?x?=",
        "Back\\slash",
        "J. R. R. Tolkien",
    ],
)
def test_display_names_round_trip(name: str) -> None:
    people = (Address(email="x@example.com", name=name), Address(email="y@example.com", name=name))
    raw = render_message(make(sender=people[0], to=people, cc=people[:1]))
    assert raw.isascii()
    msg = parse(raw)
    assert msg["From"].addresses[0].display_name == name
    assert [a.display_name for a in msg["To"].addresses] == [name, name]
    assert [a.addr_spec for a in msg["To"].addresses] == ["x@example.com", "y@example.com"]


@pytest.mark.parametrize(
    "name", ["Jörg Müller-Lüdenscheidt " * 4, "東京 太郎 " * 10, "🎉" * 40, "Zoë, " * 20]
)
def test_long_display_names_split_into_rfc2047_words(name: str) -> None:
    name = name.strip()
    raw = render_message(make(sender=Address(email="x@example.com", name=name)))
    head = raw.split(b"\r\n\r\n")[0].decode("ascii")
    match = re.search(r"^From: (.*?) <x@example\.com>\r?$", head, re.S | re.M)
    assert match is not None
    words = match.group(1).split()
    assert len(words) > 1 and all(len(w) <= 75 for w in words)
    # RFC 2047 6.2: the white space between adjacent encoded-words is not part of the text.
    # (CPython's address parser adds a space there, gh-128110, so decode it the RFC way.)
    assert str(make_header(decode_header(match.group(1)))) == name
    parse(raw)


def test_display_names_keep_plain_words_readable() -> None:
    name = "Société Générale Investment Banking Division Paris"
    raw = render_message(make(sender=Address(email="x@example.com", name=name)))
    assert b"?= Investment Banking Division" in raw
    assert parse(raw)["From"].addresses[0].display_name == name


def test_long_recipient_lists_fold_between_addresses() -> None:
    to = tuple(Address(email=f"user{i}@example.com", name=f"User {i}") for i in range(30))
    raw = render_message(make(to=to))
    msg = parse(raw)
    assert [a.addr_spec for a in msg["To"].addresses] == [a.email for a in to]
    assert raw.count(b"\r\n <user") + raw.count(b"\r\n User") > 5


def test_custom_header_values_are_encoded_and_folded() -> None:
    value = "Köln " * 30
    msg = parse(render_message(make(headers=(("X-Note", value), ("X-Plain", "p " * 50)))))
    assert msg["X-Note"] == value
    assert msg["X-Plain"] == "p " * 50


def test_unicode_domains_are_idna_encoded_in_ascii_mode() -> None:
    raw = render_message(make(to=(Address(email="ada@bücher.de", name="Ada"),)))
    assert b"ada@xn--bcher-kva.de" in raw
    assert parse(raw)["To"].addresses[0].domain == "xn--bcher-kva.de"


def test_utf8_mode_writes_raw_utf8_headers() -> None:
    message = make(
        sender=Address(email="jörg@bücher.de", name="Jörg Müller"),
        to=(Address(email="用户@例子.广告", name="用户"), BOB),
        subject="Grüße 🎉 " * 12,
        text="Schöne Grüße",
        headers=(("X-Note", "café"),),
    )
    with pytest.raises(ValidationError, match="SMTPUTF8"):
        render_message(message)
    raw = render_message(message, utf8=True)
    assert "From: Jörg Müller <jörg@bücher.de>".encode() in raw
    assert "Subject: Grüße 🎉".encode() in raw
    assert b"=?utf-8?" not in raw
    msg = Parser(policy=policy.SMTPUTF8).parsestr(raw.decode("utf-8"))
    assert msg["Subject"] == message.subject
    assert msg["From"].addresses[0].addr_spec == "jörg@bücher.de"
    assert msg["To"].addresses[0].display_name == "用户"
    assert msg["X-Note"] == "café"
    assert text_of(msg) == "Schöne Grüße\n"


def test_utf8_mode_still_encodes_lookalike_encoded_words() -> None:
    raw = render_message(make(subject="=?utf-8?q?x?= ü"), utf8=True)
    msg = Parser(policy=policy.SMTPUTF8).parsestr(raw.decode("utf-8"))
    assert msg["Subject"] == "=?utf-8?q?x?= ü"


# -- file names ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "filename",
    [
        "report.pdf",
        "résumé.pdf",
        "报告.xlsx",
        'quote"and.txt',
        "semi;colon=equals.txt",
        "spaces in name.txt",
        "it's 100% done.txt",
        "a" * 120 + ".txt",
        "é" * 80 + ".txt",
        "🎉" * 30 + ".png",
    ],
)
def test_filenames_round_trip(filename: str) -> None:
    att = Attachment(filename=filename, content=b"data")
    inline = Attachment(filename=filename, content=b"img", inline=True, content_id="c1")
    raw = render_message(make(html="<img src=cid:c1>", attachments=(att, inline)))
    assert raw.isascii()
    msg = parse(raw)
    (part,) = msg.iter_attachments()
    assert part.get_filename() == filename
    assert part.get_param("name") == filename
    image = next(p for p in msg.walk() if p["Content-ID"] == "<c1>")
    assert image.get_filename() == filename
    assert image.get_content_disposition() == "inline"


def test_non_ascii_filenames_use_rfc2231() -> None:
    raw = render_message(make(attachments=(Attachment(filename="é.pdf", content=b""),)))
    assert b"filename*=utf-8''%C3%A9.pdf" in raw


# -- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"sender": None}, "no sender"),
        ({"attachments": (Attachment(filename="a.pdf", path="/tmp/a.pdf"),)}, "not been read"),
        ({"subject": "a\r\nBcc: x@y.z"}, "subject"),
        ({"headers": (("X-A", "a\nb"),)}, "X-A"),
        ({"headers": (("Bad Name", "v"),)}, "header name"),
        ({"headers": (("Bcc", "x@y.z"),)}, "written by xcomm"),
        ({"headers": (("Content-Type", "text/html"),)}, "written by xcomm"),
        ({"to": (Address(email="a@b.com\r\nX: y"),)}, "address"),
        ({"to": (Address(email="a@b.com", name="A\nB"),)}, "display name"),
        ({"to": (Address(email="jörg@example.com"),)}, "SMTPUTF8"),
        ({"message_id": "<a@b>\r\nX: y"}, "Message-ID"),
        ({"attachments": (Attachment(filename="../x", content=b""),)}, "path separator"),
        (
            {"attachments": (Attachment(filename="x", content=b"", content_type="a/b\nX: y"),)},
            "content type",
        ),
        ({"text": "lone \ud800 surrogate"}, "surrogate"),
    ],
)
def test_render_refuses_bad_messages(fields: dict[str, object], match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        render_message(make(**fields))


# -- helpers ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dt", "text"),
    [
        (datetime(2025, 1, 7, 9, 30, 5, tzinfo=UTC), "Tue, 07 Jan 2025 09:30:05 +0000"),
        (datetime(2025, 1, 7, 9, 30, 5), "Tue, 07 Jan 2025 09:30:05 +0000"),
        (
            datetime(2024, 12, 31, 23, 59, 59, tzinfo=timezone(-timedelta(hours=5, minutes=30))),
            "Tue, 31 Dec 2024 23:59:59 -0530",
        ),
        (
            datetime(2024, 2, 29, 0, 0, tzinfo=timezone(timedelta(hours=9))),
            "Thu, 29 Feb 2024 00:00:00 +0900",
        ),
    ],
)
def test_format_date(dt: datetime, text: str) -> None:
    assert format_date(dt) == text
    expected = dt if dt.tzinfo else dt.replace(tzinfo=UTC)
    assert parsedate_to_datetime(text) == expected


def test_new_message_id() -> None:
    ids = {new_message_id("example.com") for _ in range(100)}
    assert len(ids) == 100
    assert all(re.fullmatch(r"<[0-9a-f]{32}@example\.com>", i) for i in ids)
    assert new_message_id("bücher.de").endswith("@xn--bcher-kva.de>")
    with pytest.raises(ValidationError):
        new_message_id("bad domain")


# -- property-style --------------------------------------------------------------------------

ALPHABET = (
    "abcXYZ019 .,;:!?'\"\\()<>[]@=_-%*/+&#~`|{}^$" + "  " + "éüßøñ" + "日本語" + "🎉👍" + "\u200d"
)


def random_text(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(ALPHABET) for _ in range(n))


def test_random_messages_round_trip() -> None:
    rng = random.Random(20250107)
    for _ in range(250):
        subject = random_text(rng, rng.randint(0, 160))
        # names short enough for one encoded-word: CPython's address parser (gh-128110,
        # unfixed in 3.11) adds a space between adjacent encoded-words in a display name
        # and collapses runs of spaces inside an encoded display name
        name = " ".join(random_text(rng, rng.randint(1, 10)).split()) or "x"
        filename = random_text(rng, rng.randint(1, 90)).replace("/", "_").replace("\\", "_")
        filename = filename.strip() or "f"
        if filename in (".", "..") or filename[0] + filename[-1] in ("<>", '""'):
            filename = "f" + filename  # get_filename() strips <...> and "..." (email.utils.unquote)
        body = random_text(rng, rng.randint(0, 400)) + "\n" * rng.randint(0, 2)
        data = rng.randbytes(rng.randint(0, 300))
        message = make(
            sender=Address(email="ada@example.com", name=name),
            to=(Address(email="b@example.com", name=name[::-1].strip() or None),),
            subject=subject,
            text=body,
            html=f"<p>{body}</p>",
            attachments=(Attachment(filename=filename, content=data),),
            headers=(("X-Random", subject),),
        )
        raw = render_message(message)
        assert raw.isascii()
        # what SMTP relies on to skip normalising line endings before DATA
        assert dot_stuff(raw, canonical=True) == dot_stuff(raw)
        msg = parse(raw)
        assert msg["Subject"] == subject
        assert msg["X-Random"] == subject
        assert msg["From"].addresses[0].display_name == name
        assert text_of(msg.get_body(("plain",))) == normalised(body)
        (att,) = msg.iter_attachments()
        assert att.get_filename() == filename
        assert att.get_content() == data


def test_random_utf8_messages_round_trip() -> None:
    rng = random.Random(6532)
    for _ in range(200):
        subject = random_text(rng, rng.randint(0, 160))
        name = " ".join(random_text(rng, rng.randint(1, 30)).split()) or "x"
        local = rng.choice(["jörg", "用户", "ada", "zoë.ñ"])
        message = make(
            sender=Address(email=f"{local}@bücher.de", name=name),
            to=(Address(email="b@example.com", name=name),),
            subject=subject,
            text=subject,
        )
        raw = render_message(message, utf8=True)
        assert dot_stuff(raw, canonical=True) == dot_stuff(raw)
        head = raw.split(b"\r\n\r\n")[0]
        assert max(len(line.decode("utf-8")) for line in head.split(b"\r\n")) <= 998
        msg = Parser(policy=policy.SMTPUTF8).parsestr(raw.decode("utf-8"))
        for part in msg.walk():
            assert not part.defects
        assert msg["Subject"] == subject
        assert msg["From"].addresses[0].display_name == name
        assert msg["From"].addresses[0].addr_spec == f"{local}@bücher.de"
        assert msg["To"].addresses[0].display_name == name


def test_format_date_same_instant_in_other_zones_is_not_confused() -> None:
    utc = datetime(2025, 1, 7, 9, 30, 5, tzinfo=UTC)
    lisbon_winter = utc.astimezone(timezone(timedelta(hours=1)))
    assert utc == lisbon_winter  # equal datetimes, different Date headers
    for _ in range(2):  # the second round is answered from the cache
        assert format_date(utc) == "Tue, 07 Jan 2025 09:30:05 +0000"
        assert format_date(lisbon_winter) == "Tue, 07 Jan 2025 10:30:05 +0100"
        assert format_date(utc.replace(tzinfo=None)) == "Tue, 07 Jan 2025 09:30:05 +0000"


@pytest.mark.parametrize(
    "addresses",
    [
        (BOB,),
        (SENDER,),
        (Address(email="ada@b\u00fccher.example", name="Ada"),),
        (Address(email="x" * 60 + "@" + "y" * 60 + ".example"),),
        (BOB, SENDER),
        (Address(email="bob@example.org", name=""),),
    ],
)
@pytest.mark.parametrize("name", ["From", "To", "Cc"])
def test_address_headers_match_the_general_layout(
    addresses: tuple[Address, ...], name: str
) -> None:
    general = _mime._layout(name, _mime._address_tokens(addresses, False))
    for _ in range(2):  # a named sender is answered from the cache the second time
        assert _mime._address_header(name, addresses, False) == general


@pytest.mark.parametrize(
    "address",
    [
        Address(email="bob@example.org\r\nBcc: eve@example.org"),
        Address(email="bob@example.org", name="Bob\r\nBcc: eve@example.org"),
    ],
)
@pytest.mark.parametrize("field", ["sender", "to"])
def test_one_address_with_a_line_break_is_refused(address: Address, field: str) -> None:
    with pytest.raises(ValidationError, match="control character"):
        render_message(make(**{field: address if field == "sender" else (address,)}))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork() is POSIX")
def test_a_forked_process_makes_boundaries_of_its_own() -> None:
    # bulk helpers are forked from one zygote: their messages must not share boundaries
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.write(write, _mime._new_boundary([]).encode())
        os._exit(0)
    os.close(write)
    theirs = os.read(read, 200).decode()
    os.close(read)
    os.waitpid(pid, 0)
    ours = _mime._new_boundary([])
    assert theirs and theirs.rpartition(".")[0] != ours.rpartition(".")[0]
