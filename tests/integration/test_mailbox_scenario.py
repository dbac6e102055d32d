"""The provider-neutral `triage()` (tests/mailbox_scenario.py) on IMAP, against Dovecot.

The same function runs on Gmail in tests/providers/test_gmail_mailbox.py; both expect the
same outcome from the same message.
"""

from __future__ import annotations

import email.policy
import ssl
from collections.abc import AsyncIterator
from email.message import EmailMessage as StdMessage
from pathlib import Path

import pytest
from dovecot import Dovecot
from mailbox_scenario import PDF, check_outcome, triage

from xcomm import CommManager, ProviderError, RetryPolicy, Timeout

pytestmark = pytest.mark.service("dovecot")

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256))


def quarterly_report() -> bytes:
    """The message tests/providers/gmail_shapes.py describes in Gmail's JSON, as MIME."""
    msg = StdMessage()
    msg["From"] = "José García <jose@example.com>"
    msg["To"] = "me@example.com, Bob <bob@example.org>"
    msg["Subject"] = "Quarterly report"
    msg["Date"] = "Mon, 03 Nov 2025 10:00:00 +0100"
    msg["Message-ID"] = "<m1@mail.example.com>"
    msg["References"] = "<root@example.com>"
    msg["In-Reply-To"] = "<root@example.com>"
    msg.set_content("Numbers attached.\n\n> an old quote\nBye\n")
    msg.add_alternative("<p>Numbers <b>attached</b>.</p>", subtype="html")
    msg.add_attachment(PDF, maintype="application", subtype="pdf", filename="report.pdf")
    msg.add_attachment(PNG, maintype="image", subtype="png", filename="logo.png",
                       disposition="inline", cid="<logo@example.com>")  # fmt: skip
    return msg.as_bytes(policy=email.policy.SMTP)


@pytest.fixture
async def comm() -> AsyncIterator[CommManager]:
    timeout = Timeout(connect=3.0, read=3.0, write=3.0, pool=3.0)
    async with CommManager(timeout=timeout, retry=RetryPolicy(max_attempts=1)) as manager:
        yield manager


async def test_the_same_triage_code_works_on_imap(
    comm: CommManager, dovecot: Dovecot, client_tls: ssl.SSLContext, tmp_path: Path
) -> None:
    user = dovecot.new_user()
    dovecot.append(user, quarterly_report())
    imap = comm.imap("localhost", dovecot.tls_port, username=user, password=dovecot.password,
                     tls_context=client_tls)  # fmt: skip
    await imap.create_folder("Archive")
    smtp = comm.smtp("localhost", 2525, sender="me@example.com")  # drafts only: never sends
    (message,) = await imap.search()
    outcome = await triage(message, via=smtp, downloads=tmp_path)
    check_outcome(outcome, tmp_path)
    assert await imap.search() == [] and await imap.search(folder="Archive") == []


async def test_trash_moves_to_the_trash_folder_over_imap(
    comm: CommManager, dovecot: Dovecot, client_tls: ssl.SSLContext
) -> None:
    user = dovecot.new_user()
    dovecot.append(user, quarterly_report())
    imap = comm.imap("localhost", dovecot.tls_port, username=user, password=dovecot.password,
                     tls_context=client_tls)  # fmt: skip
    (message,) = await imap.search()
    with pytest.raises(ProviderError, match="no trash folder"):
        await message.trash()
    await imap.create_folder("Trash")
    trashed = await message.trash()
    assert trashed is not None and trashed.folder == "Trash"
    assert await imap.search() == []
    assert [m.subject for m in await imap.search(folder="Trash")] == ["Quarterly report"]
