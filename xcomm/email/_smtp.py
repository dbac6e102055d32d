"""The pooled SMTP provider, and the one place the wire client's exceptions become xcomm errors.

Each send runs MAIL, one RCPT per recipient, then DATA (`_transaction.py`): in one write when
the server offers PIPELINING (after the message a send waiting for the pool goes on at once),
else step by step; either way the phase of a failure is known.
`translate()` maps an exception the wire client (`_wire.py`) or its socket raised in a phase,
and `reply_error()` maps an SMTP reply:

| What happened                                  | xcomm error                        | retried |
|------------------------------------------------|------------------------------------|---------|
| connection refused / unreachable               | ConnectError                       | yes     |
| connect, TLS handshake or setup timed out      | ConnectTimeout                     | yes     |
| certificate verification failed                | ConfigurationError                 | no      |
| STARTTLS required but not offered, no AUTH     | ConfigurationError                 | no      |
| 421 (any phase; the connection is discarded)   | ServiceUnavailable                 | yes     |
| 454, or a 4xx whose text says throttling       | RateLimitError (`retry_after`)     | yes     |
| other 4xx (MAIL, DATA, after the message)      | ServiceUnavailable                 | yes     |
| 530/534/535, or any failure of AUTH            | AuthenticationError                | no      |
| 4xx/5xx on RCPT (not 421/530)                  | listed in `SendResult.rejected`    | -       |
| ... every recipient refused                    | RecipientRejected                  | all 4xx |
| 5xx greeting / EHLO / STARTTLS                 | ServiceUnavailable(transient=False) | no     |
| other 5xx (MAIL, DATA, after the message)      | MessageError                       | no      |
| dropped or silent before the message was sent  | RequestNotSent (ConnectError in setup) | yes |
| dropped after the message was sent             | ConnectionLost (DeliveryUnknown)   | never   |
| no reply after the message was sent            | ResponseTimeout (DeliveryUnknown)  | never   |

"The message was sent" means its body was written after the server's 354; a server that
drops the link or stays silent before that cannot have it (pipelined or not, only the
envelope has left by then). `send(timeout=...)` bounds the whole call, retries included;
when it expires the error says honestly how far it got: `PoolTimeout` (waiting for a
connection), `ConnectTimeout` (opening one), `RequestNotSent` (MAIL/RCPT/DATA or a retry
pause) or `ResponseTimeout` (the body was written).
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import ssl
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import anyio
import msgspec

from xcomm._config import RetryPolicy, Timeout
from xcomm._errors import (
    AuthenticationError,
    CommunicationError,
    ConfigurationError,
    ConnectError,
    ConnectionLost,
    ConnectTimeout,
    DeliveryUnknown,
    MessageError,
    PoolTimeout,
    ProviderError,
    RateLimitError,
    RecipientRejected,
    RejectedRecipient,
    RequestNotSent,
    ResponseTimeout,
    ServiceUnavailable,
    TransportError,
    ValidationError,
)
from xcomm._models import Address, EmailMessage, SendResult
from xcomm._provider import ProviderContext
from xcomm._retry import Limiter, is_retryable
from xcomm._validation import ascii_email, needs_smtputf8
from xcomm.email._base import EmailProvider
from xcomm.email._mime import render_message
from xcomm.email._pool import ConnectionPool, Lease, PoolStatistics, SMTPSession
from xcomm.email._transaction import SMTPConnector, dot_stuff, envelope, run_transaction
from xcomm.email._wire import SMTPProtocolError, SMTPReplyError, UnsafeArgument

__all__ = ["SMTPProvider", "plaintext_auth_allowed", "reply_error", "translate"]

_SETUP = frozenset({"connect", "ehlo", "starttls", "auth"})
_COMMAND = {"connect": "greeting", "body": "end of data", "ehlo": "EHLO"}
_ENHANCED = re.compile(r"^\s*([245]\.\d{1,3}\.\d{1,3})\b")
_THROTTLE = re.compile(
    r"\brate\b|throttl|too many (?:messages|mails|emails|connections|requests|sessions)"
    r"|too (?:fast|quickly)|limit exceeded|exceeded .*limit|slow down",
    re.IGNORECASE,
)
_RETRY_IN = re.compile(r"(\d+)\s*(seconds?|secs?|s|minutes?|mins?)\b", re.IGNORECASE)
_MESSAGE_ID = re.compile(rb"(?im)^message-id:[ \t]*(.*(?:\r?\n[ \t].*)*)")
_TLS_MODES = {None: "opportunistic", True: "required", False: "off"}
_EXPIRED: dict[str, tuple[type[TransportError], str]] = {
    "pool": (PoolTimeout, "waiting for a pooled connection"),
    "connect": (ConnectTimeout, "while connecting"),
    "body": (ResponseTimeout, "waiting for the reply to the message; it may have been delivered"),
}
_Outcome = tuple[int, list[str], list[RejectedRecipient], bytes]


def reply_error(code: int, text: str, *, phase: str, recipient: str | None = None) -> ProviderError:
    """The xcomm error for the SMTP reply `code text` received in `phase` (see the table).

    RCPT refusals come back as a one-recipient `RecipientRejected`; `send()` collects them.
    """
    extra: dict[str, Any] = {}
    cls: type[ProviderError]
    soft = 400 <= code < 500
    if code == 421:
        cls, what = ServiceUnavailable, "the server closed the connection"
    elif code in (530, 534, 535) or (phase == "auth" and not soft):
        cls, what = AuthenticationError, "the server refused to authenticate"
    elif phase == "rcpt":
        refused = RejectedRecipient(address=recipient or "", code=code, reason=text)
        # The reason often names the address: it stays in `.rejected`, out of str() and logs.
        return RecipientRejected(
            "the recipient was refused", provider="smtp", rejected=[refused], status=code
        )
    elif soft and phase != "starttls" and (code == 454 or _THROTTLE.search(text)):
        cls, what, extra = RateLimitError, "throttled", {"retry_after": _retry_after(text)}
    elif soft:
        cls, what = ServiceUnavailable, "temporary failure"
    elif phase in ("connect", "ehlo", "starttls"):
        cls, what, extra = ServiceUnavailable, "the server refused service", {"transient": False}
    else:
        cls, what = MessageError, "the server refused the message"
    enhanced = _ENHANCED.match(text)
    return cls(
        f"{what} at {_COMMAND.get(phase, phase.upper())}",
        provider="smtp",
        status=code,
        error_code=enhanced.group(1) if enhanced else str(code),
        detail=text,
        **extra,
    )


def _retry_after(text: str) -> float | None:
    match = _RETRY_IN.search(text)
    if match is None:
        return None
    return float(match.group(1)) * (60.0 if match.group(2).lower().startswith("m") else 1.0)


def translate(exc: BaseException, *, phase: str, server: str = "the server") -> CommunicationError:
    """The xcomm error for an exception the wire client (or the socket under it) raised in
    `phase`: "connect", "ehlo", "starttls", "auth", "mail", "rcpt", "data" or "body" (or
    "mail/rcpt/data", "rcpt/data" for a pipelined envelope that got no reply)."""
    if isinstance(exc, CommunicationError):
        return exc
    cert = exc if isinstance(exc, ssl.SSLCertVerificationError) else exc.__cause__
    if isinstance(cert, ssl.SSLCertVerificationError):
        return ConfigurationError(
            f"TLS certificate verification failed for {server}: {cert.verify_message}; trust "
            "its CA with tls_context=ssl.create_default_context(cafile=...) or fix the host name"
        )
    if isinstance(exc, SMTPReplyError):
        return reply_error(exc.code, exc.text, phase=phase)
    detail = str(exc) or type(exc).__name__
    if isinstance(exc, OSError | SMTPProtocolError):  # timeouts, drops, garbage
        timeout = isinstance(exc, TimeoutError)
        if phase == "body":
            cls: type[TransportError] = ResponseTimeout if timeout else ConnectionLost
            what = "no reply" if timeout else "the connection dropped"
            return cls(f"{what} after the message was sent", provider="smtp", detail=detail)
        if phase in _SETUP:
            cls = ConnectTimeout if timeout else ConnectError
            what = "timed out connecting" if timeout else "could not connect"
            return cls(f"{what} to {server} ({phase})", provider="smtp", detail=detail)
        what = "no reply in time to" if timeout else "the connection dropped at"
        return RequestNotSent(
            f"{what} {phase.upper()}, before the message was sent", provider="smtp", detail=detail
        )
    if isinstance(exc, ValueError):  # the wire client refuses CR/LF/NUL before sending
        return ValidationError(f"cannot send over SMTP: {exc}")
    return ConfigurationError(f"{server} cannot be used as configured: {detail}")


def plaintext_auth_allowed(host: str, *, allow_plaintext_auth: bool) -> bool:
    """Whether credentials may cross an unencrypted connection: only when the caller allows
    it, or to a loopback host (127.0.0.0/8, ::1, localhost)."""
    if allow_plaintext_auth:
        return True
    name = host.strip().rstrip(".").lower() if isinstance(host, str) else ""
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name.strip("[]")).is_loopback
    except ValueError:
        return False


class SMTPProvider(EmailProvider):
    """Send email over SMTP through a small pool of authenticated, encrypted connections.

    Example:
        ```python
        async with CommManager() as comm:
            smtp = comm.smtp("smtp.example.com", username="me@example.com", password="...")
            result = await smtp.compose().to("you@example.com").subject("Hi").body("Hello").send()
            print(result.message_id, result.rejected)
        ```

    TLS: `use_tls=True` is implicit TLS (port 465); otherwise `start_tls=None` upgrades when
    the server offers STARTTLS, `True` requires it (a server without it raises
    `ConfigurationError` before anything is sent) and `False` never upgrades. Certificates
    are verified unless `validate_certs=False`. Credentials never cross an unencrypted
    connection unless `allow_plaintext_auth=True` or the host is a loopback address.

    A message some recipients refuse still goes to the others (`SendResult.rejected`); when
    all are refused, `RecipientRejected` is raised. The module docstring maps every failure.
    """

    name = "smtp"

    def __init__(
        self,
        context: ProviderContext,
        *,
        limiter: Limiter | None,
        retry: RetryPolicy | None = None,
        host: str,
        port: int = 587,
        username: str | None = None,
        password: str | None = None,
        use_tls: bool = False,
        start_tls: bool | None = None,
        tls_context: ssl.SSLContext | None = None,
        validate_certs: bool = True,
        oauth_token: str | Callable[[], Awaitable[str]] | None = None,
        sender: str | Address | None = None,
        pool_size: int = 4,
        max_messages_per_connection: int = 100,
        idle_timeout: float = 30.0,
        timeout: Timeout | float | None = None,
        local_hostname: str | None = None,
        allow_plaintext_auth: bool = False,
        max_message_size: int | None = None,
        password_env: str | None = None,
    ) -> None:
        super().__init__(context, limiter=limiter, retry=retry)
        self._timeout = context.timeout if timeout is None else Timeout.coerce(timeout)
        server = f"{host}:{port}"
        self._translate = lambda exc, phase: translate(exc, phase=phase, server=server)
        connector = SMTPConnector(  # validates the connection settings
            host=host,
            port=port,
            translate=self._translate,
            timeout=self._timeout,
            use_tls=use_tls,
            start_tls=start_tls,
            tls_context=tls_context,
            validate_certs=validate_certs,
            local_hostname=local_hostname,
            username=username,
            password=password,
            oauth_token=oauth_token,
            plaintext_auth_ok=plaintext_auth_allowed(
                host, allow_plaintext_auth=allow_plaintext_auth
            ),
        )
        self._pool_size = pool_size
        self._pool = ConnectionPool(  # validates the pool settings
            connector.open,
            provider=self.name,
            clock=context.clock,
            max_size=pool_size,
            max_messages_per_connection=max_messages_per_connection,
            idle_timeout=idle_timeout,
            pool_timeout=self._timeout.pool,
        )
        self.host, self.port, self.username = connector.host, port, username
        self._tls = "implicit" if use_tls else _TLS_MODES[start_tls]
        if max_message_size is not None and not (
            isinstance(max_message_size, int) and max_message_size > 0
        ):
            raise ConfigurationError("SMTP provider: max_message_size must be a positive int")
        self._size_from_server = max_message_size is None
        self.max_message_size = max_message_size or self.max_message_size
        try:
            if sender is not None or username is not None:
                self.default_sender = Address.parse(sender or username or "")
        except ValidationError as exc:
            if sender is not None:
                raise ConfigurationError(
                    f"SMTP provider: sender= is not an address: {exc}"
                ) from exc

        self._spec: dict[str, Any] = {
            "kind": "smtp", "host": host, "port": port, "username": username,
            "password_env": password_env, "use_tls": use_tls, "start_tls": start_tls,
            "validate_certs": validate_certs,
            "sender": str(self.default_sender) if sender is not None else None,
            "pool_size": pool_size, "max_messages_per_connection": max_messages_per_connection,
            "idle_timeout": idle_timeout, "local_hostname": local_hostname,
            "allow_plaintext_auth": allow_plaintext_auth, "max_message_size": max_message_size,
        }  # fmt: skip
        if tls_context is not None or oauth_token is not None:
            # Neither can be written down: a worker finds this provider only if its process
            # creates the same one (`comm.smtp(...)` with these settings).
            self._spec["custom"] = True

    def __repr__(self) -> str:
        user = f", username={self.username!r}" if self.username else ""
        return f"SMTPProvider(host={self.host!r}, port={self.port}{user}, tls={self._tls!r})"

    def statistics(self) -> PoolStatistics:
        """A snapshot of the connection pool: size, idle, in use, counters."""
        return self._pool.statistics()

    async def aclose(self) -> None:
        """Say QUIT on idle connections and close the pool. Idempotent."""
        await super().aclose()
        await self._pool.aclose()

    async def send(
        self,
        message: EmailMessage,
        /,
        *,
        timeout: float | None = None,
    ) -> SendResult:
        """Send `message` to every recipient the server accepts.

        `timeout` bounds the whole call (pool wait, connecting, retries); on expiry the error
        says how far the send got (see the module docstring).

        Raises:
            ValidationError: no sender or no recipients, or a message that cannot be rendered.
            RecipientRejected: every recipient was refused.
            CommunicationError: any other failure, mapped as in the module docstring.
        """
        _check_timeout(timeout)
        message, recipients, utf8, rendered = self._prepare(message)
        stage = ["pool"]  # how far the current attempt got, for when `timeout` expires
        pool = self._pool

        def connecting() -> None:
            stage[0] = "connect"

        async def attempt(_: int) -> _Outcome:
            stage[0] = "pool"
            handed = False

            def hand_over() -> bool:  # the message is written: let a waiting send go on
                nonlocal handed
                handed = pool.hand_over(lease)
                return handed

            try:
                lease = await pool.checkout(on_open=connecting)
                try:
                    stage[0] = "envelope"
                    lease.reusable = True  # until MAIL is sent, a failure leaves it clean
                    form = self._wire_form(lease, message, recipients, utf8, rendered)
                    outcome = await self._transaction(lease, form, stage, hand_over=hand_over)
                finally:
                    if not handed:
                        await pool.checkin(lease)
                if handed:
                    pool.count_sent()
                return outcome
            except CommunicationError as exc:
                if not isinstance(exc, DeliveryUnknown):
                    stage[0] = "retry"
                raise

        if timeout is None:
            (status, accepted, rejected, data), attempts, duration = await self._call(
                "send", attempt
            )
        else:
            deadline = asyncio.timeout(timeout)
            try:
                async with deadline:
                    (status, accepted, rejected, data), attempts, duration = await self._call(
                        "send", attempt
                    )
            except TimeoutError as exc:
                if not deadline.expired():
                    raise
                raise _expired(stage[0], timeout) from exc
        return SendResult(
            message_id=message.message_id or _message_id(data),  # the renderer writes it as is
            provider=self.name,
            accepted=tuple(accepted),
            rejected=tuple(rejected),
            attempts=attempts,
            duration=duration,
            status=status,
        )

    async def send_many(
        self,
        messages: Sequence[EmailMessage],
        /,
        *,
        timeout: float | None = None,
    ) -> list[SendResult | CommunicationError]:
        """Send `messages` one after the other on one pooled connection: with PIPELINING each
        envelope rides in the same packet as the message before it, one round trip per
        message, without a `send()` call's overhead for each. What bulk campaigns use.

        Returns one entry per message, in order: its `SendResult`, or the `CommunicationError`
        that settled it; one message's failure never stops the others. A connection that fails
        is replaced and the messages it had not sent go on the next one, under the provider's
        retry policy, as do transient refusals (4xx) of single messages. A message whose body
        was written when the link failed is `DeliveryUnknown`: never sent twice. The
        provider's limiter is passed once per message. `timeout` bounds the whole call.

        Raises:
            ValidationError: `timeout` is not a positive number.
        """
        _check_timeout(timeout)
        batch = _Batch(len(messages))
        for index, message in enumerate(messages):
            try:
                batch.items[index] = self._prepare(message)
            except CommunicationError as exc:
                batch.results[index] = exc
                continue
            batch.todo.append(index)
        started = time.perf_counter()

        async def attempt(number: int) -> None:
            batch.todo.extend(sorted(batch.retried))  # transient refusals: once more
            batch.retried.clear()
            while batch.todo:  # a new connection when one is due for replacement
                batch.stage[0] = "pool"
                lease = await self._pool.checkout()
                try:
                    await self._pipeline(lease, batch, number, started)
                finally:
                    await self._pool.checkin(lease)
            if batch.retried:
                raise next(iter(batch.retried.values()))

        if batch.todo:
            try:
                async with asyncio.timeout(timeout) as deadline:
                    await self._call("send", attempt, cost=0.0)
            except TimeoutError:
                if not deadline.expired():
                    raise
                batch.settle(_expired(batch.stage[0], timeout), current=True)
                batch.settle(_expired("retry", timeout))
            except CommunicationError as exc:
                batch.settle(exc)
        return [result for result in batch.results if result is not None]

    def batch_size(self, in_flight: int) -> int:
        """Messages per `send_many()` for a bulk sender with `in_flight` messages in flight:
        enough that every pooled connection carries a share (at most 32 at a time)."""
        return max(1, min(32, -(-in_flight // self._pool_size)))

    async def _pipeline(
        self, lease: Lease[SMTPSession], batch: _Batch, number: int, started: float
    ) -> None:
        """Send what `batch.todo` holds on `lease`, each envelope riding on the message before,
        until the connection is due for replacement; raise (for a retry on a new connection)
        when the connection failed with messages left."""
        limiter, todo, pool = self._limiter, batch.todo, self._pool
        ride = -1  # the message whose envelope went out with the previous message
        ridden: _Form | None = None  # and its wire form

        def follow() -> bytes | None:
            nonlocal ride, ridden
            if not todo or pool.worn(lease, after=1):
                return None
            if limiter is not None:
                try:
                    limiter.acquire_nowait()
                except anyio.WouldBlock:
                    return None  # its turn comes with a wait, in the loop below
            index = todo[0]
            try:
                form = self._wire_form(lease, *batch.item(index))
                head = envelope(form.sender, form.options, form.addresses)
            except (CommunicationError, UnsafeArgument):
                return None  # its own transaction reports why
            ride, ridden = index, form
            return head

        while todo and (ride >= 0 or not pool.worn(lease)):
            index = batch.current = todo.popleft()
            written, ride = ride == index, -1
            if not written and limiter is not None:
                await limiter.acquire()
            try:
                form = ridden if written else None
                if form is None:
                    lease.reusable = True  # until MAIL is sent, a failure leaves it clean
                    form = self._wire_form(lease, *batch.item(index))
                code, accepted, rejected, data = await self._transaction(
                    lease, form, batch.stage, written=written, follow=follow
                )
            except CommunicationError as exc:
                if isinstance(exc, DeliveryUnknown) or not is_retryable(exc, self._retry):
                    batch.results[index] = exc
                else:
                    batch.retried[index] = exc
                if lease.reusable:  # in step (after RSET, or a refusal after a ride)
                    continue
                if todo:  # the rest go on a new connection (run_attempts decides when)
                    raise batch.retried.get(index) or RequestNotSent(
                        "the connection closed before these messages were sent", provider="smtp"
                    ) from exc
                return
            finally:
                batch.current = -1
            message = batch.item(index)[0]
            batch.results[index] = SendResult(
                message_id=message.message_id or _message_id(data),
                provider=self.name,
                accepted=tuple(accepted),
                rejected=tuple(rejected),
                attempts=number,
                duration=time.perf_counter() - started,
                status=code,
            )

    def _prepare(self, message: EmailMessage) -> _Item:
        """The message with its sender, its recipients, whether it needs SMTPUTF8, and its
        rendering when that does not depend on the server (the checks every send does)."""
        sender = message.sender or self.default_sender
        if sender is None:
            raise ValidationError("the message has no sender: set one on the draft or sender=")
        recipients = message.recipients
        if not recipients:
            raise ValidationError("the message has no recipients; add to, cc or bcc addresses")
        if message.sender is None:
            message = msgspec.structs.replace(message, sender=sender)
        utf8 = needs_smtputf8(sender) or any(map(needs_smtputf8, recipients))
        # Rendered once: before connecting, unless SMTPUTF8 support must be known first.
        rendered = {} if utf8 else {False: render_message(message)}
        return message, recipients, utf8, rendered

    def _wire_form(
        self,
        lease: Lease[SMTPSession],
        message: EmailMessage,
        recipients: tuple[Address, ...],
        utf8: bool,
        rendered: dict[bool, bytes],
    ) -> _Form:
        """Check and render the message for this connection's server: what MAIL, RCPT and
        DATA send."""
        conn = lease.conn.wire
        if self._size_from_server and conn.size_limit:
            self.max_message_size = conn.size_limit
        extensions = conn.extensions
        if utf8 and "smtputf8" not in extensions:
            raise MessageError(
                "an address has a non-ASCII local part and the server does not offer SMTPUTF8",
                provider=self.name,
            )
        data = rendered[utf8] = rendered.get(utf8) or render_message(message, utf8=utf8)
        payload = dot_stuff(data, canonical=True)
        if len(payload) > self.max_message_size:
            raise MessageError(
                f"the message is {len(payload)} bytes; the limit is {self.max_message_size}",
                provider=self.name,
            )
        options = [b"SIZE=%d" % len(payload)] if "size" in extensions else []
        if utf8:
            options.append(b"SMTPUTF8")
        if "8bitmime" in extensions and not payload.isascii():
            options.append(b"BODY=8BITMIME")
        encoding = "utf-8" if utf8 else "ascii"
        return _Form(
            sender=_envelope(message.sender, utf8).encode(encoding),
            options=options,
            recipients=recipients,
            addresses=[_envelope(r, utf8).encode(encoding) for r in recipients],
            payload=payload,
            data=data,
        )

    async def _transaction(
        self,
        lease: Lease[SMTPSession],
        form: _Form,
        stage: list[str],
        *,
        hand_over: Callable[[], bool] | None = None,
        written: bool = False,
        follow: Callable[[], bytes | None] | None = None,
    ) -> _Outcome:
        """Run the mail transaction of `form` on `lease`."""
        code, accepted, rejected = await run_transaction(
            lease,
            sender=form.sender,
            options=form.options,
            recipients=form.recipients,
            addresses=form.addresses,
            payload=form.payload,
            timeout=self._timeout.read,
            stage=stage,
            translate=self._translate,
            hand_over=hand_over,
            written=written,
            follow=follow,
        )
        return code, accepted, rejected, form.data


_Item = tuple[EmailMessage, tuple[Address, ...], bool, dict[bool, bytes]]


class _Form(msgspec.Struct):
    """One message as one server's MAIL, RCPT and DATA carry it."""

    sender: bytes
    options: list[bytes]
    recipients: tuple[Address, ...]
    addresses: list[bytes]
    payload: bytes
    data: bytes


class _Batch:
    """The state of one `send_many()` call across its attempts."""

    __slots__ = ("current", "items", "results", "retried", "stage", "todo")

    def __init__(self, size: int) -> None:
        self.items: list[_Item | None] = [None] * size
        self.results: list[SendResult | CommunicationError | None] = [None] * size
        self.todo: deque[int] = deque()  # not yet sent, in order
        self.retried: dict[int, CommunicationError] = {}  # refused for now: the next attempt
        self.stage = ["pool"]
        self.current = -1  # the message being sent

    def item(self, index: int) -> _Item:
        item = self.items[index]
        assert item is not None
        return item

    def settle(self, error: CommunicationError, *, current: bool = False) -> None:
        """Give every message not settled yet `error` (or its own transient refusal); with
        `current`, only the message that was being sent."""
        if current:
            if self.current >= 0:
                self.results[self.current] = error
            return
        for index in (*self.todo, *self.retried):
            if self.results[index] is None:
                self.results[index] = self.retried.get(index, error)
        for index, result in enumerate(self.results):
            if result is None:
                self.results[index] = error


def _check_timeout(timeout: float | None) -> None:
    if timeout is not None and not timeout > 0:
        raise ValidationError(f"timeout must be a positive number of seconds, got {timeout!r}")


def _message_id(data: bytes) -> str | None:
    """The Message-ID header of a rendered message (the renderer makes one up when needed)."""
    end = data.find(b"\r\n\r\n")  # the header block only
    found = _MESSAGE_ID.search(data, 0, end if end >= 0 else len(data))
    return " ".join(found.group(1).decode("utf-8", "replace").split()) if found else None


def _envelope(address: Address | None, utf8: bool) -> str:
    """The envelope form: UTF-8 under SMTPUTF8, else with an IDNA (ASCII) domain."""
    assert address is not None
    return address.email if utf8 else ascii_email(address)


def _expired(stage: str, timeout: float | None) -> CommunicationError:
    """The honest error for a `send(timeout=...)` that expired in `stage`."""
    cls, where = _EXPIRED.get(stage, (RequestNotSent, "before the message was sent"))
    return cls(f"send() timed out after {timeout:g}s {where}", provider="smtp")
