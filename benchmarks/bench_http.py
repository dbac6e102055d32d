"""HTTP throughput: the webhook provider on httpx's transport and on `AiohttpTransport`.

One aiohttp server on loopback, in its own process (so it does not share the client's event
loop or core), answers `POST /hook` with a small JSON body. Side by side, in one run:

- `httpx`: a plain `httpx.AsyncClient` on its default transport (httpcore);
- `aiohttp`: a plain `aiohttp.ClientSession`;
- `httpx/AiohttpTransport`: a plain `httpx.AsyncClient` on xcomm's `AiohttpTransport`;
- `xcomm/httpcore`: `comm.webhook(url).send(payload)` on the manager's default transport;
- `xcomm/AiohttpTransport`: the same on `CommManager(transport=AiohttpTransport())`.

Each runs at concurrency 1 and 32: a fixed number of worker tasks taking requests from one
counter (never a task per request). Every contender gets a warm-up, then the `--requests` are
split into `--rounds` timed rounds, interleaved across contenders; the figure is the median
round's requests per second. Every response must be a 200, and the server's own request count
must match what was sent. Every row is also compared with bare aiohttp (the ceiling of any
httpx transport built on it), and the xcomm rows with the plain httpx client on the very same
transport: the rate ratio and the microseconds xcomm adds per request.

    python -m benchmarks.bench_http                  # 5,000 requests per contender and level
    python -m benchmarks.bench_http --requests 1000  # quicker

Output: one JSON line per result, then a table. The default run takes about 35 s on 2 idle cores.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import platform
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import aiohttp
import httpx
from aiohttp import web

from benchmarks._report import git_hash, print_table
from xcomm import CommManager
from xcomm.transports import AiohttpTransport

HOST = "127.0.0.1"
REPO_ROOT = Path(__file__).resolve().parent.parent
PAYLOAD = {"text": "deploy finished", "service": "api", "n": 1}
BODY = json.dumps(PAYLOAD, separators=(",", ":")).encode()
HEADERS = {"Content-Type": "application/json", "Accept": "application/json, */*"}
RESPONSE = b'{"id":"evt_1","ok":true}'

Send = Callable[[], Awaitable[None]]
Contender = Callable[[str], contextlib.AbstractAsyncContextManager[Send]]


# -- the server, in its own process -----------------------------------------------------------


def serve(conn: Connection) -> None:
    """Run the loopback server; send its port on `conn`, stop when `conn` says so."""
    asyncio.run(_serve(conn))


async def _serve(conn: Connection) -> None:
    served = 0

    async def hook(request: web.Request) -> web.Response:
        nonlocal served
        await request.read()
        served += 1
        return web.Response(body=RESPONSE, content_type="application/json")

    async def count(request: web.Request) -> web.Response:
        return web.json_response({"served": served})

    app = web.Application()
    app.router.add_post("/hook", hook)
    app.router.add_get("/count", count)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, HOST, 0, backlog=1024)
    await site.start()
    conn.send(runner.addresses[0][1])
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_reader(conn.fileno(), stop.set)
    await stop.wait()
    loop.remove_reader(conn.fileno())
    await runner.cleanup()


@contextlib.contextmanager
def server_process() -> Any:
    ctx = multiprocessing.get_context("spawn")
    ours, theirs = ctx.Pipe()
    process = ctx.Process(target=serve, args=(theirs,), daemon=True)
    process.start()
    try:
        if not ours.poll(30):
            raise RuntimeError("the benchmark server did not start")
        yield ours.recv()
    finally:
        ours.send("stop")
        process.join(10)
        if process.is_alive():
            process.terminate()
            process.join()


async def served(base: str) -> int:
    async with aiohttp.ClientSession() as session, session.get(f"{base}/count") as response:
        return int((await response.json())["served"])


# -- contenders --------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def raw_httpx(
    url: str, transport: httpx.AsyncBaseTransport | None = None
) -> AsyncIterator[Send]:
    async with httpx.AsyncClient(transport=transport) as client:

        async def send() -> None:
            response = await client.post(url, content=BODY, headers=HEADERS)
            if response.status_code != 200:
                raise RuntimeError(f"httpx got {response.status_code}")

        yield send


@contextlib.asynccontextmanager
async def raw_httpx_on_aiohttp(url: str) -> AsyncIterator[Send]:
    async with raw_httpx(url, AiohttpTransport()) as send:
        yield send


@contextlib.asynccontextmanager
async def raw_aiohttp(url: str) -> AsyncIterator[Send]:
    async with aiohttp.ClientSession() as session:

        async def send() -> None:
            async with session.post(url, data=BODY, headers=HEADERS) as response:
                await response.read()
                if response.status != 200:
                    raise RuntimeError(f"aiohttp got {response.status}")

        yield send


@contextlib.asynccontextmanager
async def xcomm_webhook(
    url: str, transport: httpx.AsyncBaseTransport | None = None
) -> AsyncIterator[Send]:
    async with CommManager(transport=transport) as comm:
        hook = comm.webhook(url)

        async def send() -> None:
            result = await hook.send(PAYLOAD)
            if result.status != 200 or result.message_id != "evt_1":
                raise RuntimeError(f"xcomm got {result}")

        yield send


@contextlib.asynccontextmanager
async def xcomm_on_aiohttp(url: str) -> AsyncIterator[Send]:
    async with xcomm_webhook(url, AiohttpTransport()) as send:
        yield send


CONTENDERS: dict[str, Contender] = {
    "httpx": raw_httpx,
    "aiohttp": raw_aiohttp,
    "httpx/AiohttpTransport": raw_httpx_on_aiohttp,
    "xcomm/httpcore": xcomm_webhook,
    "xcomm/AiohttpTransport": xcomm_on_aiohttp,
}
# xcomm row -> the plain httpx client on the very same transport (xcomm's own overhead)
BASELINES = {
    "xcomm/httpcore": "httpx",
    "xcomm/AiohttpTransport": "httpx/AiohttpTransport",
}
CEILING = "aiohttp"  # the bare aiohttp client: what any httpx transport over aiohttp can approach


# -- measuring ---------------------------------------------------------------------------------


@dataclass
class Result:
    name: str
    concurrency: int
    rates: list[float] = field(default_factory=list)
    requests: int = 0

    @property
    def rate(self) -> float:
        return statistics.median(self.rates)


async def timed(send: Send, *, concurrency: int, count: int) -> float:
    """Requests per second for `count` requests through `concurrency` worker tasks."""
    remaining = count

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await send()

    start = time.perf_counter()
    async with asyncio.TaskGroup() as group:
        for _ in range(concurrency):
            group.create_task(worker())
    return count / (time.perf_counter() - start)


async def bench(
    base: str, *, requests: int, levels: Sequence[int], rounds: int, warmup: int
) -> tuple[list[Result], bool]:
    url = f"{base}/hook"
    per_round = max(1, requests // rounds)
    results: list[Result] = []
    sent = 0
    before = await served(base)
    async with contextlib.AsyncExitStack() as stack:
        sends = {
            name: await stack.enter_async_context(make(url)) for name, make in CONTENDERS.items()
        }
        for concurrency in levels:
            level = {name: Result(name, concurrency) for name in sends}
            for send in sends.values():
                await timed(send, concurrency=concurrency, count=warmup)
                sent += warmup
            for n in range(rounds):
                for name, send in sends.items():
                    level[name].rates.append(
                        await timed(send, concurrency=concurrency, count=per_round)
                    )
                    level[name].requests += per_round
                    sent += per_round
                print(
                    f"  c={concurrency}: round {n + 1}/{rounds} done", file=sys.stderr, flush=True
                )
            results.extend(level.values())
    verified = await served(base) - before == sent
    return results, verified


# -- reporting ---------------------------------------------------------------------------------


def overhead(xcomm: Result, raw: Result) -> tuple[float, float]:
    """(xcomm's rate as a share of the raw client's, µs xcomm adds per request)."""
    return xcomm.rate / raw.rate, (1 / xcomm.rate - 1 / raw.rate) * 1e6


def report(results: list[Result], *, verified: bool) -> None:
    common = {
        "bench": "http",
        "python": platform.python_version(),
        "httpx": httpx.__version__,
        "aiohttp": aiohttp.__version__,
        "git": git_hash(),
    }
    by_key = {(r.name, r.concurrency): r for r in results}
    for r in results:
        line: dict[str, Any] = {
            "name": r.name,
            "concurrency": r.concurrency,
            "requests": r.requests,
            "req_per_s": round(r.rate, 1),
            "rounds": [round(x, 1) for x in r.rates],
            "verified": verified,
        }
        if (baseline := BASELINES.get(r.name)) is not None:
            share, added = overhead(r, by_key[(baseline, r.concurrency)])
            line |= {"baseline": baseline, "vs_baseline": round(share, 3), "added_us": round(added)}
        if r.name != CEILING:
            line["vs_aiohttp"] = round(r.rate / by_key[(CEILING, r.concurrency)].rate, 3)
        print(json.dumps(line | common))

    levels = sorted({r.concurrency for r in results})
    header = (
        ["contender"]
        + [f"c={c} req/s" for c in levels]
        + [f"c={c} vs aiohttp" for c in levels]
        + [f"c={c} xcomm overhead" for c in levels]
    )
    rows = [header]
    for name in CONTENDERS:
        row = [name] + [f"{by_key[(name, c)].rate:,.0f}" for c in levels]
        row += [f"{by_key[(name, c)].rate / by_key[(CEILING, c)].rate:.2f}" for c in levels]
        for c in levels:
            baseline = BASELINES.get(name)
            if baseline is None:
                row.append("-")
            else:
                share, added = overhead(by_key[(name, c)], by_key[(baseline, c)])
                row.append(f"{share:.2f} ({added:+.0f} µs)")
        rows.append(row)
    print()
    print(
        "POST /hook on loopback, median of rounds. 'xcomm overhead' = xcomm's rate / the plain "
        "httpx client on the same transport (µs added per request)"
    )
    print_table(rows)
    fast, default = "xcomm/AiohttpTransport", "xcomm/httpcore"
    speedup = ", ".join(
        f"c={c}: {by_key[(fast, c)].rate / by_key[(default, c)].rate:.1f}x" for c in levels
    )
    print(f"xcomm webhook on AiohttpTransport vs on httpx's default transport: {speedup}")
    if not verified:
        print("WARNING: the server's request count does not match what was sent")


# -- main --------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_http", description=__doc__)
    parser.add_argument("--requests", type=int, default=5_000, help="timed requests per level")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds (median counts)")
    parser.add_argument("--warmup", type=int, default=200, help="untimed requests first")
    parser.add_argument(
        "--concurrency",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[1, 32],
        help="comma-separated worker counts (default 1,32)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    with server_process() as port:
        base = f"http://{HOST}:{port}"
        print(f"server on {base} (separate process)", file=sys.stderr, flush=True)
        results, verified = asyncio.run(
            bench(
                base,
                requests=args.requests,
                levels=args.concurrency,
                rounds=args.rounds,
                warmup=args.warmup,
            )
        )
    report(results, verified=verified)
    if not verified:
        sys.exit(1)


if __name__ == "__main__":
    main()
