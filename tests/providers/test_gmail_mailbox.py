"""Gmail as a mailbox against respx: reading into `ReceivedMessage`, bodies and attachments,
labels by name, actions, batch mode, threads and replies.

Answers are the Gmail API reference's shapes (`gmail_shapes.py`); every request a test makes
is validated against Gmail's discovery document when it ends.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import respx
from gmail_discovery import gmail_calls, validate, validate_all
from gmail_shapes import (
    API,
    BATCH_MODIFY,
    LABEL_CONFLICT,
    LABELS,
    LIST,
    NO_SCOPE,
    NOT_FOUND,
    PDF,
    PNG,
    SEND,
    UPLOAD,
    attachment,
    labels,
    listing,
    message,
    modified,
    route_messages,
    structure,
)
from mailbox_scenario import check_outcome, triage

from xcomm import (
    AuthenticationError,
    CommManager,
    EmailQuery,
    GmailProvider,
    MailboxProvider,
    ProviderError,
    RateLimitError,
    ReceivedMessage,
    SortOrder,
    ValidationError,
)
from xcomm.email._gmail_parse import STRUCTURE_FIELDS
from xcomm.testing import FakeClock


@pytest.fixture
def label_list(router: respx.MockRouter) -> respx.Route:
    return router.get(LABELS).respond(200, json=labels())


def query_of(request: httpx.Request) -> dict[str, list[str]]:
    return parse_qs(urlsplit(str(request.url)).query)


async def one_message(
    gmail: GmailProvider, router: respx.MockRouter, **kw: object
) -> ReceivedMessage:
    router.get(LIST).respond(200, json=listing("m1"))
    route_messages(router, message("m1", **kw))  # type: ignore[arg-type]
    (found,) = await gmail.search("in:inbox")
    return found


USER_RATE = {
    "error": {
        "code": 403,
        "message": "User-rate limit exceeded",
        "errors": [{"reason": "userRateLimitExceeded", "domain": "usageLimits"}],
    }
}

# -- reading ----------------------------------------------------------------------------------


async def test_search_returns_received_messages_with_labels_as_flags(
    gmail: GmailProvider, router: respx.MockRouter, label_list: respx.Route
) -> None:
    listed = router.get(LIST)
    listed.side_effect = [
        httpx.Response(200, json=listing("m3", "m2", token="page2")),
        httpx.Response(200, json=listing("m1")),
    ] * 2
    route_messages(router, *(message(f"m{i}", subject=f"S{i}") for i in (1, 2, 3)))
    found = await gmail.search("from:jose@example.com")
    assert isinstance(gmail, MailboxProvider)
    assert [m.id for m in found] == ["m1", "m2", "m3"]  # oldest first, as every mailbox
    m = found[0]
    assert isinstance(m, ReceivedMessage) and m.mailbox is gmail
    assert (m.uid, m.thread_id, m.folder, m.size) == (0, "tm1", "", 9_876)
    assert m.preview.startswith("Numbers attached.")
    assert m.received_at is not None and m.received_at.isoformat() == "2025-11-03T09:00:00+00:00"
    assert m.date is not None and m.date.utcoffset() is not None
    assert (m.sender, m.sender_name, m.subject) == ("jose@example.com", "José García", "S1")
    assert [a.email for a in m.to] == ["me@example.com", "bob@example.org"]
    assert m.message_id == "<m1@mail.example.com>"
    assert m.in_reply_to == ("<root@example.com>",) and m.references == ("<root@example.com>",)
    assert m.headers["delivered-to"] == "me@example.com"
    # UNREAD: no \Seen; IMPORTANT: $Important; Label_7 is named; other system ids stay
    assert m.flags == ("INBOX", "$Important", "Boss", "CATEGORY_UPDATES")
    assert not m.is_read and set(m.labels) == {"INBOX", "$Important", "Boss", "CATEGORY_UPDATES"}
    # structure without bodies: text/HTML parts, a PDF attachment and an inline image
    assert m.has_text and m.has_html and m.text_part is not None
    assert (m.text_part.section, m.text_part.charset) == ("0.0", "UTF-8")
    assert [(a.filename, a.section, a.inline, a.content_id) for a in m.attachments] == [
        ("report.pdf", "1", False, None),
        ("logo.png", "2", True, "<logo@example.com>"),
    ]
    gets = [r for r in gmail_calls(router) if r.url.path.endswith("/m1")]
    assert query_of(gets[0]) == {"format": ["full"], "fields": [STRUCTURE_FIELDS]}
    assert query_of(listed.calls[1].request)["pageToken"] == ["page2"]
    await gmail.search("from:jose@example.com")
    assert label_list.call_count == 1  # label names are cached
    ids = validate_all(gmail_calls(router))
    assert ids.count("gmail.users.labels.list") == 1
    assert ids.count("gmail.users.messages.get") == 6


async def test_limit_keeps_the_newest_and_a_query_limit_is_pushed(
    gmail: GmailProvider, router: respx.MockRouter, label_list: respx.Route
) -> None:
    listed = router.get(LIST).respond(200, json=listing("m3", "m2", "m1", token="more"))
    route_messages(router, *(message(f"m{i}") for i in (1, 2, 3)))
    found = await gmail.search("is:unread", limit=2)
    assert [m.id for m in found] == ["m2", "m3"]
    assert query_of(listed.calls.last.request)["maxResults"] == ["2"]
    assert listed.call_count == 1  # no second page once the limit is met
    query = EmailQuery().from_sender("jose@example.com").limit(2)
    assert [m.id for m in await gmail.search(query)] == ["m2", "m3"]
    params = query_of(listed.calls.last.request)
    assert params["q"] == ["from:jose@example.com"] and params["maxResults"] == ["2"]
    assert await gmail.search("x", limit=0) == []


async def test_a_sorted_query_sorts_after_the_listing(
    gmail: GmailProvider, router: respx.MockRouter, label_list: respx.Route
) -> None:
    router.get(LIST).respond(200, json=listing("m3", "m2", "m1"))
    route_messages(
        router,
        message("m1", subject="b", internal=1_762_160_400_000),
        message("m2", subject="c", internal=1_762_160_500_000),
        message("m3", subject="a", internal=1_762_160_600_000),
    )
    newest = EmailQuery().sort_by("date", SortOrder.DESC)
    assert [m.id for m in await gmail.search(newest)] == ["m3", "m2", "m1"]
    by_subject = EmailQuery().sort_by("subject").limit(2)
    assert [m.id for m in await gmail.search(by_subject)] == ["m3", "m1"]
    assert not by_subject.explain("gmail").sort_on_server


async def test_the_client_residual_reads_labels_and_folders_as_gmail_does(
    gmail: GmailProvider, router: respx.MockRouter, label_list: respx.Route
) -> None:
    router.get(LIST).respond(200, json=listing("m3", "m2", "m1"))
    route_messages(
        router,
        message("m1", labels=("INBOX", "STARRED"), extra={"X_Tag": "red"}),
        message("m2", labels=("Label_7", "UNREAD"), extra={"X_Tag": "red"}),
        message("m3", labels=("SENT",), extra={"X_Tag": "blue"}),
    )
    # Nested in an OR with a header test, these run on the client: they must agree with
    # Gmail's `in:inbox` / `label:` / `is:starred` / `is:unread`.
    cases = {
        EmailQuery.any_of(EmailQuery().folder("inbox"), EmailQuery().header("X-Tag", "x")): ["m1"],
        EmailQuery.any_of(EmailQuery().label("boss"), EmailQuery().header("X-Tag", "x")): ["m2"],
        EmailQuery.any_of(EmailQuery().label("STARRED"), EmailQuery().header("X", "y")): ["m1"],
        EmailQuery.any_of(EmailQuery().label("unread"), EmailQuery().header("X", "y")): ["m2"],
        EmailQuery.any_of(EmailQuery().is_starred(), EmailQuery().header("X", "y")): ["m1"],
        EmailQuery.any_of(EmailQuery().is_unread(), EmailQuery().header("X", "y")): ["m2"],
        EmailQuery.any_of(EmailQuery().folder("sent"), EmailQuery().header("X", "y")): ["m3"],
    }
    for query, expected in cases.items():
        assert query.explain("gmail").client is not None
        assert [m.id for m in await gmail.search(query)] == expected, query


async def test_text_and_html_come_with_one_full_get(
    gmail: GmailProvider, router: respx.MockRouter, label_list: respx.Route
) -> None:
    m = await one_message(gmail, router)
    before = len(gmail_calls(router))
    assert await m.text() == "Numbers attached.\r\n\r\n> an old quote\r\nBye\r\n"
    assert await m.html() == "<p>Numbers <b>attached</b>.</p>"
    full = gmail_calls(router)[before:]
    assert len(full) == 1 and query_of(full[0]) == {"format": ["full"]}
    changed = m.replace(subject="kept")  # what actions return: what was read is kept
    assert await changed.text() and await changed.html()
    assert len(gmail_calls(router)) == before + 1


async def test_bodies_true_reads_them_in_the_same_pass(
    gmail: GmailProvider, router: respx.MockRouter, label_list: respx.Route
) -> None:
    router.get(LIST).respond(200, json=listing("m1"))
    route_messages(router, message("m1", text="Olá, José"))
    (m,) = await gmail.search("in:inbox", bodies=True)
    done = len(gmail_calls(router))
    assert await m.text() == "Olá, José" and await m.html()
    assert len(gmail_calls(router)) == done
    (get,) = [r for r in gmail_calls(router) if r.url.path.endswith("/m1")]
    assert query_of(get) == {"format": ["full"]}


async def test_attachments_are_fetched_by_attachment_id(
    gmail: GmailProvider, router: respx.MockRouter, label_list: respx.Route, tmp_path: Path
) -> None:
    m = await one_message(gmail, router)
    pdf = router.get(f"{LIST}/m1/attachments/ANGjdJ_m1_pdf").respond(
        200, json=attachment(PDF, "ANGjdJ_m1_pdf")
    )
    png = router.get(f"{LIST}/m1/attachments/ANGjdJ_m1_png").respond(
        200, json=attachment(PNG, "ANGjdJ_m1_png")
    )
    router.post(f"{LIST}/m1/modify").respond(200, json=modified("m1", ["INBOX"]))
    m = await m.mark_as_read()  # a new value, with what was read kept
    saved = await m.download_attachments(tmp_path)
    assert [p.name for p in saved] == ["report.pdf"] and saved[0].read_bytes() == PDF
    assert pdf.call_count == 1 and png.call_count == 0  # the inline image is skipped
    assert await m.attachment_content(m.attachments[1]) == PNG
    gets = [r for r in gmail_calls(router) if r.url.path.endswith("/m1")]
    assert len(gets) == 1  # the attachment ids came with the listing
    ids = validate_all(gmail_calls(router))
    assert ids.count("gmail.users.messages.attachments.get") == 2


async def test_folder_is_a_label_by_name(
    gmail: GmailProvider, router: respx.MockRouter, label_list: respx.Route
) -> None:
    listed = router.get(LIST).respond(200, json=listing("m1"))
    route_messages(router, message("m1", labels=("Label_12",)))
    (m,) = await gmail.search("is:unread", folder="clients/acme")
    assert query_of(listed.calls.last.request)["labelIds"] == ["Label_12"]
    assert m.folder == "clients/acme" and "Clients/Acme" in m.labels
    with pytest.raises(ProviderError, match="no label named 'Nope'"):
        await gmail.search("", folder="Nope")
    assert listed.call_count == 1


async def test_get_by_id_and_a_vanished_message(
    gmail: GmailProvider, router: respx.MockRouter, label_list: respx.Route
) -> None:
    route_messages(router, message("18c2f0a9"))
    router.get(f"{LIST}/gone1").respond(404, json=NOT_FOUND)
    found = await gmail.get("18c2f0a9")
    assert found is not None and found.id == "18c2f0a9" and found.mailbox is gmail
    assert await gmail.get("gone1") is None
    with pytest.raises(ValidationError):
        await gmail.get("../labels")


async def test_a_message_deleted_during_a_search_is_left_out(
    gmail: GmailProvider, router: respx.MockRouter, label_list: respx.Route
) -> None:
    router.get(LIST).respond(200, json=listing("m2", "m1"))
    route_messages(router, message("m1"))
    router.get(f"{LIST}/m2").respond(404, json=NOT_FOUND)
    assert [m.id for m in await gmail.search("in:inbox")] == ["m1"]


async def test_iter_search_lists_every_id_then_reads_oldest_first(
    gmail: GmailProvider, router: respx.MockRouter, label_list: respx.Route
) -> None:
    listed = router.get(LIST)
    listed.side_effect = [
        httpx.Response(200, json=listing("m3", "m2", token="p2")),
        httpx.Response(200, json=listing("m1")),
    ]
    route_messages(router, *(message(f"m{i}") for i in (1, 2, 3)))
    got = [m.id async for m in gmail.iter_search("in:inbox", batch_size=2)]
    assert got == ["m1", "m2", "m3"]
    assert query_of(listed.calls[0].request)["maxResults"] == ["500"]


async def test_a_malformed_answer_is_a_provider_error(
    gmail: GmailProvider, router: respx.MockRouter
) -> None:
    router.get(LIST).respond(200, content=b"<html>oops</html>")
    with pytest.raises(ProviderError, match="not JSON"):
        await gmail.search("in:inbox")


# -- labels and flags -------------------------------------------------------------------------


async def test_flags_map_to_system_labels(
    gmail: GmailProvider, router: respx.MockRouter, label_list: respx.Route
) -> None:
    m = await one_message(gmail, router)
    modify = router.post(f"{LIST}/m1/modify").respond(200, json=modified("m1", ["INBOX"]))
    m = await m.mark_as_read()
    assert m.is_read
    await m.mark_as_unread()
    await m.mark_as_important()
    await m.mark_as_unimportant()
    bodies = [json.loads(c.request.content) for c in modify.calls]
    assert bodies == [
        {"removeLabelIds": ["UNREAD"]},
        {"addLabelIds": ["UNREAD"]},
        {"addLabelIds": ["STARRED"]},
        {"removeLabelIds": ["STARRED"]},
    ]
    await gmail.modify([m], add=["$Important"], remove=["\\Seen"])
    assert json.loads(modify.calls.last.request.content) == {"addLabelIds": ["IMPORTANT", "UNREAD"]}
    with pytest.raises(ValidationError, match="no \\\\Answered flag"):
        await gmail.modify(m, add=["\\Answered"])
    with pytest.raises(ValidationError, match="both added and removed"):
        await gmail.modify(m, add=["\\Seen"], remove=["\\Seen"])
    assert modify.call_count == 5


async def test_labels_by_name_are_created_when_missing(
    gmail: GmailProvider, router: respx.MockRouter, label_list: respx.Route
) -> None:
    m = await one_message(gmail, router)
    modify = router.post(f"{LIST}/m1/modify").respond(200, json=modified("m1", ["INBOX"]))
    create = router.post(LABELS).respond(
        200,
        json={
            "id": "Label_99",
            "name": "Très urgent",
            "messageListVisibility": "show",
            "labelListVisibility": "labelShow",
            "type": "user",
        },
    )
    m = await m.add_label("boss")  # an existing label, any case
    m = await m.add_label("Très urgent")  # Gmail labels take any Unicode: created
    m = await m.add_label("Très urgent")  # now cached
    await m.remove_label("INBOX")  # Gmail's archive
    assert [json.loads(c.request.content) for c in modify.calls] == [
        {"addLabelIds": ["Label_7"]},
        {"addLabelIds": ["Label_99"]},
        {"addLabelIds": ["Label_99"]},
        {"removeLabelIds": ["INBOX"]},
    ]
    assert json.loads(create.calls.last.request.content) == {
        "name": "Très urgent", "labelListVisibility": "labelShow", "messageListVisibility": "show",
    }  # fmt: skip
    assert create.call_count == 1 and "Très urgent" in m.labels
    with pytest.raises(ProviderError, match="no label named 'Nope'"):
        await m.remove_label("Nope")
    with pytest.raises(ValidationError, match="is a flag, not a label"):
        await m.add_label("\\Seen")
    assert modify.call_count == 4


async def test_create_labels_false_refuses_unknown_names(
    comm: CommManager, token_file: Path, router: respx.MockRouter, label_list: respx.Route
) -> None:
    gmail = comm.gmail(token_file, create_labels=False)
    assert gmail.spec()["create_labels"] is False
    m = await one_message(gmail, router)
    create = router.post(LABELS).respond(200, json={"id": "Label_1", "name": "x"})
    with pytest.raises(ProviderError, match="create_folder"):
        await m.add_label("Brand new")
    assert create.call_count == 0
    assert label_list.call_count == 2  # looked again before refusing


async def test_a_label_created_meanwhile_is_used_on_conflict(
    gmail: GmailProvider, router: respx.MockRouter
) -> None:
    answers = labels()
    later = json.loads(json.dumps(answers))
    later["labels"].append({"id": "Label_50", "name": "Racy", "type": "user"})
    label_list = router.get(LABELS)
    label_list.side_effect = [
        httpx.Response(200, json=answers),  # the search
        httpx.Response(200, json=answers),  # add_label: look again
        httpx.Response(200, json=later),  # after the 409
    ]
    m = await one_message(gmail, router)
    router.post(LABELS).respond(409, json=LABEL_CONFLICT)
    modify = router.post(f"{LIST}/m1/modify").respond(200, json=modified("m1", ["Label_50"]))
    await m.add_label("Racy")
    assert json.loads(modify.calls.last.request.content) == {"addLabelIds": ["Label_50"]}


async def test_folders_and_create_folder(
    gmail: GmailProvider, router: respx.MockRouter, label_list: respx.Route
) -> None:
    folders = {f.name: f for f in await gmail.folders()}
    assert folders["SENT"].flags == ("\\Sent",) and folders["TRASH"].flags == ("\\Trash",)
    assert folders["SPAM"].flags == ("\\Junk",) and folders["Clients/Acme"].delimiter == "/"
    create = router.post(LABELS)
    create.side_effect = [
        httpx.Response(200, json={"id": "Label_60", "name": "Projects/2026", "type": "user"}),
        httpx.Response(409, json=LABEL_CONFLICT),
    ]
    await gmail.create_folder("Projects/2026")
    with pytest.raises(ProviderError, match="exists") as info:
        await gmail.create_folder("projects/2026")
    assert info.value.status == 409
    with pytest.raises(ProviderError, match="system label"):
        await gmail.create_folder("inbox")


# -- moving, trashing, deleting ---------------------------------------------------------------


async def test_move_is_add_the_label_and_leave_the_inbox(
    gmail: GmailProvider, router: respx.MockRouter, label_list: respx.Route
) -> None:
    m = await one_message(gmail, router)
    modify = router.post(f"{LIST}/m1/modify")
    modify.side_effect = [
        httpx.Response(200, json=modified("m1", ["Label_3", "UNREAD"])),
        httpx.Response(200, json=modified("m1", ["Label_3", "Label_12", "UNREAD"])),
    ]
    moved = await m.move_to("Archive")
    assert moved is not None and moved.folder == "Archive" and moved.id == "m1"
    assert moved.flags == ("Archive",)  # the labels Gmail answered
    copied = await moved.copy_to("Clients/Acme")
    assert copied is not None and set(copied.labels) == {"Archive", "Clients/Acme"}
    assert [json.loads(c.request.content) for c in modify.calls] == [
        {"addLabelIds": ["Label_3"], "removeLabelIds": ["INBOX"]},
        {"addLabelIds": ["Label_12"]},
    ]
    with pytest.raises(ProviderError, match="no label named 'Nowhere'"):
        await m.move_to("Nowhere")


async def test_trash_untrash_and_delete(
    gmail: GmailProvider, router: respx.MockRouter, label_list: respx.Route
) -> None:
    m = await one_message(gmail, router)
    trash = router.post(f"{LIST}/m1/trash").respond(200, json=modified("m1", ["TRASH"]))
    untrash = router.post(f"{LIST}/m1/untrash").respond(200, json=modified("m1", ["INBOX"]))
    trashed = await gmail.trash(m)
    assert trashed.folder == "TRASH" and "TRASH" in trashed.labels
    back = await gmail.untrash(trashed)
    assert back.flags == ("\\Seen", "INBOX")
    assert await m.move_to("trash") is not None  # the trash label: messages.trash
    await m.delete(expunge=False)  # keeps it in the trash
    via_action = await m.trash()  # the provider-neutral action
    assert via_action is not None and via_action.folder == "TRASH"
    assert (trash.call_count, untrash.call_count) == (4, 1)
    delete = router.delete(f"{LIST}/m1").respond(204)
    await m.delete()
    assert delete.call_count == 1
    ids = validate_all(gmail_calls(router))
    assert "gmail.users.messages.delete" in ids and "gmail.users.messages.untrash" in ids


async def test_delete_without_the_full_scope_says_which_scope(
    gmail: GmailProvider, router: respx.MockRouter, label_list: respx.Route
) -> None:
    m = await one_message(gmail, router)
    router.delete(f"{LIST}/m1").respond(403, json=NO_SCOPE)
    with pytest.raises(AuthenticationError, match=r"https://mail\.google\.com/.*trash\(\)"):
        await m.delete()


async def test_acting_on_a_vanished_message_says_so(
    gmail: GmailProvider, router: respx.MockRouter, label_list: respx.Route
) -> None:
    m = await one_message(gmail, router)
    modify = router.post(f"{LIST}/m1/modify").respond(404, json=NOT_FOUND)
    with pytest.raises(ProviderError, match=r"no such message m1 \(deleted") as info:
        await m.mark_as_read()
    assert info.value.status == 404 and info.value.error_code == "notFound"
    assert modify.call_count == 1  # not retried


async def test_a_throttled_or_failed_modify_is_retried(
    gmail: GmailProvider, router: respx.MockRouter, label_list: respx.Route
) -> None:
    m = await one_message(gmail, router)
    modify = router.post(f"{LIST}/m1/modify")
    modify.side_effect = [
        httpx.Response(
            429,
            headers={"Retry-After": "0"},
            json={
                "error": {
                    "code": 429,
                    "message": "Too many concurrent requests for user",
                    "errors": [{"reason": "rateLimitExceeded"}],
                    "status": "RESOURCE_EXHAUSTED",
                }
            },
        ),
        httpx.Response(200, json=modified("m1", [])),
    ]
    await m.mark_as_read()
    assert modify.call_count == 2
    modify.side_effect = [  # a label change is idempotent: a 500 is retried too
        httpx.Response(500, json={"error": {"code": 500, "message": "Internal error"}}),
        httpx.Response(200, json=modified("m1", [])),
    ]
    await m.mark_as_read()
    assert modify.call_count == 4
    modify.side_effect = None
    modify.respond(403, json=USER_RATE)
    with pytest.raises(RateLimitError):
        await m.mark_as_read()


# -- batch mode -------------------------------------------------------------------------------


async def test_batch_mode_sends_one_batch_modify_per_identical_change(
    gmail: GmailProvider, router: respx.MockRouter, label_list: respx.Route
) -> None:
    router.get(LIST).respond(200, json=listing("m4", "m3", "m2", "m1"))
    route_messages(router, *(message(f"m{i}") for i in (1, 2, 3, 4)))
    found = await gmail.search("in:inbox")
    batch_modify = router.post(BATCH_MODIFY).respond(204)
    modify = router.post(f"{LIST}/m4/modify").respond(200, json=modified("m4", []))
    async with gmail.batch_mode() as batch:
        for m in found:
            await m.mark_as_read()
        for m in found[:3]:
            await m.add_label("Boss")
        await found[3].mark_as_important()
        await found[3].mark_as_unimportant()  # the last change wins
        assert batch_modify.call_count == 0 and modify.call_count == 0
        assert batch.pending == 4 + 3 + 1
    assert batch_modify.call_count == 1 and modify.call_count == 1
    assert json.loads(batch_modify.calls.last.request.content) == {
        "ids": ["m1", "m2", "m3"],
        "addLabelIds": ["Label_7"],
        "removeLabelIds": ["UNREAD"],
    }
    assert json.loads(modify.calls.last.request.content) == {
        "removeLabelIds": ["STARRED", "UNREAD"]
    }
    assert validate_all(gmail_calls(router)).count("gmail.users.messages.batchModify") == 1


async def test_batch_modify_takes_1000_ids_a_call(
    gmail: GmailProvider, router: respx.MockRouter, label_list: respx.Route
) -> None:
    batch_modify = router.post(BATCH_MODIFY).respond(204)
    ids = [f"{n:x}" for n in range(0x1000, 0x1000 + 2_345)]
    async with gmail.batch_mode():
        await gmail.modify(ids, add=["\\Seen"])
    sizes = [len(json.loads(c.request.content)["ids"]) for c in batch_modify.calls]
    assert sizes == [1000, 1000, 345]
    await gmail.modify(ids[:3], add=["INBOX"])  # outside a batch: at once
    assert json.loads(batch_modify.calls.last.request.content)["ids"] == ids[:3]
    with pytest.raises(ValidationError, match="not a Gmail message id"):
        await gmail.modify(["../labels"], add=["INBOX"])
    assert batch_modify.call_count == 4


async def test_batch_mode_discards_on_error_and_flushes_before_a_move(
    gmail: GmailProvider, router: respx.MockRouter, label_list: respx.Route
) -> None:
    router.get(LIST).respond(200, json=listing("m2", "m1"))
    route_messages(router, message("m1"), message("m2"))
    first, second = await gmail.search("in:inbox")
    modify1 = router.post(f"{LIST}/m1/modify").respond(200, json=modified("m1", ["Label_3"]))
    modify2 = router.post(f"{LIST}/m2/modify").respond(200, json=modified("m2", []))
    with pytest.raises(RuntimeError):
        async with gmail.batch_mode():
            await first.mark_as_read()
            raise RuntimeError("changed my mind")
    assert modify1.call_count == 0
    async with gmail.batch_mode():
        await second.mark_as_read()
        async with gmail.batch_mode() as inner:  # joins the outer batch
            await first.add_label("Boss")
            assert inner.pending == 2
        await first.move_to("Archive")  # sends what waits first, then moves
        assert modify2.call_count == 1 and modify1.call_count == 2
        await second.mark_as_important()
    assert modify2.call_count == 2
    assert json.loads(modify1.calls[0].request.content) == {"addLabelIds": ["Label_7"]}
    assert json.loads(modify1.calls[1].request.content) == {
        "addLabelIds": ["Label_3"], "removeLabelIds": ["INBOX"],
    }  # fmt: skip


# -- quota ------------------------------------------------------------------------------------


async def test_each_method_charges_its_quota_units(
    router: respx.MockRouter, token_file: Path, label_list: respx.Route
) -> None:
    clock = FakeClock()  # time stands still: the bucket never refills during the test
    async with CommManager(transport=httpx.MockTransport(router.async_handler),
                           clock=clock) as comm:  # fmt: skip
        gmail = comm.gmail(token_file)
        assert gmail.limiter is not None

        async def units(action: Callable[[], Awaitable[object]]) -> float:
            assert gmail.limiter is not None
            (before,) = gmail.limiter.statistics()
            await action()
            (after,) = gmail.limiter.statistics()
            return round(before.tokens - after.tokens, 6)

        router.get(LIST).respond(200, json=listing("m1"))
        route_messages(router, message("m1"))
        router.post(f"{LIST}/m1/modify").respond(200, json=modified("m1", []))
        router.post(f"{LIST}/m1/trash").respond(200, json=modified("m1", ["TRASH"]))
        router.delete(f"{LIST}/m1").respond(204)
        router.post(BATCH_MODIFY).respond(204)
        router.get(f"{API}/threads/t1").respond(200, json={"id": "t1", "messages": []})
        router.get(f"{LIST}/m1/attachments/ANGjdJ_m1_pdf").respond(
            200, json=attachment(PDF, "ANGjdJ_m1_pdf")
        )
        found: list[ReceivedMessage] = []

        async def search() -> None:
            found.extend(await gmail.search("in:inbox"))

        assert await units(search) == 5 + 1 + 5  # list, labels.list, get
        m = found[0]
        assert await units(m.mark_as_read) == 5
        assert await units(lambda: gmail.modify(["a1", "a2"], add=["INBOX"])) == 50
        assert await units(lambda: m.attachment_content(m.attachments[0])) == 5
        assert await units(lambda: gmail.thread("t1")) == 10
        assert await units(lambda: gmail.trash(m)) == 5
        assert await units(m.delete) == 10


# -- threads and replies ----------------------------------------------------------------------


async def test_thread_lists_its_messages(
    gmail: GmailProvider, router: respx.MockRouter, label_list: respx.Route
) -> None:
    thread = {
        "id": "t1",
        "historyId": "987651",
        "messages": [structure(message("m1", thread="t1")), structure(message("m2", thread="t1"))],
    }
    route = router.get(f"{API}/threads/t1").respond(200, json=thread)
    found = await gmail.thread("t1")
    assert [(m.id, m.thread_id) for m in found] == [("m1", "t1"), ("m2", "t1")]
    assert found[0].attachments and found[0].mailbox is gmail
    assert query_of(route.calls.last.request)["fields"] == [
        f"id,historyId,messages({STRUCTURE_FIELDS})"
    ]
    router.get(f"{API}/threads/t404").respond(404, json=NOT_FOUND)
    with pytest.raises(ProviderError, match="no such thread"):
        await gmail.thread("t404")


async def test_a_reply_through_gmail_stays_in_the_thread(
    gmail: GmailProvider, comm: CommManager, token_file: Path, router: respx.MockRouter,
    label_list: respx.Route, caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    m = await one_message(gmail, router, thread="18c2aa")
    send = router.post(SEND).respond(200, json={"id": "r1", "threadId": "18c2aa"})
    draft = await m.reply(gmail, "Thanks!")
    with caplog.at_level(logging.WARNING):
        result = await draft.send()
    assert result.message_id == "r1"
    assert not caplog.records  # no answered mark to set, and no failure to log
    assert [r.url.path.rsplit("/", 1)[-1] for r in gmail_calls(router)][-1] == "send"
    body = json.loads(send.calls.last.request.content)
    assert body["threadId"] == "18c2aa"
    import base64
    import email

    raw = email.message_from_bytes(base64.urlsafe_b64decode(body["raw"]))
    assert raw["Subject"] == "Re: Quarterly report"
    assert raw["In-Reply-To"] == "<m1@mail.example.com>"
    assert raw["References"] == "<root@example.com> <m1@mail.example.com>"
    other = comm.gmail(token_file, user_id="other@example.com", sender="other@example.com")
    other_send = router.post(
        "https://gmail.googleapis.com/gmail/v1/users/other@example.com/messages/send"
    ).respond(200, json={"id": "r2", "threadId": "x"})
    await (await m.forward(other, "boss@example.com", "FYI", attachments=False)).send()
    assert "threadId" not in json.loads(other_send.calls.last.request.content)


async def test_a_large_reply_goes_as_a_multipart_upload_with_its_thread(
    gmail: GmailProvider, router: respx.MockRouter, label_list: respx.Route
) -> None:
    m = await one_message(gmail, router, thread="18c2aa")
    upload = router.post(UPLOAD).respond(200, json={"id": "r1", "threadId": "18c2aa"})
    draft = await m.reply(gmail, "Numbers attached.")
    await draft.attach(b"x" * (6 * 1024 * 1024), filename="big.bin").send()
    request = upload.calls.last.request
    assert query_of(request) == {"uploadType": ["multipart"]}
    assert request.headers["Content-Type"].startswith("multipart/related; boundary=")
    assert b'{"threadId":"18c2aa"}' in request.content
    assert b"Subject: Re: Quarterly report" in request.content
    assert "gmail.users.messages.send" in validate_all(gmail_calls(router))


def test_the_validator_checks_multipart_uploads() -> None:
    body = (
        b"--b\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n"
        b'{"threadId":"t","nope":1}\r\n--b\r\nContent-Type: message/rfc822\r\n\r\nSubject: x\r\n'
        b"\r\n--b--\r\n"
    )
    request = httpx.Request(
        "POST", f"{UPLOAD}?uploadType=multipart", content=body,
        headers={"Content-Type": 'multipart/related; boundary="b"'},
    )  # fmt: skip
    with pytest.raises(AssertionError, match="nope"):
        validate(request)


# -- the same code on every mailbox ------------------------------------------------------------


async def test_the_same_triage_code_works_on_gmail(
    gmail: GmailProvider, router: respx.MockRouter, label_list: respx.Route, tmp_path: Path
) -> None:
    m = await one_message(gmail, router)
    modify = router.post(f"{LIST}/m1/modify")
    modify.side_effect = [
        httpx.Response(200, json=modified("m1", ["INBOX"])),
        httpx.Response(200, json=modified("m1", ["INBOX", "Label_7"])),
        httpx.Response(200, json=modified("m1", ["Label_3", "Label_7"])),
    ]
    router.get(f"{LIST}/m1/attachments/ANGjdJ_m1_pdf").respond(
        200, json=attachment(PDF, "ANGjdJ_m1_pdf")
    )
    delete = router.delete(f"{LIST}/m1").respond(204)
    outcome = await triage(m, via=gmail, downloads=tmp_path)
    check_outcome(outcome, tmp_path)
    assert [json.loads(c.request.content) for c in modify.calls] == [
        {"removeLabelIds": ["UNREAD"]},
        {"addLabelIds": ["Label_7"]},
        {"addLabelIds": ["Label_3"], "removeLabelIds": ["INBOX"]},
    ]
    assert delete.call_count == 1


async def test_send_as_lists_the_verified_aliases_default_first(
    gmail: GmailProvider, router: respx.MockRouter
) -> None:
    # users.settings.sendAs.list, as the Gmail API reference shapes a SendAs resource
    route = router.get(f"{API}/settings/sendAs").respond(
        200,
        json={
            "sendAs": [
                {"sendAsEmail": "me@example.com", "displayName": "", "replyToAddress": "",
                 "signature": "", "isPrimary": True, "isDefault": False},
                {"sendAsEmail": "sales@example.com", "displayName": "Sales Team",
                 "isDefault": True, "treatAsAlias": True, "verificationStatus": "accepted"},
                {"sendAsEmail": "pending@example.com", "displayName": "Not yet",
                 "treatAsAlias": True, "verificationStatus": "pending"},
                {"sendAsEmail": "not an address", "verificationStatus": "accepted"},
            ]
        },
    )  # fmt: skip
    aliases = await gmail.send_as()
    assert [(a.email, a.name) for a in aliases] == [
        ("sales@example.com", "Sales Team"),
        ("me@example.com", None),
    ]
    validate(route.calls.last.request)
    router.get(f"{API}/settings/sendAs").respond(403, json=NO_SCOPE)
    with pytest.raises(AuthenticationError):
        await gmail.send_as()
