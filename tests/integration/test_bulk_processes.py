"""`create_bulk_sender(processes=N)`: one campaign sent by this process and helper processes
sharing the SQLite outbox, against a real SMTP server (aiosmtpd)."""

from __future__ import annotations

import email
import email.policy
import io
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from xcomm import CommManager, CommunicationError, ConfigurationError, RetryPolicy
from xcomm._templates import Template, UnsubscribeSigner
from xcomm.bulk._helpers import Helpers, HelperSettings, frame, read_frame
from xcomm.outbox import OutboxRecord, OutboxStatus, record_key

SMTPServer = Any  # conftest.SMTPServer
FAST = RetryPolicy(max_attempts=2, backoff=0.001, max_backoff=0.001, jitter=False)
TEMPLATE = Template(subject="Hello {{ name }}", text="Dear {{ name }}, code {{ code }}.")
# 1,000 a second between the processes: long enough for a helper to start and take a share
RATE = 60_000


def people(n: int) -> list[dict[str, object]]:
    return [{"email": f"user{i}@example.org", "name": f"User {i}", "code": i} for i in range(n)]


def recipients_of(server: SMTPServer) -> list[str]:
    return [
        str(email.message_from_bytes(m.content, policy=email.policy.default)["to"])
        for m in server.recorder.messages
    ]


def _processes() -> list[tuple[int, int, bytes]]:
    """(pid, parent pid, command line) of every process, from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                command = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            found.append((int(entry.name), int(stat.rpartition(")")[2].split()[1]), command))
    return found


def zygotes() -> list[int]:
    """This process's zygotes (children that fork helpers)."""
    me = os.getpid()
    return [pid for pid, parent, cmd in _processes() if parent == me and b"_spawn" in cmd]


def helpers() -> list[int]:
    """The helper processes this one started: forked by its zygote (other children, such as
    a test server's, are not helpers)."""
    mine = set(zygotes())
    return [pid for pid, parent, _ in _processes() if parent in mine]


async def test_processes_share_a_campaign_and_send_each_recipient_once(
    smtpd: Callable[[str], SMTPServer], tmp_path: Path
) -> None:
    server = smtpd("plain")
    outbox = str(tmp_path / "outbox.sqlite3")
    async with CommManager(outbox=outbox, retry=FAST) as comm:
        smtp = comm.smtp(server.host, server.port, sender="news@example.com", pool_size=4)
        bulk = comm.create_bulk_sender(smtp, max_concurrent=16, rate_limit=RATE, processes=2)
        result = await bulk.send_campaign(
            template=TEMPLATE, recipients=people(2000), campaign_id="shared"
        )
        here = smtp.statistics().messages_sent
        statuses = {o.status async for o in bulk.results("shared")}
        again = await bulk.send_campaign(
            template=TEMPLATE, recipients=people(2000), campaign_id="shared"
        )
    assert (result.total, result.sent, result.failed, result.skipped) == (2000, 2000, 0, 0)
    assert result.in_doubt == 0 and result.p99_latency >= result.p50_latency > 0
    # every recipient exactly once, some of them sent by the helper
    assert sorted(recipients_of(server)) == sorted(f"user{i}@example.org" for i in range(2000))
    assert 0 < here < 2000
    assert statuses == {OutboxStatus.SENT}
    assert (again.sent, again.skipped) == (0, 2000)
    assert len(server.recorder.messages) == 2000
    assert helpers() == []  # the helpers are gone


async def test_a_helper_killed_mid_campaign_stops_the_run_and_a_rerun_finishes_it(
    smtpd: Callable[[str], SMTPServer], tmp_path: Path
) -> None:
    server = smtpd("plain")
    outbox = str(tmp_path / "outbox.sqlite3")
    async with CommManager(outbox=outbox, retry=FAST) as comm:
        smtp = comm.smtp(server.host, server.port, sender="news@example.com", pool_size=4)
        bulk = comm.create_bulk_sender(
            smtp, max_concurrent=8, rate_limit=RATE // 4, processes=2, lease=0.5
        )

        async def kill_the_helper() -> None:
            while len(server.recorder.messages) < 300:  # noqa: ASYNC110 - another thread's
                await anyio.sleep(0.05)
            started = helpers()
            assert started, "the helper process should be running"
            for pid in started:
                os.kill(pid, signal.SIGKILL)

        async with anyio.create_task_group() as tg:
            tg.start_soon(kill_the_helper)
            with pytest.raises(CommunicationError, match="exited with status -9"):
                await bulk.send_campaign(
                    template=TEMPLATE, recipients=people(1500), campaign_id="killed"
                )
        assert len(server.recorder.messages) < 1500
        await anyio.sleep(0.6)  # the dead helper's leases expire
        resumed = await comm.create_bulk_sender(smtp, max_concurrent=8).send_campaign(
            template=TEMPLATE, recipients=people(1500), campaign_id="killed"
        )
        statuses = {o.status async for o in bulk.results("killed")}
    assert resumed.failed == 0
    assert statuses == {OutboxStatus.SENT}
    # nobody lost; only what the helper had in flight at the kill may have gone twice
    delivered = recipients_of(server)
    assert set(delivered) == {f"user{i}@example.org" for i in range(1500)}
    # claimed and unrecorded at the kill: in flight, the next claimed chunk, unflushed outcomes
    assert len(delivered) - 1500 <= 2 * 8 + 100
    assert helpers() == []


async def test_processes_refuse_what_a_helper_could_not_do(
    smtpd: Callable[[str], SMTPServer], tmp_path: Path
) -> None:
    server = smtpd("plain")
    host, port = server.host, server.port
    async with CommManager(outbox="memory://") as comm:
        plain = comm.smtp(host, port, sender="n@example.com")
        with pytest.raises(ConfigurationError, match="processes must be a positive int"):
            comm.create_bulk_sender(plain, processes=0)
        with pytest.raises(ConfigurationError, match="needs track_delivery=True"):
            comm.create_bulk_sender(plain, processes=2, track_delivery=False)
        secret = comm.smtp(host, port, username="u", password="in code", sender="n@example.com")
        with pytest.raises(ConfigurationError, match="password_env='NAME'"):
            comm.create_bulk_sender(secret, processes=2)
        limited = comm.smtp(host, port, sender="n@example.com", rate_limit=600)
        with pytest.raises(ConfigurationError, match="own rate limit"):
            comm.create_bulk_sender(limited, processes=2)
        with pytest.raises(ConfigurationError, match="a SQLite file"):
            await comm.create_bulk_sender(plain, processes=2).send_campaign(
                template=TEMPLATE, recipients=people(3)
            )
    async with CommManager(outbox=str(tmp_path / "o.sqlite3")) as comm:
        plain = comm.smtp(host, port, sender="n@example.com")
        signer = UnsubscribeSigner(secret=b"k" * 32, base_url="https://example.com/u")
        with pytest.raises(ConfigurationError, match="from_env"):
            await comm.create_bulk_sender(plain, processes=2).send_campaign(
                template=TEMPLATE, recipients=people(3), unsubscribe=signer
            )
    assert server.recorder.messages == []  # refused before anything was sent


def test_a_helper_reads_the_chunks_dealt_to_it_and_refuses_a_cut_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    chunks = [
        [
            OutboxRecord(
                key=record_key("c", f"user{n}@example.org"),
                campaign_id="c",
                recipient=f"user{n}@example.org",
                variables={"name": f"Ünïcode {n}", "code": n, "tags": ["a", None]},
            )
            for n in range(first, first + 3)
        ]
        for first in (0, 3)
    ]
    data = b"".join(frame(chunk) for chunk in chunks)
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(data)))
    assert [read_frame(), read_frame(), read_frame()] == [*chunks, None]
    # the feeding process died while writing: an error, not a shorter chunk
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(data[:-5])))
    assert read_frame() == chunks[0]
    with pytest.raises(CommunicationError, match="in the middle of a chunk"):
        read_frame()


# -- helpers forked from a warm zygote --------------------------------------------------------


async def _campaign(
    server: SMTPServer, outbox: str, campaign_id: str, count: int, **options: Any
) -> tuple[int, int]:
    """Send a campaign with a helper; (sent, sent by this process)."""
    async with CommManager(outbox=outbox, retry=FAST) as comm:
        smtp = comm.smtp(server.host, server.port, sender="news@example.com", pool_size=4)
        bulk = comm.create_bulk_sender(smtp, max_concurrent=16, rate_limit=RATE, processes=2)
        result = await bulk.send_campaign(
            template=TEMPLATE, recipients=people(count), campaign_id=campaign_id, **options
        )
        return result.sent, smtp.statistics().messages_sent


async def test_campaigns_fork_their_helpers_from_one_warm_zygote(
    smtpd: Callable[[str], SMTPServer], tmp_path: Path
) -> None:
    server = smtpd("plain")
    outbox = str(tmp_path / "outbox.sqlite3")
    first = await _campaign(server, outbox, "first", 1500)
    zygote = zygotes()
    second = await _campaign(server, outbox, "second", 1500)
    assert first[0] == second[0] == 1500
    assert 0 < first[1] < 1500 and 0 < second[1] < 1500  # the helpers sent their share
    assert len(zygote) == 1 and zygotes() == zygote  # the same zygote forked both
    assert helpers() == []  # and reaped them


async def test_a_helper_sees_the_directory_and_environment_of_the_moment(
    smtpd: Callable[[str], SMTPServer], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = smtpd("plain")
    await _campaign(server, str(tmp_path / "warm.sqlite3"), "warm", 200)  # a zygote runs
    secret = os.urandom(24).hex()
    monkeypatch.setenv("XCOMM_TEST_UNSUBSCRIBE", secret)
    monkeypatch.chdir(tmp_path)
    signer = UnsubscribeSigner.from_env("XCOMM_TEST_UNSUBSCRIBE", "https://example.com/u")
    sent, here = await _campaign(server, "relative.sqlite3", "moment", 1500, unsubscribe=signer)
    assert sent == 1500 and here < 1500
    assert (tmp_path / "relative.sqlite3").exists()
    tokens = [
        str(message["List-Unsubscribe"]).strip("<>").split("token=", 1)[1]
        for message in (
            email.message_from_bytes(m.content, policy=email.policy.default)
            for m in server.recorder.messages[-1500:]
        )
    ]
    # the helper signed its share with the secret set after its zygote started
    assert {signer.verify(token) for token in tokens} == {
        ("moment", f"user{i}@example.org") for i in range(1500)
    }


async def test_a_dead_zygote_is_replaced(
    smtpd: Callable[[str], SMTPServer], tmp_path: Path
) -> None:
    server = smtpd("plain")
    outbox = str(tmp_path / "outbox.sqlite3")
    await _campaign(server, outbox, "before", 200)
    (dead,) = zygotes()
    os.kill(dead, signal.SIGKILL)
    sent, here = await _campaign(server, outbox, "after", 1500)
    assert sent == 1500 and here < 1500
    assert dead not in zygotes() and len(zygotes()) == 1


async def test_helpers_start_afresh_where_they_cannot_be_forked(
    smtpd: Callable[[str], SMTPServer], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = smtpd("plain")
    monkeypatch.setattr("xcomm.bulk._spawn._CAN_FORK", False)
    zygote = zygotes()
    sent, here = await _campaign(server, str(tmp_path / "outbox.sqlite3"), "spawned", 1500)
    assert sent == 1500 and here < 1500
    assert zygotes() == zygote  # not used


async def test_a_forked_process_does_not_use_its_parents_zygote(
    smtpd: Callable[[str], SMTPServer], tmp_path: Path
) -> None:
    from xcomm.bulk._spawn import _Zygote

    server = smtpd("plain")
    await _campaign(server, str(tmp_path / "outbox.sqlite3"), "parent", 200)
    assert _Zygote._current is not None
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os._exit(0 if _Zygote._current is None and not _Zygote._lock.locked() else 1)
    _, status = await anyio.to_thread.run_sync(os.waitpid, pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert _Zygote._current is not None and len(zygotes()) == 1  # the parent's is untouched


async def test_a_zygote_killed_mid_campaign_leaves_its_helpers_to_finish(
    smtpd: Callable[[str], SMTPServer], tmp_path: Path
) -> None:
    server = smtpd("plain")
    outbox = str(tmp_path / "outbox.sqlite3")
    await _campaign(server, outbox, "warm", 200)

    async def kill_the_zygote() -> None:
        while len(server.recorder.messages) < 200 + 300:  # noqa: ASYNC110 - another thread's
            await anyio.sleep(0.02)
        for pid in zygotes():
            os.kill(pid, signal.SIGKILL)

    async with anyio.create_task_group() as tg:
        tg.start_soon(kill_the_zygote)
        sent, here = await _campaign(server, outbox, "orphans", 1500)
    assert sent == 1500 and here < 1500  # the orphaned helper finished its share
    assert sorted(recipients_of(server)[200:]) == sorted(
        f"user{i}@example.org" for i in range(1500)
    )


async def test_a_helper_that_ran_out_of_records_reports_them_done(
    smtpd: Callable[[str], SMTPServer], tmp_path: Path
) -> None:
    # The feeding process deals a helper more only once it knows what the helper finished: a
    # helper that finished its records between two progress lines, then had nothing to do,
    # used to leave the last of them unreported, and got nothing more for the whole run.
    server = smtpd("plain")
    outbox = str(tmp_path / "outbox.sqlite3")
    async with CommManager(outbox=outbox, retry=FAST) as comm:
        smtp = comm.smtp(server.host, server.port, sender="news@example.com", pool_size=2)
        await comm.create_bulk_sender(smtp, max_concurrent=8).send_campaign(
            template=TEMPLATE, recipients=people(1), campaign_id="c"
        )  # stores the campaign's definition, which a helper sends by
    settings = HelperSettings(
        outbox=outbox,
        campaign_id="c",
        max_concurrent=8,
        per_domain=None,
        policy="at-least-once",
        lease=60.0,
        retry_failed=True,
        rate_share=1.0,
        processes=2,
        batch=4,
        provider_settings=dict(smtp.spec()),
        uvloop=False,
    )
    helpers = Helpers(settings, 1)
    chunk = [
        OutboxRecord(
            key=record_key("c", f"new{i}@example.org"),
            campaign_id="c",
            recipient=f"new{i}@example.org",
            variables={"name": f"New {i}", "code": i},
        )
        for i in range(40)
    ]
    async with anyio.create_task_group() as tg:
        await helpers.run(tg)
        with anyio.fail_after(20):
            while not await helpers.give(chunk, 1000):  # noqa: ASYNC110 - once it has started
                await anyio.sleep(0.01)
            while helpers.handled < len(chunk):  # noqa: ASYNC110 - reported, no more coming
                await anyio.sleep(0.01)
        await helpers.fed()
    assert [r.sent for r in helpers.finals()] == [40]
