"""Check requests against Gmail's discovery document (shipped by google-api-python-client).

`validate(request)` finds the discovery method by HTTP verb and path template (the REST path
under rootUrl + servicePath, or a media-upload `simple` path), then checks the path parameters,
every query parameter (declared, right type, enum value, repeated only when allowed) and the
JSON body's fields against the request schema (for a multipart upload, the JSON metadata
part; the media part's type against the accepted ones). It returns the method id
(`gmail.users.messages.send`) or raises AssertionError saying what is wrong.
"""

from __future__ import annotations

import functools
import json
import re
from importlib import resources
from typing import Any
from urllib.parse import parse_qsl, unquote

import httpx
import respx

__all__ = ["discovery", "gmail_calls", "validate", "validate_all"]

# Standard parameters every Google API method accepts (discovery `parameters` at the top).
_UPLOAD_TYPES = {"media", "multipart", "resumable"}


@functools.cache
def discovery() -> dict[str, Any]:
    """The Gmail v1 discovery document."""
    path = resources.files("googleapiclient").joinpath("discovery_cache/documents/gmail.v1.json")
    return json.loads(path.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def _methods(node: dict[str, Any]) -> list[dict[str, Any]]:
    found = list((node.get("methods") or {}).values())
    for child in (node.get("resources") or {}).values():
        found += _methods(child)
    return found


def _template(path: str) -> re.Pattern[str]:
    pattern = re.sub(r"\\\{(\+?)(\w+)\\\}", lambda m: f"(?P<{m.group(2)}>[^/]+)", re.escape(path))
    return re.compile(f"^{pattern}$")


@functools.cache
def _routes() -> list[tuple[str, re.Pattern[str], dict[str, Any], bool]]:
    doc = discovery()
    root = doc["rootUrl"].rstrip("/")
    service = doc["servicePath"]
    routes = []
    for method in _methods(doc):
        full = f"{root}/{service}{method['path']}"
        routes.append((method["httpMethod"], _template(full), method, False))
        simple = ((method.get("mediaUpload") or {}).get("protocols") or {}).get("simple")
        if simple:
            routes.append((method["httpMethod"], _template(root + simple["path"]), method, True))
    return routes


def _check_value(name: str, value: str, spec: dict[str, Any]) -> None:
    kind = spec.get("type", "string")
    if kind == "integer":
        assert re.fullmatch(r"-?\d+", value), f"{name}={value!r} is not an integer"
        if spec.get("format") == "uint32":
            assert int(value) >= 0, f"{name}={value!r} must be >= 0"
    elif kind == "boolean":
        assert value in ("true", "false"), f"{name}={value!r} is not a boolean"
    if "enum" in spec:
        assert value in spec["enum"], f"{name}={value!r} is not one of {spec['enum']}"


def _check_body(schema_name: str, body: dict[str, Any]) -> None:
    schema = discovery()["schemas"][schema_name]
    properties = schema.get("properties") or {}
    for field, value in body.items():
        assert field in properties, f"{field!r} is not a field of {schema_name}"
        kind = properties[field].get("type")
        if kind == "string":
            assert isinstance(value, str), f"{schema_name}.{field} must be a string"
            if properties[field].get("format") == "byte":
                assert re.fullmatch(r"[A-Za-z0-9_\-]*=*", value), f"{field} is not base64url"
        elif kind == "array":
            assert isinstance(value, list), f"{schema_name}.{field} must be an array"


def _check_multipart(request: httpx.Request, method: dict[str, Any]) -> tuple[str, bytes]:
    """A multipart upload (`uploadType=multipart`, RFC 2387): JSON metadata conforming to the
    request schema, then the media; returns the media's type and bytes."""
    assert dict(parse_qsl(request.url.query.decode())).get("uploadType") == "multipart"
    found = re.search(r'boundary="?([^";]+)"?', request.headers["content-type"])
    assert found, "multipart/related without a boundary"
    delimiter = b"--" + found.group(1).encode()
    chunks = request.content.split(b"\r\n" + delimiter)
    assert chunks[0].startswith(delimiter + b"\r\n"), "the body must open with the boundary"
    assert chunks[-1] in (b"--", b"--\r\n"), "the body must close with the boundary"
    parts = [chunks[0][len(delimiter) + 2 :], *(c[2:] for c in chunks[1:-1])]
    assert len(parts) == 2, f"a multipart upload has 2 parts, not {len(parts)}"
    decoded = []
    for part in parts:
        head, _, body = part.partition(b"\r\n\r\n")
        headers = {
            k.strip().lower(): v.strip()
            for k, _, v in (line.partition(":") for line in head.decode().split("\r\n"))
        }
        decoded.append((headers.get("content-type", "").split(";")[0], body))
    (meta_type, metadata), media = decoded
    assert meta_type == "application/json", "the metadata part must come first, as JSON"
    body = json.loads(metadata)
    assert isinstance(body, dict)
    _check_body(method["request"]["$ref"], body)
    return media


def validate(request: httpx.Request) -> str:
    """The discovery method id `request` calls; AssertionError when it does not conform."""
    url = request.url
    base = f"{url.scheme}://{url.host}{unquote(url.path)}"
    for verb, pattern, method, upload in _routes():
        match = pattern.match(base)
        if verb != request.method or match is None:
            continue
        params = method.get("parameters") or {}
        for name, spec in params.items():
            if spec.get("location") == "path":
                assert not spec.get("required") or match.group(name), f"path {name} missing"
        seen: dict[str, int] = {}
        for name, value in parse_qsl(url.query.decode(), keep_blank_values=True):
            seen[name] = seen.get(name, 0) + 1
            if upload and name == "uploadType":
                assert value in _UPLOAD_TYPES, f"uploadType={value!r}"
                continue
            spec = params.get(name) or discovery()["parameters"].get(name)
            assert spec is not None, f"{method['id']}: unknown query parameter {name!r}"
            assert spec.get("location") == "query", f"{name} is not a query parameter"
            assert spec.get("repeated") or seen[name] == 1, f"{name} repeated"
            _check_value(name, value, spec)
        for name, spec in params.items():
            if spec.get("location") == "query" and spec.get("required"):
                assert name in seen, f"{method['id']}: required {name} missing"
        if upload:
            assert "uploadType" in seen, "a media upload needs uploadType"
            content_type = request.headers.get("content-type", "").split(";")[0]
            media, content = content_type, request.content
            if content_type == "multipart/related":
                media, content = _check_multipart(request, method)
            accept = method["mediaUpload"]["accept"]
            assert any(re.fullmatch(a.replace("*", ".*"), media) for a in accept), (
                f"{media} not in {accept}"
            )
            assert len(content) <= int(method["mediaUpload"]["maxSize"])
        elif request.content:
            assert "request" in method, f"{method['id']} takes no body"
            body = json.loads(request.content)
            assert isinstance(body, dict)
            _check_body(method["request"]["$ref"], body)
        else:
            assert "request" not in method or request.method == "GET"
        return str(method["id"])
    raise AssertionError(f"no Gmail method for {request.method} {base}")


def validate_all(requests: list[httpx.Request]) -> list[str]:
    """Validate every request (respx `router.calls`); the method ids in order."""
    assert requests, "no request was made"
    return [validate(r) for r in requests if r.url.host == "gmail.googleapis.com"]


def gmail_calls(router: respx.MockRouter) -> list[httpx.Request]:
    """The requests a test made to Gmail (respx `router.calls`), in order."""
    return [c.request for c in router.calls if c.request.url.host == "gmail.googleapis.com"]
