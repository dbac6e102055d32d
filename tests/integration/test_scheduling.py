"""Scheduled campaigns, drip sequences and resumes through the scheduler, against aiosmtpd.

Each test sends through a real SMTP server and keeps its outbox in a SQLite file, and most
run the scheduler in a second `CommManager` on the same file: what a worker process (or the
app after a restart) sees.
"""

from __future__ import annotations

import email
import email.policy
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest

from xcomm import CommManager, ConfigurationError, RetryPolicy, ValidationError
from xcomm._templates import Template, UnsubscribeSigner
from xcomm.outbox import OutboxStatus

SMTPServer = Any
FAST = RetryPolicy(max_attempts=2, backoff=0.001, max_backoff=0.001, jitter=False)
NEWS = Template(subject="News for {{ name }}", text="Hello {{ name }}.")
WELCOME = Template(subject="Welcome {{ name }}", text="Glad you joined, {{ name }}.")
TIPS = Template(subject="Tips for {{ name }}", text="Three tips.")
CHECK_IN = Template(subject="How is it going, {{ name }}?", text="Reply any time.")


def people(n: int) -> list[dict[str, object]]:
    return [{"email": f"user{i}@example.org", "name": f"User {i}"} for i in range(n)]


def subjects(server: SMTPServer) -> list[str]:
    return sorted(
        str(email.message_from_bytes(m.content, policy=email.policy.default)["subject"])
        for m in server.recorder.messages
    )


@pytest.fixture
def outbox(tmp_path: Path) -> str:
    return str(tmp_path / "outbox.sqlite3")


async def test_a_scheduled_campaign_waits_then_a_restarted_process_sends_it(
    smtpd: Callable[[str], SMTPServer], outbox: str
) -> None:
    server = smtpd("plain")
    when = datetime.now(UTC) + timedelta(seconds=1.0)
    async with CommManager(outbox=outbox, retry=FAST) as comm:
        smtp = comm.smtp(server.host, server.port, sender="news@example.com")
        bulk = comm.create_bulk_sender(smtp)
        queued = await bulk.send_campaign(
            template=NEWS, recipients=people(20), campaign_id="later", schedule_time=when
        )
        early = await comm.run_scheduler(until_idle=True)
    assert (queued.total, queued.scheduled, queued.sent) == (20, 20, 0)
    assert early.sent == 0 and server.recorder.messages == []

    await anyio.sleep(max(0.0, when.timestamp() - time.time()) + 0.05)
    async with CommManager(outbox=outbox, retry=FAST) as comm:  # the app, restarted
        done = await comm.run_scheduler(until_idle=True)
        counts = await (await comm.outbox()).counts("later")
    assert done.sent == 20 and done.failed == 0
    assert subjects(server) == sorted(f"News for User {i}" for i in range(20))
    assert counts[OutboxStatus.SENT] == 20
    assert {m.mail_from for m in server.recorder.messages} == {"news@example.com"}


async def test_a_schedule_time_in_the_past_sends_now_and_iso_text_is_accepted(
    smtpd: Callable[[str], SMTPServer], outbox: str
) -> None:
    server = smtpd("plain")
    async with CommManager(outbox=outbox, retry=FAST) as comm:
        bulk = comm.create_bulk_sender(comm.smtp(server.host, server.port, sender="n@example.com"))
        result = await bulk.send_campaign(
            template=NEWS, recipients=people(3), schedule_time="2024-01-01 09:00:00"
        )
    assert (result.sent, result.scheduled) == (3, 0)


@pytest.mark.parametrize("bad", ["next tuesday", "2026-13-01T00:00", True, [2026]])
async def test_a_bad_schedule_time_is_refused_before_anything_is_queued(
    smtpd: Callable[[str], SMTPServer], outbox: str, bad: object
) -> None:
    server = smtpd("plain")
    async with CommManager(outbox=outbox) as comm:
        bulk = comm.create_bulk_sender(comm.smtp(server.host, server.port))
        with pytest.raises(ConfigurationError, match="schedule_time"):
            await bulk.send_campaign(
                template=NEWS, recipients=people(2), campaign_id="x", schedule_time=bad
            )
        assert sum((await (await comm.outbox()).counts("x")).values()) == 0


async def test_a_drip_sequence_sends_each_step_after_its_delay_and_stops_on_unsubscribe(
    smtpd: Callable[[str], SMTPServer], outbox: str
) -> None:
    server = smtpd("plain")
    async with CommManager(outbox=outbox, retry=FAST) as comm:
        smtp = comm.smtp(server.host, server.port, sender="hello@example.com")
        welcome = comm.create_campaign(
            "welcome",
            steps=[(WELCOME, 0), (TIPS, timedelta(seconds=0.6)), (CHECK_IN, 0.3)],
            provider=smtp,
        )
        contacts = [*people(3), {"email": "nosuch@example.org", "name": "Gone"}]
        enrolled = await welcome.enroll(contacts)
        again = await welcome.enroll(people(3))
        first = await comm.run_scheduler(until_idle=True)
        assert sorted(subjects(server)) == sorted(f"Welcome User {i}" for i in range(3))
        # one contact unsubscribes after the first mail; the hard bounce was suppressed
        await (await comm.outbox()).suppress("user2@example.org", reason="unsubscribed", now=0)
        progress = await welcome.progress()

    assert (enrolled.total, enrolled.scheduled) == (4, 4)
    assert (again.scheduled, again.skipped) == (0, 3)
    assert (first.sent, first.failed) == (3, 1)
    assert progress[0][OutboxStatus.SENT] == 3 and progress[0][OutboxStatus.FAILED] == 1
    assert progress[1][OutboxStatus.PENDING] == 3  # queued, due in 0.6 s

    async with CommManager(outbox=outbox, retry=FAST) as comm:  # a worker, elsewhere
        store = await comm.outbox()
        with anyio.fail_after(10):
            while await store.next_due(campaign_id="welcome") is not None:
                await comm.run_scheduler(until_idle=True, poll_interval=0.05)
                await anyio.sleep(0.05)
        final = await comm.create_campaign(
            "welcome", steps=[(WELCOME, 0)], provider=comm.smtp(server.host, server.port)
        ).progress()
    got = subjects(server)
    assert got.count("Tips for User 0") == 1 and got.count("Tips for User 1") == 1
    assert "Tips for User 2" not in got  # unsubscribed: the sequence ended
    assert got.count("How is it going, User 0?") == 1
    assert not any("Gone" in s for s in got)
    assert final[1][OutboxStatus.SUPPRESSED] == 1
    assert final[2][OutboxStatus.SENT] == 2


async def test_resume_sends_what_an_interrupted_run_left_with_the_password_from_env(
    smtpd: Callable[[str], SMTPServer], outbox: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = smtpd("plain-auth")
    monkeypatch.setenv("TEST_SMTP_PASSWORD", server.password)
    server.recorder.data_delay = 0.02
    async with CommManager(outbox=outbox, retry=FAST) as comm:
        smtp = comm.smtp(
            server.host, server.port, username=server.user, password_env="TEST_SMTP_PASSWORD"
        )
        bulk = comm.create_bulk_sender(smtp, max_concurrent=4)
        async with anyio.create_task_group() as tg:  # interrupted (Ctrl-C, a deploy) midway

            async def interrupt_after_ten() -> None:
                while len(server.recorder.messages) < 10:  # noqa: ASYNC110 - another thread
                    await anyio.sleep(0.005)
                tg.cancel_scope.cancel()

            tg.start_soon(interrupt_after_ten)
            await bulk.send_campaign(template=NEWS, recipients=people(60), campaign_id="cut")
            raise AssertionError("the campaign finished before it was interrupted")
        after_cut = await (await comm.outbox()).counts("cut")
        left, recorded = after_cut[OutboxStatus.PENDING], after_cut[OutboxStatus.SENT]
        stored = await (await comm.outbox()).get_campaign("cut")
    assert stored is not None and stored.provider["password_env"] == "TEST_SMTP_PASSWORD"
    assert server.password not in repr(stored)  # the name of the secret, never the secret
    assert stored.options["max_concurrent"] == 4 and stored.options["policy"] == "at-least-once"
    first_run = len(server.recorder.messages)
    assert 0 < first_run < 60 and left > 0

    server.recorder.data_delay = 0.0
    async with CommManager(outbox=outbox, retry=FAST) as comm:  # without the source: what
        resumed = await comm.resume_campaign("cut")  # the outbox holds (claimed, in flight)
        bulk = comm.create_bulk_sender(comm.provider_for(stored.provider))
        rerun = await bulk.send_campaign(template=NEWS, recipients=people(60), campaign_id="cut")
        counts = await (await comm.outbox()).counts("cut")
    assert resumed.sent == left  # at-least-once: the interrupted sends (at most 4) may repeat
    assert recorded + resumed.sent + rerun.sent == 60 and rerun.skipped == recorded + left
    assert counts[OutboxStatus.SENT] == 60
    assert sorted(set(subjects(server))) == sorted(f"News for User {i}" for i in range(60))
    assert len(server.recorder.messages) - 60 <= 4  # duplicates: at most the sends in flight
    assert {m.login for m in server.recorder.messages} == {server.user.encode()}


async def test_a_worker_that_cannot_rebuild_the_provider_says_why_and_loses_nothing(
    smtpd: Callable[[str], SMTPServer], outbox: str
) -> None:
    server = smtpd("plain-auth")
    when = time.time() + 0.2
    async with CommManager(outbox=outbox) as comm:
        smtp = comm.smtp(server.host, server.port, username=server.user, password=server.password)
        bulk = comm.create_bulk_sender(smtp)
        await bulk.send_campaign(
            template=NEWS, recipients=people(5), campaign_id="secret", schedule_time=when
        )
    await anyio.sleep(0.25)
    async with CommManager(outbox=outbox) as comm:
        with pytest.raises(ConfigurationError, match="password_env"):
            await comm.resume_campaign("secret")
        with pytest.raises(ConfigurationError, match="password_env"):
            await comm.run_scheduler(until_idle=True)
        assert (await (await comm.outbox()).counts("secret"))[OutboxStatus.PENDING] == 5
        # the app creates the same provider (password in code): now the scheduler finds it
        comm.smtp(server.host, server.port, username=server.user, password=server.password)
        done = await comm.run_scheduler(until_idle=True)
    assert done.sent == 5 and len(server.recorder.messages) == 5


async def test_an_unknown_campaign_cannot_be_resumed(outbox: str) -> None:
    async with CommManager(outbox=outbox) as comm:
        with pytest.raises(ConfigurationError, match="no stored definition"):
            await comm.resume_campaign("never-sent")


async def test_unsubscribe_links_of_a_scheduled_campaign_use_the_secret_from_env(
    smtpd: Callable[[str], SMTPServer], outbox: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = smtpd("plain")
    monkeypatch.setenv("TEST_UNSUB_SECRET", "a-test-secret-of-32-bytes-or-so!")
    signer = UnsubscribeSigner.from_env("TEST_UNSUB_SECRET", "https://example.com/u")
    async with CommManager(outbox=outbox) as comm:
        bulk = comm.create_bulk_sender(comm.smtp(server.host, server.port, sender="n@example.com"))
        await bulk.send_campaign(
            template=NEWS,
            recipients=people(2),
            campaign_id="signed",
            schedule_time=time.time() + 0.1,
            unsubscribe=signer,
        )
    await anyio.sleep(0.15)
    async with CommManager(outbox=outbox) as comm:
        await comm.run_scheduler(until_idle=True)
    message = email.message_from_bytes(
        server.recorder.messages[0].content, policy=email.policy.default
    )
    url = str(message["List-Unsubscribe"]).strip("<>")
    recipient = message["To"].addresses[0].addr_spec
    assert signer.verify(url.partition("token=")[2]) == ("signed", recipient)
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


async def test_a_daily_cap_queues_the_overflow_for_the_next_day_across_campaigns(
    smtpd: Callable[[str], SMTPServer], outbox: str
) -> None:
    server = smtpd("plain")
    async with CommManager(outbox=outbox, retry=FAST) as comm:
        smtp = comm.smtp(server.host, server.port, sender="news@example.com")
        bulk = comm.create_bulk_sender(smtp, max_concurrent=8, daily_cap=20)
        first = await bulk.send_campaign(template=NEWS, recipients=people(30), campaign_id="a")
        second = await bulk.send_campaign(template=NEWS, recipients=people(5), campaign_id="b")
        idle = await comm.run_scheduler(until_idle=True)
        store = await comm.outbox()
        waiting = [r async for r in store.records("a", status=OutboxStatus.PENDING)]
    tomorrow = time.time() // 86_400 * 86_400 + 86_400
    assert (first.sent, first.scheduled, first.failed) == (20, 10, 0)
    assert (second.sent, second.scheduled) == (0, 5)  # the account's cap, not the campaign's
    assert idle.sent == 0 and len(server.recorder.messages) == 20
    assert len(waiting) == 10 and {r.not_before for r in waiting} == {tomorrow}
    assert all(r.attempts == 0 and "daily cap of 20" in (r.error or "") for r in waiting)


@pytest.mark.parametrize("cap", [0, -5, 2.5, True, "no-such-preset"])
async def test_a_bad_daily_cap_is_refused(
    smtpd: Callable[[str], SMTPServer], outbox: str, cap: object
) -> None:
    server = smtpd("plain")
    async with CommManager(outbox=outbox) as comm:
        with pytest.raises(ConfigurationError, match=r"daily cap|daily_cap"):
            comm.create_bulk_sender(comm.smtp(server.host, server.port), daily_cap=cap)  # type: ignore[arg-type]


async def test_an_address_suppressed_after_it_was_queued_is_not_sent_by_a_rerun(
    smtpd: Callable[[str], SMTPServer], outbox: str
) -> None:
    server = smtpd("plain")
    async with CommManager(outbox=outbox, retry=FAST) as comm:
        bulk = comm.create_bulk_sender(comm.smtp(server.host, server.port, sender="n@example.com"))
        await bulk.send_campaign(
            template=NEWS, recipients=people(3), campaign_id="q", schedule_time=time.time() + 0.1
        )
        await anyio.sleep(0.15)
        await comm.suppressions.add("user1@example.org", reason="unsubscribed")
        rerun = await bulk.send_campaign(template=NEWS, recipients=people(3), campaign_id="q")
        counts = await (await comm.outbox()).counts("q")
    assert (rerun.sent, rerun.suppressed) == (2, 1)
    assert counts[OutboxStatus.SUPPRESSED] == 1 and counts[OutboxStatus.SENT] == 2
    assert "News for User 1" not in subjects(server)


async def test_a_per_minute_rate_is_spread_evenly_not_sent_as_one_burst(
    smtpd: Callable[[str], SMTPServer], outbox: str
) -> None:
    server = smtpd("plain")
    async with CommManager(outbox=outbox) as comm:
        bulk = comm.create_bulk_sender(
            comm.smtp(server.host, server.port, sender="n@example.com"), rate_limit=600
        )
        result = await bulk.send_campaign(template=NEWS, recipients=people(15))
    # 600/min is 10/s with a burst of one second's worth: 15 messages need about 0.5 s more
    # than a burst of the whole minute (600) would (which would send all at once).
    assert result.sent == 15 and result.duration >= 0.4


async def test_a_campaign_from_a_unicode_sender_domain_gets_ascii_message_ids(
    smtpd: Callable[[str], SMTPServer], outbox: str
) -> None:
    server = smtpd("plain")
    async with CommManager(outbox=outbox) as comm:
        smtp = comm.smtp(server.host, server.port, sender="news@bücher.example")
        result = await comm.create_bulk_sender(smtp).send_campaign(
            template=NEWS, recipients=people(2)
        )
    assert (result.sent, result.failed) == (2, 0)
    ids = [
        str(email.message_from_bytes(m.content, policy=email.policy.default)["Message-ID"])
        for m in server.recorder.messages
    ]
    assert all(i.endswith("@xn--bcher-kva.example>") for i in ids)


async def test_a_scheduled_draft_keeps_its_whole_message_until_a_worker_sends_it(
    smtpd: Callable[[str], SMTPServer], outbox: str, tmp_path: Path
) -> None:
    server = smtpd("plain")
    report = tmp_path / "report.pdf"
    report.write_bytes(b"%PDF-1.4 quarterly figures")
    when = datetime.now(UTC) + timedelta(seconds=0.3)
    async with CommManager(outbox=outbox) as comm:
        smtp = comm.smtp(server.host, server.port, sender="Reports <reports@example.com>")
        await comm.suppressions.add("ada@example.org", reason="unsubscribed")  # campaigns only
        result = await (
            smtp.compose()
            .to("Ada <ada@example.org>")
            .cc("ops@example.org")
            .subject("Q4 report")
            .body("See the attachment.")
            .attach(report)
            .header("X-Report", "q4")
            .schedule(when)
            .send()
        )
        assert server.recorder.messages == []
    assert result.scheduled_for is not None and abs(result.scheduled_for - when) < timedelta(
        seconds=0.01
    )
    assert result.message_id and result.accepted == ()

    await anyio.sleep(max(0.0, when.timestamp() - time.time()) + 0.05)
    async with CommManager(outbox=outbox) as comm:  # another process, later
        done = await comm.run_scheduler(until_idle=True)
    assert done.sent == 1
    [delivery] = server.recorder.messages
    assert sorted(delivery.rcpt_tos) == ["ada@example.org", "ops@example.org"]
    message = email.message_from_bytes(delivery.content, policy=email.policy.default)
    assert message["Message-ID"] == result.message_id
    assert message["X-Report"] == "q4" and message["Subject"] == "Q4 report"
    [attachment] = list(message.iter_attachments())
    assert attachment.get_filename() == "report.pdf"
    assert attachment.get_content() == b"%PDF-1.4 quarterly figures"


async def test_scheduling_a_draft_validates_it_first(
    smtpd: Callable[[str], SMTPServer], outbox: str
) -> None:
    server = smtpd("plain")
    async with CommManager(outbox=outbox) as comm:
        draft = comm.smtp(server.host, server.port).compose().subject("no recipient").body("x")
        with pytest.raises(ValidationError):
            await draft.schedule(time.time() + 60).send()
        with pytest.raises(ConfigurationError, match=r"schedule\(\) 'tomorrow-ish' is not"):
            draft.schedule("tomorrow-ish")
        assert await (await comm.outbox()).next_due() is None
