"""The pure helpers of the HTTP pipeline: form bodies and rate-limit headers."""

from __future__ import annotations

import string
from urllib.parse import parse_qsl, urlencode

import httpx
import pytest
from hypothesis import given, strategies as st

from xcomm._http import encode_form, rate_limit_pause

# -- encode_form: the bytes urlencode(doseq=True) writes --------------------------------------

_ascii = st.text(string.printable + "é✓")  # every ASCII punctuation mark often
_keys = st.one_of(_ascii, st.text(), st.integers(), st.binary())
_values = st.one_of(
    _ascii,
    st.text(),
    st.integers(),
    st.binary(),
    st.none(),
    st.floats(allow_nan=False),
    st.lists(st.text(), max_size=3),
    st.tuples(st.text(), st.integers()),
)


@given(st.lists(st.tuples(_keys, _values), max_size=6))
def test_encode_form_writes_what_urlencode_writes(fields: list[tuple[object, object]]) -> None:
    assert encode_form(fields) == urlencode(fields, doseq=True).encode("ascii")  # type: ignore[arg-type]


def test_encode_form_escapes_every_character_as_urlencode_does() -> None:
    for code in [*range(0x100), 0x2713, 0x1F389, 0xFFFD]:
        fields = {f"k{chr(code)}": f"a{chr(code)}b"}
        assert encode_form(fields) == urlencode(fields).encode("ascii"), hex(code)


@given(st.dictionaries(st.text(min_size=1), st.text(), max_size=6))
def test_encode_form_round_trips_text(fields: dict[str, str]) -> None:
    decoded = parse_qsl(encode_form(fields).decode("ascii"), keep_blank_values=True)
    assert decoded == list(fields.items())


def test_encode_form_twilio_message() -> None:
    body = encode_form({"To": "+15558675310", "From": "+15005550006", "Body": "Hi & bye, ✓"})
    assert body == b"To=%2B15558675310&From=%2B15005550006&Body=Hi+%26+bye%2C+%E2%9C%93"


def test_encode_form_repeats_keys_for_sequences_and_skips_empty_ones() -> None:
    fields = [("MediaUrl", ["https://a.example/1.png", "x y"]), ("Empty", []), ("N", 3)]
    assert encode_form(fields) == b"MediaUrl=https%3A%2F%2Fa.example%2F1.png&MediaUrl=x+y&N=3"


def test_encode_form_refuses_text_that_is_not_unicode() -> None:
    with pytest.raises(UnicodeEncodeError):
        encode_form({"Body": "\udcff"})  # a lone surrogate, as urlencode refuses it


# -- rate_limit_pause: when the provider says nothing is left -----------------------------------


@pytest.mark.parametrize(
    ("headers", "pause"),
    [
        ({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset-After": "2.5"}, 2.5),  # Discord
        ({"x-ratelimit-remaining": "0", "x-ratelimit-reset": "30"}, 30.0),  # a delta
        ({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "1700000060"}, 60.0),  # epoch
        ({"RateLimit-Remaining": "0", "RateLimit-Reset": "7"}, 7.0),  # IETF draft
        ({"X-RateLimit-Remaining": "-1", "X-RateLimit-Reset-After": "1"}, 1.0),
        ({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "1699999990"}, 0.0),  # past
    ],
)
def test_rate_limit_pause_when_none_are_left(headers: dict[str, str], pause: float) -> None:
    assert rate_limit_pause(httpx.Headers(headers), wall_now=1_700_000_000.0) == pause


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Content-Type": "application/json"},
        {"X-RateLimit-Remaining": "4", "X-RateLimit-Reset-After": "2.5"},  # some left
        {"X-RateLimit-Remaining": "0"},  # no reset said
        {"X-RateLimit-Remaining": "soon", "X-RateLimit-Reset-After": "2"},  # garbage
        {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset-After": "inf"},
        {"X-My-RateLimit-Remaining-Budget": "0", "X-RateLimit-Reset-After": "2"},  # lookalike
        {"X-RateLimit-Limit": "100", "X-RateLimit-Reset": "30"},  # no remaining count
    ],
)
def test_rate_limit_pause_otherwise_none(headers: dict[str, str]) -> None:
    assert rate_limit_pause(httpx.Headers(headers), wall_now=1_700_000_000.0) is None
