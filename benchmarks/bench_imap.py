"""Reading mail: fetch and parse a mailbox from Dovecot into usable objects (issue 4).

One Dovecot on loopback (the tests' configuration, `benchmarks/_dovecot.py`), one mailbox of
`--messages` generated messages (seeded: 65% short text/plain, 30% multipart/alternative,
5% multipart/mixed with a 50-200 KB attachment), APPENDed once. Each contender logs in over
plaintext IMAP (loopback), reads every message and produces what an application uses:
subject, sender, date, text, HTML and attachment names.

- `xcomm (bodies in bulk)`: `await imap.search("ALL", bodies=True)`: headers, structure and
  the text/HTML parts in the same batches (one FETCH per layout of parts), then `text()` and
  `html()` read from memory;
- `xcomm (lazy bodies)`: `await imap.search("ALL")` (headers and structure in batches), then
  `await m.text()` and `await m.html()` per message: two round trips per message;
- `xcomm (lazy bodies, 2 sessions)`: the same, the body fetches spread over two pooled
  sessions by two tasks (the provider's default `pool_size=2`);
- `xcomm (headers only)`: the search alone, no bodies (what a listing needs);
- `imap-tools bulk`: `MailBoxUnencrypted(...).login(...).fetch(bulk=True, mark_seen=False)`,
  reading `subject`, `from_`, `date`, `text`, `html`, attachment file names;
- `imaplib + policy.default`: `UID FETCH <500 uids> (RFC822)` batches parsed with
  `email.message_from_bytes(policy=policy.default)` (`get_body`, `iter_attachments`);
- `imaplib + compat32`: the same batches, the legacy parser (`walk()`, `decode_header`).

Contenders run in interleaved rounds (`--repeats`, median). Each is verified: the same count
and the same subjects (a sample of every 97th message), every message with its text.

    python -m benchmarks.bench_imap                 # 10,000 messages (about 4 minutes)
    python -m benchmarks.bench_imap --quick         # 1,000

Output: JSON lines (also appended to benchmarks/results/2026-11-21-imap.jsonl), a table of
messages/second with the ratio to imap-tools, and the bar (xcomm >= 1.5x imap-tools bulk).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import email
import email.header
import imaplib
import importlib.util
import json
import random
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage, Message

import trustme

from benchmarks import _dovecot
from benchmarks._report import REPO_ROOT, metadata, print_table

RESULTS = REPO_ROOT / "benchmarks" / "results" / "2026-11-21-imap.jsonl"
BATCH = 500
SAMPLE_EVERY = 97
WORDS = [
    "invoice",
    "meeting",
    "report",
    "quarterly",
    "café",
    "Grüße",
    "update",
    "notes",
    "plan",
    "budget",
    "review",
]


@dataclass(frozen=True)
class Read:
    """What a contender read: a sample of subjects and a few sanity counts."""

    count: int
    subjects: tuple[str, ...]
    with_text: int
    attachments: int


@dataclass
class Figure:
    name: str
    rates: list[float]

    @property
    def rate(self) -> float:
        return statistics.median(self.rates)


# ---- the mailbox ----------------------------------------------------------------------------


def generate(n: int, seed: int = 4) -> list[bytes]:
    rnd = random.Random(seed)
    out = []
    start = datetime(2025, 1, 1, tzinfo=UTC)
    for i in range(n):
        subject = f"#{i} " + " ".join(rnd.choices(WORDS, k=rnd.randint(2, 6)))
        encoded = email.header.Header(subject, "utf-8").encode()
        when = (start + timedelta(minutes=7 * i)).strftime("%a, %d %b %Y %H:%M:%S +0000")
        head = (
            f'From: "Sender {i % 97}" <sender{i % 97}@example.com>\r\n'
            f"To: me@example.com\r\nSubject: {encoded}\r\nDate: {when}\r\n"
            f"Message-ID: <bench-{i}@example.com>\r\nMIME-Version: 1.0\r\n"
        )
        text = "\r\n".join(" ".join(rnd.choices(WORDS, k=12)) for _ in range(rnd.randint(3, 30)))
        kind = rnd.random()
        if kind < 0.65:
            body = (
                "Content-Type: text/plain; charset=utf-8\r\n"
                "Content-Transfer-Encoding: 8bit\r\n\r\n" + text + "\r\n"
            )
        else:
            html = "<html><body><p>" + text.replace("\r\n", "</p><p>") + "</p></body></html>"
            alt = (
                'Content-Type: multipart/alternative; boundary="alt"\r\n\r\n'
                "--alt\r\nContent-Type: text/plain; charset=utf-8\r\n"
                "Content-Transfer-Encoding: 8bit\r\n\r\n" + text + "\r\n"
                "--alt\r\nContent-Type: text/html; charset=utf-8\r\n"
                "Content-Transfer-Encoding: 8bit\r\n\r\n" + html + "\r\n--alt--\r\n"
            )
            if kind < 0.95:
                body = alt
            else:
                blob = base64.encodebytes(rnd.randbytes(rnd.randint(37_000, 150_000)))
                body = (
                    'Content-Type: multipart/mixed; boundary="mix"\r\n\r\n--mix\r\n' + alt
                    + f"--mix\r\nContent-Type: application/pdf; name=\"report-{i}.pdf\"\r\n"
                    f'Content-Disposition: attachment; filename="report-{i}.pdf"\r\n'
                    "Content-Transfer-Encoding: base64\r\n\r\n"
                    + blob.decode().replace("\n", "\r\n") + "--mix--\r\n"
                )  # fmt: skip
        out.append((head + body).encode())
    return out


def load_mailbox(server: object, user: str, messages: list[bytes]) -> None:
    client: imaplib.IMAP4 = server.imap(user)  # type: ignore[attr-defined]
    client.sock.settimeout(60)
    try:
        for raw in messages:
            typ, data = client.append("INBOX", None, None, raw)
            assert typ == "OK", data
    finally:
        client.logout()


# ---- contenders -----------------------------------------------------------------------------


def _sample(subjects: list[str]) -> tuple[str, ...]:
    return tuple(subjects[::SAMPLE_EVERY])


async def _xcomm(
    host: str, port: int, user: str, password: str, *, bodies: bool, sessions: int, bulk: bool
) -> Read:
    from xcomm import CommManager, ReceivedMessage, Timeout

    async with CommManager(timeout=Timeout(connect=10, read=60, write=60, pool=60)) as comm:
        imap = comm.imap(
            host, port, username=user, password=password, use_tls=False, batch_size=BATCH,
            pool_size=sessions,
        )  # fmt: skip
        messages = await imap.search("ALL", bodies=bulk)
        subjects, attachments = [], 0
        for m in messages:
            subjects.append(m.subject)
            _ = (m.sender, m.sender_name, m.date)
            attachments += len([a.filename for a in m.attachments if a.filename])
        if not bodies:
            return Read(len(subjects), _sample(subjects), 0, attachments)

        async def read(chunk: list[ReceivedMessage]) -> int:
            found = 0
            for m in chunk:
                text = await m.text()
                _ = await m.html()
                found += bool(text)
            return found

        # One reader per session, each over its share of the messages (sessions=1: a loop).
        shares = await asyncio.gather(*(read(messages[i::sessions]) for i in range(sessions)))
        return Read(len(subjects), _sample(subjects), sum(shares), attachments)


def xcomm_reader(
    bodies: bool, sessions: int = 1, *, bulk: bool = False
) -> Callable[[str, int, str, str], Read]:
    def run(host: str, port: int, user: str, password: str) -> Read:
        return asyncio.run(
            _xcomm(host, port, user, password, bodies=bodies, sessions=sessions, bulk=bulk)
        )

    return run


def imap_tools_reader(host: str, port: int, user: str, password: str) -> Read:
    from imap_tools import MailBoxUnencrypted

    subjects, with_text, attachments = [], 0, 0
    with MailBoxUnencrypted(host, port).login(user, password) as mailbox:
        for msg in mailbox.fetch(bulk=True, mark_seen=False):
            subjects.append(msg.subject)
            _ = (msg.from_, msg.date, msg.html)
            with_text += bool(msg.text)
            attachments += len([a.filename for a in msg.attachments])
    return Read(len(subjects), _sample(subjects), with_text, attachments)


def _raw_batches(host: str, port: int, user: str, password: str) -> list[bytes]:
    client = imaplib.IMAP4(host, port)
    try:
        client.login(user, password)
        client.select("INBOX", readonly=True)
        _, data = client.uid("SEARCH", "ALL")
        uids = (data[0] or b"").split()
        raws: list[bytes] = []
        for start in range(0, len(uids), BATCH):
            chunk = b",".join(uids[start : start + BATCH]).decode()
            _, fetched = client.uid("FETCH", chunk, "(RFC822)")
            raws += [item[1] for item in fetched if isinstance(item, tuple)]
        return raws
    finally:
        client.logout()


def imaplib_default_reader(host: str, port: int, user: str, password: str) -> Read:
    subjects, with_text, attachments = [], 0, 0
    for raw in _raw_batches(host, port, user, password):
        msg = email.message_from_bytes(raw, policy=policy.default)
        assert isinstance(msg, EmailMessage)
        subjects.append(str(msg["subject"] or ""))
        _ = (msg["from"].addresses, msg["date"].datetime)
        text = msg.get_body(("plain",))
        html = msg.get_body(("html",))
        with_text += bool(text is not None and text.get_content())
        _ = html.get_content() if html is not None else ""
        attachments += len([p.get_filename() for p in msg.iter_attachments()])
    return Read(len(subjects), _sample(subjects), with_text, attachments)


def _decoded(value: str | None) -> str:
    return str(email.header.make_header(email.header.decode_header(value or "")))


def imaplib_compat32_reader(host: str, port: int, user: str, password: str) -> Read:
    subjects, with_text, attachments = [], 0, 0
    for raw in _raw_batches(host, port, user, password):
        msg: Message = email.message_from_bytes(raw)
        subjects.append(_decoded(msg["subject"]))
        _ = (email.utils.parseaddr(_decoded(msg["from"])), email.utils.parsedate_to_datetime(
            msg["date"]))  # fmt: skip
        text = html = ""
        for part in msg.walk():
            if part.is_multipart():
                continue
            if part.get_filename():
                attachments += 1
                continue
            kind = part.get_content_type()
            if kind in ("text/plain", "text/html"):
                payload = part.get_payload(decode=True)
                assert isinstance(payload, bytes)
                decoded = payload.decode(part.get_content_charset() or "utf-8", "replace")
                if kind == "text/plain" and not text:
                    text = decoded
                elif kind == "text/html" and not html:
                    html = decoded
        with_text += bool(text)
    return Read(len(subjects), _sample(subjects), with_text, attachments)


# ---- the run --------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--messages", type=int, default=10_000, help="mailbox size (10,000)")
    parser.add_argument("--quick", action="store_true", help="1,000 messages, 1 repeat")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds (3)")
    parser.add_argument("--no-save", action="store_true", help=f"do not append to {RESULTS}")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    n, repeats = (1_000, 1) if args.quick else (args.messages, args.repeats)
    contenders: list[tuple[str, Callable[[str, int, str, str], Read]]] = [
        ("xcomm (bodies in bulk)", xcomm_reader(bodies=True, bulk=True)),
        ("xcomm (lazy bodies)", xcomm_reader(bodies=True)),
        ("xcomm (lazy bodies, 2 sessions)", xcomm_reader(bodies=True, sessions=2)),
        ("xcomm (headers only)", xcomm_reader(bodies=False)),
    ]
    if importlib.util.find_spec("imap_tools") is not None:
        contenders.append(("imap-tools bulk", imap_tools_reader))
    else:
        print("note: imap-tools is not installed (make bench-peers); skipped")
    contenders += [
        ("imaplib + policy.default", imaplib_default_reader),
        ("imaplib + compat32", imaplib_compat32_reader),
    ]
    dovecot = _dovecot.load()
    server = dovecot.start_dovecot(_dovecot.DOVECOT_BINARY, trustme.CA())
    try:
        user = server.new_user()
        started = time.perf_counter()
        messages = generate(n)
        load_mailbox(server, user, messages)
        size = sum(map(len, messages))
        print(
            f"mailbox: {n:,} messages, {size / 1e6:.1f} MB, APPENDed in "
            f"{time.perf_counter() - started:.1f}s"
        )
        figures = {name: Figure(name, []) for name, _ in contenders}
        reads: dict[str, Read] = {}
        for name, run in contenders:  # warm-up: Dovecot's index and caches, imports
            reads[name] = run(server.host, server.port, user, server.password)
        for _ in range(repeats):
            for name, run in contenders:
                t0 = time.perf_counter()
                reads[name] = run(server.host, server.port, user, server.password)
                figures[name].rates.append(n / (time.perf_counter() - t0))
    finally:
        server.stop()
    reference = reads[contenders[0][0]]
    for name, read in reads.items():
        assert read.count == n, (name, read.count)
        assert read.subjects == reference.subjects, (name, read.subjects[:3])
        if "headers only" not in name:
            assert read.with_text == n, (name, read.with_text)
        assert read.attachments == reference.attachments, (name, read.attachments)
    peer = figures.get("imap-tools bulk")
    lines = []
    for figure in figures.values():
        line = {
            **metadata("imap"),
            "contender": figure.name,
            "messages": n,
            "mailbox_mb": round(size / 1e6, 1),
            "messages_per_s": round(figure.rate, 1),
            "rounds": [round(r, 1) for r in figure.rates],
            "ratio_to_imap_tools": round(figure.rate / peer.rate, 3) if peer else None,
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        lines.append(line)
        print(json.dumps(line, ensure_ascii=False))
    if not args.no_save:
        with RESULTS.open("a") as f:
            f.writelines(json.dumps(line, ensure_ascii=False) + "\n" for line in lines)
    rows = [["contender", "messages/s", "vs imap-tools"]]
    for figure in figures.values():
        ratio = f"{figure.rate / peer.rate:.2f}x" if peer else "-"
        rows.append([figure.name, f"{figure.rate:,.0f}", ratio])
    print()
    print_table(rows)
    if peer:
        best = max(
            (f for f in figures.values() if f.name.startswith(("xcomm (lazy", "xcomm (bodies"))),
            key=lambda f: f.rate,
        )
        ratio = best.rate / peer.rate
        verdict = "met" if ratio >= 1.5 else "NOT met"
        print(f"bar: {best.name} (subject, sender, date, text, HTML) >= 1.5x imap-tools "
              f"bulk: {ratio:.2f}x, {verdict}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
