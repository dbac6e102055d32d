"""`xcomm demo`: send real email through the pooled SMTP provider to a loopback server.

The demo starts an aiosmtpd server on 127.0.0.1 (in its own thread, on a free port) that
files every message it receives into a local Maildir, then, inside one `CommManager`, sends a
plain message, an HTML message with a text alternative and an attachment, a UTF-8 message, and
a concurrent burst through the connection pool. It prints each `SendResult`, what landed in
the Maildir, the metrics and the pool statistics; then it runs a newsletter campaign through
the bulk sender and the SQLite outbox, and runs it again to show that nothing is sent twice
(`xcomm._demo_campaign`). No account and no network beyond loopback.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import itertools
import mailbox
import os
import socket
import sys
import time
from dataclasses import dataclass
from email.message import EmailMessage as MIMEMessage
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TextIO

from xcomm._console import ms, table
from xcomm._errors import CommunicationError, ConfigurationError
from xcomm._manager import CommManager
from xcomm._models import SendResult
from xcomm._version import __version__
from xcomm.email._smtp import SMTPProvider

__all__ = [
    "DEFAULT_BURST",
    "DEFAULT_MAILDIR",
    "DEFAULT_POOL_SIZE",
    "DEFAULT_SUBSCRIBERS",
    "LoopbackSMTPServer",
    "default_outbox",
    "open_maildir",
    "run",
]

DEFAULT_MAILDIR = "demo-maildir"
DEFAULT_BURST = 50
DEFAULT_POOL_SIZE = 4
DEFAULT_SUBSCRIBERS = 5000

SENDER = "xcomm demo <demo@example.com>"
REPORT_CSV = (
    b"week,sent,delivered,bounced\r\n"
    b"2024-W01,1200,1187,13\r\n"
    b"2024-W02,1350,1341,9\r\n"
    b"2024-W03,1410,1402,8\r\n"
)
REPORT_HTML = """\
<html><body>
<h1>Weekly report</h1>
<table border="1" cellpadding="4">
<tr><th>week</th><th>sent</th><th>delivered</th></tr>
<tr><td>2024-W01</td><td>1200</td><td>1187</td></tr>
<tr><td>2024-W02</td><td>1350</td><td>1341</td></tr>
<tr><td>2024-W03</td><td>1410</td><td>1402</td></tr>
</table>
<p>The numbers are attached as <code>report.csv</code>.</p>
</body></html>
"""
UTF8_SUBJECT = "Grüße aus Köln 🚀"
UTF8_BODY = "Schöne Grüße aus Köln! Ça va? Ελληνικά, 日本語 and emoji 🚀 travel fine.\n"


def _free_port(host: str) -> int:
    # aiosmtpd's Controller probes the port it was given, so port=0 cannot work: pick one.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def open_maildir(path: str | Path) -> mailbox.Maildir:
    """Open (creating if needed) the Maildir at `path`, even when the directory exists empty."""
    root = Path(path)
    for sub in ("cur", "new", "tmp"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    return mailbox.Maildir(root, factory=None, create=False)


_HOSTNAME = socket.gethostname().replace("/", r"\057").replace(":", r"\072")
_DELIVERIES = itertools.count(1)


def _deliver(root: Path, data: bytes) -> None:
    """File `data` into the Maildir at `root`: written in tmp/, then renamed into new/.

    Unlike `mailbox.Maildir.add` there is no fsync: one per message (about a millisecond) would
    make the disk, not xcomm, what a 5,000-message campaign through the demo measures.
    """
    now = time.time()
    name = f"{int(now)}.M{int(now % 1 * 1e6):06d}P{os.getpid()}Q{next(_DELIVERIES)}.{_HOSTNAME}"
    tmp = root / "tmp" / name
    with open(tmp, "xb") as file:
        file.write(data)
    os.replace(tmp, root / "new" / name)


class _MaildirHandler:
    """aiosmtpd handler: file each message into a Maildir, like a local delivery agent."""

    def __init__(self, root: Path) -> None:
        self._root = root

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        content = envelope.original_content or envelope.content
        if isinstance(content, str):
            content = content.encode("utf-8", "surrogateescape")
        # Like a local delivery agent: envelope headers on top, stored with local line ends.
        stamp = f"Return-Path: <{envelope.mail_from}>\n".encode()
        stamp += b"".join(f"Delivered-To: {r}\n".encode() for r in envelope.rcpt_tos)
        _deliver(self._root, stamp + content.replace(b"\r\n", b"\n"))
        return "250 2.0.0 OK: delivered to the demo Maildir"


class LoopbackSMTPServer:
    """An aiosmtpd server on 127.0.0.1 that delivers every message into a Maildir.

    Example:
        ```python
        with LoopbackSMTPServer("demo-maildir") as server:
            ...  # send to server.host, server.port
        ```
    """

    def __init__(self, maildir: str | Path, *, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = 0
        self.maildir_path = Path(maildir)
        self.maildir = open_maildir(maildir)
        self._controller: Any = None

    def start(self) -> Self:
        """Start the server thread on a free port."""
        try:
            from aiosmtpd.controller import Controller
        except ImportError as exc:
            raise ConfigurationError(
                "the demo needs aiosmtpd for its loopback server: pip install 'xcomm[cli]'"
            ) from exc
        self.port = _free_port(self.host)
        controller = Controller(
            _MaildirHandler(self.maildir_path),
            hostname=self.host,
            port=self.port,
            server_hostname="xcomm-demo.localhost",
            enable_SMTPUTF8=True,
        )
        controller.start()
        self._controller = controller
        return self

    def stop(self) -> None:
        """Stop the server thread. Idempotent."""
        controller, self._controller = self._controller, None
        if controller is not None:
            controller.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


@dataclass(frozen=True, slots=True)
class _Sent:
    label: str
    result: SendResult


# -- output --------------------------------------------------------------------------------


class _Printer:
    def __init__(self, out: TextIO | None) -> None:
        self._out = out

    @property
    def stream(self) -> TextIO:
        """Where the lines go (standard output unless told otherwise)."""
        return self._out if self._out is not None else sys.stdout

    def __call__(self, *lines: str) -> None:
        out = self.stream
        for line in lines:
            print(line, file=out)

    def heading(self, text: str) -> None:
        self("", text)

    @staticmethod
    def error(text: str) -> None:
        print(f"xcomm demo: error: {text}", file=sys.stderr)


# -- the demo ------------------------------------------------------------------------------


async def _send_showcase(smtp: SMTPProvider) -> list[_Sent]:
    plain = await (
        smtp.compose()
        .to("Ada Lovelace <ada@example.com>")
        .subject("Hello from xcomm")
        .body(
            "Hi Ada,\n\nthis plain-text message went through xcomm's pooled SMTP provider.\n\n"
            "-- xcomm demo\n"
        )
        .send()
    )
    html = await (
        smtp.compose()
        .to("Bob <bob@example.com>")
        .cc("carol@example.com")
        .subject("Your weekly report")
        .body("Weekly report\n\nweek 3: 1410 sent, 1402 delivered.\nThe numbers are attached.\n")
        .html_body(REPORT_HTML)
        .attach(REPORT_CSV, filename="report.csv")
        .send()
    )
    utf8 = await (
        smtp.compose()
        .from_("Kölner Büro <koeln@example.com>")
        .to("Jürgen Müller <juergen@example.com>")
        .subject(UTF8_SUBJECT)
        .body(UTF8_BODY)
        .send()
    )
    return [
        _Sent("plain text", plain),
        _Sent("html + attachment", html),
        _Sent("utf-8", utf8),
    ]


async def _send_burst(smtp: SMTPProvider, count: int) -> list[SendResult]:
    async def one(n: int) -> SendResult:
        return await (
            smtp.compose()
            .to(f"reader{n}@example.com")
            .subject(f"Burst message {n}")
            .body(f"Message {n} of {count}, sent concurrently through the pool.\n")
            .send()
        )

    async with asyncio.TaskGroup() as tg:
        tasks = [tg.create_task(one(n)) for n in range(1, count + 1)]
    return [t.result() for t in tasks]


def _print_results(say: _Printer, sent: list[_Sent]) -> None:
    rows = [["#", "message", "message id", "accepted", "attempts", "ms"]]
    for n, item in enumerate(sent, 1):
        r = item.result
        rows.append(
            [
                str(n),
                item.label,
                r.message_id or "-",
                ", ".join(r.accepted) or "-",
                str(r.attempts),
                ms(r.duration),
            ]
        )
    say(*table(rows, right=(0, 4, 5)))


def _describe(msg: MIMEMessage) -> str:
    parts = []
    for part in msg.walk():
        if part.is_multipart():
            continue
        filename = part.get_filename()
        kind = part.get_content_type()
        if filename:
            size = len(part.get_payload(decode=True) or b"")
            parts.append(f"{filename} ({kind}, {size} B)")
        else:
            parts.append(kind)
    return " + ".join(parts)


def _print_maildir(
    say: _Printer, server: LoopbackSMTPServer, new_keys: list[str], sent: list[_Sent]
) -> None:
    by_id: dict[str, MIMEMessage] = {}
    for key in new_keys:
        parsed = email.message_from_bytes(
            server.maildir.get_bytes(key), policy=email.policy.default
        )
        assert isinstance(parsed, MIMEMessage)
        by_id[str(parsed["message-id"]).strip()] = parsed
    say.heading(
        f"Maildir {server.maildir_path}: {len(by_id)} new message(s) "
        f"({len(server.maildir)} in total)"
    )
    rows = [["subject", "from", "to", "parts"]]
    for item in sent:
        m = by_id.pop((item.result.message_id or "").strip(), None)
        if m is not None:
            rows.append([str(m["subject"]), str(m["from"]), str(m["to"]), _describe(m)])
    if by_id:
        first = next(iter(by_id.values()))
        rows.append(
            [f"Burst message 1..{len(by_id)}", str(first["from"]), "reader1..N@example.com",
             f"{len(by_id)} x {_describe(first)}"]
        )  # fmt: skip
    say(*table(rows))


def _print_metrics(say: _Printer, comm: CommManager, smtp: SMTPProvider) -> None:
    say.heading("Metrics (comm.metrics.get_stats(provider='smtp'), get_operation_breakdown())")
    rows = [["", "total", "ok", "failed", "success rate", "avg ms", "p50 ms", "p99 ms"]]
    breakdown = comm.metrics.get_operation_breakdown()
    operations = [(name, s) for name, s in breakdown.items() if name.startswith("smtp.")]
    for name, stats in [("smtp", comm.metrics.get_stats(provider="smtp")), *operations]:
        rows.append(
            [
                name,
                str(stats.total),
                str(stats.successful),
                str(stats.failed),
                f"{stats.success_rate:.1f}%",
                ms(stats.avg_duration),
                ms(stats.p50_duration),
                ms(stats.p99_duration),
            ]
        )
    say(*table(rows, right=range(1, 8)))
    pool = smtp.statistics()
    say.heading("Connection pool (smtp.statistics())")
    rows = [
        ["size", "idle", "in use", "max size", "opened", "closed", "messages sent"],
        [
            str(pool.size),
            str(pool.idle),
            str(pool.in_use),
            str(pool.max_size),
            str(pool.connections_opened),
            str(pool.connections_closed),
            str(pool.messages_sent),
        ],
    ]
    say(*table(rows, right=range(7)))


async def _run(
    server: LoopbackSMTPServer,
    say: _Printer,
    *,
    burst: int,
    pool_size: int,
    subscribers: int | None,
    outbox: Path,
) -> int:
    before = set(server.maildir.keys())
    # The outbox is opened only when a campaign first needs it: without one, no file appears.
    async with CommManager(outbox=outbox) as comm:
        smtp = comm.smtp(server.host, server.port, sender=SENDER, pool_size=pool_size)
        say.heading("Sent messages")
        sent = await _send_showcase(smtp)
        _print_results(say, sent)

        started = time.perf_counter()
        results = await _send_burst(smtp, burst)
        elapsed = time.perf_counter() - started
        accepted = sum(len(r.accepted) for r in results)
        say.heading(
            f"Burst: {burst} messages with a TaskGroup through a pool of {pool_size} connections"
        )
        say(
            f"  {accepted}/{burst} accepted in {elapsed * 1000:.0f} ms "
            f"({burst / elapsed:.0f} messages/s)"
        )
        _print_maildir(say, server, sorted(set(server.maildir.keys()) - before), sent)
        _print_metrics(say, comm, smtp)
        code = 0 if accepted == burst and all(s.result.ok for s in sent) else 1
        if subscribers is not None:
            # Imported here: the campaign part builds on this module's server and tables.
            from xcomm._demo_campaign import run_campaign

            campaign_code = await run_campaign(
                comm, server, say, subscribers=subscribers, outbox=outbox
            )
            code = code or campaign_code
    return code


def default_outbox(maildir: str | Path) -> Path:
    """The demo's outbox: `demo-outbox.sqlite3` next to the Maildir."""
    return Path(maildir).parent / "demo-outbox.sqlite3"


def run(
    maildir: str | Path = DEFAULT_MAILDIR,
    *,
    burst: int = DEFAULT_BURST,
    pool_size: int = DEFAULT_POOL_SIZE,
    campaign: bool = True,
    subscribers: int = DEFAULT_SUBSCRIBERS,
    outbox: str | Path | None = None,
    out: TextIO | None = None,
) -> int:
    """Run the demo and return the process exit code (0 when every message was accepted).

    Args:
        maildir: where the loopback server files the messages it receives.
        burst: how many messages the concurrent burst sends.
        pool_size: connections in the SMTP provider's pool.
        campaign: run the newsletter campaign (and its resume) after the other sends.
        subscribers: how many subscribers the campaign's generated CSV holds.
        outbox: the campaign's SQLite outbox (default: `demo-outbox.sqlite3` next to the
            Maildir); each demo run uses a fresh campaign id, so earlier runs stay in it.
        out: where to print (standard output by default).
    """
    say = _Printer(out)
    outbox_path = Path(outbox) if outbox is not None else default_outbox(maildir)
    try:
        with LoopbackSMTPServer(maildir) as server:
            say(
                f"xcomm {__version__} demo: SMTP server on {server.host}:{server.port} "
                f"delivering into {server.maildir_path}/"
            )
            code = asyncio.run(
                _run(
                    server,
                    say,
                    burst=burst,
                    pool_size=pool_size,
                    subscribers=subscribers if campaign else None,
                    outbox=outbox_path,
                )
            )
    except CommunicationError as exc:
        say.error(str(exc))
        return 1
    except OSError as exc:
        say.error(f"cannot use {maildir} as a Maildir: {exc}")
        return 1
    say("", "Done: the messages are in the Maildir above (any mail client reads Maildir).")
    return code
