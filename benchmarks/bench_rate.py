"""Rate limiting under load: how many messages a rate-limited campaign sends in 10 seconds.

The issue's bar: "at 1,000 messages/s (`rate_limit=60_000`, per minute) over 10 s the campaign
sends within 1% of 10,000". A token bucket starts full, so `burst` messages go at once and the
rate applies after them: in a window of W seconds from the first send, a bucket that binds
grants `burst + rate * W`. The bar is judged on the sustained part, `sent - burst`, against
`rate * W` (so the total against `10,000 + burst`).

Each configuration runs `comm.create_bulk_sender(smtp, max_concurrent=32, rate_limit=...)`
through a pool of 8 connections to Postfix's `smtp-sink` on loopback, every message tracked in
a fresh SQLite outbox, with more recipients than the window can take:

- `rate_limit=60_000` and `rate_limit=6_000`: the issue's form, a number of messages per
  minute; a campaign gives it a burst of one second's worth (1,000 and 100);
- `RateLimit(rate=60_000, per=60, burst=100)` and `RateLimit(rate=6_000, per=60, burst=10)`:
  the same rates with a tenth of a second's burst (`--burst-seconds`);
- no limit: what the sender can do on this machine at all (the ceiling of every row).

When each message was accepted is taken from the manager's metrics (a `MetricsCollector`
subclass, passed as `CommManager(metrics=...)`, stamps `time.monotonic()` on each successful
`send`); the count at t = W comes from those stamps, the window starting at the first one. A
second window of W seconds starting STEADY_FROM (2 s) after the first send leaves out the
start-up and the burst (for the rows whose burst drains within a second): it shows the limiter's
sustained accuracy alone. The campaign is cancelled half a second after that window closes.
The sink's own counter checks that it received at least what the client counted.
Configurations run in interleaved rounds (`--repeats`, default 3) and each figure is the median
of its rounds.

    python -m benchmarks.bench_rate                 # 3 rounds of 5 configurations (~4 min)
    python -m benchmarks.bench_rate --quick         # 1 round
    python -m benchmarks.bench_rate --seconds 20

Output: one JSON line per configuration, then a table and the bar.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks._report import metadata, print_table
from benchmarks._servers import INSTALL_HINT, MissingToolError, SmtpSink, ensure_postfix_tools
from xcomm import CommManager, MetricsCollector, RateLimit, Template
from xcomm.bulk._campaign import campaign_limit

HOST = "127.0.0.1"
SENDER = "news@example.com"
POOL_SIZE = 8
MAX_CONCURRENT = 32
MAX_MESSAGES_PER_CONNECTION = 100_000
TOLERANCE = 0.01  # the bar: within 1%
MAX_RECIPIENTS = 1_000_000  # never reached: the run is cancelled when the window has closed
GRACE = 0.5  # seconds the campaign goes on after the window, so the window's sends complete
STEADY_FROM = 2.0  # the steady window starts this long after the first send

TEMPLATE = Template(
    subject="{{ name }}, your November digest",
    text="Hi {{ name }},\n\nYour personal code is {{ code }}.\n\nThe Example team\n",
    html="<p>Hi {{ name }},</p><p>Your personal code is <b>{{ code }}</b>.</p>",
    name="bench-rate",
)


class StampedMetrics(MetricsCollector):
    """The manager's metrics, also stamping the monotonic time of every successful send."""

    def __init__(self) -> None:
        super().__init__()
        self.sent_at: list[float] = []

    def record(
        self,
        provider: str,
        operation: str,
        *,
        duration: float,
        success: bool,
        error: str | None = None,
    ) -> None:
        if success and operation == "send":
            self.sent_at.append(time.monotonic())
        super().record(provider, operation, duration=duration, success=success, error=error)


@dataclass
class Config:
    """One rate limit to measure."""

    name: str
    rate_limit: RateLimit | float | None
    tags: list[str] = field(default_factory=list)

    @property
    def limit(self) -> RateLimit | None:
        """The campaign's bucket as the bulk sender builds it (a number: per minute, with a
        burst of one second's worth)."""
        return campaign_limit(self.rate_limit)

    @property
    def per_second(self) -> float | None:
        limit = self.limit
        return limit.per_second if limit else None

    @property
    def burst(self) -> float:
        limit = self.limit
        return limit.capacity if limit else 0.0


@dataclass
class Run:
    """What one campaign sent in the window."""

    in_window: int  # sends in [t0, t0 + W], t0 the first send
    second_half: int  # sends in (t0 + W/2, t0 + W]
    steady: int  # sends in (t0 + STEADY_FROM, t0 + STEADY_FROM + W]
    client: int  # sends the client counted before it was cancelled
    sink: int  # messages the sink counted meanwhile
    finished_early: bool  # ran out of recipients before the window closed


@dataclass
class Result:
    """A configuration's runs."""

    config: Config
    seconds: float
    runs: list[Run] = field(default_factory=list)

    @property
    def in_window(self) -> float:
        return statistics.median(r.in_window for r in self.runs)

    @property
    def sustained(self) -> float | None:
        """Sends in the window beyond the initial burst; None if the burst never ran out."""
        excess = self.in_window - self.config.burst
        return excess if self.config.limit and excess > 0 else None

    @property
    def second_half_rate(self) -> float:
        return statistics.median(r.second_half for r in self.runs) / (self.seconds / 2)

    @property
    def steady(self) -> float | None:
        """Sends in the steady window, for limits whose burst is gone within a second."""
        rate = self.config.per_second
        if rate is None or self.config.burst > rate:
            return None
        return statistics.median(r.steady for r in self.runs)

    @property
    def verified(self) -> bool:
        return all(r.sink >= r.client and not r.finished_early for r in self.runs)


def recipients(tag: str) -> Iterator[dict[str, str]]:
    """Distinct recipients over 50 domains, more than any window can take."""
    for n in range(MAX_RECIPIENTS):
        yield {
            "email": f"user{n:07d}.{tag}@example{n % 50}.com",
            "name": f"User {n}",
            "code": str(n),
        }


async def campaign(
    port: int, rate_limit: RateLimit | float | None, *, seconds: float, outbox: Path, tag: str
) -> tuple[list[float], bool]:
    """Run a campaign until `seconds` after its first send; return the send times."""
    metrics = StampedMetrics()
    finished = False
    async with CommManager(outbox=outbox, metrics=metrics) as comm:
        smtp = comm.smtp(
            HOST,
            port,
            sender=SENDER,
            pool_size=POOL_SIZE,
            max_messages_per_connection=MAX_MESSAGES_PER_CONNECTION,
        )
        bulk = comm.create_bulk_sender(
            smtp, max_concurrent=MAX_CONCURRENT, rate_limit=rate_limit, track_delivery=True
        )
        send = asyncio.create_task(
            bulk.send_campaign(template=TEMPLATE, recipients=recipients(tag), campaign_id=tag)
        )
        try:
            while not send.done():
                times = metrics.sent_at
                if times and time.monotonic() >= times[0] + seconds:
                    break
                await asyncio.sleep(0.01)
            finished = send.done()
        finally:
            send.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await send
    return list(metrics.sent_at), finished


def measure(sink: SmtpSink, config: Config, *, seconds: float, workdir: Path, tag: str) -> Run:
    """One timed campaign of `config`."""
    before = sink.messages()
    outbox = workdir / f"{tag}.sqlite3"
    times, finished = asyncio.run(
        campaign(
            sink.port,
            config.rate_limit,
            seconds=STEADY_FROM + seconds + GRACE,
            outbox=outbox,
            tag=tag,
        )
    )
    for suffix in ("", "-wal", "-shm"):
        Path(f"{outbox}{suffix}").unlink(missing_ok=True)
    client = len(times)
    arrived = sink.wait_for_messages(before + client) - before
    t0 = times[0]

    def sends(start: float, end: float) -> int:
        return bisect.bisect_right(times, t0 + end) - bisect.bisect_right(times, t0 + start)

    run = Run(
        in_window=bisect.bisect_right(times, t0 + seconds),
        second_half=sends(seconds / 2, seconds),
        steady=sends(STEADY_FROM, STEADY_FROM + seconds),
        client=client,
        sink=arrived,
        finished_early=finished,
    )
    print(
        f"  {config.name}: {run.in_window:,} sent in {seconds:g} s "
        f"(client {client:,}, sink {arrived:,})",
        file=sys.stderr,
        flush=True,
    )
    return run


def configs(burst_seconds: float) -> list[Config]:
    def small_burst(per_minute: int) -> RateLimit:
        return RateLimit(rate=per_minute, per=60.0, burst=max(1.0, per_minute / 60 * burst_seconds))

    fast, slow = small_burst(60_000), small_burst(6_000)
    return [
        Config("rate_limit=60_000", 60_000, ["the issue's form"]),
        Config(f"RateLimit(60_000, per=60, burst={fast.capacity:g})", fast, ["small burst"]),
        Config("rate_limit=6_000", 6_000, ["the issue's form"]),
        Config(f"RateLimit(6_000, per=60, burst={slow.capacity:g})", slow, ["small burst"]),
        Config("no limit", None, ["ceiling"]),
    ]


# -- reporting ---------------------------------------------------------------------------


def _error(result: Result) -> float | None:
    rate, sustained = result.config.per_second, result.sustained
    if rate is None or sustained is None:
        return None
    return sustained / (rate * result.seconds) - 1


def _steady_error(result: Result) -> float | None:
    rate, steady = result.config.per_second, result.steady
    if rate is None or steady is None:
        return None
    return steady / (rate * result.seconds) - 1


def report(results: list[Result], *, seconds: float) -> None:
    """One JSON line per configuration, then a table and the bar."""
    common = metadata("rate")
    for r in results:
        error, steady_error = _error(r), _steady_error(r)
        line: dict[str, Any] = {
            "name": r.config.name,
            "rate_per_s": r.config.per_second,
            "burst": r.config.burst if r.config.limit else None,
            "seconds": seconds,
            "sent_in_window": r.in_window,
            "expected_in_window": (
                r.config.burst + r.config.per_second * seconds if r.config.per_second else None
            ),
            "sustained": r.sustained,
            "sustained_error": round(error, 5) if error is not None else None,
            "second_half_per_s": round(r.second_half_rate, 1),
            "steady_from": STEADY_FROM,
            "steady": r.steady,
            "steady_error": round(steady_error, 5) if steady_error is not None else None,
            "runs_steady": [run.steady for run in r.runs],
            "runs": [r.in_window for r in r.runs],
            "runs_second_half": [run.second_half for run in r.runs],
            "max_concurrent": MAX_CONCURRENT,
            "pool_size": POOL_SIZE,
            "outbox": "sqlite",
            "verified": r.verified,
            "tags": r.config.tags,
            **common,
        }
        print(json.dumps(line))

    rows = [
        [
            "rate limit",
            "rate/s",
            "burst",
            f"sent in {seconds:g} s",
            "expected",
            "sent - burst",
            "error",
            "2nd half/s",
            f"steady {seconds:g} s",
            "error",
            "note",
        ]
    ]
    for r in results:
        rate, error, steady_error = r.config.per_second, _error(r), _steady_error(r)
        note = ", ".join(r.config.tags)
        if r.config.limit and r.sustained is None:
            note += ", burst never ran out: the limit did not bind"
        if not r.verified:
            note = f"NOT VERIFIED, {note}"
        rows.append(
            [
                r.config.name,
                f"{rate:,.0f}" if rate else "-",
                f"{r.config.burst:,.0f}" if r.config.limit else "-",
                f"{r.in_window:,.0f}",
                f"{r.config.burst + rate * seconds:,.0f}" if rate else "-",
                f"{r.sustained:,.0f}" if r.sustained is not None else "-",
                f"{error:+.2%}" if error is not None else "-",
                f"{r.second_half_rate:,.0f}",
                f"{r.steady:,.0f}" if r.steady is not None else "-",
                f"{steady_error:+.2%}" if steady_error is not None else "-",
                note,
            ]
        )
    print()
    print(
        f"Rate-limited campaigns: sends in the {seconds:g} s after the first, median of "
        f"{len(results[0].runs)} rounds; max_concurrent={MAX_CONCURRENT}, pool {POOL_SIZE}, "
        "SQLite outbox, smtp-sink on loopback; expected = burst + rate x window; steady = "
        f"the {seconds:g} s from {STEADY_FROM:g} s after the first send (expected rate x window)"
    )
    print_table(rows, note_last=True)
    print()
    for r in results:
        if r.config.per_second != 1_000.0:
            continue
        error = _error(r)
        if error is None:
            verdict = "NOT met: the burst never ran out, so the limit did not bind"
        else:
            verdict = "met" if abs(error) <= TOLERANCE + 1e-9 else "NOT met"
            verdict = f"{error:+.2%}, {verdict}"
        print(f"bar: {r.config.name}: sent - burst within 1% of {1_000 * seconds:,.0f}: {verdict}")
        steady_error = _steady_error(r)
        if steady_error is not None:
            print(
                f"     steady window ({STEADY_FROM:g} s to {STEADY_FROM + seconds:g} s): "
                f"{steady_error:+.2%} (start-up and burst left out)"
            )


# -- main --------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_rate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="the window (default: 10)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds (default: 3)")
    parser.add_argument("--quick", action="store_true", help="one round")
    parser.add_argument(
        "--burst-seconds",
        type=float,
        default=0.1,
        help="the small-burst rows' burst, in seconds of the rate (default: 0.1)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats = 1
    if args.seconds <= 0 or args.repeats < 1 or args.burst_seconds <= 0:
        parser.error("--seconds, --repeats and --burst-seconds must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Measure every configuration against one smtp-sink; 0 when every run is verified."""
    args = parse_args(argv)
    try:
        ensure_postfix_tools()
    except (MissingToolError, subprocess.CalledProcessError, OSError) as exc:
        print(f"bench_rate: {exc}; {INSTALL_HINT}", file=sys.stderr)
        return 2
    results = [Result(config, args.seconds) for config in configs(args.burst_seconds)]
    with SmtpSink() as sink, tempfile.TemporaryDirectory(prefix="bench-rate-") as tmp:
        workdir = Path(tmp)
        print(f"smtp-sink on {HOST}:{sink.port}; window {args.seconds:g} s", file=sys.stderr)
        print("warm-up", file=sys.stderr, flush=True)
        measure(sink, Config("warm-up", None), seconds=0.5, workdir=workdir, tag="warmup")
        for round_number in range(1, args.repeats + 1):
            print(f"round {round_number}/{args.repeats}", file=sys.stderr, flush=True)
            for n, result in enumerate(results):
                tag = f"r{round_number}c{n}"
                run = measure(sink, result.config, seconds=args.seconds, workdir=workdir, tag=tag)
                result.runs.append(run)
    report(results, seconds=args.seconds)
    return 0 if all(r.verified for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
