"""SMTP throughput: xcomm's pooled provider against the clients people use today.

Every contender sends the same 1 KB messages to one Postfix `smtp-sink` on loopback, in one
run, side by side:

- `smtp-source`: Postfix's C load generator over reused sessions, the physical limit;
- `xcomm compose`: `CommManager` + `comm.smtp(pool_size=...)`, each message built with
  `provider.compose()...send()` (the real user path), for a few pool sizes;
- `xcomm send(prebuilt)`: the same with `EmailMessage`s built beforehand (`provider.send`),
  which separates the cost of composing from the cost of sending;
- `smtplib reused`: one blocking connection, sequential, each message an
  `email.message.EmailMessage` built as its users do;
- `aiosmtplib per message`: `await aiosmtplib.send(msg, ...)`, a new connection per message
  (what users write today), messages built the same way;
- `smtplib reused, pre-rendered` and `aiosmtplib N reused, pre-rendered` (a hand-rolled pool,
  one connection per worker): messages rendered beforehand, so only the protocol is timed.
  Building messages with the standard `email` package costs more than sending them.

The async clients run with the same bounded concurrency: a fixed set of worker tasks pulling
from one iterator (never one task per message). Each contender gets a warm-up, then
up to `--repeats` timed runs (fewer once `--budget` seconds are spent); the median counts.
The Python peers send `--peer-messages` per run (their rate does not depend on the count).
Every message must be accepted: the clients' answers and the sink's own counter are checked.

    python -m benchmarks.bench_smtp              # 20,000 messages per run
    python -m benchmarks.bench_smtp --quick      # 2,000

Output: one JSON line per result, then a table.
"""

from __future__ import annotations

import argparse
import asyncio
import email.message
import email.utils
import json
import smtplib
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiosmtplib

from benchmarks._report import metadata, print_table
from benchmarks._servers import (
    INSTALL_HINT,
    MissingToolError,
    SmtpSink,
    ensure_postfix_tools,
    run_smtp_source,
)
from xcomm import Address, CommManager, EmailMessage

REPO_ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
SENDER = "bench@example.com"
RECIPIENT = "sink@example.com"
# 1 KB of body text in 13 lines of at most 78 characters, as smtp-source -l 1024 sends.
BODY = ("".join(f"{i:02d} " + "x" * 75 + "\n" for i in range(13)))[:1023] + "\n"
assert len(BODY) == 1024

DEFAULT_MESSAGES = 20_000
QUICK_MESSAGES = 2_000
DEFAULT_POOL_SIZE = 8
POOL_SIZES = (4, 8, 16)
LIBRARY_DEFAULT_POOL_SIZE = 4  # comm.smtp(pool_size=...)'s default
MAX_MESSAGES_PER_CONNECTION = 1000

SendOne = Callable[[int], Awaitable[bool]]


@dataclass
class Result:
    """One contender's timed runs."""

    name: str
    messages: int
    runs: list[float]
    settings: dict[str, Any] = field(default_factory=dict)
    verified: bool = True

    @property
    def seconds(self) -> float:
        return statistics.median(self.runs)

    @property
    def rate(self) -> float:
        return self.messages / self.seconds


# -- message builders --------------------------------------------------------------------


def stdlib_message(n: int) -> email.message.EmailMessage:
    """The message a user of smtplib/aiosmtplib builds: the same headers and body as xcomm's."""
    msg = email.message.EmailMessage()
    msg["From"] = SENDER
    msg["To"] = RECIPIENT
    msg["Subject"] = f"bench {n}"
    msg["Date"] = email.utils.formatdate(usegmt=True)
    msg["Message-ID"] = email.utils.make_msgid(domain="example.com")
    msg.set_content(BODY)
    return msg


def xcomm_message(n: int) -> EmailMessage:
    """A pre-built xcomm message (what `compose()...build()` returns)."""
    return EmailMessage(
        sender=Address(email=SENDER),
        to=(Address(email=RECIPIENT),),
        subject=f"bench {n}",
        text=BODY,
    )


# -- drivers ----------------------------------------------------------------------------


async def drive(send_one: SendOne, messages: int, concurrency: int) -> int:
    """Send `messages` with `concurrency` workers pulling indexes; return how many succeeded."""
    indexes = iter(range(messages))
    accepted = 0

    async def worker() -> None:
        nonlocal accepted
        for n in indexes:  # one shared iterator: each worker takes the next index
            if await send_one(n):
                accepted += 1

    async with asyncio.TaskGroup() as tg:
        for _ in range(min(concurrency, messages)):
            tg.create_task(worker())
    return accepted


async def xcomm_run(
    port: int, messages: int, *, pool_size: int, concurrency: int, prebuilt: bool
) -> tuple[float, int]:
    async with CommManager(rate_limits=None) as comm:
        smtp = comm.smtp(
            HOST,
            port,
            sender=SENDER,
            pool_size=pool_size,
            max_messages_per_connection=MAX_MESSAGES_PER_CONNECTION,
        )
        if prebuilt:
            built = [xcomm_message(n) for n in range(messages)]

            async def send_one(n: int) -> bool:
                result = await smtp.send(built[n])
                return result.accepted == (RECIPIENT,)

        else:

            async def send_one(n: int) -> bool:
                result = await smtp.compose().to(RECIPIENT).subject(f"bench {n}").body(BODY).send()
                return result.accepted == (RECIPIENT,)

        started = time.perf_counter()
        accepted = await drive(send_one, messages, concurrency)
        elapsed = time.perf_counter() - started
    return elapsed, accepted


def smtplib_run(port: int, messages: int, *, prerendered: bool = False) -> tuple[float, int]:
    accepted = 0
    rendered = [stdlib_message(n).as_bytes() for n in range(messages)] if prerendered else []
    started = time.perf_counter()
    with smtplib.SMTP(HOST, port) as client:
        for n in range(messages):
            if prerendered:
                refused = client.sendmail(SENDER, [RECIPIENT], rendered[n])
            else:
                refused = client.send_message(stdlib_message(n))
            accepted += not refused
    return time.perf_counter() - started, accepted


async def aiosmtplib_per_message_run(
    port: int, messages: int, *, concurrency: int
) -> tuple[float, int]:
    async def send_one(n: int) -> bool:
        errors, _ = await aiosmtplib.send(stdlib_message(n), hostname=HOST, port=port)
        return not errors

    started = time.perf_counter()
    accepted = await drive(send_one, messages, concurrency)
    return time.perf_counter() - started, accepted


async def aiosmtplib_pool_run(port: int, messages: int, *, connections: int) -> tuple[float, int]:
    """One reused connection per worker, sending pre-rendered bytes: the protocol cost alone."""
    rendered = [stdlib_message(n).as_bytes() for n in range(messages)]
    indexes = iter(range(messages))
    accepted = 0

    async def worker() -> None:
        nonlocal accepted
        async with aiosmtplib.SMTP(hostname=HOST, port=port) as client:
            for n in indexes:
                errors, _ = await client.sendmail(SENDER, [RECIPIENT], rendered[n])
                accepted += not errors

    started = time.perf_counter()
    async with asyncio.TaskGroup() as tg:
        for _ in range(connections):
            tg.create_task(worker())
    return time.perf_counter() - started, accepted


# -- measuring --------------------------------------------------------------------------


def measure(
    name: str,
    sink: SmtpSink,
    run: Callable[[int], tuple[float, int]],
    *,
    messages: int,
    warmup: int,
    repeats: int,
    budget: float,
    **settings: Any,
) -> Result:
    """Warm up, then time up to `repeats` runs of `run(messages)`, checking every message arrived.

    Runs stop early once the timed runs add up to `budget` seconds (at least one run).
    """
    print(f"  {name}: warm-up {warmup}, up to {repeats} x {messages}", file=sys.stderr, flush=True)
    result = Result(name, messages, [], settings)
    for count, timed in [(warmup, False)] + [(messages, True)] * repeats:
        if count == 0 or (timed and sum(result.runs) >= budget):
            continue
        before = sink.messages()
        elapsed, accepted = run(count)
        arrived = sink.wait_for_messages(before + count) - before
        if accepted != count or arrived != count:
            result.verified = False
            print(
                f"  {name}: {accepted}/{count} accepted by the client, {arrived} counted by "
                "the sink",
                file=sys.stderr,
            )
        if timed:
            result.runs.append(elapsed)
    return result


# -- reporting --------------------------------------------------------------------------


def report(results: list[Result], *, reference: Result, xcomm: Result) -> None:
    """One JSON line per result, then a table."""
    common = metadata("smtp")
    for r in results:
        line = {
            "name": r.name,
            "messages": r.messages,
            "seconds": round(r.seconds, 4),
            "msgs_per_s": round(r.rate, 1),
            "ratio_to_smtp_source": round(r.rate / reference.rate, 3),
            "runs": [round(s, 4) for s in r.runs],
            "verified": r.verified,
            **r.settings,
            **common,
        }
        print(json.dumps(line))

    rows = [["contender", "messages", "runs", "msgs/s", "vs smtp-source", "xcomm is", "note"]]
    for r in results:
        note = ", ".join(r.settings.get("tags", []))
        if not r.verified:
            note = "NOT VERIFIED" + (f", {note}" if note else "")
        rows.append(
            [
                r.name,
                f"{r.messages:,}",
                str(len(r.runs)),
                f"{r.rate:,.0f}",
                f"{r.rate / reference.rate:.3f}",
                "-" if r is xcomm else f"{xcomm.rate / r.rate:.2f}x",
                note,
            ]
        )
    print()
    print(
        f"SMTP throughput: 1 KB messages to smtp-sink on loopback, median of the runs; "
        f"'xcomm is' = {xcomm.name} / contender"
    )
    print_table(rows, note_last=True)


# -- main -------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_smtp", description=__doc__)
    parser.add_argument("--messages", type=int, default=DEFAULT_MESSAGES, help="per timed run")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_MESSAGES} messages")
    parser.add_argument("--repeats", type=int, default=3, help="most timed runs per contender")
    parser.add_argument(
        "--budget",
        type=float,
        default=10.0,
        help="seconds of timed runs after which a contender stops repeating (default: 10)",
    )
    parser.add_argument(
        "--concurrency", type=int, default=32, help="worker tasks of the async clients"
    )
    parser.add_argument(
        "--pool-sizes",
        default=",".join(map(str, POOL_SIZES)),
        help="xcomm pool sizes to try (comma-separated)",
    )
    parser.add_argument(
        "--peer-messages",
        type=int,
        default=5_000,
        help="messages per run for the Python peers, which are slower and whose rate does not "
        "depend on the count (default: 5000; 0 for --messages)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.messages = QUICK_MESSAGES
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run every contender against one smtp-sink and print the results; 0 when all verified."""
    args = parse_args(argv)
    try:
        ensure_postfix_tools()
    except (MissingToolError, subprocess.CalledProcessError, OSError) as exc:
        print(f"bench_smtp: {exc}; {INSTALL_HINT}", file=sys.stderr)
        return 2
    n = args.messages
    peer_n = min(n, args.peer_messages) if args.peer_messages > 0 else n
    concurrency = args.concurrency
    pool_sizes = [int(p) for p in args.pool_sizes.split(",") if p.strip()]
    main_pool = DEFAULT_POOL_SIZE if DEFAULT_POOL_SIZE in pool_sizes else pool_sizes[0]

    def options(messages: int, *, repeats: int = args.repeats) -> dict[str, Any]:
        return {
            "messages": messages,
            "warmup": min(messages, max(200, n // 20)),
            "repeats": repeats,
            "budget": args.budget,
        }

    results: list[Result] = []
    with SmtpSink() as sink:
        port = sink.port
        print(f"smtp-sink on {HOST}:{port}", file=sys.stderr)

        def xcomm_runner(size: int, *, prebuilt: bool) -> Callable[[int], tuple[float, int]]:
            def run(count: int) -> tuple[float, int]:
                return asyncio.run(
                    xcomm_run(
                        port, count, pool_size=size, concurrency=concurrency, prebuilt=prebuilt
                    )
                )

            return run

        reference = measure(
            f"smtp-source -s {main_pool}",
            sink,
            lambda count: (run_smtp_source(HOST, port, messages=count, sessions=main_pool), count),
            sessions=main_pool,
            **options(n),
        )
        results.append(reference)

        # The pool-size sweep: the main size gets the full repeats, the others one run each.
        by_pool = {
            size: measure(
                f"xcomm compose pool={size}",
                sink,
                xcomm_runner(size, prebuilt=False),
                pool_size=size,
                concurrency=concurrency,
                **options(n, repeats=args.repeats if size == main_pool else 1),
            )
            for size in pool_sizes
        }
        xcomm = by_pool[main_pool]
        best = max(by_pool.values(), key=lambda r: r.rate)
        for size, r in by_pool.items():
            r.settings["tags"] = [
                tag
                for tag, on in (
                    ("best", r is best),
                    ("bench default", r is xcomm),
                    ("library default", size == LIBRARY_DEFAULT_POOL_SIZE),
                )
                if on
            ]
        results.extend(by_pool.values())
        results.append(
            measure(
                f"xcomm send(prebuilt) pool={main_pool}",
                sink,
                xcomm_runner(main_pool, prebuilt=True),
                pool_size=main_pool,
                concurrency=concurrency,
                **options(n),
            )
        )
        results.append(
            measure(
                "smtplib reused connection",
                sink,
                lambda count: smtplib_run(port, count),
                connections=1,
                **options(peer_n),
            )
        )
        results.append(
            measure(
                "smtplib reused, pre-rendered",
                sink,
                lambda count: smtplib_run(port, count, prerendered=True),
                connections=1,
                **options(peer_n),
            )
        )
        results.append(
            measure(
                "aiosmtplib.send per message",
                sink,
                lambda count: asyncio.run(
                    aiosmtplib_per_message_run(port, count, concurrency=concurrency)
                ),
                concurrency=concurrency,
                **options(peer_n),
            )
        )
        results.append(
            measure(
                f"aiosmtplib {main_pool} reused, pre-rendered",
                sink,
                lambda count: asyncio.run(aiosmtplib_pool_run(port, count, connections=main_pool)),
                connections=main_pool,
                **options(peer_n),
            )
        )

    report(results, reference=reference, xcomm=xcomm)
    return 0 if all(r.verified for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
