"""Outlook as a mailbox (Microsoft Graph): search, read, act, `$batch` and delta, over respx.

Answers are Graph's documented shapes: the message resource (nested `emailAddress`,
`flag.flagStatus`, `categories`), collections with `@odata.nextLink`, `$batch` responses,
delta rounds ending in `@odata.deltaLink` with `@removed` entries, error bodies with
`innerError`. Every request the provider makes is checked against the published shapes and
query options (`graph_schema.py`), inner `$batch` requests included.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import respx
from graph_shapes import BASE, GRAPH, MAILBOX, app_only, attachment, graph_error, message, page
from mailbox_scenario import PDF, check_outcome, triage

from xcomm import (
    AuthenticationError,
    CommManager,
    EmailQuery,
    GraphCheckpoint,
    GraphProvider,
    LifecycleError,
    ProviderError,
    RateLimitError,
    ReceivedMessage,
    SortOrder,
    ValidationError,
)

MESSAGES = f"{BASE}/messages"
INBOX = f"{BASE}/mailFolders/inbox/messages"
BATCH = f"{GRAPH}/$batch"


def batch_answer(*responses: dict[str, Any]) -> dict[str, Any]:
    return {"responses": list(responses)}


def batch_items(request: httpx.Request) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = json.loads(request.content)["requests"]
    return items


async def listed(
    outlook: GraphProvider, router: respx.MockRouter, *items: dict[str, Any]
) -> list[ReceivedMessage]:
    route = router.get(INBOX).respond(200, json=page(*reversed(items)))  # newest first
    found = await outlook.search(folder="inbox")
    assert route.called and [m.id for m in found] == [i["id"] for i in items]
    return found


# -- search ------------------------------------------------------------------------------------


async def test_search_compiles_the_query_and_maps_the_message_resource(
    outlook: GraphProvider, router: respx.MockRouter
) -> None:
    route = router.get(INBOX).respond(
        200,
        json=page(
            message(
                "AAMkAGI1AAAoZCfHAAA=",
                is_read=True,
                flagged=True,
                importance="high",
                categories=("Boss", "Q4"),
                attachments=[attachment("AAMkAGI1AAAoZCfHAAABEgAQAC", "q4.pdf")],
            )
        ),
    )
    query = EmailQuery().from_sender("ada@example.org").is_unread().since("2024-05-01")
    (found,) = await outlook.search(query, folder="inbox")
    params = route.calls.last.request.url.params
    assert params["$filter"] == (
        "from/emailAddress/address eq 'ada@example.org' and isRead eq false "
        "and receivedDateTime ge 2024-05-01T00:00:00Z"
    )
    assert "body" not in params["$select"].split(",") and "$search" not in params
    assert params["$expand"].startswith("attachments($select=id,name,contentType,size,isInline)")
    assert found.id == "AAMkAGI1AAAoZCfHAAA=" and found.uid == 0
    assert found.thread_id and found.thread_id.startswith("AAQkAGI1")
    assert found.preview == "Figures attached, see the summary below."
    assert found.folder == "inbox" and found.subject == "Q4 figures"
    assert found.sender == "ada@example.org" and found.sender_name == "Ada Lovelace"
    assert [a.email for a in found.to] == [MAILBOX] and found.cc[0].name is None
    assert found.message_id == "<AAMkAGI1@namprd13.prod.outlook.com>"
    assert found.received_at is not None and found.received_at.isoformat() == (
        "2024-05-02T10:11:12+00:00"
    )
    assert found.flags == ("\\Seen", "\\Flagged", "$Important", "Boss", "Q4")
    assert found.labels == ("$Important", "Boss", "Q4") and found.is_read
    assert found.size == 14325
    (info,) = found.attachments
    assert (info.filename, info.content_type, info.size, info.inline) == (
        "q4.pdf",
        "application/pdf",
        7203,
        False,
    )
    assert info.section == "AAMkAGI1AAAoZCfHAAABEgAQAC"
    assert found.has_text and found.has_html and found.mailbox is outlook


async def test_search_follows_next_links_and_returns_oldest_first_up_to_the_limit(
    outlook: GraphProvider, router: respx.MockRouter
) -> None:
    second = f"{MESSAGES}?$skiptoken=AAQkAGI1"
    first = router.get(MESSAGES, params={"$top": "3"}).respond(
        200,
        json=page(
            message("m3", received="2024-05-03T10:11:12Z"),
            message("m2", received="2024-05-02T10:11:12Z"),
            next_link=second,
        ),
    )
    following = router.get(second).respond(
        200, json=page(message("m1", received="2024-05-01T10:11:12Z"), message("m0"))
    )
    found = await outlook.search(limit=3)
    assert [m.id for m in found] == ["m1", "m2", "m3"]
    assert first.called and following.called
    assert following.calls.last.request.url.params.get("$select") is None  # the link as given


async def test_full_text_goes_to_search_and_the_rest_is_checked_on_the_text_body(
    outlook: GraphProvider, router: respx.MockRouter
) -> None:
    keep = message("m1", subject="Invoice 42", body={"contentType": "text", "content": "total due"})
    drop = message("m2", subject="Invoice 43", body={"contentType": "text", "content": "nothing"})
    route = router.get(MESSAGES).respond(200, json=page(keep, drop))
    query = EmailQuery().body_contains("due").subject_contains("Invoice")
    found = await outlook.search(query)
    request = route.calls.last.request
    assert request.url.params["$search"] == '"body:due AND subject:Invoice"'
    assert "body" in request.url.params["$select"].split(",")
    assert request.headers["Prefer"] == 'outlook.body-content-type="text"'
    assert [m.id for m in found] == ["m1"]
    assert await found[0].text() == "total due"  # cached from the listing: no request


async def test_a_sort_graph_cannot_do_runs_here(
    outlook: GraphProvider, router: respx.MockRouter
) -> None:
    route = router.get(MESSAGES).respond(
        200,
        json=page(
            message("m1", subject="b"), message("m2", subject="C"), message("m3", subject="a")
        ),
    )
    found = await outlook.search(EmailQuery().sort_by("subject").limit(2))
    assert [m.subject for m in found] == ["a", "b"]
    assert "$orderby" not in route.calls.last.request.url.params


async def test_a_kql_string_is_sent_as_search(
    outlook: GraphProvider, router: respx.MockRouter
) -> None:
    route = router.get(MESSAGES).respond(200, json=page())
    assert await outlook.search("from:ada subject:report") == []
    assert route.calls.last.request.url.params["$search"] == '"from:ada subject:report"'


async def test_a_folder_path_is_resolved_once_through_mail_folders(
    outlook: GraphProvider, router: respx.MockRouter
) -> None:
    top = router.get(f"{BASE}/mailFolders").respond(
        200,
        json={
            "value": [
                {"id": "AAMkClients=", "displayName": "Clients", "childFolderCount": 1},
                {"id": "AAMkInbox=", "displayName": "Inbox", "childFolderCount": 0},
            ]
        },
    )
    children = router.get(f"{BASE}/mailFolders/AAMkClients=/childFolders").respond(
        200, json={"value": [{"id": "AAMkAcme/x+y=", "displayName": "Acme", "childFolderCount": 0}]}
    )
    listing = router.get(f"{BASE}/mailFolders/AAMkAcme%2Fx%2By=/messages").respond(
        200, json=page(message("m1"))
    )
    for _ in range(2):
        (found,) = await outlook.search(EmailQuery().folder("Clients/Acme"))
        assert found.folder == "Clients/Acme"
    assert top.call_count == 1 and children.call_count == 1 and listing.call_count == 2
    with pytest.raises(ProviderError, match="no folder 'Clients/Nope'") as caught:
        await outlook.search(folder="Clients/Nope")
    assert caught.value.error_code == "folderNotFound"
    with pytest.raises(ValidationError, match="use one of them"):
        await outlook.search(EmailQuery().folder("Clients/Acme"), folder="inbox")


async def test_iter_search_asks_graph_for_the_oldest_first(
    outlook: GraphProvider, router: respx.MockRouter
) -> None:
    route = router.get(INBOX).respond(
        200, json=page(message("m1", received="2024-05-01T10:11:12Z"), message("m2"))
    )
    query = EmailQuery().is_unread()
    found = [m.id async for m in outlook.iter_search(query, folder="inbox", batch_size=50)]
    assert found == ["m1", "m2"]
    params = route.calls.last.request.url.params
    assert params["$orderby"] == "receivedDateTime asc" and params["$top"] == "50"
    assert params["$filter"].startswith("receivedDateTime ge 1900-01-01T00:00:00Z and ")
    with pytest.raises(ValidationError):
        outlook.iter_search(query.sort_by("date", SortOrder.DESC))


async def test_get_reads_the_headers_and_a_missing_message_is_none(
    outlook: GraphProvider, router: respx.MockRouter
) -> None:
    headers = [
        {"name": "In-Reply-To", "value": "<first@example.org>"},
        {"name": "References", "value": "<root@example.org> <first@example.org>"},
    ]
    route = router.get(f"{MESSAGES}/m1").respond(
        200, json=message("m1", internetMessageHeaders=headers)
    )
    found = await outlook.get("m1")
    assert found is not None
    assert "internetMessageHeaders" in route.calls.last.request.url.params["$select"]
    assert found.in_reply_to == ("<first@example.org>",)
    assert found.references == ("<root@example.org>", "<first@example.org>")
    router.get(f"{MESSAGES}/gone").respond(
        404,
        json=graph_error("ErrorItemNotFound", "The specified object was not found in the store."),
    )
    assert await outlook.get("gone") is None


async def test_listing_errors_are_mapped(outlook: GraphProvider, router: respx.MockRouter) -> None:
    route = router.get(MESSAGES)
    route.side_effect = [
        httpx.Response(
            429,
            headers={"Retry-After": "0"},
            json=graph_error(
                "ApplicationThrottled", "Application is over its MailboxConcurrency limit."
            ),
        ),
        httpx.Response(200, json=page(message("m1"))),
    ]
    assert [m.id for m in await outlook.search()] == ["m1"] and route.call_count == 2
    route.side_effect = None
    route.respond(
        403,
        json=graph_error("ErrorAccessDenied", "Access is denied. Check credentials and try again."),
    )
    with pytest.raises(AuthenticationError, match=r"Mail\.Read"):
        await outlook.search()
    route.respond(200, text="<html>proxy</html>")
    with pytest.raises(ProviderError, match="not JSON"):
        await outlook.search()
    route.respond(200, json=page(message("m1"), next_link="https://evil.example/steal"))
    with pytest.raises(ProviderError, match="not a Graph URL"):
        await outlook.search()


# -- bodies and attachments ----------------------------------------------------------------------


async def test_bodies_come_in_the_form_asked_for(
    outlook: GraphProvider, router: respx.MockRouter
) -> None:
    (found,) = await listed(outlook, router, message("m1"))

    def body(request: httpx.Request) -> httpx.Response:
        kind = "html" if "html" in request.headers["Prefer"] else "text"
        content = "<p>Hello</p>" if kind == "html" else "Hello"
        return httpx.Response(
            200, json={"id": "m1", "body": {"contentType": kind, "content": content}}
        )

    route = router.get(f"{MESSAGES}/m1", params={"$select": "body"}).mock(side_effect=body)
    assert await found.text() == "Hello" and await found.html() == "<p>Hello</p>"
    assert await found.text() == "Hello" and route.call_count == 2


async def test_download_attachments_keeps_files_inside_the_folder(
    outlook: GraphProvider, router: respx.MockRouter, tmp_path: Path
) -> None:
    (found,) = await listed(
        outlook,
        router,
        message(
            "m1",
            attachments=[
                attachment("att1", "../../etc/passwd"),
                attachment("att2", "logo.png", inline=True),
            ],
        ),
    )
    value = router.get(f"{MESSAGES}/m1/attachments/att1/$value").respond(200, content=b"%PDF-1.7")
    written = await found.download_attachments(tmp_path / "out")
    assert written == [tmp_path / "out" / "passwd"]
    assert written[0].read_bytes() == b"%PDF-1.7" and value.call_count == 1
    assert not (tmp_path / "etc").exists()


async def test_the_mailbox_bound_holds_while_bodies_and_files_are_fetched_at_once(
    outlook: GraphProvider, router: respx.MockRouter, tmp_path: Path
) -> None:
    items = [message(f"m{i}", attachments=[attachment(f"a{i}", f"f{i}.pdf")]) for i in range(12)]
    found = await listed(outlook, router, *items)
    in_flight = peak = 0

    async def slow(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await anyio.sleep(0.001)
        in_flight -= 1
        if request.url.path.endswith("$value"):
            return httpx.Response(200, content=b"data")
        return httpx.Response(200, json={"body": {"contentType": "text", "content": "x"}})

    router.route(method="GET", url__startswith=f"{MESSAGES}/m").mock(side_effect=slow)
    async with anyio.create_task_group() as group:
        for m in found:
            group.start_soon(m.text)
            group.start_soon(m.download_attachments, tmp_path / m.id)
    assert 1 < peak <= 4


# -- actions -------------------------------------------------------------------------------------


async def test_flags_become_patches(outlook: GraphProvider, router: respx.MockRouter) -> None:
    (found,) = await listed(outlook, router, message("m1"))
    route = router.patch(f"{MESSAGES}/m1").respond(200, json=message("m1", is_read=True))
    found = await found.mark_as_read()
    assert json.loads(route.calls.last.request.content) == {"isRead": True} and found.is_read
    found = await found.mark_as_important()
    assert json.loads(route.calls.last.request.content) == {"flag": {"flagStatus": "flagged"}}
    await found.mark_as_unimportant()
    assert json.loads(route.calls.last.request.content) == {"flag": {"flagStatus": "notFlagged"}}
    await outlook.change_flags(found, add=["$Important"], remove=["\\Seen"])
    assert json.loads(route.calls.last.request.content) == {"importance": "high", "isRead": False}
    with pytest.raises(ValidationError, match="no \\\\Deleted flag"):
        await outlook.change_flags(found, add=["\\Deleted"])
    assert route.call_count == 4


async def test_labels_are_categories_read_modified_and_written(
    outlook: GraphProvider, router: respx.MockRouter
) -> None:
    (found,) = await listed(outlook, router, message("m1", categories=("Q4",)))
    current = router.get(f"{MESSAGES}/m1", params={"$select": "categories"}).respond(
        200, json={"id": "m1", "categories": ["Q4", "Red category"]}
    )
    patch = router.patch(f"{MESSAGES}/m1").respond(200, json=message("m1"))
    found = await found.add_label("Boss")
    assert json.loads(patch.calls.last.request.content) == {
        "categories": ["Q4", "Red category", "Boss"]
    }
    assert "Boss" in found.labels
    await found.remove_label("q4")  # matched without case, as Outlook does
    assert json.loads(patch.calls.last.request.content) == {"categories": ["Red category"]}
    assert current.call_count == 2
    with pytest.raises(ValidationError, match="is a flag"):
        await found.add_label("\\Seen")


async def test_move_returns_the_message_under_its_new_id(
    outlook: GraphProvider, router: respx.MockRouter
) -> None:
    (found,) = await listed(
        outlook, router, message("m1", attachments=[attachment("old-att", "q4.pdf")])
    )
    router.get(f"{BASE}/mailFolders").respond(
        200,
        json={"value": [{"id": "AAMkArchive2024=", "displayName": "2024", "childFolderCount": 0}]},
    )
    moved_json = message("m1-moved")
    del moved_json["attachments"], moved_json["attachments@odata.context"]
    move = router.post(f"{MESSAGES}/m1/move").respond(201, json=moved_json)
    files = router.get(f"{MESSAGES}/m1-moved/attachments").respond(
        200, json={"value": [attachment("new-att", "q4.pdf")]}
    )
    moved = await found.move_to("2024")
    assert json.loads(move.calls.last.request.content) == {"destinationId": "AAMkArchive2024="}
    assert moved is not None and moved.id == "m1-moved" and moved.folder == "2024"
    assert [a.section for a in moved.attachments] == ["new-att"] and files.called
    copy = router.post(f"{MESSAGES}/m1/copy").respond(201, json=message("m1-copy"))
    router.get(f"{MESSAGES}/m1-copy/attachments").respond(200, json={"value": []})
    copied = await found.copy_to("archive")
    assert json.loads(copy.calls.last.request.content) == {"destinationId": "archive"}
    assert copied is not None and copied.id == "m1-copy"


async def test_delete_is_permanent_unless_told_and_trash_moves_to_deleted_items(
    outlook: GraphProvider, router: respx.MockRouter
) -> None:
    (found,) = await listed(outlook, router, message("m1"))
    purge = router.post(f"{MESSAGES}/m1/permanentDelete").respond(204)
    soft = router.delete(f"{MESSAGES}/m1").respond(204)
    trash = router.post(f"{MESSAGES}/m1/move").respond(201, json=message("m1-trash"))
    await found.delete()
    await found.delete(expunge=False)
    trashed = await found.trash()
    assert purge.call_count == 1 and soft.call_count == 1
    assert json.loads(trash.calls.last.request.content) == {"destinationId": "deleteditems"}
    assert trashed is not None and trashed.folder == "deleteditems"
    purge.respond(
        403,
        json=graph_error("ErrorAccessDenied", "Access is denied. Check credentials and try again."),
    )
    with pytest.raises(AuthenticationError, match=r"Mail\.ReadWrite"):
        await found.delete()


async def test_replies_thread_and_graph_builds_its_own_drafts(
    outlook: GraphProvider, router: respx.MockRouter
) -> None:
    (found,) = await listed(outlook, router, message("m1"))
    router.get(f"{MESSAGES}/m1", params={"$select": "body"}).respond(
        200, json={"body": {"contentType": "text", "content": "Figures?"}}
    )
    send = router.post(f"{BASE}/sendMail").respond(202)
    draft = await found.reply(outlook, "Attached.")
    await draft.send()
    sent = send.calls.last.request
    assert sent.headers["Content-Type"] == "text/plain"  # MIME: it carries In-Reply-To
    import base64

    raw = base64.b64decode(sent.content)
    assert b"In-Reply-To: <m1@namprd13.prod.outlook.com>" in raw
    assert b"> Figures?" in raw
    # mark_answered is nothing on Graph: no PATCH, no extra request after the send
    assert router.calls.last.request.url.path.endswith("/sendMail")
    create = router.post(f"{MESSAGES}/m1/createReplyAll").respond(
        201, json=message("draft1", isDraft=True, subject="RE: Q4 figures")
    )
    reply = await outlook.create_reply(found, "Thanks", reply_all=True)
    assert json.loads(create.calls.last.request.content) == {"comment": "Thanks"}
    assert reply.id == "draft1" and "\\Draft" in reply.flags
    post = router.post(f"{MESSAGES}/draft1/send").respond(202)
    await outlook.send_draft(reply)
    assert post.called


# -- batch mode ----------------------------------------------------------------------------------


def ok(item: dict[str, Any]) -> dict[str, Any]:
    return {"id": item["id"], "status": 200, "headers": {"Content-Type": "application/json"},
            "body": {"id": item["url"].rsplit("/", 1)[-1]}}  # fmt: skip


async def test_batch_mode_sends_twenty_requests_a_call(
    outlook: GraphProvider, router: respx.MockRouter
) -> None:
    found = await listed(outlook, router, *(message(f"m{i}") for i in range(25)))
    held: list[int] = []

    def answer(request: httpx.Request) -> httpx.Response:
        assert outlook._concurrency is not None
        held.append(int(outlook._concurrency.borrowed_tokens))
        return httpx.Response(200, json=batch_answer(*map(ok, batch_items(request))))

    route = router.post(BATCH).mock(side_effect=answer)
    async with outlook.batch_mode() as batch:
        for m in found:
            assert await m.mark_as_read()
        await found[0].mark_as_important()
        assert batch.pending == 26
        assert not route.called
    sizes = [len(batch_items(c.request)) for c in route.calls]
    assert sizes == [20, 5]
    assert held == [4, 4]  # Graph runs up to 4 of a batch at once: the mailbox bound says so
    first = batch_items(route.calls[0].request)[0]
    assert first["method"] == "PATCH" and first["url"] == f"/users/{MAILBOX}/messages/m0"
    assert first["body"] == {"isRead": True, "flag": {"flagStatus": "flagged"}}
    assert first["headers"] == {"Content-Type": "application/json"}


async def test_batch_mode_retries_throttled_requests_alone_and_raises_failures(
    outlook: GraphProvider, router: respx.MockRouter
) -> None:
    found = await listed(outlook, router, *(message(f"m{i}") for i in range(3)))
    throttled = {
        "status": 429,
        "headers": {"Retry-After": "0", "Content-Type": "application/json"},
        "body": graph_error(
            "ApplicationThrottled", "Application is over its MailboxConcurrency limit."
        ),
    }
    missing = {
        "status": 404,
        "headers": {"Content-Type": "application/json"},
        "body": graph_error(
            "ErrorItemNotFound", "The specified object was not found in the store."
        ),
    }
    answers = [
        batch_answer({"id": "1", "status": 204, "headers": {}}, {"id": "2", **throttled},
                     {"id": "3", **missing}),
        batch_answer({"id": "2", "status": 204, "headers": {}}),
    ]  # fmt: skip
    route = router.post(BATCH).mock(side_effect=[httpx.Response(200, json=a) for a in answers])
    with pytest.raises(ProviderError, match="no such message") as caught:
        async with outlook.batch_mode():
            for m in found:
                await m.delete(expunge=False)
    assert caught.value.status == 404
    assert [i["id"] for i in batch_items(route.calls[1].request)] == ["2"]
    assert [i["method"] for i in batch_items(route.calls[0].request)] == ["DELETE"] * 3


async def test_batch_mode_gives_up_on_a_throttle_that_lasts(
    outlook: GraphProvider, router: respx.MockRouter
) -> None:
    (found,) = await listed(outlook, router, message("m1"))
    answer = batch_answer(
        {"id": "1", "status": 429, "headers": {"Retry-After": "0"},
         "body": graph_error("ApplicationThrottled", "Too many requests")}
    )  # fmt: skip
    route = router.post(BATCH).respond(200, json=answer)
    with pytest.raises(RateLimitError):
        async with outlook.batch_mode():
            await found.mark_as_read()
    assert route.call_count == 3  # the retry policy's attempts


async def test_batch_mode_reads_categories_then_patches_and_moves(
    outlook: GraphProvider, router: respx.MockRouter
) -> None:
    found = await listed(outlook, router, message("m1"), message("m2"))

    def answer(request: httpx.Request) -> httpx.Response:
        items = batch_items(request)
        if items[0]["method"] == "GET":
            body = {"categories": ["Q4"]}
            return httpx.Response(
                200,
                json=batch_answer(
                    *({"id": i["id"], "status": 200, "headers": {}, "body": body} for i in items)
                ),
            )
        return httpx.Response(200, json=batch_answer(*map(ok, items)))  # fmt: skip

    route = router.post(BATCH).mock(side_effect=answer)
    async with outlook.batch_mode():
        await found[0].add_label("Boss")
        await found[0].mark_as_read()
        assert await found[1].move_to("archive") is None
    reads, patches, moves = (batch_items(c.request) for c in route.calls)
    assert [i["url"] for i in reads] == [f"/users/{MAILBOX}/messages/m1?$select=categories"]
    assert patches[0]["body"] == {"isRead": True, "categories": ["Q4", "Boss"]}
    assert moves[0]["url"].endswith("/messages/m2/move")
    assert moves[0]["body"] == {"destinationId": "archive"}


async def test_a_block_that_raises_sends_nothing(
    outlook: GraphProvider, router: respx.MockRouter
) -> None:
    (found,) = await listed(outlook, router, message("m1"))
    route = router.post(BATCH).respond(200, json=batch_answer())
    with pytest.raises(RuntimeError):
        async with outlook.batch_mode():
            await found.mark_as_read()
            raise RuntimeError("boom")
    assert not route.called


# -- watch (delta) -------------------------------------------------------------------------------

DELTA = f"{BASE}/mailFolders/inbox/messages/delta"
NEXT = f"{BASE}/mailFolders('inbox')/messages/delta?$skiptoken=GwcBoTmPuoTQWfcsAbkYM"
LINK1 = f"{BASE}/mailFolders('inbox')/messages/delta?$deltatoken=GwcBoTmPuoGNlgXgF1nyUNMXY"
LINK2 = f"{BASE}/mailFolders('inbox')/messages/delta?$deltatoken=GwcBoTmPuoGNlgXgF1nyUNMZZ"


def delta(
    *items: dict[str, Any], next_link: str | None = None, delta_link: str | None = None
) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "@odata.context": f"{GRAPH}/$metadata#Collection(message)",
        "value": list(items),
    }
    if next_link:
        answer["@odata.nextLink"] = next_link
    if delta_link:
        answer["@odata.deltaLink"] = delta_link
    return answer


REMOVED = {
    "@odata.type": "#microsoft.graph.message",
    "id": "gone",
    "@removed": {"reason": "deleted"},
}


async def test_watch_yields_new_mail_once_and_keeps_the_delta_link(
    outlook: GraphProvider, router: respx.MockRouter, tmp_path: Path
) -> None:
    state = tmp_path / "outlook-watch.json"
    first = router.get(DELTA).respond(200, json=delta(message("old1"), next_link=NEXT))
    router.get(NEXT).respond(200, json=delta(message("old2"), delta_link=LINK1))
    new = message("new1", subject="Invoice", received="2099-01-01T00:00:00Z")
    router.get(LINK1).respond(200, json=delta(REMOVED, new, message("skip", subject="hi",
                                                                   received="2099-01-01T00:00:01Z"),
                                              delta_link=LINK2))  # fmt: skip
    router.get(LINK2).respond(200, json=delta(delta_link=LINK2))
    query = EmailQuery().subject_contains("Invoice")
    async with contextlib.aclosing(outlook.watch(query, state=state, poll_interval=0.01)) as feed:
        got = await anext(feed)
    assert got.id == "new1"
    params = first.calls.last.request.url.params
    assert params["changeType"] == "created" and "$select" in params
    assert first.calls.last.request.headers["Prefer"] == "odata.maxpagesize=100"
    saved = json.loads(state.read_text())
    assert saved["delta_link"] == LINK1 and saved["seen"] == ["new1"]

    # a restart goes on from the saved link and does not yield new1 again
    router.get(LINK1).respond(
        200, json=delta(new, message("new2", subject="Invoice 2"), delta_link=LINK2)
    )
    async with contextlib.aclosing(outlook.watch(query, state=state, poll_interval=0.01)) as feed:
        again = await anext(feed)
    assert again.id == "new2" and first.call_count == 1


async def test_an_expired_delta_link_resyncs_without_repeating(
    outlook: GraphProvider, router: respx.MockRouter
) -> None:
    class Memory:
        def __init__(self) -> None:
            self.checkpoint: GraphCheckpoint | None = GraphCheckpoint(
                delta_link=LINK1, received_ms=1714644672000, seen=("seen1",)
            )

        async def load(self) -> GraphCheckpoint | None:
            return self.checkpoint

        async def save(self, checkpoint: GraphCheckpoint) -> None:
            self.checkpoint = checkpoint

    store = Memory()
    router.get(LINK1).respond(
        410, json=graph_error("SyncStateNotFound", "The sync state generation is not found.")
    )
    fresh = router.get(DELTA).respond(200, json=delta(
        message("older", received="2024-01-01T00:00:00Z"),
        message("seen1", received="2024-05-02T10:11:13Z"),
        message("missed", received="2024-05-02T10:11:14Z"),
        delta_link=LINK2))  # fmt: skip
    router.get(LINK2).respond(200, json=delta(delta_link=LINK2))
    async with contextlib.aclosing(outlook.watch(state=store, poll_interval=0.01)) as feed:
        got = await anext(feed)
    assert got.id == "missed" and fresh.called
    assert store.checkpoint is not None and store.checkpoint.seen == ("seen1", "missed")
    # closed before the round ended: the next run resyncs again and skips both
    assert store.checkpoint.delta_link == LINK1


async def test_closing_the_manager_ends_a_waiting_watch(
    router: respx.MockRouter, token: respx.Route
) -> None:
    polled = anyio.Event()
    router.get(DELTA).respond(200, json=delta(delta_link=LINK1))

    def poll(request: httpx.Request) -> httpx.Response:
        polled.set()
        return httpx.Response(200, json=delta(delta_link=LINK1))

    router.get(LINK1).mock(side_effect=poll)
    comm = CommManager(transport=httpx.MockTransport(router.async_handler))
    await comm.__aenter__()
    outlook = app_only(comm)
    feed = outlook.watch(poll_interval=3600)

    async def close_once_polled() -> None:
        await polled.wait()
        await anyio.sleep(0.01)  # the watch goes on to wait an hour
        await comm.aclose()

    ended: list[BaseException] = []
    with anyio.fail_after(30):  # an hour's wait would fail here, not hang the run
        try:
            async with anyio.create_task_group() as group:
                group.start_soon(close_once_polled)
                await anext(feed)
        except* LifecycleError as caught:
            ended.extend(caught.exceptions)
    assert len(ended) == 1
    await feed.aclose()


async def test_watch_refuses_what_it_cannot_follow(outlook: GraphProvider) -> None:
    with pytest.raises(ValidationError, match="delta has no search"):
        outlook.watch("from:bob")
    with pytest.raises(ValidationError, match="sort_by"):
        outlook.watch(EmailQuery().limit(3))
    with pytest.raises(ValidationError, match="delta_link"):
        outlook.watch(delta_link="https://evil.example/delta")
    with pytest.raises(ValidationError, match="UIDs"):
        outlook.watch(since_uid=3)
    with pytest.raises(ValidationError, match="state"):
        outlook.watch(state=42)  # type: ignore[arg-type]


async def test_folders_list_nested_paths_with_special_use_flags(
    outlook: GraphProvider, router: respx.MockRouter
) -> None:
    def specials(request: httpx.Request) -> httpx.Response:
        responses = []
        for item in batch_items(request):
            name = item["url"].split("/mailFolders/")[1].split("?")[0]
            if name == "inbox":
                responses.append(
                    {"id": item["id"], "status": 200, "headers": {}, "body": {"id": "AAMkInbox="}}
                )
            else:
                error = graph_error("ErrorItemNotFound", "not found")
                responses.append({"id": item["id"], "status": 404, "headers": {}, "body": error})
        return httpx.Response(200, json=batch_answer(*responses))

    router.post(BATCH).mock(side_effect=specials)
    router.get(f"{BASE}/mailFolders").respond(200, json={"value": [
        {"id": "AAMkInbox=", "displayName": "Inbox", "childFolderCount": 1},
        {"id": "AAMkNotes=", "displayName": "Notes", "childFolderCount": 0}]})  # fmt: skip
    router.get(f"{BASE}/mailFolders/AAMkInbox=/childFolders").respond(
        200, json={"value": [{"id": "AAMkTeam=", "displayName": "Team", "childFolderCount": 0}]}
    )
    folders = {f.name: f.flags for f in await outlook.folders()}
    assert folders == {"Inbox": ("\\Inbox", "\\HasChildren"), "Notes": (), "Inbox/Team": ()}
    create = router.post(f"{BASE}/mailFolders/inbox/childFolders").respond(
        201, json={"id": "AAMkNew=", "displayName": "Acme"}
    )
    await outlook.create_folder("Inbox/Acme")
    assert json.loads(create.calls.last.request.content) == {"displayName": "Acme"}


async def test_a_watch_outlasts_a_transient_failure(
    outlook: GraphProvider, router: respx.MockRouter, caplog: pytest.LogCaptureFixture
) -> None:
    router.get(DELTA).respond(200, json=delta(delta_link=LINK1))
    busy = httpx.Response(503, json=graph_error("ServiceUnavailable", "Service Unavailable"))
    poll = router.get(LINK1)
    poll.side_effect = [
        busy,
        busy,
        busy,
        httpx.Response(200, json=delta(message("late"), delta_link=LINK2)),
    ]
    async with contextlib.aclosing(outlook.watch(poll_interval=0.01)) as feed:
        got = await anext(feed)
    assert got.id == "late" and poll.call_count == 4
    assert "trying again" in caplog.text


async def test_a_batch_answer_missing_a_response_is_an_error(
    outlook: GraphProvider, router: respx.MockRouter
) -> None:
    found = await listed(outlook, router, message("m1"), message("m2"))
    router.post(BATCH).respond(200, json=batch_answer({"id": "1", "status": 204, "headers": {}}))
    with pytest.raises(ProviderError, match="no response for this request"):
        async with outlook.batch_mode():
            for m in found:
                await m.mark_as_read()


# -- the same code on every mailbox ------------------------------------------------------------


async def test_the_same_triage_code_works_on_outlook(
    outlook: GraphProvider, router: respx.MockRouter, tmp_path: Path
) -> None:
    headers = [
        {"name": "Message-ID", "value": "<m1@mail.example.com>"},
        {"name": "References", "value": "<root@example.com>"},
    ]
    report = message(
        "m1",
        subject="Quarterly report",
        internetMessageId="<m1@mail.example.com>",
        internetMessageHeaders=headers,
        attachments=[attachment("att1", "report.pdf")],
    )
    router.get(INBOX).respond(200, json=page(report))
    (m,) = await outlook.search(folder="inbox", headers=True)
    patch = router.patch(f"{MESSAGES}/m1").respond(200, json=report)
    router.get(f"{MESSAGES}/m1", params={"$select": "categories"}).respond(
        200, json={"categories": []}
    )
    text = "Numbers attached.\n\n> an old quote\nBye"
    router.get(f"{MESSAGES}/m1", params={"$select": "body"}).respond(
        200, json={"body": {"contentType": "text", "content": text}}
    )
    router.get(f"{MESSAGES}/m1/attachments/att1/$value").respond(200, content=PDF)
    moved = {k: v for k, v in report.items() if k != "attachments"} | {"id": "m1-archived"}
    router.post(f"{MESSAGES}/m1/move").respond(201, json=moved)
    router.get(f"{MESSAGES}/m1-archived/attachments").respond(
        200, json={"value": [attachment("att9", "report.pdf")]}
    )
    purge = router.post(f"{MESSAGES}/m1-archived/permanentDelete").respond(204)
    outcome = await triage(m, via=outlook, downloads=tmp_path)
    check_outcome(outcome, tmp_path)
    assert [json.loads(c.request.content) for c in patch.calls] == [
        {"isRead": True},
        {"categories": ["Boss"]},
    ]
    assert purge.call_count == 1
