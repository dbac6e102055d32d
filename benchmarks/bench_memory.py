"""Memory: peak RSS of a campaign streamed from a CSV through `BulkSender`, as the list grows.

Each size runs in a fresh Python process, so its peak RSS (`ru_maxrss` at the end of the
child) is its own. A CSV of `email,name` rows is written in a temporary directory; the child
runs `comm.create_bulk_sender(provider, max_concurrent=64, track_delivery=True)` and
`send_campaign(recipients=<the CSV path>)` with a personalised `Template`, every message
recorded in a SQLite outbox in the same directory. The provider is

- by default, SMTP to Postfix's `smtp-sink` on loopback (pool of 16), the realistic case;
  the sink's own counter is checked;
- with `--no-smtp`, an in-process `EmailProvider` that renders every message to MIME bytes
  (`render_message`) and touches no network, so the sender itself is measured at 1,000,000
  recipients in about two minutes instead of the five-odd that SMTP takes here.

Besides the peak, the child samples its current RSS with each progress event (about twice a
second) and reports it at 10% of the run and at the end: flat means the working set stopped
growing early. For scale, the same sizes go through the naive approach (`asyncio.gather` over
N no-op coroutines, one task per recipient), and a baseline child reports the RSS of the
interpreter with xcomm imported and a manager open.

Bars (from the issue): peak RSS under 100 MB, and flat as the list grows (the largest size's
peak within 10% of the smallest's).

    python -m benchmarks.bench_memory                      # 100k and 1M, SMTP (long: see above)
    python -m benchmarks.bench_memory --no-smtp            # 100k and 1M, render only
    python -m benchmarks.bench_memory --sizes 10000,100000

Output: one JSON line per result, then a table.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks._report import metadata, print_table
from benchmarks._servers import INSTALL_HINT, MissingToolError, SmtpSink, postfix_tool
from xcomm import Address, CommManager, EmailMessage, EmailProvider, SendResult, Template
from xcomm.bulk import Progress
from xcomm.email._mime import render_message

HOST = "127.0.0.1"
SENDER = "news@example.com"
DEFAULT_SIZES = (100_000, 1_000_000)
POOL_SIZE = 16
MAX_CONCURRENT = 64
MAX_MESSAGES_PER_CONNECTION = 100_000
BAR_MB = 100.0
FLAT_TOLERANCE = 1.10
CHILD_TIMEOUT = 3600.0

_PARAGRAPH = "Here is what happened on your account this month, and what comes next."
TEMPLATE = Template(
    subject="{{ name }}, your November digest",
    text=(
        "Hi {{ name }},\n\n"
        + "\n".join([_PARAGRAPH] * 5)
        + "\n\nThis digest was sent to {{ email }}.\n\nSee you soon,\nThe Example team\n"
    ),
    html=(
        "<html><body><p>Hi {{ name }},</p>\n"
        + "\n".join([f"<p>{_PARAGRAPH}</p>"] * 5)
        + "\n<p>This digest was sent to {{ email }}.</p>\n"
        + "<p>See you soon,<br>The Example team</p></body></html>\n"
    ),
    name="bench-memory",
)


# -- the child ---------------------------------------------------------------------------


class RenderOnlyProvider(EmailProvider):
    """Renders each message to MIME bytes through the provider call path; sends nothing."""

    name = "render-only"

    def __init__(self, comm: CommManager, *, sender: str) -> None:
        super().__init__(comm._context(), limiter=None)
        self.default_sender = Address(email=sender)
        self.rendered_bytes = 0

    async def send(self, message: EmailMessage, /, *, timeout: float | None = None) -> SendResult:
        async def attempt(_: int) -> SendResult:
            self.rendered_bytes += len(render_message(message))
            return SendResult(
                message_id=message.message_id,
                provider=self.name,
                accepted=tuple(a.email for a in message.to),
            )

        result, _attempts, _duration = await self._call("send", attempt)
        return result


def peak_rss_mb() -> float:
    """This process's peak resident set (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def current_rss_mb() -> float | None:
    """This process's resident set now (Linux only; None elsewhere)."""
    try:
        with open("/proc/self/statm") as handle:
            resident = int(handle.read().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return resident * os.sysconf("SC_PAGE_SIZE") / (1024 * 1024)


async def child_campaign(args: argparse.Namespace) -> dict[str, Any]:
    samples: list[tuple[int, float]] = []

    def sample(event: Progress) -> None:
        rss = current_rss_mb()
        if rss is not None:
            samples.append((event.done, rss))

    async with CommManager(outbox=args.outbox) as comm:
        provider: EmailProvider
        if args.port:
            provider = comm.smtp(
                HOST,
                args.port,
                sender=SENDER,
                pool_size=args.pool_size,
                max_messages_per_connection=MAX_MESSAGES_PER_CONNECTION,
            )
        else:
            provider = RenderOnlyProvider(comm, sender=SENDER)
        bulk = comm.create_bulk_sender(
            provider, max_concurrent=args.max_concurrent, track_delivery=True
        )
        started = time.perf_counter()
        result = await bulk.send_campaign(
            template=TEMPLATE,
            recipients=Path(args.csv),
            campaign_id=f"memory-{args.count}",
            on_progress=sample,
        )
        elapsed = time.perf_counter() - started
    at_10 = next((rss for done, rss in samples if done >= args.count // 10), None)
    return {
        "seconds": elapsed,
        "sent": result.sent,
        "failed": result.failed + result.in_doubt,
        "rss_mb_at_10pct": at_10,
        "rss_mb_max_sampled": max((rss for _, rss in samples), default=None),
        "rss_mb_end": current_rss_mb(),
    }


async def child_gather(count: int) -> dict[str, Any]:
    async def send(_: int) -> None:
        return None

    started = time.perf_counter()
    await asyncio.gather(*(send(n) for n in range(count)))
    return {"seconds": time.perf_counter() - started, "sent": count, "failed": 0}


async def child_baseline(args: argparse.Namespace) -> dict[str, Any]:
    async with CommManager(outbox=args.outbox) as comm:
        await comm.outbox()
        provider = RenderOnlyProvider(comm, sender=SENDER)
        comm.create_bulk_sender(provider, max_concurrent=args.max_concurrent)
        TEMPLATE.compile()
    return {"seconds": 0.0, "sent": 0, "failed": 0}


def child_main(args: argparse.Namespace) -> int:
    if args.child == "campaign":
        out = asyncio.run(child_campaign(args))
    elif args.child == "gather":
        out = asyncio.run(child_gather(args.count))
    else:
        out = asyncio.run(child_baseline(args))
    out["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(out))
    return 0


# -- the parent --------------------------------------------------------------------------


def write_csv(path: Path, count: int) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["email", "name"])
        writer.writerows((f"user{n:07d}@example{n % 50}.com", f"User {n}") for n in range(count))


def run_child(argv: list[str]) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_memory", *argv],
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"child {argv[:2]} failed: {proc.stderr.strip()[-800:]}")
    out: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


def _mb(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


def report(rows: list[dict[str, Any]], *, baseline: dict[str, Any] | None) -> bool:
    """JSON lines, a table, the bars; True when both bars are met."""
    common = metadata("memory")
    for row in rows:
        print(json.dumps({**row, **common}))
    if baseline is not None:
        print(json.dumps({**baseline, **common}))

    table = [["contender", "recipients", "peak RSS MB", "at 10% MB", "end MB", "s", "msgs/s"]]
    for row in rows:
        table.append(
            [
                row["name"] + ("" if row["verified"] else " (NOT VERIFIED)"),
                f"{row['recipients']:,}",
                _mb(row["peak_rss_mb"]),
                _mb(row.get("rss_mb_at_10pct")),
                _mb(row.get("rss_mb_end")),
                f"{row['seconds']:.1f}",
                f"{row['recipients'] / row['seconds']:,.0f}" if row["seconds"] > 0 else "-",
            ]
        )
    print()
    print("Peak RSS per run (each in a fresh process); 'at 10%' and 'end': current RSS then")
    print_table(table)
    if baseline is not None:
        print(
            f"baseline (python + xcomm imported, manager and outbox open): "
            f"{baseline['peak_rss_mb']:.1f} MB"
        )
    print()
    ok = True
    campaigns = [r for r in rows if r["contender"] == "xcomm"]
    if campaigns:
        worst = max(r["peak_rss_mb"] for r in campaigns)
        under = worst < BAR_MB
        print(
            f"bar: peak RSS under {BAR_MB:.0f} MB: {worst:.1f} MB, {'met' if under else 'NOT met'}"
        )
        ok = ok and under
    if len(campaigns) >= 2:
        small, large = campaigns[0], campaigns[-1]
        ratio = large["peak_rss_mb"] / small["peak_rss_mb"]
        flat = ratio <= FLAT_TOLERANCE
        print(
            f"bar: flat as the list grows: {large['recipients']:,} / {small['recipients']:,} "
            f"recipients = {ratio:.3f}x peak RSS, {'met' if flat else 'NOT met'} "
            f"(tolerance {FLAT_TOLERANCE:.2f}x)"
        )
        ok = ok and flat
    gathers = [r for r in rows if r["contender"] == "gather"]
    if len(gathers) >= 2:
        ratio = gathers[-1]["peak_rss_mb"] / gathers[0]["peak_rss_mb"]
        print(f"naive asyncio.gather: {ratio:.2f}x peak RSS over the same growth")
    return ok


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_memory",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--sizes",
        default=",".join(map(str, DEFAULT_SIZES)),
        help="recipient counts, smallest first (default: 100000,1000000)",
    )
    parser.add_argument(
        "--no-smtp",
        action="store_true",
        help="render every message in-process instead of sending it to smtp-sink",
    )
    parser.add_argument("--no-gather", action="store_true", help="skip the asyncio.gather rows")
    parser.add_argument("--pool-size", type=int, default=POOL_SIZE)
    parser.add_argument("--max-concurrent", type=int, default=MAX_CONCURRENT)
    # The child's own options (the parent starts one child per size).
    parser.add_argument(
        "--child", choices=("campaign", "gather", "baseline"), help=argparse.SUPPRESS
    )
    parser.add_argument("--csv", help=argparse.SUPPRESS)
    parser.add_argument("--outbox", help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.size_list = sorted(int(s) for s in args.sizes.split(",") if s.strip())
    if not args.child and (not args.size_list or min(args.size_list) < 1):
        parser.error("--sizes needs positive counts")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run one child per size (and per contender); 0 when every run verified and bars met."""
    args = parse_args(argv)
    if args.child:
        return child_main(args)
    mode = "render only" if args.no_smtp else "SMTP"
    sink: SmtpSink | None = None
    if not args.no_smtp:
        try:
            postfix_tool("smtp-sink")
        except MissingToolError as exc:
            print(f"bench_memory: {exc}; {INSTALL_HINT} (or pass --no-smtp)", file=sys.stderr)
            return 2
        sink = SmtpSink().start()
    rows: list[dict[str, Any]] = []
    baseline: dict[str, Any] | None = None
    verified = True
    try:
        with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
            workdir = Path(tmp)
            common = [
                f"--pool-size={args.pool_size}",
                f"--max-concurrent={args.max_concurrent}",
            ]
            baseline = run_child(
                ["--child=baseline", f"--outbox={workdir / 'baseline.sqlite3'}", *common]
            )
            baseline["name"] = "baseline"
            previous: tuple[int, float] | None = None
            for size in args.size_list:
                csv_path = workdir / f"recipients-{size}.csv"
                write_csv(csv_path, size)
                outbox = workdir / f"outbox-{size}.sqlite3"
                if previous is not None:
                    estimate = previous[1] * size / previous[0]
                    print(
                        f"  {size:,} recipients ({mode}): about {estimate:,.0f} s "
                        f"(from the {previous[0]:,} run)",
                        file=sys.stderr,
                        flush=True,
                    )
                else:
                    print(f"  {size:,} recipients ({mode}) ...", file=sys.stderr, flush=True)
                before = sink.messages() if sink else 0
                child = [
                    "--child=campaign",
                    f"--csv={csv_path}",
                    f"--outbox={outbox}",
                    f"--count={size}",
                    f"--port={sink.port if sink else 0}",
                    *common,
                ]
                out = run_child(child)
                arrived = sink.wait_for_messages(before + size) - before if sink else size
                ok = out["sent"] == size and out["failed"] == 0 and arrived == size
                if not ok:
                    print(
                        f"  {size:,}: sent {out['sent']}, failed {out['failed']}, sink counted "
                        f"{arrived}",
                        file=sys.stderr,
                    )
                verified = verified and ok
                rows.append(
                    {
                        "name": f"xcomm bulk, CSV, SQLite outbox, {mode}",
                        "contender": "xcomm",
                        "mode": "render-only" if args.no_smtp else "smtp",
                        "recipients": size,
                        "verified": ok,
                        "pool_size": None if args.no_smtp else args.pool_size,
                        "max_concurrent": args.max_concurrent,
                        **out,
                    }
                )
                print(
                    f"  {size:,}: peak {out['peak_rss_mb']:.1f} MB in {out['seconds']:.1f} s",
                    file=sys.stderr,
                    flush=True,
                )
                previous = (size, out["seconds"])
                for path in (csv_path, outbox):
                    for suffix in ("", "-wal", "-shm"):
                        Path(f"{path}{suffix}").unlink(missing_ok=True)
            if not args.no_gather:
                for size in args.size_list:
                    out = run_child(["--child=gather", f"--count={size}"])
                    rows.append(
                        {
                            "name": "asyncio.gather over N no-op coroutines",
                            "contender": "gather",
                            "recipients": size,
                            "verified": True,
                            **out,
                        }
                    )
    finally:
        if sink is not None:
            sink.stop()
    bars = report(rows, baseline=baseline)
    return 0 if verified and bars else 1


if __name__ == "__main__":
    sys.exit(main())
