"""The IMAP provider against a real Dovecot (`conftest.dovecot`), plus a few scripted peers
for what Dovecot cannot be made to do (no STARTTLS, a dropped or silent connection)."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import pytest
from dovecot import Dovecot

from xcomm import (
    Address,
    AuthenticationError,
    CommManager,
    ConfigurationError,
    ConnectError,
    ConnectionLost,
    EmailQuery,
    IMAPProvider,
    ProviderError,
    ReceivedMessage,
    ResponseTimeout,
    RetryPolicy,
    SortOrder,
    Timeout,
    ValidationError,
)
from xcomm.email._imap_parse import encode_folder

pytestmark = pytest.mark.service("dovecot")

TIMEOUT = Timeout(connect=3.0, read=3.0, write=3.0, pool=3.0)
NO_RETRY = RetryPolicy(max_attempts=1)

RICH = (
    b"From: =?utf-8?q?Jos=C3=A9_Garc=C3=ADa?= <jose@example.com>\r\n"
    b'To: ann@example.com, "Bob B." <bob@example.org>\r\n'
    b"Cc: =?iso-8859-1?q?Cl=E9o?= <cleo@example.net>\r\n"
    b"Subject: =?utf-8?B?Q2Fmw6kg?= =?utf-8?Q?r=C3=A9sum=C3=A9?= (draft)\r\n"
    b"Date: Mon, 03 Nov 2025 10:00:00 +0100\r\n"
    b"Message-ID: <rich-1@example.com>\r\n"
    b"In-Reply-To: <root@example.com>\r\n"
    b"References: <root@example.com>\r\n <mid@example.com>\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="OUT"\r\n'
    b"\r\n"
    b"--OUT\r\n"
    b'Content-Type: multipart/alternative; boundary="ALT"\r\n'
    b"\r\n"
    b"--ALT\r\n"
    b"Content-Type: text/plain; charset=iso-8859-1\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n"
    b"\r\n"
    b"Caf=E9 au lait, see the r=E9sum=E9.\r\n"
    b"--ALT\r\n"
    b"Content-Type: text/html; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: base64\r\n"
    b"\r\n"
    b"PHA+Q2Fmw6kgPGI+YXU8L2I+IGxhaXQ8L3A+\r\n"
    b"--ALT--\r\n"
    b"--OUT\r\n"
    b'Content-Type: application/pdf; name="report (final).pdf"\r\n'
    b'Content-Disposition: attachment; filename="report (final).pdf"\r\n'
    b"Content-Transfer-Encoding: base64\r\n"
    b"\r\n"
    b"JVBERi0xLjQK\r\n"
    b"--OUT\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Disposition: attachment; filename*=utf-8''r%C3%A9sum%C3%A9.txt\r\n"
    b"\r\n"
    b"notes\r\n"
    b"--OUT--\r\n"
)


RICH_SUBJECT = "Café résumé (draft)"


def simple(subject: str, sender: str = "ann@example.com", body: str = "hello") -> bytes:
    return (
        f"From: {sender}\r\nTo: me@example.com\r\nSubject: {subject}\r\n"
        f"Date: Tue, 04 Nov 2025 08:00:00 +0000\r\nMessage-ID: <{subject}@x>\r\n\r\n{body}\r\n"
    ).encode()


@pytest.fixture
async def comm() -> AsyncIterator[CommManager]:
    async with CommManager(timeout=TIMEOUT, retry=NO_RETRY) as manager:
        yield manager


@pytest.fixture
def user(dovecot: Dovecot) -> str:
    return dovecot.new_user()


@pytest.fixture
def imap(
    comm: CommManager, dovecot: Dovecot, user: str, client_tls: ssl.SSLContext
) -> IMAPProvider:
    """Implicit TLS to the session's Dovecot as a fresh user (an empty INBOX)."""
    return comm.imap(
        "localhost",
        dovecot.tls_port,
        username=user,
        password=dovecot.password,
        tls_context=client_tls,
    )


# -- connecting and logging in --------------------------------------------------------------


async def test_implicit_tls_login_verifies_the_certificate(
    imap: IMAPProvider, dovecot: Dovecot, user: str
) -> None:
    dovecot.append(user, simple("one"))
    assert [m.subject for m in await imap.search()] == ["one"]
    assert "tls='implicit'" in repr(imap)


async def test_starttls_upgrades_before_credentials(
    comm: CommManager, dovecot: Dovecot, user: str, client_tls: ssl.SSLContext
) -> None:
    dovecot.append(user, simple("one"))
    imap = comm.imap(
        "localhost",
        dovecot.port,
        username=user,
        password=dovecot.password,
        use_tls=False,
        start_tls=True,
        tls_context=client_tls,
    )
    assert len(await imap.search()) == 1
    login = dovecot.log.rsplit(f"user=<{user}>", 1)[1].splitlines()[0]
    assert "method=PLAIN" in login and ", TLS," in login


async def test_plaintext_login_is_allowed_on_loopback(
    comm: CommManager, dovecot: Dovecot, user: str
) -> None:
    imap = comm.email("imap", host="127.0.0.1", port=dovecot.port, username=user,
                      password=dovecot.password, use_tls=False)  # fmt: skip
    assert isinstance(imap, IMAPProvider)
    assert await imap.search() == []


async def test_an_untrusted_certificate_is_a_configuration_error(
    comm: CommManager, dovecot: Dovecot, user: str
) -> None:
    imap = comm.imap("localhost", dovecot.tls_port, username=user, password=dovecot.password)
    with pytest.raises(ConfigurationError, match="certificate verification failed"):
        await imap.search()


async def test_a_wrong_password_fails_fast_with_authentication_error(
    comm: CommManager, dovecot_for_refusals: Dovecot, client_tls: ssl.SSLContext
) -> None:
    imap = comm.imap(
        "localhost",
        dovecot_for_refusals.tls_port,
        username=dovecot_for_refusals.new_user(),
        password="wrong",
        tls_context=client_tls,
    )
    started = time.perf_counter()
    with pytest.raises(AuthenticationError) as caught:
        await imap.search()
    assert time.perf_counter() - started < 1.5
    assert caught.value.error_code == "AUTHENTICATIONFAILED"
    assert "wrong" not in str(caught.value)
    assert imap.statistics().size == 0


async def test_xoauth2_with_a_good_token_logs_in(
    comm: CommManager, dovecot: Dovecot, user: str, client_tls: ssl.SSLContext
) -> None:
    dovecot.append(user, simple("one"))

    async def token() -> str:
        return dovecot.token_for(user)

    imap = comm.imap(
        "localhost", dovecot.tls_port, username=user, oauth_token=token, tls_context=client_tls
    )
    assert len(await imap.search()) == 1
    assert "method=XOAUTH2" in dovecot.log


async def test_a_refused_xoauth2_token_raises_at_once_instead_of_hanging(
    comm: CommManager, dovecot_for_refusals: Dovecot, client_tls: ssl.SSLContext
) -> None:
    imap = comm.imap(
        "localhost",
        dovecot_for_refusals.tls_port,
        username=dovecot_for_refusals.new_user(),
        oauth_token="expired-token",
        tls_context=client_tls,
    )
    started = time.perf_counter()
    with pytest.raises(AuthenticationError) as caught:
        await imap.search()
    assert time.perf_counter() - started < 1.5  # far below the 3 s timeouts
    assert '"status":"401"' in (caught.value.detail or "")  # the server's SASL error
    assert "expired-token" not in str(caught.value)


async def test_a_refused_connection_is_connect_error(comm: CommManager, closed_port: int) -> None:
    imap = comm.imap("127.0.0.1", closed_port, username="u", password="p", use_tls=False)
    with pytest.raises(ConnectError):
        await imap.search()


def test_settings_are_checked_when_the_provider_is_made(comm: CommManager) -> None:
    with pytest.raises(ConfigurationError, match="password= or oauth_token="):
        comm.imap("imap.example.com", username="u")
    with pytest.raises(ConfigurationError, match="implicit TLS already"):
        comm.imap("imap.example.com", username="u", password="p", start_tls=True)
    with pytest.raises(ConfigurationError, match="unknown email provider"):
        comm.email("pop3", host="x")


# -- searching and reading ------------------------------------------------------------------


async def test_search_by_raw_criteria_returns_the_matching_uids(
    imap: IMAPProvider, dovecot: Dovecot, user: str
) -> None:
    a = dovecot.append(user, simple("Invoice 1", "billing@shop.example"), flags="\\Seen")
    b = dovecot.append(user, simple("Hello", "friend@example.org"))
    c = dovecot.append(user, simple("Invoice 2", "billing@shop.example"), flags="\\Flagged")

    async def uids(criteria: str) -> list[int]:
        return [m.uid for m in await imap.search(criteria)]

    assert await uids("ALL") == [a, b, c]
    assert await uids("UNSEEN") == [b, c]
    assert await uids('FROM "billing@shop.example"') == [a, c]
    assert await uids('SUBJECT "invoice" FLAGGED') == [c]
    assert await uids('SUBJECT "nothing like this"') == []
    assert [m.uid for m in await imap.search("ALL", limit=2)] == [b, c]
    assert await uids('SUBJECT "résumé"') == []  # non-ASCII criteria go with CHARSET UTF-8


async def test_a_query_object_compiles_and_filters(
    imap: IMAPProvider, dovecot: Dovecot, user: str
) -> None:
    dovecot.append(user, simple("Invoice 1", "billing@shop.example"))
    dovecot.append(user, simple("Invoice 2", "billing@shop.example"))
    dovecot.append(user, simple("Hello", "friend@example.org"))

    class Query:  # the shape of EmailQuery: server criteria plus a local check
        def to_imap(self) -> str:
            return 'FROM "billing@shop.example"'

        def matches(self, message: ReceivedMessage) -> bool:
            return message.subject.endswith("2")

    assert [m.subject for m in await imap.search(Query())] == ["Invoice 2"]


async def test_an_email_query_runs_on_the_server_and_the_rest_on_the_client(
    imap: IMAPProvider, dovecot: Dovecot, user: str
) -> None:
    plain = dovecot.append(user, simple("Invoice 1", "billing@shop.example", "total due"))
    rich = dovecot.append(user, RICH.replace(b"jose@example.com", b"billing@shop.example"))
    dovecot.append(user, simple("Invoice 2", "billing@shop.example", "paid, thanks"))
    dovecot.append(user, simple("Hello", "friend@example.org", "total due"))
    dovecot.append(user, simple("Invoice 3", "billing@shop.example"), folder="Archive")

    billing = EmailQuery().from_sender("billing@shop.example")
    # has_attachment() is not IMAP SEARCH: the server narrows by sender, the client checks
    with_files = billing.has_attachment()
    assert with_files.explain("imap").client is not None
    assert [m.uid for m in await imap.search(with_files)] == [rich]
    # body text is searched by the server; sorting and the limit run on the client
    newest_due = billing.body_contains("total due").sort_by("subject", SortOrder.DESC).limit(1)
    assert [m.uid for m in await imap.search(newest_due)] == [plain]
    # a folder in the query is the mailbox searched
    archived = await imap.search(billing.folder("Archive"))
    assert [m.subject for m in archived] == ["Invoice 3"]
    assert [m.folder for m in archived] == ["Archive"]
    with pytest.raises(ValidationError, match="folder"):
        await imap.search(billing.folder("Archive"), folder="INBOX")
    # under OR, IMAP cannot narrow has_attachment(): the client checks all, bodies included
    either = billing.has_attachment() | EmailQuery().body_contains("paid")
    assert {m.subject for m in await imap.search(either)} == {"Invoice 2", RICH_SUBJECT}
    with pytest.raises(ValidationError, match="search"):
        [m async for m in imap.iter_search(billing.sort_by("date"), batch_size=10)]


async def test_an_email_query_sorts_by_the_received_date(
    imap: IMAPProvider, dovecot: Dovecot, user: str
) -> None:
    for subject, day in (("middle", 2), ("oldest", 1), ("newest", 3)):
        dovecot.append(user, simple(subject), date=datetime(2024, 5, day, 12, tzinfo=UTC))
    newest_first = EmailQuery().sort_by("date", SortOrder.DESC)
    assert [m.subject for m in await imap.search(newest_first)] == ["newest", "middle", "oldest"]
    assert [m.subject for m in await imap.search(newest_first.limit(1))] == ["newest"]


async def test_bodies_read_in_bulk_match_the_lazy_ones_without_a_round_trip_each(
    comm: CommManager, imap: IMAPProvider, dovecot: Dovecot, user: str
) -> None:
    dovecot.append(user, RICH)  # multipart/alternative: text 1.1, html 1.2
    dovecot.append(user, simple("Plain", body="just text"))  # single part: text 1
    dovecot.append(user, b"From: a@example.com\r\nSubject: empty\r\n\r\n")
    lazy = {m.uid: (await m.text(), await m.html()) for m in await imap.search("ALL")}
    comm.metrics.reset()
    bulk = await imap.search("ALL", bodies=True)
    fetches = comm.metrics.get_stats("imap", "fetch").total
    assert fetches == 1  # one batch: headers, then one FETCH per layout of parts, one session
    assert {m.uid: (await m.text(), await m.html()) for m in bulk} == lazy
    assert comm.metrics.get_stats("imap", "fetch").total == fetches  # no fetch per body
    assert lazy[bulk[0].uid][0].startswith("Café au lait")
    assert [(await m.text()) for m in bulk[1:]] == ["just text\r\n", ""]


async def test_get_finds_mail_that_arrived_after_the_session_selected_the_folder(
    imap: IMAPProvider, dovecot: Dovecot, user: str
) -> None:
    first = dovecot.append(user, simple("First"))
    assert [m.uid for m in await imap.search("ALL")] == [first]  # the session selects INBOX
    later = dovecot.append(user, simple("Later"))  # another client delivers
    message = await imap.get(later)
    assert message is not None and message.subject == "Later"
    assert message.id == str(later) and message.thread_id is None
    again = await imap.get(message.id)  # the provider-neutral id works too
    assert again is not None and again.subject == "Later"
    assert await imap.get(later + 100) is None
    assert imap.statistics().connections_opened == 1


async def test_a_bad_criteria_string_is_the_servers_error(imap: IMAPProvider) -> None:
    with pytest.raises(ProviderError) as caught:
        await imap.search("NOSUCHKEY 1")
    assert caught.value.error_code == "BAD"
    assert imap.statistics().idle == 1  # a BAD reply leaves the session usable


async def test_iter_search_fetches_in_uid_batches(
    comm: CommManager, imap: IMAPProvider, dovecot: Dovecot, user: str
) -> None:
    expected = [dovecot.append(user, simple(f"m{i}")) for i in range(5)]
    comm.metrics.reset()
    got = [m.uid async for m in imap.iter_search("ALL", batch_size=2)]
    assert got == expected
    assert comm.metrics.get_stats("imap", "fetch").total == 3  # 2 + 2 + 1
    assert imap.statistics().connections_opened == 1


async def test_get_reads_headers_flags_size_and_structure(
    imap: IMAPProvider, dovecot: Dovecot, user: str
) -> None:
    uid = dovecot.append(user, RICH, flags="\\Flagged $Important")
    message = await imap.get(uid)
    assert message is not None
    assert message.subject == "Café résumé (draft)"
    assert (message.sender, message.sender_name) == ("jose@example.com", "José García")
    assert message.to == (
        Address(email="ann@example.com"),
        Address(email="bob@example.org", name="Bob B."),
    )
    assert message.cc == (Address(email="cleo@example.net", name="Cléo"),)
    assert message.date == datetime(2025, 11, 3, 9, 0, tzinfo=UTC)
    assert message.date.utcoffset() == timedelta(hours=1)
    assert message.received_at is not None and message.received_at.tzinfo is not None
    assert message.message_id == "<rich-1@example.com>"
    assert message.in_reply_to == ("<root@example.com>",)
    assert message.references == ("<root@example.com>", "<mid@example.com>")
    assert {"\\Flagged", "$Important"} <= set(message.flags)
    assert message.is_flagged and not message.is_read
    assert message.size == len(RICH)
    assert [(a.filename, a.content_type) for a in message.attachments] == [
        ("report (final).pdf", "application/pdf"),
        ("résumé.txt", "text/plain"),
    ]
    assert message.attachments[0].size == len(b"JVBERi0xLjQK")  # as stored: base64
    assert message.has_text and message.has_html
    assert await imap.get(uid + 100) is None


async def test_bodies_are_fetched_only_when_asked_and_leave_seen_alone(
    comm: CommManager, imap: IMAPProvider, dovecot: Dovecot, user: str
) -> None:
    uid = dovecot.append(user, RICH)
    (message,) = await imap.search()
    comm.metrics.reset()
    assert await message.text() == "Café au lait, see the résumé."
    assert await message.html() == "<p>Café <b>au</b> lait</p>"
    assert await message.text() == "Café au lait, see the résumé."  # cached
    assert comm.metrics.get_stats("imap", "fetch").total == 2
    assert await message.attachment_content(message.attachments[0]) == b"%PDF-1.4\n"
    fresh = await imap.get(uid)
    assert fresh is not None and not fresh.is_read  # BODY.PEEK: still unread


async def test_a_message_without_bodies_or_mailbox(
    imap: IMAPProvider, dovecot: Dovecot, user: str
) -> None:
    import msgspec

    from xcomm import LifecycleError

    uid = dovecot.append(user, b"Subject: only headers\r\n\r\n")
    message = await imap.get(uid)
    assert message is not None and await message.html() == ""
    copy = msgspec.json.decode(msgspec.json.encode(message), type=ReceivedMessage)
    assert copy == message and copy.mailbox is None and message.mailbox is imap
    with pytest.raises(LifecycleError, match="not bound"):
        await copy.text()


MALFORMED = {
    "broken boundary": (
        b"Subject: broken\r\nContent-Type: multipart/mixed; boundary=NOPE\r\n\r\n"
        b"--WRONG\r\nContent-Type: text/plain\r\n\r\nlost\r\n--WRONG--\r\n"
    ),
    "bad charset": (
        b"Subject: =?x-no-such-charset?Q?caf=E9?=\r\n"
        b"Content-Type: text/plain; charset=x-no-such-charset\r\n\r\ncaf\xe9\r\n"
    ),
    "bad encoded words": b"Subject: =?utf-8?B?!!!notbase64?= =?utf-8?Q?=ZZ?=\r\n\r\nx\r\n",
    "bad base64 body": (
        b"Subject: b64\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n@@@ not base64 ===\r\n"
    ),
    "raw 8-bit header": b"Subject: caf\xc3\xa9 \xff\xfe\r\nFrom: \xe9 <x@y>\r\n\r\nbody\r\n",
    "garbled date and address": (
        b"Date: the day after tomorrow\r\nFrom: <<<@>>>, ,,\r\nTo: ;;;\r\n\r\nbody\r\n"
    ),
    "huge header": b"Subject: big\r\nX-Big: " + b"a" * 200_000 + b"\r\n\r\nbody\r\n",
    "no header at all": b"\r\njust a body\r\n",
}


async def test_malformed_messages_still_come_back(
    imap: IMAPProvider, dovecot: Dovecot, user: str
) -> None:
    uids = {name: dovecot.append(user, raw) for name, raw in MALFORMED.items()}
    messages = {m.uid: m for m in await imap.search()}
    assert set(messages) == set(uids.values())
    for message in messages.values():  # every body decodes to something, never raises
        await message.text()
        await message.html()
    assert messages[uids["bad charset"]].subject == "caf\ufffd"
    assert await messages[uids["bad charset"]].text() == "caf\ufffd\r\n"
    assert messages[uids["raw 8-bit header"]].subject.startswith("caf")
    assert messages[uids["garbled date and address"]].date is None
    assert messages[uids["huge header"]].subject == "big"
    assert messages[uids["no header at all"]].subject == ""


# -- folders --------------------------------------------------------------------------------


async def test_folders_are_listed_created_and_selected_with_unicode_names(
    imap: IMAPProvider, dovecot: Dovecot, user: str
) -> None:
    name = "Entwürfe & 日本"
    await imap.create_folder(name)
    await imap.create_folder("Archive")
    names = {f.name for f in await imap.folders()}
    assert {"INBOX", "Archive", name} <= names
    uid = dovecot.append(user, simple("filed"), folder=encode_folder(name))
    status = await imap.select(name)
    assert (status.name, status.messages) == (name, 1)
    (message,) = await imap.search()
    assert (message.folder, message.uid, message.subject) == (name, uid, "filed")
    assert await message.text() == "hello\r\n"  # a single-part message: part 1
    assert [m.subject for m in await imap.search(folder="INBOX")] == []


async def test_an_unknown_folder_is_the_servers_error(imap: IMAPProvider) -> None:
    with pytest.raises(ProviderError, match="SELECT") as caught:
        await imap.search(folder="No such folder")
    assert caught.value.error_code == "NO"
    assert "doesn't exist" in (caught.value.detail or "")
    await imap.create_folder("Archive")
    with pytest.raises(ProviderError, match="CREATE"):
        await imap.create_folder("Archive")  # exists already


# -- scripted peers -------------------------------------------------------------------------

Handler = Callable[[bytes, asyncio.StreamWriter], Awaitable[bool | None]]


@asynccontextmanager
async def scripted(greeting: bytes, handle: Handler, host: str = "127.0.0.1") -> AsyncIterator[int]:
    """A tiny IMAP peer on a free port: sends `greeting`, then `handle(line, writer)` for
    each line (False closes the connection; None stops answering until the client leaves).
    Yields the port; on exit, stops the server and its connection tasks."""
    tasks: set[asyncio.Task[None]] = set()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        tasks.add(asyncio.current_task())  # type: ignore[arg-type]
        writer.write(greeting + b"\r\n")
        try:
            while line := await reader.readline():
                answer = await handle(line.rstrip(b"\r\n"), writer)
                if answer is None:
                    await reader.read()  # silent until the client hangs up
                if not answer:
                    break
        finally:
            writer.close()

    server = await asyncio.start_server(serve, host, 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()


async def logout_only(line: bytes, writer: asyncio.StreamWriter) -> bool | None:
    tag, _, command = line.partition(b" ")
    if command.upper().startswith(b"LOGOUT"):
        writer.write(b"* BYE\r\n" + tag + b" OK bye\r\n")
        return False
    writer.write(tag + b" BAD unexpected\r\n")
    return True


async def test_start_tls_required_but_not_offered_sends_nothing(comm: CommManager) -> None:
    seen: list[bytes] = []

    async def handle(line: bytes, writer: asyncio.StreamWriter) -> bool | None:
        seen.append(line)
        return await logout_only(line, writer)

    async with scripted(b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] no tls", handle) as port:
        imap = comm.imap("127.0.0.1", port, username="u", password="secret",
                         use_tls=False, start_tls=True)  # fmt: skip
        with pytest.raises(ConfigurationError, match="does not offer STARTTLS"):
            await imap.search()
    assert not any(b"secret" in line or b"AUTHENTICATE" in line for line in seen)


async def test_credentials_never_cross_plaintext_to_a_remote_host(
    comm: CommManager, public_address: str
) -> None:
    seen: list[bytes] = []

    async def handle(line: bytes, writer: asyncio.StreamWriter) -> bool | None:
        seen.append(line)
        return await logout_only(line, writer)

    greeting = b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] plaintext"
    async with scripted(greeting, handle, host=public_address) as port:
        imap = comm.imap(public_address, port, username="u", password="secret",
                         use_tls=False)  # fmt: skip
        with pytest.raises(ConfigurationError, match="unencrypted"):
            await imap.search()
    assert seen == []


async def preauth_then(on_search: str) -> Handler:
    async def handle(line: bytes, writer: asyncio.StreamWriter) -> bool | None:
        tag, _, command = line.partition(b" ")
        if command.upper().startswith(b"SELECT"):
            writer.write(b"* 1 EXISTS\r\n* OK [UIDVALIDITY 7] ok\r\n" + tag + b" OK selected\r\n")
        elif command.upper().startswith(b"UID SEARCH"):
            return False if on_search == "drop" else None
        else:
            return await logout_only(line, writer)
        return True

    return handle


@pytest.mark.parametrize(
    ("behaviour", "error"), [("drop", ConnectionLost), ("silent", ResponseTimeout)]
)
async def test_a_dropped_or_silent_server_mid_command(
    behaviour: str, error: type[Exception]
) -> None:
    greeting = b"* PREAUTH [CAPABILITY IMAP4rev1] welcome"
    async with (
        scripted(greeting, await preauth_then(behaviour)) as port,
        CommManager(timeout=Timeout(connect=1.0, read=0.3, pool=1.0), retry=NO_RETRY) as comm,
    ):
        imap = comm.imap("127.0.0.1", port, username="u", password="p", use_tls=False)
        started = time.perf_counter()
        with pytest.raises(error):
            await imap.search()
        assert time.perf_counter() - started < 1.0
        assert imap.statistics().size == 0  # the broken session was not kept
