"""Helper processes: `send_campaign` on several cores of one machine.

    this process: source → pending records, a chunk at a time ─┬→ itself ─┐
                                                               └→ helper ─┴→ record and claim
                                                                   (one write) → send → finish

A helper (`main()` here, in a process forked from a warm zygote: see `_spawn`) is a process
of its own: its own event loop, GIL and connections. Its standard input carries its settings
(one JSON line), then chunks of pending records (a 4-byte length, then the records in
MessagePack). It records and claims each chunk in the shared SQLite outbox in one write, as a
run in one process does, sends it with the campaign as its stored definition describes it,
and reports on its standard output: a progress line every 0.1 s and a final report. End of
input means "no more records will come": the helper gives its transient failures their one
more pass and exits. SIGTERM stops it as a cancelled run stops.

Records go to a helper, not through the outbox as pending, so that each is written twice
(recorded claimed, then its outcome) wherever it is sent. A chunk dealt to a helper that
died is not in the outbox yet: running the campaign again reads it from the source.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import math
import signal
import sys
from collections.abc import AsyncIterator, Sequence
from typing import Any

import anyio
import anyio.abc
import msgspec
from anyio.streams.buffered import BufferedByteReceiveStream
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from xcomm._errors import CommunicationError, ConfigurationError
from xcomm.bulk._result import Outcome, Tally
from xcomm.bulk._spawn import HelperProcess, start_helper
from xcomm.outbox import OutboxRecord

__all__ = ["HelperSettings", "Helpers", "Report"]

_REPORT_EVERY = 0.1  # seconds between a helper's progress lines
_MAX_LINE = 1 << 26
_STOP_GRACE = 10.0  # seconds a stopped helper has to settle what it has in flight


class HelperSettings(msgspec.Struct, frozen=True, kw_only=True):
    """What a helper is told on its standard input."""

    outbox: str
    campaign_id: str
    max_concurrent: int
    per_domain: int | None
    policy: str
    lease: float
    retry_failed: bool
    rate_share: float
    processes: int
    batch: int
    provider_settings: dict[str, Any]
    uvloop: bool


class Report(msgspec.Struct, kw_only=True):
    """A helper's counts so far (`final`: its last line, with latencies and failures)."""

    handled: int = 0
    sent: int = 0
    failed: int = 0
    suppressed: int = 0
    in_doubt: int = 0
    scheduled: int = 0
    final: bool = False
    latencies: list[float] = []
    failures: list[Outcome] = []
    error: str | None = None
    configuration: bool = False  # the error is a ConfigurationError


_REPORT = msgspec.json.Decoder(Report)
_ENCODER = msgspec.json.Encoder()
_CHUNK_ENCODER = msgspec.msgpack.Encoder()
_CHUNK = msgspec.msgpack.Decoder(list[OutboxRecord])


def report_of(tally: Tally, handled: int, *, final: bool = False) -> Report:
    return Report(
        handled=handled,
        sent=tally.sent,
        failed=tally.failed,
        suppressed=tally.suppressed,
        in_doubt=tally.in_doubt,
        scheduled=tally.scheduled,
        final=final,
        latencies=list(tally.latencies) if final else [],
        failures=list(tally.failures) if final else [],
    )


class Helpers:
    """The helper processes of one run, as the feeding process sees them."""

    def __init__(self, settings: HelperSettings, count: int) -> None:
        self._settings = settings
        self._count = count
        self._processes: list[HelperProcess] = []
        self._reports: list[Report] = []
        self._given: list[int] = []  # records dealt to each helper
        self._closed: set[int] = set()  # helpers whose input is closed
        self._ready: set[int] = set()  # helpers that have reported: started, reading input
        self._next = 0  # the helper asked first by the next give()

    @property
    def handled(self) -> int:
        """Records the helpers have finished with (sent, failed...) so far."""
        return sum(report.handled for report in self._reports)

    def counts(self) -> tuple[int, int]:
        """(sent, failed) by the helpers so far, for progress events."""
        return sum(r.sent for r in self._reports), sum(r.failed for r in self._reports)

    async def run(self, task_group: anyio.abc.TaskGroup) -> None:
        """Start the helpers and read their reports in `task_group`. A helper that fails
        raises there (a `ConfigurationError` it met, or a `CommunicationError`)."""
        line = _ENCODER.encode(self._settings) + b"\n"
        for index in range(self._count):
            process = await start_helper()
            self._processes.append(process)
            self._reports.append(Report())
            self._given.append(0)
            assert process.stdin is not None
            await process.stdin.send(line)
            task_group.start_soon(self._read, index, process)

    async def _read(self, index: int, process: HelperProcess) -> None:
        assert process.stdout is not None
        stream = BufferedByteReceiveStream(process.stdout)
        report: Report | None = None
        # The end of its output; a helper's socket can also be reset (it died with input
        # unread) or closed (it was stopped).
        ends = (anyio.EndOfStream, anyio.IncompleteRead)
        with contextlib.suppress(*ends, anyio.BrokenResourceError, anyio.ClosedResourceError):
            while True:
                report = _REPORT.decode(await stream.receive_until(b"\n", _MAX_LINE))
                self._reports[index] = report
                self._ready.add(index)
                if report.final:
                    break
        code = await process.wait()
        if report is not None and report.error is not None:
            error = ConfigurationError if report.configuration else CommunicationError
            raise error(f"a helper process of the campaign failed: {report.error}")
        # Its final report comes once its outcomes are written: how it exits after that (or
        # an unknown status, its zygote gone) loses nothing.
        if report is None or not report.final:
            raise CommunicationError(
                f"a helper process of the campaign (pid {process.pid}) exited with status "
                f"{code} before it finished; what it had in flight is settled by the delivery "
                "policy when its lease expires: run the campaign again to finish it"
            )

    async def give(self, chunk: Sequence[OutboxRecord], window: int) -> bool:
        """Hand `chunk` to a started helper with fewer than `window` of its records
        unfinished (the helpers in turn); False when none has room, or none is left to take
        it."""
        count = len(self._processes)
        for turn in range(count):
            index = (self._next + turn) % count
            stdin = self._processes[index].stdin
            if stdin is None or index in self._closed or index not in self._ready:
                continue  # a helper still starting (importing) would leave it in the pipe
            if self._given[index] - self._reports[index].handled >= window:
                continue
            try:
                await stdin.send(frame(chunk))
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                self._closed.add(index)  # it exited: its reader reports why
                continue
            self._given[index] += len(chunk)
            self._next = index + 1
            return True
        return False

    async def fed(self) -> None:
        """No more records will come: each helper finishes the chunks it was dealt, gives
        its transient failures their one more pass, and exits."""
        for index, process in enumerate(self._processes):
            if process.stdin is not None:
                with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                    await process.stdin.aclose()
            self._closed.add(index)

    async def stop(self) -> None:
        """Stop every helper still running (SIGTERM, then SIGKILL after a grace period)."""
        with anyio.CancelScope(shield=True):
            for process in self._processes:
                if process.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        process.terminate()
            with anyio.move_on_after(_STOP_GRACE):
                for process in self._processes:
                    await process.wait()
            for process in self._processes:
                if process.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        process.kill()
                    await process.wait()

    def finals(self) -> Sequence[Report]:
        """The helpers' last reports (final ones once `run()`'s readers are done)."""
        return self._reports


def absorb(tally: Tally, report: Report) -> None:
    """Add a helper's final counts to the feeding run's."""
    tally.sent += report.sent
    tally.failed += report.failed
    tally.suppressed += report.suppressed
    tally.in_doubt += report.in_doubt
    tally.scheduled += report.scheduled
    tally.latencies.extend(report.latencies)
    tally.failures.extend(report.failures)


# -- in the helper process ---------------------------------------------------------------------


async def _serve(settings: HelperSettings) -> Report:
    from xcomm._manager import CommManager
    from xcomm.bulk._campaign import Options
    from xcomm.bulk._run import Run
    from xcomm.bulk._scheduler import Scheduler

    out = sys.stdout.buffer

    async with CommManager(outbox=settings.outbox) as comm:
        options = Options(
            max_concurrent=settings.max_concurrent,
            per_domain_concurrency=settings.per_domain,
            retry_failed=settings.retry_failed,
            policy=settings.policy,
            lease=settings.lease,
        )
        store = await comm.outbox()
        scheduler = Scheduler(
            comm,
            store,
            options,
            clock=comm.clock,
            rate_share=settings.rate_share,
            provider_settings=settings.provider_settings,
        )
        await scheduler.resolve(settings.campaign_id)  # a configuration error before any claim

        run = Run(
            options,
            store,
            scheduler.resolve,
            settings.campaign_id,
            None,
            send_batch=settings.batch,
            processes=settings.processes,
        )

        def report() -> None:
            out.write(_ENCODER.encode(report_of(run.tally, run.handled)) + b"\n")
            out.flush()

        async def report_progress() -> None:
            """Every 0.1 s, what changed: also once the helper has run out of records, for
            the feeding process deals it more only when it knows they are done."""
            reported = run.handled
            while True:
                await anyio.sleep(_REPORT_EVERY)
                if run.handled != reported:
                    reported = run.handled
                    report()

        # Input is read as it comes, so the feeding process never waits on a full pipe; what
        # waits here is bounded by what it deals (a window of unfinished records).
        chunks, queued = anyio.create_memory_object_stream[list[OutboxRecord]](math.inf)
        with chunks, queued:  # closed even if the run never gets to them
            async with anyio.create_task_group() as tg:
                tg.start_soon(_read_chunks, chunks)
                report()  # the first line says: started, reading its input
                tg.start_soon(report_progress)
                await run.share(received(queued))
                tg.cancel_scope.cancel()  # the input has ended: only the reports are left
        return report_of(run.tally, run.handled, final=True)


def frame(chunk: Sequence[OutboxRecord]) -> bytes:
    """`chunk` as a helper's standard input carries it (read back by `read_frame()`)."""
    data = _CHUNK_ENCODER.encode(list(chunk))
    return len(data).to_bytes(4, "big") + data


def read_frame() -> list[OutboxRecord] | None:
    """The next chunk on standard input (None at its end)."""
    head = sys.stdin.buffer.read(4)
    if len(head) < 4:
        return None
    size = int.from_bytes(head, "big")
    data = sys.stdin.buffer.read(size)
    if len(data) < size:
        raise CommunicationError("the feeding process stopped in the middle of a chunk")
    return _CHUNK.decode(data)


async def received(
    stream: MemoryObjectReceiveStream[list[OutboxRecord]],
) -> AsyncIterator[list[OutboxRecord]]:
    """The chunks sent on `stream`, until it is closed."""
    async with stream:
        async for chunk in stream:
            yield chunk


async def _read_chunks(chunks: MemoryObjectSendStream[list[OutboxRecord]]) -> None:
    """The chunks of records dealt to this helper, until its input ends."""
    async with chunks:
        read = anyio.to_thread.run_sync
        while (chunk := await read(read_frame, abandon_on_cancel=True)) is not None:
            await chunks.send(chunk)


def main() -> int:
    """One helper process (see the module's docstring); returns its exit status."""
    line = sys.stdin.buffer.readline()
    if not line:
        return 0  # the feeding process went away before it said what to send
    settings = msgspec.json.decode(line, type=HelperSettings)
    factory = None
    if settings.uvloop and importlib.util.find_spec("uvloop") is not None:
        import uvloop

        factory = uvloop.new_event_loop
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl-C is the feeder's to handle
    with asyncio.Runner(loop_factory=factory) as runner:
        loop = runner.get_loop()
        task: asyncio.Task[Report] | None = None

        async def serve() -> Report:
            nonlocal task
            task = asyncio.current_task()
            return await _serve(settings)

        loop.add_signal_handler(signal.SIGTERM, lambda: task.cancel() if task else None)
        try:
            final = runner.run(serve())
        except asyncio.CancelledError:
            return 143  # stopped by the feeding process: what was in flight is settled
        except CommunicationError as exc:
            final = Report(
                final=True, error=str(exc), configuration=isinstance(exc, ConfigurationError)
            )
    sys.stdout.buffer.write(_ENCODER.encode(final) + b"\n")
    sys.stdout.buffer.flush()
    return 0 if final.error is None else 1
