"""The pure IMAP parsers: S-expressions, BODYSTRUCTURE, headers, folder names, FETCH records.

The fuzz tests feed random bytes and mutated real responses: nothing may raise.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings, strategies as st

from xcomm import Address
from xcomm.email._headers import (
    decode_body,
    decode_words,
    message_ids,
    parse_addresses,
    parse_date,
    parse_header_block,
)
from xcomm.email._imap_fetch import body_section, messages_from_fetch, uid_set
from xcomm.email._imap_parse import (
    body_parts,
    decode_folder,
    encode_folder,
    fetch_records,
    parse_bodystructure,
    parse_list,
    tokenize,
)

MIXED = (
    b'((("TEXT" "PLAIN" ("CHARSET" "iso-8859-1") NIL NIL "QUOTED-PRINTABLE" 35 1 NIL NIL NIL '
    b'NIL)("TEXT" "HTML" ("CHARSET" "utf-8") NIL NIL "BASE64" 36 1 NIL NIL NIL NIL) '
    b'"ALTERNATIVE" ("BOUNDARY" "ALT") NIL NIL NIL)'
    b'("APPLICATION" "PDF" ("NAME" "report (final).pdf") NIL NIL "BASE64" 12 NIL '
    b'("ATTACHMENT" ("FILENAME" "report (final).pdf")) NIL NIL)'
    b'("TEXT" "PLAIN" ("CHARSET" "utf-8") NIL NIL "7BIT" 5 1 NIL ("ATTACHMENT" '
    b'("FILENAME*" "utf-8\'\'r%C3%A9sum%C3%A9.txt")) NIL NIL)'
    b'("IMAGE" "PNG" NIL "<logo@x>" NIL "BASE64" 100 NIL ("INLINE" NIL) NIL NIL)'
    b' "MIXED" ("BOUNDARY" "OUT") NIL NIL NIL)'
)

HEADER = (
    b"Subject: =?utf-8?q?caf=C3=A9?=\r\nFrom: Ann <ann@example.com>\r\n"
    b"Date: 3 Nov 2025 10:00 +0100\r\n\r\n"
)
FETCH = (
    b'1 FETCH (UID 7 FLAGS (\\Seen $Important) INTERNALDATE "03-Nov-2025 10:00:00 +0100" '
    b"RFC822.SIZE 630 BODYSTRUCTURE "
    + MIXED
    + b" BODY[HEADER] {%d}\r\n" % len(HEADER)
    + HEADER
    + b")\r\n2 FETCH (UID 9 FLAGS () BODY[HEADER] {0}\r\n)"
)


# -- tokenizer ------------------------------------------------------------------------------


def test_tokenize_atoms_strings_nil_lists_and_literals() -> None:
    values, _ = tokenize(b'(A "b \\"q\\"" NIL (x {3}\r\nabc) BODY[HEADER.FIELDS (TO)]<0> "")')
    assert values == [[b"A", b'b "q"', None, [b"x", b"abc"], b"BODY[HEADER.FIELDS (TO)]<0>", b""]]


def test_tokenize_closes_what_unbalanced_input_left_open() -> None:
    assert tokenize(b"(a (b")[0] == [[b"a", [b"b"]]]
    assert tokenize(b"a) b {99}\r\nshort")[0] == [b"a", b"b", b"short"]


def test_an_absurd_literal_size_is_no_literal_and_no_crash() -> None:
    huge = b"9" * 5000  # int() of more than 4,300 digits raises ValueError
    values, _ = tokenize(b"(a {" + huge + b"}\r\nrest)")
    assert values == [[b"a", b"{" + huge + b"}", b"rest"]]
    line = b"* 1 FETCH (UID 5 BODY[] {" + huge + b"}\r\nxyz)\r\n"
    [record] = fetch_records(line)
    assert record["UID"] == b"5"


def test_fetch_records_read_each_message_and_skip_other_lines() -> None:
    records = list(fetch_records(b"3 EXISTS\r\n" + FETCH))
    assert [r["UID"] for r in records] == [b"7", b"9"]
    assert records[0]["FLAGS"] == [b"\\Seen", b"$Important"]
    assert records[1]["BODY[HEADER]"] == b""


# -- BODYSTRUCTURE ----------------------------------------------------------------------------


def test_bodystructure_sections_bodies_and_attachments() -> None:
    parts = parse_bodystructure(tokenize(MIXED)[0][0])
    assert [(p.section, p.content_type) for p in parts] == [
        ("1.1", "text/plain"),
        ("1.2", "text/html"),
        ("2", "application/pdf"),
        ("3", "text/plain"),
        ("4", "image/png"),
    ]
    text, html, attachments = body_parts(parts)
    assert text is not None and (text.section, text.params["charset"]) == ("1.1", "iso-8859-1")
    assert html is not None and html.encoding == "base64"
    assert [(a.filename, a.disposition) for a in attachments] == [
        ("report (final).pdf", "attachment"),
        ("résumé.txt", "attachment"),
        (None, "inline"),
    ]
    assert attachments[2].content_id == "<logo@x>"


def test_a_single_part_message_is_part_one() -> None:
    (part,) = parse_bodystructure(tokenize(b'("TEXT" "PLAIN" NIL NIL NIL "7BIT" 4 1)')[0][0])
    assert (part.section, part.content_type, part.size) == ("1", "text/plain", 4)


def test_encoded_and_continued_file_names() -> None:
    structure = (
        b'("APPLICATION" "OCTET-STREAM" ("NAME" "=?utf-8?B?w6lsw6hu?=.bin") NIL NIL "BASE64" 4 '
        b'NIL ("ATTACHMENT" ("FILENAME*0*" "utf-8\'\'%C3%A9" "FILENAME*1" "t%C3%A9.txt")) NIL)'
    )
    (part,) = parse_bodystructure(tokenize(structure)[0][0])
    assert part.filename == "ét%C3%A9.txt"  # only pieces marked with * are percent-encoded
    assert part.params["name"] == "élèn.bin"


def test_an_attached_message_is_one_attachment() -> None:
    structure = (
        b'(("TEXT" "PLAIN" NIL NIL NIL "7BIT" 2 1 NIL NIL NIL NIL)("MESSAGE" "RFC822" NIL NIL '
        b'NIL "7BIT" 300 (NIL "inner" NIL NIL NIL NIL NIL NIL NIL NIL) ("TEXT" "PLAIN" NIL NIL '
        b'NIL "7BIT" 2 1) 10 NIL ("ATTACHMENT" NIL) NIL NIL) "MIXED")'
    )
    parts = parse_bodystructure(tokenize(structure)[0][0])
    assert [(p.section, p.content_type, p.disposition) for p in parts] == [
        ("1", "text/plain", None),
        ("2", "message/rfc822", "attachment"),
    ]


# -- headers ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "decoded"),
    [
        ("=?utf-8?Q?caf=C3=A9?=", "café"),
        ("=?UTF-8?B?Y2Fmw6k=?= au =?utf-8?q?lait?=", "café au lait"),
        ("=?utf-8?B?w6k=?=  =?utf-8?B?w6k=?=", "éé"),  # whitespace between words dropped
        ("=?utf-8?B?4oK=?= =?utf-8?B?rA==?=", "€"),  # a character split across two words
        ("=?iso-8859-1*fr?Q?caf=E9?=", "café"),  # RFC 2231 language suffix
        ("=?x-unknown?Q?caf=E9?=", "caf\ufffd"),
        ("=?utf-8?B?###?=", "=?utf-8?B?###?="),
        ("plain text", "plain text"),
    ],
)
def test_decode_words(raw: str, decoded: str) -> None:
    assert decode_words(raw) == decoded


def test_header_block_unfolds_skips_garbage_and_keeps_the_first() -> None:
    fields = parse_header_block(
        b"Subject: one\r\n two\r\nnot a header\r\nSubject: second\r\nX-8bit: caf\xe9\r\n\r\nbody"
    )
    assert fields == {"subject": "one two", "x-8bit": "café"}


def test_addresses_dates_and_ids_are_read_leniently() -> None:
    assert parse_addresses('"=?utf-8?q?Jos=C3=A9?=" <jose@x.org>, bob@y.org, ,,') == (
        Address(email="jose@x.org", name="José"),
        Address(email="bob@y.org"),
    )
    assert parse_addresses("<<<>>>") == ()
    assert parse_date("Mon, 03 Nov 2025 10:00:00 +0100") == datetime(2025, 11, 3, 9, tzinfo=UTC)
    naive = parse_date("Mon, 03 Nov 2025 10:00:00 -0000")
    assert naive is not None and naive.utcoffset() == timedelta(0)
    assert parse_date("yesterday") is None and parse_date(None) is None
    assert message_ids("<a@x> <b@y>\t<c@z>") == ("<a@x>", "<b@y>", "<c@z>")
    assert message_ids("bare-id@x") == ("bare-id@x",)


def test_bodies_are_decoded_whatever_the_encoding() -> None:
    assert decode_body(b"caf=E9=\r\n!", "quoted-printable", "latin-1") == "café!"
    assert decode_body(b"Y2Fm\r\nw6k", "base64", "utf-8") == "café"  # padding missing
    assert decode_body(b"@@@", "base64", "utf-8") == ""
    assert decode_body(b"caf\xe9", "8bit", "no-such-charset") == "caf\ufffd"


# -- folders, LIST, UID sets ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "encoded"),
    [
        ("INBOX", "INBOX"),
        ("Entwürfe", "Entw&APw-rfe"),
        ("A & B", "A &- B"),
        ("日本語", "&ZeVnLIqe-"),
        ("~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"),  # RFC 3501's example
    ],
)
def test_modified_utf7_round_trip(name: str, encoded: str) -> None:
    assert encode_folder(name) == encoded
    assert decode_folder(encoded) == name


def test_list_lines_with_quoted_literal_and_nil_delimiters() -> None:
    data = b'(\\HasNoChildren) "." INBOX\r\n(\\Noselect) NIL "Entw&APw-rfe"\r\n() "/" {4}\r\na b)'
    assert parse_list(data) == [
        (("\\HasNoChildren",), ".", "INBOX"),
        (("\\Noselect",), None, "Entwürfe"),
        ((), "/", "a b)"),
    ]


def test_uid_sets_and_sections() -> None:
    assert uid_set([10, 1, 2, 3, 7, 9, 3]) == "1:3,7,9:10"
    assert body_section("1.2") == "(BODY.PEEK[1.2])"
    with pytest.raises(ValueError):
        body_section("1] BODY[")


def test_a_message_is_built_from_a_fetch_response() -> None:
    first, second = messages_from_fetch(FETCH, folder="INBOX", uid_validity=5)
    assert (first.uid, first.subject, first.sender, first.sender_name) == (
        7,
        "café",
        "ann@example.com",
        "Ann",
    )
    assert first.received_at == datetime(2025, 11, 3, 9, tzinfo=UTC)
    assert first.size == 630 and first.is_read
    assert [a.filename for a in first.attachments] == ["report (final).pdf", "résumé.txt", None]
    assert first.attachments[2].inline
    assert first.text_part is not None and first.text_part.charset == "iso-8859-1"
    assert (second.uid, second.subject, second.date, second.attachments) == (9, "", None, ())


# -- fuzz -------------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_random_bytes_never_raise(data: bytes) -> None:
    list(messages_from_fetch(data, folder="INBOX", uid_validity=None))
    parse_bodystructure(tokenize(data)[0] or None)
    parse_header_block(data)
    parse_list(data)
    decode_body(data, "base64", "utf-8")
    decode_body(data, "quoted-printable", "x-bad")
    text = data.decode("utf-8", "replace")
    decode_words(text)
    parse_addresses(text)
    parse_date(text)
    decode_folder(text)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mutated_fetch_responses_never_raise(data: st.DataObject) -> None:
    raw = bytearray(FETCH)
    for _ in range(data.draw(st.integers(1, 8))):
        at = data.draw(st.integers(0, len(raw) - 1))
        action = data.draw(st.sampled_from(["delete", "insert", "replace"]))
        chunk = data.draw(st.sampled_from([b"(", b")", b'"', b"{5}\r\n", b"NIL", b"\\", b"\xff"]))
        if action == "delete":
            del raw[at : at + len(chunk)]
        elif action == "insert":
            raw[at:at] = chunk
        else:
            raw[at : at + len(chunk)] = chunk
    for message in messages_from_fetch(bytes(raw), folder="INBOX", uid_validity=None):
        assert message.uid > 0


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60))
def test_any_folder_name_round_trips(name: str) -> None:
    assert decode_folder(encode_folder(name)) == name
    assert encode_folder(name).isascii()
