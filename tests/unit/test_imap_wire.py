"""A FETCH response reads the same however the network cuts it into reads.

The protocol keeps a literal that arrived in one read as it came and copies one that spans
reads, counts parentheses outside literals only, and routes untagged lines to the FETCH:
fed byte by byte, in odd-sized chunks or at once, the command ends with the same lines.
"""

from __future__ import annotations

import asyncio

import pytest
from aioimaplib.aioimaplib import SELECTED

from xcomm.email._imap_parse import fetch_records, join_lines
from xcomm.email._imap_wire import _Fetch, _Protocol

HEADER = b"Subject: (not a list\r\nX: * 2 FETCH (UID 9)\r\n\r\n"
BODY = b"x" * 300
RESPONSE = (
    b"* 1 FETCH (UID 1 FLAGS (\\Seen) BODY[HEADER] {%d}\r\n" % len(HEADER)
    + HEADER
    + b" BODY[1] {0}\r\n)\r\n"
    + b"* 5 EXISTS\r\n"
    + b"* 2 FETCH (UID 2 BODY[1] {%d}\r\n" % len(BODY)
    + BODY
    + b")\r\nA1 OK Fetch completed.\r\n"
)
LINES = [
    b"1 FETCH (UID 1 FLAGS (\\Seen) BODY[HEADER] {%d}" % len(HEADER),
    HEADER,
    b" BODY[1] {0}",
    b"",
    b")",
    b"2 FETCH (UID 2 BODY[1] {%d}" % len(BODY),
    BODY,
    b")",
]


async def _fetch(chunks: list[bytes]) -> list[bytes]:
    loop = asyncio.get_running_loop()
    protocol = _Protocol(loop)
    protocol.state = SELECTED
    command = _Fetch("A1", "1:2", "(BODY.PEEK[HEADER])", prefix="UID", loop=loop)
    protocol.pending_async_commands["FETCH"] = command
    for chunk in chunks:
        protocol.data_received(chunk)
    response = command.response
    assert response.result == "OK"
    return [bytes(line) for line in response.lines[:-1]]


@pytest.mark.parametrize("size", [1, 2, 7, 64, 333, len(RESPONSE)])
async def test_a_fetch_reads_the_same_in_any_chunks(size: int) -> None:
    chunks = [RESPONSE[i : i + size] for i in range(0, len(RESPONSE), size)]
    lines = await _fetch(chunks)
    assert lines == LINES
    first, second = fetch_records(join_lines(lines))
    assert first["BODY[HEADER]"] == HEADER and first["BODY[1]"] == b""
    assert second == {"UID": b"2", "BODY[1]": BODY}


async def test_an_unfinished_fetch_waits_for_the_rest() -> None:
    loop = asyncio.get_running_loop()
    protocol = _Protocol(loop)
    protocol.state = SELECTED
    command = _Fetch("A1", "1", "(BODY.PEEK[1])", prefix="UID", loop=loop)
    protocol.pending_async_commands["FETCH"] = command
    cut = RESPONSE.index(BODY) + 100
    protocol.data_received(RESPONSE[:cut])
    assert command.response.result == "Pending"
    protocol.data_received(RESPONSE[cut:])
    assert command.response.result == "OK"
