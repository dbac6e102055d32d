"""`IMAPProvider.watch()` against a real Dovecot (IDLE, polling, kicked connections, a
recreated folder, a refused re-login), plus a scripted peer without IDLE."""

from __future__ import annotations

import asyncio
import re
import ssl
import subprocess
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import aclosing

import pytest
from dovecot import Dovecot
from test_imap import RICH, RICH_SUBJECT, Handler, scripted, simple

from xcomm import (
    AuthenticationError,
    CommManager,
    EmailQuery,
    IMAPProvider,
    LifecycleError,
    ProviderError,
    ReceivedMessage,
    RetryPolicy,
    Timeout,
    ValidationError,
)

pytestmark = pytest.mark.service("dovecot")

TIMEOUT = Timeout(connect=3.0, read=3.0, write=3.0, pool=3.0)
#: One attempt per call; reconnects wait 0.05-0.1 s (the watch reuses the backoff settings).
RETRY = RetryPolicy(max_attempts=1, backoff=0.1, max_backoff=0.1)
ARRIVAL = 5.0  # generous: Dovecot pushes EXISTS about 0.5 s after the APPEND


@pytest.fixture
async def comm() -> AsyncIterator[CommManager]:
    async with CommManager(timeout=TIMEOUT, retry=RETRY) as manager:
        yield manager


@pytest.fixture
def user(dovecot: Dovecot) -> str:
    return dovecot.new_user()


@pytest.fixture
def imap(
    comm: CommManager, dovecot: Dovecot, user: str, client_tls: ssl.SSLContext
) -> IMAPProvider:
    return comm.imap(
        "localhost", dovecot.tls_port, username=user, password=dovecot.password,
        tls_context=client_tls,
    )  # fmt: skip


def doveadm(dovecot: Dovecot, *args: str) -> str:
    conf = str(dovecot.directory / "dovecot.conf")
    done = subprocess.run(["doveadm", "-c", conf, *args], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout


def connections(dovecot: Dovecot, user: str) -> int:
    """How many IMAP connections `user` has open (`doveadm who`)."""
    return sum(line.split()[0] == user for line in doveadm(dovecot, "who", "-1").splitlines()[1:])


async def eventually(check: Callable[[], bool]) -> None:
    """Until `check()` holds (it reads state that offers nothing to await), within ARRIVAL."""
    async with asyncio.timeout(ARRIVAL):
        while not check():  # noqa: ASYNC110 - Dovecot, metrics, a scripted peer's lines
            await asyncio.sleep(0.01)


async def connected(comm: CommManager, times: int = 1) -> None:
    """Until the watch has connected `times` times (SELECT done: its start UID is fixed)."""
    await eventually(lambda: comm.metrics.get_stats("imap", "watch").successful >= times)


async def append_when_connected(
    comm: CommManager,
    dovecot: Dovecot,
    user: str,
    *raws: bytes,
    times: int = 1,
    folder: str = "INBOX",
) -> list[int]:
    await connected(comm, times)
    return [await asyncio.to_thread(dovecot.append, user, raw, folder=folder) for raw in raws]


async def take(messages: AsyncGenerator[ReceivedMessage, None], n: int) -> list[ReceivedMessage]:
    async with asyncio.timeout(ARRIVAL):
        return [await anext(messages) for _ in range(n)]


async def test_a_new_message_arrives_through_idle(
    comm: CommManager, imap: IMAPProvider, dovecot: Dovecot, user: str
) -> None:
    dovecot.append(user, simple("old"))
    # polling would take an hour: only a push can deliver within ARRIVAL
    async with aclosing(imap.watch(poll_interval=3600)) as messages, asyncio.TaskGroup() as tg:
        appended = tg.create_task(append_when_connected(comm, dovecot, user, simple("new")))
        [message] = await take(messages, 1)
    assert (message.subject, [message.uid]) == ("new", appended.result())
    assert message.mailbox is imap and message.uid_validity is not None
    assert (await message.text()).strip() == "hello"  # bodies come through the pool


async def test_each_new_message_once_in_uid_order(
    comm: CommManager, imap: IMAPProvider, dovecot: Dovecot, user: str
) -> None:
    async with aclosing(imap.watch()) as messages, asyncio.TaskGroup() as tg:
        first = tg.create_task(append_when_connected(comm, dovecot, user, simple("a"), simple("b")))
        got = await take(messages, 2)
        # `UID SEARCH UID 3:*` answers the highest UID (2) too: it must not come back
        later = tg.create_task(append_when_connected(comm, dovecot, user, simple("c")))
        got += await take(messages, 1)
    assert [m.uid for m in got] == [*first.result(), *later.result()]
    assert [m.subject for m in got] == ["a", "b", "c"]


async def test_a_query_filters_on_the_server_and_the_client(
    comm: CommManager, imap: IMAPProvider, dovecot: Dovecot, user: str
) -> None:
    # the server narrows by sender; has_attachment() is checked on the client
    query = EmailQuery().from_sender("billing@shop.example").has_attachment()
    assert query.explain("imap").client is not None
    billing = RICH.replace(b"jose@example.com", b"billing@shop.example")
    raws = [
        simple("Hello", "friend@example.org"),
        simple("Invoice 1", "billing@shop.example"),
        RICH,  # an attachment, but another sender
        billing,
        simple("Invoice 2", "billing@shop.example"),
        billing.replace(b"(draft)", b"(final)"),
    ]
    async with aclosing(imap.watch(query)) as messages, asyncio.TaskGroup() as tg:
        tg.create_task(append_when_connected(comm, dovecot, user, *raws))
        got = await take(messages, 2)
    assert [m.subject for m in got] == [RICH_SUBJECT, RICH_SUBJECT.replace("draft", "final")]

    class Raw:  # criteria plus a local check, like search() accepts
        def to_imap(self) -> str:
            return 'FROM "billing@shop.example"'

        def matches(self, message: ReceivedMessage) -> bool:
            return "Invoice" in message.subject

    async with aclosing(imap.watch(Raw(), include_existing=True)) as messages:
        got = await take(messages, 2)
    assert [m.subject for m in got] == ["Invoice 1", "Invoice 2"]


async def test_include_existing_and_since_uid_start_earlier(
    comm: CommManager, imap: IMAPProvider, dovecot: Dovecot, user: str
) -> None:
    uids = [dovecot.append(user, simple(s)) for s in ("one", "two", "three")]
    async with aclosing(imap.watch(include_existing=True)) as messages, asyncio.TaskGroup() as tg:
        tg.create_task(append_when_connected(comm, dovecot, user, simple("four")))
        got = await take(messages, 4)
    assert [m.subject for m in got] == ["one", "two", "three", "four"]
    async with aclosing(imap.watch(since_uid=uids[1])) as messages:
        assert [m.subject for m in await take(messages, 2)] == ["three", "four"]


async def test_leaving_the_loop_or_cancelling_logs_out(
    imap: IMAPProvider, dovecot: Dovecot, user: str
) -> None:
    dovecot.append(user, simple("one"))
    async with aclosing(imap.watch(include_existing=True)) as messages:
        async for _ in messages:
            assert connections(dovecot, user) == 1
            break
    # a task cancelled while idling (here by a timeout) closes the connection too
    messages = imap.watch()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.5):
            await anext(messages)
    await eventually(lambda: connections(dovecot, user) == 0)
    logouts = re.findall(rf"imap\({re.escape(user)}\).*: (Logged out|Disconnected)", dovecot.log)
    assert logouts == ["Logged out"] * 3, logouts  # the append's, then the two watches'
    assert imap.statistics().size == 0  # the pool was never used


async def test_polling_finds_new_mail_without_idle(
    comm: CommManager, imap: IMAPProvider, dovecot: Dovecot, user: str
) -> None:
    watch = imap.watch(use_idle=False, poll_interval=0.05, idle_timeout=3600)
    async with aclosing(watch) as messages, asyncio.TaskGroup() as tg:
        tg.create_task(append_when_connected(comm, dovecot, user, simple("a"), simple("b")))
        assert [m.subject for m in await take(messages, 2)] == ["a", "b"]


async def test_a_kicked_connection_reconnects_without_duplicates(
    comm: CommManager,
    imap: IMAPProvider,
    dovecot: Dovecot,
    user: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with aclosing(imap.watch()) as messages, asyncio.TaskGroup() as tg:
        tg.create_task(append_when_connected(comm, dovecot, user, simple("before")))
        got = await take(messages, 1)
        doveadm(dovecot, "kick", user)  # BYE, then the connection closes
        dovecot.append(user, simple("while away"))  # likely before the reconnect
        tg.create_task(append_when_connected(comm, dovecot, user, simple("after"), times=2))
        got += await take(messages, 2)
    assert [m.subject for m in got] == ["before", "while away", "after"]
    assert comm.metrics.get_stats("imap", "watch").successful == 2
    assert any("reconnecting in" in r.message for r in caplog.records if r.levelname == "WARNING")


async def test_a_recreated_folder_is_not_yielded_again(
    comm: CommManager,
    imap: IMAPProvider,
    dovecot: Dovecot,
    user: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    dovecot.append(user, simple("old 1"), folder="Box")
    async with aclosing(imap.watch(folder="Box", include_existing=True)) as messages:
        assert [m.subject for m in await take(messages, 1)] == ["old 1"]
        client = dovecot.imap(user)
        try:  # the folder's UIDs start again at 1, under a new UIDVALIDITY
            client.delete("Box")
            client.create("Box")
        finally:
            client.logout()
        dovecot.append(user, simple("while away"), folder="Box")
        doveadm(dovecot, "kick", user)
        async with asyncio.TaskGroup() as tg:
            new = simple("new")
            tg.create_task(append_when_connected(comm, dovecot, user, new, times=2, folder="Box"))
            [message] = await take(messages, 1)
    assert message.subject == "new"
    assert any("was recreated" in r.message for r in caplog.records if r.levelname == "WARNING")


async def test_a_refused_login_on_reconnect_is_raised(
    comm: CommManager, dovecot_for_refusals: Dovecot, client_tls: ssl.SSLContext
) -> None:
    server, user = dovecot_for_refusals, dovecot_for_refusals.new_user()
    server.append(user, simple("one"))
    tokens = [server.token_for(user), "revoked"]

    async def token() -> str:
        return tokens.pop(0) if len(tokens) > 1 else tokens[0]

    imap = comm.imap("localhost", server.tls_port, username=user, oauth_token=token,
                     tls_context=client_tls)  # fmt: skip
    async with aclosing(imap.watch(include_existing=True)) as messages:
        await take(messages, 1)
        doveadm(server, "kick", user)
        with pytest.raises(AuthenticationError):
            await take(messages, 1)
    assert connections(server, user) == 0


async def test_a_closed_manager_ends_the_watch(
    dovecot: Dovecot, user: str, client_tls: ssl.SSLContext
) -> None:
    dovecot.append(user, simple("one"))
    async with CommManager(timeout=TIMEOUT, retry=RETRY) as comm:
        imap = comm.imap("localhost", dovecot.tls_port, username=user,
                         password=dovecot.password, tls_context=client_tls)  # fmt: skip
        messages = imap.watch(include_existing=True)
        await take(messages, 1)
    with pytest.raises(LifecycleError, match="closed"):
        await anext(messages)
    await eventually(lambda: connections(dovecot, user) == 0)


@pytest.mark.parametrize("use_idle", [True, False])
async def test_closing_the_manager_interrupts_a_watch_that_is_waiting(
    dovecot: Dovecot, user: str, client_tls: ssl.SSLContext, use_idle: bool
) -> None:
    comm = await CommManager(timeout=TIMEOUT, retry=RETRY).open()
    imap = comm.imap("localhost", dovecot.tls_port, username=user,
                     password=dovecot.password, tls_context=client_tls)  # fmt: skip
    # 10 minutes of IDLE (or of polling): only the close can end this wait in time
    messages = imap.watch(idle_timeout=600, poll_interval=600, use_idle=use_idle)
    waiting = asyncio.ensure_future(anext(messages))
    await connected(comm)
    await asyncio.sleep(0.2)  # into IDLE / the poll sleep
    assert not waiting.done()
    await comm.aclose()
    async with asyncio.timeout(ARRIVAL):
        with pytest.raises(LifecycleError, match="closed"):
            await waiting
    await eventually(lambda: connections(dovecot, user) == 0)


async def test_errors_that_reconnecting_cannot_fix_are_raised(imap: IMAPProvider) -> None:
    async with aclosing(imap.watch(folder="No such folder")) as messages:
        with pytest.raises(ProviderError, match="SELECT"):
            await anext(messages)


def test_arguments_are_checked_when_called(imap: IMAPProvider) -> None:
    with pytest.raises(ValidationError, match="include_existing"):
        imap.watch(since_uid=3, include_existing=True)
    with pytest.raises(ValidationError, match="poll_interval"):
        imap.watch(poll_interval=0)
    with pytest.raises(ValidationError, match="since_uid"):
        imap.watch(since_uid=-1)
    with pytest.raises(ValidationError, match="limit"):
        imap.watch(EmailQuery().subject_contains("x").limit(5))
    with pytest.raises(ValidationError, match="folder"):
        imap.watch(EmailQuery().folder("Archive"), folder="INBOX")
    with pytest.raises(ValidationError, match="folder name"):
        imap.watch(folder="bad\r\nname")


# -- a server without IDLE ------------------------------------------------------------------


def _fetch_record(uid: int) -> bytes:
    header = f"Subject: scripted {uid}\r\nFrom: a@example.com\r\n\r\n".encode()
    return (
        (
            f'* {uid} FETCH (UID {uid} FLAGS () INTERNALDATE "04-Nov-2025 08:00:00 +0000" '
            f'RFC822.SIZE 40 BODYSTRUCTURE ("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" '
            f"2 1) BODY[HEADER] {{{len(header)}}}\r\n"
        ).encode()
        + header
        + b")\r\n"
    )


def mailbox_server(
    uids: list[int], seen: list[bytes], pushes: list[bytes] | None = None
) -> Handler:
    """Answers SELECT, CAPABILITY, UID SEARCH (with the `n:*` quirk), UID FETCH, NOOP and
    LOGOUT; with `pushes`, IDLE too: each IDLE pushes the next line (`b"4 EXISTS"` also adds
    UID 4), or nothing when none is left."""
    idling: list[bytes] = []

    async def handle(line: bytes, writer: asyncio.StreamWriter) -> bool | None:
        seen.append(line)
        tag, _, command = line.partition(b" ")
        word = command.upper()
        if pushes is not None and word == b"IDLE":
            idling.append(tag)
            writer.write(b"+ idling\r\n")
            if pushes:
                push = pushes.pop(0)
                if push.endswith(b" EXISTS"):
                    uids.append(int(push.split()[0]))
                writer.write(b"* " + push + b"\r\n")
            return True
        if line == b"DONE" and idling:
            writer.write(idling.pop() + b" OK idle done\r\n")
            return True
        if word.startswith(b"SELECT"):
            writer.write(b"* 1 EXISTS\r\n* OK [UIDVALIDITY 7] v\r\n* OK [UIDNEXT 2] n\r\n")
        elif word.startswith(b"CAPABILITY"):
            writer.write(
                b"* CAPABILITY IMAP4rev1" + (b" IDLE" if pushes is not None else b"") + b"\r\n"
            )
        elif word.startswith(b"UID SEARCH UID "):
            low = int(word.split()[3].split(b":")[0])
            found = [u for u in uids if u >= low] or uids[-1:]  # n:* includes the highest
            writer.write(b"* SEARCH " + b" ".join(b"%d" % u for u in found) + b"\r\n")
        elif word.startswith(b"UID FETCH "):
            for part in word.split()[2].split(b","):
                low, _, high = part.partition(b":")
                for uid in range(int(low), int(high or low) + 1):
                    writer.write(_fetch_record(uid))
        elif word.startswith(b"LOGOUT"):
            writer.write(b"* BYE\r\n" + tag + b" OK bye\r\n")
            return False
        elif not word.startswith(b"NOOP"):
            writer.write(tag + b" BAD unexpected\r\n")
            return True
        writer.write(tag + b" OK done\r\n")
        return True

    return handle


async def test_a_server_without_idle_is_polled(comm: CommManager) -> None:
    uids, seen = [1, 2, 3], []  # 2 and 3 arrived after SELECT said UIDNEXT 2

    async def arrive_after_a_poll() -> None:
        await eventually(lambda: any(line.endswith(b"NOOP") for line in seen))
        uids.append(4)

    greeting = b"* PREAUTH [CAPABILITY IMAP4rev1] no idle here"
    async with scripted(greeting, mailbox_server(uids, seen)) as port:
        imap = comm.imap("127.0.0.1", port, username="u", password="p", use_tls=False)
        async with aclosing(imap.watch(poll_interval=0.02)) as messages:
            got = await take(messages, 2)
            async with asyncio.TaskGroup() as tg:
                tg.create_task(arrive_after_a_poll())
                got += await take(messages, 1)
    assert [m.uid for m in got] == [2, 3, 4]
    assert [m.subject for m in got] == ["scripted 2", "scripted 3", "scripted 4"]
    assert not any(b"IDLE" in line for line in seen)
    assert seen[-1].endswith(b"LOGOUT"), seen


async def test_a_no_pushed_while_idling_reconnects_instead_of_spinning(
    comm: CommManager, caplog: pytest.LogCaptureFixture
) -> None:
    # Dovecot answers every IDLE with "* NO Internal error" once the folder was deleted
    uids, seen = [1], []
    pushes = [b"NO Internal error occurred.", b"2 EXISTS"]
    greeting = b"* PREAUTH [CAPABILITY IMAP4rev1 IDLE] idle"
    async with scripted(greeting, mailbox_server(uids, seen, pushes)) as port:
        imap = comm.imap("127.0.0.1", port, username="u", password="p", use_tls=False)
        async with aclosing(imap.watch(poll_interval=3600)) as messages:
            [message] = await take(messages, 1)
    assert message.uid == 2
    assert sum(line.endswith(b"IDLE") for line in seen) == 2
    assert sum(line.upper().endswith(b'SELECT "INBOX"') for line in seen) == 2
    assert comm.metrics.get_stats("imap", "watch").successful == 2
    assert any("Internal error" in r.message for r in caplog.records if r.levelname == "WARNING")


async def test_an_idle_the_server_refuses_is_raised(comm: CommManager) -> None:
    uids, seen = [1], []
    greeting = b"* PREAUTH [CAPABILITY IMAP4rev1 IDLE] says IDLE, refuses it"
    async with scripted(greeting, mailbox_server(uids, seen)) as port:
        imap = comm.imap("127.0.0.1", port, username="u", password="p", use_tls=False)
        async with aclosing(imap.watch()) as messages:
            with pytest.raises(ProviderError, match="IDLE") as caught:
                await take(messages, 1)
    assert caught.value.error_code == "BAD"
    assert seen[-1].endswith(b"LOGOUT")  # the session stayed usable for a clean LOGOUT
