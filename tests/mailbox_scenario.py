"""One piece of application code run against every mailbox: the proof that a received
message's actions do not depend on the provider.

`triage()` is what a user writes once: read, label, save the attachments, answer, file and
finally delete a message. `tests/providers/test_gmail_mailbox.py` runs it on Gmail (respx),
`tests/providers/test_graph_mailbox.py` on Outlook (respx) and
`tests/integration/test_mailbox_scenario.py` on IMAP (Dovecot), each on the same
quarterly report (`PDF` attached); all expect the same `Outcome` (`check_outcome()`), and
each checks on its own side what the provider was asked to do.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from xcomm import EmailProvider, ReceivedMessage

PDF = b"%PDF-1.4 quarterly numbers\n" * 20


@dataclass(frozen=True)
class Outcome:
    """What `triage()` saw, in provider-neutral terms."""

    read: bool
    labels: frozenset[str]
    text: str
    saved: tuple[str, ...]
    reply_subject: str
    reply_headers: dict[str, str]
    filed_in: str | None


async def triage(message: ReceivedMessage, *, via: EmailProvider, downloads: Path) -> Outcome:
    """Mark read, label "Boss", read the text, save the attachments, draft a reply, move to
    "Archive", then delete the archived copy."""
    m = await message.mark_as_read()
    m = await m.add_label("Boss")
    text = await m.text()
    saved = await m.download_attachments(downloads)
    draft = await m.reply(via, "Thanks, on it.")
    reply = draft.build()
    moved = await m.move_to("Archive")
    if moved is not None:
        await moved.delete()
    return Outcome(
        read=m.is_read,
        labels=frozenset(m.labels),
        text=text,
        saved=tuple(p.name for p in saved),
        reply_subject=reply.subject,
        reply_headers={k: v for k, v in reply.headers if k in ("In-Reply-To", "References")},
        filed_in=None if moved is None else moved.folder,
    )


def check_outcome(outcome: Outcome, downloads: Path) -> None:
    """What triaging the quarterly report gives on any mailbox."""
    assert outcome.read and "Boss" in outcome.labels
    assert outcome.text.splitlines() == ["Numbers attached.", "", "> an old quote", "Bye"]
    assert outcome.saved == ("report.pdf",)
    assert (downloads / "report.pdf").read_bytes() == PDF
    assert outcome.reply_subject == "Re: Quarterly report"
    assert outcome.reply_headers == {
        "In-Reply-To": "<m1@mail.example.com>",
        "References": "<root@example.com> <m1@mail.example.com>",
    }
    assert outcome.filed_in == "Archive"
