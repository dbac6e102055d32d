"""Campaigns through the bulk sender, against a real SMTP server, on real outbox stores."""

from __future__ import annotations

import csv
import email
import email.policy
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from xcomm import (
    CommManager,
    ConfigurationError,
    Contact,
    LifecycleError,
    OutboxError,
    RetryPolicy,
    ValidationError,
)
from xcomm._templates import Template, UnsubscribeSigner
from xcomm.bulk import CampaignFailed, Progress
from xcomm.outbox import OutboxStatus

SMTPServer = Any  # conftest.SMTPServer, as the `smtpd` fixture returns it
FAST = RetryPolicy(max_attempts=2, backoff=0.001, max_backoff=0.001, jitter=False)
TEMPLATE = Template(
    subject="Hello {{ name }}",
    text="Dear {{ name }}, your code is {{ code }}.",
    html="<p>Dear {{ name }}, your code is <b>{{ code }}</b>.</p>",
)


@pytest.fixture(params=["memory", "sqlite"])
def outbox(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return "memory://" if request.param == "memory" else str(tmp_path / "outbox.sqlite3")


def people(n: int, domain: str = "example.org") -> list[dict[str, object]]:
    return [{"email": f"user{i}@{domain}", "name": f"User {i}", "code": i} for i in range(n)]


def subjects(server: SMTPServer) -> list[str]:
    return [
        str(email.message_from_bytes(m.content, policy=email.policy.default)["subject"])
        for m in server.recorder.messages
    ]


async def test_personalised_campaign_is_delivered_and_tracked(
    smtpd: Callable[[str], SMTPServer], outbox: str
) -> None:
    server = smtpd("plain")
    async with CommManager(outbox=outbox, retry=FAST) as comm:
        smtp = comm.smtp(server.host, server.port, sender="news@example.com")
        bulk = comm.create_bulk_sender(smtp, max_concurrent=8)
        result = await bulk.send_campaign(
            template=TEMPLATE, recipients=people(120), campaign_id="c1"
        )
        outcomes = [o async for o in bulk.results("c1")]
    assert (result.total, result.sent, result.failed, result.skipped) == (120, 120, 0, 0)
    assert result.ok and result.throughput > 0 and result.p99_latency >= result.p50_latency
    assert sorted(subjects(server)) == sorted(f"Hello User {i}" for i in range(120))
    body = server.recorder.messages[0].content
    assert b"your code is" in body and b"<b>" in body  # text and html parts
    assert len(outcomes) == 120
    assert {o.status for o in outcomes} == {OutboxStatus.SENT}
    assert all(o.message_id for o in outcomes)


async def test_rerunning_a_campaign_sends_nothing_twice(
    smtpd: Callable[[str], SMTPServer], outbox: str
) -> None:
    server = smtpd("plain")
    async with CommManager(outbox=outbox, retry=FAST) as comm:
        bulk = comm.create_bulk_sender(comm.smtp(server.host, server.port, sender="n@example.com"))
        first = await bulk.send_campaign(template=TEMPLATE, recipients=people(50), campaign_id="r")
        # a longer list on the re-run: only the 25 new recipients go out
        again = await bulk.send_campaign(template=TEMPLATE, recipients=people(75), campaign_id="r")
    assert first.sent == 50
    assert (again.total, again.sent, again.skipped) == (75, 25, 50)
    assert len(server.recorder.messages) == 75
    assert len(set(subjects(server))) == 75


async def test_failures_are_isolated_recorded_and_suppressed(
    smtpd: Callable[[str], SMTPServer], outbox: str
) -> None:
    server = smtpd("plain")
    recipients: list[object] = [
        *people(10),
        {"email": "nosuch@example.org", "name": "Gone", "code": 1},  # 550: permanent
        {"email": "tempfail@example.org", "name": "Later", "code": 2},  # 451 on every try
        {"email": "not-an-address", "name": "Bad", "code": 3},
        {"email": "nocode@example.org", "name": "No code"},  # template variable missing
        42,  # not a recipient at all
    ]
    async with CommManager(outbox=outbox, retry=FAST) as comm:
        bulk = comm.create_bulk_sender(comm.smtp(server.host, server.port, sender="n@example.com"))
        result = await bulk.send_campaign(template=TEMPLATE, recipients=recipients, campaign_id="f")
        failed = {o.recipient: o async for o in bulk.results("f", status=OutboxStatus.FAILED)}
        # the permanently rejected address is suppressed in the next campaign
        later = await bulk.send_campaign(
            template=TEMPLATE,
            recipients=[{"email": "nosuch@example.org", "name": "x", "code": 0}, *people(2)],
            campaign_id="g",
        )
    assert (result.total, result.sent, result.failed) == (15, 10, 5)
    assert not result.ok
    with pytest.raises(CampaignFailed) as info:
        result.raise_for_failures()
    assert len(info.value.failures) == 5
    assert set(failed) == {
        "nosuch@example.org",
        "tempfail@example.org",
        "not-an-address",
        "nocode@example.org",
    }
    assert "code" in (failed["nocode@example.org"].error or "")
    assert "550" in (failed["nosuch@example.org"].error or "")
    # an entry that is not a recipient, or not an address, is named by its place in the list
    assert (failed["not-an-address"].error or "").startswith("recipient #13: invalid email")
    [other] = [f for f in result.failures if f.recipient == "?"]
    assert (other.error or "").startswith("recipient #15: a recipient must be an address")
    assert (later.sent, later.suppressed) == (2, 1)
    assert "nosuch@example.org" not in {r for m in server.recorder.messages for r in m.rcpt_tos}


async def test_csv_recipients_are_streamed(
    smtpd: Callable[[str], SMTPServer], tmp_path: Path
) -> None:
    server = smtpd("plain")
    path = tmp_path / "subscribers.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Email", "name", "code"])
        writer.writerows([f"p{i}@example.net", f"P {i}", i] for i in range(1200))
    async with CommManager(outbox="memory://", retry=FAST) as comm:
        bulk = comm.create_bulk_sender(comm.smtp(server.host, server.port, sender="n@example.com"))
        result = await bulk.send_campaign(template=TEMPLATE, recipients=path, campaign_id="csv")
    assert (result.total, result.sent) == (1200, 1200)


async def test_csv_errors_name_the_file_and_line(
    smtpd: Callable[[str], SMTPServer], tmp_path: Path
) -> None:
    server = smtpd("plain")
    no_column = tmp_path / "wrong.csv"
    no_column.write_text("name,code\nA,1\n")
    async with CommManager(outbox="memory://") as comm:
        bulk = comm.create_bulk_sender(comm.smtp(server.host, server.port, sender="n@example.com"))
        with pytest.raises(ValidationError, match=r"wrong\.csv:1: .*'email' column"):
            await bulk.send_campaign(template=TEMPLATE, recipients=no_column)
        with pytest.raises(ConfigurationError, match="does not exist"):
            await bulk.send_campaign(template=TEMPLATE, recipients=tmp_path / "missing.csv")
    assert server.recorder.messages == []


async def test_async_iterables_contacts_and_personalization_data(
    smtpd: Callable[[str], SMTPServer],
) -> None:
    server = smtpd("plain")

    async def stream() -> AsyncIterator[object]:
        yield "ada@example.org"
        yield Contact("Grace Hopper", "grace@example.org", metadata={"code": "G"})

    async with CommManager(outbox="memory://") as comm:
        bulk = comm.create_bulk_sender(comm.smtp(server.host, server.port, sender="n@example.com"))
        result = await bulk.send_campaign(
            template=TEMPLATE,
            recipients=stream(),
            personalization_data={"ada@example.org": {"name": "Ada", "code": "A"}},
        )
    assert result.sent == 2
    assert sorted(subjects(server)) == ["Hello Ada", "Hello Grace Hopper"]


async def test_per_domain_concurrency_is_bounded(smtpd: Callable[[str], SMTPServer]) -> None:
    server = smtpd("plain")
    server.recorder.data_delay = 0.02
    recipients = people(12, "a.example") + people(12, "b.example") + people(12, "c.example")
    async with CommManager(outbox="memory://") as comm:
        smtp = comm.smtp(server.host, server.port, sender="n@example.com", pool_size=16)
        bulk = comm.create_bulk_sender(smtp, max_concurrent=16, per_domain_concurrency=2)
        result = await bulk.send_campaign(template=TEMPLATE, recipients=recipients)
    assert result.sent == 36
    assert server.recorder.max_in_flight
    assert max(server.recorder.max_in_flight.values()) == 2


async def test_unsubscribe_link_and_one_click_header_per_recipient(
    smtpd: Callable[[str], SMTPServer],
) -> None:
    server = smtpd("plain")
    signer = UnsubscribeSigner(b"k" * 32, "https://example.com/unsubscribe")
    template = Template(subject="News", text="Bye: {{ unsubscribe_url }}")
    async with CommManager(outbox="memory://") as comm:
        bulk = comm.create_bulk_sender(comm.smtp(server.host, server.port, sender="n@example.com"))
        await bulk.send_campaign(
            template=template, recipients=["x@example.org"], campaign_id="u", unsubscribe=signer
        )
    message = email.message_from_bytes(
        server.recorder.messages[0].content, policy=email.policy.default
    )
    url = str(message["List-Unsubscribe"]).strip("<>")
    assert url.startswith("https://example.com/unsubscribe?token=")
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert signer.verify(url.split("token=", 1)[1]) == ("u", "x@example.org")


async def test_progress_events_and_a_bug_in_the_callback_propagates(
    smtpd: Callable[[str], SMTPServer],
) -> None:
    server = smtpd("plain")
    events: list[Progress] = []
    async with CommManager(outbox="memory://") as comm:
        bulk = comm.create_bulk_sender(comm.smtp(server.host, server.port, sender="n@example.com"))
        await bulk.send_campaign(template=TEMPLATE, recipients=people(5), on_progress=events.append)

        def broken(event: Progress) -> None:
            raise RuntimeError("bug in user code")

        with pytest.raises(RuntimeError, match="bug in user code"):
            await bulk.send_campaign(template=TEMPLATE, recipients=people(5), on_progress=broken)
    assert events and events[-1].done == 5 and events[-1].sent == 5


async def test_start_campaign_streams_progress_then_gives_the_result(
    smtpd: Callable[[str], SMTPServer], outbox: str
) -> None:
    server = smtpd("plain")
    also: list[Progress] = []
    async with CommManager(outbox=outbox) as comm:
        bulk = comm.create_bulk_sender(comm.smtp(server.host, server.port, sender="n@example.com"))
        run = bulk.start_campaign(
            template=TEMPLATE, recipients=people(40), campaign_id="p1", on_progress=also.append
        )
        with pytest.raises(LifecycleError, match="async with"):
            [e async for e in run]
        async with run:
            with pytest.raises(LifecycleError, match="not finished"):
                run.result  # noqa: B018
            events = [event async for event in run]
        assert run.campaign_id == "p1"
        assert run.result.sent == 40 and run.result.campaign_id == "p1"
    assert events, "the final event is always delivered"
    assert [e.done for e in events] == sorted(e.done for e in events)
    assert events[-1].done == 40 and events[-1] is run.latest
    assert also and also[-1] == events[-1]  # the caller's own callback still runs
    assert len(server.recorder.messages) == 40


async def test_leaving_a_started_campaign_early_cancels_it_and_loses_nobody(
    smtpd: Callable[[str], SMTPServer], tmp_path: Path
) -> None:
    server = smtpd("plain")
    outbox = str(tmp_path / "outbox.sqlite3")

    class Stop(Exception):
        pass

    async with CommManager(outbox=outbox) as comm:
        smtp = comm.smtp(server.host, server.port, sender="n@example.com")
        bulk = comm.create_bulk_sender(smtp, max_concurrent=2, rate_limit=600)  # 10 a second
        run = bulk.start_campaign(template=TEMPLATE, recipients=people(60), campaign_id="p2")
        with pytest.raises(Stop):
            async with run:
                async for event in run:
                    if event.sent:
                        raise Stop
        with pytest.raises(LifecycleError):
            run.result  # noqa: B018
        early = len(server.recorder.messages)
        assert 0 < early < 60
        again = await comm.create_bulk_sender(smtp).send_campaign(
            template=TEMPLATE, recipients=people(60), campaign_id="p2"
        )
    assert again.sent + again.skipped == 60
    delivered = subjects(server)
    assert set(delivered) == {f"Hello User {i}" for i in range(60)}  # nobody lost
    # at-least-once: only a send in flight at the cancel (2 at most) can go out twice
    assert len(delivered) - 60 <= 2


async def test_an_outbox_that_fails_to_record_outcomes_stops_the_run(
    smtpd: Callable[[str], SMTPServer], tmp_path: Path
) -> None:
    """Outcomes are written beside the sends; when such a write fails (here a trigger makes
    SQLite refuse it, as a full disk would), the run stops with the store's error, and the
    records whose outcome could not be written stay claimed, for the policy to settle."""
    server = smtpd("plain")
    path = tmp_path / "outbox.sqlite3"
    async with CommManager(outbox=str(path), retry=FAST) as comm:
        smtp = comm.smtp(server.host, server.port, sender="n@example.com")
        bulk = comm.create_bulk_sender(smtp, max_concurrent=4)
        await bulk.send_campaign(template=TEMPLATE, recipients=people(1), campaign_id="w")
        with sqlite3.connect(path) as db:
            db.execute(
                "CREATE TRIGGER refuse BEFORE UPDATE OF status ON records "
                "WHEN NEW.status = 'sent' "
                "BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END"
            )
        db.close()
        with pytest.raises(OutboxError, match="database or disk is full"):
            await bulk.send_campaign(template=TEMPLATE, recipients=people(300), campaign_id="w")
        counts = await (await comm.outbox()).counts("w")
    assert counts[OutboxStatus.SENT] == 1  # the first run's
    # sent, their outcome not written: claimed until the policy settles them on a rerun
    assert counts[OutboxStatus.SENDING] >= 1
    assert len(server.recorder.messages) > 1


async def test_a_bug_in_a_started_campaign_is_raised_as_itself(
    smtpd: Callable[[str], SMTPServer],
) -> None:
    server = smtpd("plain")

    def broken(event: Progress) -> None:
        raise RuntimeError("bug in user code")

    async with CommManager(outbox="memory://") as comm:
        bulk = comm.create_bulk_sender(comm.smtp(server.host, server.port, sender="n@example.com"))
        with pytest.raises(RuntimeError, match="bug in user code"):
            async with bulk.start_campaign(
                template=TEMPLATE, recipients=people(3), on_progress=broken
            ) as run:
                assert [e async for e in run]  # the event that broke is still seen


async def test_bad_settings_are_configuration_errors(smtpd: Callable[[str], SMTPServer]) -> None:
    server = smtpd("plain")
    async with CommManager(outbox="memory://") as comm:
        smtp = comm.smtp(server.host, server.port, sender="n@example.com")
        with pytest.raises(ConfigurationError, match="email"):
            comm.create_bulk_sender(comm.webhook("https://example.com/h"))  # type: ignore[arg-type]
        with pytest.raises(ConfigurationError, match="max_concurrent"):
            comm.create_bulk_sender(smtp, max_concurrent=0)
        with pytest.raises(ConfigurationError, match="policy"):
            comm.create_bulk_sender(smtp, policy="sometimes")
        bulk = comm.create_bulk_sender(smtp)
        with pytest.raises(ConfigurationError, match="recipients"):
            await bulk.send_campaign(template=TEMPLATE, recipients=42)  # type: ignore[arg-type]
        with pytest.raises(ConfigurationError, match="campaign_id"):
            await bulk.send_campaign(template=TEMPLATE, recipients=[], campaign_id="a\nb")
    with pytest.raises(ConfigurationError, match="outbox"):
        CommManager(outbox=42)  # type: ignore[arg-type]


async def test_without_tracking_the_outbox_is_never_opened(
    smtpd: Callable[[str], SMTPServer], tmp_path: Path
) -> None:
    server = smtpd("plain")
    location = tmp_path / "never.sqlite3"
    async with CommManager(outbox=str(location)) as comm:
        bulk = comm.create_bulk_sender(
            comm.smtp(server.host, server.port, sender="n@example.com"), track_delivery=False
        )
        result = await bulk.send_campaign(template=TEMPLATE, recipients=people(3))
    assert result.sent == 3
    assert not location.exists()
