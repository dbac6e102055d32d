"""`EmailDraft`: the fluent, synchronous email builder behind `provider.compose()`."""

from __future__ import annotations

import mimetypes
import os
import re
import stat
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Self

import anyio.to_thread
import msgspec

from xcomm._errors import ValidationError
from xcomm._models import Address, Attachment, EmailMessage, SendResult
from xcomm._validation import (
    check_content_id,
    check_content_type,
    check_custom_header,
    check_no_crlf,
    parse_address,
    safe_attachment_filename,
)
from xcomm.email._mime import new_message_id

if TYPE_CHECKING:
    from xcomm.email._base import EmailProvider

__all__ = ["AddressLike", "EmailDraft", "campaign_message"]

#: What the address setters accept: an `Address`, or text such as `"Ada <ada@example.com>"`.
AddressLike = str | Address
_MSGID = re.compile(r"<[!-;=?-~]+@[!-;=?-Z^-~]+>|<[!-;=?-~]+@\[[!-Z^-~]*\]>")
_NOT_CID = re.compile(r"[^A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+")
_MAX_URL = 900
_NO_SENDER = (
    "the message has no sender: call .from_('you@example.com') or configure the provider's "
    "default sender"
)


def _addresses(items: tuple[AddressLike | Iterable[AddressLike], ...]) -> list[Address]:
    out: list[Address] = []
    for item in items:
        if isinstance(item, str | Address):
            out.append(Address.parse(item) if isinstance(item, str) else _check_address(item))
        elif isinstance(item, Iterable):
            out.extend(_addresses(tuple(item)))
        else:
            raise ValidationError(
                f"an address must be a str, an Address or a list of them, not {type(item).__name__}"
            )
    return out


def _check_address(addr: Address) -> Address:
    """Validate an `Address` built with the (trusting) constructor."""
    parsed = parse_address(addr.email)
    if parsed.name is not None or parsed.email != addr.email:
        raise ValidationError(
            f"Address.email must be a bare address, got {addr.email!r}; use Address.parse()"
        )
    if addr.name is not None:
        check_no_crlf("the display name", addr.name)
    return addr


def _read_files(attachments: tuple[Attachment, ...], limit: int) -> tuple[Attachment, ...]:
    """Fill in the content of path attachments (runs in a worker thread)."""
    out: list[Attachment] = []
    for att in attachments:
        if att.content is None and att.path is not None:
            try:
                with open(att.path, "rb") as f:
                    data = f.read(limit + 1)
            except OSError as exc:
                raise ValidationError(
                    f"cannot read the attachment {att.path!r}: {exc.strerror or exc}; check the "
                    "file still exists and is readable"
                ) from exc
            if len(data) > limit:
                raise ValidationError(
                    f"the attachment {att.path!r} grew past the provider's limit of {limit} bytes"
                )
            att = msgspec.structs.replace(att, content=data, size=len(data))
        out.append(att)
    return tuple(out)


def encoded_size(message: EmailMessage) -> int:
    """Estimate the rendered size of `message` in bytes (base64 attachments, QP text)."""
    size = 2048 + 200 * len(message.attachments)
    for text in (message.text, message.html):
        if text:
            size += len(text) if text.isascii() else len(text.encode("utf-8")) * 3
    for att in message.attachments:
        n = len(att.content) if att.content is not None else att.size
        size += (n + 2) // 3 * 4 * 78 // 76
    return size


class EmailDraft:
    """A message being composed; setters validate and chain, `send()` sends.

    Example:
        ```python
        result = await (
            smtp.compose()
            .from_("Ada <ada@example.com>")
            .to("bob@example.com", "Carol <carol@example.com>")
            .subject("Report")
            .body("Attached.")
            .attach("report.pdf")
            .send()
        )
        ```

    Every setter raises `ValidationError` at once for bad input. `build()` checks the whole
    message (a sender and at least one recipient) and fixes its Message-ID and Date, so
    building twice gives the same message.
    """

    def __init__(self, provider: EmailProvider) -> None:
        self._provider = provider
        self._sender: Address | None = None
        self._to: list[Address] = []
        self._cc: list[Address] = []
        self._bcc: list[Address] = []
        self._reply_to: list[Address] = []
        self._subject = ""
        self._text: str | None = None
        self._html: str | None = None
        self._attachments: list[Attachment] = []
        self._cids: dict[str, str] = {}
        self._headers: list[tuple[str, str]] = []
        self._unsubscribe: list[tuple[str, str]] = []
        self._message_id: str | None = None
        self._thread_id: str | None = None
        self._send_at: float | None = None
        self._on_sent: list[Callable[[SendResult], Awaitable[None]]] = []
        self._date: datetime | None = None

    # -- addresses ---------------------------------------------------------------------------

    def to(self, *addresses: AddressLike | Iterable[AddressLike]) -> Self:
        """Add To recipients: `"a@x.org"`, `"Ada <a@x.org>"`, an `Address`, or lists of them."""
        self._to.extend(_addresses(addresses))
        return self

    def cc(self, *addresses: AddressLike | Iterable[AddressLike]) -> Self:
        """Add Cc recipients (same forms as `to()`)."""
        self._cc.extend(_addresses(addresses))
        return self

    def bcc(self, *addresses: AddressLike | Iterable[AddressLike]) -> Self:
        """Add Bcc recipients: they receive the message but appear in no header."""
        self._bcc.extend(_addresses(addresses))
        return self

    def reply_to(self, *addresses: AddressLike | Iterable[AddressLike]) -> Self:
        """Add Reply-To addresses."""
        self._reply_to.extend(_addresses(addresses))
        return self

    def from_(self, address: AddressLike) -> Self:
        """Set the sender (From); defaults to the provider's `default_sender`."""
        found = _addresses((address,))
        if len(found) != 1:
            raise ValidationError("from_() takes exactly one address")
        self._sender = found[0]
        return self

    # -- content -----------------------------------------------------------------------------

    def subject(self, text: str) -> Self:
        """Set the subject (one line; non-ASCII is fine)."""
        check_no_crlf("the subject", text, allow_tab=True)
        self._subject = text
        return self

    def body(self, text: str) -> Self:
        """Set the plain-text body."""
        self._text = _check_body("body", text)
        return self

    def html_body(self, html: str) -> Self:
        """Set the HTML body; with `body()` too, the message offers both."""
        self._html = _check_body("html_body", html)
        return self

    def attach(
        self,
        file: str | os.PathLike[str] | bytes,
        *,
        filename: str | None = None,
        content_type: str | None = None,
    ) -> Self:
        """Attach a file by path (read when sending) or bytes (which need `filename=`).

        The path must name a readable regular file no larger than the provider's
        `max_message_size`; its file name is the path's last component unless `filename=`.
        `content_type` is guessed from the file name when not given.
        """
        self._attachments.append(self._attachment(file, filename, content_type, None))
        return self

    def inline_image(
        self,
        file: str | os.PathLike[str] | bytes,
        *,
        cid: str | None = None,
        filename: str | None = None,
        content_type: str | None = None,
    ) -> Self:
        """Add an image the HTML body shows with `<img src="cid:...">`.

        `cid` defaults to the file name made safe (`"logo.png"` → `cid:logo.png`); look it
        up in `draft.cids[filename]`.
        """
        if cid is None:
            name = filename or (os.path.basename(os.fsdecode(file)) if _is_path(file) else None)
            base = re.sub(r"\.{2,}", ".", _NOT_CID.sub("_", name or "image"))
            base = base[:100].strip(".") or "image"
            cid, n = base, 1
            while cid in self._cids.values():
                n += 1
                cid = f"{base}-{n}"
        elif cid in self._cids.values():
            raise ValidationError(f"the content id {cid!r} is already used in this draft")
        att = self._attachment(file, filename, content_type, check_content_id(cid))
        if att.filename in self._cids:
            raise ValidationError(
                f"an inline image named {att.filename!r} is already attached; pass filename= "
                "to tell them apart"
            )
        self._cids[att.filename] = cid
        self._attachments.append(att)
        return self

    @property
    def cids(self) -> Mapping[str, str]:
        """The content id of each inline image, by file name (read-only)."""
        return MappingProxyType(self._cids)

    def _attachment(
        self,
        file: str | os.PathLike[str] | bytes,
        filename: str | None,
        content_type: str | None,
        cid: str | None,
    ) -> Attachment:
        limit = self._provider.max_message_size
        if filename is not None:
            safe_attachment_filename(filename)
        if isinstance(file, bytes | bytearray | memoryview):
            if filename is None:
                raise ValidationError(
                    "attaching bytes needs a file name: attach(data, filename='report.pdf')"
                )
            content, path, size = bytes(file), None, len(file)
        elif _is_path(file):
            path = os.path.abspath(os.fsdecode(file))
            size = _check_file(path, limit)
            content = None
            filename = filename or safe_attachment_filename(os.path.basename(path))
        else:
            raise ValidationError(
                f"attach a path (str or os.PathLike) or bytes, not {type(file).__name__}"
            )
        if size > limit:
            raise ValidationError(
                f"the attachment {filename!r} is {size} bytes, more than the provider's "
                f"max_message_size of {limit} bytes; send a link instead"
            )
        if content_type is None:
            content_type = mimetypes.guess_type(filename)[0] or "application/octet-stream"
        return Attachment(
            filename=filename,
            content_type=check_content_type(content_type),
            content=content,
            path=path,
            size=size,
            inline=cid is not None,
            content_id=cid,
        )

    # -- headers -----------------------------------------------------------------------------

    def header(self, name: str, value: str) -> Self:
        """Add a custom header such as `X-Campaign-Id`; repeated names are all written.

        Headers with their own setter (From, To, Subject, ...) or that describe the MIME
        structure (Content-Type, ...) are refused with the setter to use instead.
        """
        check_custom_header(name, value)
        self._headers.append((name, value))
        return self

    add_header = header

    def list_unsubscribe(
        self, url: str | None = None, mailto: str | None = None, one_click: bool = True
    ) -> Self:
        """Set List-Unsubscribe (RFC 2369) and, for an https `url`, one-click (RFC 8058).

        Args:
            url: an http(s) URL that unsubscribes the recipient.
            mailto: an address (or `mailto:` URL) that unsubscribes by email.
            one_click: add `List-Unsubscribe-Post: List-Unsubscribe=One-Click`; needs an
                https `url` (ignored when only `mailto` is given).
        """
        self._unsubscribe = _unsubscribe_headers(url, mailto, one_click)
        return self

    def message_id(self, value: str) -> Self:
        """Use your own Message-ID (`<unique@your.domain>`; brackets are added if missing)."""
        self._message_id = _checked_message_id(value)
        return self

    def thread(self, thread_id: str | None) -> Self:
        """File the message in the sending provider's conversation `thread_id` (Gmail's
        `threadId`; None: no thread). Providers that thread by headers alone ignore it;
        `message.reply()` sets it for you."""
        if thread_id is not None:
            check_no_crlf("the thread id", thread_id)
            if not thread_id.strip() or len(thread_id) > 256 or not thread_id.isascii():
                raise ValidationError(f"invalid thread id {thread_id!r}")
        self._thread_id = thread_id
        return self

    # -- build and send ----------------------------------------------------------------------

    def schedule(self, when: datetime | str | float) -> Self:
        """Send later: `send()` then queues the message in the manager's outbox for `when`.

        `when` is an aware `datetime`, ISO 8601 text or epoch seconds (a naive time is local
        time; a time already past sends now). `comm.run_scheduler()` or `xcomm worker` sends
        it when due, even after a restart; `SendResult.scheduled_for` says when.
        """
        from xcomm.bulk._campaign import schedule_at

        self._send_at = schedule_at(when, what="schedule()")
        return self

    def build(self) -> EmailMessage:
        """Check the draft and return the `EmailMessage` (path attachments not yet read).

        Raises:
            ValidationError: no sender, no recipient, inline images without HTML, or
                attachments over the provider's size limit.
        """
        sender = self._sender or self._provider.default_sender
        if sender is None:
            raise ValidationError(_NO_SENDER)
        if not (self._to or self._cc or self._bcc):
            raise ValidationError("the message has no recipient: call .to(), .cc() or .bcc()")
        if self._cids and self._html is None:
            raise ValidationError(
                "inline images are shown by the HTML body: call .html_body() with "
                '<img src="cid:...">, or use .attach() instead'
            )
        if self._message_id is None:
            self._message_id = new_message_id(sender.domain)
        if self._date is None:
            self._date = _now()
        message = EmailMessage(
            sender=sender,
            to=tuple(self._to),
            cc=tuple(self._cc),
            bcc=tuple(self._bcc),
            reply_to=tuple(self._reply_to),
            subject=self._subject,
            text=self._text,
            html=self._html,
            attachments=tuple(self._attachments),
            headers=(*self._headers, *self._unsubscribe),
            message_id=self._message_id,
            date=self._date,
            thread_id=self._thread_id,
        )
        _check_size(self._provider, message)
        return message

    async def send(
        self,
        *,
        timeout: float | None = None,
    ) -> SendResult:
        """Build the message, read attached files off the event loop, and send it.

        Args:
            timeout: seconds for the whole send, retries included (None: the provider's).

        Raises:
            ValidationError: the draft is invalid or an attached file cannot be read.
        """
        message = self.build()
        if message.attachments and any(a.content is None for a in message.attachments):
            attachments = await anyio.to_thread.run_sync(
                _read_files, message.attachments, self._provider.max_message_size
            )
            message = msgspec.structs.replace(message, attachments=attachments)
            _check_size(self._provider, message)
        if self._send_at is not None:
            from xcomm.bulk._campaign import queue_message

            return await queue_message(self._provider, message, self._send_at)
        result = await self._provider.send(message, timeout=timeout)
        for callback in self._on_sent:
            await callback(result)
        return result

    def on_sent(self, callback: Callable[[SendResult], Awaitable[None]], /) -> Self:
        """Await `callback(result)` after `send()` has sent the message (not when it is only
        scheduled, nor when sending fails). A reply uses it to mark the original answered."""
        self._on_sent.append(callback)
        return self


def campaign_message(
    provider: EmailProvider,
    recipient: str,
    /,
    *,
    subject: str,
    text: str | None = None,
    html: str | None = None,
    unsubscribe_url: str | None = None,
    message_id: str | None = None,
) -> EmailMessage:
    """One personalised campaign message, for bulk senders.

    The message `provider.compose().to(recipient).subject(subject).body(text)...build()`
    returns, with the same checks, built without a draft: less the second parse of an address
    that was checked when the campaign recorded it (`recipient` must be the bare address,
    `Address.email`, that `parse_address()` returned).

    Args:
        provider: the provider that sends the message (its default sender sends it).
        recipient: the To address, already validated.
        subject: the rendered subject.
        text: the plain-text body, if any.
        html: the HTML body, if any.
        unsubscribe_url: a one-click (https) unsubscribe URL for List-Unsubscribe, if any.
        message_id: a Message-ID that stays the same across attempts, if any.

    Raises:
        ValidationError: no default sender, a subject with a line break, a bad Message-ID or
            unsubscribe URL, or a message over the provider's size limit.
    """
    sender = provider.default_sender
    if sender is None:
        raise ValidationError(_NO_SENDER)
    check_no_crlf("the subject", subject, allow_tab=True)
    message = EmailMessage(
        sender=sender,
        to=(Address(email=recipient),),
        subject=subject,
        text=None if text is None else _check_body("body", text),
        html=None if html is None else _check_body("html_body", html),
        headers=tuple(_unsubscribe_headers(unsubscribe_url, None, True)) if unsubscribe_url else (),
        message_id=(
            new_message_id(sender.domain) if message_id is None else _checked_message_id(message_id)
        ),
        date=_now(),
    )
    _check_size(provider, message)
    return message


def _unsubscribe_headers(
    url: str | None, mailto: str | None, one_click: bool
) -> list[tuple[str, str]]:
    """List-Unsubscribe (and List-Unsubscribe-Post) for `EmailDraft.list_unsubscribe()`."""
    if url is None and mailto is None:
        raise ValidationError("list_unsubscribe() needs url=, mailto= or both")
    targets: list[str] = []
    if url is not None:
        check_no_crlf("the unsubscribe URL", url)
        lower = url.lower()
        if not lower.startswith(("https://", "http://")) or not _url_ok(url):
            raise ValidationError(
                f"invalid unsubscribe URL {url!r}: use an absolute http(s) URL without "
                "spaces or '<>' (percent-encode other characters)"
            )
        if one_click and not lower.startswith("https://"):
            raise ValidationError(
                "one-click unsubscribe (RFC 8058) needs an https URL; use https or "
                "pass one_click=False"
            )
        targets.append(f"<{url}>")
    if mailto is not None:
        check_no_crlf("the unsubscribe mailto", mailto)
        target = mailto if mailto.lower().startswith("mailto:") else f"mailto:{mailto}"
        parse_address(target[7:].partition("?")[0])
        if not _url_ok(target):
            raise ValidationError(
                f"invalid unsubscribe mailto {mailto!r}: percent-encode spaces and "
                "non-ASCII characters"
            )
        targets.append(f"<{target}>")
    headers = [("List-Unsubscribe", ", ".join(targets))]
    if one_click and url is not None:
        headers.append(("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"))
    return headers


def _checked_message_id(value: str) -> str:
    """A Message-ID as `EmailDraft.message_id()` takes it: brackets added, then checked."""
    check_no_crlf("the Message-ID", value)
    value = value.strip()
    if not value.startswith("<"):
        value = f"<{value}>"
    if not _MSGID.fullmatch(value) or len(value) > 250:
        raise ValidationError(
            f"invalid Message-ID {value!r}: expected <unique-part@domain> in printable "
            "ASCII without spaces"
        )
    return value


def _check_body(what: str, text: str) -> str:
    if not isinstance(text, str):
        raise ValidationError(f"{what}() takes a str, not {type(text).__name__}")
    return text


def _check_size(provider: EmailProvider, message: EmailMessage) -> None:
    limit = provider.max_message_size
    size = encoded_size(message)
    if size > limit:
        raise ValidationError(
            f"the message would be about {size} bytes once encoded, more than the "
            f"provider's max_message_size of {limit} bytes; attach fewer or smaller files"
        )


_clock: list[tuple[int, datetime]] = [(0, datetime.fromtimestamp(0, UTC))]


def _now() -> datetime:
    """The current UTC time to the second; one datetime per second, shared by its messages."""
    second = int(time.time())
    cached = _clock[0]
    if cached[0] != second:
        cached = _clock[0] = (second, datetime.fromtimestamp(second, UTC))
    return cached[1]


def _is_path(file: object) -> bool:
    return isinstance(file, str | os.PathLike)


def _url_ok(url: str) -> bool:
    return url.isascii() and len(url) <= _MAX_URL and not any(c in url for c in ' <>\t"')


def _check_file(path: str, limit: int) -> int:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ValidationError(f"the attachment {path!r} does not exist") from None
    except OSError as exc:
        raise ValidationError(f"cannot stat the attachment {path!r}: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise ValidationError(f"the attachment {path!r} is not a regular file")
    if not os.access(path, os.R_OK):
        raise ValidationError(f"the attachment {path!r} is not readable; check its permissions")
    return st.st_size
