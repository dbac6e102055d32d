"""HTTP throughput: provider-shaped POSTs through the xcomm pipeline and its peers.

Every contender sends the same Twilio-shaped request, `POST
/2010-04-01/Accounts/AC…/Messages.json` with a form body (`To`, `From`, `Body`) and a Basic
`Authorization` header, and decodes the JSON reply (a Twilio Message resource, `201 Created`,
`"status": "queued"`). One local sink, in its own process (its own core), answers them all:
a bare asyncio protocol (uvloop when installed) that writes a canned reply, so that the sink is
not what is measured. In one run, interleaved round by round:

- `sockets`: 32 raw keep-alive sockets writing the request bytes and reading the reply (a
  wrk-like ceiling of the sink on this machine, not an HTTP client);
- `aiohttp`: a plain `aiohttp.ClientSession`, the form body encoded per request with
  `urllib.parse.urlencode` (every client turns the message's fields into the body each time;
  only `sockets` writes canned bytes);
- `httpx`: a plain `httpx.AsyncClient` on its default transport (httpcore);
- `httpx/AiohttpTransport`: `httpx.AsyncClient.post` on xcomm's `AiohttpTransport` (what the
  client layer costs on a fast transport);
- `twilio-python`: the official client, `Client(..., http_client=AsyncTwilioHttpClient())`,
  `await client.messages.create_async(...)`, its API domain pointed at the sink;
- `xcomm`: a minimal Twilio-like provider on `HttpProvider` (the full pipeline: limiter,
  retry, error mapping, metrics) on a default `CommManager()` (aiohttp installed: the
  aiohttp pool);
- `xcomm/httpx-pool`: the same on `CommManager(transport="httpx")` (the fallback pool).

Each level runs a fixed number of worker tasks taking requests from one counter (never a task
per request). Every contender gets a warm-up, then `--requests` split into `--rounds` timed
rounds; the figure is the median round's requests per second. Every reply must be a 201 with
the expected sid, and the sink's own count must match what was sent.

    python -m benchmarks.bench_http                   # 20,000 requests per contender, c=32
    python -m benchmarks.bench_http --requests 4000   # quicker
    python -m benchmarks.bench_http --out results.jsonl
    python -m benchmarks.bench_http --only xcomm --profile xcomm.pstats   # where the time goes

Output: one JSON line per result (also appended to `--out`), a table, the ratios, and the
bars of issue 5: xcomm ≥ 0.8x aiohttp, ≥ 1.2x twilio-python, ≥ 10x default-transport httpx.
About 2 minutes on 2 idle cores (default-transport httpx takes most of it).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
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
from typing import Any, cast
from urllib.parse import urlencode

import aiohttp
import httpx
import msgspec

from benchmarks._report import git_hash, print_table
from xcomm import CommManager, RateLimit, SendResult
from xcomm._http import HttpProvider, encode_form
from xcomm._provider import ProviderContext
from xcomm._retry import Limiter
from xcomm.transports import AiohttpTransport

HOST = "127.0.0.1"
ACCOUNT = "AC" + "0" * 30
TOKEN = "bench-auth-token"
SID = "SM" + "f" * 32
PATH = f"/2010-04-01/Accounts/{ACCOUNT}/Messages.json"
FORM = {"To": "+15558675310", "From": "+15005550006", "Body": "Your code is 481 516"}
FORM_BODY = encode_form(FORM)
BASIC = "Basic " + base64.b64encode(f"{ACCOUNT}:{TOKEN}".encode()).decode()
HEADERS = {
    "Authorization": BASIC,
    "Content-Type": "application/x-www-form-urlencoded",
    "Accept": "application/json",
}
MESSAGE = {
    "account_sid": ACCOUNT,
    "api_version": "2010-04-01",
    "body": FORM["Body"],
    "date_created": "Sat, 21 Nov 2026 10:00:00 +0000",
    "date_sent": None,
    "date_updated": "Sat, 21 Nov 2026 10:00:00 +0000",
    "direction": "outbound-api",
    "error_code": None,
    "error_message": None,
    "from": FORM["From"],
    "messaging_service_sid": None,
    "num_media": "0",
    "num_segments": "1",
    "price": None,
    "price_unit": "USD",
    "sid": SID,
    "status": "queued",
    "subresource_uris": {"media": f"/2010-04-01/Accounts/{ACCOUNT}/Messages/{SID}/Media.json"},
    "to": FORM["To"],
    "uri": f"/2010-04-01/Accounts/{ACCOUNT}/Messages/{SID}.json",
}
REPLY_BODY = json.dumps(MESSAGE, separators=(",", ":")).encode()
REPLY = (
    b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n"
    b"Date: Sat, 21 Nov 2026 10:00:00 GMT\r\n"
    + f"Content-Length: {len(REPLY_BODY)}\r\n\r\n".encode()
    + REPLY_BODY
)

Send = Callable[[], Awaitable[None]]
Contender = Callable[[str], contextlib.AbstractAsyncContextManager[Send]]


# -- the sink, in its own process ----------------------------------------------------------------


class _Sink(asyncio.Protocol):
    """HTTP/1.1 keep-alive, Content-Length bodies only; a canned 201 for the Messages path."""

    served = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self._buffer = bytearray()

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        while (end := buffer.find(b"\r\n\r\n")) >= 0:
            head = bytes(buffer[:end]).lower()
            length = 0
            if (at := head.find(b"\r\ncontent-length:")) >= 0:
                stop = head.find(b"\r\n", at + 2)
                length = int(head[at + 17 : stop if stop >= 0 else None])
            elif b"\r\ntransfer-encoding:" in head:  # no contender sends chunked bodies
                self._transport.close()
                return
            if len(buffer) < end + 4 + length:
                return
            del buffer[: end + 4 + length]
            if head.startswith(b"post " + PATH.lower().encode() + b" "):
                _Sink.served += 1
                self._transport.write(REPLY)
            elif head.startswith(b"get /count "):
                body = str(_Sink.served).encode()
                self._transport.write(
                    b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
                )
            else:
                self._transport.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")


def serve(conn: Connection) -> None:
    """Run the sink; send its port on `conn`, stop when `conn` says so."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(_serve(conn))
    else:
        uvloop.run(_serve(conn))


async def _serve(conn: Connection) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_Sink, HOST, 0, backlog=1024)
    conn.send(server.sockets[0].getsockname()[1])
    stop = asyncio.Event()
    loop.add_reader(conn.fileno(), stop.set)
    await stop.wait()
    loop.remove_reader(conn.fileno())
    server.close()


@contextlib.contextmanager
def sink_process() -> Any:
    ctx = multiprocessing.get_context("spawn")
    ours, theirs = ctx.Pipe()
    process = ctx.Process(target=serve, args=(theirs,), daemon=True)
    process.start()
    try:
        if not ours.poll(30):
            raise RuntimeError("the benchmark sink did not start")
        yield ours.recv()
    finally:
        ours.send("stop")
        process.join(10)
        if process.is_alive():
            process.terminate()
            process.join()


async def served(base: str) -> int:
    async with aiohttp.ClientSession() as session, session.get(f"{base}/count") as response:
        return int(await response.read())


# -- contenders ------------------------------------------------------------------------------------


def _check(status: int, sid: object, who: str) -> None:
    if status != 201 or sid != SID:
        raise RuntimeError(f"{who} got {status} {sid!r}")


@contextlib.asynccontextmanager
async def raw_sockets(base: str) -> AsyncIterator[Send]:
    """Not an HTTP client: write the request bytes, read the known reply length back."""
    host, port = base.removeprefix("http://").split(":")
    request = (
        f"POST {PATH} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: {BASIC}\r\n"
        f"Content-Type: application/x-www-form-urlencoded\r\nAccept: application/json\r\n"
        f"Content-Length: {len(FORM_BODY)}\r\n\r\n"
    ).encode() + FORM_BODY
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    opened: list[asyncio.StreamWriter] = []

    async def send() -> None:
        if idle:
            reader, writer = idle.pop()
        else:
            reader, writer = await asyncio.open_connection(host, int(port))
            opened.append(writer)
        writer.write(request)
        reply = await reader.readexactly(len(REPLY))
        if not reply.startswith(b"HTTP/1.1 201"):
            raise RuntimeError("the sink did not answer 201")
        idle.append((reader, writer))

    try:
        yield send
    finally:
        for writer in opened:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


@contextlib.asynccontextmanager
async def raw_aiohttp(base: str) -> AsyncIterator[Send]:
    url = base + PATH
    async with aiohttp.ClientSession() as session:

        async def send() -> None:
            form = {"To": FORM["To"], "From": FORM["From"], "Body": FORM["Body"]}
            body = urlencode(form).encode("ascii")  # the message's fields, as every client does
            async with session.post(url, data=body, headers=HEADERS) as response:
                data = json.loads(await response.read())
                _check(response.status, data["sid"], "aiohttp")

        yield send


@contextlib.asynccontextmanager
async def raw_httpx(
    base: str, transport: httpx.AsyncBaseTransport | None = None
) -> AsyncIterator[Send]:
    url = base + PATH
    headers = {"Accept": "application/json"}
    async with httpx.AsyncClient(transport=transport, auth=(ACCOUNT, TOKEN)) as client:

        async def send() -> None:
            response = await client.post(url, data=FORM, headers=headers)
            _check(response.status_code, response.json()["sid"], "httpx")

        yield send


@contextlib.asynccontextmanager
async def httpx_on_aiohttp(base: str) -> AsyncIterator[Send]:
    async with raw_httpx(base, AiohttpTransport()) as send:
        yield send


@contextlib.asynccontextmanager
async def twilio_python(base: str) -> AsyncIterator[Send]:
    from twilio.http.async_http_client import AsyncTwilioHttpClient
    from twilio.rest import Client

    http_client = AsyncTwilioHttpClient()
    client = Client(ACCOUNT, TOKEN, http_client=http_client)
    client.api.base_url = base  # the API domain's root; no edge/region set, so used as is
    try:

        async def send() -> None:
            message = await client.messages.create_async(
                to=FORM["To"], from_=FORM["From"], body=FORM["Body"]
            )
            _check(201, message.sid, "twilio-python")

        yield send
    finally:
        await http_client.close()


class _Message(msgspec.Struct):
    sid: str
    status: str


_decode_message = msgspec.json.Decoder(_Message)


class TwilioLike(HttpProvider):
    """A bench-only provider: what a Twilio SMS provider on `HttpProvider` does per message."""

    name = "twilio-bench"

    def __init__(
        self, context: ProviderContext, *, limiter: Limiter | None, base: str, account: str
    ) -> None:
        super().__init__(context, limiter=limiter)
        self._url = httpx.URL(f"{base}/2010-04-01/Accounts/{account}/Messages.json")
        self._base_headers = self._headers(HEADERS)

    async def send(self, to: str, *, from_: str, body: str) -> SendResult:
        request = self._build_request(
            "POST",
            self._url,
            self._base_headers,
            encode_form({"To": to, "From": from_, "Body": body}),
        )
        response, attempts, duration = await self._request("send", request)
        message = _decode_message.decode(response.content)
        return SendResult(
            message_id=message.sid,
            provider=self.name,
            accepted=(to,),
            attempts=attempts,
            duration=duration,
            status=response.status_code,
        )


@contextlib.asynccontextmanager
async def xcomm_pipeline(base: str, transport: str | None = None) -> AsyncIterator[Send]:
    # A limiter that never waits but is consulted on every call, default retry, metrics on.
    limits = {"twilio-bench": RateLimit(rate=10_000_000, per=1.0)}
    async with CommManager(rate_limits=limits, transport=transport) as comm:  # type: ignore[arg-type]
        provider = TwilioLike(
            comm._context(),
            limiter=comm._limiter("twilio-bench", f"twilio-bench:{ACCOUNT}", None),
            base=base,
            account=ACCOUNT,
        )
        comm._register(provider)
        assert provider.limiter is not None

        async def send() -> None:
            result = await provider.send(FORM["To"], from_=FORM["From"], body=FORM["Body"])
            _check(result.status or 0, result.message_id, "xcomm")

        yield send
        if comm.metrics.get_stats().failed:
            raise RuntimeError("xcomm metrics recorded a failure")


@contextlib.asynccontextmanager
async def xcomm_on_httpx_pool(base: str) -> AsyncIterator[Send]:
    async with xcomm_pipeline(base, "httpx") as send:
        yield send


CONTENDERS: dict[str, Contender] = {
    "sockets": raw_sockets,
    "aiohttp": raw_aiohttp,
    "httpx": raw_httpx,
    "httpx/AiohttpTransport": httpx_on_aiohttp,
    "twilio-python": twilio_python,
    "xcomm": xcomm_pipeline,
    "xcomm/httpx-pool": xcomm_on_httpx_pool,
}
BARS = (("aiohttp", 0.8), ("twilio-python", 1.2), ("httpx", 10.0))


# -- measuring -----------------------------------------------------------------------------------


@dataclass
class Result:
    name: str
    concurrency: int
    rates: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)  # client-process CPU µs per request
    requests: int = 0

    @property
    def rate(self) -> float:
        return statistics.median(self.rates)

    @property
    def cpu_us(self) -> float:
        return statistics.median(self.cpu)


async def timed(send: Send, *, concurrency: int, count: int) -> tuple[float, float]:
    """Requests per second for `count` requests through `concurrency` worker tasks, and the
    CPU time this process spent per request (µs; the sink's is not counted), which a busy
    machine disturbs much less than the rate."""
    remaining = count

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await send()

    start = time.perf_counter()
    cpu = time.process_time()
    async with asyncio.TaskGroup() as group:
        for _ in range(concurrency):
            group.create_task(worker())
    cpu = time.process_time() - cpu
    return count / (time.perf_counter() - start), cpu / count * 1e6


async def bench(
    base: str,
    *,
    requests: int,
    levels: Sequence[int],
    rounds: int,
    warmup: int,
    only: Sequence[str] = (),
    profile: Path | None = None,
) -> tuple[list[Result], bool]:
    per_round = max(1, requests // rounds)
    results: list[Result] = []
    sent = 0
    before = await served(base)
    async with contextlib.AsyncExitStack() as stack:
        sends = {
            name: await stack.enter_async_context(make(base))
            for name, make in CONTENDERS.items()
            if not only or name in only
        }
        for concurrency in levels:
            level = {name: Result(name, concurrency) for name in sends}
            for send in sends.values():
                await timed(send, concurrency=concurrency, count=warmup)
                sent += warmup
            for n in range(rounds):
                for name, send in sends.items():
                    with _profiled(profile):
                        rate, cpu = await timed(send, concurrency=concurrency, count=per_round)
                    level[name].rates.append(rate)
                    level[name].cpu.append(cpu)
                    level[name].requests += per_round
                    sent += per_round
                print(
                    f"  c={concurrency}: round {n + 1}/{rounds} done", file=sys.stderr, flush=True
                )
            results.extend(level.values())
    verified = await served(base) - before == sent
    return results, verified


@contextlib.contextmanager
def _profiled(out: Path | None) -> Any:
    """cProfile the block into `out` (stats accumulate over rounds), or do nothing."""
    if out is None:
        yield
        return
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    profiler.enable()
    try:
        yield
    finally:
        profiler.disable()
        stats = pstats.Stats(profiler)
        if out.exists():
            stats.add(str(out))
        stats.dump_stats(out)


# -- reporting -----------------------------------------------------------------------------------


def _twilio_version() -> str | None:
    try:
        import twilio
    except ImportError:
        return None
    return str(twilio.__version__)


def report(results: list[Result], *, verified: bool, out: Path | None) -> None:
    common = {
        "bench": "http",
        "python": platform.python_version(),
        "httpx": httpx.__version__,
        "aiohttp": aiohttp.__version__,
        "twilio": _twilio_version(),
        "git": git_hash(),
    }
    by_key = {(r.name, r.concurrency): r for r in results}

    def xcomm_vs(name: str, c: int) -> float | None:
        xcomm = by_key.get(("xcomm", c))
        return None if xcomm is None else xcomm.rate / by_key[(name, c)].rate

    lines = []
    for r in results:
        ratio = xcomm_vs(r.name, r.concurrency)
        line: dict[str, Any] = {
            "name": r.name,
            "concurrency": r.concurrency,
            "requests": r.requests,
            "req_per_s": round(r.rate, 1),
            "rounds": [round(x, 1) for x in r.rates],
            "cpu_us_per_req": round(r.cpu_us, 1),
            "verified": verified,
            "xcomm_vs": None if ratio is None else round(ratio, 3),
        }
        lines.append(json.dumps(line | common))
    print("\n".join(lines))
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("a") as f:
            f.write("\n".join(lines) + "\n")

    levels = sorted({r.concurrency for r in results})
    names = [name for name in CONTENDERS if any(r.name == name for r in results)]
    header = ["contender"]
    header += [f"c={c} req/s" for c in levels] + [f"c={c} CPU µs/req" for c in levels]
    header += [f"c={c} xcomm is" for c in levels]
    rows = [header]
    for name in names:
        row = [name] + [f"{by_key[(name, c)].rate:,.0f}" for c in levels]
        row += [f"{by_key[(name, c)].cpu_us:,.0f}" for c in levels]
        row += [f"{ratio:.2f}x" if (ratio := xcomm_vs(name, c)) else "-" for c in levels]
        rows.append(row)
    print()
    print(
        "Twilio-shaped POST (form body, Basic auth, JSON reply) to a local sink, median of "
        "rounds; 'xcomm is' = xcomm's rate / the row's ('sockets' is the sink's wrk-like "
        "ceiling, not a client)"
    )
    print_table(rows)
    for c in levels:
        for peer, bar in BARS:
            if (peer, c) in by_key and (ratio := xcomm_vs(peer, c)) is not None:
                verdict = "met" if ratio >= bar else "MISSED"
                print(f"bar c={c}: xcomm >= {bar}x {peer}: {ratio:.2f}x -> {verdict}")
    if not verified:
        print("WARNING: the sink's request count does not match what was sent")


# -- main ----------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_http", description=__doc__)
    parser.add_argument("--requests", type=int, default=20_000, help="timed requests per level")
    parser.add_argument("--rounds", type=int, default=4, help="timed rounds (median counts)")
    parser.add_argument("--warmup", type=int, default=500, help="untimed requests first")
    parser.add_argument(
        "--concurrency",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[32],
        help="comma-separated worker counts (default 32)",
    )
    parser.add_argument("--out", type=Path, default=None, help="append the JSON lines here")
    parser.add_argument(
        "--only",
        type=lambda s: [x.strip() for x in s.split(",") if x.strip()],
        default=[],
        help=f"comma-separated contenders to run (default all: {', '.join(CONTENDERS)})",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="cProfile the timed rounds into this pstats file (use with --only xcomm)",
    )
    args = parser.parse_args(argv)
    if unknown := sorted(set(args.only) - set(CONTENDERS)):
        parser.error(
            f"unknown contender(s) {', '.join(unknown)}; pick from {', '.join(CONTENDERS)}"
        )
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    with sink_process() as port:
        base = f"http://{HOST}:{port}"
        print(f"sink on {base} (separate process)", file=sys.stderr, flush=True)
        results, verified = asyncio.run(
            bench(
                base,
                requests=args.requests,
                levels=args.concurrency,
                rounds=args.rounds,
                warmup=args.warmup,
                only=args.only,
                profile=args.profile,
            )
        )
    report(results, verified=verified, out=args.out)
    if not verified:
        sys.exit(1)


if __name__ == "__main__":
    main()
