"""Pure validation of what users put into messages: addresses, headers, file names.

Every check raises `ValidationError` with a message that says what is wrong and how to fix it,
before any byte leaves. Nothing here does I/O.

The address grammar is a strict subset of RFC 5322 / RFC 6531: `local@domain`, optionally
with a display name (`Name <local@domain>`, `"Last, First" <local@domain>`). The local part is
a dot-atom or a quoted string; the domain is LDH labels, a unicode domain that IDNA can encode,
or an address literal (`[192.0.2.1]`, `[IPv6:2001:db8::1]`).
"""

from __future__ import annotations

import binascii
import ipaddress
import re
from collections.abc import Callable
from functools import lru_cache

from xcomm._errors import ValidationError
from xcomm._models import Address

__all__ = [
    "SETTER_HEADERS",
    "STRUCTURAL_HEADERS",
    "ascii_domain",
    "ascii_email",
    "check_content_id",
    "check_content_type",
    "check_custom_header",
    "check_header_name",
    "check_header_value",
    "check_no_crlf",
    "needs_smtputf8",
    "parse_address",
    "quote_display_name",
    "safe_attachment_filename",
]

MAX_EMAIL_LENGTH = 254
MAX_LOCAL_LENGTH = 64
MAX_DOMAIN_LENGTH = 253
MAX_HEADER_NAME_LENGTH = 76
MAX_FILENAME_LENGTH = 255

# Control characters, C1 controls, unicode line/paragraph separators and lone surrogates.
# Tab is allowed in header values (it is folding white space) but nowhere else.
_BAD_IN_VALUE = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_BAD_STRICT = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\?=")
_HEADER_NAME = re.compile(r"[!-9;-~]+")  # printable ASCII without ':' and space
_ATEXT = r"A-Za-z0-9!#$%&'*+/=?^_`{|}~\-"
_ATOM_ASCII = re.compile(f"[{_ATEXT}]+")
_DOT_ATOM_ASCII = re.compile(f"[{_ATEXT}]+(?:\\.[{_ATEXT}]+)*")
_SPACE = re.compile(r"\s")  # exactly what str.isspace() matches
_PHRASE_ASCII = re.compile(f"[{_ATEXT} ]+")
_LDH = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"  # a domain label, at most 63 long
_LDH_LABEL = re.compile(_LDH)
# The common address, bare and ASCII: a dot-atom local part and LDH labels. One match (and
# three length and digit checks) instead of `parse_address`'s steps, which accept it too.
_PLAIN_ADDRESS = re.compile(f"([{_ATEXT}]++(?:\\.[{_ATEXT}]++)*+)@((?:{_LDH}\\.)*+({_LDH}))")
_NAME_SPECIALS = frozenset('()<>[]:;@\\,"')
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_CONTENT_TYPE = re.compile(
    rf"{_TOKEN}/{_TOKEN}(?:\s*;\s*{_TOKEN}=(?:{_TOKEN}|\"[^\"\\\x00-\x1f]*\"))*\s*"
)
_CID = re.compile(rf"[{_ATEXT}]+(?:\.[{_ATEXT}]+)*(?:@[{_ATEXT}]+(?:\.[{_ATEXT}]+)*)?")

#: Headers that describe the MIME structure: the renderer writes them, never the user.
STRUCTURAL_HEADERS = frozenset(
    {"content-type", "content-transfer-encoding", "mime-version", "content-disposition"}
) | {"content-id"}
#: Headers with a dedicated draft setter, mapped to the call to use instead.
SETTER_HEADERS = {
    "from": ".from_(...)",
    "to": ".to(...)",
    "cc": ".cc(...)",
    "bcc": ".bcc(...)",
    "subject": ".subject(...)",
    "reply-to": ".reply_to(...)",
    "message-id": ".message_id(...)",
    "date": "nothing: Date is set when the message is built",
    "list-unsubscribe": ".list_unsubscribe(...)",
    "list-unsubscribe-post": ".list_unsubscribe(..., one_click=True)",
}


def _show(text: str, limit: int = 80) -> str:
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")


def check_no_crlf(what: str, text: str, *, allow_tab: bool = False) -> None:
    """Reject CR, LF, NUL and other control characters in `text` (header injection).

    Args:
        what: what the text is, for the error message ("subject", "header 'X-Tag'").
        text: the text to check.
        allow_tab: accept horizontal tabs (header values may contain them).

    Raises:
        ValidationError: `text` is not a string or contains a control character.
    """
    if not isinstance(text, str):
        raise ValidationError(f"{what} must be a str, not {type(text).__name__}")
    bad = (_BAD_IN_VALUE if allow_tab else _BAD_STRICT).search(text)
    if bad is not None:
        raise ValidationError(
            f"{what} contains the control character {bad.group()!r} at position {bad.start()}; "
            "line breaks and control characters are not allowed in headers (header injection). "
            "Remove them, or put multi-line text in the body"
        )
    if "=?" in text:
        _check_encoded_words(what, text)


def _check_encoded_words(what: str, text: str) -> None:
    """Reject RFC 2047 encoded-words that decode to line breaks or NUL."""
    for match in _ENCODED_WORD.finditer(text):
        payload = match.group(3).encode("ascii", "replace")
        try:
            if match.group(2) in "bB":
                decoded = binascii.a2b_base64(payload)
            else:
                decoded = binascii.a2b_qp(payload.replace(b"_", b" "), header=True)
        except (binascii.Error, ValueError):
            continue  # not a valid encoded-word: it is rendered (and read back) as text
        if b"\r" in decoded or b"\n" in decoded or b"\0" in decoded:
            raise ValidationError(
                f"{what} contains the encoded-word {match.group()!r}, which decodes to a line "
                "break or NUL (header injection); pass plain text and let xcomm encode it"
            )


def check_header_name(name: str) -> None:
    """Check a header field name: printable ASCII, no ':' or space, at most 76 characters.

    Raises:
        ValidationError: the name is not a valid field name.
    """
    if not isinstance(name, str):
        raise ValidationError(f"a header name must be a str, not {type(name).__name__}")
    if not name or len(name) > MAX_HEADER_NAME_LENGTH or not _HEADER_NAME.fullmatch(name):
        raise ValidationError(
            f"invalid header name {_show(name)}: use 1 to {MAX_HEADER_NAME_LENGTH} printable "
            "ASCII characters without ':' or spaces, e.g. 'X-Campaign-Id'"
        )


def check_header_value(name: str, value: str) -> None:
    """Check a header value: a str without line breaks or control characters (tabs are fine).

    Raises:
        ValidationError: the value is not a str or could inject a header.
    """
    if not isinstance(value, str):
        raise ValidationError(
            f"the value of header {name!r} must be a str, not {type(value).__name__}; "
            "convert it first, e.g. str(value)"
        )
    check_no_crlf(f"the value of header {name!r}", value, allow_tab=True)


def check_custom_header(name: str, value: str) -> None:
    """Check a header a user adds with `draft.header()`: valid, and not one xcomm writes.

    Raises:
        ValidationError: invalid name or value, or a header that has its own setter.
    """
    check_header_name(name)
    lower = name.lower()
    if lower in STRUCTURAL_HEADERS:
        raise ValidationError(
            f"{name} describes the MIME structure and is written by xcomm; use .body(), "
            ".html_body(), .attach() or .inline_image() and the right structure follows"
        )
    if lower in SETTER_HEADERS:
        raise ValidationError(f"do not set {name} with header(); use {SETTER_HEADERS[lower]}")
    check_header_value(name, value)


def quote_display_name(name: str) -> str:
    """Return `name` as an RFC 5322 phrase: unchanged if it is plain words, else quoted.

    Non-ASCII letters count as plain (RFC 6532); the renderer encodes them for ASCII-only
    transports.
    """
    if name.strip() == name and "  " not in name:
        if name.isascii():
            if _PHRASE_ASCII.fullmatch(name):
                return name
        elif not any(c in _NAME_SPECIALS or c == "." for c in name):
            return name
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def parse_address(text: str) -> Address:
    """Parse one address: `"ada@example.com"`, `"Ada <ada@example.com>"`, `'"L, F" <a@b.c>'`.

    Raises:
        ValidationError: the text is not exactly one well-formed address.
    """
    if not isinstance(text, str):
        raise ValidationError(f"an address must be a str or an Address, not {type(text).__name__}")
    return _plain_address(text) or _parse_address(text)


def _plain_address(text: str) -> Address | None:
    """`text` as an `Address` when it is the common address, bare and ASCII, else None."""
    plain = _PLAIN_ADDRESS.fullmatch(text)
    if (
        plain is not None
        and len(text) <= MAX_EMAIL_LENGTH
        and len(plain[1]) <= MAX_LOCAL_LENGTH
        and len(plain[2]) <= MAX_DOMAIN_LENGTH
        and not plain[3].isdigit()
    ):
        return Address(email=text)
    return None


def _parse_address(text: str) -> Address:
    check_no_crlf("an email address", text)
    text = text.strip()
    if not text:
        raise ValidationError("empty email address; expected e.g. 'ada@example.com'")
    name: str | None = None
    if text.endswith(">"):
        if text.startswith('"'):
            name, rest = _split_quoted(text)
            rest = rest.lstrip()
            if not rest.startswith("<"):
                raise ValidationError(
                    f"invalid address {_show(text)}: expected '<address>' after the quoted name"
                )
            spec = rest[1:-1]
        else:
            lt = text.find("<")
            if lt < 0:
                raise ValidationError(f"invalid address {_show(text)}: '>' without '<'")
            spec = text[lt + 1 : -1]
            name = _check_phrase(text[:lt].strip(), text) or None
        if "<" in spec or ">" in spec:
            raise ValidationError(
                f"invalid address {_show(text)}: mismatched angle brackets; "
                "write 'Name <local@domain>'"
            )
    elif "<" in text or ">" in text:
        raise ValidationError(
            f"invalid address {_show(text)}: mismatched angle brackets; write 'Name <local@domain>'"
        )
    else:
        spec = text
    return Address(email=_check_addr_spec(spec.strip(), text), name=name or None)


def _split_quoted(text: str) -> tuple[str, str]:
    """Split a leading quoted string off `text`: return its unescaped content and the rest."""
    out: list[str] = []
    i = 1
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            out.append(text[i + 1])
            i += 2
            continue
        if c == '"':
            return "".join(out), text[i + 1 :]
        out.append(c)
        i += 1
    raise ValidationError(f"invalid address {_show(text)}: the quoted name is not closed")


def _check_phrase(name: str, text: str) -> str:
    if any(c in _NAME_SPECIALS for c in name):
        raise ValidationError(
            f"invalid address {_show(text)}: a display name with , ; : @ ( ) [ ] \\ or quotes "
            "must be quoted, e.g. '\"Lovelace, Ada\" <ada@example.com>'"
        )
    return name


def _check_addr_spec(spec: str, text: str) -> str:
    def bad(reason: str) -> ValidationError:
        return ValidationError(
            f"invalid email address {_show(text)}: {reason} (expected local@domain, "
            "e.g. 'ada@example.com')"
        )

    if "@" not in spec:
        raise bad("missing '@'")
    local, _, domain = spec.rpartition("@")
    if not local or not domain:
        raise bad("empty local part" if not local else "empty domain")
    if len(spec) > MAX_EMAIL_LENGTH:
        raise bad(f"longer than {MAX_EMAIL_LENGTH} characters")
    if local.startswith('"') and local.endswith('"') and len(local) >= 2:
        _check_quoted_local(local[1:-1], bad)
    else:
        if "," in spec:
            raise bad("one address per item; pass several as separate arguments or a list")
        if _SPACE.search(spec):
            raise bad("spaces are not allowed")
        if ".." in local or local.startswith(".") or local.endswith("."):
            raise bad("the local part has an empty dot-separated part ('..' or a dot at an end)")
        if not (local.isascii() and _DOT_ATOM_ASCII.fullmatch(local)) and not all(
            map(_is_atom, local.split("."))
        ):
            raise bad("the local part contains a character that must be quoted")
    if len(local.encode("utf-8")) > MAX_LOCAL_LENGTH:
        raise bad(f"the local part is longer than {MAX_LOCAL_LENGTH} octets")
    try:
        ascii_domain(domain)
    except ValidationError as exc:
        raise bad(str(exc)) from None
    return spec


def _is_atom(atom: str) -> bool:
    if atom.isascii():
        return bool(_ATOM_ASCII.fullmatch(atom))
    return all(
        _ATOM_ASCII.fullmatch(c) if c.isascii() else (c.isprintable() and not c.isspace())
        for c in atom
    )


def _check_quoted_local(inner: str, bad: Callable[[str], ValidationError]) -> None:
    escaped = False
    for c in inner:
        if escaped:
            escaped = False
        elif c == "\\":
            escaped = True
        elif c == '"':
            raise bad("the quoted local part has an unescaped '\"'")
    if not inner or escaped:
        raise bad("the quoted local part is empty or ends with a lone backslash")


@lru_cache(maxsize=1024)
def ascii_domain(domain: str) -> str:
    """Validate `domain` and return its ASCII form (IDNA A-labels for a unicode domain).

    Raises:
        ValidationError: the domain is not valid.
    """
    return _check_domain(domain)


def _check_domain(domain: str) -> str:
    if domain.startswith("["):
        if not domain.endswith("]"):
            raise ValidationError("unclosed '[' in the domain literal")
        inner = domain[1:-1]
        try:
            if inner[:5].lower() == "ipv6:":
                ipaddress.IPv6Address(inner[5:])
            else:
                ipaddress.IPv4Address(inner)
        except ValueError:
            raise ValidationError("the domain literal is not an IP address") from None
        return domain
    if len(domain) > MAX_DOMAIN_LENGTH or domain.endswith(".") or domain.startswith("."):
        raise ValidationError("the domain is too long or starts or ends with '.'")
    ascii_form = domain
    if not domain.isascii():
        if any(c.isspace() or not c.isprintable() for c in domain):
            raise ValidationError("the domain contains spaces or invisible characters")
        try:
            ascii_form = domain.encode("idna").decode("ascii")
        except UnicodeError:
            raise ValidationError("the unicode domain cannot be IDNA-encoded") from None
    labels = ascii_form.split(".")
    if ".." in ascii_form or len(ascii_form) > MAX_DOMAIN_LENGTH:
        raise ValidationError("the domain has an empty label ('..') or is too long")
    for label in labels:
        if not _LDH_LABEL.fullmatch(label):
            raise ValidationError(
                f"the domain label {label!r} is not letters, digits and inner hyphens "
                "(at most 63 characters)"
            )
    if labels[-1].isdigit():
        raise ValidationError("the top-level domain is numeric; write an IP address as [1.2.3.4]")
    return ascii_form


def ascii_email(address: Address | str) -> str:
    """Return the address with its domain in ASCII (IDNA), for ASCII-only headers.

    Raises:
        ValidationError: the local part is not ASCII (the message then needs SMTPUTF8).
    """
    email = address.email if isinstance(address, Address) else address
    if email.isascii():
        return email
    local, _, domain = email.rpartition("@")
    if not local.isascii():
        raise ValidationError(
            f"the address {_show(email)} has a non-ASCII local part; it can only be sent to a "
            "server that supports SMTPUTF8 (render with utf8=True)"
        )
    return f"{local}@{ascii_domain(domain)}"


def needs_smtputf8(address: Address | str) -> bool:
    """True when the local part (before "@") is not ASCII, so the server must offer SMTPUTF8.

    A unicode domain alone does not need it: it is sent IDNA-encoded.
    """
    email = address.email if isinstance(address, Address) else address
    return not email.rpartition("@")[0].isascii()


def safe_attachment_filename(name: str) -> str:
    """Check an attachment's file name: no directories, no '..', no control characters.

    Returns:
        The name, unchanged.

    Raises:
        ValidationError: the name could escape a download folder or inject a header.
    """
    if not isinstance(name, str):
        raise ValidationError(f"an attachment filename must be a str, not {type(name).__name__}")
    check_no_crlf(f"the attachment filename {_show(name)}", name)
    if not name.strip() or len(name) > MAX_FILENAME_LENGTH:
        raise ValidationError(
            f"the attachment filename {_show(name)} is empty or longer than "
            f"{MAX_FILENAME_LENGTH} characters; pass filename='report.pdf'"
        )
    if "/" in name or "\\" in name or name in (".", ".."):
        raise ValidationError(
            f"the attachment filename {_show(name)} contains a path separator or is '..'; "
            "pass a bare name such as filename='report.pdf'"
        )
    return name


def check_content_type(content_type: str) -> str:
    """Check a MIME type such as `"application/pdf"` or `"text/csv; charset=utf-8"`.

    Raises:
        ValidationError: not a `type/subtype` with optional parameters.
    """
    check_no_crlf("the content type", content_type)
    if not _CONTENT_TYPE.fullmatch(content_type) or content_type.lower().startswith("multipart/"):
        raise ValidationError(
            f"invalid content type {_show(content_type)}: expected type/subtype such as "
            "'application/pdf' (multipart types are built by xcomm)"
        )
    return content_type


def check_content_id(cid: str) -> str:
    """Check an inline part's Content-ID (without `<>` or `cid:`), e.g. `"logo"` or `"a.b@c"`.

    Raises:
        ValidationError: not a dot-atom token with an optional `@domain`.
    """
    check_no_crlf("the content id", cid)
    if not _CID.fullmatch(cid) or len(cid) > 200:
        raise ValidationError(
            f"invalid content id {_show(cid)}: use letters, digits, dots and -_ (optionally "
            "'@domain'), without '<>' or 'cid:'; the HTML then refers to it as cid:<id>"
        )
    return cid
