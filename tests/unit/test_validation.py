"""Address parsing, header checks, file names: every rule with good and bad inputs."""

from __future__ import annotations

from email.headerregistry import Address as StdAddress
from email.parser import BytesParser
from email.policy import default

import pytest
from hypothesis import given, settings, strategies as st

from xcomm import _validation
from xcomm._errors import ValidationError
from xcomm._models import Address
from xcomm._validation import (
    ascii_domain,
    ascii_email,
    check_content_id,
    check_content_type,
    check_custom_header,
    check_header_name,
    check_header_value,
    check_no_crlf,
    needs_smtputf8,
    parse_address,
    quote_display_name,
    safe_attachment_filename,
)

# -- addresses -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "email", "name"),
    [
        ("ada@example.com", "ada@example.com", None),
        ("  ada@example.com  ", "ada@example.com", None),
        ("<ada@example.com>", "ada@example.com", None),
        ("Ada <ada@example.com>", "ada@example.com", "Ada"),
        ("Ada Lovelace <ada@example.com>", "ada@example.com", "Ada Lovelace"),
        ("Ada<ada@example.com>", "ada@example.com", "Ada"),
        ('"Lovelace, Ada" <ada@example.com>', "ada@example.com", "Lovelace, Ada"),
        ('"Ada \\"the Countess\\"" <ada@example.com>', "ada@example.com", 'Ada "the Countess"'),
        ('"a\\\\b" <ada@example.com>', "ada@example.com", "a\\b"),
        ('"" <ada@example.com>', "ada@example.com", None),
        ("J. Q. Public <jq@example.com>", "jq@example.com", "J. Q. Public"),
        ("Jörg Müller <joerg@example.com>", "joerg@example.com", "Jörg Müller"),
        ("first.last+tag@sub.example.co.uk", "first.last+tag@sub.example.co.uk", None),
        ("a!#$%&'*+/=?^_`{|}~-z@example.com", "a!#$%&'*+/=?^_`{|}~-z@example.com", None),
        ('"john doe"@example.com', '"john doe"@example.com', None),
        ('"a@b"@example.com', '"a@b"@example.com', None),
        ('"a\\"b"@example.com', '"a\\"b"@example.com', None),
        ("user@localhost", "user@localhost", None),
        ("x@a-b.example", "x@a-b.example", None),
        ("UPPER@Example.COM", "UPPER@Example.COM", None),
        ("jörg@bücher.de", "jörg@bücher.de", None),
        ("用户@例子.广告", "用户@例子.广告", None),
        ("a@[192.0.2.1]", "a@[192.0.2.1]", None),
        ("a@[IPv6:2001:db8::1]", "a@[IPv6:2001:db8::1]", None),
        ("a@" + "x" * 63 + ".com", "a@" + "x" * 63 + ".com", None),
        ("l" * 64 + "@example.com", "l" * 64 + "@example.com", None),
    ],
)
def test_parse_address_accepts(text: str, email: str, name: str | None) -> None:
    assert parse_address(text) == Address(email=email, name=name)
    assert Address.parse(text) == Address(email=email, name=name)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("ada.example.com", "missing '@'"),
        ("@example.com", "empty local part"),
        ("ada@", "empty domain"),
        ("ada @example.com", "spaces"),
        ("ada@exa mple.com", "spaces"),
        ("a..b@example.com", "'..'"),
        (".ab@example.com", "'..'"),
        ("ab.@example.com", "'..'"),
        ("ada@example..com", "empty label"),
        ("ada@.example.com", "starts or ends"),
        ("ada@example.com.", "starts or ends"),
        ("ada@-example.com", "domain label"),
        ("ada@example-.com", "domain label"),
        ("ada@ex_ample.com", "domain label"),
        ("ada@" + "x" * 64 + ".com", "domain label"),
        ("l" * 65 + "@example.com", "64 octets"),
        ("a@" + ".".join(["x" * 60] * 5), "254"),
        ("Ada <ada@example.com", "angle brackets"),
        ("Ada ada@example.com>", "'>' without '<'"),
        ("Ada <<ada@example.com>>", "angle brackets"),
        ("<ada@example.com", "angle brackets"),
        ("Ada <ada@example.com> x", "angle brackets"),
        ("Lovelace, Ada <ada@example.com>", "must be quoted"),
        ("Ada (Countess) <ada@example.com>", "must be quoted"),
        ('"Ada <ada@example.com>', "not closed"),
        ('"Ada" x <ada@example.com>', "after the quoted name"),
        ("a@b.com, c@d.com", "separate arguments"),
        ("a@b.com,c@d.com", "separate arguments"),
        ("a,b@example.com", "separate arguments"),
        ("a(b)@example.com", "must be quoted"),
        ('a"b@example.com', "must be quoted"),
        ('""@example.com', "quoted local part"),
        ('"a"b"@example.com', "unescaped"),
        ("ada@example.com (Ada)", "spaces"),
        ("ada@[300.1.1.1]", "not an IP"),
        ("ada@[192.0.2.1", "unclosed"),
        ("ada@1.2.3.4", "numeric"),
        ("ada@exa\u00a0mple.com", "spaces"),
        ("a\u00a0b@example.com", "spaces"),
        ("a\u3000b@example.com", "spaces"),
        ("a.b(c)@example.com", "must be quoted"),
        ("j\u00fcrgen.a[b]@example.com", "must be quoted"),
        ("ada@xn--.com", "domain label"),
        ("ada@\u0080.com", "control character"),
    ],
)
def test_parse_address_rejects(text: str, fragment: str) -> None:
    with pytest.raises(ValidationError) as info:
        parse_address(text)
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    "text",
    [
        "ada@example.com\r\nBcc: victim@example.org",
        "ada@example.com\nX: y",
        "Ada\r <ada@example.com>",
        "ada\0@example.com",
        '"Ada\nEvil" <ada@example.com>',
        "ada@example.com\u2028",
        "Ada\t<ada@example.com>",
        "ada@exam\x85ple.com",
    ],
)
def test_parse_address_rejects_control_characters(text: str) -> None:
    with pytest.raises(ValidationError, match="header injection"):
        parse_address(text)


def test_parse_address_rejects_non_strings_and_too_long() -> None:
    with pytest.raises(ValidationError, match="must be a str"):
        parse_address(42)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="254"):
        parse_address("l" * 60 + "@" + ".".join(["d" * 60] * 4))


def test_address_parse_passes_addresses_through() -> None:
    addr = Address(email="a@b.com", name="A")
    assert Address.parse(addr) is addr


def test_ascii_forms_and_smtputf8() -> None:
    assert ascii_domain("bücher.de") == "xn--bcher-kva.de"
    assert ascii_domain("example.com") == "example.com"
    assert ascii_email("ada@bücher.de") == "ada@xn--bcher-kva.de"
    assert ascii_email(Address(email="ada@example.com")) == "ada@example.com"
    with pytest.raises(ValidationError, match="SMTPUTF8"):
        ascii_email("jörg@example.com")
    assert needs_smtputf8("jörg@example.com")
    assert needs_smtputf8(Address(email="用户@例子.广告"))
    assert not needs_smtputf8("ada@bücher.de")  # the domain goes out IDNA-encoded
    assert not needs_smtputf8(Address(email="ada@example.com", name="Jörg"))
    with pytest.raises(ValidationError):
        ascii_domain("exa mple.com")


@pytest.mark.parametrize(
    ("name", "quoted"),
    [
        ("Ada", "Ada"),
        ("Ada Lovelace", "Ada Lovelace"),
        ("Lovelace, Ada", '"Lovelace, Ada"'),
        ("J. Q. Public", '"J. Q. Public"'),
        ('Say "hi"', '"Say \\"hi\\""'),
        ("back\\slash", '"back\\\\slash"'),
        ("a@b", '"a@b"'),
        (" padded", '" padded"'),
        ("two  spaces", '"two  spaces"'),
        ("Jörg Müller", "Jörg Müller"),
        ("Müller, Jörg", '"Müller, Jörg"'),
    ],
)
def test_quote_display_name(name: str, quoted: str) -> None:
    assert quote_display_name(name) == quoted
    assert parse_address(f"{quoted} <x@example.com>").name == name


@pytest.mark.parametrize(
    "name", ["Lovelace, Ada", 'Say "hi"', "a\\b", "Ada (Countess)", "x;y:z<>[]", "a.b"]
)
def test_address_str_round_trips_through_stdlib(name: str) -> None:
    addr = Address(email="ada@example.com", name=name)
    raw = f"To: {addr}\r\n\r\n".encode()
    header = BytesParser(policy=default).parsebytes(raw)["to"]
    assert header.addresses[0] == StdAddress(display_name=name, addr_spec="ada@example.com")
    assert parse_address(str(addr)) == addr


# -- headers ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["X-Tag", "In-Reply-To", "x", "X_Weird.Name!", "A" * 76])
def test_header_name_accepts(name: str) -> None:
    check_header_name(name)


@pytest.mark.parametrize(
    "name", ["", "X Tag", "X:Tag", "X-Tägg", "X-Tag\r\n", "A" * 77, "X\tY", "X\x7f"]
)
def test_header_name_rejects(name: str) -> None:
    with pytest.raises(ValidationError, match="header name"):
        check_header_name(name)


def test_header_name_rejects_non_str() -> None:
    with pytest.raises(ValidationError, match="must be a str"):
        check_header_name(b"X-Tag")  # type: ignore[arg-type]


@pytest.mark.parametrize("value", ["", "plain", "tab\tinside", "ünïcödé 🎉", "=?x?", "a" * 5000])
def test_header_value_accepts(value: str) -> None:
    check_header_value("X-Tag", value)


@pytest.mark.parametrize(
    "value",
    [
        "a\r\nBcc: victim@example.org",
        "a\nb",
        "a\rb",
        "a\0b",
        "a\x1bb",
        "a\x7fb",
        "a\x85b",
        "a\u2028b",
        "a\u2029b",
        "a\ud800b",
    ],
)
def test_header_value_rejects_control_characters(value: str) -> None:
    with pytest.raises(ValidationError, match="control character"):
        check_header_value("X-Tag", value)


@pytest.mark.parametrize(
    "value",
    [
        "=?utf-8?q?a=0D=0ABcc:_victim@example.org?=",
        "x =?UTF-8?Q?a=0Ab?= y",
        "=?utf-8?b?YQ0KQmNjOiB4?=",  # "a\r\nBcc: x"
        "=?utf-8?B?AA==?=",  # NUL
    ],
)
def test_header_value_rejects_encoded_line_breaks(value: str) -> None:
    with pytest.raises(ValidationError, match="encoded-word"):
        check_header_value("X-Tag", value)


def test_harmless_encoded_words_are_allowed() -> None:
    check_header_value("X-Tag", "=?utf-8?q?caf=C3=A9?= and =?utf-8?b?w6k=?=")
    check_header_value("X-Tag", "=?utf-8?b?!!!?=")  # malformed: written as literal text


@pytest.mark.parametrize("value", [1, None, b"bytes", 1.5, ["a"]])
def test_header_value_must_be_str(value: object) -> None:
    with pytest.raises(ValidationError, match="must be a str") as info:
        check_header_value("X-Tag", value)  # type: ignore[arg-type]
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("name", "hint"),
    [
        ("Content-Type", "MIME structure"),
        ("content-transfer-encoding", "MIME structure"),
        ("MIME-Version", "MIME structure"),
        ("Content-Disposition", "MIME structure"),
        ("From", ".from_("),
        ("TO", ".to("),
        ("Cc", ".cc("),
        ("Bcc", ".bcc("),
        ("Subject", ".subject("),
        ("Reply-To", ".reply_to("),
        ("Message-ID", ".message_id("),
        ("Date", "Date is set"),
        ("List-Unsubscribe", ".list_unsubscribe("),
    ],
)
def test_custom_header_refuses_reserved_names(name: str, hint: str) -> None:
    with pytest.raises(ValidationError) as info:
        check_custom_header(name, "x")
    assert hint in str(info.value)


def test_custom_header_accepts_others() -> None:
    check_custom_header("X-Campaign-Id", "spring-2025")
    check_custom_header("In-Reply-To", "<a@b.com>")


def test_check_no_crlf_names_the_field() -> None:
    with pytest.raises(ValidationError, match=r"^the subject contains"):
        check_no_crlf("the subject", "a\nb")
    check_no_crlf("x", "tab\tok", allow_tab=True)
    with pytest.raises(ValidationError):
        check_no_crlf("x", "tab\tbad")


# -- attachments ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["report.pdf", "résumé.pdf", "my..file.txt", ".hidden", "a b.txt", "报告.xlsx"]
)
def test_safe_attachment_filename_accepts(name: str) -> None:
    assert safe_attachment_filename(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "../etc/passwd",
        "dir/file.txt",
        "..\\windows.ini",
        "C:\\x.txt",
        "..",
        ".",
        "",
        "   ",
        "a\0b",
        "a\r\nContent-Type: text/html",
        "a\nb",
        "x" * 256,
    ],
)
def test_safe_attachment_filename_rejects(name: str) -> None:
    with pytest.raises(ValidationError, match="attachment filename"):
        safe_attachment_filename(name)


def test_safe_attachment_filename_rejects_non_str() -> None:
    with pytest.raises(ValidationError, match="must be a str"):
        safe_attachment_filename(None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "value", ["application/pdf", "image/svg+xml", "text/csv; charset=utf-8", 'text/x; a="b c"']
)
def test_content_type_accepts(value: str) -> None:
    assert check_content_type(value) == value


@pytest.mark.parametrize(
    "value", ["pdf", "application/", "multipart/mixed", "text/plain\r\nX: y", "a/b; c", "a b/c"]
)
def test_content_type_rejects(value: str) -> None:
    with pytest.raises(ValidationError):
        check_content_type(value)


@pytest.mark.parametrize("cid", ["logo", "logo.png", "part1.abc@example.com", "a-b_c"])
def test_content_id_accepts(cid: str) -> None:
    assert check_content_id(cid) == cid


@pytest.mark.parametrize("cid", ["", "<logo>", "cid:logo", "a b", "a..b", "a\nb", "ü", "a@b@c"])
def test_content_id_rejects(cid: str) -> None:
    with pytest.raises(ValidationError):
        check_content_id(cid)


# Characters that make or break addresses: atext, dots, hyphens, '@', quotes, brackets,
# whitespace and control characters, and non-ASCII letters and digits.
_ADDRESS_ALPHABET = "aZ09.-_+!#$%&'*/=?^`{|}~@\"<>()[],;: \t\r\nçé٣\u00a0\u2028"


@settings(max_examples=3000, deadline=None)
@given(
    st.one_of(
        st.text(alphabet=_ADDRESS_ALPHABET, max_size=40),
        st.builds(
            lambda local, labels: f"{local}@{'.'.join(labels)}",
            st.text(alphabet="aZ09.-_+!#'`~@", min_size=1, max_size=70),
            st.lists(st.text(alphabet="aZ09-", min_size=1, max_size=70), min_size=1, max_size=5),
        ),
    )
)
def test_the_plain_address_fast_path_accepts_only_what_the_full_parse_accepts(text: str) -> None:
    fast = _validation._plain_address(text)
    try:
        full = _validation._parse_address(text)
    except ValidationError:
        assert fast is None, f"{text!r} passed the fast path but the full parse refuses it"
        return
    assert fast is None or fast == full


@pytest.mark.parametrize(
    "text",
    [
        "user0000001.tag@example1.com",
        "a@b",
        "o'hara+news@mail.example.co.uk",
        f"{'l' * 64}@{'d' * 63}.com",
    ],
)
def test_the_plain_address_fast_path_takes_common_addresses(text: str) -> None:
    assert _validation._plain_address(text) == parse_address(text) == Address(email=text)


@pytest.mark.parametrize(
    "text",
    [
        f"{'l' * 65}@example.com",  # local part too long
        f"a@{'d' * 64}.com",  # a label too long
        "a@example.123",  # numeric top-level domain
        "a..b@example.com",
        ".a@example.com",
        "a@-example.com",
        "a@example-.com",
        "a@example..com",
        "a@example.com.",
        "Ada <a@example.com>",
        " a@example.com",
    ],
)
def test_the_plain_address_fast_path_leaves_the_rest_to_the_full_parse(text: str) -> None:
    assert _validation._plain_address(text) is None
