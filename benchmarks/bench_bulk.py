"""Bulk throughput: a personalised campaign through `BulkSender`, its peers, smtp-source.

One run, one Postfix `smtp-sink` on loopback, every contender side by side:

- `smtp-source -s 8 -d`: Postfix's C load generator over 8 reused sessions, 1 KB messages,
  the physical limit of the machine;
- `xcomm bulk`: `comm.create_bulk_sender(smtp, max_concurrent=..., track_delivery=True)` and
  `send_campaign()` with a Jinja2 `Template` (subject, text and HTML; 3 variables; about 1 KB
  rendered, 1.5 KB of MIME on the wire), recipients streamed from a generator of mappings, every
  message recorded in a fresh SQLite outbox in a temporary directory. Each combination of
  `--pool-sizes` and `--max-concurrent` runs once (the sweep); the best then runs `--repeats`
  times, and once more per round with `outbox="memory://"` to show what SQLite costs. With
  uvloop installed (`pip install uvloop`), xcomm runs on uvloop and each round also runs the
  best configuration on asyncio's default loop (`--loop` chooses). On a machine with several
  cores the same sweep runs with one process per core (`processes=N`: each process takes
  `1/N` of the pool and of `max_concurrent`, so one process's best need not be theirs), and
  its best runs in this process (whose later campaigns fork their helpers from the zygote the
  first one started) and as the first campaign of a new process (the zygote starts cold, as
  for a one-off `xcomm campaign run`);
- `nodemailer`: Node's most used mailer, pooled transport (`maxConnections: 32`,
  `maxMessages: Infinity`), composing every message with the same personalised subject, text
  and HTML, 64 `sendMail` calls in flight. Installed once with npm into `.cache/node-bench/`;
  skipped with a note when node or npm are missing or fail;
- `fastapi-mail`: what a FastAPI app writes, `FastMail(ConnectionConfig(...)).send_message()`
  with a `MessageSchema` per recipient (HTML body, text `alternative_body`), the three parts
  rendered with jinja2 directly (autoescaped HTML), 32 worker tasks pulling recipients from
  one iterator (bounded concurrency, never a task per message); fastapi-mail opens a new
  aiosmtplib connection for each `send_message()`. `--peer-messages` per run (5,000);
- `apprise`: `apprise.Apprise()` with one `mailto://` URL per recipient (no TLS, no auth) and
  one `notify()` per recipient, the rendered subject as title and the HTML as body (apprise
  derives the text part itself); throttle off (`NotifyEmail.request_rate_per_sec = 0`). It has
  no per-recipient personalisation and no connection reuse: one SMTP session per message,
  sequential. `--apprise-messages` per run (300): it is slow, and its rate does not depend on
  the count.

fastapi-mail and apprise are not xcomm dependencies (`make bench` installs them); each is
skipped with a note when not installed. Each runs in its own process (spawned once, reused for
its runs, timed inside), so neither's imports touch xcomm's process or the other's: importing
apprise's email plugin re-registers the standard library's UTF-8 charset as quoted-printable
for the whole process.

After the sweep, the contenders run in interleaved rounds (smtp-source, xcomm SQLite, xcomm
memory, nodemailer, fastapi-mail, apprise, then again), so a noisy neighbour slows them alike;
each figure is the median of its rounds, and the ratios compare figures of this one run. Every
message must be accepted: `CampaignResult.sent`, the peers' own answers and the sink's counter
are checked.

    python -m benchmarks.bench_bulk                     # 20,000 recipients (about 3.5 minutes)
    python -m benchmarks.bench_bulk --quick             # 2,000
    python -m benchmarks.bench_bulk --recipients 50000
    python -m benchmarks.bench_bulk --loop asyncio      # asyncio's default loop only
    python -m benchmarks.bench_bulk --apprise-messages 0  # skip apprise

Output: one JSON line per result, then a table and the issue's two bars (xcomm >= 0.5x
smtp-source and >= 3x nodemailer, outbox on).
"""

from __future__ import annotations

import argparse
import asyncio
import compileall
import importlib.metadata
import importlib.util
import json
import multiprocessing
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from benchmarks._report import metadata, print_table
from benchmarks._servers import (
    INSTALL_HINT,
    MissingToolError,
    SmtpSink,
    ensure_postfix_tools,
    run_smtp_source,
)
from xcomm import CommManager, Template

REPO_ROOT = Path(__file__).resolve().parent.parent
NODE_DIR = REPO_ROOT / ".cache" / "node-bench"
HOST = "127.0.0.1"
SENDER = "news@example.com"

DEFAULT_RECIPIENTS = 20_000
QUICK_RECIPIENTS = 2_000
POOL_SIZES = (8, 16)
MAX_CONCURRENT = (32, 64, 128, 256)
MAX_MESSAGES_PER_CONNECTION = 100_000  # like nodemailer's maxMessages: Infinity
SMTP_SOURCE_SESSIONS = 8
NODE_CONNECTIONS = 32
NODE_IN_FLIGHT = 64
NODE_TIMEOUT = 600.0
FRESH_TIMEOUT = 600.0  # one campaign in a new Python process
PEER_MESSAGES = 5_000  # fastapi-mail, per run
PEER_CONCURRENCY = 32  # fastapi-mail's worker tasks
APPRISE_MESSAGES = 300  # per run: 5-10 s at the 43 msg/s

# Three variables; about 1 KB rendered (subject ~40, text ~430, HTML ~520 bytes).
_PARAGRAPH = "Here is what happened in {{ city }} this month, and what comes next."
SUBJECT = "{{ name }}, your November digest from {{ city }}"
TEXT = (
    "Hi {{ name }},\n\n"
    + "\n".join([_PARAGRAPH] * 5)
    + "\n\nYour personal code is {{ code }}; keep it for the next meetup.\n\n"
    + "See you soon,\nThe Example team\n"
)
HTML = (
    "<html><body><p>Hi {{ name }},</p>\n"
    + "\n".join([f"<p>{_PARAGRAPH}</p>"] * 5)
    + "\n<p>Your personal code is <b>{{ code }}</b>; keep it for the next meetup.</p>\n"
    + "<p>See you soon,<br>The Example team</p></body></html>\n"
)
TEMPLATE = Template(subject=SUBJECT, text=TEXT, html=HTML, name="bench-digest")

# The nodemailer contender. The template parts come from Python (the same text as xcomm's);
# each message fills them in (HTML-escaping the values, as xcomm's template does) and lets
# nodemailer build the MIME message.
NODE_SCRIPT = r"""
"use strict";
const nodemailer = require("nodemailer");
const [port, total, inFlight, connections] = process.argv.slice(2).map(Number);
const parts = JSON.parse(process.env.BENCH_TEMPLATE);
const escapeHtml = (s) => s.replace(/[&<>"']/g, (c) => "&#" + c.charCodeAt(0) + ";");
const fill = (source, vars, esc) =>
  source.replace(/\{\{ (\w+) \}\}/g, (_, key) => (esc ? escapeHtml(vars[key]) : vars[key]));
const transport = nodemailer.createTransport({
  host: "127.0.0.1", port, secure: false, ignoreTLS: true,
  pool: true, maxConnections: connections, maxMessages: Infinity,
});
function message(n) {
  const vars = {
    name: `User ${n}`,
    code: "C" + n.toString(16).toUpperCase().padStart(8, "0"),
    city: parts.cities[n % parts.cities.length],
  };
  return {
    from: parts.sender,
    to: `user${String(n).padStart(7, "0")}@example${n % 50}.com`,
    subject: fill(parts.subject, vars, false),
    text: fill(parts.text, vars, false),
    html: fill(parts.html, vars, true),
  };
}
(async () => {
  let next = 0, accepted = 0;
  const started = process.hrtime.bigint();
  const worker = async () => {
    while (next < total) {
      const info = await transport.sendMail(message(next++));
      if (info.accepted.length === 1) accepted++;
    }
  };
  await Promise.all(Array.from({ length: Math.min(inFlight, total) }, worker));
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  transport.close();
  const version = require("nodemailer/package.json").version;
  console.log(JSON.stringify({ seconds, accepted, version, node: process.version }));
})().catch((err) => { console.error(err); process.exit(1); });
"""

CITIES = ("Lisbon", "Porto", "Braga", "Coimbra", "Faro")


@dataclass
class Result:
    """One contender's timed runs."""

    name: str
    messages: int
    runs: list[float] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    verified: bool = True
    tags: list[str] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return statistics.median(self.runs)

    @property
    def rate(self) -> float:
        return self.messages / self.seconds


# -- xcomm -------------------------------------------------------------------------------


def recipients(count: int, tag: str) -> Iterator[dict[str, str]]:
    """`count` distinct recipients over 50 domains, with the template's three variables."""
    for n in range(count):
        yield {
            "email": f"user{n:07d}.{tag}@example{n % 50}.com",
            "name": f"User {n}",
            "code": f"C{n:08X}",
            "city": CITIES[n % len(CITIES)],
        }


async def xcomm_campaign(
    port: int,
    count: int,
    *,
    pool_size: int,
    max_concurrent: int,
    outbox: str,
    tag: str,
    processes: int = 1,
) -> tuple[float, int, int]:
    """Send one campaign; return (seconds in send_campaign, sent, failed)."""
    async with CommManager(outbox=outbox) as comm:
        smtp = comm.smtp(
            HOST,
            port,
            sender=SENDER,
            pool_size=pool_size,
            max_messages_per_connection=MAX_MESSAGES_PER_CONNECTION,
        )
        bulk = comm.create_bulk_sender(
            smtp, max_concurrent=max_concurrent, track_delivery=True, processes=processes
        )
        started = time.perf_counter()
        result = await bulk.send_campaign(
            template=TEMPLATE, recipients=recipients(count, tag), campaign_id=f"bench-{tag}"
        )
        elapsed = time.perf_counter() - started
    if result.failures:
        print(f"    first failure: {result.failures[0]}", file=sys.stderr)
    return elapsed, result.sent, result.failed + result.in_doubt


def loop_factory(loop: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The event loop factory for `loop` ("asyncio": the default loop, "uvloop")."""
    if loop == "asyncio":
        return None
    import uvloop  # only asked for when installed

    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


class XcommRunner:
    """Runs campaigns of one configuration, each on a fresh outbox in `workdir`."""

    def __init__(
        self,
        port: int,
        workdir: Path,
        *,
        pool_size: int,
        max_concurrent: int,
        sqlite: bool,
        loop: str = "asyncio",
        processes: int = 1,
    ) -> None:
        self.port, self.workdir, self.sqlite = port, workdir, sqlite
        self.pool_size, self.max_concurrent = pool_size, max_concurrent
        self.loop, self.processes = loop, processes
        self.runs = 0

    def __call__(self, count: int) -> tuple[float, int]:
        self.runs += 1
        kind = "s" if self.sqlite else "m"
        tag = f"p{self.pool_size}c{self.max_concurrent}{kind}{self.loop[0]}x{self.processes}"
        tag += str(self.runs)
        outbox = str(self.workdir / f"{tag}.sqlite3") if self.sqlite else "memory://"
        campaign = xcomm_campaign(
            self.port,
            count,
            pool_size=self.pool_size,
            max_concurrent=self.max_concurrent,
            outbox=outbox,
            tag=tag,
            processes=self.processes,
        )
        with asyncio.Runner(loop_factory=loop_factory(self.loop)) as runner:
            elapsed, sent, _failed = runner.run(campaign)
        if self.sqlite:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{outbox}{suffix}").unlink(missing_ok=True)
        return elapsed, sent


def fresh_campaign(
    port: int, count: int, pool_size: int, max_concurrent: int, loop: str, processes: int,
    outbox: str, tag: str,
) -> tuple[float, int]:  # fmt: skip
    """One campaign as the first of this (new) process: `FreshProcessRunner`'s child."""
    campaign = xcomm_campaign(
        port,
        count,
        pool_size=pool_size,
        max_concurrent=max_concurrent,
        outbox=outbox,
        tag=tag,
        processes=processes,
    )
    with asyncio.Runner(loop_factory=loop_factory(loop)) as runner:
        elapsed, sent, _failed = runner.run(campaign)
    return elapsed, sent


class FreshProcessRunner:
    """Runs each campaign as the first of a new Python process (timed inside it, as the other
    xcomm runs are): its helpers' zygote starts with it, as for a one-off `xcomm campaign run`,
    where the runs in this process reuse the zygote of the first."""

    _CODE = (
        "import json, sys; from benchmarks.bench_bulk import fresh_campaign; "
        "print(json.dumps(fresh_campaign(*json.loads(sys.argv[1]))))"
    )

    def __init__(
        self, port: int, workdir: Path, *, pool_size: int, max_concurrent: int, loop: str,
        processes: int,
    ) -> None:  # fmt: skip
        self.port, self.workdir, self.loop, self.processes = port, workdir, loop, processes
        self.pool_size, self.max_concurrent = pool_size, max_concurrent
        self.runs = 0

    def __call__(self, count: int) -> tuple[float, int]:
        self.runs += 1
        tag = f"fresh{self.runs}"
        outbox = str(self.workdir / f"{tag}.sqlite3")
        settings = [
            self.port, count, self.pool_size, self.max_concurrent, self.loop, self.processes,
            outbox, tag,
        ]  # fmt: skip
        try:
            out = subprocess.run(
                [sys.executable, "-c", self._CODE, json.dumps(settings)],
                cwd=REPO_ROOT,
                capture_output=True,
                text=True,
                timeout=FRESH_TIMEOUT,
                check=True,
            )
        finally:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{outbox}{suffix}").unlink(missing_ok=True)
        elapsed, sent = json.loads(out.stdout.strip().splitlines()[-1])
        return float(elapsed), int(sent)


# -- nodemailer --------------------------------------------------------------------------


def nodemailer_setup(workdir: Path) -> tuple[Path | None, str]:
    """Install nodemailer once into `.cache/node-bench`; return (script, note) or (None, why)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        return None, "node/npm not found on PATH"
    if not (NODE_DIR / "node_modules" / "nodemailer" / "package.json").is_file():
        print(f"  installing nodemailer into {NODE_DIR} ...", file=sys.stderr, flush=True)
        NODE_DIR.mkdir(parents=True, exist_ok=True)
        manifest = NODE_DIR / "package.json"
        if not manifest.exists():
            manifest.write_text('{"name": "xcomm-node-bench", "private": true}\n')
        try:
            proc = subprocess.run(
                [npm, "install", "--no-audit", "--no-fund", "--silent", "nodemailer"],
                cwd=NODE_DIR,
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return None, f"npm install nodemailer failed: {exc}"
        if proc.returncode != 0:
            return None, f"npm install nodemailer failed: {proc.stderr.strip()[-300:]}"
    script = workdir / "bench_bulk_nodemailer.js"
    script.write_text(NODE_SCRIPT)
    return script, ""


class NodemailerRunner:
    """Runs the nodemailer script in a fresh `node` process per run."""

    def __init__(self, port: int, script: Path) -> None:
        self.port, self.script = port, script
        self.versions: dict[str, str] = {}
        self.env = {
            **os.environ,
            "NODE_PATH": str(NODE_DIR / "node_modules"),
            "BENCH_TEMPLATE": json.dumps(
                {
                    "sender": SENDER,
                    "subject": SUBJECT,
                    "text": TEXT,
                    "html": HTML,
                    "cities": CITIES,
                }
            ),
        }

    def __call__(self, count: int) -> tuple[float, int]:
        argv = ["node", str(self.script), str(self.port), str(count)]
        argv += [str(NODE_IN_FLIGHT), str(NODE_CONNECTIONS)]
        proc = subprocess.run(
            argv, env=self.env, capture_output=True, text=True, timeout=NODE_TIMEOUT, check=False
        )
        if proc.returncode != 0:
            raise RuntimeError(f"nodemailer script failed: {proc.stderr.strip()[-500:]}")
        out = json.loads(proc.stdout.strip().splitlines()[-1])
        self.versions = {"nodemailer": out["version"], "node": out["node"]}
        return float(out["seconds"]), int(out["accepted"])


# -- fastapi-mail and apprise ------------------------------------------------------------
#
# Each peer runs in a process of its own (see the module docstring); the functions below run
# there, time the sends themselves and return (seconds, accepted) like the other runners.


def jinja_parts() -> tuple[Any, Any, Any]:
    """The subject, text and HTML compiled with jinja2 as a user would (HTML autoescaped)."""
    import jinja2

    plain, html = jinja2.Environment(autoescape=False), jinja2.Environment(autoescape=True)
    return plain.from_string(SUBJECT), plain.from_string(TEXT), html.from_string(HTML)


async def _fastapi_mail_campaign(port: int, count: int, tag: str) -> tuple[float, int]:
    from fastapi_mail import (
        ConnectionConfig,
        FastMail,
        MessageSchema,
        MessageType,
        MultipartSubtypeEnum,
    )

    config = ConnectionConfig(
        MAIL_USERNAME="",
        MAIL_PASSWORD="",
        MAIL_FROM=SENDER,
        MAIL_SERVER=HOST,
        MAIL_PORT=port,
        MAIL_STARTTLS=False,
        MAIL_SSL_TLS=False,
        USE_CREDENTIALS=False,
        VALIDATE_CERTS=False,
    )
    mail = FastMail(config)
    subject, text, html = jinja_parts()
    pending = recipients(count, tag)
    accepted = 0
    failures: list[BaseException] = []

    async def worker() -> None:
        nonlocal accepted
        for recipient in pending:  # one shared iterator: each worker takes the next recipient
            message = MessageSchema(
                recipients=[recipient["email"]],
                subject=subject.render(recipient),
                body=html.render(recipient),
                alternative_body=text.render(recipient),
                subtype=MessageType.html,
                multipart_subtype=MultipartSubtypeEnum.alternative,
            )
            try:
                await mail.send_message(message)
            except Exception as exc:  # counted; the sink's counter is checked too
                failures.append(exc)
            else:
                accepted += 1

    started = time.perf_counter()
    async with asyncio.TaskGroup() as tg:
        for _ in range(min(PEER_CONCURRENCY, count)):
            tg.create_task(worker())
    elapsed = time.perf_counter() - started
    if failures:
        print(f"    fastapi-mail: first failure: {failures[0]!r}", file=sys.stderr)
    return elapsed, accepted


def fastapi_mail_run(port: int, count: int, tag: str, loop: str) -> tuple[float, int]:
    """One fastapi-mail campaign on `loop` (the same event loop as xcomm's best row)."""
    with asyncio.Runner(loop_factory=loop_factory(loop)) as runner:
        return runner.run(_fastapi_mail_campaign(port, count, tag))


def apprise_run(port: int, count: int, tag: str) -> tuple[float, int]:
    """One `notify()` per recipient, each through its own `mailto://` URL."""
    import apprise
    from apprise.plugins.email import NotifyEmail

    # Apprise's throttle is per plugin instance; a fresh instance's first send is never
    # throttled, but the figure was taken with the throttle off, so turn it off.
    NotifyEmail.request_rate_per_sec = 0
    subject, _text, html = jinja_parts()  # apprise derives the text part from the HTML
    sender = quote(SENDER)
    accepted = 0
    started = time.perf_counter()
    for recipient in recipients(count, tag):
        notifier = apprise.Apprise()
        url = f"mailto://{HOST}:{port}?mode=insecure&from={sender}&to={quote(recipient['email'])}"
        if not notifier.add(url):
            continue
        result = notifier.notify(
            body=html.render(recipient),
            title=subject.render(recipient),
            body_format=apprise.NotifyFormat.HTML,
        )
        accepted += bool(result)
    return time.perf_counter() - started, accepted


class PeerRunner:
    """Runs one Python peer's campaigns in a spawned process of its own, kept for every run.

    Args:
        run: `fastapi_mail_run` or `apprise_run`, called there as `run(port, count, tag, *args)`.
        stack: closes the process when the benchmark is done.
    """

    def __init__(
        self,
        run: Callable[..., tuple[float, int]],
        port: int,
        stack: ExitStack,
        *args: str,
        tag: str,
    ) -> None:
        self.run, self.port, self.args, self.tag = run, port, args, tag
        self.runs = 0
        context = multiprocessing.get_context("spawn")
        self.pool = stack.enter_context(ProcessPoolExecutor(1, mp_context=context))

    def __call__(self, count: int) -> tuple[float, int]:
        self.runs += 1
        tag = f"{self.tag}{self.runs}"
        return self.pool.submit(self.run, self.port, count, tag, *self.args).result()


def peer_missing(module: str) -> str | None:
    """Why the peer importing `module` cannot run, or None when it is installed."""
    if importlib.util.find_spec(module) is None:
        return "not installed (not an xcomm dependency; `make bench` installs it)"
    if importlib.util.find_spec("jinja2") is None:
        return "jinja2 is not installed (pip install 'xcomm[templates]')"
    return None


def version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


# -- measuring ---------------------------------------------------------------------------


def run_once(result: Result, sink: SmtpSink, run: Callable[[int], tuple[float, int]]) -> None:
    """One timed run of `result`'s contender; checks the client's count and the sink's."""
    count = result.messages
    before = sink.messages()
    elapsed, accepted = run(count)
    arrived = sink.wait_for_messages(before + count) - before
    if accepted != count or arrived != count:
        result.verified = False
        print(
            f"  {result.name}: {accepted}/{count} accepted by the client, {arrived} counted "
            "by the sink",
            file=sys.stderr,
        )
    result.runs.append(elapsed)
    print(
        f"  {result.name}: {count / elapsed:,.0f} msgs/s ({elapsed:.2f} s)",
        file=sys.stderr,
        flush=True,
    )


def warm_up(sink: SmtpSink, run: Callable[[int], tuple[float, int]], count: int) -> None:
    before = sink.messages()
    run(count)
    sink.wait_for_messages(before + count)


# -- reporting ---------------------------------------------------------------------------


def report(
    results: list[Result],
    *,
    reference: Result,
    best: Result,
    nodemailer: Result | None,
    skipped: dict[str, str],
    default_loop: Result | None = None,
    shared: Result | None = None,
    fresh: Result | None = None,
) -> None:
    """One JSON line per result, then a table and the bars."""
    common = metadata("bulk")
    for r in results:
        line = {
            "name": r.name,
            "messages": r.messages,
            "seconds": round(r.seconds, 4),
            "msgs_per_s": round(r.rate, 1),
            "ratio_to_smtp_source": round(r.rate / reference.rate, 3),
            "runs": [round(s, 4) for s in r.runs],
            "verified": r.verified,
            "tags": r.tags,
            **r.settings,
            **common,
        }
        print(json.dumps(line))
    for name, why in skipped.items():
        print(json.dumps({"name": name, "skipped": why, **common}))

    rows = [["contender", "messages", "runs", "msgs/s", "vs smtp-source", "xcomm best is", "note"]]
    for r in results:
        note = ", ".join(r.tags)
        if not r.verified:
            note = "NOT VERIFIED" + (f", {note}" if note else "")
        rows.append(
            [
                r.name,
                f"{r.messages:,}",
                str(len(r.runs)),
                f"{r.rate:,.0f}",
                f"{r.rate / reference.rate:.3f}",
                "-" if r is best else f"{best.rate / r.rate:.2f}x",
                note,
            ]
        )
    print()
    print(
        "Bulk campaign throughput: personalised Template (subject/text/HTML, ~1 KB) to "
        "smtp-sink on loopback, median of the runs; "
        f"'xcomm best is' = {best.name} / contender"
    )
    print_table(rows, note_last=True)
    print()
    loop = best.settings.get("loop", "asyncio")
    processes = f"{loop}, processes={shared.settings['processes']}" if shared else ""
    cold = f"{processes}, first campaign of a new process"
    for xcomm, on in ((best, loop), (shared, processes), (fresh, cold), (default_loop, "asyncio")):
        if xcomm is None:
            continue
        ratio = xcomm.rate / reference.rate
        verdict = "met" if ratio >= 0.5 else "NOT met"
        print(f"bar: xcomm (outbox on, {on}) >= 0.5x smtp-source: {ratio:.2f}x, {verdict}")
        if nodemailer is not None:
            ratio = xcomm.rate / nodemailer.rate
            verdict = "met" if ratio >= 3.0 else "NOT met"
            print(
                f"bar: xcomm (outbox on, {on}) >= 3x nodemailer (composing): {ratio:.2f}x, "
                f"{verdict}"
            )
    for name, why in skipped.items():
        print(f"skipped: {name}: {why}")


# -- main --------------------------------------------------------------------------------


def _ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_bulk",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--recipients", type=int, default=DEFAULT_RECIPIENTS, help="messages per run"
    )
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_RECIPIENTS:,} recipients")
    parser.add_argument(
        "--repeats", type=int, default=3, help="interleaved rounds after the sweep (default: 3)"
    )
    parser.add_argument(
        "--pool-sizes", default=",".join(map(str, POOL_SIZES)), help="SMTP pool sizes to sweep"
    )
    parser.add_argument(
        "--max-concurrent",
        default=",".join(map(str, MAX_CONCURRENT)),
        help="bulk sender max_concurrent values to sweep",
    )
    parser.add_argument("--no-node", action="store_true", help="skip nodemailer")
    parser.add_argument(
        "--peer-messages",
        type=int,
        default=PEER_MESSAGES,
        help=f"fastapi-mail's messages per run, at most --recipients; 0 skips it "
        f"(default: {PEER_MESSAGES:,})",
    )
    parser.add_argument(
        "--apprise-messages",
        type=int,
        default=APPRISE_MESSAGES,
        help=f"apprise's messages per run, at most --recipients; 0 skips it "
        f"(default: {APPRISE_MESSAGES:,})",
    )
    parser.add_argument(
        "--loop",
        choices=("auto", "asyncio", "uvloop"),
        default="auto",
        help="xcomm's event loop; auto: uvloop when installed, and asyncio's default loop "
        "side by side (default: auto)",
    )
    args = parser.parse_args(argv)
    if args.loop == "auto":
        args.loop = "uvloop" if importlib.util.find_spec("uvloop") is not None else "asyncio"
    elif args.loop == "uvloop" and importlib.util.find_spec("uvloop") is None:
        parser.error("--loop uvloop: uvloop is not installed (pip install uvloop)")
    if args.quick:
        args.recipients = QUICK_RECIPIENTS
    if args.recipients < 1 or args.repeats < 1:
        parser.error("--recipients and --repeats must be positive")
    if args.peer_messages < 0 or args.apprise_messages < 0:
        parser.error("--peer-messages and --apprise-messages must be 0 (skip) or positive")
    args.peer_messages = min(args.peer_messages, args.recipients)
    args.apprise_messages = min(args.apprise_messages, args.recipients)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run every contender against one smtp-sink and print the results; 0 when all verified."""
    args = parse_args(argv)
    try:
        ensure_postfix_tools()
    except (MissingToolError, subprocess.CalledProcessError, OSError) as exc:
        print(f"bench_bulk: {exc}; {INSTALL_HINT}", file=sys.stderr)
        return 2
    n = args.recipients
    warmup = min(n, max(500, n // 20))
    skipped: dict[str, str] = {}  # contender -> why
    # xcomm as pip installs it: with its bytecode compiled. In an editable install under
    # PYTHONDONTWRITEBYTECODE=1 no bytecode is ever written, and every helper process of a
    # `processes=2` run would compile each module again (~0.15 s of CPU at its start).
    compileall.compile_dir(REPO_ROOT / "xcomm", quiet=1)

    with (
        SmtpSink() as sink,
        tempfile.TemporaryDirectory(prefix="bench-bulk-") as tmp,
        ExitStack() as peer_processes,
    ):
        workdir = Path(tmp)
        port = sink.port
        print(
            f"smtp-sink on {HOST}:{port}; {n:,} recipients per run; xcomm on {args.loop}",
            file=sys.stderr,
        )

        def xcomm(
            pool_size: int,
            max_concurrent: int,
            *,
            sqlite: bool,
            loop: str = args.loop,
            processes: int = 1,
        ) -> XcommRunner:
            return XcommRunner(
                port,
                workdir,
                pool_size=pool_size,
                max_concurrent=max_concurrent,
                sqlite=sqlite,
                loop=loop,
                processes=processes,
            )

        def source(count: int) -> tuple[float, int]:
            seconds = run_smtp_source(
                HOST, port, messages=count, sessions=SMTP_SOURCE_SESSIONS, reuse_connections=True
            )
            return seconds, count

        print("warm-up", file=sys.stderr, flush=True)
        warm_up(sink, source, warmup)
        warm_up(sink, xcomm(8, 32, sqlite=True), warmup)

        sweep: list[Result] = []

        def best_of_sweep(processes: int) -> Result:
            """Every combination once, SQLite outbox on; the fastest (tagged)."""
            print(f"sweep, processes={processes} (one run each)", file=sys.stderr, flush=True)
            results = []
            shared = f", processes={processes}" if processes > 1 else ""
            for pool_size in _ints(args.pool_sizes):
                for max_concurrent in _ints(args.max_concurrent):
                    result = Result(
                        f"xcomm bulk pool={pool_size} max_concurrent={max_concurrent}{shared}"
                        " (sweep)",
                        n,
                        settings={
                            "pool_size": pool_size,
                            "max_concurrent": max_concurrent,
                            "outbox": "sqlite",
                            "track_delivery": True,
                            "loop": args.loop,
                            "processes": processes,
                        },
                    )
                    runner = xcomm(pool_size, max_concurrent, sqlite=True, processes=processes)
                    run_once(result, sink, runner)
                    results.append(result)
            sweep.extend(results)
            chosen = max(results, key=lambda result: result.rate)
            chosen.tags.append("best of sweep")
            return chosen

        chosen = best_of_sweep(1)
        pool_size, max_concurrent = chosen.settings["pool_size"], chosen.settings["max_concurrent"]

        # Interleaved rounds: the reference, the best configuration (SQLite and memory
        # outbox), and nodemailer, in turn.
        reference = Result(
            f"smtp-source -s {SMTP_SOURCE_SESSIONS} -d",
            n,
            settings={"sessions": SMTP_SOURCE_SESSIONS, "length": 1024},
            tags=["physical limit"],
        )
        on = f", {args.loop}" if args.loop != "asyncio" else ""
        best = Result(
            f"xcomm bulk pool={pool_size} max_concurrent={max_concurrent}, SQLite outbox{on}",
            n,
            settings={**chosen.settings},
            tags=["best", "outbox on"],
        )
        memory = Result(
            f"xcomm bulk pool={pool_size} max_concurrent={max_concurrent}, memory:// outbox{on}",
            n,
            settings={**chosen.settings, "outbox": "memory"},
            tags=["no SQLite"],
        )
        contenders: list[tuple[Result, Callable[[int], tuple[float, int]]]] = [
            (reference, source),
            (best, xcomm(pool_size, max_concurrent, sqlite=True)),
            (memory, xcomm(pool_size, max_concurrent, sqlite=False)),
        ]
        shared: Result | None = None  # the same campaign from one process per core
        fresh: Result | None = None  # and as the first campaign of a new process
        cores = os.cpu_count() or 1
        if cores > 1:
            # Warmed up as every contender is: the helpers' zygote is started here (the cold
            # start is the fresh-process contender's to show). Then its own sweep: each process
            # takes 1/N of the pool and of max_concurrent, so one process's best need not be N's.
            warm_up(sink, xcomm(pool_size, max_concurrent, sqlite=True, processes=cores), warmup)
            settings = {**best_of_sweep(cores).settings}  # its own copy, as `best` has
            pool, in_flight = settings["pool_size"], settings["max_concurrent"]
            name = f"xcomm bulk pool={pool} max_concurrent={in_flight}, SQLite outbox{on}"
            name += f", processes={cores}"
            shared = Result(name, n, settings=settings, tags=["outbox on", f"{cores} processes"])
            shared_runner = xcomm(pool, in_flight, sqlite=True, processes=cores)
            contenders.append((shared, shared_runner))
            fresh = Result(
                f"{name}, first campaign of a new process",
                n,
                settings={**settings, "fresh_process": True},
                tags=["outbox on", f"{cores} processes", "helpers' zygote starts cold"],
            )
            fresh_runner = FreshProcessRunner(
                port,
                workdir,
                pool_size=pool,
                max_concurrent=in_flight,
                loop=args.loop,
                processes=cores,
            )
            contenders.append((fresh, fresh_runner))
        default_loop: list[Result] = []  # the same on asyncio's loop, when xcomm ran on uvloop
        if args.loop != "asyncio":
            for sqlite, outbox in ((True, "SQLite"), (False, "memory://")):
                result = Result(
                    f"xcomm bulk pool={pool_size} max_concurrent={max_concurrent}, "
                    f"{outbox} outbox, asyncio loop",
                    n,
                    settings={
                        **chosen.settings,
                        "outbox": "sqlite" if sqlite else "memory",
                        "loop": "asyncio",
                    },
                    tags=["default loop"],
                )
                default_loop.append(result)
                contenders.append(
                    (result, xcomm(pool_size, max_concurrent, sqlite=sqlite, loop="asyncio"))
                )
        nodemailer: Result | None = None
        node_runner: NodemailerRunner | None = None
        if args.no_node:
            skipped["nodemailer"] = "--no-node"
        else:
            script, why = nodemailer_setup(workdir)
            if script is None:
                skipped["nodemailer"] = why
            else:
                node_runner = NodemailerRunner(port, script)
                try:
                    warm_up(sink, node_runner, warmup)
                except (OSError, RuntimeError, subprocess.TimeoutExpired, ValueError) as exc:
                    skipped["nodemailer"] = str(exc)
                    node_runner = None
            if node_runner is not None:
                nodemailer = Result(
                    f"nodemailer pooled ({NODE_CONNECTIONS} connections), composing",
                    n,
                    settings={
                        "max_connections": NODE_CONNECTIONS,
                        "in_flight": NODE_IN_FLIGHT,
                        **node_runner.versions,
                    },
                    tags=["peer"],
                )
                contenders.append((nodemailer, node_runner))

        def python_peer(
            name: str, count: int, run: Callable[..., tuple[float, int]], *args: str
        ) -> PeerRunner | None:
            """Start the peer's process and warm it up; None (noted in `skipped`) if it fails."""
            runner = PeerRunner(run, port, peer_processes, *args, tag=name.replace("-", ""))
            try:
                warm_up(sink, runner, min(count, max(20, count // 10)))
            except Exception as exc:  # a peer that cannot run is reported, not fatal
                skipped[name] = f"failed: {exc!r}"[:300]
                return None
            return runner

        peers: list[Result] = []  # fastapi-mail and apprise, when installed
        count = args.peer_messages
        why = peer_missing("fastapi_mail") if count else "--peer-messages 0"
        if why is not None:
            skipped["fastapi-mail"] = why
        elif peer_runner := python_peer("fastapi-mail", count, fastapi_mail_run, args.loop):
            result = Result(
                f"fastapi-mail send_message, {PEER_CONCURRENCY} workers{on}",
                count,
                settings={
                    "concurrency": PEER_CONCURRENCY,
                    "loop": args.loop,
                    "fastapi_mail": version("fastapi-mail"),
                    "aiosmtplib": version("aiosmtplib"),
                },
                tags=["peer", "a connection per message", f"{count:,} per run"],
            )
            peers.append(result)
            contenders.append((result, peer_runner))
        count = args.apprise_messages
        why = peer_missing("apprise") if count else "--apprise-messages 0"
        if why is not None:
            skipped["apprise"] = why
        elif peer_runner := python_peer("apprise", count, apprise_run):
            result = Result(
                "apprise mailto://, a notify() per recipient, throttle off",
                count,
                settings={"concurrency": 1, "apprise": version("apprise")},
                tags=["peer", "sequential, a connection per message", f"{count:,} per run"],
            )
            peers.append(result)
            contenders.append((result, peer_runner))

        for round_number in range(1, args.repeats + 1):
            print(f"round {round_number}/{args.repeats}", file=sys.stderr, flush=True)
            for result, run in contenders:
                run_once(result, sink, run)

    results = [reference, best, *(r for r in (shared, fresh) if r), memory, *default_loop]
    if nodemailer is not None:
        results.append(nodemailer)
    results += peers
    results += sweep
    report(
        results,
        reference=reference,
        best=best,
        nodemailer=nodemailer,
        skipped=skipped,
        default_loop=default_loop[0] if default_loop else None,
        shared=shared,
        fresh=fresh,
    )
    return 0 if all(r.verified for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
