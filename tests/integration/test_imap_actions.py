"""Acting on read messages against a real Dovecot: flags, labels, copy, move, delete, batch
mode, attachments saved from hostile names, and replies/forwards sent through aiosmtpd.

Every change is read back from Dovecot with the stdlib `imaplib` client (`dovecot.imap()`),
not only through xcomm. Commands are counted on the wire by a small TCP relay between the
provider and Dovecot (`Relay`), which records each line the client sends.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import os
import re
import ssl
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from email.message import EmailMessage as StdMessage
from pathlib import Path

import pytest
import trustme
from conftest import DOVECOT, SMTPServer, require_binary
from dovecot import Dovecot, dovecot_session

from xcomm import (
    CommManager,
    FileAlreadyExists,
    FlagBatch,
    IMAPProvider,
    ProviderError,
    ReceivedMessage,
    RetryPolicy,
    SMTPProvider,
    Timeout,
    ValidationError,
)
from xcomm.email._safe_names import target_directory

pytestmark = pytest.mark.service("dovecot")

TIMEOUT = Timeout(connect=3.0, read=3.0, write=3.0, pool=3.0)
NO_RETRY = RetryPolicy(max_attempts=1)


def simple(subject: str, body: str = "hello") -> bytes:
    return (
        f"From: Ann <ann@example.com>\r\nTo: me@example.com\r\nSubject: {subject}\r\n"
        f"Date: Tue, 04 Nov 2025 08:00:00 +0000\r\nMessage-ID: <{subject}@x>\r\n\r\n{body}\r\n"
    ).encode()


def with_files(*files: tuple[str | None, bytes, str], extra_headers: str = "") -> bytes:
    """A multipart message with a text body and one part per (filename, content, type)."""
    msg = StdMessage()
    msg["From"] = "José García <jose@example.com>"
    msg["To"] = "me@example.com, Bob <bob@example.org>"
    msg["Cc"] = "Cléo <cleo@example.net>, me@example.com"
    msg["Subject"] = "Quarterly report"
    msg["Date"] = "Mon, 03 Nov 2025 10:00:00 +0100"
    msg["Message-ID"] = "<report-1@example.com>"
    for line in filter(None, extra_headers.split("\n")):
        name, _, value = line.partition(": ")
        msg[name] = value
    msg.set_content("Numbers attached.\n\n> an old quote\nBye\n")
    for filename, content, content_type in files:
        maintype, subtype = content_type.split("/")
        msg.add_attachment(content, maintype=maintype, subtype=subtype)
        part = msg.get_payload()[-1]
        if filename is not None:
            part.replace_header("Content-Disposition", "attachment")
            part.set_param("filename", filename, header="Content-Disposition")
    return msg.as_bytes(policy=email.policy.SMTP)


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
    return comm.imap(
        "localhost", dovecot.tls_port, username=user, password=dovecot.password,
        tls_context=client_tls,
    )  # fmt: skip


def server_flags(dovecot: Dovecot, user: str, folder: str = "INBOX") -> dict[int, set[str]]:
    """{uid: flags} of every message in `folder`, as Dovecot has them (stdlib imaplib)."""
    client = dovecot.imap(user)
    try:
        typ, _ = client.select(f'"{folder}"', readonly=True)
        assert typ == "OK", folder
        typ, data = client.uid("FETCH", "1:*", "(UID FLAGS)")
        out: dict[int, set[str]] = {}
        for item in data:
            if isinstance(item, bytes):
                found = re.search(rb"UID (\d+) FLAGS \(([^)]*)\)", item) or re.search(
                    rb"FLAGS \(([^)]*)\) UID (\d+)", item
                )
                if found:
                    a, b = found.groups()
                    uid, flags = (a, b) if a.isdigit() else (b, a)
                    out[int(uid)] = set(flags.decode().split()) - {"\\Recent"}
        return out
    finally:
        client.logout()


async def get(imap: IMAPProvider, uid: int, folder: str | None = None) -> ReceivedMessage:
    message = await imap.get(uid, folder=folder)
    assert message is not None
    return message


# -- a wire-level command counter ---------------------------------------------------------------


class Relay:
    """A TCP relay to Dovecot's plaintext port that records every line the client sends."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def commands(self, name: str) -> list[str]:
        """The recorded commands (tags removed) that start with `name`, e.g. "UID STORE"."""
        found = [line.split(" ", 1)[1] for line in self.lines if " " in line]
        return [c for c in found if c.upper().startswith(name)]


@asynccontextmanager
async def relay_to(port: int) -> AsyncIterator[tuple[Relay, int]]:
    relay = Relay()
    tasks: set[asyncio.Task[None]] = set()
    writers: list[asyncio.StreamWriter] = []

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, log: bool) -> None:
        try:
            while data := await reader.readline():
                if log:
                    relay.lines.append(data.decode("utf-8", "replace").rstrip("\r\n"))
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        tasks.add(asyncio.current_task())  # type: ignore[arg-type]
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
        writers.extend((writer, up_writer))
        await asyncio.gather(pipe(reader, up_writer, True), pipe(up_reader, writer, False))

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield relay, server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for writer in writers:  # both sides end; the relay tasks finish on their own
            writer.close()
        if tasks:
            await asyncio.wait(tasks, timeout=2)
        await server.wait_closed()


@asynccontextmanager
async def relayed(
    comm: CommManager, server: Dovecot, user: str
) -> AsyncIterator[tuple[IMAPProvider, Relay]]:
    """A provider whose every command passes the relay (plaintext on loopback)."""
    async with relay_to(server.port) as (relay, port):
        imap = comm.imap("127.0.0.1", port, username=user, password=server.password,
                         use_tls=False)  # fmt: skip
        try:
            yield imap, relay
        finally:
            await imap.aclose()


# -- flags and labels ---------------------------------------------------------------------------


async def test_flag_actions_change_the_server_and_return_the_updated_message(
    imap: IMAPProvider, dovecot: Dovecot, user: str
) -> None:
    uid = dovecot.append(user, simple("one"))
    other = dovecot.append(user, simple("two"))
    message = await get(imap, uid)

    read = await message.mark_as_read()
    assert read.is_read and not message.is_read  # a new value; the old one is unchanged
    assert read.mailbox is imap and read.uid == uid
    assert server_flags(dovecot, user)[uid] == {"\\Seen"}

    starred = await read.mark_as_important()
    assert starred.is_flagged
    labelled = await (await starred.add_label("Boss")).add_label("$Important")
    assert labelled.labels == ("Boss", "$Important")
    assert server_flags(dovecot, user)[uid] == {"\\Seen", "\\Flagged", "Boss", "$Important"}

    again = await get(imap, uid)  # read back through the provider too
    assert set(again.flags) == {"\\Recent", "\\Seen", "\\Flagged", "Boss", "$Important"}

    cleared = await (await (await labelled.mark_as_unread()).mark_as_unimportant()).remove_label(
        "Boss"
    )
    assert cleared.flags == ("\\Recent", "$Important")  # \\Recent: the server's, read back
    assert server_flags(dovecot, user) == {uid: {"$Important"}, other: set()}


async def test_set_flags_and_labels_on_many_uids_at_once(
    imap: IMAPProvider, dovecot: Dovecot, user: str
) -> None:
    uids = [dovecot.append(user, simple(f"m{i}")) for i in range(4)]
    await imap.set_flags(uids[:3], add=["\\seen", "\\FLAGGED"])  # any case
    await imap.set_labels(uids[1:], add=["project-x"])
    await imap.set_flags(uids[0], remove=["\\Flagged"])
    assert server_flags(dovecot, user) == {
        uids[0]: {"\\Seen"},
        uids[1]: {"\\Seen", "\\Flagged", "project-x"},
        uids[2]: {"\\Seen", "\\Flagged", "project-x"},
        uids[3]: {"project-x"},
    }
    await imap.set_flags([], add=["\\Seen"])  # nothing to do: nothing sent


@pytest.mark.parametrize(
    ("label", "match"),
    [
        ("My Label", "no spaces|without spaces"),
        ("Café", "ASCII"),
        ("a]b", r"\]"),
        ("(x)", "without spaces"),
        ("", "1 to 100"),
        ("x" * 101, "1 to 100"),
        ("\\Seen", "system flag"),
    ],
)
async def test_labels_imap_cannot_store_are_refused_with_a_suggestion(
    imap: IMAPProvider, dovecot: Dovecot, user: str, label: str, match: str
) -> None:
    uid = dovecot.append(user, simple("one"))
    message = await get(imap, uid)
    with pytest.raises(ValidationError, match=match):
        await message.add_label(label)
    assert server_flags(dovecot, user)[uid] == set()


async def test_bad_flags_and_uids_are_refused_before_anything_is_sent(
    imap: IMAPProvider,
) -> None:
    with pytest.raises(ValidationError, match="not a flag a client can set"):
        await imap.set_flags(1, add=["\\Recent"])
    with pytest.raises(ValidationError, match="both added and removed"):
        await imap.set_flags(1, add=["\\Seen"], remove=["\\seen"])
    with pytest.raises(ValidationError, match="positive int"):
        await imap.set_flags([0], add=["\\Seen"])
    with pytest.raises(ValidationError, match="folder name"):
        await imap.move(1, "bad\r\nname")
    with pytest.raises(ValidationError, match="My_Label"):
        await imap.set_labels(1, add=["My Label"])
    assert imap.statistics().connections_opened == 0


async def test_a_message_without_a_mailbox_cannot_act() -> None:
    from xcomm import LifecycleError

    with pytest.raises(LifecycleError, match="not bound"):
        await ReceivedMessage(uid=1).mark_as_read()


# -- folders: move, copy, delete ----------------------------------------------------------------


async def test_move_copy_and_delete_with_dovecot(
    imap: IMAPProvider, dovecot: Dovecot, user: str
) -> None:
    await imap.create_folder("Archive")
    await imap.create_folder("Keep")
    a = dovecot.append(user, simple("a"), flags="\\Seen")
    b = dovecot.append(user, simple("b"))
    c = dovecot.append(user, simple("c"))
    marked = dovecot.append(user, simple("marked by someone else"), flags="\\Deleted")
    kept = dovecot.append(user, simple("kept"))

    moved = await (await get(imap, a)).move_to("Archive")
    assert moved is not None and moved.folder == "Archive" and moved.is_read
    assert moved.id == str(moved.uid)  # the id follows the new UID
    assert a not in server_flags(dovecot, user)
    assert server_flags(dovecot, user, "Archive") == {moved.uid: {"\\Seen"}}
    assert (await get(imap, moved.uid, "Archive")).subject == "a"  # the new UID is right

    copy = await (await get(imap, b)).copy_to("Keep")
    assert copy is not None and copy.folder == "Keep"
    assert b in server_flags(dovecot, user) and copy.uid in server_flags(dovecot, user, "Keep")

    assert await (await get(imap, c)).delete() is None
    inbox = server_flags(dovecot, user)
    assert c not in inbox
    assert inbox[marked] == {"\\Deleted"}  # UID EXPUNGE removed only our message

    await (await get(imap, kept)).delete(expunge=False)
    assert server_flags(dovecot, user)[kept] == {"\\Deleted"}


async def test_moving_or_copying_into_an_unknown_folder_is_the_servers_no(
    imap: IMAPProvider, dovecot: Dovecot, user: str
) -> None:
    uid = dovecot.append(user, simple("one"))
    message = await get(imap, uid)
    for action in (message.move_to, message.copy_to):
        with pytest.raises(ProviderError) as caught:
            await action("No such folder")
        assert caught.value.error_code == "TRYCREATE"
        assert "doesn't exist" in (caught.value.detail or "")
    assert uid in server_flags(dovecot, user)  # still there
    with pytest.raises(ProviderError) as caught:
        await imap.set_flags(uid, add=["\\Seen"], folder="No such folder")
    assert caught.value.error_code == "NO"
    assert imap.statistics().idle == 1  # a NO leaves the session usable


async def test_a_recreated_folder_is_never_acted_on_with_old_uids(
    imap: IMAPProvider, dovecot: Dovecot, user: str
) -> None:
    uid = dovecot.append(user, simple("old"), folder="Work")
    message = await get(imap, uid, "Work")
    await imap.search()  # the pooled session now has INBOX selected
    client = dovecot.imap(user)
    client.delete('"Work"')
    client.logout()
    assert dovecot.append(user, simple("new"), folder="Work") == uid  # same UID, new message
    for action in (message.mark_as_read, message.delete, lambda: message.move_to("INBOX")):
        with pytest.raises(ProviderError, match="recreated"):
            await action()
    assert server_flags(dovecot, user, "Work") == {uid: set()}


# -- move on servers without MOVE (and without UIDPLUS) -----------------------------------------

CAPABILITIES = {
    "no MOVE": "IMAP4rev1 SASL-IR LITERAL+ ID ENABLE IDLE NAMESPACE UIDPLUS",
    "no MOVE, no UIDPLUS": "IMAP4rev1 SASL-IR LITERAL+ ID ENABLE IDLE NAMESPACE",
}


@pytest.fixture(scope="module", params=list(CAPABILITIES))
def limited_dovecot(
    request: pytest.FixtureRequest, ca: trustme.CA
) -> Iterator[tuple[Dovecot, str]]:
    """A Dovecot that advertises fewer capabilities (it still understands everything), and
    what it advertises."""
    binary = require_binary(DOVECOT, "apt-get install -y dovecot-imapd")
    capabilities = CAPABILITIES[request.param]
    extra = f"protocol imap {{\n  imap_capability = {capabilities}\n}}\n"
    for server in dovecot_session(binary, ca, extra):
        yield server, capabilities


async def test_move_without_the_move_capability(
    comm: CommManager, limited_dovecot: tuple[Dovecot, str]
) -> None:
    server, capabilities = limited_dovecot
    user = server.new_user()
    uid = server.append(user, simple("one"), flags="\\Flagged")
    other = server.append(user, simple("marked"), flags="\\Deleted")
    async with relayed(comm, server, user) as (imap, relay):
        await imap.create_folder("Archive")
        moved = await (await get(imap, uid)).move_to("Archive")
    assert relay.commands("UID MOVE") == []
    assert len(relay.commands("UID COPY")) == 1
    assert relay.commands("UID STORE") == [f"UID STORE {uid} +FLAGS.SILENT (\\Deleted)"]
    assert relay.commands("EXPUNGE") == []  # never the plain EXPUNGE: it would remove `other`
    archived = server_flags(server, user, "Archive")
    assert list(archived.values()) == [{"\\Flagged"}]  # the copy never had \Deleted
    inbox = server_flags(server, user)
    assert inbox[other] == {"\\Deleted"}
    if "UIDPLUS" in capabilities.split():
        assert relay.commands("UID EXPUNGE") == [f"UID EXPUNGE {uid}"]
        assert uid not in inbox
        assert moved is not None and moved.uid in archived  # COPYUID gave the new UID
    else:  # no UID EXPUNGE: left marked for the server or a mail client to expunge
        assert relay.commands("UID EXPUNGE") == []
        assert inbox[uid] == {"\\Flagged", "\\Deleted"}


# -- batch mode ---------------------------------------------------------------------------------


async def test_batch_mode_sends_one_uid_store_per_flag_set(
    comm: CommManager, dovecot: Dovecot, user: str
) -> None:
    uids = [dovecot.append(user, simple(f"m{i}")) for i in range(6)]
    async with relayed(comm, dovecot, user) as (imap, relay):
        messages = await imap.search()
        async with imap.batch_mode() as batch:
            assert isinstance(batch, FlagBatch)
            for m in messages:
                await m.mark_as_read()
            for m in messages[:3]:
                await m.add_label("Boss")
            await messages[5].mark_as_unread()  # the last change to a flag wins
            assert relay.commands("UID STORE") == []  # nothing sent yet
            assert batch.pending == 6 + 3
        stores = sorted(relay.commands("UID STORE"))
        # uid set, operation and flag set: one command each
        assert stores == sorted(
            [
                f"UID STORE {uids[0]}:{uids[2]} +FLAGS.SILENT (Boss \\Seen)",
                f"UID STORE {uids[3]}:{uids[4]} +FLAGS.SILENT (\\Seen)",
                f"UID STORE {uids[5]} -FLAGS.SILENT (\\Seen)",
            ]
        )
    flags = server_flags(dovecot, user)
    assert [flags[u] for u in uids] == [{"\\Seen", "Boss"}] * 3 + [{"\\Seen"}] * 2 + [set()]


async def test_batch_mode_discards_on_error_and_flushes_before_a_move(
    comm: CommManager, dovecot: Dovecot, user: str
) -> None:
    a, b = dovecot.append(user, simple("a")), dovecot.append(user, simple("b"))
    async with relayed(comm, dovecot, user) as (imap, relay):
        await imap.create_folder("Archive")
        first, second = await imap.search()
        with pytest.raises(RuntimeError):
            async with imap.batch_mode():
                await first.mark_as_important()
                raise RuntimeError("changed my mind")
        assert relay.commands("UID STORE") == []
        assert server_flags(dovecot, user)[a] == set()

        async with imap.batch_mode():
            await first.mark_as_read()
            async with imap.batch_mode() as inner:  # joins the outer batch
                await second.add_label("Later")
                assert inner.pending == 2
            moved = await first.move_to("Archive")  # sends first's flag change, then moves
            assert len(relay.commands("UID STORE")) == 2
            await second.mark_as_important()
        assert moved is not None
        assert server_flags(dovecot, user, "Archive")[moved.uid] == {"\\Seen"}
        assert server_flags(dovecot, user)[b] == {"Later", "\\Flagged"}


async def test_each_task_has_its_own_batch(imap: IMAPProvider, dovecot: Dovecot, user: str) -> None:
    a, b = dovecot.append(user, simple("a")), dovecot.append(user, simple("b"))
    first, second = await imap.search()
    in_batch = asyncio.Event()
    done = asyncio.Event()

    async def batched() -> None:
        async with imap.batch_mode():
            await first.mark_as_read()
            in_batch.set()
            await done.wait()

    async def direct() -> None:
        await in_batch.wait()
        await second.mark_as_read()  # not in the other task's batch: sent now
        assert server_flags(dovecot, user) == {a: set(), b: {"\\Seen"}}
        done.set()

    async with asyncio.TaskGroup() as tg:
        tg.create_task(batched())
        tg.create_task(direct())
    assert server_flags(dovecot, user) == {a: {"\\Seen"}, b: {"\\Seen"}}


# -- attachments --------------------------------------------------------------------------------

HOSTILE = [
    ("../../etc/passwd", b"root:x:0:0", "text/plain"),
    ("C:\\x\\evil.exe", b"MZ", "application/octet-stream"),
    ("CON.txt", b"con", "text/plain"),
    ("a/b.txt", b"b", "text/plain"),
    (None, b"%PDF-1.4", "application/pdf"),
    ("x" * 300 + ".pdf", b"long", "application/pdf"),
    ("report.pdf", b"one", "application/pdf"),
    ("report.pdf", b"two", "application/pdf"),
    (".htaccess", b"deny", "text/plain"),
    ("notes.txt:stream", b"ads", "text/plain"),
]


async def test_download_attachments_with_hostile_names_stays_in_the_folder(
    imap: IMAPProvider, dovecot: Dovecot, user: str, tmp_path: Path
) -> None:
    uid = dovecot.append(user, with_files(*HOSTILE))
    message = await get(imap, uid)
    target = tmp_path / "downloads"
    paths = await message.download_attachments(target)
    names = [p.name for p in paths]
    assert names == [
        "passwd",
        "evil.exe",
        "_CON.txt",
        "b.txt",
        "attachment-5.pdf",
        "x" * 251 + ".pdf",
        "report.pdf",
        "report (1).pdf",
        "htaccess",
        "notes.txt_stream",
    ]
    assert all(p.parent == target.resolve() for p in paths)
    assert sorted(os.listdir(target)) == sorted(names)  # nothing anywhere else
    assert [p.read_bytes() for p in paths] == [content for _, content, _ in HOSTILE]
    assert not (tmp_path / "etc").exists()
    assert server_flags(dovecot, user)[uid] == set()  # fetching parts leaves \Seen alone

    paths[6].write_bytes(b"mine")
    with pytest.raises(FileAlreadyExists, match=r"passwd exists in .*overwrite=True") as caught:
        await message.download_attachments(target)
    assert caught.value.path == str(paths[0])
    assert paths[6].read_bytes() == b"mine"  # checked before anything was written
    again = await message.download_attachments(target, overwrite=True)
    assert again == paths and paths[6].read_bytes() == b"one"


async def test_a_planted_symlink_is_never_followed(
    imap: IMAPProvider, dovecot: Dovecot, user: str, tmp_path: Path
) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"precious")
    target = tmp_path / "in"
    target.mkdir()
    (target / "report.pdf").symlink_to(outside)
    message = await get(imap, dovecot.append(user, with_files(("report.pdf", b"new", "x/y"))))
    with pytest.raises(FileAlreadyExists):
        await message.download_attachments(target)
    [written] = await message.download_attachments(target, overwrite=True)
    assert not written.is_symlink() and written.read_bytes() == b"new"
    assert outside.read_bytes() == b"precious"  # the link was replaced, not followed


async def test_save_one_attachment_into_a_folder_or_as_a_file(
    imap: IMAPProvider, dovecot: Dovecot, user: str, tmp_path: Path
) -> None:
    files = (("../q1.csv", b"a,b", "text/csv"), ("logo.png", b"\x89PNG", "image/png"))
    message = await get(imap, dovecot.append(user, with_files(*files)))
    first, second = message.attachments
    saved = await message.save_attachment(first, f"{tmp_path}/")
    assert (saved.parent, saved.name) == (target_directory(tmp_path), "q1.csv")
    chosen = await message.save_attachment(second, tmp_path / "my-logo.png")
    assert chosen.read_bytes() == b"\x89PNG"
    with pytest.raises(FileAlreadyExists):
        await message.save_attachment(second, tmp_path / "my-logo.png")
    with pytest.raises(ValueError, match="not one of this message"):
        await message.save_attachment(first.__class__(filename="x"), tmp_path)


# -- reply, reply all, forward --------------------------------------------------------------


@pytest.fixture
def smtp(comm: CommManager, smtpd: Callable[[str], SMTPServer]) -> tuple[SMTPProvider, SMTPServer]:
    server = smtpd("plain")
    return comm.smtp(server.host, server.port, sender="Me <me@example.com>"), server


def received(server: SMTPServer) -> tuple[list[str], StdMessage]:
    [delivery] = server.recorder.messages
    parsed = email.message_from_bytes(delivery.content, policy=email.policy.default)
    assert isinstance(parsed, StdMessage)
    return delivery.rcpt_tos, parsed


async def test_reply_threads_quotes_and_goes_to_reply_to(
    imap: IMAPProvider, dovecot: Dovecot, user: str, smtp: tuple[SMTPProvider, SMTPServer]
) -> None:
    provider, server = smtp
    raw = with_files(extra_headers="Reply-To: Team <team@example.com>\nReferences: <root@x>")
    message = await get(imap, dovecot.append(user, raw))
    draft = await message.reply(provider, "Thanks, got it.")
    await draft.send()
    rcpt, sent = received(server)
    assert rcpt == ["team@example.com"]
    assert sent["Subject"] == "Re: Quarterly report"
    assert sent["In-Reply-To"] == "<report-1@example.com>"
    assert sent["References"].split() == ["<root@x>", "<report-1@example.com>"]
    body = sent.get_body(("plain",))
    assert body is not None
    text = body.get_content().replace("\r\n", "\n")
    assert text.startswith("Thanks, got it.\n\nOn Mon, 03 Nov 2025 10:00:00 +0100, ")
    assert (
        "José García <jose@example.com> wrote:\n> Numbers attached.\n>\n>> an old quote\n" in text
    )
    assert not sent.get_payload() or not list(sent.iter_attachments())  # a reply has no files
    assert server_flags(dovecot, user)[message.uid] == {"\\Answered"}  # marked once sent

    server.recorder.reset()
    twice = await message.reply(provider, "Again", html="<p>Again</p>", quote=True)
    msg = twice.subject("Re: Quarterly report").build()  # already "Re:": not "Re: Re:"
    assert msg.subject == "Re: Quarterly report"
    assert msg.html is not None and "<blockquote" in msg.html and "&gt; an old quote" in msg.html


async def test_reply_all_adds_to_and_cc_without_me(
    imap: IMAPProvider, dovecot: Dovecot, user: str, smtp: tuple[SMTPProvider, SMTPServer]
) -> None:
    provider, server = smtp
    message = await get(imap, dovecot.append(user, with_files()))
    await (await message.reply_all(provider, "All of you", quote=False)).send()
    rcpt, sent = received(server)
    assert sorted(rcpt) == ["bob@example.org", "cleo@example.net", "jose@example.com"]
    assert sent["To"] == "José García <jose@example.com>, Bob <bob@example.org>"
    assert sent["Cc"] == "Cléo <cleo@example.net>"
    body = sent.get_body(("plain",))
    assert body is not None and body.get_content().strip() == "All of you"


async def test_forward_reattaches_the_files_under_safe_names(
    imap: IMAPProvider, dovecot: Dovecot, user: str, smtp: tuple[SMTPProvider, SMTPServer]
) -> None:
    provider, server = smtp
    files = (("../../q3.pdf", b"%PDF-q3", "application/pdf"), ("data.csv", b"a,b\n1,2", "text/csv"))
    message = await get(imap, dovecot.append(user, with_files(*files)))
    await (await message.forward(provider, "boss@example.com", "FYI")).send()
    rcpt, sent = received(server)
    assert rcpt == ["boss@example.com"]
    assert sent["Subject"] == "Fwd: Quarterly report"
    body = sent.get_body(("plain",))
    assert body is not None
    text = body.get_content().replace("\r\n", "\n")
    assert text.startswith("FYI\n\n---------- Forwarded message ---------\n")
    assert "From: José García <jose@example.com>\n" in text
    assert "Subject: Quarterly report\n" in text and "Numbers attached." in text
    attached = [(a.get_filename(), a.get_content()) for a in sent.iter_attachments()]
    assert attached == [("q3.pdf", b"%PDF-q3"), ("data.csv", "a,b\n1,2")]
    assert server_flags(dovecot, user)[message.uid] == set()  # forwarding answers no one
    assert sent["References"] == "<report-1@example.com>" and sent["In-Reply-To"] is None


async def test_a_reply_that_cannot_mark_the_original_is_still_sent(
    imap: IMAPProvider,
    dovecot: Dovecot,
    user: str,
    smtp: tuple[SMTPProvider, SMTPServer],
    caplog: pytest.LogCaptureFixture,
) -> None:
    provider, server = smtp
    message = await get(imap, dovecot.append(user, with_files()))
    assert message.uid_validity is not None
    stale = message.replace(uid_validity=message.uid_validity + 1)  # "the folder was recreated"
    draft = await stale.reply(provider, "Thanks", quote=False)
    assert server_flags(dovecot, user)[message.uid] == set()  # a draft marks nothing
    with caplog.at_level("WARNING", logger="xcomm.email"):
        result = await draft.send()
    assert result.ok and len(server.recorder.messages) == 1
    assert "marking message" in caplog.text and "recreated" in caplog.text
    assert server_flags(dovecot, user)[message.uid] == set()


async def test_a_reply_needs_someone_to_reply_to(
    imap: IMAPProvider, dovecot: Dovecot, user: str, smtp: tuple[SMTPProvider, SMTPServer]
) -> None:
    raw = b"To: me@example.com\r\nSubject: anonymous\r\n\r\nwho am I\r\n"
    message = await get(imap, dovecot.append(user, raw))
    with pytest.raises(ValidationError, match="no valid From or Reply-To"):
        await message.reply(smtp[0], "?")
