"""Replying to and forwarding a received message: drafts with threading headers and quotes.

The text work is pure (`reply_subject`, `quote`, `thread_headers`, `recipients`, ...);
`reply_draft()` and `forward_draft()` fetch what they need (the text body, attachments)
and fill an `EmailDraft` of the sending provider, which the caller may still change and
then sends: `await (await message.reply(smtp, "Thanks")).send()`.

- Reply: To is Reply-To, else From; reply-all adds the original To and Cc, without the
  sending account (the provider's default sender and the mailbox's user name). Subject
  `Re: <subject>` unless it already starts with `Re:`. `In-Reply-To` is the original
  Message-ID; `References` is the original References (or In-Reply-To) plus it (RFC 5322
  §3.6.4). The text body ends with "On <date>, <name> wrote:" and the original text, each
  line quoted with "> ". Once the reply is sent (not when only scheduled), the original is
  marked answered (IMAP `\\Answered`); a failure to mark it is logged, not raised.
- Thread: sent through the mailbox the message came from (Gmail), the answer (a reply or a
  forward) carries its `thread_id`, so Gmail files it in the same conversation.
- Forward: Subject `Fwd: <subject>`, `References` as a reply would have (it stays in the
  thread; no `In-Reply-To`: it answers no one), the original's headers in a "Forwarded
  message" block above its text, and its attachments attached again (fetched now) under
  safe names.

With `html=`, the HTML body gets the same quote or block, as escaped text: the sender's HTML
is never pasted into the new message.
"""

from __future__ import annotations

import html as html_lib
import logging
import re
from collections.abc import Iterable
from html.parser import HTMLParser
from typing import TYPE_CHECKING

from xcomm._errors import CommunicationError, ValidationError
from xcomm._models import Address, SendResult
from xcomm._validation import check_content_type
from xcomm.email._compose import AddressLike, _check_address
from xcomm.email._mime import format_date
from xcomm.email._safe_names import attachment_names

if TYPE_CHECKING:
    from xcomm.email._base import EmailProvider
    from xcomm.email._compose import EmailDraft
    from xcomm.email._message import ReceivedMessage

logger = logging.getLogger("xcomm.email")

__all__ = ["forward_draft", "quote", "reply_draft", "reply_subject", "thread_headers"]

_RE = re.compile(r"^\s*re\s*(\[\d+\])?\s*:", re.IGNORECASE)
_FWD = re.compile(r"^\s*(fwd?|fw)\s*:", re.IGNORECASE)
_MAX_REFERENCES = 20
_HTML_QUOTE = (
    '<blockquote type="cite" style="margin:0 0 0 .8ex;border-left:1px solid #ccc;'
    'padding-left:1ex"><div style="white-space:pre-wrap">{}</div></blockquote>'
)


def reply_subject(subject: str) -> str:
    """`Re: <subject>`, or the subject as it is when it already starts with `Re:`."""
    subject = subject.strip()
    return subject if _RE.match(subject) else f"Re: {subject}".rstrip()


def forward_subject(subject: str) -> str:
    """`Fwd: <subject>`, or the subject as it is when it already starts with `Fwd:`/`Fw:`."""
    subject = subject.strip()
    return subject if _FWD.match(subject) else f"Fwd: {subject}".rstrip()


def thread_headers(message: ReceivedMessage) -> list[tuple[str, str]]:
    """In-Reply-To and References for an answer to `message` (none without a Message-ID)."""
    if not message.message_id:
        return []
    parents = list(message.references or message.in_reply_to[:1])
    chain = [*(p for p in parents if p != message.message_id), message.message_id]
    if len(chain) > _MAX_REFERENCES:  # keep the thread's root and the newest ones
        chain = [chain[0], *chain[-(_MAX_REFERENCES - 1) :]]
    return [("In-Reply-To", message.message_id), ("References", " ".join(chain))]


def same_thread(message: ReceivedMessage, via: EmailProvider) -> str | None:
    """The message's conversation id when the answer goes out through the mailbox it was
    read from (a Gmail thread id means nothing to another account); else None."""
    mailbox: object = message.mailbox
    return message.thread_id if via is mailbox else None


def sender_of(message: ReceivedMessage) -> Address | None:
    return Address(email=message.sender, name=message.sender_name) if message.sender else None


def attribution(message: ReceivedMessage) -> str:
    """`On <date>, <name> wrote:` (without the date when the message has none)."""
    who = sender_of(message)
    name = str(who) if who is not None else "someone"
    when = f"On {format_date(message.date)}, " if message.date is not None else ""
    return f"{when}{name} wrote:" if when else f"{name} wrote:"


def quote(text: str) -> str:
    """Every line of `text` prefixed with "> " (">" before an empty or quoted line)."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").rstrip("\n").split("\n")
    return "\n".join(">" + ("" if not ln or ln.startswith(">") else " ") + ln for ln in lines)


_BLOCKS = frozenset({"br", "p", "div", "tr", "li", "h1", "h2", "h3", "h4", "blockquote", "pre"})


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in {"script", "style", "head"}:
            self.skip += 1
        elif tag in _BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in {"script", "style", "head"}:
            self.skip = max(0, self.skip - 1)
        elif tag in _BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.skip:
            self.parts.append(data)


def html_to_text(html: str) -> str:
    """Rough text of an HTML body (tags dropped, blocks on their own lines), for quoting."""
    parser = _Text()
    parser.feed(html)
    parser.close()
    text = re.sub(r"[ \t]+", " ", "".join(parser.parts))
    return re.sub(r"\n\s*\n+", "\n\n", text).strip()


async def original_text(message: ReceivedMessage, timeout: float | None) -> str:
    """The text body, or the HTML body as text when there is no text part."""
    text = await message.text(timeout=timeout)
    if not text.strip() and message.has_html:
        text = html_to_text(await message.html(timeout=timeout))
    return text


def _valid(addresses: Iterable[Address]) -> list[Address]:
    """The addresses a draft accepts; a garbled one from the original is left out."""
    out: list[Address] = []
    for address in addresses:
        try:
            out.append(_check_address(address))
        except ValidationError:
            try:
                out.append(_check_address(Address(email=address.email)))
            except ValidationError:
                continue
    return out


def recipients(
    message: ReceivedMessage, *, reply_all: bool, me: Iterable[str]
) -> tuple[list[Address], list[Address]]:
    """(To, Cc) of a reply: Reply-To or From; with `reply_all`, plus To and Cc, less `me`."""
    first = list(message.reply_to) or [a for a in (sender_of(message),) if a is not None]
    to = _valid(first)
    if not to:
        raise ValidationError(
            "the message has no valid From or Reply-To address to reply to; compose a new "
            "message with provider.compose() instead"
        )
    if not reply_all:
        return to, []
    skip = {m.lower() for m in me}
    seen: set[str] = set()

    def keep(addresses: Iterable[Address]) -> list[Address]:
        out = []
        for a in addresses:
            key = a.email.lower()
            if key not in skip and key not in seen:
                seen.add(key)
                out.append(a)
        return out

    to = keep([*to, *_valid(message.to)])
    return to, keep(_valid(message.cc))


def _me(via: EmailProvider, message: ReceivedMessage) -> set[str]:
    found = {via.default_sender.email} if via.default_sender is not None else set()
    user = getattr(message.mailbox, "username", None)
    if isinstance(user, str) and "@" in user:
        found.add(user)
    return found


def _with_quote(body: str, block: str) -> str:
    return f"{body.rstrip()}\n\n{block}\n" if body.strip() else f"{block}\n"


async def reply_draft(
    message: ReceivedMessage,
    via: EmailProvider,
    body: str,
    *,
    html: str | None,
    include_quote: bool,
    reply_all: bool,
    timeout: float | None,
) -> EmailDraft:
    """A draft answering `message`, to be sent through `via` (see the module docstring)."""
    to, cc = recipients(message, reply_all=reply_all, me=_me(via, message))
    draft = via.compose().to(to).subject(reply_subject(message.subject))
    if cc:
        draft.cc(cc)
    for name, value in thread_headers(message):
        draft.header(name, value)
    draft.thread(same_thread(message, via))
    cite = attribution(message)
    text = await original_text(message, timeout) if include_quote else ""
    draft.body(_with_quote(body, f"{cite}\n{quote(text)}") if include_quote else body)
    if html is not None:
        extra = f"<div>{html_lib.escape(cite)}</div>" + _HTML_QUOTE.format(html_lib.escape(text))
        draft.html_body(html + extra if include_quote else html)

    async def answered(_: SendResult) -> None:
        mailbox = message.mailbox
        if mailbox is None:
            return
        try:
            await mailbox.mark_answered(message, timeout=timeout)
        except CommunicationError as exc:  # the reply went out: say so, do not fail the send
            logger.warning("reply sent, but marking message %s answered failed: %s",
                           message.id, exc)  # fmt: skip

    return draft.on_sent(answered)


def forward_block(message: ReceivedMessage, text: str) -> str:
    """The "Forwarded message" block: the original's From, Date, Subject, To, Cc and text."""
    lines = ["---------- Forwarded message ---------"]
    who = sender_of(message)
    if who is not None:
        lines.append(f"From: {who}")
    if message.date is not None:
        lines.append(f"Date: {format_date(message.date)}")
    lines.append(f"Subject: {message.subject}")
    for name, addresses in (("To", message.to), ("Cc", message.cc)):
        if addresses:
            lines.append(f"{name}: " + ", ".join(str(a) for a in addresses))
    return "\n".join(lines) + "\n\n" + text.rstrip("\n")


async def forward_draft(
    message: ReceivedMessage,
    via: EmailProvider,
    to: AddressLike | Iterable[AddressLike],
    body: str,
    *,
    html: str | None,
    attachments: bool,
    timeout: float | None,
) -> EmailDraft:
    """A draft forwarding `message` to `to` through `via`, its attachments included."""
    draft = via.compose().to(to).subject(forward_subject(message.subject))
    for name, value in thread_headers(message):
        if name == "References":  # the forward belongs to the thread, but answers no one
            draft.header(name, value)
    draft.thread(same_thread(message, via))
    block = forward_block(message, await original_text(message, timeout))
    draft.body(_with_quote(body, block))
    if html is not None:
        draft.html_body(html + _HTML_QUOTE.format(html_lib.escape(block)))
    if attachments and message.attachments:
        parts = message.attachments
        names = attachment_names(parts)
        for part, name in zip(parts, names, strict=True):
            try:
                content_type = check_content_type(part.content_type)
            except ValidationError:
                content_type = "application/octet-stream"
            data = await message.attachment_content(part, timeout=timeout)
            draft.attach(data, filename=name, content_type=content_type)
    return draft
