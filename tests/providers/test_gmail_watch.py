"""`GmailProvider.watch()` against respx: history.list from a history id, each message once
across restarts (a state file), resync after an expired history id, query filtering, and
failures that do not end the watch.

`history.list` answers come from a script: each poll takes the next answer, and once the
script is used up every poll finds nothing new. Every request is validated against Gmail's
discovery document.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import aclosing
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import msgspec
import pytest
import respx
from gmail_shapes import (
    BACKEND,
    HISTORY,
    LABELS,
    LIST,
    NO_SCOPE,
    NOT_FOUND,
    PROFILE,
    history,
    labels,
    listing,
    message,
    profile,
    route_messages,
)

from xcomm import (
    AuthenticationError,
    CommManager,
    EmailQuery,
    GmailCheckpoint,
    GmailProvider,
    GmailWatchState,
    ReceivedMessage,
    ValidationError,
)
from xcomm.testing import FakeClock

FAST = 0.001


@pytest.fixture(autouse=True)
def _mailbox(router: respx.MockRouter) -> Iterator[None]:
    router.get(LABELS).respond(200, json=labels())
    route_messages(router, *(
        message(f"m{i}", sender="Bob <bob@example.com>" if i % 2 == 0 else "Ann <a@x.org>",
                internal=1_762_160_400_000 + i * 1000)
        for i in range(1, 10)
    ))  # fmt: skip
    yield


def script(router: respx.MockRouter, *answers: httpx.Response, idle: str = "900") -> respx.Route:
    """`history.list` answering `answers` in turn, then nothing new at history `idle`."""
    queue = list(answers)

    def answer(request: httpx.Request) -> httpx.Response:
        return queue.pop(0) if queue else httpx.Response(200, json=history(history_id=idle))

    return router.get(HISTORY).mock(side_effect=answer)


def params(route: respx.Route, index: int = -1) -> dict[str, list[str]]:
    return parse_qs(urlsplit(str(route.calls[index].request.url)).query)


async def take(watch: Any, n: int) -> list[ReceivedMessage]:
    out: list[ReceivedMessage] = []
    async with aclosing(watch) as messages:
        async for m in messages:
            out.append(m)
            if len(out) == n:
                break
    return out


async def test_follows_history_from_now_and_saves_where_it_got_to(
    gmail: GmailProvider, router: respx.MockRouter, tmp_path: Path
) -> None:
    router.get(PROFILE).respond(200, json=profile("100"))
    hist = script(
        router,
        httpx.Response(200, json=history(history_id="100")),
        httpx.Response(200, json=history("m1", "m2", history_id="105")),
    )
    state = tmp_path / "gmail-watch.json"
    got = await take(gmail.watch(poll_interval=FAST, state=state), 2)
    assert [m.id for m in got] == ["m1", "m2"]
    assert got[0].folder == "INBOX" and got[0].mailbox is gmail and got[0].attachments
    first = params(hist, 0)
    assert first == {
        "startHistoryId": ["100"], "historyTypes": ["messageAdded"], "labelId": ["INBOX"],
        "maxResults": ["500"],
    }  # fmt: skip
    saved = json.loads(state.read_text())
    # m2's history record is 104: a restart goes on after 103, and skips m2 as seen
    assert saved["history_id"] == "103" and saved["seen"] == ["m1", "m2"]
    assert saved["received_ms"] >= 1_762_160_402_000  # the newest handed out, or the start


async def test_a_restart_goes_on_from_the_state_without_repeats(
    gmail: GmailProvider, router: respx.MockRouter, tmp_path: Path
) -> None:
    state = tmp_path / "gmail-watch.json"
    state.write_text(json.dumps({"history_id": "100", "received_ms": 0, "seen": ["m1", "m2"]}))
    profile_route = router.get(PROFILE).respond(200, json=profile("1"))
    hist = script(router, httpx.Response(200, json=history("m1", "m2", "m3", history_id="106")))
    got = await take(gmail.watch(poll_interval=FAST, state=state), 1)
    assert [m.id for m in got] == ["m3"]
    assert profile_route.call_count == 0 and params(hist, 0)["startHistoryId"] == ["100"]
    # the next run starts after what was handed out (m3's record is 105)
    hist = script(router, httpx.Response(200, json=history("m4", history_id="107")))
    got = await take(gmail.watch(poll_interval=FAST, state=state), 1)
    assert [m.id for m in got] == ["m4"] and params(hist)["startHistoryId"] == ["104"]
    saved = msgspec.json.decode(state.read_bytes(), type=GmailCheckpoint)
    assert saved.history_id == "105" and saved.seen[-2:] == ("m3", "m4")


async def test_history_pages_are_all_read(gmail: GmailProvider, router: respx.MockRouter) -> None:
    hist = script(
        router,
        httpx.Response(200, json=history("m1", history_id="201", token="next")),
        httpx.Response(200, json=history("m2", history_id="202")),
    )
    got = await take(gmail.watch(poll_interval=FAST, history_id="200"), 2)
    assert [m.id for m in got] == ["m1", "m2"]
    assert params(hist, 1)["pageToken"] == ["next"]


async def test_an_expired_history_id_resyncs_instead_of_failing(
    gmail: GmailProvider, router: respx.MockRouter, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    state = tmp_path / "gmail-watch.json"
    state.write_text(
        json.dumps({"history_id": "50", "received_ms": 1_762_160_402_500, "seen": ["m2"]})
    )
    router.get(PROFILE).respond(200, json=profile("300"))
    hist = script(
        router,
        httpx.Response(404, json=NOT_FOUND),
        httpx.Response(200, json=history("m5", history_id="301")),
    )
    listed = router.get(LIST).respond(200, json=listing("m3", "m2"))  # newest first
    with caplog.at_level(logging.WARNING, logger="xcomm.email.gmail.watch"):
        got = await take(gmail.watch(poll_interval=FAST, state=state), 2)
    assert [m.id for m in got] == ["m3", "m5"]  # m2 was seen before the gap
    assert "no longer has history id 50" in caplog.text
    query = parse_qs(urlsplit(str(listed.calls.last.request.url)).query)
    assert query["q"] == ["after:1762160401"] and query["labelIds"] == ["INBOX"]
    assert params(hist, 1)["startHistoryId"] == ["300"]


async def test_a_query_filters_what_arrives(gmail: GmailProvider, router: respx.MockRouter) -> None:
    script(router, httpx.Response(200, json=history("m1", "m2", "m3", "m4", history_id="9")))
    query = EmailQuery().from_sender("bob@example.com")
    got = await take(gmail.watch(query, poll_interval=FAST, history_id="5"), 2)
    assert [m.id for m in got] == ["m2", "m4"]


async def test_a_query_on_bodies_reads_them_with_the_message(
    gmail: GmailProvider, router: respx.MockRouter
) -> None:
    script(router, httpx.Response(200, json=history("m1", history_id="9")))
    query = EmailQuery().body_contains("old quote")
    (got,) = await take(gmail.watch(query, poll_interval=FAST, history_id="5"), 1)
    gets = [c.request for c in router.calls if c.request.url.path.endswith("/m1")]
    assert [parse_qs(urlsplit(str(r.url)).query) for r in gets] == [{"format": ["full"]}]
    assert "old quote" in await got.text()


async def test_failures_after_the_start_do_not_end_the_watch(
    gmail: GmailProvider, router: respx.MockRouter, caplog: pytest.LogCaptureFixture
) -> None:
    failing = [httpx.Response(503, json=BACKEND)] * 3  # more than the retry policy's attempts
    hist = script(router, *failing, httpx.Response(200, json=history("m1", history_id="9")))
    with caplog.at_level(logging.WARNING, logger="xcomm.email.gmail.watch"):
        got = await take(gmail.watch(poll_interval=FAST, history_id="5"), 1)
    assert [m.id for m in got] == ["m1"] and hist.call_count == 4
    assert "ServiceUnavailable" in caplog.text


async def test_a_refusal_ends_the_watch(gmail: GmailProvider, router: respx.MockRouter) -> None:
    script(router, httpx.Response(403, json=NO_SCOPE))
    with pytest.raises(AuthenticationError, match=r"history\.list"):
        await take(gmail.watch(poll_interval=FAST, history_id="5"), 1)
    router.get(PROFILE).respond(403, json=NO_SCOPE)
    with pytest.raises(AuthenticationError, match="getProfile"):
        await take(gmail.watch(poll_interval=FAST), 1)


async def test_include_existing_yields_the_folder_first(
    gmail: GmailProvider, router: respx.MockRouter
) -> None:
    router.get(PROFILE).respond(200, json=profile("100"))
    listed = router.get(LIST).respond(200, json=listing("m2", "m1"))
    script(router, httpx.Response(200, json=history("m2", "m3", history_id="101")))
    got = await take(gmail.watch(poll_interval=FAST, include_existing=True), 3)
    assert [m.id for m in got] == ["m1", "m2", "m3"]  # m2 is not yielded twice
    assert parse_qs(urlsplit(str(listed.calls.last.request.url)).query)["labelIds"] == ["INBOX"]


async def test_your_own_state_store(gmail: GmailProvider, router: respx.MockRouter) -> None:
    class Memory:
        def __init__(self) -> None:
            self.saved: list[GmailCheckpoint] = []

        async def load(self) -> GmailCheckpoint | None:
            return GmailCheckpoint(history_id="40")

        async def save(self, checkpoint: GmailCheckpoint, /) -> None:
            self.saved.append(checkpoint)

    store = Memory()
    assert isinstance(store, GmailWatchState)
    hist = script(router, httpx.Response(200, json=history("m1", history_id="41")))
    await take(gmail.watch(folder="Boss", poll_interval=FAST, state=store), 1)
    assert params(hist, 0)["labelId"] == ["Label_7"] and params(hist, 0)["startHistoryId"] == ["40"]
    assert store.saved and store.saved[-1].seen == ("m1",)


async def test_history_list_charges_two_units(router: respx.MockRouter, token_file: Path) -> None:
    clock = FakeClock()  # still: the bucket does not refill while the test runs
    async with CommManager(transport=httpx.MockTransport(router.async_handler),
                           clock=clock) as comm:  # fmt: skip
        gmail = comm.gmail(token_file)
        assert gmail.limiter is not None
        router.get(PROFILE).respond(200, json=profile("100"))
        script(router, httpx.Response(200, json=history("m1", history_id="101")))
        (before,) = gmail.limiter.statistics()
        async with aclosing(gmail.watch()) as messages:
            first = await anext(messages)
            (after,) = gmail.limiter.statistics()
        assert first.id == "m1"
        # labels.list 1 + getProfile 1 + history.list 2 + messages.get 5
        assert round(before.tokens - after.tokens, 6) == 9


async def test_bad_arguments_are_refused_at_once(gmail: GmailProvider, tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="EmailQuery"):
        gmail.watch("from:bob")
    with pytest.raises(ValidationError, match="no UIDs"):
        gmail.watch(since_uid=5)
    with pytest.raises(ValidationError, match="sort_by"):
        gmail.watch(EmailQuery().from_sender("x").limit(3))
    with pytest.raises(ValidationError, match="poll_interval"):
        gmail.watch(poll_interval=0)
    with pytest.raises(ValidationError, match="history_id"):
        gmail.watch(history_id="abc")
    with pytest.raises(ValidationError, match="state"):
        gmail.watch(state=42)  # type: ignore[arg-type]
    broken = tmp_path / "state.json"
    broken.write_text("{not json")
    with pytest.raises(ValidationError, match="not a Gmail watch checkpoint"):
        await take(gmail.watch(state=broken), 1)
