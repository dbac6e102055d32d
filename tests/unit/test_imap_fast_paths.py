"""The fast paths of reading mail agree with the slow, general readers they stand in for.

Each fast reader handles the usual shapes and hands anything else to the general one, so
each test generates both: the usual shapes (which must take the fast path) and garbage
around them (which must come out the same either way).

- the FETCH tokenizer (one regular-expression match per token) against the byte-at-a-time
  reader it replaced (`imap_reference.py`);
- header blocks read in one pass against the line-by-line reader;
- `Name <a@b>` address lists against `email.utils.getaddresses`;
- RFC 2047 Q-encoded words decoded by `binascii` against the `=XX` substitution;
- RFC 5322 dates against `email.utils.parsedate_to_datetime`, and INTERNALDATE against
  `datetime.strptime`.
"""

from __future__ import annotations

import string
from datetime import datetime
from email.utils import getaddresses

import imap_reference
from hypothesis import HealthCheck, example, given, settings, strategies as st

from xcomm.email._headers import (
    _CLEAN_BLOCK,
    _clean_header_block,
    _header_lines,
    _q_bytes,
    _rfc5322_date,
    _simple_addresses,
    _stdlib_date,
    _word_bytes,
    parse_addresses,
    parse_date,
    parse_header_block,
)
from xcomm.email._imap_fetch import _internaldate, _usual_internaldate
from xcomm.email._imap_parse import fetch_records, tokenize

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))

# -- the FETCH tokenizer ----------------------------------------------------------------------

FETCH = (
    b'* 1 FETCH (UID 7 FLAGS (\\Seen $Important) INTERNALDATE "03-Nov-2025 10:00:00 +0100" '
    b'RFC822.SIZE 630 BODYSTRUCTURE (("text" "plain" ("charset" "utf-8") NIL NIL "8bit" 446 4 '
    b'NIL NIL NIL NIL)("text" "html" ("charset" "utf-8") NIL NIL "8bit" 499 0 NIL NIL NIL NIL) '
    b'"alternative" ("boundary" "alt") NIL NIL NIL) BODY[HEADER.FIELDS (FROM TO)]<0> {13}\r\n'
    b"From: a@b\r\n\r\n BODY[1] {3+}\r\nabc)\r\n2 fetch (UID 9 FLAGS () X {0}\r\n)\r\n"
)
PIECES = [
    b"(", b")", b'"', b"\\", b"{", b"}", b"[", b"]", b"<0>", b" ", b"\t", b"\r", b"\n", b"\r\n",
    b"{3}\r\n", b"{0}\r\n", b"{2+}\n", b"{x}", b"NIL", b"nil", b"NiL", b"FETCH", b"fetch",
    b"7", b"42", b"BODY", b"UID", b"a", b'"a b"', b'"a\\"b"', b'""', b"\xff", b"\x00", b"\x0b",
    b"(" * 70, b")" * 70,
]  # fmt: skip


def _mutated(draw: st.DrawFn) -> bytes:
    raw = bytearray(FETCH)
    for _ in range(draw(st.integers(0, 6))):
        at = draw(st.integers(0, len(raw)))
        chunk = draw(st.sampled_from(PIECES))
        if draw(st.booleans()):
            raw[at:at] = chunk
        else:
            del raw[at : at + len(chunk)]
    return bytes(raw)


imap_bytes = st.one_of(
    st.lists(st.sampled_from(PIECES) | st.binary(max_size=4), max_size=40).map(b"".join),
    st.composite(_mutated)(),
)


@FUZZ
@given(imap_bytes, st.integers(0, 8), st.booleans())
@example(FETCH, 0, False)
@example(b"BODY[a[b]c] x", 0, True)
@example(b"BODY[abc\r\n] {5}x", 0, False)
def test_tokenize_agrees_with_the_byte_at_a_time_reader(data: bytes, pos: int, one: bool) -> None:
    assert tokenize(data, pos, one=one) == imap_reference.tokenize(data, pos, one=one)


@FUZZ
@given(imap_bytes)
def test_fetch_records_agree_with_the_byte_at_a_time_reader(data: bytes) -> None:
    assert list(fetch_records(data)) == list(imap_reference.fetch_records(data))


def test_fetch_records_of_a_real_shaped_response() -> None:
    first, second = fetch_records(FETCH[2:])
    assert first["BODY[HEADER.FIELDS (FROM TO)]<0>"] == b"From: a@b\r\n\r\n"
    assert first["BODY[1]"] == b"abc"
    assert first["FLAGS"] == [b"\\Seen", b"$Important"]
    assert second == {"UID": b"9", "FLAGS": [], "X": b""}


# -- header blocks ----------------------------------------------------------------------------

NAMES = ["Subject", "From", "To", "subject", "X-Spam_Score!", "A" * 200, "Date", "Received"]
VALUE_PIECES = st.sampled_from(
    [*"ab =?:<>@,\"'()\t\r", "\x0b", "\x1c", "\x85", "\xa0", "é", "Grüße", "日本", "\udcff"]
)


def _text(max_size: int) -> st.SearchStrategy[str]:
    return st.lists(VALUE_PIECES, max_size=max_size).map("".join)


@st.composite
def header_blocks(draw: st.DrawFn) -> bytes:
    """Well-formed blocks (each line a field or a folded continuation), 8-bit values in
    UTF-8 or Latin-1 and odd whitespace included."""
    newline = draw(st.sampled_from([b"\r\n", b"\n"]))
    lines = []
    for _ in range(draw(st.integers(1, 8))):
        name = draw(st.sampled_from(NAMES) | st.text(string.ascii_letters + "-", min_size=1))
        value = draw(_text(30))
        codec = draw(st.sampled_from(["utf-8", "latin-1"]))
        raw = value.encode(codec, "replace").replace(b"\n", b" ")
        lines.append(name.encode() + b":" + raw)
        for _ in range(draw(st.integers(0, 2))):
            fold = draw(_text(10)).encode("utf-8", "replace")
            lines.append(draw(st.sampled_from([b" ", b"\t"])) + fold.replace(b"\n", b" "))
    return newline.join(lines)


@FUZZ
@given(header_blocks())
def test_a_clean_block_is_read_in_one_pass_as_line_by_line(block: bytes) -> None:
    block = block.replace(b"\r\n\r\n", b"\r\n \r\n")  # a blank line would end the block
    assert _CLEAN_BLOCK.fullmatch(block)
    assert _clean_header_block(block) == _header_lines(block)
    assert parse_header_block(block + b"\r\n\r\nbody") == _header_lines(block)


@FUZZ
@given(
    st.lists(
        header_blocks()
        | st.sampled_from(
            [b"garbage", b"Key : v", b" fold", b"\r\n\r\n", b"\n\n", b":x", b"B" * 201 + b": v"]
        )
        | st.binary(max_size=6),
        max_size=4,
    ).map(b"\n".join)
)
def test_any_block_is_read_as_line_by_line(raw: bytes) -> None:
    end = raw.find(b"\r\n\r\n")
    if end < 0:
        end = raw.find(b"\n\n")
    assert parse_header_block(raw) == _header_lines(raw[: end if end >= 0 else len(raw)])


# -- addresses --------------------------------------------------------------------------------

ATEXT = string.ascii_letters + string.digits + "!#$%&'*+/=?^_`{|}~-"
atoms = st.text(ATEXT, min_size=1, max_size=6)
addr_specs = st.builds("{}@{}".format, atoms, st.sampled_from(["example.com", "x.org", "a-b.c"]))
names = st.one_of(
    st.lists(
        atoms | st.just("J.R.") | st.just("=?utf-8?q?Jos=C3=A9?="), min_size=1, max_size=3
    ).map(" ".join),
    st.lists(atoms, min_size=2, max_size=3).map("  ".join),
    st.text(st.sampled_from([*'ab ,;:<>@.()\\"é\t']), max_size=8).map(lambda s: f'"{s}"'),
)
addresses = st.one_of(
    addr_specs,
    st.builds("{} <{}>".format, names, addr_specs),
    st.builds("<{}>".format, addr_specs),
    st.builds("{}  <{}>".format, names, addr_specs),
    st.builds("{} ({})".format, addr_specs, atoms),
    st.sampled_from(["undisclosed-recipients:;", "a@b@c", "a@", "@b", "<>", "a@b.", "a..b@c.d"]),
    st.text(st.sampled_from([*'ab@<>"(),;:. \t\\é']), max_size=10),
)
address_lists = st.lists(addresses, max_size=4).flatmap(
    lambda items: st.sampled_from([", ", ",", " , ", ",, ", " "]).map(lambda sep: sep.join(items))
)


@FUZZ
@given(address_lists)
@example('"Sender 0" <sender0@example.com>')
@example("me@example.com, Bob <bob@x.org>,")
@example('"Last, First" <a@b.c>, "" <c@d.e>')
def test_simple_address_lists_are_read_as_the_stdlib_reads_them(value: str) -> None:
    fast = _simple_addresses(value)
    if fast is not None:
        assert fast == getaddresses([value])
    pairs = getaddresses([value])
    fast_or_slow = parse_addresses(value)
    assert [a.email for a in fast_or_slow] == [e.strip() for _, e in pairs if e.strip()]


def test_the_usual_address_shapes_take_the_fast_path() -> None:
    for value in [
        "a@b.c",
        "<a@b.c>",
        "Ann Lee <ann@x.org>",
        '"Lee, Ann" <ann@x.org>, bob@y.org',
        "=?utf-8?q?Jos=C3=A9?= <jose@x.org>",
    ]:
        assert _simple_addresses(value) == getaddresses([value])
    assert _simple_addresses("a@b.c (comment)") is None
    assert _simple_addresses("group: a@b.c;") is None


# -- encoded words ----------------------------------------------------------------------------

Q_TEXT = st.lists(
    st.sampled_from(
        [chr(c) for c in range(33, 127) if chr(c) != "?"]
        + ["=C3", "=a9", "=3D", "=5F", "=20", "=00", "=FF", "=0D", "=", "é", "\x01"]
    ),
    max_size=20,
).map("".join)


@FUZZ
@given(Q_TEXT)
@example("=230_quarterly_notes_Gr=C3=BC=C3=9Fe")
@example("caf=E9=")
def test_q_words_are_decoded_as_by_the_escape_substitution(text: str) -> None:
    assert _word_bytes("Q", text) == _q_bytes(text.encode("ascii", "replace"))


# -- dates ------------------------------------------------------------------------------------


def _same_instant_and_zone(a: datetime | None, b: datetime | None) -> bool:
    if a is None or b is None:
        return a is b
    return a == b and a.utcoffset() == b.utcoffset() and a.tzinfo == b.tzinfo


def _two(low: int, high: int) -> st.SearchStrategy[str]:
    """Mostly two digits in `low..high`, sometimes one."""
    two = st.integers(low, high).map(lambda n: f"{n:02d}")
    return st.one_of(two, two, two, st.integers(0, 9).map(str))


MONTH_NAMES = ["Jan", "Feb", "Nov", "Dec", "jan", "NOV", "Foo", "June"]
numeric_zones = st.builds("{}{}{}".format, st.sampled_from("+-"), _two(0, 29), _two(0, 99))
zones = st.one_of(
    numeric_zones,
    numeric_zones,
    st.sampled_from(["-0000", "+0000", "GMT", "EST", "Z", "+01:00", "", "+2400"]),
)
rfc5322_dates = st.builds(
    "{}{} {} {} {}:{}{} {}{}".format,
    st.sampled_from(["", "Mon, ", "Sun, ", "Xyz, ", "Mon ", "Mon,"]),
    _two(0, 39),
    st.sampled_from(MONTH_NAMES),
    st.integers(0, 9999).map(lambda y: f"{y:04d}") | st.integers(0, 99).map(str),
    _two(0, 29),
    _two(0, 69),
    st.sampled_from(["", ":"]).flatmap(
        lambda c: _two(0, 69).map(lambda s: c + s) if c else st.just("")
    ),
    zones,
    st.sampled_from(["", " (UTC)", "(CET)", " extra words", "  ", "\n"]),
)


@FUZZ
@given(rfc5322_dates | st.text(max_size=40))
@example("Wed, 01 Jan 2025 00:00:00 +0000")
@example("3 Nov 2025 10:00 -0000")
@example("Mon, 31 Feb 2025 10:00:00 +0100")
@example("Mon, 03 Nov 0099 10:00:00 +0100")
def test_dates_are_read_as_the_stdlib_reads_them(value: str) -> None:
    assert _same_instant_and_zone(parse_date(value), _stdlib_date(value))


def test_the_usual_date_shapes_take_the_fast_path() -> None:
    for value in ["Wed, 01 Jan 2025 00:00:00 +0000", "3 Nov 2025 10:00 -0130 (CET)"]:
        fast = _rfc5322_date(value)
        assert fast is not None and _same_instant_and_zone(fast, _stdlib_date(value))


def _strptime(token: bytes) -> datetime | None:
    try:
        return datetime.strptime(token.decode("ascii").strip(), "%d-%b-%Y %H:%M:%S %z")
    except (UnicodeDecodeError, ValueError):
        return None


internaldates = st.builds(
    "{}{}-{}-{} {}:{}:{} {}".format,
    st.sampled_from(["", " "]),
    _two(0, 39),
    st.sampled_from(MONTH_NAMES),
    st.integers(0, 9999).map(lambda y: f"{y:04d}"),
    _two(0, 29),
    _two(0, 69),
    _two(0, 69),
    zones,
).map(str.encode)


@FUZZ
@given(internaldates | st.binary(max_size=30))
@example(b"21-Nov-2026 23:17:54 +0000")
@example(b" 3-Nov-2025 10:00:00 -0130")
def test_internaldates_are_read_as_strptime_reads_them(token: bytes) -> None:
    assert _same_instant_and_zone(_internaldate(token), _strptime(token))
    if token == b"21-Nov-2026 23:17:54 +0000":
        assert _usual_internaldate(token) is not None
