"""What `xcomm campaign run|status|resume` and `xcomm worker` do; `xcomm._cli` parses for them.

Exit statuses (docs/cli.md): 0 done, nothing failed; 1 recipients failed or are in doubt (or a
worker process failed); 2 bad input (the campaign file, its templates or its CSV), nothing sent;
3 no such campaign in the outbox; 130 interrupted (Ctrl-C).

Output: the progress bar and messages go to standard error, the reports (summary table,
status) to standard output, so `xcomm campaign status ID > status.txt` keeps only the report.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from xcomm._campaign_csv import read_recipients
from xcomm._campaign_file import CampaignFileError, CampaignSpec, load_campaign
from xcomm._console import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_UNKNOWN_CAMPAIGN,
    ProgressBar,
    campaign_report,
    error as _error,
    shown,
    streams as _streams,
    table,
)
from xcomm._errors import CommunicationError, ConfigurationError, ValidationError
from xcomm._manager import CommManager
from xcomm.bulk import CampaignResult, Progress
from xcomm.outbox import (
    CampaignDefinition,
    OutboxStatus,
    SQLiteOutbox,
    default_outbox_location,
    open_outbox,
)

__all__ = [
    "campaign_resume",
    "campaign_run",
    "campaign_status",
    "worker",
]

_WORKER_REPORT_EVERY = 5.0  # seconds between a worker's progress lines


# -- campaign run ----------------------------------------------------------------------------


def campaign_run(
    path: str,
    *,
    outbox: str | None = None,
    campaign_id: str | None = None,
    check: bool = False,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """`xcomm campaign run FILE`: check everything, then send (unless `check`)."""
    out, err = _streams(out, err)
    try:
        spec = load_campaign(path, campaign_id=campaign_id)
    except CampaignFileError as exc:
        total = len(exc.problems) + exc.more
        print(exc, file=err)
        _error(err, f"{total} problem{'s' * (total != 1)} in {path}; nothing was sent")
        return EXIT_BAD_INPUT
    location = outbox or spec.outbox
    print(
        f"{path}: OK, {spec.rows:,} recipients checked in {shown(spec.recipients)}; "
        f"campaign {spec.campaign_id!r}, outbox {location or default_outbox_location()}",
        file=err,
    )
    if check:
        print("--check: nothing was sent", file=err)
        return EXIT_OK
    try:
        result = asyncio.run(_send(spec, location, err))
    except KeyboardInterrupt:
        again = f"xcomm campaign run {path}" + (
            f" --campaign-id {campaign_id}" if campaign_id else ""
        )
        print(
            f"\ninterrupted: campaign {spec.campaign_id!r} stopped; what was sent is recorded in "
            f"the outbox. To send the rest, run the same command again (it sends only what was "
            f"not sent):\n  {again}{_outbox_flag(outbox)}\n"
            f"(`xcomm campaign resume {spec.campaign_id}{_outbox_flag(outbox)}` sends what is "
            "already queued in the outbox, without reading the CSV again)",
            file=err,
        )
        return EXIT_INTERRUPTED
    except (ConfigurationError, ValidationError) as exc:
        _error(err, str(exc))
        return EXIT_BAD_INPUT
    except CommunicationError as exc:
        _error(err, str(exc))
        return EXIT_FAILED
    return _report(result, out, err, scheduled_for=spec.schedule_time)


def _outbox_flag(outbox: str | None) -> str:
    return f" --outbox {outbox}" if outbox else ""


async def _send(spec: CampaignSpec, outbox: str | None, err: TextIO) -> CampaignResult:
    async with CommManager(outbox=outbox) as comm:
        provider = comm.email(spec.provider, **spec.settings)
        bulk = comm.create_bulk_sender(provider, **spec.sender_options)
        bar = ProgressBar(spec.rows, err)
        result = await bulk.send_campaign(
            template=spec.template,
            recipients=read_recipients(spec.recipients, spec.email_column),
            campaign_id=spec.campaign_id,
            unsubscribe=spec.unsubscribe,
            schedule_time=spec.schedule_time,
            on_progress=bar,
            source=str(spec.path.resolve()),
        )
        if not result.scheduled:
            bar.finish(result)
        return result


def _report(
    result: CampaignResult, out: TextIO, err: TextIO, *, scheduled_for: datetime | None = None
) -> int:
    scheduled = result.scheduled
    if scheduled and not result.sent:
        when = scheduled_for.isoformat() if scheduled_for else "later"
        print(
            f"campaign {result.campaign_id!r}: {scheduled:,} messages scheduled for {when}; "
            "`xcomm worker` sends them when they are due",
            file=out,
        )
        return EXIT_OK
    print(f"campaign {result.campaign_id!r}:", file=out)
    print(*campaign_report(result), sep="\n", file=out)
    if not result.ok:
        _error(
            err,
            f"{result.failed:,} recipients failed and {result.in_doubt:,} are in doubt; "
            f"`xcomm campaign status {result.campaign_id}` counts them",
        )
        return EXIT_FAILED
    return EXIT_OK


# -- campaign status / resume ----------------------------------------------------------------


async def _known(
    comm: CommManager, campaign_id: str
) -> tuple[dict[OutboxStatus, int], CampaignDefinition | None]:
    store = await comm.outbox()
    return await store.counts(campaign_id), await store.get_campaign(campaign_id)


def _outbox_exists(location: str | None) -> bool:
    store = open_outbox(location or default_outbox_location())
    return not isinstance(store, SQLiteOutbox) or store.path.exists()


def _unknown(err: TextIO, campaign_id: str, location: str | None) -> int:
    _error(
        err,
        f"no campaign {campaign_id!r} in the outbox {location or default_outbox_location()} "
        "(pass --outbox, or set XCOMM_OUTBOX, if it lives elsewhere)",
    )
    return EXIT_UNKNOWN_CAMPAIGN


def campaign_status(
    campaign_id: str,
    *,
    outbox: str | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """`xcomm campaign status ID`: counts per status, and the campaign's definition."""
    out, err = _streams(out, err)
    if not _outbox_exists(outbox):
        return _unknown(err, campaign_id, outbox)

    async def look() -> tuple[dict[OutboxStatus, int], CampaignDefinition | None]:
        async with CommManager(outbox=outbox) as comm:
            return await _known(comm, campaign_id)

    try:
        counts, definition = asyncio.run(look())
    except CommunicationError as exc:
        _error(err, str(exc))
        return EXIT_FAILED
    if not any(counts.values()) and definition is None:
        return _unknown(err, campaign_id, outbox)
    print(f"campaign {campaign_id!r}", file=out)
    if definition is not None:
        print(*_describe(definition), sep="\n", file=out)
    rows = [["status", "recipients"]]
    rows += [[status.value, f"{counts.get(status, 0):,}"] for status in OutboxStatus]
    rows.append(["total", f"{sum(counts.values()):,}"])
    print(*table(rows, right=[1]), sep="\n", file=out)
    return EXIT_OK


def _describe(definition: CampaignDefinition) -> Iterator[str]:
    if definition.name:
        yield f"  name        {definition.name}"
    if definition.created_at:
        created = datetime.fromtimestamp(definition.created_at, UTC)
        yield f"  created     {created.isoformat(timespec='seconds')}"
    for number, step in enumerate(definition.steps, 1):
        delay = f" (after {step.delay:g} s)" if step.delay else ""
        parts = "+".join(p for p in ("text", "html") if getattr(step, p))
        yield f"  step {number}      {step.subject!r} ({parts}){delay}"
    provider = definition.provider
    if provider:
        shown_keys = ("kind", "host", "port", "username", "password_env", "sender")
        settings = ", ".join(f"{k}={provider[k]!r}" for k in shown_keys if k in provider)
        yield f"  provider    {settings}"
    if definition.options:
        options = ", ".join(f"{k}={v!r}" for k, v in sorted(definition.options.items()))
        yield f"  options     {options}"
    yield ""


def campaign_resume(
    campaign_id: str,
    *,
    outbox: str | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """`xcomm campaign resume ID`: send what is pending, from the definition in the outbox."""
    out, err = _streams(out, err)
    if not _outbox_exists(outbox):
        return _unknown(err, campaign_id, outbox)

    async def stored_source() -> str | None:
        async with CommManager(outbox=outbox) as comm:
            _, definition = await _known(comm, campaign_id)
        found = definition.options.get("source") if definition is not None else None
        return str(found) if found else None

    # A campaign file records its recipients as it sends them: run it again (it sends only
    # what was not sent); without the file, send what the outbox already holds.
    source = asyncio.run(stored_source())
    if source is not None and Path(source).is_file():
        print(f"resuming {campaign_id!r} from its campaign file {source}", file=err)
        return campaign_run(source, outbox=outbox, campaign_id=campaign_id, out=out, err=err)
    if source is not None:
        print(
            f"the campaign file {source} is gone: sending only what the outbox holds",
            file=err,
        )

    async def resume() -> CampaignResult | None:
        async with CommManager(outbox=outbox) as comm:
            counts, definition = await _known(comm, campaign_id)
            if definition is None:
                return None
            left = sum(counts.get(s, 0) for s in (OutboxStatus.PENDING, OutboxStatus.SENDING))
            bar = ProgressBar(left, err)
            result = await comm.resume_campaign(campaign_id, on_progress=bar)
            bar.finish(result)
            return result

    try:
        result = asyncio.run(resume())
    except KeyboardInterrupt:
        print(
            f"\ninterrupted; resume again with: xcomm campaign resume {campaign_id}"
            f"{_outbox_flag(outbox)}",
            file=err,
        )
        return EXIT_INTERRUPTED
    except (ConfigurationError, ValidationError) as exc:
        _error(err, str(exc))
        return EXIT_BAD_INPUT
    except CommunicationError as exc:
        _error(err, str(exc))
        return EXIT_FAILED
    if result is None:
        return _unknown(err, campaign_id, outbox)
    return _report(result, out, err)


# -- worker ----------------------------------------------------------------------------------


class _WorkerProgress:
    """A worker's `on_progress`: one line per campaign every few seconds (no bar: no total)."""

    def __init__(self, err: TextIO) -> None:
        self._err = err
        self._last: dict[str, float] = {}

    def __call__(self, event: Progress) -> None:
        now = time.monotonic()
        if now - self._last.get(event.campaign_id, 0.0) < _WORKER_REPORT_EVERY:
            return
        self._last[event.campaign_id] = now
        which = "all campaigns" if event.campaign_id == "*" else f"campaign {event.campaign_id!r}"
        print(
            f"worker {os.getpid()}: {which}: {event.sent:,} sent, "
            f"{event.failed:,} failed, {event.rate:,.0f} msg/s",
            file=self._err,
        )


async def _work(run: Callable[[CommManager], Awaitable[None]], outbox: str | None) -> bool:
    """Run `run(comm)`; SIGTERM stops it cleanly. True when stopped by SIGTERM."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    stopped = False

    def stop() -> None:
        nonlocal stopped
        if not stopped and not task.cancelling():
            stopped = True
            task.cancel()

    with contextlib.suppress(NotImplementedError, RuntimeError):  # no signals off the main thread
        loop.add_signal_handler(signal.SIGTERM, stop)
    try:
        async with CommManager(outbox=outbox) as comm:
            await run(comm)
    except asyncio.CancelledError:
        if not stopped:
            raise
    finally:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.remove_signal_handler(signal.SIGTERM)
    return stopped


def worker(
    *,
    processes: int = 1,
    campaign_id: str | None = None,
    until_idle: bool = False,
    poll_interval: float = 1.0,
    outbox: str | None = None,
    rate_share: float | None = None,
    err: TextIO | None = None,
) -> int:
    """`xcomm worker`: send due records of every campaign (or one) from this and N-1 children.

    The children are `python -m xcomm worker` with the same options; leases in the outbox keep
    them from claiming the same record, and each takes `rate_share` (1/N) of every campaign's
    rate limit. SIGINT/SIGTERM stop every process cleanly.
    """
    _, err = _streams(None, err)
    rate_share = 1 / processes if rate_share is None else rate_share
    args = ["--poll-interval", str(poll_interval), "--rate-share", repr(rate_share)]
    if campaign_id is not None:
        args += ["--campaign", campaign_id]
    if until_idle:
        args.append("--until-idle")
    if outbox is not None:
        args += ["--outbox", outbox]
    children = [
        subprocess.Popen([sys.executable, "-m", "xcomm", "worker", *args])
        for _ in range(processes - 1)
    ]
    progress = _WorkerProgress(err)

    async def run(comm: CommManager) -> None:
        result = await comm.run_scheduler(
            campaign_id=campaign_id,
            until_idle=until_idle,
            poll_interval=poll_interval,
            rate_share=rate_share,
            on_progress=progress,
        )
        print(
            f"worker {os.getpid()}: {result.sent:,} sent, {result.failed:,} failed, "
            f"{result.in_doubt:,} in doubt",
            file=err,
        )

    code, stopped = EXIT_OK, False
    try:
        stopped = asyncio.run(_work(run, outbox))
        if stopped:
            print(f"worker {os.getpid()}: stopped (SIGTERM)", file=err)
    except KeyboardInterrupt:
        code = EXIT_INTERRUPTED
        print(f"worker {os.getpid()}: interrupted", file=err)
    except (ConfigurationError, ValidationError) as exc:
        _error(err, str(exc))
        code = EXIT_BAD_INPUT
    except CommunicationError as exc:
        _error(err, str(exc))
        code = EXIT_FAILED
    finally:
        # A terminal's Ctrl-C reaches every process of the group: give the children a moment
        # to stop on their own (and say so) before a SIGTERM cuts them short.
        failed = _stop_children(
            children,
            stop=stopped or code != EXIT_OK or not until_idle,
            grace=_CTRL_C_GRACE if code == EXIT_INTERRUPTED else 0.0,
        )
    if failed and code == EXIT_OK:
        _error(err, f"{failed} of {len(children)} worker processes failed")
        return EXIT_FAILED
    return code


_CTRL_C_GRACE = 5.0


def _stop_children(
    children: list[subprocess.Popen[bytes]], *, stop: bool, grace: float = 0.0
) -> int:
    """Wait for the children (after SIGTERM when `stop`, once `grace` seconds have passed
    for them to exit by themselves); how many exited with an error."""
    deadline = time.monotonic() + grace
    try:
        for child in children:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=max(0.0, deadline - time.monotonic()))
    except KeyboardInterrupt:  # a second Ctrl-C: no more grace
        pass
    if stop:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
    failed = 0
    for child in children:
        while True:
            try:
                code = child.wait()
                break
            except KeyboardInterrupt:  # a second Ctrl-C while waiting: pass it on, keep waiting
                if child.poll() is None:
                    child.send_signal(signal.SIGTERM)
        if code not in (0, EXIT_INTERRUPTED, -signal.SIGTERM):
            failed += 1
    return failed
