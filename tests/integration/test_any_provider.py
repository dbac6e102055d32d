"""Same message, any provider: one compose() → send → search → act, written once.

`compose_report()` is application code that knows nothing of the provider it is given. It runs
through SMTP (a real aiosmtpd), SES (a real moto server), Gmail and Outlook (respx, requests
checked against the Gmail discovery document and Graph's published shapes), and each
provider's outgoing message is read back into the same provider-neutral `Sent`: one
assertion covers all four. Then the SMTP copy is delivered into a real Dovecot, as an MTA
would, and `act_on_report()` (again written once) finds it with an `EmailQuery` and acts on it
over IMAP; `tests/mailbox_scenario.py` runs its own `triage()` on IMAP, Gmail and Outlook.
"""

from __future__ import annotations

import base64
import email
import email.policy
import json
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage as StdMessage
from pathlib import Path
from typing import Any

import pytest
import respx
from dovecot import Dovecot
from providers.gmail_discovery import validate as gmail_validate
from providers.graph_schema import validate as graph_validate
from test_ses import KEYS, REGION, SENDER, moto, moto_endpoint, raw_sent

from xcomm import CommManager, EmailProvider, EmailQuery, ReceivedMessage, SendResult
from xcomm.auth import Token, TokenManager

__all__ = ["moto", "moto_endpoint"]  # fixtures, used by name

SMTPServer = Any  # conftest.SMTPServer
PDF = b"%PDF-1.4 quarterly numbers\n" * 40
GMAIL_SEND = "https://gmail.googleapis.com/gmail/v1/users/me/messages/send"
GRAPH_SEND = "https://graph.microsoft.com/v1.0/users/reports@contoso.com/sendMail"


async def compose_report(provider: EmailProvider) -> SendResult:
    """What an application writes once, whatever `provider` is."""
    return await (
        provider.compose()
        .to("Bob Stone <bob@example.org>")
        .cc("cleo@example.net")
        .bcc("audit@example.com")
        .subject("Quarterly report: Q3 résumé")
        .body("Numbers attached.\nBye")
        .html_body("<p>Numbers attached.</p><p>Bye</p>")
        .attach(PDF, filename="report.pdf", content_type="application/pdf")
        .header("X-Campaign", "q3-report")
        .send()
    )


@dataclass(frozen=True)
class Sent:
    """A sent message in provider-neutral terms."""

    recipients: frozenset[str]
    subject: str
    text: str
    html: str
    files: tuple[tuple[str, bytes], ...]
    campaign: str
    bcc_visible: bool


def parse(raw: bytes) -> StdMessage:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, StdMessage)
    return message


def sent(raw: bytes, recipients: set[str] | None = None) -> Sent:
    """`raw` read back; `recipients` is the envelope when the provider has one, else the
    address headers (Gmail and Graph's MIME form take Bcc from the header, then drop it)."""
    message = parse(raw)
    if recipients is None:
        recipients = {
            address.addr_spec
            for name in ("To", "Cc", "Bcc")
            for header in message.get_all(name) or ()
            for address in header.addresses
        }
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None and html is not None
    files = tuple(
        (str(part.get_filename()), part.get_payload(decode=True))
        for part in message.iter_attachments()
    )
    return Sent(
        recipients=frozenset(recipients),
        subject=str(message["Subject"]),
        text=text.get_content().replace("\r\n", "\n").strip(),
        html=html.get_content().strip(),
        files=files,
        campaign=str(message["X-Campaign"]),
        bcc_visible="Bcc" in message,
    )


EXPECTED = Sent(
    recipients=frozenset({"bob@example.org", "cleo@example.net", "audit@example.com"}),
    subject="Quarterly report: Q3 résumé",
    text="Numbers attached.\nBye",
    html="<p>Numbers attached.</p><p>Bye</p>",
    files=(("report.pdf", PDF),),
    campaign="q3-report",
    bcc_visible=False,
)


async def static_token(previous: Token | None) -> Token:
    return Token(access_token="ya29.test-token", expires_at=None)


async def via_smtp(comm: CommManager, smtpd: Callable[[str], SMTPServer], **_: Any) -> Sent:
    server = smtpd("plain")
    result = await compose_report(comm.smtp(server.host, server.port, sender=SENDER))
    [delivery] = server.recorder.messages
    assert result.ok and set(result.accepted) == set(EXPECTED.recipients)
    return sent(delivery.content, set(delivery.rcpt_tos))


async def via_ses(comm: CommManager, moto_url: str, **_: Any) -> Sent:
    ses = comm.ses(REGION, endpoint_url=moto_url, sender=SENDER, **KEYS)
    result = await compose_report(ses)
    [stored] = await raw_sent(moto_url)
    assert result.message_id == stored["id"]
    # moto adds the header recipients ("Bob Stone <bob@...>") to Destination's addresses
    envelope = {d.rpartition("<")[2].rstrip(">") for d in stored["destinations"]}
    return sent(stored["raw_data"].encode(), envelope)


async def via_gmail(comm: CommManager, router: respx.MockRouter, **_: Any) -> Sent:
    route = router.post(GMAIL_SEND).respond(
        200, json={"id": "18c2f3e4a5b6c7d8", "threadId": "18c2f3e4a5b6c7d8", "labelIds": ["SENT"]}
    )
    gmail = comm.gmail(token_manager=TokenManager(static_token), sender=SENDER)
    result = await compose_report(gmail)
    request = route.calls.last.request
    gmail_validate(request)
    assert result.message_id == "18c2f3e4a5b6c7d8"
    raw = base64.urlsafe_b64decode(json.loads(request.content)["raw"])
    found = sent(raw)  # Gmail delivers to To, Cc and Bcc, then removes the Bcc header
    return Sent(**{**found.__dict__, "bcc_visible": False})


async def via_outlook(comm: CommManager, router: respx.MockRouter, **_: Any) -> Sent:
    route = router.post(GRAPH_SEND).respond(202)
    outlook = comm.outlook(token_manager=TokenManager(static_token), mailbox="reports@contoso.com")
    result = await compose_report(outlook)
    request = route.calls.last.request
    graph_validate(request)
    assert result.ok and result.message_id  # the Message-ID xcomm gave it
    assert request.headers["Content-Type"] == "text/plain"  # text + HTML: the MIME form
    found = sent(base64.b64decode(request.content, validate=True))
    return Sent(**{**found.__dict__, "bcc_visible": False})  # Graph reads Bcc, then drops it


SENDERS = {"smtp": via_smtp, "gmail": via_gmail, "outlook": via_outlook}


@pytest.mark.parametrize("name", sorted(SENDERS))
async def test_the_same_composed_message_goes_out_the_same_through_every_provider(
    name: str, comm: CommManager, router: respx.MockRouter, smtpd: Callable[[str], SMTPServer]
) -> None:
    assert await SENDERS[name](comm, router=router, smtpd=smtpd) == EXPECTED


async def test_and_through_ses(comm: CommManager, moto: str) -> None:
    assert await via_ses(comm, moto) == EXPECTED


async def act_on_report(
    found: list[ReceivedMessage], *, via: EmailProvider, downloads: Path
) -> str:
    """Application code again, written once: read the report, file it, answer it."""
    [report] = found
    report = await report.mark_as_read()
    report = await report.add_label("Reports")
    [saved] = await report.download_attachments(downloads)
    assert saved.read_bytes() == PDF
    draft = await report.reply(via, "Thanks, got it.")
    await draft.send()
    filed = await report.move_to("Archive")
    assert filed is not None and filed.is_read and "Reports" in filed.labels
    return await report.text()


@pytest.mark.service("dovecot")
async def test_sent_over_smtp_then_found_and_acted_on_over_imap(
    comm: CommManager,
    smtpd: Callable[[str], SMTPServer],
    dovecot: Dovecot,
    tmp_path: Path,
) -> None:
    user = dovecot.new_user()
    server = smtpd("plain")
    smtp = comm.smtp(server.host, server.port, sender=SENDER)
    await compose_report(smtp)
    [delivery] = server.recorder.messages
    dovecot.append(user, delivery.content)  # what the MTA's local delivery does
    server.recorder.reset()

    imap = comm.imap("127.0.0.1", dovecot.port, username=user, password=dovecot.password,
                     use_tls=False)  # fmt: skip
    await imap.create_folder("Archive")
    query = EmailQuery.parse('subject:"Quarterly report" has:attachment from:news@example.com')
    text = await act_on_report(await imap.search(query), via=smtp, downloads=tmp_path)
    assert text.replace("\r\n", "\n").strip() == "Numbers attached.\nBye"

    [reply] = server.recorder.messages
    answer = parse(reply.content)
    assert reply.rcpt_tos == ["news@example.com"]  # the report's From
    assert answer["Subject"] == "Re: Quarterly report: Q3 résumé"
    original = parse(delivery.content)["Message-ID"]
    assert answer["In-Reply-To"] == original
    assert [m.subject for m in await imap.search(query)] == []  # filed away
    [archived] = await imap.search(query, folder="Archive")
    assert {"\\Seen", "\\Answered", "Reports"} <= set(archived.flags)
