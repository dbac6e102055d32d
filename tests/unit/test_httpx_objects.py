"""The pipeline's request and response builders against httpx's own constructors.

`body_request()` and `read_response()` set httpx internals directly; these tests compare every
property a provider, respx or a transport can observe, so an httpx release that changes those
internals fails here first.
"""

from __future__ import annotations

import gzip
import json
import zlib

import httpx
import pytest

from xcomm._httpx_objects import body_request, header_names, read_response, text_headers

URL = httpx.URL("https://api.example.com:8443/2010-04-01/Accounts/AC1/Messages.json?x=1")
TEMPLATE = httpx.Headers(
    {
        "User-Agent": "xcomm/1.0",
        "Accept": "application/json",
        "Authorization": "Basic QUMxOnRva2Vu",
        "Content-Type": "application/x-www-form-urlencoded",
    }
)


def _same_request(ours: httpx.Request, theirs: httpx.Request) -> None:
    assert ours.method == theirs.method
    assert ours.url == theirs.url
    assert ours.headers.raw == theirs.headers.raw
    assert ours.headers.multi_items() == theirs.headers.multi_items()
    assert ours.content == theirs.content
    assert b"".join(ours.stream) == b"".join(theirs.stream)  # type: ignore[arg-type]
    assert ours.read() == theirs.read()
    assert ours.extensions == theirs.extensions


@pytest.mark.parametrize(
    ("method", "content"),
    [
        ("POST", b"To=%2B1555&Body=hi"),
        ("POST", b""),
        ("PUT", b'{"a": 1}'),
        ("PATCH", b""),
        ("DELETE", b""),
        ("GET", b""),
        ("delete", b'{"ids": ["1"]}'),
    ],
)
def test_body_request_is_what_httpx_builds(method: str, content: bytes) -> None:
    ours = body_request(method, URL, TEMPLATE, content)
    _same_request(ours, httpx.Request(method, URL, headers=TEMPLATE, content=content))


def test_body_request_keeps_the_url_object() -> None:
    assert body_request("POST", URL, TEMPLATE, b"x").url is URL


async def test_body_request_reads_back_asynchronously() -> None:
    request = body_request("POST", URL, TEMPLATE, b"abc")
    assert await request.aread() == b"abc"
    assert [chunk async for chunk in request.stream] == [b"abc"]  # type: ignore[union-attr]


def test_body_request_leaves_the_template_alone() -> None:
    before = TEMPLATE.raw
    body_request("POST", URL, TEMPLATE, b"abc")
    assert TEMPLATE.raw == before


def test_a_given_host_is_kept() -> None:
    headers = httpx.Headers({"Host": "edge.example.com", "Accept": "*/*"})
    request = body_request("POST", URL, headers, b"x")
    assert request.headers.get_list("host") == ["edge.example.com"]
    _same_request(request, httpx.Request("POST", URL, headers=headers, content=b"x"))


@pytest.mark.parametrize(
    "given",
    [{"Content-Length": "999"}, {"Transfer-Encoding": "chunked"}, {"content-length": "1"}],
)
def test_the_body_decides_the_framing(given: dict[str, str]) -> None:
    request = body_request("POST", URL, httpx.Headers({**given, "X-A": "1"}), b"hello")
    assert request.headers.get_list("content-length") == ["5"]
    assert "transfer-encoding" not in request.headers
    assert request.headers["x-a"] == "1"


BODY = json.dumps({"sid": "SM1", "status": "queued", "body": "héllo ✓"}).encode()
RAW = [
    (b"Content-Type", b"application/json; charset=utf-8"),
    (b"Set-Cookie", b"a=1"),
    (b"set-cookie", b"b=2"),
    (b"X-Request-Id", b"r-1"),
    (b"Content-Length", str(len(BODY)).encode()),
]
EXTENSIONS = {"http_version": b"HTTP/1.1", "reason_phrase": b"Created"}


def _same_response(ours: httpx.Response, theirs: httpx.Response) -> None:
    assert ours.status_code == theirs.status_code
    assert ours.reason_phrase == theirs.reason_phrase
    assert ours.http_version == theirs.http_version
    assert ours.headers.raw == theirs.headers.raw
    assert ours.headers.multi_items() == theirs.headers.multi_items()
    assert ours.headers.get_list("set-cookie") == theirs.headers.get_list("set-cookie")
    assert ours.headers.encoding == theirs.headers.encoding
    assert ours.content == theirs.content
    assert ours.text == theirs.text
    assert ours.encoding == theirs.encoding
    assert ours.is_closed and theirs.is_closed
    assert ours.is_stream_consumed and theirs.is_stream_consumed
    assert ours.read() == theirs.read()
    assert list(ours.iter_bytes()) == list(theirs.iter_bytes())


def test_read_response_is_what_httpx_builds() -> None:
    ours = read_response(201, RAW, BODY, EXTENSIONS, encoded=False)
    theirs = httpx.Response(201, headers=RAW, content=BODY, extensions=EXTENSIONS)
    _same_response(ours, theirs)
    assert ours.json() == json.loads(BODY)


@pytest.mark.parametrize(
    ("coding", "compress"),
    [("gzip", gzip.compress), ("deflate", zlib.compress), ("identity", lambda b: b)],
)
def test_an_encoded_body_is_decoded_by_httpx(coding: str, compress: object) -> None:
    assert callable(compress)
    wire = compress(BODY)
    raw = [(b"Content-Encoding", coding.encode()), (b"Content-Length", b"%d" % len(wire))]
    ours = read_response(200, raw, wire, {}, encoded=True)
    theirs = httpx.Response(200, headers=raw, content=wire)
    _same_response(ours, theirs)
    assert ours.content == BODY


async def test_read_response_reads_and_closes_asynchronously_as_a_no_op() -> None:
    response = read_response(200, RAW, BODY, EXTENSIONS, encoded=False)
    assert await response.aread() == BODY
    assert [chunk async for chunk in response.aiter_bytes()] == [BODY]
    await response.aclose()
    assert response.content == BODY


def test_non_ascii_header_values_decode_as_httpx_decodes_them() -> None:
    raw = [(b"X-Name", "Zoë".encode()), (b"X-Latin", b"caf\xe9")]
    ours = read_response(200, raw, b"", {}, encoded=False)
    theirs = httpx.Response(200, headers=raw, content=b"")
    assert ours.headers.multi_items() == theirs.headers.multi_items()
    assert ours.headers.raw == [(k, v) for k, v in raw]


def test_text_headers_and_names_read_what_headers_raw_holds() -> None:
    headers = httpx.Headers(
        [
            (b"User-Agent", b"xcomm/1"),
            (b"X-Name", "Zoë".encode()),
            (b"x-dup", b"1"),
            (b"X-Dup", b"2"),
        ]
    )
    assert text_headers(headers) == [(k.decode(), v.decode()) for k, v in headers.raw]
    assert header_names(headers) == {k.lower() for k, _ in headers.raw}
    assert header_names(httpx.Headers()) == set()


def test_text_headers_refuses_what_is_not_utf8() -> None:
    with pytest.raises(UnicodeDecodeError):
        text_headers(httpx.Headers([(b"X-Latin", b"caf\xe9")]))
