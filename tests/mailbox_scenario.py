"""One piece of application code run against every mailbox: the proof that a received
message's actions do not depend on the provider.

`triage()` is what a user writes once: read, label, save the attachments, answer, file and
finally delete a message. `tests/providers/test_gmail_mailbox.py` runs it on Gmail (respx)
and `tests/integration/test_mailbox_scenario.py` on IMAP (Dovecot); both check the same
`Outcome`, and each checks on its own side what the provider was asked to do.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from xcomm import EmailProvider, ReceivedMessage


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
