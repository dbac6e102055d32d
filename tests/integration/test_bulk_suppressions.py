"""`comm.suppressions` and campaigns, against a real SMTP server, on both outbox stores."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from xcomm import CommManager, RetryPolicy, Template
from xcomm.outbox import OutboxStatus

SMTPServer = Any  # conftest.SMTPServer, as the `smtpd` fixture returns it
FAST = RetryPolicy(max_attempts=2, backoff=0.001, max_backoff=0.001, jitter=False)
TEMPLATE = Template(subject="Hello {{ name }}", text="Dear {{ name }}.")
PEOPLE = [{"email": f"user{i}@example.org", "name": f"User {i}"} for i in range(5)]


@pytest.fixture(params=["memory", "sqlite"])
def outbox(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return "memory://" if request.param == "memory" else str(tmp_path / "outbox.sqlite3")


def delivered_to(server: SMTPServer) -> list[str]:
    return sorted(r for m in server.recorder.messages for r in m.rcpt_tos)


async def test_a_suppressed_address_is_skipped_until_removed(
    smtpd: Callable[[str], SMTPServer], outbox: str
) -> None:
    server = smtpd("plain")
    async with CommManager(outbox=outbox, retry=FAST) as comm:
        await comm.suppressions.add("User1@Example.ORG", reason="unsubscribed")
        await comm.suppressions.add_many(["user3@example.org", "nobody@example.org"])
        bulk = comm.create_bulk_sender(comm.smtp(server.host, server.port, sender="n@example.com"))

        first = await bulk.send_campaign(template=TEMPLATE, recipients=PEOPLE, campaign_id="a")
        skipped = [o.recipient async for o in bulk.results("a", status=OutboxStatus.SUPPRESSED)]
        assert (first.sent, first.suppressed) == (3, 2)
        assert sorted(skipped) == ["user1@example.org", "user3@example.org"]
        assert delivered_to(server) == [
            "user0@example.org",
            "user2@example.org",
            "user4@example.org",
        ]

        # Removed: the next campaign sends to it again.
        assert await comm.suppressions.remove("user1@example.org")
        server.recorder.reset()
        second = await bulk.send_campaign(template=TEMPLATE, recipients=PEOPLE, campaign_id="b")
        assert (second.sent, second.suppressed) == (4, 1)
        assert "user1@example.org" in delivered_to(server)
        assert "user3@example.org" not in delivered_to(server)

        # A campaign that already recorded an address as suppressed keeps it so when re-run.
        server.recorder.reset()
        again = await bulk.send_campaign(template=TEMPLATE, recipients=PEOPLE, campaign_id="a")
        assert (again.sent, again.suppressed, again.skipped) == (0, 1, 4)
        assert delivered_to(server) == []


async def test_a_refused_recipient_shows_up_on_the_list(
    smtpd: Callable[[str], SMTPServer], outbox: str
) -> None:
    server = smtpd("plain")
    recipients = [*PEOPLE[:2], {"email": "nosuch@example.org", "name": "Gone"}]  # 550 on RCPT
    async with CommManager(outbox=outbox, retry=FAST) as comm:
        bulk = comm.create_bulk_sender(comm.smtp(server.host, server.port, sender="n@example.com"))
        result = await bulk.send_campaign(template=TEMPLATE, recipients=recipients)
        [entry] = await comm.suppressions.list()
    assert (result.sent, result.failed) == (2, 1)
    assert entry.address == "nosuch@example.org"
    assert entry.reason.startswith("rejected: ") and "550" in entry.reason
